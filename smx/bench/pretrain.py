"""``smx bench pretrain``: time and peak memory of one full pre-training step per mixer.

One step is what the training loop does per batch: log-mel front-end, latent extractor,
encoder, the SSL objective's loss (:func:`smx.ssl.objective.build_objective`), backward,
gradient clipping and an AdamW update (``params.train``'s hyper-parameters). Every
(objective, mixer, length) point runs in a fresh process (:func:`smx.bench.measure.run_point`),
so its peak memory is its own: the resident set above the level after the warm-up step, when
the weights and the AdamW moments already exist. Inputs are random waveforms of the given
length; the objective's masks come from its seeded generator, so every mixer sees the same
masks. Ratios divide by MHSA (``*_ratio``) and by the ``none`` floor (``floor_*_ratio``) at
the same objective, mode and length, measured in the same run.

Modes: ``default`` runs the step as training does by default (the SummaryMixing cell's
``recompute: activations``; the encoder blocks compiled where ``train.compile`` asks for it,
always with ``--compile``); ``eager`` runs it as before the fast path (no recomputation, no
compilation). Each point runs every mode, the mixers side by side.

A point is skipped (not run) when its step time, projected linearly from the same mixer's
previous length, exceeds the step budget: the pure-PyTorch Mamba scan at 80 s on a CPU.
MHSA, the baseline of every ratio, and ``none``, the floor (no token mixing: what the rest
of the step costs, :mod:`smx.nn.mixers.no_mixing`), are never skipped.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smx.bench.common import (
    check_seconds,
    check_threads,
    encoder_frames,
    shown_path,
    variant,
)
from smx.bench.mixers import measured
from smx.config import MIXER_KINDS, NO_MIXING, Params

if TYPE_CHECKING:
    from smx.bench.measure import Progress

#: Lengths of the published comparisons (arXiv 2409.02596 reports 20-80 s inputs).
DEFAULT_LENGTHS_S = (20.0, 40.0, 80.0)

#: Default step budget: a point projected to take longer per step is skipped (Mamba at 80 s).
DEFAULT_STEP_BUDGET_S = 120.0

#: The mixer every ratio divides by.
BASELINE = "mhsa"

#: Every mixer kind plus the no-mixing floor: the default variants.
DEFAULT_KINDS = (*MIXER_KINDS, NO_MIXING)

#: Variants never skipped for the budget: the baseline and the floor.
NEVER_SKIPPED = (BASELINE, NO_MIXING)

#: The mixer the ``floor_*`` ratios divide by.
FLOOR = NO_MIXING

#: How a point runs the step: the defaults of training, or eager as before the fast path.
MODES = ("eager", "default")

#: The ratios of a point: to MHSA, then to the floor.
RATIOS = ("time_ratio", "cpu_ratio", "mem_ratio")
FLOOR_RATIOS = tuple(f"floor_{r}" for r in RATIOS)

#: The metrics of a point, as written to the CSV and to MLflow.
METRICS = ("time_s", "cpu_s", "peak_mib", *RATIOS, *FLOOR_RATIOS)


@dataclass
class PretrainBench:
    """What to measure: the objectives' config files, mixers, lengths and repeats.

    Arguments
    ---------
    configs : list of (objective, path, Params)
        One benchmark config per objective (``ssl.kind`` names it).
    kinds : list of str
        Mixer kinds; each must be an entry of every config's ``variants``.
    lengths_s : list of float
        Utterance lengths in seconds.
    batch : int
        Utterances per step.
    repeats, warmup : int
        Timed steps (the median is reported) and untimed steps before them.
    step_budget_s : float
        Skip a point whose projected step time exceeds this many seconds (never MHSA, never
        the ``none`` floor).
    device : str
        ``cpu`` or ``cuda``.
    threads : int or None
        Intra-op threads of every point's process; None = torch's default (one per core).
    compile : bool
        In the ``default`` mode, ``torch.compile`` the encoder's blocks whatever the device
        (``train.compile: true``); the compilation happens in the warm-up step, not timed.
    modes : list of str
        ``eager`` and/or ``default`` (see the module docstring).
    """

    configs: list[tuple[str, Path, Params]]
    kinds: list[str] = field(default_factory=lambda: list(DEFAULT_KINDS))
    lengths_s: list[float] = field(default_factory=lambda: list(DEFAULT_LENGTHS_S))
    batch: int = 1
    repeats: int = 3
    warmup: int = 1
    step_budget_s: float = DEFAULT_STEP_BUDGET_S
    device: str = "cpu"
    threads: int | None = None
    compile: bool = False
    modes: list[str] = field(default_factory=lambda: ["default"])

    def __post_init__(self) -> None:
        # kinds name variants of every config (mixer kinds in configs/bench_*; the pipeline's
        # variant names with params.yaml), checked below with the file that lacks one
        if not self.kinds:
            raise ValueError("kinds: no variant given")
        self.kinds = list(self.kinds)
        self.lengths_s = check_seconds(self.lengths_s, "lengths")
        if self.step_budget_s <= 0:
            raise ValueError(
                f"step_budget_s: must be a number of seconds above 0, got {self.step_budget_s}"
            )
        check_threads(self.threads)
        self.modes = [m for m in MODES if m in self.modes] if set(self.modes) <= set(MODES) else []
        if not self.modes:
            raise ValueError(f"modes: choose one or both of {list(MODES)}")
        for name, value in (("batch", self.batch), ("repeats", self.repeats)):
            if value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value}")
        for _, path, params in self.configs:
            for kind in self.kinds:
                variant(params, kind, path)  # every mixer must be defined in every file

    def meta(self) -> dict[str, Any]:
        """JSON-ready description of the run (configs by path, not by content)."""
        return {
            "configs": {objective: shown_path(path) for objective, path, _ in self.configs},
            "kinds": self.kinds,
            "lengths_s": self.lengths_s,
            "batch": self.batch,
            "repeats": self.repeats,
            "warmup": self.warmup,
            "step_budget_s": self.step_budget_s,
            "device": self.device,
            "threads": self.threads,
            "compile": self.compile,
            "modes": self.modes,
        }


def mode_params(params: Params, mode: str, compile: bool = False) -> Params:
    """``params`` as the ``mode`` runs it: ``eager`` turns recomputation and compilation off.

    Example
    -------
    >>> eager = mode_params(Params(), "eager")
    >>> eager.model.mixer.recompute, eager.train.compile
    ('none', False)
    >>> mode_params(Params(), "default", compile=True).train.compile
    True
    """
    if mode == "default":
        if not compile:
            return params
        return params.model_copy(
            update={"train": params.train.model_copy(update={"compile": True})}
        )
    model, mixer = params.model, params.model.mixer
    if mixer.kind == "summarymixing":
        model = model.model_copy(update={"mixer": mixer.model_copy(update={"recompute": "none"})})
    train = params.train.model_copy(update={"compile": False})
    return params.model_copy(update={"model": model, "train": train})


def over_budget(previous: dict[str, Any] | None, seconds: float, budget_s: float) -> str | None:
    """Why the point at ``seconds`` is skipped, or None to run it.

    The step time is projected linearly from the same mixer's previous (shorter) point; a
    mixer that was already skipped or failed at a shorter length is skipped too.

    Example
    -------
    >>> prev = {"seconds": 40.0, "median_s": 35.0}
    >>> print(over_budget(prev, 80.0, budget_s=60.0))
    projected 70 s per step (from 35 s at 40 s) exceeds the step budget of 60 s
    >>> print(over_budget(prev, 80.0, budget_s=100.0))
    None
    >>> print(over_budget(None, 20.0, budget_s=1.0))
    None
    """
    if previous is None:
        return None
    if not measured(previous):
        return f"not run: the {previous['seconds']:g} s point was not measured"
    projected = previous["median_s"] * seconds / previous["seconds"]
    if projected <= budget_s:
        return None
    return (
        f"projected {projected:.0f} s per step (from {previous['median_s']:.0f} s at "
        f"{previous['seconds']:g} s) exceeds the step budget of {budget_s:g} s"
    )


def _measure_point(bench: PretrainBench, cfg: Params, seconds: float, mode: str) -> dict[str, Any]:
    """One step of the variant ``cfg`` on ``seconds`` of audio, measured in a fresh process."""
    from smx.bench.measure import run_point

    cfg = mode_params(cfg, mode, bench.compile)
    spec = {
        "params": cfg.model_dump(mode="json"),
        "seconds": seconds,
        "batch": bench.batch,
        "repeats": bench.repeats,
        "warmup": bench.warmup,
        "device": bench.device,
    }
    return run_point("smx.bench.pretrain", spec, threads=bench.threads)


def run(bench: PretrainBench, progress: Progress | None = None) -> list[dict]:
    """Measure every (objective, mode, mixer, length) point; one record per point, with ratios.

    At each length and mode the mixers run one after the other, MHSA first, so that the
    points a ratio compares are measured close in time (the machine's load drifts). MHSA and
    the ``none`` floor (the ratios' denominators) are never skipped for the budget.
    ``progress`` is told of each record as it is done. Returns one record per point
    (``objective``, ``mode``, ``kind``, ``seconds``, ``frames`` and the measurement,
    ``skipped`` or ``error``), sorted by objective, mode, mixer and length.
    """
    kinds = sorted(bench.kinds, key=lambda k: k != BASELINE)  # the baseline first
    records = []
    for objective, path, params in bench.configs:
        cfgs = {kind: variant(params, kind, path) for kind in kinds}
        previous: dict[tuple[str, str], dict[str, Any]] = {}
        for seconds in sorted(bench.lengths_s):
            for mode in bench.modes:
                for kind in kinds:
                    rec = _point(bench, objective, mode, kind, cfgs[kind], seconds, previous)
                    records.append(rec)
                    previous[(mode, kind)] = rec
                    if progress is not None:
                        progress(rec)
    order = {kind: i for i, kind in enumerate(bench.kinds)}
    modes = {mode: i for i, mode in enumerate(bench.modes)}
    records.sort(key=lambda r: (r["objective"], modes[r["mode"]], order[r["kind"]], r["seconds"]))
    return add_ratios(records)


def _point(
    bench: PretrainBench,
    objective: str,
    mode: str,
    kind: str,
    cfg: Params,
    seconds: float,
    previous: dict[tuple[str, str], dict[str, Any]],
) -> dict[str, Any]:
    """The record of one point: measured, or skipped for the step budget."""
    rec: dict[str, Any] = {
        "objective": objective,
        "mode": mode,
        "kind": kind,
        "seconds": seconds,
        "frames": encoder_frames(cfg.model, seconds, cfg.data.sample_rate),
    }
    skip = over_budget(previous.get((mode, kind)), seconds, bench.step_budget_s)
    if skip is not None and kind not in NEVER_SKIPPED:
        rec["skipped"] = skip
    else:
        rec.update(_measure_point(bench, cfg, seconds, mode))
    return rec


def add_ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each point's ratios to MHSA (``*_ratio``) and to the floor (``floor_*_ratio``).

    Both divide by the point of the same objective, mode and length.

    Example
    -------
    >>> recs = [{"objective": "w", "mode": "default", "kind": k, "seconds": 8.0,
    ...          "median_s": t, "peak_mem_bytes": 10} for k, t in
    ...         (("mhsa", 4.0), ("none", 1.0), ("summarymixing", 2.0))]
    >>> sm = add_ratios(recs)[2]
    >>> sm["time_ratio"], sm["floor_time_ratio"], sm["floor_mem_ratio"]
    (0.5, 2.0, 1.0)
    """
    from smx.bench.mixers import ratios

    cells = [dict(r, cell=f"{r['objective']}/{r.get('mode', 'default')}") for r in records]
    to_floor = ratios(cells, baseline=FLOOR, group="cell")
    out = ratios(cells, baseline=BASELINE, group="cell")
    for row, floor in zip(out, to_floor, strict=True):
        row.update({f"floor_{key}": floor[key] for key in RATIOS if key in floor})
        del row["cell"]
    return out


def pretrain_step(
    params: Params, seconds: float, batch: int, device: Any
) -> tuple[Callable[[], dict[str, float]], Any]:
    """One training step of ``params`` on random audio, as a function; and the objective.

    The objective is built in training mode, its encoder blocks compiled where
    ``params.train.compile`` asks for it on ``device`` (:func:`smx.nn.fast.apply_fast_path`);
    the step is the loop's: forward, backward, clipping, AdamW. It returns the metrics.
    """
    import torch

    from smx.nn.fast import apply_fast_path
    from smx.ssl.objective import build_objective
    from smx.train.schedule import make_optimizer

    torch.manual_seed(params.seed)
    objective = build_objective(params).to(device).train()
    apply_fast_path(objective, params.train.compile, device)
    optimizer = make_optimizer(objective.parameters(), params.train)
    samples = round(seconds * params.data.sample_rate)
    inputs = {
        "audio": torch.randn(batch, samples, device=device),  # [B, S]
        "audio_lens": torch.full((batch,), samples, device=device),  # [B]
    }

    def step() -> dict[str, float]:
        out = objective(inputs)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), params.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out.metrics

    return step, objective


def main_point() -> None:
    """One point in its own process: spec JSON on stdin, measurement JSON on stdout."""
    import torch

    from smx.bench.measure import measure, measurement_dict

    spec = json.loads(sys.stdin.read())
    params = Params.model_validate(spec["params"])
    device = torch.device(spec["device"])
    step, objective = pretrain_step(params, spec["seconds"], spec["batch"], device)
    last: dict[str, float] = {}
    m = measure(lambda: last.update(step()), device, spec["repeats"], spec["warmup"])
    n_params = sum(p.numel() for p in objective.parameters())
    print(json.dumps({**measurement_dict(m), "params": n_params, "loss": last["loss"]}))


# ------------------------------------------------------------------------------- outputs


def point_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The :data:`METRICS` of a measured point (ratios only where MHSA was measured).

    Example
    -------
    >>> point_metrics({"median_s": 2.0, "peak_mem_bytes": 3 * 2**20, "time_ratio": 0.5})
    {'time_s': 2.0, 'peak_mib': 3.0, 'time_ratio': 0.5}
    """
    values = {"time_s": record["median_s"]}
    if record.get("median_cpu_s"):
        values["cpu_s"] = record["median_cpu_s"]
    values["peak_mib"] = record["peak_mem_bytes"] / 2**20
    values.update({k: record[k] for k in (*RATIOS, *FLOOR_RATIOS) if k in record})
    return values


def series(record: dict[str, Any]) -> str:
    """The name of a point's series: ``<objective>_<mixer>``, ``_eager`` added in eager mode.

    Example
    -------
    >>> series({"objective": "w", "kind": "mhsa"}), series({"objective": "w", "kind": "none",
    ...                                                       "mode": "eager"})
    ('w_mhsa', 'w_none_eager')
    """
    name = f"{record['objective']}_{record['kind']}"
    return name + ("_eager" if record.get("mode") == "eager" else "")


def plot_time(threads: int | None) -> dict[str, str]:
    """Which time to plot: CPU time for one-thread runs (steady under load), else wall time.

    Example
    -------
    >>> plot_time(1)
    {'time_key': 'median_cpu_s', 'what': 'training step, CPU time'}
    """
    if threads == 1:
        return {"time_key": "median_cpu_s", "what": "training step, CPU time"}
    return {"time_key": "median_s", "what": "training step, wall time"}


def csv_table(records: list[dict[str, Any]]) -> str:
    """One row per length, one column per (series, metric): a DVC plots table.

    Columns: ``seconds``, then ``<series>_<metric>`` for every :func:`series` (objective and
    mixer; ``_eager`` for the eager mode) and metric of :data:`METRICS`; a point that was not
    measured has empty cells. For example
    ``dvc plots show pretrain.csv -x seconds -y wav2vec2_summarymixing_time_ratio``.

    Example
    -------
    >>> recs = [{"objective": "w", "kind": "mhsa", "seconds": 20.0, "median_s": 2.0,
    ...          "median_cpu_s": 1.5, "peak_mem_bytes": 2**20, "time_ratio": 1.0,
    ...          "cpu_ratio": 1.0, "mem_ratio": 1.0}]
    >>> table = csv_table(recs).splitlines()
    >>> table[0].split(",")[:7]
    ['seconds', 'w_mhsa_time_s', 'w_mhsa_cpu_s', 'w_mhsa_peak_mib', 'w_mhsa_time_ratio', 'w_mhsa_cpu_ratio', 'w_mhsa_mem_ratio']
    >>> table[1]
    '20,2,1.5,1,1,1,1,,,'
    """
    names = sorted({series(r) for r in records})
    columns = ["seconds", *(f"{name}_{m}" for name in names for m in METRICS)]
    rows: dict[float, dict[str, str]] = {}
    for r in records:
        row = rows.setdefault(r["seconds"], {"seconds": f"{r['seconds']:g}"})
        if measured(r):
            for name, value in point_metrics(r).items():
                row[f"{series(r)}_{name}"] = f"{value:.6g}"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for seconds in sorted(rows):
        writer.writerow(rows[seconds])
    return buffer.getvalue()


def log_mlflow(
    uri: str, experiment: str, meta: dict[str, Any], records: list[dict], files: list[Path]
) -> str:
    """Log the run to MLflow (params, one metric series per point, the output files).

    Metrics are named ``<objective>.<mixer>.<metric>`` (``<mixer>_eager`` in the eager
    mode) with the length in seconds as the
    step, so MLflow draws each against the input length.

    Arguments
    ---------
    uri, experiment : str
        The tracking server and the experiment of the run.
    meta : dict
        The run's description (``pretrain.json``'s ``meta``), logged as parameters.
    records : list of dict
        The points; the measured ones become metrics.
    files : list of Path
        Logged as artifacts.

    Returns
    -------
    str
        The run id.
    """
    from smx.tracking import git_commit, log_series_run

    tags = {"smx.bench": "pretrain", "smx.role": "bench", "git_commit": git_commit()}
    points = [
        (
            round(r["seconds"]),
            {f"{series(r).replace('_', '.', 1)}.{k}": v for k, v in point_metrics(r).items()},
        )
        for r in records
        if measured(r)
    ]
    return log_series_run(uri, experiment, "bench-pretrain", tags, meta, points, files)


if __name__ == "__main__":
    main_point()
