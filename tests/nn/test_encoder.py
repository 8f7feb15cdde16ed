"""Tests of the encoder: projection, mask embedding, positions, layerdrop, chunking, streaming."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from mixer_stub import MeanMixer
from torch import nn

from smx.nn.base import lengths_to_mask
from smx.nn.blocks import BranchformerBlock, ConformerBlock, TransformerBlock
from smx.nn.encoder import Encoder, EncoderOutput
from smx.nn.mixers.summary_mixing import SummaryMixing
from smx.nn.positional import sinusoidal_positions
from smx.nn.streaming import ChunkConfig

F_IN, D = 10, 16


def summary_mixing() -> nn.Module:
    return SummaryMixing(D, local_hidden=[D], local_out=D, summary_hidden=[D], heads=2)


def make_encoder(
    kind: str = "conformer", layers: int = 2, mixer: str = "mean", **kwargs
) -> Encoder:
    def block() -> nn.Module:
        m = MeanMixer(D) if mixer == "mean" else summary_mixing()
        if kind == "conformer":
            return ConformerBlock(D, m, d_ffn=24, kernel_size=5)
        if kind == "branchformer":
            return BranchformerBlock(D, m, csgu_units=24, kernel_size=5)
        return TransformerBlock(D, m, d_ffn=24)

    return Encoder(F_IN, D, [block() for _ in range(layers)], **kwargs)


def inputs(t: int = 12, lengths: tuple[int, ...] = (12, 7)) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(len(lengths), t, F_IN), torch.tensor(lengths)


def test_output_shapes_and_hidden_states() -> None:
    encoder = make_encoder(layers=3).eval()
    feats, lengths = inputs()
    out = encoder(feats, lengths)
    assert isinstance(out, EncoderOutput)
    assert out.last.shape == (2, 12, D)
    assert torch.equal(out.lengths, lengths)
    assert len(out.hidden_states) == 4
    assert out.hidden_states[-1] is out.last
    for h in out.hidden_states:
        assert h.shape == (2, 12, D)
        assert bool((h[1, 7:] == 0).all())
    # the first entry is the projected input plus the absolute positions
    pad_mask = lengths_to_mask(lengths, 12)[..., None]
    expected = (encoder.input_proj(feats) + sinusoidal_positions(12, D)) * pad_mask
    torch.testing.assert_close(out.hidden_states[0], expected)
    # the last entry is the final LayerNorm (eps 1e-6) of the last layer's output
    x = encoder.blocks[-1](out.hidden_states[-2], pad_mask[..., 0])
    ln = nn.functional.layer_norm(x, (D,), encoder.norm.weight, encoder.norm.bias, eps=1e-6)
    torch.testing.assert_close(out.last, ln * pad_mask)


def test_no_positions() -> None:
    encoder = make_encoder(pos_enc="none").eval()
    feats, lengths = inputs()
    out = encoder(feats, lengths)
    torch.testing.assert_close(out.hidden_states[0][0], encoder.input_proj(feats[0]))


@pytest.mark.parametrize("kind", ["conformer", "branchformer", "transformer"])
def test_padding_invariance(kind: str) -> None:
    encoder = make_encoder(kind).eval()
    feats, lengths = inputs(12, (12, 7))
    out = encoder(feats, lengths)
    garbage = torch.cat([feats, torch.zeros(2, 5, F_IN)], dim=1)
    garbage[1, 7:] = float("nan")
    garbage[0, 12:] = 1e6
    out_g = encoder(garbage, lengths)
    pad_mask = lengths_to_mask(lengths, 12)
    for h, h_g in zip(out.hidden_states, out_g.hidden_states, strict=True):
        torch.testing.assert_close(h_g[:, :12][pad_mask], h[pad_mask], atol=1e-5, rtol=1e-5)
        assert bool((h_g[:, 12:] == 0).all())
    alone = encoder(feats[1:, :7], lengths[1:])
    torch.testing.assert_close(alone.last[0], out.last[1, :7], atol=1e-5, rtol=1e-5)
    chunk = ChunkConfig(4, 1)
    out_c, out_cg = encoder(feats, lengths, chunk=chunk), encoder(garbage, lengths, chunk=chunk)
    torch.testing.assert_close(
        out_cg.last[:, :12][pad_mask], out_c.last[pad_mask], atol=1e-5, rtol=1e-5
    )


def test_mask_embedding() -> None:
    encoder = make_encoder(mask_embedding=True, input_dropout=0.0).eval()
    assert encoder.mask_embedding is not None
    assert bool(((encoder.mask_embedding >= 0) & (encoder.mask_embedding < 1)).all())
    feats, lengths = inputs()
    masked = torch.zeros(2, 12, dtype=torch.bool)
    masked[0, [1, 5]] = True
    masked[1, 3] = True
    first = encoder(feats, lengths, masked=masked).hidden_states[0]
    positions = sinusoidal_positions(12, D)
    torch.testing.assert_close(first[0, 1], encoder.mask_embedding + positions[1])
    torch.testing.assert_close(first[1, 3], encoder.mask_embedding + positions[3])
    unmasked = encoder(feats, lengths).hidden_states[0]
    torch.testing.assert_close(first[~masked], unmasked[~masked])
    # the mask embedding is learned
    encoder.train()
    encoder(feats, lengths, masked=masked).last.square().sum().backward()
    assert encoder.mask_embedding.grad is not None
    assert encoder.mask_embedding.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="masked must be a bool tensor"):
        encoder(feats, lengths, masked=masked[:, :5])
    with pytest.raises(ValueError, match="no mask embedding"):
        make_encoder()(feats, lengths, masked=masked)


@pytest.mark.parametrize("kind", ["conformer", "branchformer", "transformer"])
def test_gradients_reach_every_parameter(kind: str) -> None:
    encoder = make_encoder(kind, mask_embedding=True).train()
    feats, lengths = inputs()
    masked = torch.rand(2, 12) < 0.3
    masked[0, 0] = True
    out = encoder(feats, lengths, masked=masked)
    out.last.square().sum().backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_layerdrop() -> None:
    encoder = make_encoder(layers=3, layerdrop=1.0).train()
    feats, lengths = inputs()
    pad_mask = lengths_to_mask(lengths, 12)[..., None]
    out = encoder(feats, lengths)
    assert len(out.hidden_states) == 4
    first = out.hidden_states[0]
    for h in out.hidden_states[1:-1]:
        assert torch.equal(h, first)  # every layer skipped
    ln = nn.functional.layer_norm(first, (D,), encoder.norm.weight, encoder.norm.bias, eps=1e-6)
    torch.testing.assert_close(out.last, ln * pad_mask)
    encoder.eval()
    out = encoder(feats, lengths)
    for previous, h in pairwise(out.hidden_states[:-1]):
        assert not torch.allclose(previous, h)  # no layer skipped in eval mode
    # with p = 0.5 some forward passes skip some layers and not others
    encoder = make_encoder(layers=4, layerdrop=0.5, input_dropout=0.0)
    for block in encoder.blocks:
        block.eval()  # no dropout inside the blocks: only layerdrop is random
    torch.manual_seed(0)
    skipped = []
    for _ in range(10):
        hs = encoder(feats, lengths).hidden_states
        skipped += [torch.equal(a, b) for a, b in pairwise(hs[:-1])]
    assert any(skipped) and not all(skipped)


@pytest.mark.parametrize("kind", ["conformer", "branchformer", "transformer"])
def test_full_chunk_equals_offline(kind: str) -> None:
    encoder = make_encoder(kind).eval()
    feats, lengths = inputs()
    offline = encoder(feats, lengths).last
    torch.testing.assert_close(
        encoder(feats, lengths, chunk=ChunkConfig(12, None)).last, offline, atol=1e-5, rtol=1e-5
    )
    assert not torch.allclose(encoder(feats, lengths, chunk=ChunkConfig(3, 0)).last, offline)


def stream(encoder: Encoder, feats: torch.Tensor, lengths: torch.Tensor, chunk: ChunkConfig):
    pad_mask = lengths_to_mask(lengths, feats.shape[1])
    state = encoder.init_stream(feats.shape[0], feats.device, feats.dtype, chunk.left_chunks)
    outs = []
    for start in range(0, feats.shape[1], chunk.chunk_size):
        sl = slice(start, start + chunk.chunk_size)
        y, state = encoder.stream_step(feats[:, sl], pad_mask[:, sl], state)
        outs.append(y)
    assert state.offset == feats.shape[1]
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("kind", ["conformer", "branchformer", "transformer"])
@pytest.mark.parametrize(("c", "left"), [(4, None), (4, 1), (3, 0), (1, 2), (5, 2), (20, None)])
def test_stream_steps_equal_chunked_forward(kind: str, c: int, left: int | None) -> None:
    encoder = make_encoder(kind).eval()
    feats, lengths = inputs(14, (14, 9))
    chunk = ChunkConfig(c, left)
    expected = encoder(feats, lengths, chunk=chunk).last
    torch.testing.assert_close(
        stream(encoder, feats, lengths, chunk), expected, atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("kind", ["conformer", "branchformer"])
def test_summary_mixing_encoder(kind: str) -> None:
    encoder = make_encoder(kind, mixer="summary").eval()
    feats, lengths = inputs(14, (14, 9))
    out = encoder(feats, lengths)
    garbage = torch.cat([feats, torch.randn(2, 3, F_IN) * 1e3], dim=1)
    garbage[1, 9:] = float("nan")
    pad_mask = lengths_to_mask(lengths, 14)
    got = encoder(garbage, lengths).last[:, :14]
    torch.testing.assert_close(got[pad_mask], out.last[pad_mask], atol=1e-5, rtol=1e-5)
    chunk = ChunkConfig(4, 2)
    expected = encoder(feats, lengths, chunk=chunk).last
    torch.testing.assert_close(
        stream(encoder, feats, lengths, chunk), expected, atol=1e-5, rtol=1e-5
    )


def test_errors() -> None:
    encoder = make_encoder()
    feats, lengths = inputs()
    with pytest.raises(ValueError, match=r"feats must have shape \[B, T, F\]"):
        encoder(feats[0], lengths)
    with pytest.raises(ValueError, match="feats feature size must be 10"):
        encoder(torch.randn(2, 12, 11), lengths)
    with pytest.raises(ValueError, match=r"lengths must have shape \[B\] = \[2\]"):
        encoder(feats, lengths[:1])
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T=12\]"):
        encoder(feats, torch.tensor([13, 4]))
    with pytest.raises(ValueError, match="layerdrop"):
        make_encoder(layerdrop=1.5)
    with pytest.raises(ValueError, match="pos_enc"):
        make_encoder(pos_enc="rel")
    with pytest.raises(ValueError, match="at least one layer"):
        Encoder(F_IN, D, [])
    state = encoder.init_stream(2, feats.device, feats.dtype, 1)
    with pytest.raises(ValueError, match="pad_mask must be a bool tensor"):
        encoder.stream_step(feats[:, :4], torch.ones(2, 4), state)
    with pytest.raises(ValueError, match="feats must have shape"):
        encoder.stream_step(feats[:, :4, :5], torch.ones(2, 4, dtype=torch.bool), state)
    with pytest.raises(ValueError, match="left_chunks"):
        encoder.init_stream(2, feats.device, feats.dtype, -1)


def compile_and_compare(encoder: Encoder, backend: str, train: bool) -> None:
    torch._dynamo.reset()
    feats, lengths = inputs()
    compiled = torch.compile(encoder, fullgraph=True, backend=backend)  # no graph break allowed
    encoder.train(train)
    out = compiled(feats, lengths)
    assert len(out.hidden_states) == len(encoder.blocks) + 1
    if train:
        out.last.square().sum().backward()
        assert all(p.grad is not None for p in encoder.parameters())
    else:
        torch.testing.assert_close(out.last, encoder(feats, lengths).last, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mixer", ["mean", "summary"])
def test_compile_fullgraph(mixer: str) -> None:
    """Dynamo traces the whole forward as one graph (aot_eager: no C++ compile, fast)."""
    encoder = make_encoder("conformer", layers=1, mixer=mixer)
    compile_and_compare(encoder, "aot_eager", train=False)


def test_compile_fullgraph_layerdrop() -> None:
    """In training, layerdrop is branch-free under compile: skipped layers pass x through."""
    encoder = make_encoder("conformer", mixer="summary", layerdrop=1.0)
    compile_and_compare(encoder, "aot_eager", train=True)
    out = torch.compile(encoder, fullgraph=True, backend="aot_eager")(*inputs())
    for h in out.hidden_states[1:-1]:
        assert torch.equal(h, out.hidden_states[0])


@pytest.mark.e2e
@pytest.mark.parametrize("mixer", ["mean", "summary"])
def test_compile_fullgraph_inductor(mixer: str) -> None:
    """The default (inductor) backend on CPU: ~10-30 s with a cold compile cache."""
    compile_and_compare(make_encoder("branchformer", mixer=mixer), "inductor", train=False)
