"""Multi-head self-attention (abs and Transformer-XL relpos), its streaming mode, positions.

Reference values come from plain loops over utterances, heads, queries and keys, computed
in float64 from the module's own weights (the module is cast to float64 for those tests).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from smx.nn.mixers.mhsa import MultiHeadSelfAttention, chunk_visibility
from smx.nn.positional import (
    relative_sinusoidal_positions,
    sinusoidal_embedding,
    sinusoidal_positions,
)

POS = ("abs", "relpos")


def batch(lengths: list[int], time: int, d_model: int = 8, seed: int = 0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), time, d_model, generator=generator, dtype=dtype)
    pad_mask = torch.arange(time)[None, :] < torch.tensor(lengths)[:, None]
    return x, pad_mask


def make(pos: str, d_model: int = 8, heads: int = 2, dropout: float = 0.0, seed: int = 0):
    torch.manual_seed(seed)
    return MultiHeadSelfAttention(d_model, heads, dropout=dropout, pos=pos).eval()


def garbage_padding(x, pad_mask, extra: int, seed: int = 1):
    """Append ``extra`` padded frames and fill every padded frame with large random values."""
    generator = torch.Generator().manual_seed(seed)
    batch_size, _, d_model = x.shape
    longer = torch.cat([x, torch.zeros(batch_size, extra, d_model, dtype=x.dtype)], dim=1)
    mask = torch.cat([pad_mask, torch.zeros(batch_size, extra, dtype=torch.bool)], dim=1)
    noise = 100 * torch.randn(longer.shape, generator=generator, dtype=x.dtype)
    return torch.where(mask[..., None], longer, noise), mask


# ------------------------------------------------------------------ loop-based references


def loop_sinusoid(position: float, d_model: int) -> list[float]:
    out = []
    for i in range(d_model):
        frequency = 10000.0 ** (-(2 * (i // 2)) / d_model)
        out.append(math.sin(position * frequency) if i % 2 == 0 else math.cos(position * frequency))
    return out


def loop_attention(module: MultiHeadSelfAttention, x, pad_mask, visible=None) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d_h) [+ XL position term])`` over the allowed real keys, by loops.

    ``visible(i, j)`` restricts the keys of query ``i`` (None: all of them).
    """
    batch_size, time, d_model = x.shape
    heads, dh = module.heads, module.head_dim
    w_qkv, b_qkv = module.qkv.weight, module.qkv.bias
    out = torch.zeros(batch_size, time, d_model, dtype=x.dtype)
    if module.pos == "relpos":
        w_pos = module.pos_proj.weight
        u, v = module.pos_bias_u, module.pos_bias_v
    for b in range(batch_size):
        xb = x[b] * pad_mask[b, :, None]
        qkv = xb @ w_qkv.T + b_qkv  # [T, 3D]
        q, k, val = qkv[:, :d_model], qkv[:, d_model : 2 * d_model], qkv[:, 2 * d_model :]
        for t in range(time):
            if not pad_mask[b, t]:
                continue
            mixed = []
            for h in range(heads):
                sl = slice(h * dh, (h + 1) * dh)
                keys = [
                    j for j in range(time) if pad_mask[b, j] and (visible is None or visible(t, j))
                ]
                scores = []
                for j in keys:
                    if module.pos == "abs":
                        score = q[t, sl] @ k[j, sl]
                    else:
                        p = torch.tensor(loop_sinusoid(t - j, d_model), dtype=x.dtype) @ w_pos.T
                        score = (q[t, sl] + u[h]) @ k[j, sl] + (q[t, sl] + v[h]) @ p[sl]
                    scores.append(score / math.sqrt(dh))
                weights = torch.softmax(torch.stack(scores), 0)
                mixed.append(sum(w * val[j, sl] for w, j in zip(weights, keys, strict=True)))
            out[b, t] = torch.cat(mixed) @ module.out.weight.T + module.out.bias
    return out


# ------------------------------------------------------------------ positions


def test_sinusoidal_positions_follow_the_transformer_formula():
    pe = sinusoidal_positions(7, 6, offset=3, dtype=torch.float64)
    expected = torch.tensor([loop_sinusoid(p, 6) for p in range(3, 10)], dtype=torch.float64)
    torch.testing.assert_close(pe, expected)
    assert sinusoidal_positions(5000, 5).shape == (5000, 5)  # no maximum length, odd sizes
    last = sinusoidal_positions(3, 5)[:, 4]  # even index 4 of an odd size: a sine
    torch.testing.assert_close(last, torch.sin(torch.arange(3.0) * 10000.0 ** (-4 / 5)))


