"""SummaryMixing (every mode), its head-split linears, and their equations.

The reference values are computed by plain Python loops over utterances, frames and heads
from the module's own weights, in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from smx.nn.linear import MLP, BlockLinear
from smx.nn.mixers.summary_mixing import SummaryMixing

ACTIVATIONS = {"swish": F.silu, "gelu": F.gelu, "relu": F.relu}
MODES = ("full", "lite", "fast", "expdecay")


def make(mode: str, heads: int = 2, d_model: int = 8, **kwargs) -> SummaryMixing:
    """A small cell; every size divisible by ``heads`` (1, 2 or 4)."""
    sizes = {"local_hidden": (12,), "local_out": 4, "summary_hidden": (8,)}
    sizes.update(kwargs)
    return SummaryMixing(d_model, mode, heads=1 if mode == "fast" else heads, **sizes)


def batch(lengths: list[int], time: int, d_model: int = 8, seed: int = 0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), time, d_model, generator=generator, dtype=dtype)
    pad_mask = torch.arange(time)[None, :] < torch.tensor(lengths)[:, None]
    return x, pad_mask


# ------------------------------------------------------------------ loop-based reference


def loop_mlp(mlp: MLP, vec: torch.Tensor, act) -> torch.Tensor:
    """Every BlockLinear of ``mlp`` as explicit per-head matmuls, each followed by ``act``."""
    layers = [layer for layer in mlp if isinstance(layer, BlockLinear)]
    assert len(layers) == len(mlp) // 2
    for layer in layers:
        n, o = layer.in_features // layer.heads, layer.out_features // layer.heads
        out = [
            vec[i * n : (i + 1) * n] @ layer.weight[i] + layer.bias[i * o : (i + 1) * o]
            for i in range(layer.heads)
        ]
        vec = act(torch.cat(out))
    return vec


def loop_layer_norm(vec: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    if isinstance(norm, nn.Identity):
        return vec
    mean = vec.mean()
    var = ((vec - mean) ** 2).mean()
    return (vec - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def loop_reference(module: SummaryMixing, x, pad_mask, activation: str) -> torch.Tensor:
    act = ACTIVATIONS[activation]
    batch_size, time, d_model = x.shape
    out = torch.zeros(batch_size, time, d_model, dtype=x.dtype)
    for b in range(batch_size):
        real = [t for t in range(time) if pad_mask[b, t]]
        local, values = {}, {}
        for t in real:
            if module.mode == "fast":
                projected = loop_mlp(module.projection, x[b, t], act)
                half = projected.shape[0] // 2
                local[t], values[t] = projected[:half], projected[half:]
            else:
                values[t] = loop_mlp(module.summary_mlp, x[b, t], act)
                if module.mode != "lite":
                    local[t] = loop_mlp(module.local_mlp, x[b, t], act)
        for t in real:
            if module.mode == "expdecay":
                weights = {j: float(module.decay) ** abs(t - j) for j in real}
                summary = sum(weights[j] * values[j] for j in real) / sum(weights.values())
            else:
                summary = sum(values[j] for j in real) / len(real)
            if module.mode == "lite":
                out[b, t] = summary
                continue
            loc = local[t]
            if module.mode != "fast":
                loc = loop_layer_norm(loc, module.local_norm)
                summary = loop_layer_norm(summary, module.summary_norm)
            concat = torch.cat([loc, summary])
            out[b, t] = act(module.combiner.weight @ concat + module.combiner.bias)
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("use_layernorm", [True, False])
@pytest.mark.parametrize("activation", ["swish", "gelu"])
def test_equals_loop_reference(mode, use_layernorm, activation):
    torch.manual_seed(1)
    module = make(mode, heads=2, use_layernorm=use_layernorm, activation=activation, decay=0.7)
    module = module.double().eval()
    with torch.no_grad():  # non-zero biases and LN affine so that they are checked too
        for name, p in module.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "norm.weight" in name else 0.0))
    x, pad_mask = batch([7, 4, 1], 7, dtype=torch.float64)
    expected = loop_reference(module, x, pad_mask, activation)
    torch.testing.assert_close(module(x, pad_mask), expected, atol=1e-10, rtol=1e-10)


def test_layernorm_flag_changes_output():
    torch.manual_seed(0)
    with_ln = make("full").eval()
    without = make("full", use_layernorm=False).eval()
    without.load_state_dict({k: v for k, v in with_ln.state_dict().items() if "norm" not in k})
    assert isinstance(without.local_norm, nn.Identity)
    x, pad_mask = batch([6, 3], 6)
    assert not torch.allclose(with_ln(x, pad_mask), without(x, pad_mask))


# ------------------------------------------------------------------ shapes, masks, gradients


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("heads", [1, 4])
def test_shapes(mode, heads):
    if mode == "fast" and heads == 4:
        with pytest.raises(ValueError, match="heads=1"):
            SummaryMixing(16, "fast", local_out=8, heads=4)
        return
    module = SummaryMixing(
        16, mode, local_hidden=(8, 12), local_out=8, summary_hidden=(20,), heads=heads
    )
    x, pad_mask = batch([9, 5], 9, d_model=16)
    y = module(x, pad_mask)
    assert y.shape == (2, 9, 16)
    assert (y[1, 5:] == 0).all()
    assert module.streamable == (mode != "expdecay")
    if module.streamable:
        assert module.forward_chunked(x, pad_mask, 4, 1).shape == (2, 9, 16)


PADDING_CASES = [(mode, None) for mode in MODES] + [
    (mode, chunking)
    for mode in ("full", "lite", "fast")
    for chunking in [(3, 0), (3, None), (4, 1)]
]


@pytest.mark.parametrize(("mode", "chunking"), PADDING_CASES)
def test_padding_invariance(mode, chunking):
    torch.manual_seed(0)
    module = make(mode).eval()

    def run(x, pad_mask):
        if chunking is None:
            return module(x, pad_mask)
        return module.forward_chunked(x, pad_mask, *chunking)

    x, pad_mask = batch([9, 5, 2], 9)
    y = run(x, pad_mask)
    # appended padding with garbage values
    garbage = torch.randn(3, 6, 8) * 100
    x_long = torch.cat([x, garbage], dim=1)
    pad_long = torch.cat([pad_mask, torch.zeros(3, 6, dtype=torch.bool)], dim=1)
    y_long = run(x_long, pad_long)
    torch.testing.assert_close(y_long[:, :9], y, atol=1e-6, rtol=0)
    assert (y_long[:, 9:] == 0).all()
    # new values at the padded positions never reach real frames
    x_changed = torch.where(pad_mask[..., None], x, torch.randn_like(x) * 1e3)
    torch.testing.assert_close(run(x_changed, pad_mask), y, atol=1e-6, rtol=0)
    assert (y[~pad_mask] == 0).all()
    # and the summary depends on the real frames (the test above can fail)
    x_real_changed = x.clone()
    x_real_changed[1, 3] += 1.0  # visible from frame 4 under every chunking here
    assert not torch.allclose(run(x_real_changed, pad_mask)[1, 4], y[1, 4])


@pytest.mark.parametrize("mode", MODES)
def test_all_padding_row_and_single_frame(mode):
    module = make(mode).eval()
    x, pad_mask = batch([0, 3], 3)
    y = module(x, pad_mask)
    assert torch.isfinite(y).all() and (y[0] == 0).all()
    x1, mask1 = batch([1, 0], 1)
    y1 = module(x1, mask1)
    assert y1.shape == (2, 1, 8) and torch.isfinite(y1).all()
    if module.streamable:
        assert torch.isfinite(module.forward_chunked(x, pad_mask, 2, 0)).all()
        assert torch.isfinite(module.forward_chunked(x1, mask1, 1, None)).all()
        state = module.init_state(2, x.device, x.dtype)
        y_step, _ = module.forward_step(x1, mask1, state, None)
        assert torch.isfinite(y_step).all()


@pytest.mark.parametrize("mode", MODES)
def test_gradients_reach_every_parameter(mode):
    torch.manual_seed(0)
    module = make(mode).train()
    x, pad_mask = batch([7, 4], 7)
    y = module(x, pad_mask)
    (y * torch.randn_like(y)).sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    if mode == "expdecay":
        assert "decay" not in dict(module.named_parameters())
        assert float(module.decay) == pytest.approx(0.995)


def test_dropout_active_only_in_train_mode():
    torch.manual_seed(0)
    module = make("full", dropout=0.5)
    x, pad_mask = batch([6, 6], 6)
    module.eval()
    torch.testing.assert_close(module(x, pad_mask), module(x, pad_mask))
    module.train()
    assert not torch.allclose(module(x, pad_mask), module(x, pad_mask))


# ------------------------------------------------------------------ heads and BlockLinear


@pytest.mark.parametrize("branch", ["summary_mlp", "local_mlp"])
def test_heads_never_mix_inside_mlps(branch):
    torch.manual_seed(0)
    heads = 4
    module = SummaryMixing(
        16, "full", local_hidden=(8, 12), local_out=8, summary_hidden=(8, 12), heads=heads
    )
    mlp = getattr(module, branch)
    x = torch.randn(2, 5, 16)
    x_perturbed = x.clone()
    x_perturbed[..., :4] += torch.randn(2, 5, 4)  # input slice of head 0
    out, out_perturbed = mlp(x), mlp(x_perturbed)
    width = out.shape[-1] // heads
    assert not torch.allclose(out[..., :width], out_perturbed[..., :width])
    torch.testing.assert_close(out[..., width:], out_perturbed[..., width:], atol=0, rtol=0)


def test_block_linear_equals_block_diagonal_matrix():
    torch.manual_seed(0)
    layer = BlockLinear(6, 9, heads=3)
    with torch.no_grad():
        layer.bias.normal_()
    dense = torch.block_diag(*layer.weight)  # [6, 9]
    x = torch.randn(4, 2, 6)
    torch.testing.assert_close(layer(x), x @ dense + layer.bias)


def test_block_linear_init_per_head_fan_in():
    torch.manual_seed(0)
    for heads in (1, 4):
        layer = BlockLinear(64, 32, heads=heads)
        bound = 1 / (64 / heads) ** 0.5
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound  # uniform over the whole range
        assert (layer.bias == 0).all()
    assert BlockLinear(8, 8, bias=False).bias is None


def test_init_of_the_cell():
    module = make("full")
    assert (module.combiner.bias == 0).all()
    assert (module.local_norm.weight == 1).all() and (module.summary_norm.bias == 0).all()
    fan_in = module.combiner.in_features
    assert module.combiner.weight.abs().max() <= 1 / fan_in**0.5


def test_mlp_ends_with_activation_after_every_layer():
    mlp = MLP(8, (6, 4), 2, heads=2, activation="relu")
    kinds = [type(layer) for layer in mlp]
    assert kinds == [BlockLinear, nn.ReLU] * 3
    assert (mlp(torch.randn(5, 8)) >= 0).all()


# ------------------------------------------------------------------ linear cost


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("kind", ["full", "chunked", "expdecay", "fast", "lite"])
def test_cost_is_linear_in_time(kind):
    mode = "full" if kind == "chunked" else kind
    module = SummaryMixing(
        64, mode, local_hidden=(64,), local_out=64, summary_hidden=(64,), heads=1
    ).eval()

    def run(time: int) -> int:
        x, pad_mask = torch.randn(1, time, 64), torch.ones(1, time, dtype=torch.bool)
        if kind == "chunked":
            return flops(lambda: module.forward_chunked(x, pad_mask, 8, 2))
        return flops(lambda: module(x, pad_mask))

    short, long = run(200), run(800)
    assert short > 0
    assert long <= 4.2 * short, (short, long)


def test_summary_half_of_the_combiner_runs_once_per_utterance():
    batch_size, time, d_model, local_out, hidden = 2, 50, 16, 8, 12
    module = SummaryMixing(
        d_model, "full", local_hidden=(hidden,), local_out=local_out, summary_hidden=(hidden,)
    ).eval()
    x, pad_mask = batch([50, 20], time, d_model=d_model)
    frames = batch_size * time
    expected = 2 * (
        frames * (d_model * hidden + hidden * local_out)  # local MLP
        + frames * (d_model * hidden + hidden * d_model)  # summary MLP
        + frames * local_out * d_model  # combiner, local half: every frame
        + batch_size * d_model * d_model  # combiner, summary half: once per utterance
    )
    assert flops(lambda: module(x, pad_mask)) == expected


# ------------------------------------------------------------------ errors


def test_input_errors():
    module = make("full")
    x, pad_mask = batch([4, 4], 4)
    with pytest.raises(ValueError, match=r"x must have shape \[B, T, D\]"):
        module(x[0], pad_mask)
    with pytest.raises(ValueError, match="d_model=8"):
        module(torch.randn(2, 4, 6), pad_mask)
    with pytest.raises(ValueError, match="pad_mask must be a bool"):
        module(x, pad_mask.float())
    with pytest.raises(ValueError, match=r"pad_mask must have shape \[B, T\]"):
        module(x, pad_mask[:, :3])
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        module.forward_chunked(x, pad_mask, 0, None)
    with pytest.raises(ValueError, match="left_chunks"):
        module.forward_chunked(x, pad_mask, 2, -1)
    with pytest.raises(ValueError, match="pad_mask"):
        module.forward_chunked(x, pad_mask.long(), 2, None)
    state = module.init_state(2, x.device, x.dtype)
    with pytest.raises(ValueError, match="pad_mask"):
        module.forward_step(x, pad_mask[:1], state, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "medium"}, "mode must be one of"),
        ({"activation": "tanh"}, "activation must be one of"),
        ({"heads": 3, "local_hidden": (12,), "local_out": 6, "summary_hidden": (6,)}, "d_model=8"),
        ({"heads": 4, "local_hidden": (6,)}, r"local_hidden\[0\]=6"),
        ({"heads": 4, "local_hidden": (8,), "local_out": 6}, "local_out=6"),
        ({"heads": 4, "local_hidden": (8,), "summary_hidden": (8, 6)}, r"summary_hidden\[1\]=6"),
        ({"heads": 0}, "heads must be an integer >= 1"),
        ({"local_out": 0}, "local_out must be an integer >= 1"),
        ({"decay": 0.0}, r"decay must be in \(0, 1\)"),
        ({"decay": 1.0}, r"decay must be in \(0, 1\)"),
        ({"decay": 1.5}, r"decay must be in \(0, 1\)"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
        ({"mode": "fast", "heads": 2}, "fast mode uses no heads; set heads=1"),
    ],
)
def test_constructor_errors(kwargs, message):
    arguments = {"local_hidden": (8,), "local_out": 8, "summary_hidden": (8,)} | kwargs
    with pytest.raises(ValueError, match=message):
        SummaryMixing(8, **arguments)


def test_lite_ignores_local_sizes_and_fast_ignores_hidden_sizes():
    assert SummaryMixing(8, "lite", local_hidden=(3,), local_out=3, heads=2, summary_hidden=(4,))
    assert SummaryMixing(8, "fast", local_hidden=(3,), local_out=4, summary_hidden=(5,))


def test_expdecay_has_no_streaming_mode():
    module = make("expdecay")
    x, pad_mask = batch([4, 2], 4)
    with pytest.raises(ValueError, match="'expdecay' has no streaming mode"):
        module.forward_chunked(x, pad_mask, 2, None)
    with pytest.raises(ValueError, match="'expdecay' has no streaming mode"):
        module.init_state(2, x.device, x.dtype)


def test_block_linear_errors():
    with pytest.raises(ValueError, match="in_features=6 must be divisible by heads=4"):
        BlockLinear(6, 8, heads=4)
    with pytest.raises(ValueError, match="out_features=6 must be divisible by heads=4"):
        BlockLinear(8, 6, heads=4)
    with pytest.raises(ValueError, match="heads must be an integer >= 1"):
        BlockLinear(8, 8, heads=0)


# ------------------------------------------------------------------ activation checkpointing


def saved_bytes(fn) -> int:
    """Bytes of the distinct storages that autograd saves for the backward pass of ``fn()``."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(storages.values())


