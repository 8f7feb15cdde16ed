"""Bidirectional Mamba: the chunked selective scan, one direction's equations, padding.

The reference scan is a plain Python loop over time; the reference Mamba direction is a
loop over frames and channels computed in float64 from the module's own weights.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from smx.nn.mixers.mamba import (
    BiMamba,
    Mamba,
    _cuda_selective_scan,
    real_first_order,
    selective_scan,
)


def batch(lengths: list[int], time: int, d_model: int = 8, seed: int = 0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), time, d_model, generator=generator, dtype=dtype)
    pad_mask = torch.arange(time)[None, :] < torch.tensor(lengths)[:, None]
    return x, pad_mask


def make(seed: int = 0, d_model: int = 8, **kwargs) -> BiMamba:
    torch.manual_seed(seed)
    return BiMamba(d_model, d_state=4, d_conv=3, **kwargs)


def loop_scan(x, delta, A, B, C, D):
    """``h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t x_t``, ``y_t = C_t h_t + D x_t`` by steps."""
    batch_size, time, channels = x.shape
    state = torch.zeros(batch_size, channels, A.shape[1], dtype=x.dtype)
    outputs = []
    for t in range(time):
        decay = torch.exp(delta[:, t, :, None] * A)  # [B, D_in, N]
        drive = (delta[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]  # [B, D_in, N]
        state = decay * state + drive
        outputs.append((state * C[:, t, None, :]).sum(-1) + D * x[:, t])
    return torch.stack(outputs, 1)


def scan_inputs(time: int, delta_scale: float, seed: int = 0, channels: int = 6, states: int = 4):
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator)

    x = rand(2, time, channels)
    # mostly small steps with a few huge ones: exp(Delta A) spans the whole float range
    delta = torch.rand(2, time, channels, generator=generator) ** 4 * delta_scale
    A = -torch.arange(1.0, states + 1).repeat(channels, 1) * torch.rand(
        channels, 1, generator=generator
    )
    return x, delta, A, rand(2, time, states), rand(2, time, states), rand(channels)


def loop_mamba(module: Mamba, u: torch.Tensor) -> torch.Tensor:
    """One direction for one utterance ``u [T, D]``, frame by frame, channel by channel."""
    time = u.shape[0]
    inner, rank, n = module.d_inner, module.dt_rank, module.d_state
    kernel = module.conv.weight.shape[-1]
    xz = u @ module.in_proj.weight.T  # [T, 2 D_in]
    x, z = xz[:, :inner], xz[:, inner:]
    conv = torch.zeros(time, inner, dtype=u.dtype)
    for t in range(time):
        for c in range(inner):
            total = module.conv.bias[c]
            for i in range(kernel):  # causal: frames t - (kernel - 1) .. t
                source = t - (kernel - 1) + i
                if source >= 0:
                    total = total + module.conv.weight[c, 0, i] * x[source, c]
            conv[t, c] = total
    x = F.silu(conv)
    projected = x @ module.x_proj.weight.T
    delta = F.softplus(projected[:, :rank] @ module.dt_proj.weight.T + module.dt_proj.bias)
    B, C = projected[:, rank : rank + n], projected[:, rank + n :]
    A = -torch.exp(module.A_log)
    y = loop_scan(x[None], delta[None], A, B[None], C[None], module.D)[0]
    return (y * F.silu(z)) @ module.out_proj.weight.T


def per_row_reference(module: BiMamba, x: torch.Tensor) -> torch.Tensor:
    """Forward Mamba plus the time-reversed Mamba on one unpadded utterance ``x [T, D]``."""
    forward = module.forward_mamba(x[None])[0]
    backward = module.backward_mamba(x.flip(0)[None])[0].flip(0)
    return forward + backward


# ------------------------------------------------------------------ the scan


@pytest.mark.parametrize(
    ("time", "chunk_size", "delta_scale"),
    [(300, 32, 0.5), (300, 32, 50.0), (37, 8, 2.0), (5, 1, 1.0), (5, 64, 1.0)],
)
def test_chunked_scan_equals_sequential_scan(time, chunk_size, delta_scale):
    inputs = scan_inputs(time, delta_scale)
    expected = loop_scan(*inputs)
    got = selective_scan(*inputs, chunk_size=chunk_size)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_scan_carries_the_state_across_chunks():
    x, delta, A, B, C, D = scan_inputs(40, 0.05)  # slow decay: early frames matter late
    y = selective_scan(x, delta, A, B, C, D, chunk_size=8)
    x2 = x.clone()
    x2[:, 0] += 1.0
    assert not torch.allclose(selective_scan(x2, delta, A, B, C, D, chunk_size=8)[:, 39], y[:, 39])


def test_chunked_scan_gradients_equal_sequential_gradients():
    inputs = [t.double().requires_grad_() for t in scan_inputs(40, 3.0)]
    selective_scan(*inputs, chunk_size=8).pow(2).sum().backward()  # checkpointed chunks
    got = [t.grad.clone() for t in inputs]
    for t in inputs:
        t.grad = None
    loop_scan(*inputs).pow(2).sum().backward()
    for name, g, t in zip(["x", "delta", "A", "B", "C", "D"], got, inputs, strict=True):
        torch.testing.assert_close(g, t.grad, rtol=1e-8, atol=1e-10, msg=name)


def test_scan_rejects_bad_chunk_size():
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1, got 0"):
        selective_scan(*scan_inputs(4, 1.0), chunk_size=0)


# ------------------------------------------------------------------ one direction


def test_mamba_direction_equals_loop_reference():
    torch.manual_seed(0)
    module = Mamba(4, d_state=3, d_conv=3, expand=2, dt_rank=2, scan_chunk=4).double()
    u = torch.randn(2, 9, 4, dtype=torch.float64)
    expected = torch.stack([loop_mamba(module, u[b]) for b in range(2)])
    torch.testing.assert_close(module(u), expected, atol=1e-10, rtol=1e-10)


def test_mamba_direction_is_causal():
    torch.manual_seed(0)
    module = Mamba(8, d_state=4, d_conv=3, expand=2, dt_rank=1)
    u = torch.randn(1, 12, 8)
    u2 = u.clone()
    u2[:, 6] += 1.0
    y, y2 = module(u), module(u2)
    torch.testing.assert_close(y[:, :6], y2[:, :6])
    assert not torch.allclose(y[:, 6:], y2[:, 6:])


def test_initialisation():
    torch.manual_seed(0)
    mixer = BiMamba(40)
    module = mixer.forward_mamba
    assert module.dt_rank == 3 and module.d_inner == 80  # ceil(40 / 16), expand 2
    torch.testing.assert_close(module.A_log[5], torch.log(torch.arange(1.0, 17.0)))
    assert (module.D == 1).all()
    assert module.A_log._no_weight_decay and module.D._no_weight_decay
    dt = F.softplus(module.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    assert module.dt_proj.weight.abs().max() <= 3**-0.5
    assert module.in_proj.bias is None and module.out_proj.bias is None
    assert module.x_proj.bias is None and module.conv.bias is not None
    assert not torch.equal(module.in_proj.weight, mixer.backward_mamba.in_proj.weight)
    decay_free = {n for n, p in mixer.named_parameters() if getattr(p, "_no_weight_decay", False)}
    assert len(decay_free) == 4  # A_log and D of both directions


def test_cuda_kernel_guard():
    if importlib.util.find_spec("mamba_ssm") is None:
        assert _cuda_selective_scan() is None
    x, pad_mask = batch([5], 5)
    assert torch.isfinite(make()(x, pad_mask)).all()  # CPU tensors take the PyTorch scan


# ------------------------------------------------------------------ the bidirectional mixer


def test_real_first_order():
    pad_mask = torch.tensor([[True, True, True, False, False], [True, False, True, True, False]])
    assert real_first_order(pad_mask).tolist() == [[0, 1, 2, 3, 4], [0, 2, 3, 1, 4]]
    assert real_first_order(pad_mask, reverse=True).tolist() == [[2, 1, 0, 3, 4], [3, 2, 0, 1, 4]]


def test_bimamba_sums_forward_and_reversed_directions():
    module = make()
    x, pad_mask = batch([10, 10], 10)
    expected = torch.stack([per_row_reference(module, x[b]) for b in range(2)])
    torch.testing.assert_close(module(x, pad_mask), expected, atol=1e-5, rtol=1e-5)


def test_padded_batch_equals_unpadded_rows_one_at_a_time():
    module = make(scan_chunk=4)
    lengths = [11, 6, 1]
    x, pad_mask = batch(lengths, 11)
    y = module(x, pad_mask)
    for b, length in enumerate(lengths):
        expected = per_row_reference(module, x[b, :length])
        torch.testing.assert_close(y[b, :length], expected, atol=1e-5, rtol=1e-5)
        assert (y[b, length:] == 0).all()


def test_padding_in_the_middle_is_skipped():
    module = make()
    x, _ = batch([8], 8)
    pad_mask = torch.tensor([[True, True, False, True, False, True, True, False]])
    y = module(x, pad_mask)
    expected = per_row_reference(module, x[0, pad_mask[0]])
    torch.testing.assert_close(y[0, pad_mask[0]], expected, atol=1e-5, rtol=1e-5)
    assert (y[~pad_mask] == 0).all()


def test_padding_invariance_with_garbage():
    module = make()
    x, pad_mask = batch([9, 5, 2], 9)
    y = module(x, pad_mask)
    generator = torch.Generator().manual_seed(3)
    longer = torch.cat([x, torch.zeros(3, 7, 8)], 1)
    mask = torch.cat([pad_mask, torch.zeros(3, 7, dtype=torch.bool)], 1)
    for _ in range(2):  # two different garbage fillings
        noisy = torch.where(
            mask[..., None], longer, 100 * torch.randn(longer.shape, generator=generator)
        )
        torch.testing.assert_close(
            module(noisy, mask)[:, :9][pad_mask], y[pad_mask], atol=1e-5, rtol=1e-5
        )
    x3 = x.clone()
    x3[1, 4] += 1.0  # the last real frame reaches the first one through the reversed scan
    assert not torch.allclose(module(x3, pad_mask)[1, 0], y[1, 0])


def test_all_padding_rows_and_single_frame_are_finite():
    module = make()
    x, pad_mask = batch([0, 4], 4)
    y = module(x, pad_mask)
    assert torch.isfinite(y).all() and (y[0] == 0).all()
    assert torch.isfinite(module(x[:, :1], torch.ones(2, 1, dtype=torch.bool))).all()


def test_gradients_reach_every_parameter():
    module = make(scan_chunk=4)
    x, pad_mask = batch([10, 7], 10)
    module(x, pad_mask).pow(2).sum().backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_flops_grow_linearly():
    module = BiMamba(64).eval()

    def count(time: int) -> int:
        x, pad_mask = torch.randn(1, time, 64), torch.ones(1, time, dtype=torch.bool)
        with FlopCounterMode(display=False) as counter:
            module(x, pad_mask)
        return counter.get_total_flops()

    short, long = count(128), count(512)
    assert short > 0 and long <= 4.2 * short


def test_bad_input_raises():
    module = make()
    x, pad_mask = batch([4, 4], 4)
    with pytest.raises(ValueError, match="x must have shape"):
        module(x[0], pad_mask)
    with pytest.raises(ValueError, match="d_model=8"):
        module(torch.randn(2, 4, 6), pad_mask)
    with pytest.raises(ValueError, match="pad_mask must have shape"):
        module(x, pad_mask[:, :2])
    with pytest.raises(ValueError, match="bool"):
        module(x, pad_mask.int())
    with pytest.raises(ValueError, match="scan_chunk must be an integer >= 1"):
        BiMamba(8, scan_chunk=0)
    with pytest.raises(ValueError, match="d_state"):
        BiMamba(8, d_state=0)
    with pytest.raises(ValueError, match="dt_rank"):
        BiMamba(8, dt_rank=0)
    assert math.ceil(8 / 16) == BiMamba(8).forward_mamba.dt_rank
