"""Probes learn separable toy tasks; layer weights sum to one; padding does not matter."""

from __future__ import annotations

import math

import pytest
import torch

from smx.config import PROBES, DownstreamCfg
from smx.downstream.decoding import greedy_decode
from smx.downstream.fit import Example, fit, improvement, predict
from smx.downstream.layers import WeightedLayerSum
from smx.downstream.metrics import accuracy
from smx.downstream.probes import build_probe, build_probe_model

LAYERS, DIM = 3, 8


def toy_classes(count: int, gen: torch.Generator, direction: torch.Tensor) -> list[Example]:
    """Two classes told apart by a shift along ``direction`` in layer 2 only; other layers noise."""
    out = []
    for i in range(count):
        label = i % 2
        frames = int(torch.randint(10, 30, (1,), generator=gen))
        states = torch.randn(frames, LAYERS, DIM, generator=gen)
        states[:, 2] += (2 * label - 1) * 1.5 * direction
        out.append(Example(f"u{i}", 1.0, states, label))
    return out


def test_linear_probe_learns_separable_task_and_weights_the_informative_layer() -> None:
    gen = torch.Generator().manual_seed(0)
    direction = torch.nn.functional.normalize(torch.randn(DIM, generator=gen), dim=0)
    train, dev, test = (toy_classes(n, gen, direction) for n in (96, 32, 64))
    cfg = DownstreamCfg(epochs=12, lr=1e-2, lr_weights=5e-2, probe_dim=8, max_batch_duration=8.0)
    torch.manual_seed(0)
    model = build_probe_model("intent", "linear", LAYERS, DIM, outputs=2, width=8)
    result = fit("intent", model, train, dev, cfg, seed=0)
    outputs = predict(model, test, cfg.max_batch_duration)
    predictions = [int(outputs[e.id].argmax()) for e in test]
    assert accuracy([e.target for e in test], predictions) >= 0.95
    weights = model.layers.weights().detach()
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-6)
    assert int(weights.argmax()) == 2 and float(weights[2]) > 1 / LAYERS
    assert result.dev_losses[result.best_epoch] == min(result.dev_losses)


def toy_transcripts(count: int, gen: torch.Generator) -> list[Example]:
    """Frames spell out a token sequence (tokens 1..3, 3 frames each, a blank-like gap)."""
    out = []
    for i in range(count):
        tokens = torch.randint(
            1, 4, (int(torch.randint(2, 5, (1,), generator=gen)),), generator=gen
        )
        frames = []
        for tok in tokens.tolist():
            frames += [tok] * 3 + [0]
        one_hot = torch.nn.functional.one_hot(torch.tensor(frames), DIM).float()  # [T, DIM]
        states = 0.1 * torch.randn(len(frames), LAYERS, DIM, generator=gen)
        states += one_hot[:, None, :]
        out.append(Example(f"a{i}", 1.0, states, tokens))
    return out


def test_ctc_probe_learns_to_transcribe_a_toy_code() -> None:
    gen = torch.Generator().manual_seed(1)
    train, dev, test = (toy_transcripts(n, gen) for n in (64, 16, 16))
    cfg = DownstreamCfg(epochs=15, lr=1e-2, lr_weights=1e-2, probe_dim=16, max_batch_duration=8.0)
    torch.manual_seed(0)
    model = build_probe_model("asr", "conv", LAYERS, DIM, outputs=4, width=16)
    fit("asr", model, train, dev, cfg, seed=0)
    outputs = predict(model, test, cfg.max_batch_duration)
    correct = sum(
        greedy_decode(outputs[e.id][None], torch.tensor([outputs[e.id].shape[0]]))[0]
        == e.target.tolist()
        for e in test
    )
    assert correct >= 14  # of 16


def test_layer_weights_start_uniform_and_sum_to_one() -> None:
    mix = WeightedLayerSum(4)
    assert mix.weights().tolist() == [0.25] * 4
    with torch.no_grad():
        mix.logits.copy_(torch.tensor([3.0, -1.0, 0.5, 2.0]))
    weights = mix.weights().detach()
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-6)
    assert bool((weights > 0).all())
    states = torch.arange(4.0).view(1, 1, 4, 1)  # layer l holds the value l
    expected = float((weights * torch.arange(4.0)).sum())
    assert float(mix(states).detach()) == pytest.approx(expected)
    with pytest.raises(ValueError, match="L=4"):
        mix(torch.zeros(1, 1, 3, 1))


@pytest.mark.parametrize(("task", "name"), [(t, n) for t, names in PROBES.items() for n in names])
def test_probe_outputs_ignore_padding(task: str, name: str) -> None:
    torch.manual_seed(0)
    probe = build_probe(task, name, dim=DIM, outputs=5, width=16).eval()
    x = torch.randn(1, 12, DIM)
    padded = torch.cat([x, torch.randn(1, 7, DIM)], dim=1)
    short = probe(x, torch.tensor([12]))
    long = probe(padded, torch.tensor([12]))
    if task == "asr":
        long = long[:, :12]
        assert short.shape == (1, 12, 5)
        assert torch.allclose(short.exp().sum(-1), torch.ones(1, 12), atol=1e-5)
    torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-5)


def test_unknown_probe_is_refused() -> None:
    with pytest.raises(ValueError, match="not a probe of task 'speaker'"):
        build_probe("speaker", "bilstm", DIM, 5, 16)


def test_newbob_improvement() -> None:
    assert improvement(2.0, 1.0) == 0.5
    assert improvement(1.0, 1.001) < 0.0025  # worse: the learning rates are annealed


def test_without_a_usable_dev_label_the_last_epoch_is_kept() -> None:
    gen = torch.Generator().manual_seed(0)
    direction = torch.nn.functional.normalize(torch.randn(DIM, generator=gen), dim=0)
    train = toy_classes(16, gen, direction)
    unseen = [Example(e.id, e.duration, e.states, -1) for e in toy_classes(4, gen, direction)]
    cfg = DownstreamCfg(epochs=3, probe_dim=8, max_batch_duration=8.0)
    model = build_probe_model("intent", "linear", LAYERS, DIM, outputs=2, width=8)
    result = fit("intent", model, train, unseen, cfg, seed=0)
    assert all(math.isnan(loss) for loss in result.dev_losses)
    assert result.best_epoch == 2
