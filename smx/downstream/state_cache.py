"""A disk cache of frozen upstreams' hidden states, shared by every task probed on a corpus.

Each probing task of a variant is its own run (its own DVC stage), and every one of them
probes the same upstreams (the pre-trained encoder, its random-init twin) on the same
corpus. Extracting their states is a large part of a short probing run, so the first run
extracts every utterance of the corpus (all its splits, in one fixed batching) and stores
one file per upstream; the other tasks load it and take their utterances. A task's states
are therefore the same whichever task ran first.

An entry's key is a SHA-256 over everything the states depend on, so that a change is a
miss and never a stale hit:

- the code that computes them: the source of :mod:`smx.nn`, of the upstream, of the
  extraction and of audio collation, and the torch, torchaudio and Lhotse versions;
- the upstream: its class, its config (:attr:`smx.downstream.upstream.Upstream.spec`) and
  every weight;
- the corpus: its completion marker (which holds a checksum of every manifest) and the
  size and modification time of every audio file; and ``max_batch_duration``.

The folder is ``$SMX_CACHE_DIR/states`` (default ``$XDG_CACHE_HOME/smx/states``, i.e.
``~/.cache/smx/states``); ``SMX_CACHE_DIR=off`` turns the cache off. Entries are written
atomically (a concurrent writer of the same key writes the same bytes); a hit refreshes
the entry's time, and the least recently used entries are removed once the folder holds
more than :data:`smx.config.STATE_CACHE_BYTES`. Deleting the folder is always safe.

Example
-------
>>> import tempfile
>>> cache = StateCache(Path(tempfile.mkdtemp()))
>>> states = {"a": torch.ones(3, 2, 4), "b": torch.zeros(1, 2, 4)}
>>> cache.save("k" * 64, states)
True
>>> loaded = cache.load("k" * 64)
>>> sorted(loaded), loaded["a"].shape, cache.load("x" * 64)
(['a', 'b'], torch.Size([3, 2, 4]), None)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

import smx
from smx.atomic import atomic_path
from smx.config import STATE_CACHE_BYTES
from smx.data.manifests import MARKER, available_splits, load_cuts
from smx.downstream.upstream import Upstream

ENV = "SMX_CACHE_DIR"
OFF = "off"
#: the files whose code computes hidden states, relative to the smx package
CODE = ("nn", "downstream/upstream.py", "downstream/features.py", "data/loader.py")
PACKAGES = ("torch", "torchaudio", "lhotse")
SUFFIX = ".pt"
#: :func:`smx.downstream.features.extract`: (upstreams, cuts, max_batch_duration) -> states
Extract = Callable[
    [Mapping[str, Upstream], Sequence[Any], float], dict[str, dict[str, torch.Tensor]]
]


def cache_root(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The state cache's folder from the environment, or None when it is turned off.

    Example
    -------
    >>> cache_root({"SMX_CACHE_DIR": "/tmp/c"}), cache_root({"SMX_CACHE_DIR": "off"})
    (PosixPath('/tmp/c/states'), None)
    >>> cache_root({"XDG_CACHE_HOME": "/x"})
    PosixPath('/x/smx/states')
    """
    base = environ.get(ENV, "")
    if base.strip().lower() == OFF:
        return None
    if not base:
        base = str(Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "smx")
    return Path(base).expanduser() / "states"


@cache
def code_digest() -> str:
    """SHA-256 over the source that computes hidden states and the versions it runs on."""
    root = Path(smx.__file__).parent
    digest = hashlib.sha256()
    for name in CODE:
        path = root / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
    for package in PACKAGES:
        try:
            digest.update(f"{package}={version(package)}".encode())
        except PackageNotFoundError:
            digest.update(f"{package}=?".encode())
    return digest.hexdigest()


