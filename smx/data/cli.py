"""``smx prepare``: corpora to Lhotse manifests (synth, LibriSpeech, Libri-Light, folder,
VoxCeleb1, SLURP, IEMOCAP, Shar).

Every command prints a summary table and where its outputs went. User mistakes (a missing
espeak-ng or corpus folder, a bad config, too many unusable files) end with one sentence on
stderr and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from smx.data.transcripts import SPEAKER_SOURCES, TRANSCRIPT_FORMATS

prepare_app = typer.Typer(
    help="Prepare a corpus as Lhotse manifests (audio checked, repaired or skipped).\n\n"
    "Example: smx prepare synth --out data/synth --config params.yaml",
    no_args_is_help=True,
)

out_console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
EXIT_USER = 2

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="YAML config whose `data` section is used (default: defaults)."),
]
WorkersOpt = Annotated[
    int | None, typer.Option(help="Worker processes (default: data.synth.workers; 0 = all cores).")
]


def _fail(message: str) -> typer.Exit:
    """Print ``message`` on stderr; return the exit (code 2) for the caller to raise."""
    err_console.print(f"smx prepare: {message}", markup=False)
    return typer.Exit(EXIT_USER)


def _data_cfg(config: Path | None, **synth_overrides: Any) -> Any:
    """The ``data`` section of ``config`` (or the defaults), with synth overrides applied."""
    from pydantic import ValidationError

    from smx.config import DataCfg, load
    from smx.yamlio import ConfigError

    try:
        data = load(config).data if config is not None else DataCfg()
    except ConfigError as exc:
        for issue in exc.issues:
            err_console.print(str(issue), markup=False)
        raise typer.Exit(EXIT_USER) from None
    overrides = {k: v for k, v in synth_overrides.items() if v is not None}
    if not overrides:
        return data
    raw = data.model_dump()
    raw["synth"].update(overrides)
    try:
        return DataCfg.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _fail(f"invalid option ({where}): {first['msg']}") from None


def _report(summary: dict[str, Any], out: Path) -> None:
    """Print the summary table, the skip count and where the outputs went."""
    from smx.data.manifests import format_summary

    out_console.print(format_summary(summary))
    if summary.get("skipped"):
        out_console.print(
            f"skipped {summary['skipped']} items, repaired {summary['repaired']}; "
            f"reasons in {out / 'report.json'}",
            markup=False,
        )
    out_console.print(
        f"wrote manifests, summary.json, report.json and vocab.json to {out}", markup=False
    )


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a :class:`~smx.data.problems.PrepareError` becomes a user-facing exit."""
    from smx.data.problems import PrepareError

    try:
        return fn(*args, **kwargs)
    except PrepareError as exc:
        raise _fail(str(exc)) from None


@prepare_app.command("synth")
def synth(
    out: Annotated[Path, typer.Option(help="Corpus folder to write.")] = Path("data/synth"),
    config: ConfigOpt = None,
    hours: Annotated[float | None, typer.Option(help="Override data.synth.hours.")] = None,
    workers: WorkersOpt = None,
) -> None:
    """Synthesise the embedded corpus with espeak-ng (speakers, intents, styles, noise).

    Deterministic for a given data.synth.seed and espeak-ng version; a re-run with the same
    settings resumes an interrupted one. Prints the real-time factor of the synthesis.

    Example: smx prepare synth --out data/synth --config params.yaml
    """
    from smx.data.synth import prepare_synth

    data = _data_cfg(config, hours=hours)
    result = _run(prepare_synth, out, data, workers)
    _report(result.summary, out)
    run = result.run
    if run.new_seconds > 0:
        out_console.print(
            f"synthesised {run.new_seconds:.0f} s of new audio in {run.wall_seconds:.1f} s "
            f"with {run.workers} workers: {run.realtime_factor:.0f}x faster than real time",
            markup=False,
        )
    else:
        out_console.print("all audio was already there (a previous run was resumed)")
    out_console.print(
        f"audio in {out / 'audio'}, verification trials in {out / 'trials.txt'}", markup=False
    )


