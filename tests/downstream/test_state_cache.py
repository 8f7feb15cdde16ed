"""The hidden-state cache: round trip, what its key covers, LRU trimming, use by the probes."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from downstream_helpers import tiny_params

from smx.downstream.features import extract
from smx.downstream.run import probe_encoder
from smx.downstream.state_cache import (
    StateCache,
    cached_states,
    corpus_cuts,
    open_cache,
    upstream_digest,
)
from smx.downstream.tasks import load_task_data
from smx.downstream.upstream import fbank_upstream, random_upstream


class CountingExtract:
    """The real extraction, counting the cuts it encoded per upstream."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int]] = []

    def __call__(
        self, upstreams: Mapping[str, Any], cuts: Sequence[Any], max_batch_duration: float
    ) -> dict[str, dict[str, torch.Tensor]]:
        self.calls.append((sorted(upstreams), len(cuts)))
        return extract(upstreams, cuts, max_batch_duration)


def test_an_entry_round_trips_exactly(tmp_path: Path) -> None:
    cache = StateCache(tmp_path)
    states = {"b": torch.randn(5, 3, 4), "a": torch.randn(2, 3, 4), "c": torch.randn(1, 3, 4)}
    cache.save("k" * 64, states)
    loaded = cache.load("k" * 64)
    assert loaded is not None and list(loaded) == ["b", "a", "c"]
    assert all(torch.equal(loaded[i], states[i]) for i in states)
    loaded["a"].add_(1.0)  # each cut owns its tensor: writing one leaves the others
    assert torch.equal(cache.load("k" * 64)["a"], states["a"])  # type: ignore[index]


def test_a_truncated_entry_is_a_miss(tmp_path: Path) -> None:
    cache = StateCache(tmp_path)
    cache.save("k" * 64, {"a": torch.ones(4, 2, 2)})
    path = cache.path("k" * 64)
    path.write_bytes(path.read_bytes()[:50])
    assert cache.load("k" * 64) is None


