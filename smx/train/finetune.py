"""Fine-tuning: CTC fine-tuning of a pre-trained encoder and of its random init.

:func:`finetune` checks everything a user can get wrong before any compute (tracking URI,
transcripts and splits of the corpus, the encoder file against the variant's architecture,
a ``--resume`` checkpoint), then runs the same recipe for each init, one after the other: a
job of :func:`smx.train.launch.run_job` running
:func:`smx.train.finetune_loop.finetune_loop_per_worker` (checkpoints, automatic restarts,
resume as pre-training), logged to an MLflow run ``finetune-<variant>-<init>``, a child of
the variant's run (tag ``smx.role = finetune``); then greedy WER and CER on the dev and test
splits, computed here from the final checkpoint and logged to the same MLflow run. Outputs,
written atomically:

    <out>/metrics/finetune/<variant>.json   per init: dev/test WER and CER (fractions),
                                            offline and streaming per chunk size,
                                            first and last training loss, steps, ...
    <out>/plots/finetune/<variant>.csv      step, init, loss, lr of every logged step

The loss is the CTC loss per encoder frame (:mod:`smx.downstream.ctc`), the same for both inits.
The Ray run name is ``finetune-<variant>-<init>-<hash>-<source hash>``: the hash covers the
config, the vocabulary and the encoder file's bytes, the source hash the code that runs
(:mod:`smx.provenance`), so relaunching an unchanged run resumes it (a finished one ends at
once) and any change, of the code too, starts a new one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from smx.atomic import write_json, write_text
from smx.config import Params
from smx.tracking import log_metrics
from smx.train.finetune_loop import finetune_hash, finetune_loop_per_worker
from smx.train.launch import Job, Launch, PretrainError, open_launch, run_job, run_name

#: JSON name of each init: the pre-trained encoder, and the same architecture drawn at random
INITS = ("pretrained", "random_init")
#: the splits that the ASR task reads
SPLITS = ("train", "dev", "test")


class FinetuneError(PretrainError):
    """Fine-tuning cannot start or did not finish; one sentence says why."""


@dataclass(frozen=True)
class Inputs:
    """What fine-tuning checked before any compute.

    Arguments
    ---------
    data : TaskData
        The labelled ASR splits (:func:`labelled_data`).
    encoder : Path | None
        The pre-trained encoder file; None when the pretrained init is not trained.
    resume : Path | None
        The ``--resume`` checkpoint folder.
    resumed : str | None
        The init that ``resume`` belongs to.
    """

    data: Any
    encoder: Path | None
    resume: Path | None
    resumed: str | None


def check_inits(inits: tuple[str, ...]) -> None:
    """Raise :class:`FinetuneError` unless ``inits`` names some of :data:`INITS`.

    Example
    -------
    >>> check_inits(("random_init",))
    >>> check_inits(("imagenet",))
    Traceback (most recent call last):
    ...
    smx.train.finetune.FinetuneError: inits: expected some of pretrained, random_init, got ['imagenet']
    """
    bad = [i for i in inits if i not in INITS]
    if bad or not inits:
        raise FinetuneError(f"inits: expected some of {', '.join(INITS)}, got {list(inits)}")


def labelled_data(corpus: Path, stage: str) -> Any:
    """The ASR splits of ``corpus`` (:func:`smx.downstream.tasks.load_task_data`).

    Prints, for each split, how many utterances lack a transcript and were skipped.

    Raises
    ------
    FinetuneError
        A missing corpus or vocabulary, a split without transcripts or an empty split.
    """
    from smx.data.manifests import load_cuts
    from smx.data.problems import PrepareError
    from smx.downstream.errors import ProbeError
    from smx.downstream.tasks import load_task_data

    try:
        data = load_task_data(corpus, "asr")
    except ProbeError as exc:
        raise FinetuneError(str(exc)) from None
    except (PrepareError, FileNotFoundError) as exc:
        raise FinetuneError(f"{exc} (run `dvc repro prepare` or `smx prepare`)") from None
    for split in SPLITS:
        kept = len(getattr(data, split))
        skipped = sum(1 for _ in load_cuts(corpus, split)) - kept
        if skipped:
            total = skipped + kept
            print(f"{stage}: {skipped} of {total} {split} utterances have no transcript; skipped")
    return data


def check_encoder(path: Path, params: Params) -> None:
    """Raise :class:`FinetuneError` unless ``path`` is an encoder.pt of ``params``' architecture."""
    from smx.downstream.errors import ProbeError
    from smx.downstream.upstream import load_checkpoint_upstream

    try:
        with torch.random.fork_rng():
            load_checkpoint_upstream(path, params)
    except ProbeError as exc:
        raise FinetuneError(str(exc)) from None


