"""Training input: collation, duration filters, batch sizes, DDP ranks, resume, vocabulary."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from data_helpers import tiny_data_cfg

from smx.config import DataCfg
from smx.data.loader import (
    TrainLoader,
    collate,
    filter_duration,
    load_vocab,
    make_sampler,
    unknown_chars,
)
from smx.data.manifests import load_cuts


def cfg(**top: Any) -> DataCfg:
    return tiny_data_cfg({"max_duration": 5.0, "max_batch_duration": 8.0, **top})


def ids(batches: list[dict[str, Any]]) -> list[list[str]]:
    return [b["ids"] for b in batches]


def test_collate_pads_on_the_right_and_keeps_every_label(synth_corpus: Any) -> None:
    cuts = list(load_cuts(synth_corpus.out_dir, "train"))[:4]
    from lhotse import CutSet

    batch = collate(CutSet.from_cuts(cuts))
    lengths = [c.num_samples for c in cuts]
    assert batch["audio"].shape == (4, max(lengths)) and batch["audio"].dtype == torch.float32
    assert batch["audio_lens"].dtype == torch.int64 and batch["audio_lens"].tolist() == lengths
    for row, cut in enumerate(cuts):
        n = lengths[row]
        np.testing.assert_array_equal(batch["audio"][row, :n].numpy(), cut.load_audio()[0])
        assert torch.all(batch["audio"][row, n:] == 0)
        sup = cut.supervisions[0]
        assert batch["text"][row] == sup.text and batch["speaker"][row] == sup.speaker
        assert batch["intent"][row] == sup.custom["intent"]
        assert batch["style"][row] == sup.custom["style"]
        assert batch["ids"][row] == cut.id


def test_duration_filter_and_batch_duration(synth_corpus: Any) -> None:
    cuts = load_cuts(synth_corpus.out_dir, "train")
    durations = sorted(c.duration for c in cuts)
    low, high = durations[2], durations[-3]  # drop the two shortest and two longest
    config = cfg(min_duration=low, max_duration=high)
    kept = [c.id for c in filter_duration(cuts, low, high)]
    assert len(kept) == sum(low <= d <= high for d in durations) >= len(durations) - 4
    loader = TrainLoader(cuts, config, rank=0, world_size=1, drop_last=False, shuffle=False)
    seen = []
    for batch in loader:
        seconds = batch["audio_lens"].double() / 16000
        assert float(seconds.sum()) <= config.max_batch_duration + 1e-6
        assert float(seconds.min()) >= low - 1e-6 and float(seconds.max()) <= high + 1e-6
        seen += batch["ids"]
    assert sorted(seen) == sorted(kept)  # every kept cut exactly once


def test_two_ranks_see_disjoint_cuts(synth_corpus: Any) -> None:
    cuts = load_cuts(synth_corpus.out_dir, "train")
    config = cfg(max_batch_duration=6.0)
    per_rank = []
    for rank in (0, 1):
        loader = TrainLoader(cuts, config, rank=rank, world_size=2, seed=3)
        per_rank.append([i for batch in loader for i in batch["ids"]])
    zero, one = per_rank
    assert zero and one and not set(zero) & set(one)
    assert len(zero) == len(set(zero)) and len(one) == len(set(one))
    assert set(zero) | set(one) <= {c.id for c in cuts}
    single = TrainLoader(cuts, config, rank=0, world_size=1, seed=3)
    assert make_sampler(filter_duration(cuts, 0.5, 10.0), config, rank=1, world_size=2).rank == 1
    assert single.sampler.world_size == 1


def test_epochs_reshuffle_and_are_reproducible(synth_corpus: Any) -> None:
    cuts = load_cuts(synth_corpus.out_dir, "train")
    a = TrainLoader(cuts, cfg(), rank=0, world_size=1, seed=1)
    epoch0, epoch1 = ids(list(a)), ids(list(a))  # a full pass moves to the next epoch
    assert epoch0 != epoch1 and a.epoch == 2
    b = TrainLoader(cuts, cfg(), rank=0, world_size=1, seed=1)
    b.set_epoch(1)
    assert ids(list(b)) == epoch1


@pytest.mark.parametrize("num_workers", [0, 1])
def test_resume_continues_with_the_next_unseen_batch(synth_corpus: Any, num_workers: int) -> None:
    cuts = load_cuts(synth_corpus.out_dir, "train")
    config = cfg(max_batch_duration=5.0)
    full = TrainLoader(cuts, config, rank=0, world_size=1, seed=2, num_workers=num_workers)
    full.set_epoch(1)
    expected = ids(list(full))
    assert len(expected) >= 4

    first = TrainLoader(cuts, config, rank=0, world_size=1, seed=2, num_workers=num_workers)
    first.set_epoch(1)
    taken = []
    for batch in first:  # workers prefetch ahead; only the taken batches count
        taken.append(batch["ids"])
        if len(taken) == 2:
            break
    state = first.state_dict()
    assert state["epoch"] == 1 and state["batches_done"] == 2

    resumed = TrainLoader(cuts, config, rank=0, world_size=1, seed=2, num_workers=num_workers)
    resumed.load_state_dict(state)
    rest = ids(list(resumed))
    assert taken + rest == expected
    assert resumed.epoch == 2 and resumed.batches_done == 0


def test_resume_refuses_another_world_size(synth_corpus: Any) -> None:
    cuts = load_cuts(synth_corpus.out_dir, "train")
    state = TrainLoader(cuts, cfg(), rank=0, world_size=2).state_dict()
    with pytest.raises(ValueError, match="world_size=2"):
        TrainLoader(cuts, cfg(), rank=0, world_size=1).load_state_dict(state)


def test_too_few_cuts_for_a_sampler_is_an_error(synth_corpus: Any) -> None:
    cuts = load_cuts(synth_corpus.out_dir, "train")
    with pytest.raises(ValueError, match="at least 2 cuts"):
        make_sampler(filter_duration(cuts, 100.0, 200.0), cfg())


def test_vocabulary_and_characters_outside_it(synth_corpus: Any, caplog: Any) -> None:
    vocab = load_vocab(synth_corpus.out_dir)
    train = load_cuts(synth_corpus.out_dir, "train")
    assert unknown_chars(train, vocab) == {}
    text = "".join(c.supervisions[0].text for c in train)
    assert set(vocab.chars) == set(text)
    for split, expected in synth_corpus.summary["chars_outside_vocab"].items():
        found = unknown_chars(load_cuts(synth_corpus.out_dir, split), vocab)
        assert dict(found) == expected
        assert "characters outside the vocabulary" in caplog.text
    sample = next(iter(train)).supervisions[0].text
    assert vocab.decode(vocab.encode(sample)) == sample
