"""Read every upstream output of the pipeline into one typed :class:`Study`.

Files are found under the project folder ``root`` at the paths the DVC stages write:

    metrics/pretrain/<variant>.json, plots/pretrain/<variant>.csv   pretrain@<variant>
    metrics/probe/<variant>/<task>.json                              probe@<variant>-<task>
    metrics/finetune/<variant>.json                                  finetune@<variant>
    reports/bench/pretrain.json                                      bench

A variant whose encoder was imported from a SpeechBrain checkpoint (``init: {speechbrain:
DIR}``) has metrics saying so (``{"init": "speechbrain", "source": DIR, "steps": 0, ...}``), a
history CSV with its header only and no registered model: its :class:`Pretrain` records where
it came from and holds no training numbers.

A missing file raises :class:`ReportError` naming the file and the stage that makes it; a
malformed one names the file and the key.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smx.config import Params

UPSTREAMS = ("pretrained", "random_init", "fbank")
#: the one kind of imported encoder the pretrain stage writes (``init`` of its metrics)
IMPORT_KIND = "speechbrain"
INITS = ("pretrained", "random_init")
SPLITS = ("dev", "test")


class ReportError(ValueError):
    """An input of the report is missing or malformed: one sentence naming the file."""


@dataclass(frozen=True)
class Source:
    """One input file (relative to the project) and the DVC stage that writes it.

    Example
    -------
    >>> str(Source("metrics/probe/mhsa/asr.json", "probe@mhsa-asr").missing())
    'metrics/probe/mhsa/asr.json is missing; run `dvc repro probe@mhsa-asr`'
    """

    path: str
    stage: str

    def missing(self) -> ReportError:
        return ReportError(f"{self.path} is missing; run `dvc repro {self.stage}`")

    def bad(self, key: str, why: str) -> ReportError:
        return ReportError(f"{self.path}: {key} {why}; re-run `dvc repro {self.stage}`")


def pretrain_source(variant: str) -> Source:
    return Source(f"metrics/pretrain/{variant}.json", f"pretrain@{variant}")


def curve_source(variant: str) -> Source:
    return Source(f"plots/pretrain/{variant}.csv", f"pretrain@{variant}")


def probe_source(variant: str, task: str) -> Source:
    return Source(f"metrics/probe/{variant}/{task}.json", f"probe@{variant}-{task}")


def finetune_source(variant: str) -> Source:
    return Source(f"metrics/finetune/{variant}.json", f"finetune@{variant}")


BENCH_SOURCE = Source("reports/bench/pretrain.json", "bench")


def sources(variants: list[str], tasks: list[str]) -> list[Source]:
    """Every input the report reads, in reading order (the report stage's deps).

    Example
    -------
    >>> [s.path for s in sources(["sm"], ["asr"])]  # doctest: +NORMALIZE_WHITESPACE
    ['metrics/pretrain/sm.json', 'plots/pretrain/sm.csv', 'metrics/probe/sm/asr.json',
     'metrics/finetune/sm.json', 'reports/bench/pretrain.json']
    """
    out: list[Source] = []
    for v in variants:
        out += [pretrain_source(v), curve_source(v)]
        out += [probe_source(v, t) for t in tasks]
        out.append(finetune_source(v))
    return [*out, BENCH_SOURCE]


# ------------------------------------------------------------------------------ reading


def read_json(root: Path, source: Source) -> Any:
    """The parsed JSON of ``source``; missing or unparsable files raise :class:`ReportError`."""
    path = root / source.path
    if not path.is_file():
        raise source.missing()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportError(
            f"{source.path} is not valid JSON ({exc}); re-run `dvc repro {source.stage}`"
        ) from None


def need(data: Any, key: str, source: Source, kind: type = float) -> Any:
    """The value at the dotted ``key`` of ``data``, checked to be a ``kind``.

    Example
    -------
    >>> need({"a": {"b": 2}}, "a.b", BENCH_SOURCE)
    2.0
    >>> need({"a": {}}, "a.b", BENCH_SOURCE)
    Traceback (most recent call last):
    ...
    smx.report.inputs.ReportError: reports/bench/pretrain.json: a.b is missing; re-run `dvc repro bench`
    """
    value = data
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise source.bad(key, "is missing")
        value = value[part]
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise source.bad(key, f"is {value!r}, expected a number")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise source.bad(key, f"is {value!r}, expected an integer")
        return value
    if not isinstance(value, kind):
        raise source.bad(key, f"is {value!r}, expected a {kind.__name__}")
    return value


# ------------------------------------------------------------------------------ summary


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation over seeds (std 0 for a single seed)."""

    mean: float
    std: float
    n: int = 1

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f}"


