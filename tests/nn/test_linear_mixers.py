"""Fastformer and HyperMixing: their equations (module docstrings), padding, cost.

Reference values come from plain loops over utterances, frames and heads, computed in
float64 from the module's own weights (the module is cast to float64).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from smx.nn.mixers.fastformer import Fastformer, masked_pool
from smx.nn.mixers.hypermixing import HyperMixing


def batch(lengths: list[int], time: int, d_model: int = 8, seed: int = 0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), time, d_model, generator=generator, dtype=dtype)
    pad_mask = torch.arange(time)[None, :] < torch.tensor(lengths)[:, None]
    return x, pad_mask


def garbage_padding(x, pad_mask, extra: int, seed: int = 1):
    """Append ``extra`` padded frames and fill every padded frame with large random values."""
    generator = torch.Generator().manual_seed(seed)
    batch_size, _, d_model = x.shape
    longer = torch.cat([x, torch.zeros(batch_size, extra, d_model, dtype=x.dtype)], dim=1)
    mask = torch.cat([pad_mask, torch.zeros(batch_size, extra, dtype=torch.bool)], dim=1)
    noise = 100 * torch.randn(longer.shape, generator=generator, dtype=x.dtype)
    return torch.where(mask[..., None], longer, noise), mask


def loop_sinusoid(position: int, d_model: int) -> list[float]:
    out = []
    for i in range(d_model):
        frequency = 10000.0 ** (-(2 * (i // 2)) / d_model)
        out.append(math.sin(position * frequency) if i % 2 == 0 else math.cos(position * frequency))
    return out


def make_fastformer(seed: int = 0, d_model: int = 8, heads: int = 2) -> Fastformer:
    torch.manual_seed(seed)
    module = Fastformer(d_model, heads, dropout=0.0).eval()
    with torch.no_grad():  # larger than N(0, 0.02) so that every term matters in the tests
        for parameter in module.parameters():
            parameter.normal_(0.0, 0.5)
    return module


def make_hypermixing(seed: int = 0, d_model: int = 8, heads: int = 2, size: int = 6):
    torch.manual_seed(seed)
    module = HyperMixing(d_model, heads, size).eval()
    with torch.no_grad():  # non-zero biases and LayerNorm affine, so that they are tested
        for parameter in module.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return module


MIXERS = {"fastformer": make_fastformer, "hypermixing": make_hypermixing}


# ------------------------------------------------------------------ loop-based references


def loop_fastformer(module: Fastformer, x: torch.Tensor) -> torch.Tensor:
    """The Fastformer equations for one utterance ``x [T, D]`` of real frames only."""
    time, d_model = x.shape
    heads, dh = module.heads, module.head_dim

    def linear(layer, vec):
        return layer.weight @ vec + layer.bias

    q = [linear(module.query, x[t]) for t in range(time)]
    k = [linear(module.key, x[t]) for t in range(time)]
    global_query = torch.zeros(d_model, dtype=x.dtype)
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        scores = torch.stack(
            [linear(module.query_score, q[t])[h] / math.sqrt(dh) for t in range(time)]
        )
        alpha = torch.softmax(scores, 0)
        global_query[sl] = sum(alpha[t] * q[t][sl] for t in range(time))
    p = [k[t] * global_query for t in range(time)]
    global_key = torch.zeros(d_model, dtype=x.dtype)
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        scores = torch.stack(
            [linear(module.key_score, p[t])[h] / math.sqrt(dh) for t in range(time)]
        )
        beta = torch.softmax(scores, 0)
        global_key[sl] = sum(beta[t] * p[t][sl] for t in range(time))
    return torch.stack([linear(module.out, global_key * q[t]) + q[t] for t in range(time)])


def loop_hypermixing(module: HyperMixing, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
    """The HyperMixing equations head by head, frame by frame, summing over the real frames only."""
    batch_size, time, d_model = x.shape
    heads, dh, k = module.heads, module.head_dim, module.tokens_per_head
    out = torch.zeros_like(x)

    def generate(mlp, vec, h):
        first, second = mlp[0], mlp[2]
        hidden = F.gelu(vec @ first.weight[h] + first.bias[h * dh : (h + 1) * dh])
        return hidden @ second.weight[h] + second.bias[h * k : (h + 1) * k]  # [k]

    for b in range(batch_size):
        real = [t for t in range(time) if pad_mask[b, t]]
        if not real:
            continue
        heads_out = {t: [] for t in real}
        for h in range(heads):
            sl = slice(h * dh, (h + 1) * dh)
            hyper = {
                t: x[b, t, sl] + torch.tensor(loop_sinusoid(t, d_model), dtype=x.dtype)[sl]
                for t in real
            }
            w_in = {t: generate(module.generate_in, hyper[t], h) for t in real}
            w_out = {t: generate(module.generate_out, hyper[t], h) for t in real}
            hidden = F.gelu(sum(torch.outer(x[b, t, sl], w_in[t]) for t in real))  # [d_h, k]
            for t in real:
                heads_out[t].append(hidden @ w_out[t])  # [d_h]
        for t in real:
            vec = torch.cat(heads_out[t])
            mean, var = vec.mean(), vec.var(unbiased=False)
            norm = module.norm
            out[b, t] = (vec - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias
    return out


# ------------------------------------------------------------------ Fastformer


def test_fastformer_equals_loop_reference_without_padding():
    module = make_fastformer().double()
    x, pad_mask = batch([6, 6], 6, dtype=torch.float64)
    expected = torch.stack([loop_fastformer(module, x[b]) for b in range(2)])
    torch.testing.assert_close(module(x, pad_mask), expected, atol=1e-10, rtol=1e-10)


def test_fastformer_with_padding_equals_equations_on_real_frames():
    module = make_fastformer().double()
    x, pad_mask = batch([7, 4, 1], 7, dtype=torch.float64)
    y = module(x, pad_mask)
    for b, length in enumerate([7, 4, 1]):
        expected = loop_fastformer(module, x[b, :length])
        torch.testing.assert_close(y[b, :length], expected, atol=1e-10, rtol=1e-10)
        assert (y[b, length:] == 0).all()


def test_fastformer_initialisation():
    torch.manual_seed(0)
    module = Fastformer(64, 4)
    for layer in (module.query, module.key, module.query_score, module.key_score, module.out):
        assert (layer.bias == 0).all()
    assert abs(module.query.weight.std().item() - 0.02) < 0.002
    assert module.query_score.weight.shape == (4, 64)  # w_q: Linear(D -> H)


def test_masked_pool_ignores_padding_and_empty_rows():
    values = torch.randn(2, 4, 6)
    scores = torch.randn(2, 4, 3)
    pad_mask = torch.tensor([[True, True, False, False], [False] * 4])
    pooled = masked_pool(values, scores, pad_mask, heads=3)
    weights = torch.softmax(scores[0, :2], 0)  # [2, 3]
    expected = (weights.repeat_interleave(2, dim=1) * values[0, :2]).sum(0)
    torch.testing.assert_close(pooled[0, 0], expected)
    assert (pooled[1] == 0).all()


def test_fastformer_dropout_on_global_query_in_training():
    torch.manual_seed(0)
    module = Fastformer(8, 2, dropout=0.5)
    x, pad_mask = batch([5, 5], 5)
    trained = module(x, pad_mask)
    torch.manual_seed(1)
    assert not torch.allclose(module(x, pad_mask), trained)
    module.eval()
    torch.testing.assert_close(module(x, pad_mask), module(x, pad_mask))


# ------------------------------------------------------------------ HyperMixing


@pytest.mark.parametrize("heads", [1, 2])
def test_hypermixing_equals_loop_reference(heads):
    module = make_hypermixing(heads=heads).double()
    x, pad_mask = batch([5, 3], 5, dtype=torch.float64)
    expected = loop_hypermixing(module, x, pad_mask)
    torch.testing.assert_close(module(x, pad_mask), expected, atol=1e-10, rtol=1e-10)


def test_hypermixing_heads_do_not_mix_before_the_norm():
    module = make_hypermixing()
    module.norm = torch.nn.Identity()
    x, pad_mask = batch([6], 6)
    x2 = x.clone()
    x2[..., :4] += 1.0  # change head 0 only
    y, y2 = module(x, pad_mask), module(x2, pad_mask)
    torch.testing.assert_close(y[..., 4:], y2[..., 4:])
    assert not torch.allclose(y[..., :4], y2[..., :4])


def test_hypermixing_initialisation():
    torch.manual_seed(0)
    module = HyperMixing(16, heads=4, hypernet_size=32)
    first, second = module.generate_in[0], module.generate_in[2]
    assert first.weight.shape == (4, 4, 4) and second.weight.shape == (4, 4, 8)
    for layer, fans in ((first, 4 + 4), (second, 4 + 8)):
        bound = math.sqrt(2.0) * math.sqrt(6.0 / fans)
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.8 * bound
        assert (layer.bias == 0).all()


def test_hypermixing_sizes_must_divide_heads():
    with pytest.raises(ValueError, match="d_model=10 must be divisible by heads=4"):
        HyperMixing(10, heads=4, hypernet_size=8)
    with pytest.raises(ValueError, match="hypernet_size=10 must be divisible by heads=4"):
        HyperMixing(8, heads=4, hypernet_size=10)
    with pytest.raises(ValueError, match="heads"):
        HyperMixing(8, heads=0, hypernet_size=8)


# ------------------------------------------------------------------ shared behaviour


@pytest.mark.parametrize("kind", MIXERS)
def test_shapes_and_padding_invariance(kind):
    module = MIXERS[kind]()
    x, pad_mask = batch([9, 6, 2], 9)
    y = module(x, pad_mask)
    assert y.shape == x.shape and (y[~pad_mask] == 0).all()
    xg, mg = garbage_padding(x, pad_mask, extra=6)
    torch.testing.assert_close(module(xg, mg)[:, :9][pad_mask], y[pad_mask], atol=1e-5, rtol=1e-5)
    xg2, _ = garbage_padding(x, pad_mask, extra=6, seed=5)
    torch.testing.assert_close(module(xg2, mg)[mg], module(xg, mg)[mg], atol=1e-5, rtol=1e-5)
    x3 = x.clone()
    x3[1, 0] += 1.0  # a real frame reaches the other real frames
    assert not torch.allclose(module(x3, pad_mask)[1, 3], y[1, 3])


@pytest.mark.parametrize("kind", MIXERS)
def test_all_padding_rows_and_single_frame(kind):
    module = MIXERS[kind]()
    x, pad_mask = batch([0, 4], 4)
    y = module(x, pad_mask)
    assert torch.isfinite(y).all() and (y[0] == 0).all()
    assert torch.isfinite(module(x[:, :1], torch.ones(2, 1, dtype=torch.bool))).all()
    y.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("kind", MIXERS)
def test_gradients_reach_every_parameter(kind):
    module = MIXERS[kind]().train()
    x, pad_mask = batch([6, 4], 6)
    module(x, pad_mask).pow(2).sum().backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def flops(module, time: int) -> int:
    x, pad_mask = torch.randn(1, time, 64), torch.ones(1, time, dtype=torch.bool)
    with FlopCounterMode(display=False) as counter:
        module(x, pad_mask)
    return counter.get_total_flops()


@pytest.mark.parametrize("module", [Fastformer(64, 4), HyperMixing(64, 4, 128)], ids=["ff", "hm"])
def test_flops_grow_linearly(module):
    short, long = flops(module.eval(), 128), flops(module, 512)
    assert short > 0 and long <= 4.2 * short


@pytest.mark.parametrize("kind", MIXERS)
def test_bad_input_raises(kind):
    module = MIXERS[kind]()
    x, pad_mask = batch([4, 4], 4)
    with pytest.raises(ValueError, match="x must have shape"):
        module(x[0], pad_mask)
    with pytest.raises(ValueError, match="d_model=8"):
        module(torch.randn(2, 4, 6), pad_mask)
    with pytest.raises(ValueError, match="pad_mask must have shape"):
        module(x, pad_mask[:1])
    with pytest.raises(ValueError, match="bool"):
        module(x, pad_mask.long())
    with pytest.raises(ValueError, match="heads"):
        type(module)(10, 4) if kind == "fastformer" else type(module)(10, 4, 8)
