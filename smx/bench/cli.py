"""``smx bench``: speed and memory benchmarks."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from smx.bench.pretrain import DEFAULT_KINDS, DEFAULT_LENGTHS_S, DEFAULT_STEP_BUDGET_S, plot_time
from smx.config import STREAMABLE_MIXERS

bench_app = typer.Typer(
    help="Speed and memory benchmarks, each point in a fresh process.\n\nExample: smx bench mixers --lengths 5,20,80",
    no_args_is_help=True,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


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


def _csv(value: str, cast: type, name: str) -> list:
    try:
        items = [cast(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{name} must be a comma-separated list, got {value!r}") from None
    if not items:
        raise typer.BadParameter(f"{name} must not be empty")
    return items


@bench_app.command("mixers")
def mixers(
    lengths: Annotated[
        str, typer.Option(help="Input lengths in seconds of audio, comma-separated.")
    ] = "5,10,20,40,80",
    kinds: Annotated[
        str,
        typer.Option(help="Mixers, comma-separated (mhsa_relpos = MHSA with relative positions)."),
    ] = ",".join(["summarymixing", "mhsa", "mhsa_relpos", "fastformer", "hypermixing", "mamba"]),
    scopes: Annotated[
        str, typer.Option(help="mixer (the mixer alone), encoder (a full encoder), or both.")
    ] = "mixer,encoder",
    d_model: Annotated[int, typer.Option(help="Model width.")] = 256,
    layers: Annotated[int, typer.Option(help="Encoder layers.")] = 12,
    block: Annotated[
        str, typer.Option(help="conformer, transformer or branchformer.")
    ] = "conformer",
    frontend: Annotated[
        str,
        typer.Option(
            help="Front-end whose frame rate converts seconds to frames: mel_cnn (20 ms) or conv2d (40 ms)."
        ),
    ] = "mel_cnn",
    repeats: Annotated[
        int, typer.Option(min=1, help="Timed repeats per point (the median is reported).")
    ] = 3,
    device: DeviceOpt = "cpu",
    out_dir: Annotated[
        Path, typer.Option("--out", help="Output folder for mixers.json and mixers.png.")
    ] = Path("reports/bench"),
) -> None:
    """Forward+backward time and peak memory of each mixer, alone and in a full encoder.

    Example: smx bench mixers --lengths 5,20,80 --kinds summarymixing,mhsa --scopes encoder
    """
    from smx.atomic import write_json
    from smx.bench.mixers import BENCH_KINDS, MixerBench, plot, ratios, run

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
    total = len(bench.lengths_s) * len(kind_list) * len(scope_list)
    done = 0

    def progress(rec: dict) -> None:
        nonlocal done
        done += 1
        what = (
            f"{rec['error']}"
            if "error" in rec
            else f"{rec['median_s']:.3f} s, {rec['peak_mem_bytes'] / 2**20:.0f} MiB"
        )
        err.print(
            f"[{done}/{total}] {rec['scope']} {rec['kind']} {rec['seconds']:g} s ({rec['frames']} frames): {what}"
        )

    records = ratios(run(bench, progress))
    meta = {
        "bench": bench.__dict__,
        "machine": platform.platform(),
        "processor": platform.processor(),
    }
    json_path, png_path = out_dir / "mixers.json", out_dir / "mixers.png"
    write_json(json_path, {"meta": meta, "records": records})
    plot(records, png_path)
    table = Table(
        title=f"forward+backward, batch {bench.batch}, d_model {d_model}, {layers}-layer {block} (encoder scope)"
    )
    for col in (
        "scope",
        "mixer",
        "seconds",
        "frames",
        "median s",
        "peak MiB",
        "time / mhsa",
        "mem / mhsa",
    ):
        table.add_column(col)
    for r in records:
        if "error" in r:
            table.add_row(
                r["scope"], r["kind"], f"{r['seconds']:g}", str(r["frames"]), r["error"], "", "", ""
            )
            continue
        table.add_row(
            r["scope"],
            r["kind"],
            f"{r['seconds']:g}",
            str(r["frames"]),
            f"{r['median_s']:.3f}",
            f"{r['peak_mem_bytes'] / 2**20:.1f}",
            f"{r['time_ratio']:.2f}" if "time_ratio" in r else "",
            f"{r['mem_ratio']:.2f}" if "mem_ratio" in r else "",
        )
    out.print(table)
    out.print(f"wrote {json_path} and {png_path}")


# --------------------------------------------------------------------------- shared helpers

EXIT_USER = 2


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


def _config(path: Path | None, objective: str) -> tuple[Path, Any]:
    """``(path, Params)`` of a benchmark config; the bundled one of ``objective`` by default."""
    from smx.bench.common import default_config, load_bench_config

    path = path or default_config(objective)
    return path, load_bench_config(path)


def _floats(value: str, name: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ValueError(
            f"{name}: must be comma-separated numbers of seconds, got {value!r}"
        ) from None


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _tracking_uri(uri: str | None) -> str | None:
    """The MLflow URI to log to (option, else $MLFLOW_TRACKING_URI, else None), checked."""
    import os

    from pydantic import ValidationError

    from smx.config import TrackingCfg
    from smx.tracking import TrackingUnavailable, check_tracking_uri, resolve_tracking_uri

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


def _ratio(rec: dict, key: str) -> str:
    return f"{rec[key]:.2f}" if key in rec else ""


# --------------------------------------------------------------------------- pretrain


@bench_app.command("pretrain")
def pretrain(
    configs: Annotated[
        str | None,
        typer.Option(
            help="Benchmark configs, comma-separated, one per objective (ssl.kind names it); "
            "default: configs/bench_wav2vec2.yaml,configs/bench_bestrq.yaml."
        ),
    ] = None,
    kinds: Annotated[
        str,
        typer.Option(
            help="Variants (mixers), comma-separated; each must be a variant of every config "
            "('none': no token mixing, the floor)."
        ),
    ] = ",".join(DEFAULT_KINDS),
    lengths: Annotated[
        str, typer.Option(help="Utterance lengths in seconds, comma-separated.")
    ] = ",".join(f"{s:g}" for s in DEFAULT_LENGTHS_S),
    batch: Annotated[int, typer.Option(help="Utterances per step.")] = 1,
    repeats: Annotated[int, typer.Option(help="Timed steps per point (median reported).")] = 3,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed steps before them.")] = 1,
    step_budget: Annotated[
        float,
        typer.Option(
            help="Skip a point whose step time, projected from the same mixer's previous "
            "length, exceeds this many seconds (Mamba's CPU scan at 80 s); never MHSA nor 'none'."
        ),
    ] = DEFAULT_STEP_BUDGET_S,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    compile_: CompileOpt = False,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="Log an MLflow run here (default: $MLFLOW_TRACKING_URI; none: no MLflow run)."
        ),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for pretrain.json, .png and .csv.")
    ] = Path("reports/bench"),
) -> None:
    """Time and peak memory of a full pre-training step for each objective and mixer.

    Example: smx bench pretrain --kinds summarymixing,mhsa --lengths 20,80 --out docs/bench
    """
    from smx.atomic import write_json, write_text
    from smx.bench.common import BENCH_CONFIGS
    from smx.bench.mixers import plot
    from smx.bench.pretrain import PretrainBench, csv_table, log_mlflow, run

    with _user_errors("pretrain"):
        paths = [Path(p) for p in _names(configs)] if configs else None
        loaded = (
            [_config(None, objective) for objective in BENCH_CONFIGS]
            if paths is None
            else [_config(p, "") for p in paths]
        )
        objectives = [params.ssl.kind for _, params in loaded]
        if len(set(objectives)) != len(objectives):
            raise ValueError(f"configs: give one config per objective, got objectives {objectives}")
        bench = PretrainBench(
            configs=[(params.ssl.kind, path, params) for path, params in loaded],
            kinds=_names(kinds),
            lengths_s=_floats(lengths, "lengths"),
            batch=batch,
            repeats=repeats,
            warmup=warmup,
            step_budget_s=step_budget,
            device=device,
            threads=threads,
            compile=compile_,
        )
        uri = _tracking_uri(tracking_uri)
    total = len(bench.configs) * len(bench.kinds) * len(bench.lengths_s)
    done = 0

    def progress(rec: dict) -> None:
        nonlocal done
        done += 1
        what = (
            f"{rec['median_s']:.2f} s, {rec['peak_mem_bytes'] / 2**20:.0f} MiB"
            if "median_s" in rec
            else rec.get("skipped") or rec.get("error")
        )
        err.print(
            f"[{done}/{total}] {rec['objective']} {rec['kind']} {rec['seconds']:g} s "
            f"({rec['frames']} frames): {what}",
            markup=False,
        )

    records = run(bench, progress)
    meta = {"bench": bench.meta(), "machine": platform.platform()}
    json_path, png_path, csv_path = (out_dir / f"pretrain.{ext}" for ext in ("json", "png", "csv"))
    write_json(json_path, {"meta": meta, "records": records})
    write_text(csv_path, csv_table(records))
    plot(records, png_path, group="objective", **plot_time(bench.threads))
    table = Table(
        title=f"full pre-training step, batch {bench.batch}; ratios divide by MHSA of this run"
    )
    columns = ("objective", "mixer", "s", "frames", "wall s", "CPU s", "peak MiB")
    for col in (*columns, "wall ratio", "CPU ratio", "mem ratio"):
        table.add_column(col, overflow="fold")
    for r in records:
        cells = (
            [
                f"{r['median_s']:.2f}",
                f"{r['median_cpu_s']:.2f}",
                f"{r['peak_mem_bytes'] / 2**20:.0f}",
            ]
            if "median_s" in r
            else [r.get("skipped") or r.get("error", ""), "", ""]
        )
        table.add_row(
            r["objective"],
            r["kind"],
            f"{r['seconds']:g}",
            str(r["frames"]),
            *cells,
            *(_ratio(r, key) for key in ("time_ratio", "cpu_ratio", "mem_ratio")),
        )
    out.print(table)
    out.print(f"wrote {json_path}, {png_path} and {csv_path}")
    if uri is not None:
        experiment = bench.configs[0][2].tracking.experiment
        run_id = log_mlflow(uri, experiment, meta, records, [json_path, png_path, csv_path])
        out.print(f"MLflow run {run_id} in experiment {experiment!r} at {uri}")


# --------------------------------------------------------------------------- stream


@bench_app.command("stream")
def stream(
    config: Annotated[
        Path | None,
        typer.Option(help="Benchmark config (default: configs/bench_wav2vec2.yaml)."),
    ] = None,
    kinds: Annotated[str, typer.Option(help="Streamable mixers, comma-separated.")] = ",".join(
        STREAMABLE_MIXERS
    ),
    seconds: Annotated[float, typer.Option(help="Length of the streamed utterance.")] = 300.0,
    chunk: Annotated[
        int | None, typer.Option(help="Frames per chunk (default: model.streaming.eval_chunk).")
    ] = None,
    left_chunks: Annotated[
        str,
        typer.Option(
            help="Visible previous chunks: a number, 'all', or 'config' (model.streaming.eval_left)."
        ),
    ] = "config",
    warmup: Annotated[float, typer.Option(help="Seconds streamed untimed first.")] = 5.0,
    window: Annotated[
        float, typer.Option(help="RTF at a position = median over the chunks of this many seconds.")
    ] = 5.0,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for stream.json and stream.png.")
    ] = Path("reports/bench"),
) -> None:
    """Real-time factor of chunk-by-chunk streaming against the position in the utterance.

    Example: smx bench stream --seconds 300 --left-chunks all --out docs/bench
    """
    from smx.atomic import write_json
    from smx.bench.stream import REPORT_AT_S, StreamBench, plot, run

    with _user_errors("stream"):
        path, params = _config(config, "wav2vec2")
        left: int | str | None = left_chunks
        if left_chunks == "all":
            left = None
        elif left_chunks != "config":
            try:
                left = int(left_chunks)
            except ValueError:
                raise ValueError(
                    f"left_chunks: must be 'all', 'config' or an integer >= 0, got {left_chunks!r}"
                ) from None
        bench = StreamBench(
            config=path,
            params=params,
            kinds=_names(kinds),
            seconds=seconds,
            chunk=chunk,
            left_chunks=left,
            warmup_s=warmup,
            window_s=window,
            device=device,
            threads=threads,
        )

    def progress(rec: dict) -> None:
        what = f"{rec['wall_s']:.1f} s wall" if "wall_s" in rec else rec.get("error")
        err.print(f"{rec['kind']}: {what}", markup=False)

    records = run(bench, progress)
    meta = {"bench": bench.meta(), "machine": platform.platform()}
    json_path, png_path = out_dir / "stream.json", out_dir / "stream.png"
    write_json(json_path, {"meta": meta, "records": records})
    plot(records, meta["bench"], png_path)
    first, last = (f"{p:g}" for p in (REPORT_AT_S[0], REPORT_AT_S[-1]))
    table = Table(
        title=f"streaming {bench.seconds:g} s in chunks of {meta['bench']['chunk_s']:.2f} s, "
        f"left context {'all' if bench.left_chunks is None else bench.left_chunks} chunks"
    )
    for col in ("mixer", f"RTF at {first} s", f"RTF at {last} s", "growth", "mean RTF", "peak MiB"):
        table.add_column(col, overflow="fold")
    for r in records:
        if "chunks" not in r:
            table.add_row(r["kind"], r.get("error", ""), "", "", "", "")
            continue
        at = r["rtf_at"]
        table.add_row(
            r["kind"],
            "" if at[first] is None else f"{at[first]:.4f}",
            "" if at[last] is None else f"{at[last]:.4f}",
            f"{r['growth']:.2f}" if "growth" in r else "",
            f"{r['rtf_mean']:.4f}",
            f"{r['peak_mem_bytes'] / 2**20:.0f}",
        )
    out.print(table)
    out.print(f"wrote {json_path} and {png_path}")


# --------------------------------------------------------------------------- roofline


@bench_app.command("roofline")
def roofline(
    config: Annotated[
        Path | None,
        typer.Option(help="Benchmark config (default: configs/bench_wav2vec2.yaml)."),
    ] = None,
    kinds: Annotated[str, typer.Option(help="Mixers, comma-separated.")] = "summarymixing",
    scopes: Annotated[
        str, typer.Option(help="mixer (one mixer layer), encoder (the full encoder), or both.")
    ] = "mixer,encoder",
    lengths: Annotated[str, typer.Option(help="Input lengths in seconds, comma-separated.")] = "80",
    repeats: Annotated[int, typer.Option(help="Timed repeats (median reported).")] = 3,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    compile_: CompileOpt = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for roofline.json.")] = Path(
        "reports/bench"
    ),
) -> None:
    """Achieved FLOP/s (forward+backward) against plain matmuls of the same shapes.

    Example: smx bench roofline --scopes mixer,encoder --lengths 80 --out docs/bench
    """
    from smx.atomic import write_json
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

    def progress(rec: dict) -> None:
        what = f"{rec['efficiency']:.0%} of matmul FLOP/s" if "efficiency" in rec else rec["error"]
        err.print(f"{rec['scope']} {rec['kind']} {rec['seconds']:g} s: {what}", markup=False)

    records = run(bench, progress)
    json_path = out_dir / "roofline.json"
    write_json(
        json_path,
        {"meta": {"bench": bench.meta(), "machine": platform.platform()}, "records": records},
    )
    table = Table(
        title="forward+backward: achieved FLOP/s against plain matmuls of the same shapes"
    )
    for col in (
        "scope",
        "mixer",
        "seconds",
        "GFLOP",
        "time s",
        "GFLOP/s",
        "matmul GFLOP/s",
        "efficiency",
        "CPU-time efficiency",
    ):
        table.add_column(col, overflow="fold")
    for r in records:
        if "efficiency" not in r:
            table.add_row(r["scope"], r["kind"], f"{r['seconds']:g}", r.get("error", ""))
            continue
        table.add_row(
            r["scope"],
            r["kind"],
            f"{r['seconds']:g}",
            f"{r['flops'] / 1e9:.1f}",
            f"{r['median_s']:.3f}",
            f"{r['achieved_flops_per_s'] / 1e9:.1f}",
            f"{r['matmul_flops_per_s'] / 1e9:.1f}",
            f"{r['efficiency']:.0%}",
            f"{r['cpu_efficiency']:.0%}",
        )
    out.print(table)
    out.print(f"wrote {json_path}")
