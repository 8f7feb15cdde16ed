"""``smx bench``: speed and memory benchmarks.

Every measuring command runs the same steps: check its arguments (one sentence and exit 2
on a mistake), measure each point in a fresh process with one progress line per point,
write ``<name>.json`` (and its figure or CSV) atomically, print its table, and, with
``--docs``, rewrite its block of a Markdown file (:mod:`smx.bench.docs`).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from smx.bench.pretrain import DEFAULT_KINDS, DEFAULT_LENGTHS_S, DEFAULT_STEP_BUDGET_S, plot_time
from smx.bench.tables import BenchTable
from smx.config import STREAMABLE_MIXERS

bench_app = typer.Typer(
    help="Speed and memory benchmarks, each point in a fresh process.\n\nExample: smx bench mixers --lengths 5,20,80",
    no_args_is_help=True,
)
#: the width of the tables where stdout is no terminal (a DVC stage, a CI log): at 80
#: columns (rich's default there, or a COLUMNS=80 some launchers set) every cell of a
#: benchmark table wraps
LOG_WIDTH = 160
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else LOG_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_USER = 2

#: options shared by the benchmark commands
DeviceOpt = Annotated[str, typer.Option(help="cpu or cuda.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(help="Intra-op threads per measurement process (default: one per core)."),
]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile", help="torch.compile the encoder blocks (compiled in the untimed warm-up)."
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(help="Benchmark config (default: configs/bench_wav2vec2.yaml)."),
]
DocsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Also rewrite this run's block `<!-- begin: bench-<name> -->` of this Markdown "
        "file (e.g. docs/benchmarks.md) with its table and figure."
    ),
]


def _out_opt(text: str) -> Any:
    """The ``--out`` option (the output folder) with its help text."""
    return typer.Option("--out", help=text)


# --------------------------------------------------------------------------- shared steps


@contextmanager
def _user_errors(command: str) -> Iterator[None]:
    """Turn a bad argument or config (ValueError, ConfigError) into one sentence and exit 2."""
    from smx.yamlio import ConfigError

    try:
        yield
    except ConfigError as exc:
        for issue in exc.issues:
            err.print(f"smx bench {command}: {issue}", markup=False)
        raise typer.Exit(EXIT_USER) from None
    except ValueError as exc:
        err.print(f"smx bench {command}: {exc}", markup=False)
        raise typer.Exit(EXIT_USER) from None


def _csv(value: str, cast: type, name: str) -> list:
    try:
        items = [cast(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{name} must be a comma-separated list, got {value!r}") from None
    if not items:
        raise typer.BadParameter(f"{name} must not be empty")
    return items


def _floats(value: str, name: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ValueError(
            f"{name}: must be comma-separated numbers of seconds, got {value!r}"
        ) from None


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _config(path: Path | None, objective: str) -> tuple[Path, Any]:
    """``(path, Params)`` of a benchmark config; the bundled one of ``objective`` by default."""
    from smx.bench.common import default_config, load_bench_config

    path = path or default_config(objective)
    return path, load_bench_config(path)


def _tracking_uri(uri: str | None) -> str | None:
    """The MLflow URI to log to (option, else $MLFLOW_TRACKING_URI, else None), checked.

    ``none`` as the option logs nothing, even where $MLFLOW_TRACKING_URI is set.
    """
    from pydantic import ValidationError

    from smx.config import TrackingCfg
    from smx.tracking import TrackingUnavailable, check_tracking_uri, resolve_tracking_uri

    if uri is not None and uri.strip().lower() == "none":
        return None
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    if uri is None:
        return None
    try:
        resolved = resolve_tracking_uri(TrackingCfg(uri=uri))
        check_tracking_uri(resolved)
    except ValidationError as exc:
        raise ValueError(f"--tracking-uri: {exc.errors()[0]['msg']}") from None
    except TrackingUnavailable as exc:
        raise ValueError(str(exc)) from None
    return resolved


def _check_docs(
    docs: Path | None, benchmark: str, compiled: bool = False, modes: bool = False
) -> None:
    """Before measuring: the ``--docs`` file must hold the run's block."""
    from smx.bench.docs import block_name, check_block

    if docs is not None:
        check_block(docs, block_name(benchmark, compiled, modes))


def _progress(describe: Callable[[dict], str], total: int | None = None) -> Callable[[dict], None]:
    """A progress callback: one stderr line per point, ``[done/total]`` first when counted."""
    done = 0

    def report(rec: dict) -> None:
        nonlocal done
        done += 1
        counter = f"[{done}/{total}] " if total is not None else ""
        err.print(counter + describe(rec), markup=False)

    return report


