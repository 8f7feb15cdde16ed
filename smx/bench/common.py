"""What the benchmarks share: their config files, argument checks and unit conversions.

The model of ``smx bench pretrain | stream | roofline`` comes from a config file of the
ordinary schema (:class:`smx.config.Params`): ``configs/bench_wav2vec2.yaml`` and
``configs/bench_bestrq.yaml`` hold the 12-layer d_model 256 Conformer of ``smx bench
mixers``, and one entry of ``variants`` per mixer, named by the mixer kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smx.config import MIXER_KINDS, ModelCfg, Params, load
from smx.project import project_root

#: The bundled benchmark configs, by objective (paths relative to the project root).
BENCH_CONFIGS = {
    "wav2vec2": Path("configs/bench_wav2vec2.yaml"),
    "bestrq": Path("configs/bench_bestrq.yaml"),
}


def default_config(objective: str) -> Path:
    """The bundled benchmark config of ``objective`` (``wav2vec2`` or ``bestrq``).

    Example
    -------
    >>> default_config("bestrq").name
    'bench_bestrq.yaml'
    """
    return project_root() / BENCH_CONFIGS[objective]


def shown_path(path: Path | str) -> str:
    """``path`` relative to the project root when it lies inside it (for reports).

    Example
    -------
    >>> shown_path(project_root() / "configs" / "x.yaml")
    'configs/x.yaml'
    """
    path = Path(path).resolve()
    try:
        return str(path.relative_to(project_root()))
    except ValueError:
        return str(path)


def load_bench_config(path: Path) -> Params:
    """Read and validate a benchmark config (raises :class:`smx.yamlio.ConfigError`)."""
    return load(path)


def variant(params: Params, kind: str, path: Path | str) -> Params:
    """The full config of the mixer ``kind``: ``variants[kind]`` of the file ``path``.

    Example
    -------
    >>> p = Params.model_validate({"variants": {"mhsa": {"mixer": {"kind": "mhsa"}}}})
    >>> variant(p, "mhsa", "x.yaml").model.mixer.kind
    'mhsa'
    >>> variant(p, "fastformer", "x.yaml")
    Traceback (most recent call last):
    ...
    ValueError: x.yaml: variants has no entry 'fastformer' (defined: mhsa)
    """
    if kind not in params.variants:
        known = ", ".join(sorted(params.variants)) or "none"
        raise ValueError(f"{path}: variants has no entry '{kind}' (defined: {known})")
    return params.variant(kind)


def check_kinds(kinds: Sequence[str], allowed: Sequence[str] = MIXER_KINDS) -> list[str]:
    """``kinds`` as a list; ValueError naming the unknown ones and the allowed names.

    Example
    -------
    >>> check_kinds(["mhsa", "summarymixing"])
    ['mhsa', 'summarymixing']
    >>> check_kinds(["lstm"], allowed=["mhsa"])
    Traceback (most recent call last):
    ...
    ValueError: kinds: unknown mixer kind(s) ['lstm']; choose from ['mhsa']
    """
    unknown = [k for k in kinds if k not in allowed]
    if unknown or not kinds:
        what = f"unknown mixer kind(s) {unknown}" if unknown else "no mixer kind given"
        raise ValueError(f"kinds: {what}; choose from {list(allowed)}")
    return list(kinds)


def check_seconds(values: Sequence[float], name: str) -> list[float]:
    """``values`` as floats; ValueError unless every one is a finite number above 0.

    Example
    -------
    >>> check_seconds([20, 40.5], "lengths")
    [20.0, 40.5]
    >>> check_seconds([20, 0], "lengths")
    Traceback (most recent call last):
    ...
    ValueError: lengths: every duration must be a number of seconds above 0, got 0
    """
    out = []
    for value in values:
        seconds = float(value)
        if not 0.0 < seconds < float("inf"):
            raise ValueError(
                f"{name}: every duration must be a number of seconds above 0, got {value!r}"
            )
        out.append(seconds)
    if not out:
        raise ValueError(f"{name}: give at least one duration in seconds")
    return out


def compile_blocks(encoder: Any) -> None:
    """``torch.compile`` every block of ``encoder`` in place (regional compilation).

    The blocks are identical modules, so they share one compiled graph: compiling costs
    about one layer, not the whole stack. The encoder's own loop stays eager.
    """
    for block in encoder.blocks:
        block.compile()


def check_threads(threads: int | None) -> None:
    """ValueError unless ``threads`` is None (torch's default) or an integer >= 1.

    Example
    -------
    >>> check_threads(0)
    Traceback (most recent call last):
    ...
    ValueError: threads: must be an integer >= 1 (or unset for one per core), got 0
    """
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(
            f"threads: must be an integer >= 1 (or unset for one per core), got {threads!r}"
        )


def encoder_frames(model: ModelCfg, seconds: float, sample_rate: int) -> int:
    """Encoder frames the model's front-end makes of ``seconds`` of audio.

    Example
    -------
    >>> encoder_frames(ModelCfg(), 10.0, 16000)  # mel + CNN: 20 ms frames
    498
    """
    fe = model.frontend
    return fe.encoder_frames(fe.feature_frames(round(seconds * sample_rate), sample_rate))


def frame_seconds(model: ModelCfg) -> float:
    """Seconds of audio per encoder frame (hop times the front-end's subsampling).

    Example
    -------
    >>> frame_seconds(ModelCfg()), frame_seconds(ModelCfg(frontend={"kind": "conv2d"}))
    (0.02, 0.04)
    """
    return model.frontend.frame_seconds