def file_digest(path: Path | None) -> str:
    """SHA-256 of a file's bytes ('' for None)."""
    if path is None:
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def finetune_run_name(
    params: Params, variant: str, init: str, tokens: list[str], encoder_digest: str, source: str
) -> str:
    """The Ray run name of one init: stable for one config, vocabulary, encoder and code.

    Example
    -------
    >>> name = finetune_run_name(Params(), "sm", "pretrained", ["<blank>"], "ab", "0123456789")
    >>> name.startswith("finetune-sm-pretrained-"), name[-9:]
    (True, '-01234567')
    >>> scored = Params.model_validate({"downstream": {"finetune": {"stream_chunks": [0.64]}}})
    >>> finetune_run_name(scored, "sm", "pretrained", ["<blank>"], "ab", "0123456789") == name
    True
    """
    finetune = params.model_dump(mode="json")["downstream"]["finetune"]
    finetune.pop("stream_chunks")  # how the result is scored, not how it is trained
    prefix = f"finetune-{variant}-{init}"
    return run_name(params, prefix, source, finetune=finetune, vocab=tokens, encoder=encoder_digest)


def check_resume(
    resume: Path, params: Params, tokens: list[str], inits: tuple[str, ...], source: str
) -> str:
    """The init a ``--resume`` checkpoint belongs to; FinetuneError when it cannot resume here.

    ``source`` is the hash of this tree's code (:mod:`smx.provenance`).
    """
    from smx.train.checkpoint import CheckpointMismatch, SourceMismatch, read_state

    try:
        state = read_state(resume)
    except ValueError as exc:
        raise FinetuneError(str(exc)) from None
    init = state.get("init")
    if init not in INITS:
        raise FinetuneError(f"checkpoint {resume} is not a fine-tuning checkpoint (no init)")
    if init not in inits:
        raise FinetuneError(
            f"checkpoint {resume} fine-tunes the {init} init, which this run does not train "
            f"(--init {'random' if init == 'random_init' else init} or both)"
        )
    try:
        read_state(resume, finetune_hash(params, tokens, init), source)
    except SourceMismatch as exc:
        raise FinetuneError(str(exc)) from None
    except CheckpointMismatch:
        raise FinetuneError(
            f"checkpoint {resume} was made with another model config or vocabulary; resume "
            "it with the config that made it, or start a new run without --resume"
        ) from None
    return init


def check_inputs(
    launch: Launch, inits: tuple[str, ...], encoder: Path | None, resume: Path | None
) -> Inputs:
    """Check the corpus, the encoder file (for the pretrained init) and ``resume``.

    Raises
    ------
    PretrainError
        (a :class:`FinetuneError` but for too little audio) One sentence naming the problem.
    """
    from lhotse import CutSet

    params, corpus = launch.params, launch.corpus
    data = labelled_data(corpus, f"finetune@{launch.variant}")
    launch.check_enough_audio(CutSet.from_cuts(item.cut for item in data.train))
    if "pretrained" in inits:
        default = launch.root / "models" / launch.variant / "encoder.pt"
        # absolute: the Ray workers run in another working directory
        encoder = Path(encoder).resolve() if encoder else default
        check_encoder(encoder, params)
    else:
        encoder = None
    resume = Path(resume).resolve() if resume else None
    resumed = (
        check_resume(resume, params, data.vocab.tokens, inits, launch.source) if resume else None
    )
    return Inputs(data, encoder, resume, resumed)