def _result(bench_meta: dict[str, Any], records: list[dict], **extra: Any) -> dict[str, Any]:
    """What ``<name>.json`` holds: the run's description, the machine, and the records."""
    meta = {"bench": bench_meta, "machine": platform.platform(), "cpus": os.cpu_count(), **extra}
    return {"meta": meta, "records": records}


def _save(
    out_dir: Path, name: str, data: dict[str, Any], **extras: Callable[[Path], None]
) -> list[Path]:
    """Write ``<name>.json`` and every extra output ``<name>.<ext>`` atomically; their paths."""
    from smx.atomic import write_json

    json_path = out_dir / f"{name}.json"
    write_json(json_path, data)
    paths = [json_path]
    for ext, write in extras.items():
        paths.append(out_dir / f"{name}.{ext}")
        write(paths[-1])
    return paths


def _console(table: BenchTable) -> Table:
    """A benchmark table as a rich table."""
    shown = Table(title=table.title)
    for col in table.columns:
        shown.add_column(col, overflow="fold")
    for row in table.rows:
        shown.add_row(*row)
    return shown


def _listing(paths: list[Path]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    names = [str(p) for p in paths]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def _finish(name: str, files: list[Path], data: dict[str, Any], docs: Path | None) -> None:
    """Print the run's table and where its outputs went; rewrite its ``--docs`` block."""
    from smx.bench.docs import update_docs
    from smx.bench.tables import CONSOLE_TABLES

    out.print(_console(CONSOLE_TABLES[name](data["meta"], data["records"])))
    out.print(f"wrote {_listing(files)}")
    if docs is not None:
        with _user_errors(name):
            block = update_docs(docs, files[0])
        out.print(f"updated block `{block}` of {docs}")


# --------------------------------------------------------------------------- mixers

MixerKindsOpt = Annotated[
    str,
    typer.Option(help="Mixers, comma-separated (mhsa_relpos = MHSA with relative positions)."),
]
MixerScopesOpt = Annotated[
    str, typer.Option(help="mixer (the mixer alone), encoder (a full encoder), or both.")
]
FrontendOpt = Annotated[
    str,
    typer.Option(
        help="Front-end whose frame rate converts seconds to frames: mel_cnn (20 ms) or conv2d (40 ms)."
    ),
]


def _mixer_lists(kinds: str, scopes: str) -> tuple[list[str], list[str]]:
    """The ``--kinds`` and ``--scopes`` of ``smx bench mixers``, checked."""
    from smx.bench.mixers import BENCH_KINDS

    kind_list = _csv(kinds, str, "kinds")
    unknown = [k for k in kind_list if k not in BENCH_KINDS]
    if unknown:
        raise typer.BadParameter(
            f"unknown mixer kind(s) {unknown}; choose from {list(BENCH_KINDS)}",
            param_hint="--kinds",
        )
    scope_list = _csv(scopes, str, "scopes")
    if set(scope_list) - {"mixer", "encoder"}:
        raise typer.BadParameter("scopes must be mixer, encoder or both", param_hint="--scopes")
    return kind_list, scope_list


def _mixers_point(rec: dict) -> str:
    what = (
        rec["error"]
        if "error" in rec
        else f"{rec['median_s']:.3f} s, {rec['peak_mem_bytes'] / 2**20:.0f} MiB"
    )
    return f"{rec['scope']} {rec['kind']} {rec['seconds']:g} s ({rec['frames']} frames): {what}"


@bench_app.command("mixers")
def mixers(
    lengths: Annotated[
        str, typer.Option(help="Input lengths in seconds of audio, comma-separated.")
    ] = "5,10,20,40,80",
    kinds: MixerKindsOpt = ",".join(
        ["summarymixing", "mhsa", "mhsa_relpos", "fastformer", "hypermixing", "mamba"]
    ),
    scopes: MixerScopesOpt = "mixer,encoder",
    d_model: Annotated[int, typer.Option(help="Model width.")] = 256,
    layers: Annotated[int, typer.Option(help="Encoder layers.")] = 12,
    block: Annotated[
        str, typer.Option(help="conformer, transformer or branchformer.")
    ] = "conformer",
    frontend: FrontendOpt = "mel_cnn",
    repeats: Annotated[
        int, typer.Option(min=1, help="Timed repeats per point (the median is reported).")
    ] = 3,
    device: DeviceOpt = "cpu",
    out_dir: Annotated[Path, _out_opt("Output folder for mixers.json and mixers.png.")] = Path(
        "reports/bench"
    ),
    docs: DocsOpt = None,
) -> None:
    """Forward+backward time and peak memory of each mixer, alone and in a full encoder.

    Example: smx bench mixers --lengths 5,20,80 --kinds summarymixing,mhsa --scopes encoder
    """
    from smx.bench.mixers import MixerBench, plot, ratios, run

    kind_list, scope_list = _mixer_lists(kinds, scopes)
    bench = MixerBench(
        lengths_s=_csv(lengths, float, "lengths"),
        kinds=kind_list,
        scopes=scope_list,
        d_model=d_model,
        num_layers=layers,
        block=block,
        frontend=frontend,
        repeats=repeats,
        device=device,
    )
    with _user_errors("mixers"):
        _check_docs(docs, "mixers")
    total = len(bench.lengths_s) * len(kind_list) * len(scope_list)
    records = ratios(run(bench, _progress(_mixers_point, total)))
    data = _result(bench.__dict__, records, processor=platform.processor())
    files = _save(out_dir, "mixers", data, png=lambda path: plot(records, path))
    _finish("mixers", files, data, docs)


# --------------------------------------------------------------------------- pretrain

ConfigsOpt = Annotated[
    str | None,
    typer.Option(
        help="Benchmark configs, comma-separated, one per objective (ssl.kind names it); "
        "default: configs/bench_wav2vec2.yaml,configs/bench_bestrq.yaml."
    ),
]
VariantsOpt = Annotated[
    str,
    typer.Option(
        help="Variants (mixers), comma-separated; each must be a variant of every config "
        "('none': no token mixing, the floor)."
    ),
]
StepBudgetOpt = Annotated[
    float,
    typer.Option(
        help="Skip a point whose step time, projected from the same mixer's previous "
        "length, exceeds this many seconds (Mamba's CPU scan at 80 s); never MHSA nor 'none'."
    ),
]
TrackingOpt = Annotated[
    str | None,
    typer.Option(
        help="Log an MLflow run here (default: $MLFLOW_TRACKING_URI, else no run; "
        "'none': no MLflow run, even where that variable is set)."
    ),
]


def _pretrain_configs(configs: str | None) -> list[tuple[str, Path, Any]]:
    """``(objective, path, Params)`` of each config; the bundled ones by default."""
    from smx.bench.common import BENCH_CONFIGS

    loaded = (
        [_config(Path(p), "") for p in _names(configs)]
        if configs
        else [_config(None, objective) for objective in BENCH_CONFIGS]
    )
    objectives = [params.ssl.kind for _, params in loaded]
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"configs: give one config per objective, got objectives {objectives}")
    return [(params.ssl.kind, path, params) for path, params in loaded]


