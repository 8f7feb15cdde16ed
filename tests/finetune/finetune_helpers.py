"""Helpers of the fine-tuning tests: tiny configs, encoder files, corpus copies."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lhotse import CutSet
from tiny import tiny_params

from smx.config import Params

#: a short fine-tuning run: 4 frozen updates, then 8 with the encoder
FINETUNE: dict[str, Any] = {"max_steps": 12, "freeze_steps": 4, "lr": 3e-3}


def finetune_params(corpus_root: Path, storage: Path, uri: str | None, **finetune: Any) -> Params:
    """The tiny model and corpus of tests/tiny.py with a short fine-tuning recipe."""
    data = tiny_params(
        corpus_root, storage, uri, checkpoint_every=4, keep_checkpoints=3
    ).model_dump(mode="json")
    data["downstream"]["finetune"] = {**data["downstream"]["finetune"], **FINETUNE, **finetune}
    data["downstream"]["max_batch_duration"] = 30.0
    data["variants"] = {"sm": {}}
    return Params.model_validate(data)


def copy_corpus(source: Path, target: Path, edit: dict[str, Callable[[Any], Any | None]]) -> Path:
    """A copy of a prepared corpus (audio linked) whose split cuts pass through ``edit[split]``.

    ``edit[split](cut)`` returns the cut to keep (changed or not) or None to drop it.
    """
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name == "audio":
            (target / "audio").symlink_to(item.resolve())
        else:
            shutil.copy(item, target / item.name)
    for split, fn in edit.items():
        name = f"cuts_{split}.jsonl.gz"
        cuts = [c for c in (fn(cut) for cut in CutSet.from_file(source / name)) if c is not None]
        CutSet.from_cuts(cuts).to_file(target / name)
    return target
