"""The fine-tuning driver: CTC fine-tuning of a pre-trained encoder and of its random init.

:func:`finetune` checks everything a user can get wrong before any compute (tracking URI,
transcripts and splits of the corpus, the encoder file against the variant's architecture,
a ``--resume`` checkpoint), starts Ray once, then runs the same recipe for each init, one
after the other: a Ray Train run of :func:`smx.train.finetune.finetune_loop_per_worker`
(checkpoints, automatic restarts, resume as pre-training) logged to an MLflow run
``finetune-<variant>-<init>``, a child of the variant's run (tag ``smx.role = finetune``);
then greedy WER and CER on the dev and test splits, computed here from the final checkpoint
and logged to the same MLflow run. Outputs, written atomically:

    <out>/metrics/finetune/<variant>.json   per init: dev/test WER and CER (fractions),
                                            first and last training loss, steps, ...
    <out>/plots/finetune/<variant>.csv      step, init, loss, lr of every logged step

The loss is the CTC loss per encoder frame (:mod:`smx.downstream.ctc`), the same for both inits.
The Ray run name is ``finetune-<variant>-<init>-<hash>-<commit>``: the hash covers the
config, the vocabulary and the encoder file's bytes, so relaunching an unchanged run resumes
it (a finished one ends at once) and any change starts a new one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from smx.atomic import write_json, write_text
from smx.config import Params
from smx.project import project_root
from smx.tracking import check_tracking_uri, git_commit, log_metrics, resolve_tracking_uri
from smx.train.finetune import finetune_hash, finetune_loop_per_worker
from smx.train.launch import (
    PretrainError,
    absolute,
    check_enough_audio,
    corpus_dir,
    final_checkpoint,
    fit_run,
    loop_config,
    open_tracked_run,
    start_cluster,
)

#: JSON name of each init: the pre-trained encoder, and the same architecture drawn at random
INITS = ("pretrained", "random_init")


class FinetuneError(PretrainError):
    """Fine-tuning cannot start or did not finish; one sentence says why."""


@dataclass
class Labelled:
    """The labelled ASR splits of a corpus and how many utterances lacked a transcript."""

    data: Any  # smx.downstream.tasks.TaskData
    skipped: dict[str, int]


def labelled_data(corpus: Path) -> Labelled:
    """The ASR splits (:func:`smx.downstream.tasks.load_task_data`) and the skip counts.

    Raises :class:`FinetuneError` for a missing corpus or vocabulary, a split without
    transcripts or an empty split.
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
    skipped = {}
    for split in ("train", "dev", "test"):
        total = sum(1 for _ in load_cuts(corpus, split))
        skipped[split] = total - len(getattr(data, split))
    return Labelled(data, skipped)


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
    params: Params, variant: str, init: str, tokens: list[str], encoder_digest: str, commit: str
) -> str:
    """The Ray run name of one init: stable for one config, vocabulary, encoder and commit.

    Example
    -------
    >>> name = finetune_run_name(Params(), "sm", "pretrained", ["<blank>"], "ab", "0123456789")
    >>> name.startswith("finetune-sm-pretrained-"), name[-8:]
    (True, '-0123456')
    """
    data = params.model_dump(mode="json")
    keep = {k: data[k] for k in ("seed", "data", "model", "ssl", "train")}
    keep.update(
        finetune=data["downstream"]["finetune"],
        num_workers=params.cluster.num_workers,
        vocab=tokens,
        encoder=encoder_digest,
    )
    digest = hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()
    sha = commit.removesuffix("-dirty")
    suffix = f"-{sha[:7]}" if sha and sha != "unknown" else ""
    return f"finetune-{variant}-{init}-{digest[:12]}{suffix}"


def check_resume(resume: Path, params: Params, tokens: list[str], inits: tuple[str, ...]) -> str:
    """The init a ``--resume`` checkpoint belongs to; FinetuneError when it cannot resume here."""
    from smx.train.checkpoint import read_state

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
    if state.get("config_hash") != finetune_hash(params, tokens, init):
        raise FinetuneError(
            f"checkpoint {resume} was made with another model config or vocabulary; resume "
            "it with the config that made it, or start a new run without --resume"
        )
    return init