@prepare_app.command("librispeech")
def librispeech(
    corpus_dir: Annotated[Path, typer.Argument(help="The LibriSpeech folder (holds the parts).")],
    out: Annotated[Path, typer.Option(help="Corpus folder to write.")] = Path("data/librispeech"),
    part: Annotated[
        list[str] | None, typer.Option(help="A part to use (repeatable; default: all found).")
    ] = None,
    config: ConfigOpt = None,
    workers: Annotated[int, typer.Option(help="Processes for audio checks (0 = all).")] = 0,
) -> None:
    """Prepare LibriSpeech from a local folder through Lhotse's recipe.

    Example: smx prepare librispeech /data/LibriSpeech --part train-clean-100 --part dev-clean
    """
    from smx.data.corpora import prepare_librispeech

    data = _data_cfg(config)
    summary = _run(prepare_librispeech, corpus_dir, out, data, part or None, workers)
    _report(summary, out)


@prepare_app.command("librilight")
def librilight(
    corpus_dir: Annotated[
        Path, typer.Argument(help="The Libri-Light folder (holds small/medium/large).")
    ],
    out: Annotated[Path, typer.Option(help="Corpus folder to write.")] = Path("data/librilight"),
    config: ConfigOpt = None,
    workers: Annotated[int, typer.Option(help="Processes for audio checks (0 = all).")] = 0,
) -> None:
    """Prepare Libri-Light (unlabelled) through Lhotse's recipe, cut into VAD segments.

    Example: smx prepare librilight /data/librilight --out data/librilight
    """
    from smx.data.corpora import prepare_librilight

    data = _data_cfg(config)
    summary = _run(prepare_librilight, corpus_dir, out, data, workers)
    _report(summary, out)


@prepare_app.command("folder")
def folder(
    audio_dir: Annotated[Path, typer.Argument(help="Folder of audio files (any depth).")],
    out: Annotated[Path, typer.Option(help="Corpus folder to write.")],
    transcripts: Annotated[
        Path | None,
        typer.Option(
            help="Transcript file: '<id> <text>' lines, TSV/CSV (header with audio/path/file/"
            "id, text/transcript/sentence and speaker columns, or none: audio, text, speaker) "
            "or LJSpeech metadata.csv (id|text|normalised text). A line names its audio file "
            "by id (name without suffix), name or path relative to AUDIO_DIR."
        ),
    ] = None,
    transcript_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="|".join(TRANSCRIPT_FORMATS),
            help="Transcript format (auto: from the file name and its first lines).",
        ),
    ] = "auto",
    speaker_from: Annotated[
        str,
        typer.Option(
            metavar="|".join(SPEAKER_SOURCES),
            help="Speaker: auto (the speaker column if any, else the file's folder), column, "
            "parent (the file's folder) or none.",
        ),
    ] = "auto",
    config: ConfigOpt = None,
    workers: Annotated[int, typer.Option(help="Processes for audio checks (0 = all).")] = 0,
) -> None:
    """Prepare a folder of audio files with a transcript file (or unlabelled without one).

    Top-level train/dev/test folders become splits; a file's folder names its speaker unless
    the transcript has a speaker column or --speaker-from says otherwise. Transcript lines
    without audio and audio without a line are skipped and reported; a transcript file that
    cannot be read stops with its file and line, writing nothing.

    Example: smx prepare folder ~/LJSpeech --transcripts ~/LJSpeech/metadata.csv --out data/lj
    """
    from smx.data.corpora import prepare_folder

    data = _data_cfg(config)
    summary = _run(
        prepare_folder,
        audio_dir,
        out,
        data,
        transcripts,
        workers,
        transcript_format=transcript_format,
        speaker_from=speaker_from,
    )
    _report(summary, out)


def _report_reasons(out: Path) -> None:
    """Print how many items were left out or skipped for each kind of reason."""
    import json

    reasons = json.loads((out / "report.json").read_text(encoding="utf-8"))["skip_reasons"]
    if reasons:
        counts = "; ".join(f"{reason}: {count}" for reason, count in reasons.items())
        out_console.print(f"left out or skipped: {counts}", markup=False)