def finetune_job(launch: Launch, init: str, inputs: Inputs, digest: str) -> Job:
    """The Ray Train job that fine-tunes one init; ``digest`` is the encoder file's hash."""
    params, variant, tokens = launch.params, launch.variant, inputs.data.vocab.tokens
    encoder = inputs.encoder if init == "pretrained" else None
    name = finetune_run_name(
        params, variant, init, tokens, digest if encoder else "", launch.source
    )
    return Job(
        name=name,
        title=f"finetune-{variant}-{init}",
        role="finetune",
        tags={"init": init, "encoder": str(encoder) if encoder else "random"},
        loop=finetune_loop_per_worker,
        state_hash=finetune_hash(params, tokens, init),
        max_steps=params.downstream.finetune.max_steps,
        config={"vocab": tokens, "init": init, "encoder": str(encoder) if encoder else None},
        resume_from=inputs.resume if inputs.resumed == init else None,
    )


def evaluate(
    state: dict[str, Any], params: Params, data: Any, stage: str = "finetune"
) -> dict[str, dict[str, float]]:
    """Greedy WER/CER on dev and test of the model in a final checkpoint state.

    Offline (full context) as ``wer`` and ``cer``; then, for each chunk size of
    ``downstream.finetune.stream_chunks``, streaming (the encoder fed chunk by chunk, left
    context ``model.streaming.eval_left``) as ``stream_<s>s_wer`` and ``stream_<s>s_cer``
    (:mod:`smx.downstream.streaming_eval`). A model whose mixer cannot stream gets the
    offline scores only, and ``stage`` prints one line saying so.

    Arguments
    ---------
    state : dict[str, Any]
        The checkpoint state (its ``model`` entry is loaded).
    params : Params
        The resolved config of the variant.
    data : TaskData
        The labelled splits and vocabulary.
    stage : str
        What the skip line starts with.

    Returns
    -------
    dict[str, dict[str, float]]
        ``{"dev": {...}, "test": {...}}``, each score rounded to 6 decimals.
    """
    from smx.downstream.ctc import build_ctc_model, error_rates
    from smx.downstream.streaming_eval import metric_key, stream_chunks, unstreamable_mixer

    model = build_ctc_model(params, len(data.vocab))
    model.load_state_dict(state["model"])
    batch = params.downstream.max_batch_duration
    chunks = stream_chunks(params)
    problem = unstreamable_mixer(model.encoder) if chunks else None
    if problem:
        print(f"{stage}: streaming evaluation skipped: {problem}", file=sys.stdout, flush=True)
        chunks = {}
    scores = {}
    for split, items in (("dev", data.dev), ("test", data.test)):
        rates = error_rates(model, items, data.vocab, batch)
        for seconds, chunk in chunks.items():
            streamed = error_rates(model, items, data.vocab, batch, chunk)
            rates |= {metric_key(seconds, k): v for k, v in streamed.items()}
        scores[split] = {k: round(v, 6) for k, v in rates.items()}
    return scores


def summary_line(stage: str, scores: dict[str, dict[str, float]]) -> str:
    """The printed result of one init: offline WER/CER, then the streaming CER per chunk.

    Example
    -------
    >>> scores = {"dev": {"wer": 0.9, "cer": 0.4, "stream_0.64s_wer": 1.0,
    ...                   "stream_0.64s_cer": 0.5},
    ...           "test": {"wer": 0.8, "cer": 0.3, "stream_0.64s_wer": 0.9,
    ...                    "stream_0.64s_cer": 0.45}}
    >>> summary_line("finetune@sm: pretrained", scores)
    'finetune@sm: pretrained: dev WER 0.9000 CER 0.4000, test WER 0.8000 CER 0.3000; streaming CER dev/test: 0.64 s 0.5000/0.4500'
    """
    dev, test = scores["dev"], scores["test"]
    line = (
        f"{stage}: dev WER {dev['wer']:.4f} CER {dev['cer']:.4f}, "
        f"test WER {test['wer']:.4f} CER {test['cer']:.4f}"
    )
    streamed = [
        f"{k.removeprefix('stream_').removesuffix('s_cer')} s {dev[k]:.4f}/{test[k]:.4f}"
        for k in dev
        if k.startswith("stream_") and k.endswith("_cer")
    ]
    return line + (f"; streaming CER dev/test: {', '.join(streamed)}" if streamed else "")