def evaluate(state: dict[str, Any], params: Params, data: Any) -> dict[str, dict[str, float]]:
    """Greedy WER/CER on dev and test of the model in a final checkpoint state."""
    from smx.downstream.ctc import build_ctc_model, error_rates

    model = build_ctc_model(params, len(data.vocab))
    model.load_state_dict(state["model"])
    batch = params.downstream.max_batch_duration
    return {
        split: {k: round(v, 6) for k, v in error_rates(model, items, data.vocab, batch).items()}
        for split, items in (("dev", data.dev), ("test", data.test))
    }


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
    """The CSV rows (step, init, loss, lr) of one init's logged steps."""
    return [
        {"step": int(r["step"]), "init": init, "loss": f"{r['loss']:.6g}", "lr": f"{r['lr']:.6g}"}
        for r in history
    ]


def write_finetune_outputs(
    variant: str, inits: dict[str, Any], rows: list[dict[str, Any]], out: Path
) -> dict[str, Path]:
    """Write the metrics JSON and the plot CSV of a variant under ``out``."""
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
    params: the resolved config of one variant.
    variant: the name of the outputs, runs and the default encoder ``models/<variant>/encoder.pt``.
    encoder: the pre-trained encoder file (default: ``<project>/models/<variant>/encoder.pt``).
    inits: ``pretrained`` and/or ``random_init``, run in this order.
    resume: a fine-tuning checkpoint folder; it resumes the init it was made with.
    out: the folder that receives metrics/ and plots/ (default: the project).
    show_progress: draw the progress bar.

    Returns the paths written. Raises :class:`FinetuneError` / PretrainError with one
    sentence (``during_training`` tells a failed run from bad input).
    """
    root = project_root()
    out = Path(out) if out else root
    stage = f"finetune@{variant}"
    bad = [i for i in inits if i not in INITS]
    if bad or not inits:
        raise FinetuneError(f"inits: expected some of {', '.join(INITS)}, got {list(inits)}")
    uri = resolve_tracking_uri(params.tracking, root)
    try:
        check_tracking_uri(uri)
    except RuntimeError as exc:
        raise FinetuneError(str(exc)) from None
    corpus = corpus_dir(params, root)
    labelled = labelled_data(corpus)
    data = labelled.data
    tokens = data.vocab.tokens
    for split, count in labelled.skipped.items():
        if count:
            total = count + len(getattr(data, split))
            print(f"{stage}: {count} of {total} {split} utterances have no transcript; skipped")
    from lhotse import CutSet

    check_enough_audio(CutSet.from_cuts(item.cut for item in data.train), params, corpus)
    if "pretrained" in inits:
        encoder = Path(encoder) if encoder else root / "models" / variant / "encoder.pt"
        check_encoder(encoder, params)
    resumed = check_resume(Path(resume), params, tokens, inits) if resume else None

    commit = git_commit(root)
    storage = absolute(params.cluster.storage_path, root)
    start_cluster(params, storage)
    digest = file_digest(encoder) if "pretrained" in inits else ""
    entries: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for init in inits:
        source = encoder if init == "pretrained" else None
        name = finetune_run_name(params, variant, init, tokens, digest if source else "", commit)
        tags = {
            "git_commit": commit,
            "variant": variant,
            "init": init,
            "stage": os.environ.get("DVC_STAGE", "manual"),
            "mixer": params.model.mixer.kind,
            "encoder": str(source) if source else "random",
        }
        title = f"finetune-{variant}-{init}"
        run_id, run_dir = open_tracked_run(
            params, uri, variant, name, storage, tags, "finetune", title
        )
        start = Path(resume) if resume and resumed == init else None
        config = loop_config(params, corpus, run_dir, uri, run_id, start)
        config.update(vocab=tokens, init=init, encoder=str(source) if source else None)
        ft = params.downstream.finetune
        result = fit_run(
            params, name, storage, config, show_progress, finetune_loop_per_worker, ft.max_steps
        )
        final = final_checkpoint(result, run_dir, name, storage, params.train.max_nan_steps)
        from smx.train.checkpoint import read_state

        with final.as_directory() as folder:
            state = read_state(folder, finetune_hash(params, tokens, init))
        scores = evaluate(state, params, data)
        flat = {f"{split}_{k}": v for split, values in scores.items() for k, v in values.items()}
        log_metrics(uri, run_id, flat, int(state["step"]))
        entries[init] = init_entry(state, scores, params, data)
        rows.extend(plot_rows(init, state["history"]))
        print(
            f"{stage}: {init}: dev WER {scores['dev']['wer']:.4f} CER {scores['dev']['cer']:.4f}, "
            f"test WER {scores['test']['wer']:.4f} CER {scores['test']['cer']:.4f}",
            file=sys.stdout,
            flush=True,
        )
    paths = write_finetune_outputs(variant, entries, rows, out)
    for key, path in paths.items():
        print(f"{stage}: {key} -> {path}")
    return paths
