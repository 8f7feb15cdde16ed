"""``smx bench mixers``: forward+backward time and peak memory of each mixer against input length.

Two scopes are measured for every mixer kind: the mixer alone, and a full encoder
(``num_layers`` blocks of the configured type) built with that mixer. Every point runs in a
fresh subprocess (:func:`smx.bench.measure.run_point`) so its peak memory is its own.
Lengths are given in seconds of audio and converted to encoder frames with the config's
front-end frame rate (20 ms for the wav2vec 2.0 CNN, 40 ms for the conv2d front-end).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smx.bench.common import encoder_frames
from smx.config import MIXER_KINDS, ModelCfg, deep_merge

if TYPE_CHECKING:
    from smx.bench.measure import Progress

POINT_MODULE = "smx.bench.mixers_point"

#: Benchmarked kinds: the config's mixer kinds plus MHSA with relative positions.
BENCH_KINDS = (*MIXER_KINDS, "mhsa_relpos")


def bench_mixer_cfg(kind: str, d_model: int, d_ffn: int) -> dict[str, Any]:
    """The mixer section used for ``kind`` in the benchmark (heads of size 64).

    Example
    -------
    >>> bench_mixer_cfg("mhsa", 256, 1024)
    {'kind': 'mhsa', 'heads': 4, 'dropout': 0.0}
    """
    heads = max(d_model // 64, 1)
    if kind == "mhsa_relpos":  # MHSA with relative positions: a materialised T x T bias
        return {"kind": "mhsa", "heads": heads, "dropout": 0.0, "pos": "relpos"}
    if kind == "summarymixing":
        return {
            "kind": kind,
            "local_hidden": [d_model],
            "local_out": d_model,
            "summary_hidden": [d_model],
            "heads": heads,
            "dropout": 0.0,
        }
    if kind == "hypermixing":
        return {"kind": kind, "heads": heads, "hypernet_size": d_ffn}
    if kind == "mamba":
        return {"kind": kind}
    return {"kind": kind, "heads": heads, "dropout": 0.0}


@dataclass
class MixerBench:
    """What to measure: every (scope, kind, length) point.

    Arguments
    ---------
    lengths_s : list of float
        Input lengths in seconds of 16 kHz audio (converted with the front-end's frame rate).
    kinds : list of str
        Mixer kinds of :data:`BENCH_KINDS`.
    scopes : list of str
        ``mixer`` (the mixer alone) and/or ``encoder`` (a full encoder built with it).
    d_model, d_ffn, num_layers : int
        The encoder's width, feed-forward width and depth.
    block, frontend : str
        The encoder block type and the front-end whose frame rate sets the frames.
    batch, repeats, warmup : int
        Utterances per call, timed calls (median reported) and untimed calls before them.
    device : str
        ``cpu`` or ``cuda``.
    """

    lengths_s: list[float] = field(default_factory=lambda: [5.0, 10.0, 20.0, 40.0, 80.0])
    kinds: list[str] = field(default_factory=lambda: list(BENCH_KINDS))
    scopes: list[str] = field(default_factory=lambda: ["mixer", "encoder"])
    d_model: int = 256
    d_ffn: int = 1024
    num_layers: int = 12
    block: str = "conformer"
    frontend: str = "mel_cnn"
    batch: int = 1
    repeats: int = 3
    warmup: int = 1
    device: str = "cpu"

    def model_cfg(self, kind: str) -> ModelCfg:
        """The model config of one benchmarked encoder."""
        base = ModelCfg().model_dump()
        patch = {
            "frontend": {"kind": self.frontend},
            "encoder": {
                "block": self.block,
                "num_layers": self.num_layers,
                "d_model": self.d_model,
                "d_ffn": self.d_ffn,
                "layerdrop": 0.0,
                "dropout": 0.0,
                "input_dropout": 0.0,
            },
            "mixer": bench_mixer_cfg(kind, self.d_model, self.d_ffn),
        }
        if kind == "mhsa_relpos":
            patch["encoder"]["pos_enc"] = "none"
        return ModelCfg.model_validate(deep_merge(base, patch))

    def frames(self, seconds: float) -> int:
        """Encoder frames for ``seconds`` of 16 kHz audio."""
        return encoder_frames(self.model_cfg(self.kinds[0]), seconds, 16_000)


def run(bench: MixerBench, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Measure every (scope, kind, length) point of ``bench``, each in a fresh process.

    ``progress`` is told of each record as it is done. Returns one record per point:
    ``scope``, ``kind``, ``seconds``, ``frames`` and the measurement (or ``error``).
    """
    from smx.bench.measure import run_points

    return run_points(POINT_MODULE, _points(bench), progress=progress)


def _points(bench: MixerBench) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(record, spec)`` of every point, scope by scope, kind by kind, length by length."""
    for scope, kind in ((s, k) for s in bench.scopes for k in bench.kinds):
        model = bench.model_cfg(kind).model_dump(mode="json")
        for seconds in bench.lengths_s:
            frames = bench.frames(seconds)
            spec = {
                "scope": scope,
                "model": model,
                "frames": frames,
                "batch": bench.batch,
                "repeats": bench.repeats,
                "warmup": bench.warmup,
                "device": bench.device,
            }
            yield {"scope": scope, "kind": kind, "seconds": seconds, "frames": frames}, spec


def measured(record: dict[str, Any]) -> bool:
    """True for a point that was measured (not failed, not skipped)."""
    return "median_s" in record


def ratios(
    records: list[dict[str, Any]], baseline: str = "mhsa", group: str = "scope"
) -> list[dict[str, Any]]:
    """Time and memory of every point divided by the baseline's in the same group and length.

    ``time_ratio`` divides wall times, ``mem_ratio`` peak memories and, when both points
    carry one, ``cpu_ratio`` the CPU times of the process.

    ``group`` names the field that must match too (``scope`` here, ``objective`` for
    ``smx bench pretrain``).

    Example
    -------
    >>> recs = [{"scope": "mixer", "kind": "mhsa", "seconds": 5, "median_s": 2.0, "peak_mem_bytes": 100},
    ...         {"scope": "mixer", "kind": "summarymixing", "seconds": 5, "median_s": 1.0, "peak_mem_bytes": 25}]
    >>> [(r["kind"], r["time_ratio"], r["mem_ratio"]) for r in ratios(recs)]
    [('mhsa', 1.0, 1.0), ('summarymixing', 0.5, 0.25)]
    """
    base = {(r[group], r["seconds"]): r for r in records if r["kind"] == baseline and measured(r)}
    out = []
    for r in records:
        b = base.get((r[group], r["seconds"]))
        row = dict(r)
        if b is not None and measured(r):
            row["time_ratio"] = r["median_s"] / b["median_s"]
            row["mem_ratio"] = r["peak_mem_bytes"] / max(b["peak_mem_bytes"], 1)
            if r.get("median_cpu_s") and b.get("median_cpu_s"):
                row["cpu_ratio"] = r["median_cpu_s"] / b["median_cpu_s"]
        out.append(row)
    return out


def plot(
    records: list[dict[str, Any]],
    path: Path,
    group: str = "scope",
    what: str = "forward+backward time",
    time_key: str = "median_s",
) -> None:
    """Time and peak memory against input length, one line per mixer, one row per ``group``.

    Arguments
    ---------
    records : list of dict
        The points; failed and skipped ones are left out.
    path : Path
        The PNG to write.
    group : str
        The field that makes one row of panels per value (``scope`` or ``objective``).
    what : str
        What the time is, for the titles.
    time_key : str
        The plotted time: ``median_s`` (wall) or ``median_cpu_s`` (CPU time).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scopes = sorted({r[group] for r in records}, reverse=True)
    fig, axes = plt.subplots(len(scopes), 2, figsize=(10, 3.6 * len(scopes)), squeeze=False)
    for row, scope in enumerate(scopes):
        for kind in sorted({r["kind"] for r in records}):
            pts = sorted(
                (r for r in records if r[group] == scope and r["kind"] == kind and measured(r)),
                key=lambda r: r["seconds"],
            )
            if not pts:
                continue
            xs = [p["seconds"] for p in pts]
            axes[row][0].plot(xs, [p[time_key] for p in pts], marker="o", label=kind)
            axes[row][1].plot(
                xs, [p["peak_mem_bytes"] / 2**20 for p in pts], marker="o", label=kind
            )
        axes[row][0].set(title=f"{scope}: {what}", xlabel="input (s of audio)")
        axes[row][1].set(title=f"{scope}: peak memory", xlabel="input (s of audio)")
        axes[row][0].set(ylabel="s (log scale)", yscale="log")
        axes[row][1].set(ylabel="MiB (log scale)", yscale="log")
        axes[row][0].legend()
        axes[row][1].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main_point() -> None:
    """Entry point of one measurement process: spec JSON on stdin, result JSON on stdout."""
    import torch

    from smx.bench.measure import measure, measurement_dict
    from smx.nn.build import build_encoder, build_mixer

    spec = json.loads(sys.stdin.read())
    torch.manual_seed(0)
    device = torch.device(spec["device"])
    model = ModelCfg.model_validate(spec["model"])
    d_model, frames, batch = model.encoder.d_model, spec["frames"], spec["batch"]
    if spec["scope"] == "mixer":
        module = build_mixer(model.mixer, model.encoder).to(device).train()
        x = torch.randn(batch, frames, d_model, device=device, requires_grad=True)
        pad_mask = torch.ones(batch, frames, dtype=torch.bool, device=device)

        def step() -> None:
            module(x, pad_mask).sum().backward()

    else:
        module = build_encoder(model, input_dim=d_model).to(device).train()
        x = torch.randn(batch, frames, d_model, device=device, requires_grad=True)
        lengths = torch.full((batch,), frames, dtype=torch.long, device=device)

        def step() -> None:
            module(x, lengths).last.sum().backward()

    params = sum(p.numel() for p in module.parameters())
    m = measure(step, device, repeats=spec["repeats"], warmup=spec["warmup"])
    print(json.dumps({**measurement_dict(m), "params": params}))