def test_relative_table_and_index():
    table, index = relative_sinusoidal_positions(3, 5, 4, dtype=torch.float64)
    assert table.shape == (3 + 5 - 1, 4)
    for i in range(3):
        for j in range(5):
            distance = 5 - 3 + i - j  # query i sits at key position Tk - Tq + i
            torch.testing.assert_close(
                table[index[i, j]], torch.tensor(loop_sinusoid(distance, 4), dtype=torch.float64)
            )
    negative, positive = sinusoidal_embedding(torch.tensor([-2, 2]), 4)  # sin odd, cos even
    torch.testing.assert_close(negative, positive * torch.tensor([-1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="query_length"):
        relative_sinusoidal_positions(4, 3, 8)


# ------------------------------------------------------------------ offline attention


@pytest.mark.parametrize("pos", POS)
def test_equals_loop_reference_with_key_padding(pos):
    module = make(pos).double()
    x, pad_mask = batch([5, 3], 5, dtype=torch.float64)
    expected = loop_attention(module, x, pad_mask)
    torch.testing.assert_close(module(x, pad_mask), expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("pos", POS)
def test_padding_invariance_and_zero_padded_outputs(pos):
    module = make(pos)
    x, pad_mask = batch([9, 6, 2], 9)
    y = module(x, pad_mask)
    assert (y[~pad_mask] == 0).all()
    xg, mg = garbage_padding(x, pad_mask, extra=5)
    torch.testing.assert_close(module(xg, mg)[:, :9][pad_mask], y[pad_mask], atol=1e-5, rtol=1e-5)
    xg2, _ = garbage_padding(x, pad_mask, extra=5, seed=7)  # other garbage, same mask
    torch.testing.assert_close(module(xg2, mg)[mg], module(xg, mg)[mg], atol=1e-5, rtol=1e-5)
    # a real frame does matter (the test could fail)
    x3 = x.clone()
    x3[0, 0] += 1.0
    assert not torch.allclose(module(x3, pad_mask)[0, 1], y[0, 1])


@pytest.mark.parametrize("pos", POS)
def test_all_padding_rows_and_single_frame_are_finite(pos):
    module = make(pos)
    x, pad_mask = batch([0, 4], 4)
    for y in (
        module(x, pad_mask),
        module.forward_chunked(x, pad_mask, 2, 0),
        module(x[:, :1], torch.ones(2, 1, dtype=torch.bool)),
        module.forward_chunked(x[:, :1], torch.ones(2, 1, dtype=torch.bool), 3, None),
    ):
        assert torch.isfinite(y).all()
    assert (module(x, pad_mask)[0] == 0).all()
    state = module.init_state(2, x.device, x.dtype)
    y, _ = module.forward_step(x[:, :2], pad_mask[:, :2], state, None)
    assert torch.isfinite(y).all() and (y[0] == 0).all()


@pytest.mark.parametrize("pos", POS)
def test_gradients_reach_every_parameter_with_attention_dropout(pos):
    module = make(pos, dropout=0.3).train()
    x, pad_mask = batch([6, 4], 6)
    module.forward_chunked(x, pad_mask, 2, 1).pow(2).sum().backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_dropout_acts_on_attention_weights_only():
    module = make("abs", dropout=0.5)
    x, pad_mask = batch([6, 6], 6)
    evaluated = module(x, pad_mask)
    torch.testing.assert_close(module(x, pad_mask), evaluated)  # eval: deterministic
    module.train()
    torch.manual_seed(0)
    assert not torch.allclose(module(x, pad_mask), evaluated)
    # dropout 0 in training: identical to eval (no dropout on the output)
    plain = make("abs", dropout=0.0).train()
    torch.testing.assert_close(plain(x, pad_mask), plain.eval()(x, pad_mask))


# ------------------------------------------------------------------ streaming


def test_chunk_visibility():
    visible = chunk_visibility(7, 2, 1)
    for i in range(7):
        for j in range(7):
            assert bool(visible[i, j]) == (i // 2 - 1 <= j // 2 <= i // 2)
    assert chunk_visibility(5, 2, None).int().tolist()[4] == [1, 1, 1, 1, 1]


@pytest.mark.parametrize("pos", POS)
@pytest.mark.parametrize(
    ("time", "chunk_size", "left_chunks"), [(7, 2, 0), (7, 3, 1), (6, 2, None), (5, 8, 0)]
)
def test_forward_chunked_equals_dense_masked_reference(pos, time, chunk_size, left_chunks):
    module = make(pos).double()
    x, pad_mask = batch([time, time - 2], time, dtype=torch.float64)

    def visible(i: int, j: int) -> bool:
        lag = i // chunk_size - j // chunk_size
        return lag >= 0 and (left_chunks is None or lag <= left_chunks)

    expected = loop_attention(module, x, pad_mask, visible)
    got = module.forward_chunked(x, pad_mask, chunk_size, left_chunks)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("pos", POS)
def test_chunked_with_one_chunk_equals_offline(pos):
    module = make(pos)
    x, pad_mask = batch([8, 5], 8)
    torch.testing.assert_close(
        module.forward_chunked(x, pad_mask, 8, 0), module(x, pad_mask), atol=1e-6, rtol=1e-6
    )
    assert not torch.allclose(module.forward_chunked(x, pad_mask, 2, 0), module(x, pad_mask))


@pytest.mark.parametrize("pos", POS)
@pytest.mark.parametrize("left_chunks", [None, 0, 2])
@pytest.mark.parametrize("chunk_size", [3, 4])
def test_step_api_equals_forward_chunked(pos, left_chunks, chunk_size):
    module = make(pos)
    time = 14  # a partial last chunk for both chunk sizes
    x, pad_mask = batch([14, 9, 0], time)
    expected = module.forward_chunked(x, pad_mask, chunk_size, left_chunks)
    state = module.init_state(3, x.device, x.dtype)
    outputs = []
    for start in range(0, time, chunk_size):
        part = slice(start, start + chunk_size)
        y, state = module.forward_step(x[:, part], pad_mask[:, part], state, left_chunks)
        outputs.append(y)
        cached = state.keys.shape[2]
        if left_chunks is not None:
            assert cached <= left_chunks * chunk_size  # bounded cache
        assert cached == sum(state.chunk_sizes) == state.key_mask.shape[1]
    torch.testing.assert_close(torch.cat(outputs, 1), expected, atol=1e-5, rtol=1e-5)
    assert state.offset == time


def test_step_does_not_modify_the_state():
    module = make("relpos")
    x, pad_mask = batch([4, 4], 4)
    state = module.init_state(2, x.device, x.dtype)
    _, state = module.forward_step(x[:, :2], pad_mask[:, :2], state, 1)
    keys = state.keys.clone()
    _, new_state = module.forward_step(x[:, 2:], pad_mask[:, 2:], state, 1)
    assert torch.equal(state.keys, keys) and state.offset == 2 and new_state.offset == 4


# ------------------------------------------------------------------ cost and errors


def attention_flops(module, time: int) -> int:
    x, pad_mask = torch.randn(1, time, 64), torch.ones(1, time, dtype=torch.bool)
    # the CPU flash kernel is invisible to FlopCounterMode: count the math kernel's matmuls
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        module(x, pad_mask)
    return counter.get_total_flops()


def test_flops_grow_quadratically():
    module = MultiHeadSelfAttention(64, 4).eval()
    short, long = attention_flops(module, 128), attention_flops(module, 512)
    assert short > 0 and long > 8 * short


def test_bad_input_raises():
    module = make("abs")
    x, pad_mask = batch([4, 4], 4)
    with pytest.raises(ValueError, match="x must have shape"):
        module(x[0], pad_mask)
    with pytest.raises(ValueError, match="d_model=8"):
        module(torch.randn(2, 4, 6), pad_mask)
    with pytest.raises(ValueError, match="pad_mask must have shape"):
        module(x, pad_mask[:, :3])
    with pytest.raises(ValueError, match="bool"):
        module(x, pad_mask.float())
    with pytest.raises(ValueError, match="chunk_size"):
        module.forward_chunked(x, pad_mask, 0, None)
    with pytest.raises(ValueError, match="left_chunks"):
        module.forward_chunked(x, pad_mask, 2, -1)
    with pytest.raises(ValueError, match="chunk_size"):
        module.forward_step(x[:, :0], pad_mask[:, :0], module.init_state(2, x.device, x.dtype), 1)
    with pytest.raises(ValueError, match="heads"):
        MultiHeadSelfAttention(8, 3)
    with pytest.raises(ValueError, match="pos"):
        MultiHeadSelfAttention(8, 2, pos="rope")
    with pytest.raises(ValueError, match="dropout"):
        MultiHeadSelfAttention(8, 2, dropout=1.0)
