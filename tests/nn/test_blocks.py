"""Tests of the convolutions, feed-forward, activations and the mixer-hosting blocks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mixer_stub import MeanMixer, PlainMixer
from torch import nn

from smx.nn.activations import activation
from smx.nn.base import lengths_to_mask
from smx.nn.blocks import BranchformerBlock, ConformerBlock, TransformerBlock
from smx.nn.convolution import CSGU, ConvModule, DepthwiseConv1d
from smx.nn.feedforward import FeedForward
from smx.nn.mixers.summary_mixing import SummaryMixing

D = 16


def make_block(kind: str, mixer: nn.Module | None = None, dropout: float = 0.1) -> nn.Module:
    mixer = MeanMixer(D) if mixer is None else mixer
    if kind == "conformer":
        return ConformerBlock(D, mixer, d_ffn=32, kernel_size=5, dropout=dropout)
    if kind == "transformer":
        return TransformerBlock(D, mixer, d_ffn=32, dropout=dropout)
    if kind == "transformer_post":
        return TransformerBlock(D, mixer, d_ffn=32, dropout=dropout, pre_norm=False)
    if kind == "branchformer":
        return BranchformerBlock(D, mixer, csgu_units=24, kernel_size=5, dropout=dropout)
    if kind == "branchformer_mlp":
        return BranchformerBlock(
            D, mixer, csgu_units=24, kernel_size=5, dropout=dropout, merge_hidden=20
        )
    raise AssertionError(kind)


BLOCKS = ["conformer", "transformer", "transformer_post", "branchformer", "branchformer_mlp"]


def summary_mixing() -> nn.Module:
    return SummaryMixing(D, local_hidden=[D], local_out=D, summary_hidden=[D], heads=2)


def batch(t: int = 13, lengths: tuple[int, ...] = (13, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(len(lengths), t, D)
    return x, lengths_to_mask(torch.tensor(lengths), t)


def with_garbage(x: torch.Tensor, pad_mask: torch.Tensor, extra: int):
    """Append ``extra`` padded frames and fill every padded frame with NaN and huge values."""
    b, _, d = x.shape
    x = torch.cat([x, torch.zeros(b, extra, d)], dim=1)
    pad_mask = torch.cat([pad_mask, torch.zeros(b, extra, dtype=torch.bool)], dim=1)
    garbage = torch.randn_like(x) * 1e4
    garbage[:, ::3] = float("nan")
    return torch.where(pad_mask[..., None], x, garbage), pad_mask


# ----------------------------------------------------------------------------------------
# activations and feed-forward


def test_activation_names() -> None:
    x = torch.tensor([-2.0, 0.5])
    torch.testing.assert_close(activation("swish")(x), x * torch.sigmoid(x))
    torch.testing.assert_close(activation("gelu")(x), F.gelu(x))
    torch.testing.assert_close(activation("leaky_relu")(x), torch.tensor([-0.02, 0.5]))
    with pytest.raises(ValueError, match="activation must be one of"):
        activation("sigmoid")  # type: ignore[arg-type]


def test_feedforward_matches_equation() -> None:
    ffn = FeedForward(D, 24, dropout=0.0, activation="gelu")
    x = torch.randn(2, 5, D)
    lin1, lin2 = ffn.net[0], ffn.net[3]
    expected = lin2(F.gelu(lin1(F.layer_norm(x, (D,), ffn.norm.weight, ffn.norm.bias))))
    torch.testing.assert_close(ffn(x), expected)
    plain = FeedForward(D, 24, dropout=0.0, activation="relu", norm=False)
    torch.testing.assert_close(plain(x), plain.net[3](F.relu(plain.net[0](x))))


# ----------------------------------------------------------------------------------------
# depthwise convolution: offline, dynamic chunk, steps


def loop_chunk_conv(conv: DepthwiseConv1d, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Reference: convolve each chunk with its (k-1)/2 left frames and zeros on its right."""
    p = conv.context
    xt = F.pad(x.transpose(1, 2), (p, 0))  # [B, C, p + T]; frame t sits at t + p
    outputs = []
    for start in range(0, x.shape[1], chunk):
        end = min(start + chunk, x.shape[1])
        window = F.pad(xt[..., start : end + p], (0, p))  # left context + chunk + zeros
        outputs.append(F.conv1d(window, conv.conv.weight, conv.conv.bias, groups=conv.channels))
    return torch.cat(outputs, dim=-1).transpose(1, 2)


