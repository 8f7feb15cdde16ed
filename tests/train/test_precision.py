"""``train.precision: bf16`` on CPU: autocast is on, the reductions that need float32 stay
float32, and a pre-training step's loss and gradients match float32 closely.

The loss comparison runs the objective of :func:`smx.ssl.objective.build_objective` on the
tiny model of ``tests/tiny.py`` twice from the same weights, generator and global RNG state
(same masks, negatives, noise and dropout): once in float32, once under the Trainer's
autocast context.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tiny import MODEL, SSL

from smx.config import Params
from smx.data.text import CharVocab
from smx.downstream.ctc import build_ctc_model, encode_texts
from smx.nn.means import chunked_mean, decayed_mean, masked_mean
from smx.nn.mixers.summary_mixing import SummaryMixing
from smx.ssl.objective import build_objective
from smx.train.loop import autocast_context, check_precision

CPU = torch.device("cpu")

MIXERS: dict[str, dict[str, Any]] = {
    "summarymixing": MODEL["mixer"],
    "mhsa": {"kind": "mhsa", "heads": 4},
}

#: the SSL section of each objective: tests/tiny.py's wav2vec 2.0, a 64-code BEST-RQ
OBJECTIVES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "wav2vec2": (SSL, MODEL["frontend"]),
    "bestrq": ({"kind": "bestrq", "codebook_size": 64}, {"kind": "conv2d"}),
}


def tiny_objective(objective: str, mixer: str) -> torch.nn.Module:
    """The objective of ``tests/tiny.py``'s model with ``mixer``, in training mode."""
    ssl, frontend = OBJECTIVES[objective]
    model = {**MODEL, "mixer": MIXERS[mixer], "frontend": frontend}
    params = Params.model_validate({"seed": 0, "model": model, "ssl": ssl})
    torch.manual_seed(0)
    return build_objective(params).train()


def fixed_batch() -> dict[str, torch.Tensor]:
    """Two utterances of 3 s and 2.2 s of random audio at 16 kHz, zero-padded."""
    g = torch.Generator().manual_seed(1)
    lens = torch.tensor([48000, 35200])
    audio = torch.randn(2, 48000, generator=g) * 0.1
    return {"audio": audio * (torch.arange(48000) < lens[:, None]), "audio_lens": lens}


def step_loss(objective: torch.nn.Module, precision: str) -> torch.Tensor:
    """The loss of one forward from a fixed generator and global RNG state."""
    objective.generator.manual_seed(0)  # masks, negatives
    torch.manual_seed(0)  # noise fill, Gumbel noise, dropout
    with autocast_context(CPU, precision):
        return objective(fixed_batch()).loss


@pytest.mark.parametrize("mixer", sorted(MIXERS))
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_bf16_loss_close_to_fp32_and_gradients_finite(objective: str, mixer: str) -> None:
    model = tiny_objective(objective, mixer)
    fp32 = step_loss(model, "fp32")
    bf16 = step_loss(model, "bf16")
    assert fp32.dtype == bf16.dtype == torch.float32
    relative = abs(bf16.item() - fp32.item()) / abs(fp32.item())
    assert relative < 0.02, f"bf16 loss {bf16.item():.5g} vs fp32 {fp32.item():.5g}"
    model.zero_grad()
    bf16.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 10
    assert all(g.dtype == torch.float32 and bool(torch.isfinite(g).all()) for g in grads)


def test_ctc_head_and_loss_float32_under_autocast() -> None:
    params = Params.model_validate({"seed": 0, "model": MODEL})
    torch.manual_seed(0)
    model = build_ctc_model(params, len(CharVocab("ab "))).train()
    model.set_step(model.freeze_steps + 1)  # the encoder trains too
    targets, target_lens = encode_texts(["ab ba", "b a"], CharVocab("ab "))
    batch = {**fixed_batch(), "targets": targets, "target_lens": target_lens}
    losses = []
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)  # SpecAugment, dropout
        with autocast_context(CPU, precision):
            log_probs, _ = model.log_probs(batch["audio"], batch["audio_lens"])
            losses.append(model(batch).loss)
        assert log_probs.dtype == torch.float32
    fp32, bf16 = losses
    assert bf16.dtype == torch.float32
    assert abs(bf16.item() - fp32.item()) / fp32.item() < 0.02
    bf16.backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)


# ------------------------------------------------------------------ float32 reductions