@pytest.mark.parametrize(("mode", "chunked"), [*((m, False) for m in MODES), ("full", True)])
def test_checkpointing_keeps_outputs_and_gradients(mode: str, chunked: bool) -> None:
    x, pad_mask = batch([9, 5], 9)
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        mixer = make(mode, dropout=0.3, activation_checkpointing=checkpointing).train()
        xi = x.clone().requires_grad_(True)
        torch.manual_seed(1)  # the same dropout masks, drawn again in the recomputation
        if chunked:
            y = mixer.forward_chunked(xi, pad_mask, chunk_size=4, left_chunks=1)
        else:
            y = mixer(xi, pad_mask)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        grads = [xi.grad, *(p.grad for p in mixer.parameters())]
        results.append((y.detach(), grads))
    (y0, g0), (y1, g1) = results
    assert not torch.equal(y0, make(mode, dropout=0.0)(x, pad_mask))  # dropout was active
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-6)
    assert len(g0) == len(g1)
    for a, b in zip(g0, g1, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)


def test_checkpointing_stores_only_the_input() -> None:
    d_model, time = 16, 50
    x = torch.randn(1, time, d_model, requires_grad=True)
    pad_mask = torch.ones(1, time, dtype=torch.bool)
    sizes = {"local_hidden": [16], "local_out": 16, "summary_hidden": [16], "heads": 4}
    plain = SummaryMixing(d_model, **sizes, dropout=0.0).train()
    ckpt = SummaryMixing(d_model, **sizes, dropout=0.0, activation_checkpointing=True).train()
    ckpt.load_state_dict(plain.state_dict())  # the same parameter layout
    frame_bytes = time * d_model * 4  # one [1, T, D] float32 tensor
    # without: x, both MLPs' hidden and output frames, the LayerNorm and combiner inputs, ...
    assert saved_bytes(lambda: plain(x, pad_mask)) >= 9 * frame_bytes
    assert saved_bytes(lambda: ckpt(x, pad_mask)) <= frame_bytes + 64  # x and the mask
    ckpt.eval()  # inference: plain forward, nothing recomputed
    with torch.no_grad():
        torch.testing.assert_close(ckpt(x, pad_mask), plain.eval()(x, pad_mask))