@pytest.mark.parametrize(("t", "chunk", "k"), [(13, 4, 5), (13, 1, 3), (8, 3, 7), (6, 2, 1)])
def test_dynamic_chunk_conv_equals_loop(t: int, chunk: int, k: int) -> None:
    conv = DepthwiseConv1d(6, k)
    x = torch.randn(2, t, 6)
    full = torch.ones(2, t, dtype=torch.bool)
    torch.testing.assert_close(
        conv.forward_chunked(x, full, chunk), loop_chunk_conv(conv, x, chunk)
    )


def test_dynamic_chunk_conv_sees_nothing_right_of_chunk() -> None:
    conv = DepthwiseConv1d(3, 5)
    x, full = torch.randn(1, 12, 3), torch.ones(1, 12, dtype=torch.bool)
    y = conv.forward_chunked(x, full, 4)
    x2 = x.clone()
    x2[:, 8:] = torch.randn(1, 4, 3)  # change the third chunk only
    torch.testing.assert_close(conv.forward_chunked(x2, full, 4)[:, :8], y[:, :8])
    # but the first frames of the third chunk see the end of the second chunk
    x3 = x.clone()
    x3[:, 7] += 1.0
    assert not torch.allclose(conv.forward_chunked(x3, full, 4)[:, 8], y[:, 8])


def test_offline_conv_is_same_conv_and_big_chunk() -> None:
    conv = DepthwiseConv1d(4, 5)
    x, full = torch.randn(2, 9, 4), torch.ones(2, 9, dtype=torch.bool)
    expected = F.conv1d(x.transpose(1, 2), conv.conv.weight, conv.conv.bias, padding=2, groups=4)
    torch.testing.assert_close(conv(x, full), expected.transpose(1, 2))
    torch.testing.assert_close(conv.forward_chunked(x, full, 9), conv(x, full))
    torch.testing.assert_close(conv.forward_chunked(x, full, 20), conv(x, full))


@pytest.mark.parametrize("module", ["conv", "csgu"])
@pytest.mark.parametrize("chunk", [1, 3, 5])
def test_conv_steps_equal_chunked(module: str, chunk: int) -> None:
    m = ConvModule(D, kernel_size=7, dropout=0.0) if module == "conv" else CSGU(D, 7)
    x, pad_mask = batch(13, (13, 6))
    expected = m.forward_chunked(x, pad_mask, chunk)
    state = m.init_state(2, x.device, x.dtype)
    outs = []
    for start in range(0, 13, chunk):
        y, state = m.forward_step(
            x[:, start : start + chunk], pad_mask[:, start : start + chunk], state
        )
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 1), expected, atol=1e-5, rtol=1e-5)


def test_conv_module_zeroes_padding_and_ignores_it() -> None:
    conv = ConvModule(D, kernel_size=5, dropout=0.0)
    x, pad_mask = batch(10, (10, 6))
    y = conv(x, pad_mask)
    assert bool((y[1, 6:] == 0).all())
    xg, mg = with_garbage(x, pad_mask, 4)
    torch.testing.assert_close(conv(xg, mg)[:, :10][pad_mask], y[pad_mask])
    torch.testing.assert_close(
        conv.forward_chunked(xg, mg, 3)[:, :10][pad_mask],
        conv.forward_chunked(x, pad_mask, 3)[pad_mask],
    )