@prepare_app.command("voxceleb")
def voxceleb(
    corpus_dir: Annotated[
        Path,
        typer.Argument(
            help="The VoxCeleb1 folder: vox1_dev_wav/wav/<speaker>/<video>/<utt>.wav, "
            "vox1_test_wav/wav/... and the trial list veri_test2.txt."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Corpus folder to write.")] = Path("data/voxceleb"),
    trials: Annotated[
        Path | None,
        typer.Option(
            help="The VoxCeleb1-O trial list ('<1|0> <spk>/<video>/<utt>.wav "
            "<spk>/<video>/<utt>.wav' lines; default: CORPUS_DIR/veri_test2.txt)."
        ),
    ] = None,
    dev_fraction: Annotated[
        float | None,
        typer.Option(
            help="Share of each dev speaker's utterances that forms 'dev' "
            "(default: smx.data.voxceleb.DEV_FRACTION, a tenth)."
        ),
    ] = None,
    config: ConfigOpt = None,
    workers: Annotated[int, typer.Option(help="Processes for audio checks (0 = all).")] = 0,
) -> None:
    """Prepare VoxCeleb1 for speaker verification through Lhotse's VoxCeleb recipe.

    The dev speakers form train and dev, the test speakers the heldout split; the trial
    list becomes trials.txt (trials whose audio is missing or unusable are left out and
    listed in report.json).

    Example: smx prepare voxceleb /corpora/VoxCeleb1 --out data/voxceleb
    """
    from smx.data.voxceleb import prepare_voxceleb

    data = _data_cfg(config)
    summary = _run(prepare_voxceleb, corpus_dir, out, data, trials, dev_fraction, workers)
    _report(summary, out)
    _report_reasons(out)
    out_console.print(f"verification trials in {out / 'trials.txt'}", markup=False)


@prepare_app.command("slurp")
def slurp(
    corpus_dir: Annotated[
        Path,
        typer.Argument(
            help="The SLURP folder: dataset/slurp/{train,devel,test}.jsonl and audio/slurp_real/."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Corpus folder to write.")] = Path("data/slurp"),
    synthetic: Annotated[
        bool,
        typer.Option(
            help="Add train_synthetic.jsonl with audio/slurp_synth/ to the training split."
        ),
    ] = False,
    config: ConfigOpt = None,
    workers: Annotated[int, typer.Option(help="Processes for audio checks (0 = all).")] = 0,
) -> None:
    """Prepare SLURP for intent classification (intent = <scenario>_<action>).

    Splits as published: train, dev (devel), test; every recording of a line is an item.

    Example: smx prepare slurp /corpora/slurp --out data/slurp
    """
    from smx.data.slurp import prepare_slurp

    data = _data_cfg(config)
    summary = _run(prepare_slurp, corpus_dir, out, data, synthetic, workers)
    _report(summary, out)
    _report_reasons(out)


@prepare_app.command("iemocap")
def iemocap(
    corpus_dir: Annotated[
        Path,
        typer.Argument(
            help="The IEMOCAP_full_release folder: Session1-5 with sentences/wav and "
            "dialog/EmoEvaluation (and dialog/transcriptions)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Corpus folder to write.")] = Path("data/iemocap"),
    sessions: Annotated[
        str, typer.Option(help="Sessions to use, separated by commas (one of 1-3 is needed).")
    ] = "1,2,3,4,5",
    config: ConfigOpt = None,
    workers: Annotated[int, typer.Option(help="Processes for audio checks (0 = all).")] = 0,
) -> None:
    """Prepare IEMOCAP's 4 emotion classes (neutral, happy with excited, sad, angry).

    Sessions 1-3 form train, 4 dev, 5 test; each utterance keeps its session so that
    probes can run leave-one-session-out. Utterances with other labels are left out and
    counted.

    Example: smx prepare iemocap /corpora/IEMOCAP_full_release --out data/iemocap
    """
    from smx.data.iemocap import parse_sessions, prepare_iemocap

    data = _data_cfg(config)
    chosen = _run(parse_sessions, sessions)
    summary = _run(prepare_iemocap, corpus_dir, out, data, chosen, workers)
    _report(summary, out)
    _report_reasons(out)


@prepare_app.command("shar")
def shar(
    corpus_dir: Annotated[Path, typer.Argument(help="A corpus folder written by smx prepare.")],
    out: Annotated[Path, typer.Option(help="Shar folder to write (one sub-folder per split).")],
    split: Annotated[
        list[str] | None, typer.Option(help="A split to export (repeatable; default: all).")
    ] = None,
    shard_size: Annotated[
        int | None, typer.Option(help="Cuts per shard (default: data.shar_shard_size).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Export a prepared corpus to Lhotse Shar shards (FLAC in tar files) for object storage.

    Example: smx prepare shar data/synth --out data/synth_shar --shard-size 500
    """
    from smx.data.shar import export_shar

    data = _data_cfg(config)
    size = data.shar_shard_size if shard_size is None else shard_size
    summary = _run(export_shar, corpus_dir, out, split or None, size)
    for name, entry in summary["splits"].items():
        out_console.print(
            f"{name}: {entry['cuts']} cuts in {entry['shards']} shards -> {out / name}",
            markup=False,
        )
    out_console.print(f"wrote Shar shards to {out}", markup=False)