def offset_values(time: int) -> tuple[torch.Tensor, torch.Tensor]:
    """bf16 activations ``3 + 0.01 noise [2, T, 4]`` with a padded tail on row 1.

    A bf16 mean of them can only be one of the few bf16 numbers near 3 (spacing 1/64);
    their float64 mean is known exactly because every bf16 value is a float64.
    """
    g = torch.Generator().manual_seed(0)
    values = (3 + 0.01 * torch.randn(2, time, 4, generator=g)).bfloat16()
    pad_mask = torch.ones(2, time, dtype=torch.bool)
    pad_mask[1, time - 1000 :] = False
    return values, pad_mask


def assert_float32_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """float32, and within float32 rounding of the float64 reference (bf16 is ~1e-3 off)."""
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=0.0)


def test_means_are_float32_under_autocast() -> None:
    values, pad_mask = offset_values(6000)
    exact = values.double()
    with autocast_context(CPU, "bf16"):
        whole = masked_mean(values, pad_mask)
        chunked = chunked_mean(values, pad_mask, chunk_size=64, left_chunks=None)
        decayed = decayed_mean(values, pad_mask, decay=0.995)
    assert_float32_close(whole, masked_mean(exact, pad_mask))
    assert_float32_close(chunked, chunked_mean(exact, pad_mask, 64, None))
    assert_float32_close(decayed, decayed_mean(exact, pad_mask, decay=0.995))
    rounded = masked_mean(exact, pad_mask).bfloat16().double()  # what a bf16 mean can hold
    assert not torch.allclose(rounded, masked_mean(exact, pad_mask), rtol=1e-5, atol=0.0)


def record_summaries(mixer: SummaryMixing) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Lists that fill with the cell's summary inputs ``s(x_t)`` and the means given to LN_s."""
    inputs: list[torch.Tensor] = []
    means: list[torch.Tensor] = []
    fast = mixer.mode == "fast"
    source = mixer.projection if fast else mixer.summary_mlp
    source.register_forward_hook(lambda _, __, y: inputs.append(y.chunk(2, -1)[1] if fast else y))
    mixer.summary_norm.register_forward_pre_hook(lambda _, args: means.append(args[0]))
    return inputs, means


@pytest.mark.parametrize("mode", ["full", "lite", "fast", "expdecay"])
def test_summary_mixing_normalises_a_float32_summary_under_autocast(mode: str) -> None:
    torch.manual_seed(0)
    heads = 1 if mode == "fast" else 2
    mixer = SummaryMixing(16, mode, [16], 16, [16], heads=heads, dropout=0.0)
    inputs, means = record_summaries(mixer)
    x, pad_mask = torch.randn(2, 3000, 16), torch.ones(2, 3000, dtype=torch.bool)
    pad_mask[1, 2000:] = False
    with autocast_context(CPU, "bf16"):
        outputs = [mixer(x, pad_mask)]
    exact = inputs[0].double()  # the float64 mean of the very inputs the cell averaged
    if mode == "expdecay":
        expected = decayed_mean(exact, pad_mask, mixer.decay)
    else:
        expected = masked_mean(exact, pad_mask, keepdim=True)
    assert means[0].dtype == torch.float32
    torch.testing.assert_close(means[0].double(), expected, rtol=1e-5, atol=1e-6)
    if mode != "expdecay":  # chunked and step by step: float32 means as well
        with autocast_context(CPU, "bf16"):
            outputs.append(mixer.forward_chunked(x, pad_mask, chunk_size=16, left_chunks=2))
            state = mixer.init_state(2, x.device, torch.bfloat16)
            outputs.append(mixer.forward_step(x[:, :16], pad_mask[:, :16], state, 2)[0])
        assert [m.dtype for m in means[1:]] == [torch.float32] * 2
    if mode != "lite":  # the combiner, a bf16 layer, gets the summary back in bf16
        assert all(y.dtype == torch.bfloat16 for y in outputs)


# ------------------------------------------------------------------ the Trainer's autocast


def test_autocast_context_is_bf16_on_cpu() -> None:
    with autocast_context(CPU, "bf16"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")
    with autocast_context(CPU, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32


def test_bf16_refused_where_autocast_cannot_run_it() -> None:
    meta = torch.device("meta")  # no autocast at all
    with pytest.raises(ValueError, match=r"^train\.precision is bf16 .*\(meta\); set train"):
        autocast_context(meta, "bf16")
    with pytest.raises(ValueError, match=r"train\.precision"):
        check_precision(meta, "bf16")
    check_precision(meta, "fp32")  # fp32 needs no autocast
    check_precision(CPU, "bf16")