def tune(
    launch: Launch, init: str, job: Job, data: Any, show_progress: bool
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Run one init's job, score its final model on dev and test, log and print the scores.

    Returns
    -------
    tuple
        The final checkpoint's state and the scores (:func:`evaluate`).
    """
    finished = run_job(launch, job, show_progress)
    state = finished.state
    stage = f"finetune@{launch.variant}: {init}"
    scores = evaluate(state, launch.params, data, stage)
    flat = {f"{split}_{k}": v for split, values in scores.items() for k, v in values.items()}
    log_metrics(launch.uri, finished.run_id, flat, int(state["step"]))
    print(summary_line(stage, scores), file=sys.stdout, flush=True)
    return state, scores


def init_entry(
    state: dict[str, Any], scores: dict[str, dict[str, float]], params: Params, data: Any
) -> dict[str, Any]:
    """One init's entry of the metrics JSON."""
    history = state["history"]
    return {
        **scores,
        "first_loss": round(float(history[0]["loss"]), 6) if history else float("nan"),
        "loss": round(float(history[-1]["loss"]), 6) if history else float("nan"),
        "steps": int(state["step"]),
        "freeze_steps": params.downstream.finetune.freeze_steps,
        "train_seconds": round(float(state["elapsed"]), 3),
        "utterances": {"train": len(data.train), "dev": len(data.dev), "test": len(data.test)},
    }


def plot_rows(init: str, history: list[dict[str, float]]) -> list[dict[str, Any]]:
    """The CSV rows (step, init, loss, lr) of one init's logged steps.

    Example
    -------
    >>> plot_rows("random_init", [{"step": 1.0, "loss": 2.5, "lr": 0.001}])
    [{'step': 1, 'init': 'random_init', 'loss': '2.5', 'lr': '0.001'}]
    """
    return [
        {"step": int(r["step"]), "init": init, "loss": f"{r['loss']:.6g}", "lr": f"{r['lr']:.6g}"}
        for r in history
    ]


def write_finetune_outputs(
    variant: str, inits: dict[str, Any], rows: list[dict[str, Any]], out: Path
) -> dict[str, Path]:
    """Write the metrics JSON and the plot CSV of a variant under ``out``; their paths."""
    paths = {
        "metrics": out / "metrics" / "finetune" / f"{variant}.json",
        "plots": out / "plots" / "finetune" / f"{variant}.csv",
    }
    write_json(paths["metrics"], {"variant": variant, "inits": inits})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", "init", "loss", "lr"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(paths["plots"], buf.getvalue())
    return paths


def finetune(
    params: Params,
    variant: str,
    encoder: Path | None = None,
    inits: tuple[str, ...] = INITS,
    resume: Path | None = None,
    out: Path | None = None,
    show_progress: bool = True,
) -> dict[str, Path]:
    """Fine-tune ``variant``'s encoder and its random init for CTC ASR (see the module doc).

    Arguments
    ---------
    params : Params
        The resolved config of one variant.
    variant : str
        The name of the outputs and runs, and of the default encoder.
    encoder : Path | None
        The pre-trained encoder file (default: ``<project>/models/<variant>/encoder.pt``).
    inits : tuple[str, ...]
        ``pretrained`` and/or ``random_init``, run in this order.
    resume : Path | None
        A fine-tuning checkpoint folder; it resumes the init it was made with.
    out : Path | None
        The folder that receives metrics/ and plots/ (default: the project).
    show_progress : bool
        Draw the progress bar.

    Returns
    -------
    dict[str, Path]
        The files written: ``metrics`` and ``plots``.

    Raises
    ------
    PretrainError
        One sentence (a :class:`FinetuneError` for bad input of fine-tuning's own);
        ``during_training`` tells a failed run from bad input.
    """
    check_inits(inits)
    launch = open_launch(params, variant, FinetuneError)
    out = Path(out) if out else launch.root
    inputs = check_inputs(launch, inits, encoder, resume)
    digest = file_digest(inputs.encoder)
    entries: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for init in inits:
        job = finetune_job(launch, init, inputs, digest)
        state, scores = tune(launch, init, job, inputs.data, show_progress)
        entries[init] = init_entry(state, scores, params, inputs.data)
        rows.extend(plot_rows(init, state["history"]))
    paths = write_finetune_outputs(variant, entries, rows, out)
    for key, path in paths.items():
        print(f"finetune@{variant}: {key} -> {path}")
    return paths