def _pretrain_point(rec: dict) -> str:
    what = (
        f"{rec['median_s']:.2f} s, {rec['peak_mem_bytes'] / 2**20:.0f} MiB"
        if "median_s" in rec
        else rec.get("skipped") or rec.get("error")
    )
    return f"{rec['objective']} {rec['kind']} {rec['seconds']:g} s ({rec['frames']} frames): {what}"


def _pretrain_files(out_dir: Path, data: dict[str, Any], threads: int | None) -> list[Path]:
    """Write pretrain.json, .png (time and memory against length) and .csv (DVC plots)."""
    from smx.atomic import write_text
    from smx.bench.mixers import plot
    from smx.bench.pretrain import csv_table

    records = data["records"]
    shown = data["meta"]["bench"]["modes"][-1]  # the figure: the last mode (default)
    plotted = [r for r in records if r["mode"] == shown]
    return _save(
        out_dir,
        "pretrain",
        data,
        png=lambda path: plot(plotted, path, group="objective", **plot_time(threads)),
        csv=lambda path: write_text(path, csv_table(records)),
    )


def _log_pretrain(uri: str, experiment: str, data: dict[str, Any], files: list[Path]) -> None:
    """Log the run to MLflow and say where."""
    from smx.bench.pretrain import log_mlflow

    run_id = log_mlflow(uri, experiment, data["meta"], data["records"], files)
    out.print(f"MLflow run {run_id} in experiment {experiment!r} at {uri}")


