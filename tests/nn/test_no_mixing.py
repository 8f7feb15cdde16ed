"""The ``none`` mixer (no token mixing): zeros, no parameters, an encoder of FFN + conv only."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from smx.config import ModelCfg, NoMixingCfg, Params
from smx.nn.base import lengths_to_mask
from smx.nn.build import build_encoder, build_mixer
from smx.nn.mixers.no_mixing import NoMixing
from smx.nn.streaming import ChunkConfig

TINY = {"encoder": {"num_layers": 2, "d_model": 8, "d_ffn": 16, "kernel_size": 3}}


def tiny_model(block: str = "conformer", **extra) -> ModelCfg:
    data = {"encoder": {**TINY["encoder"], "block": block}, "mixer": {"kind": "none"}, **extra}
    return ModelCfg.model_validate(data)


def test_outputs_zeros_of_the_input_shape_and_has_no_parameters() -> None:
    mixer = NoMixing(6)
    x = torch.randn(3, 7, 6, requires_grad=True)
    pad_mask = lengths_to_mask(torch.tensor([7, 4, 1]))
    y = mixer(x, pad_mask)
    assert y.shape == (3, 7, 6) and y.dtype == x.dtype
    assert torch.equal(y, torch.zeros(3, 7, 6))
    assert list(mixer.parameters()) == [] and mixer.state_dict() == {}
    assert not y.requires_grad  # nothing to learn, no path back to x


def test_chunked_and_step_outputs_are_zeros_and_the_state_is_empty() -> None:
    mixer = NoMixing(4)
    x, pad_mask = torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.bool)
    assert torch.equal(mixer.forward_chunked(x, pad_mask, 2, 1), torch.zeros(2, 5, 4))
    state = mixer.init_state(2, x.device, x.dtype)
    y, state = mixer.forward_step(x[:, :3], pad_mask[:, :3], state, None)
    assert torch.equal(y, torch.zeros(2, 3, 4)) and state is None
    assert mixer.streamable


def test_bad_input_raises_a_clear_error() -> None:
    mixer = NoMixing(4)
    with pytest.raises(ValueError, match="NoMixing: x feature size must be d_model=4, got 5"):
        mixer(torch.randn(1, 3, 5), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="NoMixing: pad_mask must be a bool tensor"):
        mixer(torch.randn(1, 3, 4), torch.ones(1, 3))
    with pytest.raises(ValueError, match="NoMixing: chunk_size must be an integer >= 1, got 0"):
        mixer.forward_chunked(torch.randn(1, 3, 4), torch.ones(1, 3, dtype=torch.bool), 0, None)
    with pytest.raises(ValueError, match="NoMixing: d_model must be an integer >= 1, got 0"):
        NoMixing(0)


def test_config_validates_and_builds_the_mixer() -> None:
    cfg = tiny_model()
    assert cfg.mixer == NoMixingCfg() and cfg.mixer.kind == "none"
    assert isinstance(build_mixer(cfg.mixer, cfg.encoder), NoMixing)
    with pytest.raises(ValidationError, match="heads"):
        ModelCfg.model_validate({"mixer": {"kind": "none", "heads": 4}})  # it has no options
    params = Params.model_validate(
        {"model": TINY, "variants": {"floor": {"mixer": {"kind": "none"}}}}
    )
    assert params.variant("floor").model.mixer.kind == "none"
    assert tiny_model(streaming={"enabled": True}).streaming.enabled  # zeros stream trivially


def test_conformer_block_keeps_only_feed_forward_and_convolution() -> None:
    torch.manual_seed(0)
    encoder = build_encoder(tiny_model(), input_dim=5).eval()
    block = encoder.blocks[0]
    assert not any(name.startswith("mixer.") for name, _ in block.named_parameters())
    feats, lengths = torch.randn(2, 9, 5), torch.tensor([9, 6])
    out = encoder(feats, lengths)
    assert out.last.shape == (2, 9, 8) and bool((out.last[1, 6:] == 0).all())
    # the Conformer layer without its mixer branch, written out from the block's modules
    x, pad_mask = out.hidden_states[0], lengths_to_mask(lengths)
    x = x + 0.5 * block.ffn1(x)
    x = x + block.conv(x, pad_mask)
    expected = block.out_norm(x + 0.5 * block.ffn2(x)).masked_fill(~pad_mask[..., None], 0)
    torch.testing.assert_close(out.hidden_states[1], expected)


def test_encoder_trains_and_streams_with_it() -> None:
    torch.manual_seed(0)
    encoder = build_encoder(tiny_model("transformer"), input_dim=5).train()
    feats, lengths = torch.randn(2, 9, 5), torch.tensor([9, 6])
    encoder(feats, lengths).last.sum().backward()
    grads = {name: p.grad for name, p in encoder.named_parameters()}
    assert grads["blocks.0.mixer_norm.weight"] is None  # its output is discarded
    assert grads["blocks.0.ffn.net.0.weight"].abs().sum() > 0
    encoder = build_encoder(tiny_model(), input_dim=5).eval()
    state = encoder.init_stream(1, torch.device("cpu"), torch.float32, left_chunks=None)
    chunks = []
    for start in range(0, 9, 4):
        piece = feats[:1, start : start + 4]
        y, state = encoder.stream_step(piece, torch.ones(piece.shape[:2], dtype=torch.bool), state)
        chunks.append(y)
    chunked = encoder(feats[:1], torch.tensor([9]), chunk=ChunkConfig(4, None)).last
    torch.testing.assert_close(torch.cat(chunks, 1), chunked)


def test_summarymixing_checkpointing_flag_is_built_and_left_out_of_dumps_while_off() -> None:
    mixer = {"kind": "summarymixing", "local_hidden": [8], "local_out": 8,
             "summary_hidden": [8], "heads": 2}  # fmt: skip
    off = ModelCfg.model_validate({**TINY, "mixer": mixer})
    on = ModelCfg.model_validate({**TINY, "mixer": {**mixer, "activation_checkpointing": True}})
    assert not off.mixer.activation_checkpointing
    assert "activation_checkpointing" not in off.model_dump()["mixer"]  # same config hash
    assert on.model_dump(mode="json")["mixer"]["activation_checkpointing"] is True
    assert ModelCfg.model_validate(on.model_dump()) == on
    assert build_mixer(on.mixer, on.encoder).activation_checkpointing
    assert not build_mixer(off.mixer, off.encoder).activation_checkpointing