def test_a_folder_that_cannot_be_written_stores_nothing_and_raises_nothing(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    cache = StateCache(blocker / "states")
    assert cache.save("k" * 64, {"a": torch.ones(2, 1, 2)}) is False
    assert cache.load("k" * 64) is None


def test_the_least_recently_used_entries_go_first(tmp_path: Path) -> None:
    entry = {"a": torch.zeros(256, 1, 4)}  # 4 KiB of states, about 7 KB on disk
    cache = StateCache(tmp_path, max_bytes=18_000)  # room for two entries
    for i, key in enumerate(("a" * 64, "b" * 64)):
        cache.save(key, entry)
        os.utime(cache.path(key), (1000.0 + i, 1000.0 + i))
    assert cache.load("a" * 64) is not None  # a hit makes "a" the most recent
    cache.save("c" * 64, entry)  # three entries exceed the limit: the oldest ("b") goes
    assert sorted(p.name[0] for p in tmp_path.glob("*.pt")) == ["a", "c"]
    StateCache(tmp_path, max_bytes=4000).save("d" * 64, entry)  # larger than the whole cache
    assert not StateCache(tmp_path).path("d" * 64).exists()


def test_the_environment_names_or_turns_off_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMX_CACHE_DIR", "/somewhere")
    assert open_cache().root == Path("/somewhere/states")  # type: ignore[union-attr]
    monkeypatch.setenv("SMX_CACHE_DIR", "OFF")
    assert open_cache() is None


def test_the_first_task_extracts_the_corpus_and_the_next_loads_it(
    corpus_root: Path, tmp_path: Path
) -> None:
    corpus = corpus_root / "synth"
    params = tiny_params(corpus_root)
    upstreams = {"random_init": random_upstream(params, seed=0), "fbank": fbank_upstream(params)}
    every = corpus_cuts(corpus)
    asr = load_task_data(corpus, "asr").cuts()
    speaker = load_task_data(corpus, "speaker").cuts()
    assert {c.id for c in asr} != {c.id for c in speaker}  # the tasks use different utterances
    store, counting = StateCache(tmp_path), CountingExtract()

    first, hits = cached_states(upstreams, asr, corpus, 10.0, counting, store)
    assert hits == [] and counting.calls == [(["fbank", "random_init"], len(every))]
    assert len(list(tmp_path.glob("*.pt"))) == 2  # one entry per upstream

    second, hits = cached_states(upstreams, speaker, corpus, 10.0, counting, store)
    assert hits == ["random_init", "fbank"] and len(counting.calls) == 1  # nothing extracted
    assert set(second["random_init"]) == {c.id for c in speaker}

    fresh = extract(upstreams, every, 10.0)  # the same batching as the cache's
    for states in (first, second):
        for name, by_cut in states.items():
            assert all(torch.equal(by_cut[i], fresh[name][i]) for i in by_cut)


def test_a_change_of_weights_audio_or_batching_is_a_miss(corpus_root: Path, tmp_path: Path) -> None:
    corpus = corpus_root / "synth"
    params = tiny_params(corpus_root)
    cuts = load_task_data(corpus, "intent").cuts()
    store, counting = StateCache(tmp_path), CountingExtract()
    up = {"random_init": random_upstream(params, seed=0)}
    cached_states(up, cuts, corpus, 10.0, counting, store)
    assert cached_states(up, cuts, corpus, 10.0, counting, store)[1] == ["random_init"]

    other = {"random_init": random_upstream(params, seed=1)}  # other weights
    assert cached_states(other, cuts, corpus, 10.0, counting, store)[1] == []
    assert cached_states(up, cuts, corpus, 8.0, counting, store)[1] == []  # other batching
    audio = Path(next(s.source for s in cuts[0].recording.sources))
    stat = audio.stat()
    os.utime(audio, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # the audio was rewritten
    try:
        assert cached_states(up, cuts, corpus, 10.0, counting, store)[1] == []
    finally:
        os.utime(audio, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert len(counting.calls) == 4


def test_an_upstream_without_spec_and_foreign_cuts_are_not_cached(
    corpus_root: Path, tmp_path: Path
) -> None:
    corpus = corpus_root / "synth"
    params = tiny_params(corpus_root)
    cuts = load_task_data(corpus, "intent").cuts()
    handmade = random_upstream(params, seed=0)
    handmade.spec = ""
    assert upstream_digest(handmade) is None
    store, counting = StateCache(tmp_path), CountingExtract()
    cached_states({"x": handmade}, cuts, corpus, 10.0, counting, store)
    assert list(tmp_path.glob("*.pt")) == []

    foreign = [cuts[0].with_id("not-in-the-corpus")]
    up = {"fbank": fbank_upstream(params)}
    states, hits = cached_states(up, foreign, corpus, 10.0, counting, store)
    assert hits == [] and list(states["fbank"]) == ["not-in-the-corpus"]
    assert counting.calls[-1] == (["fbank"], 1) and list(tmp_path.glob("*.pt")) == []


def test_a_second_task_probes_on_the_states_the_first_stored(
    corpus_root: Path, encoder_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SMX_CACHE_DIR", str(tmp_path))
    corpus = corpus_root / "synth"
    params = tiny_params(corpus_root, seeds=1, epochs=1)
    lines: list[str] = []

    def probe(task: str) -> dict[str, Any]:
        """Probe ``task`` with the linear probe, its progress lines kept in ``lines``."""
        return probe_encoder(
            encoder_file,
            task,
            params,
            corpus,
            probes=["linear"],
            progress=lambda m, _: lines.append(m),
        )

    first = probe("intent")
    assert not any("loaded from the cache" in line for line in lines)
    # encoder_file holds the seed-0 random weights: the pre-trained encoder and its random
    # init compute the same states and share one entry; fbank has the other
    assert len(list((tmp_path / "states").glob("*.pt"))) == 2
    lines.clear()
    probe("style")
    assert "style: pretrained, random_init, fbank loaded from the cache" in lines
    again = probe("intent")
    assert again == first  # the cached states give the numbers the extracted ones gave