@bench_app.command("pretrain")
def pretrain(
    configs: ConfigsOpt = None,
    kinds: VariantsOpt = ",".join(DEFAULT_KINDS),
    lengths: Annotated[
        str, typer.Option(help="Utterance lengths in seconds, comma-separated.")
    ] = ",".join(f"{s:g}" for s in DEFAULT_LENGTHS_S),
    batch: Annotated[int, typer.Option(help="Utterances per step.")] = 1,
    repeats: Annotated[int, typer.Option(help="Timed steps per point (median reported).")] = 3,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed steps before them.")] = 1,
    step_budget: StepBudgetOpt = DEFAULT_STEP_BUDGET_S,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    compile_: CompileOpt = False,
    modes: Annotated[
        str,
        typer.Option(
            help="eager (no recomputation, no compilation), default (training's defaults), "
            "or both, comma-separated."
        ),
    ] = "eager,default",
    tracking_uri: TrackingOpt = None,
    out_dir: Annotated[Path, _out_opt("Folder for pretrain.json, .png and .csv.")] = Path(
        "reports/bench"
    ),
    docs: DocsOpt = None,
) -> None:
    """Time and peak memory of a full pre-training step for each objective and mixer.

    Example: smx bench pretrain --kinds summarymixing,mhsa --lengths 20,80 --out docs/bench
    """
    from smx.bench.pretrain import PretrainBench, run

    with _user_errors("pretrain"):
        bench = PretrainBench(
            configs=_pretrain_configs(configs),
            kinds=_names(kinds),
            lengths_s=_floats(lengths, "lengths"),
            batch=batch,
            repeats=repeats,
            warmup=warmup,
            step_budget_s=step_budget,
            device=device,
            threads=threads,
            compile=compile_,
            modes=_names(modes),
        )
        uri = _tracking_uri(tracking_uri)
        _check_docs(docs, "pretrain", compile_, len(bench.modes) > 1)
    total = len(bench.configs) * len(bench.modes) * len(bench.kinds) * len(bench.lengths_s)
    data = _result(bench.meta(), run(bench, _progress(_pretrain_point, total)))
    files = _pretrain_files(out_dir, data, bench.threads)
    _finish("pretrain", files, data, docs)
    if uri is not None:
        _log_pretrain(uri, bench.configs[0][2].tracking.experiment, data, files)


# --------------------------------------------------------------------------- profile


@bench_app.command("profile")
def profile(
    config: ConfigOpt = None,
    kinds: Annotated[str, typer.Option(help="Variants (mixers), comma-separated.")] = (
        "summarymixing,mhsa,none"
    ),
    seconds: Annotated[float, typer.Option(help="Utterance length in seconds.")] = 20.0,
    top: Annotated[int, typer.Option(help="Operators listed per mixer.")] = 15,
    eager: Annotated[
        bool, typer.Option("--eager", help="Profile the eager step instead of the defaults.")
    ] = False,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    out_dir: Annotated[Path, _out_opt("Folder for profile.json.")] = Path("reports/bench"),
    docs: DocsOpt = None,
) -> None:
    """The operators that take a pre-training step's time, per mixer (torch.profiler).

    Example: smx bench profile --kinds summarymixing,none --seconds 20 --threads 1
    """
    from smx.bench.profile import ProfileBench, run

    with _user_errors("profile"):
        path, params = _config(config, "wav2vec2")
        bench = ProfileBench(path, params, _names(kinds), seconds, top=top, fast=not eager,
                             device=device, threads=threads)  # fmt: skip
        _check_docs(docs, "profile")
    done = _progress(lambda r: f"{r['kind']}: {r.get('error', 'profiled')}")
    data = _result(bench.meta(), run(bench, done))
    _finish("profile", _save(out_dir, "profile", data), data, docs)


# --------------------------------------------------------------------------- stream

LeftChunksOpt = Annotated[
    str,
    typer.Option(
        help="Visible previous chunks: a number, 'all', or 'config' (model.streaming.eval_left)."
    ),
]
WindowOpt = Annotated[
    float, typer.Option(help="RTF at a position = median over the chunks of this many seconds.")
]


def _left_chunks(value: str) -> int | str | None:
    """``--left-chunks``: None for 'all', 'config' as it is, else an integer."""
    if value in ("all", "config"):
        return None if value == "all" else value
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"left_chunks: must be 'all', 'config' or an integer >= 0, got {value!r}"
        ) from None


def _stream_point(rec: dict) -> str:
    what = f"{rec['wall_s']:.1f} s wall" if "wall_s" in rec else rec.get("error")
    return f"{rec['kind']}: {what}"


