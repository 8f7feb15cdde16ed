"""``smx bench``: speed and memory benchmarks."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

bench_app = typer.Typer(
    help="Speed and memory benchmarks, each point in a fresh process.\n\nExample: smx bench mixers --lengths 5,20,80",
    no_args_is_help=True,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


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
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
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