def test_csgu_equation_and_bias_init() -> None:
    csgu = CSGU(8, kernel_size=3)
    assert bool((csgu.conv.conv.bias == 1).all())
    x, full = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    z = F.layer_norm(x[..., 4:], (4,), csgu.norm.weight, csgu.norm.bias)
    z = F.conv1d(z.transpose(1, 2), csgu.conv.conv.weight, csgu.conv.conv.bias, padding=1, groups=4)
    torch.testing.assert_close(csgu(x, full), x[..., :4] * z.transpose(1, 2))


@pytest.mark.parametrize("length", [9, 6, 3])
def test_reflect_padding_mirrors_each_utterance_at_its_own_end(length: int) -> None:
    conv = DepthwiseConv1d(4, 5, padding="reflect")
    x, pad_mask = torch.randn(2, 9, 4), lengths_to_mask(torch.tensor([9, length]), 9)
    xg, mg = with_garbage(x, pad_mask, 3)
    y = conv(xg, mg)[:, :9]
    for row, n in enumerate((9, length)):
        alone = F.pad(x[row, :n].T[None], (2, 2), mode="reflect")  # [1, C, n + 4]
        expected = F.conv1d(alone, conv.conv.weight, conv.conv.bias, groups=4)[0].T
        torch.testing.assert_close(y[row, :n], expected)
    # a one-frame utterance (F.pad refuses it) reads its frame on both sides
    one = conv(x[:1, :1], torch.ones(1, 1, dtype=torch.bool))
    expected = x[0, 0] * conv.conv.weight.sum((1, 2)) + conv.conv.bias
    torch.testing.assert_close(one[0, 0], expected)
    # the chunked modes fill with zeros whatever the offline padding
    zeros = DepthwiseConv1d(4, 5)
    zeros.load_state_dict(conv.state_dict())
    torch.testing.assert_close(
        conv.forward_chunked(x, pad_mask, 4), zeros.forward_chunked(x, pad_mask, 4)
    )


def test_branchformer_reflect_streams_like_its_chunked_mode() -> None:
    block = BranchformerBlock(D, MeanMixer(D), csgu_units=24, kernel_size=5, dropout=0.0,
                              conv_padding="reflect")  # fmt: skip
    assert block.csgu.conv.padding == "reflect"
    x, pad_mask = batch(12, (12, 7))
    expected = block.forward_chunked(x, pad_mask, 4, None)
    state = block.init_state(2, x.device, x.dtype)
    outs = []
    for start in range(0, 12, 4):
        y, state = block.forward_step(
            x[:, start : start + 4], pad_mask[:, start : start + 4], state, None
        )
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 1), expected, atol=1e-5, rtol=1e-5)


def test_conv_errors() -> None:
    with pytest.raises(ValueError, match="kernel_size must be an odd"):
        ConvModule(D, kernel_size=4)
    with pytest.raises(ValueError, match="kernel_size must be an odd"):
        CSGU(8, kernel_size=2)
    with pytest.raises(ValueError, match="channels must be even"):
        CSGU(7)
    with pytest.raises(ValueError, match="padding must be 'zeros' or 'reflect'"):
        DepthwiseConv1d(4, 3, padding="circular")  # type: ignore[arg-type]
    conv = ConvModule(D, kernel_size=3)
    x, pad_mask = batch()
    with pytest.raises(ValueError, match="chunk_size"):
        conv.forward_chunked(x, pad_mask, 0)
    with pytest.raises(ValueError, match="feature size"):
        conv(torch.randn(2, 13, D + 1), pad_mask)
    with pytest.raises(ValueError, match="pad_mask"):
        conv(x, pad_mask.float())


# ----------------------------------------------------------------------------------------
# blocks


