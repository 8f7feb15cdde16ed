"""The training fast path: recomputation in the SummaryMixing cell and compiled blocks equal
eager mode (outputs and gradients, dropout included), are ignored where they cannot apply,
and a compiler that fails falls back to eager with one warning."""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks
from torch.utils.checkpoint import checkpoint

import smx.nn.mixers.summary_mixing as summary_mixing
from smx.config import Params
from smx.nn.fast import apply_fast_path, compile_blocks, wants_compile
from smx.nn.mixers.summary_mixing import SummaryMixing
from smx.train.checkpoint import config_hash

TOL = 1e-5


def cell(mode: str, recompute: str, dropout: float = 0.3) -> SummaryMixing:
    torch.manual_seed(0)
    heads = 1 if mode == "fast" else 2
    return SummaryMixing(
        16, mode, [16], 16, [16], heads=heads, dropout=dropout, recompute=recompute
    ).train()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    x, pad_mask = torch.randn(3, 11, 16), torch.ones(3, 11, dtype=torch.bool)
    pad_mask[1, 7:] = False
    pad_mask[2, 3:] = False
    return x, pad_mask


def run(
    module: torch.nn.Module, call: Callable[..., torch.Tensor], *args: Any
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Output and gradients (input first, then parameters) under a fixed dropout seed."""
    x = args[0].clone().requires_grad_(True)
    torch.manual_seed(2)
    y = call(x, *args[1:])
    weights = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
    (y * weights).sum().backward()
    grads = [x.grad] + [p.grad for p in module.parameters() if p.grad is not None]
    return y.detach(), grads


def assert_close(a: tuple[torch.Tensor, list], b: tuple[torch.Tensor, list]) -> None:
    torch.testing.assert_close(a[0], b[0], atol=TOL, rtol=TOL)
    assert len(a[1]) == len(b[1])
    for ga, gb in zip(a[1], b[1], strict=True):
        torch.testing.assert_close(ga, gb, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("mode", ["full", "lite", "fast", "expdecay"])
def test_recomputed_activations_give_the_eager_outputs_and_gradients(mode: str) -> None:
    x, pad_mask = batch()
    eager, fast = cell(mode, "none"), cell(mode, "activations")
    assert_close(run(fast, fast, x, pad_mask), run(eager, eager, x, pad_mask))
    if mode != "expdecay":  # chunked (dynamic chunk training) too

        def chunked(m: SummaryMixing) -> Callable[..., torch.Tensor]:
            return lambda h, p: m.forward_chunked(h, p, 4, 1)

        assert_close(run(fast, chunked(fast), x, pad_mask), run(eager, chunked(eager), x, pad_mask))


def test_recomputation_under_bf16_autocast_after_an_earlier_forward_in_the_region() -> None:
    x, pad_mask = batch()
    results = []
    for recompute in ("none", "activations"):
        module = cell("full", recompute)

        def twice(h: torch.Tensor, p: torch.Tensor, m: SummaryMixing = module) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                m(h.detach(), p)  # casts (and caches) the weights first
                return m(h, p).float()

        results.append(run(module, twice, x, pad_mask))
    assert_close(results[1], results[0])


def saved_units(module: SummaryMixing, monkeypatch: pytest.MonkeyPatch) -> float:
    """Bytes autograd keeps for the backward pass, in ``[B, T, D]`` float tensors."""
    route = functools.partial(checkpoint, respect_saved_tensors_hooks=True)
    monkeypatch.setattr(summary_mixing, "checkpoint", route)  # count what SAC keeps too
    x, pad_mask = batch()
    x.requires_grad_(True)
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point():
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with warnings.catch_warnings(), saved_tensors_hooks(pack, lambda t: t):
        warnings.simplefilter("ignore")
        module(x, pad_mask)
    return sum(storages.values()) / x.numel() / x.element_size()


def test_recomputation_keeps_the_input_and_the_matrix_products_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eager = saved_units(cell("full", "none", dropout=0.0), monkeypatch)
    fast = saved_units(cell("full", "activations", dropout=0.0), monkeypatch)
    # input, 2 x 2 MLP layers and the combiner's per-frame product: 6 frame tensors
    assert fast == pytest.approx(6.0, abs=0.2) and eager > fast + 3


def test_recomputation_is_ignored_in_inference_and_streaming() -> None:
    x, pad_mask = batch()
    eager, fast = cell("full", "none").eval(), cell("full", "activations").eval()
    with torch.inference_mode():
        torch.testing.assert_close(fast(x, pad_mask), eager(x, pad_mask), atol=0, rtol=0)
        state_e, state_f = (m.init_state(3, x.device, x.dtype) for m in (eager, fast))
        y_e, _ = eager.forward_step(x[:, :4], pad_mask[:, :4], state_e, left_chunks=1)
        y_f, _ = fast.forward_step(x[:, :4], pad_mask[:, :4], state_f, left_chunks=1)
    torch.testing.assert_close(y_f, y_e, atol=0, rtol=0)
    fast.train()
    with torch.no_grad():  # training mode without gradients: nothing to recompute
        torch.manual_seed(3)
        y = fast(x, pad_mask)
        torch.manual_seed(3)
        torch.testing.assert_close(y, eager.train()(x, pad_mask), atol=0, rtol=0)


def tiny_params(recompute: str) -> Params:
    mixer = {
        "kind": "summarymixing",
        "local_hidden": [16],
        "local_out": 16,
        "summary_hidden": [16],
        "heads": 2,
        "dropout": 0.2,
        "recompute": recompute,
    }
    return Params.model_validate(
        {
            "seed": 0,
            "model": {
                "frontend": {"cnn_channels": [16, 16]},
                "encoder": {
                    "num_layers": 2,
                    "d_model": 16,
                    "d_ffn": 32,
                    "kernel_size": 3,
                    "dropout": 0.2,
                    "input_dropout": 0.1,
                    "layerdrop": 0.0,
                },
                "mixer": mixer,
            },
            "ssl": {
                "kind": "wav2vec2",
                "codebook_entries": 8,
                "code_dim": 8,
                "proj_dim": 8,
                "num_negatives": 4,
                "mask_length": 2,
            },
            "downstream": {"finetune": {"freeze_steps": 0}},
        }
    )


def step(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list]:
    """One training step's loss and gradients under a fixed seed (dropout, masks, noise)."""
    torch.manual_seed(4)
    if hasattr(model, "generator"):
        model.generator.manual_seed(4)
    loss = model(inputs).loss
    loss.backward()
    return loss.detach(), [p.grad for p in model.parameters() if p.grad is not None]


def audio() -> dict[str, torch.Tensor]:
    torch.manual_seed(5)
    return {"audio": torch.randn(2, 8000), "audio_lens": torch.tensor([8000, 6000])}


def test_a_pretraining_step_equals_eager_with_the_defaults() -> None:
    from smx.ssl.objective import build_objective

    models = []
    for recompute in ("none", "activations"):
        torch.manual_seed(0)
        models.append(build_objective(tiny_params(recompute)).train())
    assert_close(step(models[1], audio()), step(models[0], audio()))


def test_a_finetuning_step_equals_eager_with_the_defaults() -> None:
    from smx.downstream.ctc import build_ctc_model

    inputs = {
        **audio(),
        "targets": torch.tensor([[3, 4, 5], [6, 7, 0]]),
        "target_lens": torch.tensor([3, 2]),
    }
    models = []
    for recompute in ("none", "activations"):
        torch.manual_seed(0)
        model = build_ctc_model(tiny_params(recompute), vocab_size=9).train()
        model.set_step(1)
        models.append(model)
    assert_close(step(models[1], inputs), step(models[0], inputs))


def test_compiled_blocks_share_one_graph_and_equal_eager_with_dropout() -> None:
    from torch._dynamo.utils import counters

    from smx.nn.build import build_encoder

    torch.manual_seed(0)
    eager = build_encoder(tiny_params("activations").model, 8).train()
    compiled = copy.deepcopy(eager)
    torch._dynamo.reset()
    counters.clear()
    assert compile_blocks(compiled, backend="aot_eager")  # dynamo + AOT autograd, no C++
    lengths = torch.tensor([12, 7])
    feats = torch.randn(2, 12, 8)
    result = run(compiled, lambda f, n: compiled(f, n).last, feats, lengths)
    assert_close(result, run(eager, lambda f, n: eager(f, n).last, feats, lengths))
    assert counters["stats"]["unique_graphs"] == 1  # 2 identical blocks, one graph


def test_a_failing_compiler_falls_back_to_eager_with_one_warning_naming_the_setting() -> None:
    from smx.nn.build import build_encoder

    def broken(graph: Any, inputs: Any) -> Any:
        raise RuntimeError("no C++ compiler on this platform")

    torch.manual_seed(0)
    eager = build_encoder(tiny_params("none").model, 8).eval()
    compiled = copy.deepcopy(eager)
    torch._dynamo.reset()
    compile_blocks(compiled, backend=broken)
    feats, lengths = torch.randn(2, 12, 8), torch.tensor([12, 7])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = compiled(feats, lengths).last, compiled(feats, lengths).last
    mine = [w for w in caught if "train.compile: false" in str(w.message)]
    assert len(mine) == 1 and "no C++ compiler" in str(mine[0].message)
    expected = eager(feats, lengths).last
    torch.testing.assert_close(first, expected, atol=0, rtol=0)
    torch.testing.assert_close(second, expected, atol=0, rtol=0)


def test_auto_compiles_on_cuda_only_and_false_turns_compilation_off() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not wants_compile("auto", cpu) and wants_compile("auto", cuda)
    assert wants_compile(True, cpu) and not wants_compile(False, cuda)
    model = torch.nn.Linear(2, 2)
    assert apply_fast_path(model, False, cpu) is False  # nothing compiled


def test_the_fast_path_settings_leave_dumps_and_the_config_hash_alone() -> None:
    default = Params()
    eager = Params.model_validate(
        {
            "train": {"compile": False},
            "model": {"mixer": {"kind": "summarymixing", "recompute": "none"}},
        }
    )
    dumped = default.model_dump(mode="json")
    assert "compile" not in dumped["train"] and "recompute" not in dumped["model"]["mixer"]
    assert default.train.compile == "auto" and default.model.mixer.recompute == "activations"
    assert config_hash(eager) == config_hash(default)
    assert eager.model_dump(mode="json")["train"]["compile"] is False
