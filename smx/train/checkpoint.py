"""Training checkpoints: plain state dicts, written atomically, refused if the model differs.

A checkpoint is a folder with one file per DDP rank plus the shared state:

    state.pt        model, optimiser, scheduler, step, history, config + its hash (rank 0)
    rank_<r>.pt     that rank's loader position and RNG states (torch, numpy, python,
                    the objective's mask generator, CUDA)

Every file holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(..., weights_only=True)``. Each file is written to a temporary name and renamed
(:func:`smx.atomic.atomic_path`); the folder is assembled under a temporary name and renamed
too, so a crash never leaves a checkpoint that looks complete but is not. A checkpoint carries
the SHA-256 of the ``model`` and ``ssl`` sections combined with the hash of the code that
wrote it (:mod:`smx.provenance`): a checkpoint of another config or of other code is refused
with :class:`CheckpointMismatch`.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smx.atomic import atomic_path
from smx.provenance import with_source

FORMAT = 1
STATE_FILE = "state.pt"


class CheckpointMismatch(ValueError):
    """A checkpoint was made with another model/objective config than the current one."""


class SourceMismatch(CheckpointMismatch):
    """A checkpoint was made with the same config by other smx code (another source hash)."""


class CheckpointError(ValueError):
    """A checkpoint folder is incomplete or unreadable."""


def config_hash(params: Any) -> str:
    """SHA-256 of the ``model`` and ``ssl`` sections (what the weights' shapes depend on).

    SummaryMixing's ``activation_checkpointing`` and ``recompute`` are left out: they change
    memory, not weights, so a run may resume with them switched on or off.

    Example
    -------
    >>> from smx.config import Params
    >>> a, b = Params(), Params.model_validate({"model": {"encoder": {"num_layers": 2}}})
    >>> config_hash(a) == config_hash(Params()), config_hash(a) == config_hash(b)
    (True, False)
    """
    model = params.model.model_dump(mode="json")
    model["mixer"].pop("activation_checkpointing", None)  # a training setting, not a shape
    model["mixer"].pop("recompute", None)  # likewise
    data = {"model": model, "ssl": params.ssl.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def rank_file(rank: int) -> str:
    """The file name of one rank's state."""
    return f"rank_{rank}.pt"


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """The RNG states of this process (torch, numpy, python, CUDA) and of ``generator``.

    Example
    -------
    >>> state = rng_state(torch.Generator().manual_seed(0))
    >>> a = torch.rand(2); set_rng_state(state); bool(torch.equal(a, torch.rand(2)))
    True
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": _python_state(),
    }
    if generator is not None:
        state["generator"] = generator.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    return {"version": version, "internal": list(internal), "gauss": gauss}


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` returned (and ``generator``'s state if saved)."""
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_file(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary name, then rename: the file is whole or absent.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "x.pt"
    >>> save_file({"step": 3}, path); load_file(path)
    {'step': 3}
    """
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_file(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


def write_checkpoint(
    folder: str | Path, rank: int, rank_state: dict[str, Any], state: dict[str, Any] | None
) -> Path:
    """Write one rank's part of a checkpoint into ``folder`` (assembled, then renamed).

    Arguments
    ---------
    folder : str | Path
        The final folder (must not exist yet; a leftover temporary one is replaced).
    rank : int
        This process' rank; its file is ``rank_<rank>.pt``.
    rank_state : dict[str, Any]
        Loader position and RNG states of this rank.
    state : dict[str, Any] | None
        The shared state (rank 0 only, else None): model, optimiser, step, ...

    Returns
    -------
    Path
        ``folder``.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "ckpt"
    >>> _ = write_checkpoint(folder, 0, {"step": 1}, {"step": 1, "config_hash": "x"})
    >>> sorted(p.name for p in folder.iterdir())
    ['rank_0.pt', 'state.pt']
    """
    folder = Path(folder)
    staging = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(rank_state, staging / rank_file(rank))
    if state is not None:
        save_file({"format": FORMAT, **state}, staging / STATE_FILE)
    staging.rename(folder)
    return folder


def read_state(
    folder: str | Path, expected_hash: str | None = None, source: str = ""
) -> dict[str, Any]:
    """The shared state of a checkpoint folder, checked against a config hash and the code.

    Arguments
    ---------
    folder : str | Path
        The checkpoint folder.
    expected_hash : str | None
        The config hash the checkpoint must have been made with (:func:`config_hash`, or a
        job's own); None reads without checking.
    source : str
        The source hash of the code that reads it (:mod:`smx.provenance`); the checkpoint
        must carry ``with_source(expected_hash, source)``.

    Raises
    ------
    CheckpointError
        The folder has no readable ``state.pt``.
    SourceMismatch
        It was made with the same config by other smx code.
    CheckpointMismatch
        It was made with another model/objective config.

    Example
    -------
    >>> import tempfile
    >>> folder = write_checkpoint(Path(tempfile.mkdtemp()) / "c", 0, {}, {"config_hash": "a"})
    >>> read_state(folder, "a")["format"]
    1
    >>> read_state(folder, "b")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    smx.train.checkpoint.CheckpointMismatch: checkpoint ... was made with another model ...
    """
    folder = Path(folder)
    path = folder / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {folder} has no {STATE_FILE}: it is not a checkpoint")
    try:
        state = load_file(path)
    except Exception as exc:  # a truncated or foreign file
        raise CheckpointError(f"checkpoint {path} cannot be read ({exc})") from None
    found = state.get("config_hash")
    if expected_hash is None or found == with_source(expected_hash, source):
        return state
    theirs = str(state.get("source_hash") or "")
    if found == with_source(expected_hash, theirs):
        raise SourceMismatch(
            f"checkpoint {folder} was written by other smx code (source hash "
            f"{theirs[:8] or 'none'}, this tree {source[:8] or 'none'}); resume it with the "
            "code that made it, or start a new run without --resume"
        )
    raise CheckpointMismatch(
        f"checkpoint {folder} was made with another model or ssl config "
        f"(hash {str(found)[:12]}, this config {expected_hash[:12]}); "
        "resume it with the config that made it, or start a new run without --resume"
    )


def read_rank_state(folder: str | Path, rank: int) -> dict[str, Any] | None:
    """One rank's loader position and RNG states, or None when the folder lacks them."""
    path = Path(folder) / rank_file(rank)
    return load_file(path) if path.is_file() else None
