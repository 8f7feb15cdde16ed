"""``smx import``: write an encoder trained elsewhere as an smx encoder file.

A bad folder, file or config ends with one sentence naming the file and the key, exit
code 2, and nothing written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from smx.yamlio import ConfigError

if TYPE_CHECKING:
    from smx.config import Params

EXIT_INPUT = 2

import_app = typer.Typer(
    help="Import an encoder trained elsewhere as an smx encoder file (encoder.pt).\n\n"
    "Example: smx import speechbrain results/save/CKPT+2024 --config params.yaml "
    "--out models/sb/encoder.pt",
    no_args_is_help=True,
)
out_console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    err_console.print(message, markup=False)
    return typer.Exit(EXIT_INPUT)


def _params(config: Path, variant: str | None) -> Params:
    """The config's base params, or those of ``variant``; exit 2 on a bad file or name."""
    from smx.config import load

    try:
        params = load(config)
    except ConfigError as exc:
        for issue in exc.issues:
            err_console.print(str(issue), markup=False)
        raise typer.Exit(EXIT_INPUT) from None
    if variant is None:
        return params
    try:
        return params.variant(variant)
    except KeyError as exc:
        raise _fail(f"{config}: {exc.args[0]}") from None


@import_app.command("speechbrain")
def speechbrain_command(
    folder: Annotated[Path, typer.Argument(help="SpeechBrain checkpoint folder (save/CKPT+...).")],
    config: Annotated[
        Path, typer.Option("--config", help="YAML config whose model the checkpoint holds.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Encoder file to write, e.g. models/<name>/encoder.pt.")
    ],
    variant: Annotated[
        str | None, typer.Option(help="Take the model of this variant of the config.")
    ] = None,
) -> None:
    """Import a SpeechBrain wav2vec 2.0 (CNN.ckpt, latent_encoder.ckpt) or ASR / BEST-RQ
    (model.ckpt) save as an smx encoder file.

    The config gives the sizes (every tensor is checked against them) and the feature
    normalisation; the written file's config adds the SpeechBrain parity options, so
    `smx probe` and `smx finetune` run the encoder as SpeechBrain does.

    Example: smx import speechbrain save/CKPT+2024 --config params.yaml --out models/sb/encoder.pt
    """
    from smx.importers.speechbrain import (
        SpeechBrainImportError,
        import_speechbrain,
        write_encoder_file,
    )

    params = _params(config, variant)
    start = time.perf_counter()
    try:
        imported = import_speechbrain(folder, params)
    except SpeechBrainImportError as exc:
        raise _fail(str(exc)) from None
    write_encoder_file(imported, out)
    seconds = time.perf_counter() - start
    model = imported.params.model
    options = (
        f"fbank {model.frontend.fbank}, normalize {model.frontend.normalize}, conv2d_padding "
        f"{model.frontend.conv2d_padding}, conv_padding {model.encoder.conv_padding}"
    )
    if model.mixer.kind == "mhsa" and model.mixer.pos == "relpos":
        options += f", relpos {model.mixer.relpos}"
    read = ", ".join(p.name for p in imported.files)
    skipped = f"; skipped {imported.skipped} decoder and head keys" if imported.skipped else ""
    out_console.print(
        f"smx import speechbrain: {folder} ({imported.layout}: {read}{skipped}) -> {out}: "
        f"{imported.parameters / 1e6:.1f} M parameters in {seconds:.1f} s; parity options: "
        f"{options}",
        markup=False,
    )
