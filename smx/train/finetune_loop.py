"""The fine-tuning loop of every Ray Train worker: the pre-training loop with a CTC model.

:class:`FinetuneTrainer` is :class:`smx.train.loop.Trainer` with other hooks: the model is
:class:`smx.downstream.ctc.CTCModel` (its encoder loaded from ``encoder.pt``, or random for
the baseline), the loader yields the labelled training utterances with their character ids,
and the loop settings are those of ``train`` with ``downstream.finetune``'s steps, peak LR
and tri-stage schedule. Checkpoints, resume, DDP, NaN handling and MLflow logging are the
pre-training loop's. DDP looks for unused parameters, since the frozen encoder of the first
``freeze_steps`` updates (and wav2vec 2.0's mask embedding) gets no gradient.

The worker's ``config`` is :func:`smx.train.launch.loop_config` plus ``vocab`` (the
character tokens), ``init`` (``pretrained`` or ``random_init``) and ``encoder`` (the
``encoder.pt`` path, None for the random init).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from smx.config import Params, TrainCfg
from smx.data.text import CharVocab
from smx.train.checkpoint import config_hash
from smx.train.loop import Trainer, run_worker
from smx.train.schedule import Schedule, tristage


def finetune_settings(params: Params) -> TrainCfg:
    """The ``train`` section with ``downstream.finetune``'s steps, peak LR and warm-up.

    Example
    -------
    >>> p = Params.model_validate({"downstream": {"finetune": {"max_steps": 50, "freeze_steps": 5}}})
    >>> s = finetune_settings(p)
    >>> s.max_steps, s.lr, s.schedule, s.warmup_steps
    (50, 5e-05, 'tristage', 5)
    """
    ft = params.downstream.finetune
    warmup, _ = ft.stages()
    update = {
        "max_steps": ft.max_steps,
        "lr": ft.lr,
        "schedule": "tristage",
        "warmup_steps": warmup,
    }
    return params.train.model_copy(update=update)


def finetune_schedule(params: Params) -> Schedule:
    """The tri-stage learning rate of each fine-tuning update (``downstream.finetune``).

    Example
    -------
    >>> p = Params.model_validate({"downstream": {"finetune": {"max_steps": 100, "freeze_steps": 5,
    ...     "lr": 1.0}}})
    >>> sched = finetune_schedule(p)
    >>> [round(sched(n), 3) for n in (0, 10, 50, 100)]
    [0.01, 1.0, 1.0, 0.05]
    """
    ft = params.downstream.finetune
    warmup, hold = ft.stages()
    return lambda n: tristage(n, ft.lr, warmup, hold, ft.max_steps)


def finetune_hash(params: Params, tokens: list[str], init: str) -> str:
    """What a fine-tuning checkpoint must match: architecture, vocabulary and init.

    Example
    -------
    >>> a = finetune_hash(Params(), ["<blank>", "<unk>", "a"], "pretrained")
    >>> a == finetune_hash(Params(), ["<blank>", "<unk>", "a"], "random_init")
    False
    """
    data = {"model": config_hash(params), "vocab": tokens, "init": init}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class HasTranscript:
    """Picklable predicate: the cut has a non-empty transcript."""

    def __call__(self, cut: Any) -> bool:
        return any(s.text and s.text.strip() for s in cut.supervisions)


class FinetuneTrainer(Trainer):
    """One worker's CTC fine-tuning run (see the module docstring)."""

    def settings(self) -> TrainCfg:
        return finetune_settings(self.params)

    def build_model(self) -> torch.nn.Module:
        from smx.downstream.ctc import build_ctc_model, load_encoder

        self.vocab = CharVocab("".join(self.config["vocab"][2:]))
        model = build_ctc_model(self.params, len(self.vocab))
        if self.config.get("encoder"):
            load_encoder(model, self.config["encoder"], self.params)
        return model

    def model_hash(self) -> str:
        return finetune_hash(self.params, self.vocab.tokens, self.config["init"])

    def build_loader(self) -> Any:
        from smx.data.loader import TrainLoader
        from smx.data.manifests import load_cuts

        cuts = load_cuts(self.config["corpus_dir"], "train").filter(HasTranscript())
        return TrainLoader(
            cuts, self.params.data, rank=self.rank, world_size=self.world, seed=self.params.seed
        )

    def build_schedule(self) -> Schedule:
        return finetune_schedule(self.params)

    def find_unused_parameters(self) -> bool:
        return True

    def inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        from smx.downstream.ctc import encode_texts

        targets, target_lens = encode_texts(batch["text"], self.vocab)
        return {
            **super().inputs(batch),
            "targets": targets.to(self.device),  # [B, U]
            "target_lens": target_lens.to(self.device),  # [B]
        }

    def extra_state(self) -> dict[str, Any]:
        return {"init": self.config["init"], "vocab": self.vocab.tokens}

    def logged(self, step: int) -> bool:
        return step == 1 or super().logged(step)  # the first loss is in the metrics


def finetune_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry point of fine-tuning (:func:`smx.train.loop.run_worker`)."""
    return run_worker(FinetuneTrainer, config)