@bench_app.command("stream")
def stream(
    config: ConfigOpt = None,
    kinds: Annotated[str, typer.Option(help="Streamable mixers, comma-separated.")] = ",".join(
        STREAMABLE_MIXERS
    ),
    seconds: Annotated[float, typer.Option(help="Length of the streamed utterance.")] = 300.0,
    chunk: Annotated[
        int | None, typer.Option(help="Frames per chunk (default: model.streaming.eval_chunk).")
    ] = None,
    left_chunks: LeftChunksOpt = "config",
    warmup: Annotated[float, typer.Option(help="Seconds streamed untimed first.")] = 5.0,
    window: WindowOpt = 5.0,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    out_dir: Annotated[Path, _out_opt("Folder for stream.json and stream.png.")] = Path(
        "reports/bench"
    ),
    docs: DocsOpt = None,
) -> None:
    """Real-time factor of chunk-by-chunk streaming against the position in the utterance.

    Example: smx bench stream --seconds 300 --left-chunks all --out docs/bench
    """
    from smx.bench.stream import StreamBench, plot, run

    with _user_errors("stream"):
        path, params = _config(config, "wav2vec2")
        bench = StreamBench(
            config=path,
            params=params,
            kinds=_names(kinds),
            seconds=seconds,
            chunk=chunk,
            left_chunks=_left_chunks(left_chunks),
            warmup_s=warmup,
            window_s=window,
            device=device,
            threads=threads,
        )
        _check_docs(docs, "stream")
    data = _result(bench.meta(), run(bench, _progress(_stream_point)))
    meta, records = data["meta"], data["records"]
    files = _save(out_dir, "stream", data, png=lambda p: plot(records, meta["bench"], p))
    _finish("stream", files, data, docs)


# --------------------------------------------------------------------------- roofline

RooflineScopesOpt = Annotated[
    str, typer.Option(help="mixer (one mixer layer), encoder (the full encoder), or both.")
]


def _roofline_point(rec: dict) -> str:
    what = f"{rec['efficiency']:.0%} of matmul FLOP/s" if "efficiency" in rec else rec["error"]
    return f"{rec['scope']} {rec['kind']} {rec['seconds']:g} s: {what}"


@bench_app.command("roofline")
def roofline(
    config: ConfigOpt = None,
    kinds: Annotated[str, typer.Option(help="Mixers, comma-separated.")] = "summarymixing",
    scopes: RooflineScopesOpt = "mixer,encoder",
    lengths: Annotated[str, typer.Option(help="Input lengths in seconds, comma-separated.")] = "80",
    repeats: Annotated[int, typer.Option(help="Timed repeats (median reported).")] = 3,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    compile_: CompileOpt = False,
    out_dir: Annotated[Path, _out_opt("Folder for roofline.json.")] = Path("reports/bench"),
    docs: DocsOpt = None,
) -> None:
    """Achieved FLOP/s (forward+backward) against plain matmuls of the same shapes.

    Example: smx bench roofline --scopes mixer,encoder --lengths 80 --out docs/bench
    """
    from smx.bench.roofline import RooflineBench, run

    with _user_errors("roofline"):
        path, params = _config(config, "wav2vec2")
        bench = RooflineBench(
            config=path,
            params=params,
            kinds=_names(kinds),
            scopes=_names(scopes),
            lengths_s=_floats(lengths, "lengths"),
            repeats=repeats,
            device=device,
            threads=threads,
            compile=compile_,
        )
        _check_docs(docs, "roofline", compile_)
    data = _result(bench.meta(), run(bench, _progress(_roofline_point)))
    files = _save(out_dir, "roofline", data)
    _finish("roofline", files, data, docs)


# --------------------------------------------------------------------------- gpu


@bench_app.command(
    "gpu",
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def gpu(ctx: typer.Context) -> None:
    """Check and measure the GPU path (options: smx bench gpu --help; scripts/gpu_check.sh).

    Example: smx bench gpu --device cpu --quick
    """
    from smx.bench.gpu import main

    raise typer.Exit(main(ctx.args))


# --------------------------------------------------------------------------- render


@bench_app.command("render")
def render(
    results: Annotated[
        list[Path],
        typer.Argument(
            help="Stored results, as the commands write them: mixers.json, pretrain.json, "
            "stream.json or roofline.json (a .png beside one is shown as its figure)."
        ),
    ],
    docs: Annotated[
        Path, typer.Option(help="Markdown file whose bench-<name> blocks are rewritten.")
    ] = Path("docs/benchmarks.md"),
) -> None:
    """Rewrite the docs blocks of stored benchmark results, without measuring again.

    Example: smx bench render docs/bench/*.json docs/bench/compiled/*.json
    """
    from smx.bench.docs import update_docs

    with _user_errors("render"):
        if not docs.is_file():
            raise ValueError(f"--docs: {docs} does not exist")
        for result in results:
            block = update_docs(docs, result)
            out.print(f"updated block `{block}` of {docs} from {result}")