@pytest.mark.parametrize("kind", BLOCKS)
def test_block_shape_and_padding_invariance(kind: str) -> None:
    block = make_block(kind).eval()
    x, pad_mask = batch(13, (13, 8))
    y = block(x, pad_mask)
    assert y.shape == x.shape
    assert torch.isfinite(y[pad_mask]).all()
    xg, mg = with_garbage(x, pad_mask, 5)
    torch.testing.assert_close(block(xg, mg)[:, :13][pad_mask], y[pad_mask], atol=1e-5, rtol=1e-5)
    # the short utterance alone gives the same output as inside the padded batch
    torch.testing.assert_close(
        block(x[1:, :8], pad_mask[1:, :8])[0], y[1, :8], atol=1e-5, rtol=1e-5
    )
    yc = block.forward_chunked(x, pad_mask, 4, 1)
    ycg = block.forward_chunked(xg, mg, 4, 1)[:, :13]
    torch.testing.assert_close(ycg[pad_mask], yc[pad_mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", BLOCKS)
def test_block_gradients_reach_every_parameter(kind: str) -> None:
    block = make_block(kind).train()
    x, pad_mask = batch()
    x.requires_grad_(True)
    block(x, pad_mask)[pad_mask].square().sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad[pad_mask].abs().sum() > 0


@pytest.mark.parametrize("kind", BLOCKS)
@pytest.mark.parametrize(("chunk", "left"), [(4, None), (4, 0), (3, 2), (1, 1), (5, 1), (16, None)])
def test_block_steps_equal_chunked(kind: str, chunk: int, left: int | None) -> None:
    block = make_block(kind).eval()
    x, pad_mask = batch(14, (14, 9))
    expected = block.forward_chunked(x, pad_mask, chunk, left)
    state = block.init_state(2, x.device, x.dtype)
    outs = []
    for start in range(0, 14, chunk):
        sl = slice(start, start + chunk)
        y, state = block.forward_step(x[:, sl], pad_mask[:, sl], state, left)
        outs.append(y)
    got = torch.cat(outs, dim=1)
    torch.testing.assert_close(got[pad_mask], expected[pad_mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", BLOCKS)
def test_block_full_chunk_equals_offline(kind: str) -> None:
    block = make_block(kind).eval()
    x, pad_mask = batch(11, (11, 7))
    torch.testing.assert_close(
        block.forward_chunked(x, pad_mask, 11, None), block(x, pad_mask), atol=1e-5, rtol=1e-5
    )
    # small chunks really restrict the context
    assert not torch.allclose(block.forward_chunked(x, pad_mask, 2, 0), block(x, pad_mask))


def test_conformer_equals_hand_composition() -> None:
    block = ConformerBlock(D, MeanMixer(D), d_ffn=24, kernel_size=3, dropout=0.0).eval()
    x, pad_mask = batch(9, (9, 5))
    keep = pad_mask[..., None]

    def ffn(m: FeedForward, h: torch.Tensor) -> torch.Tensor:
        h = F.layer_norm(h, (D,), m.norm.weight, m.norm.bias)
        return m.net[3](F.silu(m.net[0](h)))

    def ln(m: nn.LayerNorm, h: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(h, (D,), m.weight, m.bias)

    conv = block.conv
    h = x + 0.5 * ffn(block.ffn1, x)
    h = h + block.mixer(ln(block.mixer_norm, h), pad_mask)
    u = F.glu(conv.pointwise(ln(conv.norm, h)), dim=-1) * keep
    dw = conv.depthwise.conv
    u = F.conv1d(u.transpose(1, 2), dw.weight, dw.bias, padding=1, groups=D).transpose(1, 2)
    h = h + conv.out(F.silu(ln(conv.conv_norm, u))) * keep
    expected = ln(block.out_norm, h + 0.5 * ffn(block.ffn2, h))
    torch.testing.assert_close(block(x, pad_mask), expected, atol=1e-6, rtol=1e-5)


def test_transformer_and_branchformer_equations() -> None:
    x, pad_mask = batch(7, (7, 4))
    pre = TransformerBlock(D, MeanMixer(D), d_ffn=24, dropout=0.0).eval()
    h = x + pre.mixer(pre.mixer_norm(x), pad_mask)
    torch.testing.assert_close(pre(x, pad_mask), h + pre.ffn(h))
    post = TransformerBlock(D, MeanMixer(D), d_ffn=24, dropout=0.0, pre_norm=False).eval()
    h = post.mixer_norm(x + post.mixer(x, pad_mask))
    ffn = post.ffn.net[3](F.gelu(post.ffn.net[0](h)))
    torch.testing.assert_close(post(x, pad_mask), post.ffn_norm(h + ffn))
    bf = BranchformerBlock(D, MeanMixer(D), csgu_units=12, kernel_size=3, dropout=0.0)
    bf.eval()
    x1 = bf.mixer(bf.mixer_norm(x), pad_mask)
    x2 = bf.mlp_out(bf.csgu(F.gelu(bf.mlp_in(bf.mlp_norm(x))), pad_mask))
    torch.testing.assert_close(bf(x, pad_mask), x + bf.merge(torch.cat([x1, x2], -1)))
    mlp = BranchformerBlock(D, MeanMixer(D), csgu_units=12, kernel_size=3, merge_hidden=20)
    assert [m.in_features for m in mlp.merge if isinstance(m, nn.Linear)] == [2 * D, 20]
    assert isinstance(mlp.merge[-1], nn.GELU)


def test_mixer_dropout_only_when_asked() -> None:
    x, pad_mask = batch()
    torch.manual_seed(0)
    block = ConformerBlock(D, MeanMixer(D), d_ffn=24, kernel_size=3, dropout=0.0).train()
    assert torch.equal(block(x, pad_mask), block(x, pad_mask))  # no dropout anywhere
    block = ConformerBlock(
        D, MeanMixer(D), d_ffn=24, kernel_size=3, dropout=0.0, mixer_dropout=0.5
    ).train()
    assert not torch.equal(block(x, pad_mask), block(x, pad_mask))


@pytest.mark.parametrize("kind", BLOCKS)
def test_block_errors(kind: str) -> None:
    block = make_block(kind, mixer=PlainMixer(D))
    x, pad_mask = batch()
    block(x, pad_mask)  # offline works
    with pytest.raises(ValueError, match="no streaming mode"):
        block.forward_chunked(x, pad_mask, 4, None)
    with pytest.raises(ValueError, match="no streaming mode"):
        block.init_state(2, x.device, x.dtype)
    with pytest.raises(ValueError, match="no streaming mode"):
        block.forward_step(x, pad_mask, {}, None)
    streaming = make_block(kind)
    with pytest.raises(ValueError, match="chunk_size"):
        streaming.forward_chunked(x, pad_mask, 0, None)
    with pytest.raises(ValueError, match="left_chunks"):
        streaming.forward_chunked(x, pad_mask, 2, -1)
    with pytest.raises(ValueError, match="feature size"):
        streaming(torch.randn(2, 13, D + 2), pad_mask)
    with pytest.raises(ValueError, match="pad_mask must have shape"):
        streaming(x, pad_mask[:, :5])
    with pytest.raises(ValueError, match=r"mixer\.d_model"):
        make_block(kind, mixer=MeanMixer(D * 2))


# ----------------------------------------------------------------------------------------
# with the real SummaryMixing mixer


@pytest.mark.parametrize("kind", BLOCKS)
def test_summary_mixing_blocks(kind: str) -> None:
    block = make_block(kind, mixer=summary_mixing()).eval()
    x, pad_mask = batch(13, (13, 8))
    y = block(x, pad_mask)
    xg, mg = with_garbage(x, pad_mask, 5)
    torch.testing.assert_close(block(xg, mg)[:, :13][pad_mask], y[pad_mask], atol=1e-5, rtol=1e-5)
    expected = block.forward_chunked(x, pad_mask, 4, 1)
    state = block.init_state(2, x.device, x.dtype)
    outs = []
    for start in range(0, 13, 4):
        sl = slice(start, start + 4)
        out, state = block.forward_step(x[:, sl], pad_mask[:, sl], state, 1)
        outs.append(out)
    torch.testing.assert_close(
        torch.cat(outs, 1)[pad_mask], expected[pad_mask], atol=1e-5, rtol=1e-5
    )