@dataclass(frozen=True)
class Pretrain:
    """A variant's pre-training: final numbers and the loss curve.

    An imported encoder (``imported_from`` set) was not pre-trained here: every training
    number is None, its curve empty and its steps 0.
    """

    variant: str
    mixer: str
    loss: float | None
    first_loss: float | None
    accuracy: float | None
    steps: int
    audio_hours: float | None
    train_seconds: float | None
    audio_seconds_per_second: float | None
    peak_memory_mb: float | None
    step_time_s: float | None  # median of the logged steps' times
    curve: list[tuple[int, float]]  # (step, loss)
    model_uri: str | None = None  # the MLflow model of the encoder (registry.json)
    #: its registered name's newest version, ``models:/<name>@latest`` (None: not registered)
    alias_uri: str | None = None
    #: the SpeechBrain checkpoint folder the encoder was imported from (None: pre-trained here)
    imported_from: str | None = None

    @property
    def imported(self) -> bool:
        return self.imported_from is not None


@dataclass(frozen=True)
class Probe:
    """A variant's probing of one task: ``scores[probe][upstream][metric]``."""

    variant: str
    task: str
    primary_metric: str
    better: str  # "lower" | "higher"
    seeds: int
    scores: dict[str, dict[str, dict[str, Spread]]]
    #: the primary score of an upstream that carries nothing (None: not recorded)
    chance: float | None = None

    def primary(self, probe: str, upstream: str) -> Spread:
        return self.scores[probe][upstream][self.primary_metric]


@dataclass(frozen=True)
class FinetuneInit:
    """CTC fine-tuning from one initialisation."""

    wer: dict[str, float]  # split -> WER
    cer: dict[str, float]
    first_loss: float
    loss: float
    steps: int
    freeze_steps: int
    train_seconds: float
    utterances: dict[str, int]
    #: streaming CER: chunk size in seconds, as written (e.g. ``"0.64"``) -> split -> CER;
    #: empty when streaming evaluation did not run
    stream_cer: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Finetune:
    variant: str
    inits: dict[str, FinetuneInit]


@dataclass(frozen=True)
class Bench:
    """``smx bench pretrain``: its meta data and records (as written, ratios included)."""

    meta: dict[str, Any]
    records: list[dict[str, Any]]

    @property
    def threads(self) -> int | None:
        return self.meta.get("bench", {}).get("threads")


@dataclass(frozen=True)
class Study:
    """Everything the report shows, variants and tasks in the order of params.yaml."""

    variants: list[str]
    tasks: list[str]
    pretrain: dict[str, Pretrain]
    probes: dict[tuple[str, str], Probe]  # (variant, task) -> result
    finetune: dict[str, Finetune]
    bench: Bench
    inputs: list[str] = field(default_factory=list)
    #: DVC stage -> wall seconds it last took (``metrics/time``; stages without a record left
    #: out), in pipeline order
    stage_times: dict[str, float] = field(default_factory=dict)
    #: the ASR metric comparisons are made on (``downstream.asr_metric``)
    asr_metric: str = "wer"


# ------------------------------------------------------------------------------ parsers


def read_pretrain(root: Path, variant: str, mixer: str) -> Pretrain:
    """``metrics/pretrain/<v>.json`` and the history ``plots/pretrain/<v>.csv``."""
    src = pretrain_source(variant)
    data = read_json(root, src)
    if isinstance(data, dict) and "init" in data:
        return read_import(root, variant, mixer, data)
    rows = read_curve(root, curve_source(variant))
    times = [t for _, _, t in rows]
    accuracy = need(data, "accuracy", src) if "accuracy" in data else None
    model_uri, alias_uri = read_model_uris(root, variant)
    return Pretrain(
        variant=variant,
        mixer=mixer,
        loss=need(data, "loss", src),
        first_loss=need(data, "first_loss", src),
        accuracy=accuracy,
        steps=need(data, "steps", src, int),
        audio_hours=need(data, "audio_hours", src),
        train_seconds=need(data, "train_seconds", src),
        audio_seconds_per_second=need(data, "audio_seconds_per_second", src),
        peak_memory_mb=need(data, "peak_memory_mb", src),
        step_time_s=statistics.median(times),
        curve=[(s, loss) for s, loss, _ in rows],
        model_uri=model_uri,
        alias_uri=alias_uri,
    )