def upstream_digest(upstream: Upstream) -> str | None:
    """SHA-256 over the upstream's class, config and weights; None when it has no ``spec``."""
    if not upstream.spec:
        return None
    digest = hashlib.sha256(f"{type(upstream).__name__}\0{upstream.spec}".encode())
    for name, tensor in sorted(upstream.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()


def corpus_cuts(corpus_dir: str | Path) -> list[Any]:
    """Every cut of a finished corpus, all splits in their order, each once."""
    seen: dict[str, Any] = {}
    for split in available_splits(corpus_dir):
        for cut in load_cuts(corpus_dir, split):
            seen.setdefault(cut.id, cut)
    return list(seen.values())


def corpus_digest(corpus_dir: str | Path, cuts: Iterable[Any]) -> str | None:
    """SHA-256 over the corpus' marker and each cut's id, span and audio file size and time.

    None when some audio is not a file (a URL, bytes in the manifest): its changes could
    not be seen, so such a corpus is not cached.
    """
    digest = hashlib.sha256((Path(corpus_dir) / MARKER).read_bytes())
    for cut in cuts:
        stats = []
        for source in cut.recording.sources:
            if source.type != "file":
                return None
            stat = os.stat(source.source)
            stats.append((source.source, stat.st_size, stat.st_mtime_ns))
        digest.update(json.dumps([cut.id, cut.start, cut.duration, stats]).encode())
    return digest.hexdigest()


def entry_key(upstream_key: str, corpus_key: str, max_batch_duration: float) -> str:
    """The key of one upstream's states on one corpus.

    Example
    -------
    >>> len(entry_key("u", "c", 30.0)), entry_key("u", "c", 30.0) == entry_key("u", "c", 20.0)
    (64, False)
    """
    text = f"{code_digest()}\0{upstream_key}\0{corpus_key}\0{max_batch_duration!r}"
    return hashlib.sha256(text.encode()).hexdigest()


class StateCache:
    """One folder of cached states, one file per key (see the module docstring).

    Arguments
    ---------
    root : Path
        The folder; created on the first save.
    max_bytes : int
        The folder's size above which the least recently used entries are removed.
    """

    def __init__(self, root: Path, max_bytes: int = STATE_CACHE_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        return self.root / f"{key}{SUFFIX}"

    def load(self, key: str) -> dict[str, torch.Tensor] | None:
        """Cut id -> ``[T, L, D]`` states of ``key``, or None when absent or unreadable."""
        path = self.path(key)
        try:
            entry = torch.load(path, weights_only=True)
            ids, lengths, states = entry["ids"], entry["lengths"].tolist(), entry["states"]
            rows = torch.split(states, lengths) if ids else ()
            out = {cut_id: row.clone() for cut_id, row in zip(ids, rows, strict=True)}
            os.utime(path)  # most recently used
        except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError):
            return None  # absent, half-evicted or from an incompatible writer: a miss
        return out

    def save(self, key: str, states: Mapping[str, torch.Tensor]) -> bool:
        """Store ``states`` (cut id -> ``[T, L, D]``) under ``key``, then trim the folder.

        Returns False, storing nothing, for an entry larger than the whole cache or a
        folder that cannot be written (full, read-only): a cache never fails its caller.
        """
        ids = list(states)
        rows = [states[i] for i in ids]
        size = sum(r.numel() * r.element_size() for r in rows)
        if size > self.max_bytes:
            return False
        entry = {
            "ids": ids,
            "lengths": torch.tensor([r.shape[0] for r in rows], dtype=torch.long),
            "states": torch.cat(rows) if rows else torch.empty(0),
        }
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.path(key)) as tmp:
                torch.save(entry, tmp)
        except OSError:
            return False
        self.trim(keep=key)
        return True

    def trim(self, keep: str | None = None) -> list[Path]:
        """Remove the least recently used entries (never ``keep``) down to ``max_bytes``."""
        entries = []
        for path in self.root.glob(f"*{SUFFIX}"):
            try:
                stat = path.stat()
            except OSError:
                continue  # removed by another process meanwhile
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        removed = []
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            if path.name == f"{keep}{SUFFIX}":
                continue
            path.unlink(missing_ok=True)
            total -= size
            removed.append(path)
        return removed


def cached_states(
    upstreams: Mapping[str, Upstream],
    cuts: Sequence[Any],
    corpus_dir: str | Path,
    max_batch_duration: float,
    extract: Extract,
    store: StateCache,
) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]]:
    """The states of ``cuts`` under every upstream, through ``store``.

    Upstreams found in ``store`` are loaded; the others extract every cut of the corpus at
    ``corpus_dir`` with ``extract`` (:func:`smx.downstream.features.extract`, all of them
    in one pass over the audio) and are stored. An upstream without a ``spec`` is not cached.

    Returns
    -------
    tuple[dict[str, dict[str, torch.Tensor]], list[str]]
        Upstream name -> cut id -> ``[T, L, D]`` states (the ids of ``cuts`` only), and the
        names that came from the cache.
    """
    every = corpus_cuts(corpus_dir)
    known = {cut.id for cut in every}
    wanted = [cut.id for cut in cuts]
    if any(cut_id not in known for cut_id in wanted):  # not this corpus' cuts: no cache
        return extract(upstreams, cuts, max_batch_duration), []
    corpus_key = corpus_digest(corpus_dir, every)
    if corpus_key is None:  # audio whose changes cannot be seen: no cache
        return extract(upstreams, cuts, max_batch_duration), []
    keys: dict[str, str] = {}
    for name, upstream in upstreams.items():
        digest = upstream_digest(upstream)
        if digest is not None:
            keys[name] = entry_key(digest, corpus_key, max_batch_duration)
    found = {name: store.load(key) for name, key in keys.items()}
    hits = {name: states for name, states in found.items() if states is not None}
    missing = {name: up for name, up in upstreams.items() if name not in hits}
    fresh = extract(missing, every, max_batch_duration) if missing else {}
    for name, states in fresh.items():
        if name in keys:
            store.save(keys[name], states)
    merged = {**hits, **fresh}
    selected = {name: {i: merged[name][i] for i in wanted} for name in upstreams}
    return selected, [name for name in upstreams if name in hits]


def open_cache(environ: Mapping[str, str] = os.environ) -> StateCache | None:
    """The state cache the environment names (:func:`cache_root`), or None when off."""
    root = cache_root(environ)
    return None if root is None else StateCache(root)