def read_import(root: Path, variant: str, mixer: str, data: dict[str, Any]) -> Pretrain:
    """The :class:`Pretrain` of an imported encoder from its metrics ``data``
    (:func:`smx.stages.pretrain.import_variant`): where it came from, no training numbers.

    Example
    -------
    >>> read_import(Path("."), "sm", "summarymixing", {"init": "hf", "source": "x"})
    Traceback (most recent call last):
    ...
    smx.report.inputs.ReportError: metrics/pretrain/sm.json: init is 'hf', expected 'speechbrain'; re-run `dvc repro pretrain@sm`
    """
    src = pretrain_source(variant)
    init = need(data, "init", src, str)
    if init != IMPORT_KIND:
        raise src.bad("init", f"is {init!r}, expected {IMPORT_KIND!r}")
    source = need(data, "source", src, str)
    if not source:
        raise src.bad("source", "is empty, expected the imported folder")
    steps = need(data, "steps", src, int)
    curve = curve_source(variant)
    if not (root / curve.path).is_file():
        raise curve.missing()
    return Pretrain(
        variant=variant,
        mixer=mixer,
        loss=None,
        first_loss=None,
        accuracy=None,
        steps=steps,
        audio_hours=None,
        train_seconds=None,
        audio_seconds_per_second=None,
        peak_memory_mb=None,
        step_time_s=None,
        curve=[],
        imported_from=source,
    )


def read_model_uris(root: Path, variant: str) -> tuple[str | None, str | None]:
    """The MLflow URIs of a variant's encoder in ``models/<v>/registry.json``: the model's
    and its registered name's newest version (each None if absent).

    The first is the registered version (``models:/<name>/<version>``) when the encoder was
    registered, else the run's model (``runs:/...``); the second ``models:/<name>@latest``.
    """
    src = Source(f"models/{variant}/registry.json", f"pretrain@{variant}")
    if not (root / src.path).is_file():
        return None, None
    data = read_json(root, src)
    uri = need(data, "uri", src, str) if "uri" in data else need(data, "model_uri", src, str)
    alias = data.get("alias_uri")
    return str(uri), alias if isinstance(alias, str) else None


def read_curve(root: Path, src: Source) -> list[tuple[int, float, float]]:
    """(step, loss, step_time) of every logged step of a pre-training history CSV."""
    path = root / src.path
    if not path.is_file():
        raise src.missing()
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        for column in ("step", "loss", "step_time"):
            if column not in columns:
                raise src.bad(f"column {column!r}", "is missing")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                values = (int(float(row["step"])), float(row["loss"]), float(row["step_time"]))
            except (TypeError, ValueError):
                raise src.bad(
                    f"line {line}", "has a step, loss or step_time that is not a number"
                ) from None
            rows.append(values)
    if not rows:
        raise src.bad("the history", "has no rows")
    return rows


def spread(data: Any, key: str, src: Source) -> Spread:
    """The ``{mean, std, values}`` entry at ``key``."""
    values = need(data, key, src, dict).get("values")
    n = len(values) if isinstance(values, list) else 1
    return Spread(need(data, f"{key}.mean", src), need(data, f"{key}.std", src), n)


def read_probe(root: Path, variant: str, task: str) -> Probe:
    """``metrics/probe/<v>/<task>.json`` (format: :mod:`smx.downstream.run`)."""
    src = probe_source(variant, task)
    data = read_json(root, src)
    if need(data, "task", src, str) != task:
        raise src.bad("task", f"is {data['task']!r}, expected {task!r}")
    primary = need(data, "primary_metric", src, str)
    better = need(data, "better", src, str)
    if better not in ("lower", "higher"):
        raise src.bad("better", f"is {better!r}, expected 'lower' or 'higher'")
    probes = need(data, "probes", src, dict)
    if not probes:
        raise src.bad("probes", "is empty")
    scores: dict[str, dict[str, dict[str, Spread]]] = {}
    for probe in probes:
        scores[probe] = {}
        for upstream in UPSTREAMS:
            key = f"probes.{probe}.{upstream}.metrics"
            names = need(data, key, src, dict)
            if primary not in names:
                raise src.bad(f"{key}.{primary}", "is missing")
            scores[probe][upstream] = {m: spread(data, f"{key}.{m}", src) for m in names}
    return Probe(
        variant=variant,
        task=task,
        primary_metric=primary,
        better=better,
        seeds=len(need(data, "seeds", src, list)),
        scores=scores,
        chance=need(data, "chance", src) if "chance" in data else None,
    )


def read_finetune(root: Path, variant: str) -> Finetune:
    """``metrics/finetune/<v>.json``: WER/CER on dev and test per initialisation."""
    src = finetune_source(variant)
    data = read_json(root, src)
    inits = {}
    for init in INITS:
        p = f"inits.{init}"
        inits[init] = FinetuneInit(
            wer={s: need(data, f"{p}.{s}.wer", src) for s in SPLITS},
            cer={s: need(data, f"{p}.{s}.cer", src) for s in SPLITS},
            first_loss=need(data, f"{p}.first_loss", src),
            loss=need(data, f"{p}.loss", src),
            steps=need(data, f"{p}.steps", src, int),
            freeze_steps=need(data, f"{p}.freeze_steps", src, int),
            train_seconds=need(data, f"{p}.train_seconds", src),
            utterances={s: need(data, f"{p}.utterances.{s}", src, int) for s in ("train", *SPLITS)},
            stream_cer=read_stream_cer(data, p, src),
        )
    return Finetune(variant, inits)


def read_stream_cer(data: Any, prefix: str, src: Source) -> dict[str, dict[str, float]]:
    """The streaming CER of one init: chunk size -> split -> CER, sizes in ascending order.

    Read from the ``stream_<seconds>s_cer`` entries of each split
    (:mod:`smx.downstream.streaming_eval`); none for a mixer that cannot stream.

    Example
    -------
    >>> entry = {"dev": {"cer": 0.3, "stream_1.28s_cer": 0.35, "stream_0.64s_cer": 0.4},
    ...          "test": {"cer": 0.2, "stream_0.64s_cer": 0.5, "stream_0.64s_wer": 0.9}}
    >>> read_stream_cer({"inits": {"sm": entry}}, "inits.sm", Source("m.json", "finetune@sm"))
    {'0.64': {'dev': 0.4, 'test': 0.5}, '1.28': {'dev': 0.35}}
    """
    found: dict[str, dict[str, float]] = {}
    for split in SPLITS:
        for key, value in need(data, f"{prefix}.{split}", src, dict).items():
            if not (key.startswith("stream_") and key.endswith("s_cer")):
                continue
            if not _number(value):  # not need(): the key holds a dot
                raise src.bad(f"{prefix}.{split}.{key}", f"is {value!r}, expected a number")
            found.setdefault(key.removeprefix("stream_").removesuffix("s_cer"), {})[split] = value
    return {k: found[k] for k in sorted(found, key=float)}


def read_bench(root: Path) -> Bench:
    """``reports/bench/pretrain.json`` from ``smx bench pretrain`` (checked record by record)."""
    src = BENCH_SOURCE
    data = read_json(root, src)
    meta = need(data, "meta", src, dict)
    records = need(data, "records", src, list)
    if not records:
        raise src.bad("records", "is empty")
    for i, rec in enumerate(records):
        for key in ("objective", "kind"):
            if not isinstance(rec, dict) or not isinstance(rec.get(key), str):
                raise src.bad(f"records[{i}].{key}", "is missing")
        if not _number(rec.get("seconds")):
            raise src.bad(f"records[{i}].seconds", "is missing or not a number")
        if "median_s" in rec:
            for key in ("median_s", "peak_mem_bytes"):
                if not _number(rec.get(key)):
                    raise src.bad(f"records[{i}].{key}", "is missing or not a number")
    return Bench(meta, records)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def pipeline_stages(variants: list[str], tasks: list[str]) -> list[str]:
    """The DVC stages of a study before ``report``, in the order they run.

    Example
    -------
    >>> pipeline_stages(["sm"], ["asr"])
    ['prepare', 'defaults', 'resolve@sm', 'pretrain@sm', 'finetune@sm', 'baseline@asr', 'probe@sm-asr', 'bench']
    """
    stages = ["prepare", "defaults"]
    for stage in ("resolve", "pretrain", "finetune"):
        stages += [f"{stage}@{v}" for v in variants]
    for task in tasks:
        stages += [f"baseline@{task}", *(f"probe@{v}-{task}" for v in variants)]
    return [*stages, "bench"]


def read_stage_times(root: Path, stages: list[str]) -> dict[str, float]:
    """``metrics/time/<stage>.json`` of each of ``stages`` that has one (written under DVC by
    :func:`smx.stages.common.record_time`): stage -> seconds."""
    times = {}
    for stage in stages:
        src = Source(f"metrics/time/{stage}.json", stage)
        if (root / src.path).is_file():
            times[stage] = need(read_json(root, src), "seconds", src)
    return times


def gather(root: str | Path, params: Params) -> Study:
    """Read every input of the report for ``params.variants`` and ``downstream.tasks``."""
    root = Path(root)
    variants = list(params.variants)
    if not variants:
        raise ReportError("params.yaml defines no `variants`; the report compares variants")
    tasks = list(params.downstream.tasks)
    pretrain = {v: read_pretrain(root, v, params.variant(v).model.mixer.kind) for v in variants}
    probes = {(v, t): read_probe(root, v, t) for v in variants for t in tasks}
    finetune = {v: read_finetune(root, v) for v in variants}
    bench = read_bench(root)
    return Study(
        variants=variants,
        tasks=tasks,
        pretrain=pretrain,
        probes=probes,
        finetune=finetune,
        bench=bench,
        inputs=[s.path for s in sources(variants, tasks)],
        stage_times=read_stage_times(root, pipeline_stages(variants, tasks)),
        asr_metric=params.downstream.asr_metric,
    )
