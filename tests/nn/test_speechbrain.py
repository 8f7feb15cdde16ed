"""Import of SpeechBrain SummaryMixing Conformer / Branchformer weights (smx.nn.speechbrain).

The SpeechBrain-layout state dicts are written out here key by key with random values (the
layout: SpeechBrain ``Linear`` ``.w.weight [out, in]``, ``ParallelLinear``
``.weights [h, in/h, out/h]`` / ``.biases [h, out/h]``, VanillaNN children ``linear``,
``linear_0``, ...). The reference outputs are computed directly from those tensors with
explicit per-head slices, convolutions and attention, one utterance at a time without
padding, in float64; the imported smx modules run on padded batches and must give the
same values on the real frames. The reference follows SpeechBrain's computation (its
relative positions encode ``|i - j|``); tests/nn/test_speechbrain_parity.py compares with
SpeechBrain's own modules, which have no SummaryMixing.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from smx.config import FrontendCfg, ModelCfg
from smx.nn.build import build_encoder, build_subsampling
from smx.nn.speechbrain import (
    convert_speechbrain_cnn,
    convert_speechbrain_encoder,
    speechbrain_encoder_keys,
)

D = 16  # d_model
D_FFN = 32
KERNEL = 5
CSGU = 24
INPUT_DIM = 12
LAYERS = 2
ATOL = 1e-9
Tensor = torch.Tensor


# ------------------------------------------------------------------ configs


def make_cfg(block: str, mixer: dict, **encoder) -> ModelCfg:
    enc = {"block": block, "num_layers": LAYERS, "d_model": D, "d_ffn": D_FFN}
    enc |= {"kernel_size": KERNEL, "csgu_units": CSGU, "layerdrop": 0.0}
    enc["activation"] = "swish" if block == "conformer" else "gelu"
    return ModelCfg.model_validate({"encoder": enc | encoder, "mixer": mixer})


def summary_mixing(mode: str, heads: int, **sizes) -> dict:
    return {"kind": "summarymixing", "mode": mode, "heads": heads} | sizes


CASES = {
    # two local hidden layers (linear, linear_0, linear_1), local_out != d_model
    "conformer-full-h2": make_cfg(
        "conformer",
        summary_mixing("full", 2, local_hidden=[24, 8], local_out=8, summary_hidden=[12]),
    ),
    "conformer-full-h1-noln": make_cfg(
        "conformer",
        summary_mixing(
            "full", 1, local_hidden=[12], local_out=16, summary_hidden=[8], use_layernorm=False
        ),
    ),
    "conformer-fast": make_cfg("conformer", summary_mixing("fast", 1, local_out=8)),
    "conformer-expdecay-h2": make_cfg(
        "conformer",
        summary_mixing("expdecay", 2, local_hidden=[8], local_out=8, summary_hidden=[8], decay=0.8),
    ),
    "conformer-mhsa": make_cfg("conformer", {"kind": "mhsa", "heads": 2}),
    "conformer-relpos": make_cfg(
        "conformer",
        {"kind": "mhsa", "heads": 4, "pos": "relpos", "relpos": "symmetric"},
        pos_enc="none",
    ),
    "branchformer-full-h1": make_cfg(
        "branchformer",
        summary_mixing("full", 1, local_hidden=[8], local_out=D, summary_hidden=[24]),
    ),
    "branchformer-full-h2": make_cfg(
        "branchformer",
        summary_mixing("full", 2, local_hidden=[12], local_out=D, summary_hidden=[8]),
    ),
    "branchformer-lite-h2": make_cfg(
        "branchformer", summary_mixing("lite", 2, local_out=D, summary_hidden=[12])
    ),
    "branchformer-fast": make_cfg(
        "branchformer", summary_mixing("fast", 1, local_out=D, summary_hidden=[20])
    ),
    "branchformer-mhsa": make_cfg("branchformer", {"kind": "mhsa", "heads": 2}),
}
#: cases stored in the ASR TransformerASR layout (prefix "1.") instead of latent_encoder.ckpt
ASR_CASES = ("conformer-relpos", "branchformer-full-h1")


# ------------------------------------------------------------------ SpeechBrain-layout state


def loop_sinusoid(position: float) -> list[float]:
    """Standard sinusoid, sine at even and cosine at odd indices."""
    out = []
    for i in range(D):
        frequency = 10000.0 ** (-(2 * (i // 2)) / D)
        out.append(math.sin(position * frequency) if i % 2 == 0 else math.cos(position * frequency))
    return out


class SBState:
    """Writes a SpeechBrain-layout state dict with random float64 values."""

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.state: dict[str, Tensor] = {}

    def put(self, key: str, *shape: int, scale: float = 0.3) -> None:
        assert key not in self.state, key
        self.state[key] = scale * torch.randn(*shape, generator=self.generator, dtype=torch.float64)

    def layer_norm(self, key: str, size: int) -> None:  # torch LayerNorm: weight, bias
        self.put(f"{key}.weight", size, scale=0.2)
        self.state[f"{key}.weight"] += 1.0
        self.put(f"{key}.bias", size, scale=0.2)

    def linear(self, key: str, d_in: int, d_out: int) -> None:  # torch Linear [out, in]
        self.put(f"{key}.weight", d_out, d_in)
        self.put(f"{key}.bias", d_out)

    def vanilla_nn(self, key: str, sizes: list[int], heads: int) -> None:
        """VanillaNN: children linear, linear_0, linear_1, ... (activations have no keys)."""
        names = ["linear"] + [f"linear_{j}" for j in range(len(sizes) - 2)]
        for name, d_in, d_out in zip(names, sizes[:-1], sizes[1:], strict=True):
            if heads == 1:  # SpeechBrain Linear: a child w = torch Linear
                self.linear(f"{key}.{name}.w", d_in, d_out)
            else:  # ParallelLinear
                self.put(f"{key}.{name}.weights", heads, d_in // heads, d_out // heads)
                self.put(f"{key}.{name}.biases", heads, d_out // heads)

    def summary_mixing(self, key: str, cfg, out_dim: int, dead_norms: bool) -> None:
        heads, local_out = cfg.heads, cfg.local_out
        norms = cfg.use_layernorm if cfg.mode in ("full", "expdecay") else dead_norms
        if cfg.mode in ("full", "expdecay"):
            self.vanilla_nn(f"{key}.local_proj", [D, *cfg.local_hidden, local_out], heads)
        if cfg.mode != "fast":
            self.vanilla_nn(f"{key}.summary_proj", [D, *cfg.summary_hidden, out_dim], heads)
        if norms:
            self.layer_norm(f"{key}.local_norm", local_out)
            self.layer_norm(f"{key}.summary_norm", out_dim)
        if cfg.mode == "fast":
            self.vanilla_nn(f"{key}.global_proj", [D, 2 * local_out], 1)
            self.vanilla_nn(f"{key}.summary_local_merging", [2 * local_out, out_dim], 1)
        elif cfg.mode != "lite":
            self.vanilla_nn(f"{key}.summary_local_merging", [local_out + out_dim, out_dim], 1)
        if cfg.mode == "expdecay":
            self.state[f"{key}.decay_constant"] = torch.tensor(cfg.decay, dtype=torch.float64)

    def mhsa(self, key: str, cfg) -> None:
        if cfg.pos == "abs":  # SpeechBrain MultiheadAttention wrapper, child att
            self.put(f"{key}.att.in_proj_weight", 3 * D, D)
            self.put(f"{key}.att.in_proj_bias", 3 * D)
            self.linear(f"{key}.att.out_proj", D, D)
        else:  # RelPosMHAXL
            self.put(f"{key}.in_proj_weight", 3 * D, D)
            self.linear(f"{key}.out_proj", D, D)
            self.put(f"{key}.linear_pos.weight", D, D)
            self.put(f"{key}.pos_bias_u", D // cfg.heads, cfg.heads)
            self.put(f"{key}.pos_bias_v", D // cfg.heads, cfg.heads)

    def mixer(self, key: str, model: ModelCfg, dead_norms: bool) -> None:
        if model.mixer.kind == "mhsa":
            self.mhsa(key, model.mixer)
        else:
            self.summary_mixing(key, model.mixer, D, dead_norms)

    def conformer_layer(self, key: str, model: ModelCfg, dead_norms: bool) -> None:
        for n in (1, 2):
            self.layer_norm(f"{key}.ffn_module{n}.0", D)
            self.linear(f"{key}.ffn_module{n}.1.ffn.0", D, D_FFN)
            self.linear(f"{key}.ffn_module{n}.1.ffn.3", D_FFN, D)
        self.mixer(f"{key}.mha_layer", model, dead_norms)
        conv = f"{key}.convolution_module"
        self.layer_norm(f"{conv}.layer_norm", D)
        self.put(f"{conv}.bottleneck.0.weight", 2 * D, D, 1)
        self.put(f"{conv}.bottleneck.0.bias", 2 * D)
        self.put(f"{conv}.conv.weight", D, 1, KERNEL)
        self.put(f"{conv}.conv.bias", D)
        self.layer_norm(f"{conv}.after_conv.0", D)
        self.linear(f"{conv}.after_conv.2", D, D)
        self.layer_norm(f"{key}.norm1.norm", D)
        self.layer_norm(f"{key}.norm2.norm", D)

    def branchformer_layer(self, key: str, model: ModelCfg, dead_norms: bool) -> None:
        self.mixer(f"{key}.mha_layer", model, dead_norms)
        if model.mixer.kind == "summarymixing":  # VanillaNN, declared input L + S
            local_out, hidden = model.mixer.local_out, model.mixer.summary_hidden
            self.vanilla_nn(f"{key}.merge_proj", [local_out + D, *hidden, D], 1)
        else:
            self.linear(f"{key}.merge_proj", 2 * D, D)
        self.layer_norm(f"{key}.norm_mhsa.norm", D)
        branch = f"{key}.convolution_branch"
        self.linear(f"{branch}.pre_channel_proj", D, CSGU)
        self.linear(f"{branch}.post_channel_proj", CSGU // 2, D)
        self.layer_norm(f"{branch}.csgu.norm.norm", CSGU // 2)
        self.put(f"{branch}.csgu.conv.conv.weight", CSGU // 2, 1, KERNEL)
        self.put(f"{branch}.csgu.conv.conv.bias", CSGU // 2)
        self.layer_norm(f"{key}.norm_conv.norm", D)

    def encoder(self, model: ModelCfg, layout: str, dead_norms: bool = False) -> None:
        if layout == "wav2vec2":  # EncoderWrapper
            stack = "latent_encoder."
            self.linear("input_projector", INPUT_DIM, D)
            self.put("mask_emb", D)
        else:  # TransformerASR
            stack = "encoder."
            self.linear("custom_src_module.layers.0.w", INPUT_DIM, D)
        for i in range(LAYERS):
            if model.encoder.block == "conformer":
                self.conformer_layer(f"{stack}layers.{i}", model, dead_norms)
            else:
                self.branchformer_layer(f"{stack}layers.{i}", model, dead_norms)
        self.layer_norm(f"{stack}norm.norm", D)
        if model.mixer.kind == "mhsa" and model.mixer.pos == "relpos":
            self.state["positional_encoding.inv_freq"] = torch.ones(D // 2, dtype=torch.float64)
        else:
            pe = torch.tensor([loop_sinusoid(t) for t in range(40)], dtype=torch.float64)
            self.state["positional_encoding.pe"] = pe[None]  # [1, max_len, D]


def sb_encoder_state(name: str, seed: int = 0, dead_norms: bool = False) -> dict[str, Tensor]:
    writer = SBState(seed)
    writer.encoder(CASES[name], "asr" if name in ASR_CASES else "wav2vec2", dead_norms)
    return writer.state


# ------------------------------------------------------------------ references from SB tensors


def act(model: ModelCfg, x: Tensor) -> Tensor:
    return F.silu(x) if model.encoder.activation == "swish" else F.gelu(x)


def layer_norm(state, key: str, x: Tensor, eps: float = 1e-5) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], state[f"{key}.weight"], state[f"{key}.bias"], eps)


def linear(state, key: str, x: Tensor) -> Tensor:
    return x @ state[f"{key}.weight"].T + state[f"{key}.bias"]


def ref_vanilla_nn(state, key: str, x: Tensor, activation) -> Tensor:
    """VanillaNN from its tensors: every layer, the last too, followed by the activation.

    With ParallelLinear layers the heads stay apart through the whole MLP: head ``m`` takes
    the contiguous input slice ``m``, goes through ``x_slice @ W[m] + b[m]`` layer after
    layer, and the heads are concatenated head by head at the end.
    """
    names = ["linear"] + [f"linear_{j}" for j in range(10)]
    names = [n for n in names if f"{key}.{n}.w.weight" in state or f"{key}.{n}.weights" in state]
    if f"{key}.linear.w.weight" in state:
        for name in names:
            x = activation(x @ state[f"{key}.{name}.w.weight"].T + state[f"{key}.{name}.w.bias"])
        return x
    heads = state[f"{key}.linear.weights"].shape[0]
    width = x.shape[-1] // heads
    outputs = []
    for m in range(heads):
        h = x[:, m * width : (m + 1) * width]  # [T, in/h] contiguous slice of head m
        for name in names:
            h = activation(h @ state[f"{key}.{name}.weights"][m] + state[f"{key}.{name}.biases"][m])
        outputs.append(h)
    return torch.cat(outputs, dim=-1)  # head-major


def ref_summary_mixing(state, key: str, x: Tensor, model: ModelCfg) -> Tensor:
    """One utterance ``x [T, D]`` (no padding) through the reference cell."""
    cfg, time = model.mixer, x.shape[0]
    activation = lambda h: act(model, h)  # noqa: E731
    if cfg.mode == "lite":
        summary = ref_vanilla_nn(state, f"{key}.summary_proj", x, activation).mean(0)
        return summary.expand(time, -1)
    if cfg.mode == "fast":
        fused = ref_vanilla_nn(state, f"{key}.global_proj", x, activation)  # [T, 2L]
        local, values = fused[:, : cfg.local_out], fused[:, cfg.local_out :]
        summary = values.mean(0).expand(time, -1)
    else:
        local = ref_vanilla_nn(state, f"{key}.local_proj", x, activation)
        values = ref_vanilla_nn(state, f"{key}.summary_proj", x, activation)
        if cfg.mode == "expdecay":
            decay = float(state[f"{key}.decay_constant"])
            steps = torch.arange(time, dtype=torch.float64)
            window = decay ** (steps[:, None] - steps[None, :]).abs()  # [T, T]
            summary = window @ values / window.sum(1, keepdim=True)
        else:
            summary = values.mean(0).expand(time, -1)
        if f"{key}.local_norm.weight" in state:
            local = layer_norm(state, f"{key}.local_norm", local)
            summary = layer_norm(state, f"{key}.summary_norm", summary)
    merged = torch.cat([local, summary], dim=-1)  # [local ; summary]
    return ref_vanilla_nn(state, f"{key}.summary_local_merging", merged, activation)


def ref_regular_mha(state, key: str, x: Tensor, heads: int) -> Tensor:
    mha = torch.nn.MultiheadAttention(D, heads, batch_first=True, dtype=torch.float64)
    mha.load_state_dict(
        {
            "in_proj_weight": state[f"{key}.att.in_proj_weight"],
            "in_proj_bias": state[f"{key}.att.in_proj_bias"],
            "out_proj.weight": state[f"{key}.att.out_proj.weight"],
            "out_proj.bias": state[f"{key}.att.out_proj.bias"],
        }
    )
    return mha.eval()(x[None], x[None], x[None], need_weights=False)[0][0]


def ref_relpos_mha(state, key: str, x: Tensor, heads: int) -> Tensor:
    """RelPosMHAXL: per-head interleaved q/k/v rows, biases viewed [H, d_h], 1/sqrt(D); the
    position of key j seen from query i is the sinusoid of |i - j| (RelPosEncXL)."""
    time, head_dim = x.shape[0], D // heads
    q, k, v = (x @ state[f"{key}.in_proj_weight"].T).view(time, heads, 3 * head_dim).chunk(3, -1)
    u = state[f"{key}.pos_bias_u"].reshape(-1).view(heads, head_dim)
    bias_v = state[f"{key}.pos_bias_v"].reshape(-1).view(heads, head_dim)
    distance = [[loop_sinusoid(abs(i - j)) for j in range(time)] for i in range(time)]
    p = torch.tensor(distance, dtype=torch.float64) @ state[f"{key}.linear_pos.weight"].T
    p = p.view(time, time, heads, head_dim)  # [i, j, H, d_h]
    content = torch.einsum("ihd,jhd->hij", q + u, k)
    position = torch.einsum("ihd,ijhd->hij", q + bias_v, p)
    weights = ((content + position) / math.sqrt(D)).softmax(-1)  # [H, T, T]
    mixed = torch.einsum("hij,jhd->ihd", weights, v).reshape(time, D)
    return linear(state, f"{key}.out_proj", mixed)


def ref_mixer(state, key: str, x: Tensor, model: ModelCfg) -> Tensor:
    if model.mixer.kind == "summarymixing":
        return ref_summary_mixing(state, key, x, model)
    if model.mixer.pos == "abs":
        return ref_regular_mha(state, key, x, model.mixer.heads)
    return ref_relpos_mha(state, key, x, model.mixer.heads)


def depthwise(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """'same' depthwise Conv1d of ``x [T, C]``."""
    channels, _, kernel = weight.shape
    y = F.conv1d(x.T[None], weight, bias, padding=(kernel - 1) // 2, groups=channels)
    return y[0].T


def ref_conformer_layer(state, key: str, x: Tensor, model: ModelCfg) -> Tensor:
    def ffn(n: int, h: Tensor) -> Tensor:
        h = layer_norm(state, f"{key}.ffn_module{n}.0", h)
        h = act(model, linear(state, f"{key}.ffn_module{n}.1.ffn.0", h))
        return linear(state, f"{key}.ffn_module{n}.1.ffn.3", h)

    def conv(h: Tensor) -> Tensor:
        cm = f"{key}.convolution_module"
        h = layer_norm(state, f"{cm}.layer_norm", h)
        h = F.conv1d(
            h.T[None], state[f"{cm}.bottleneck.0.weight"], state[f"{cm}.bottleneck.0.bias"]
        )
        h = F.glu(h, dim=1)[0].T  # [T, D]: first half * sigmoid(second half)
        h = depthwise(h, state[f"{cm}.conv.weight"], state[f"{cm}.conv.bias"])
        h = act(model, layer_norm(state, f"{cm}.after_conv.0", h))
        return linear(state, f"{cm}.after_conv.2", h)

    x = x + 0.5 * ffn(1, x)
    x = x + ref_mixer(state, f"{key}.mha_layer", layer_norm(state, f"{key}.norm1.norm", x), model)
    x = x + conv(x)
    return layer_norm(state, f"{key}.norm2.norm", x + 0.5 * ffn(2, x))


def ref_branchformer_layer(state, key: str, x: Tensor, model: ModelCfg) -> Tensor:
    x1 = ref_mixer(state, f"{key}.mha_layer", layer_norm(state, f"{key}.norm_mhsa.norm", x), model)
    branch = f"{key}.convolution_branch"
    h = act(
        model,
        linear(state, f"{branch}.pre_channel_proj", layer_norm(state, f"{key}.norm_conv.norm", x)),
    )
    first, second = h.chunk(2, dim=-1)
    second = layer_norm(state, f"{branch}.csgu.norm.norm", second)
    second = depthwise(
        second, state[f"{branch}.csgu.conv.conv.weight"], state[f"{branch}.csgu.conv.conv.bias"]
    )
    x2 = linear(state, f"{branch}.post_channel_proj", first * second)
    merged = torch.cat([x1, x2], dim=-1)  # [mixer branch ; cgMLP branch]
    if model.mixer.kind == "summarymixing":
        return x + ref_vanilla_nn(state, f"{key}.merge_proj", merged, lambda h: act(model, h))
    return x + linear(state, f"{key}.merge_proj", merged)


def ref_encoder(state, feats: Tensor, model: ModelCfg, masked: Tensor | None = None) -> Tensor:
    """One utterance ``feats [T, F]`` through the SpeechBrain wrapper and encoder."""
    if "input_projector.weight" in state:
        stack, x = "latent_encoder.", linear(state, "input_projector", feats)
    else:
        stack, x = "encoder.", linear(state, "custom_src_module.layers.0.w", feats)
    if masked is not None:
        x = torch.where(masked[:, None], state["mask_emb"], x)
    if "positional_encoding.pe" in state:
        x = x + state["positional_encoding.pe"][0, : x.shape[0]]
    layer = ref_conformer_layer if model.encoder.block == "conformer" else ref_branchformer_layer
    for i in range(LAYERS):
        x = layer(state, f"{stack}layers.{i}", x, model)
    return layer_norm(state, f"{stack}norm.norm", x, eps=1e-6)


# ------------------------------------------------------------------ helpers


LENGTHS = [9, 6]


def inputs(width: int, seed: int = 1) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(LENGTHS), max(LENGTHS), width, generator=generator, dtype=torch.float64)
    return x, torch.tensor(LENGTHS)


def imported_encoder(name: str, state: dict[str, Tensor], **kwargs):
    model = CASES[name]
    prefix = kwargs.pop("prefix", "")
    converted = convert_speechbrain_encoder(state, model, prefix=prefix, **kwargs)
    encoder = build_encoder(model, INPUT_DIM, mask_embedding="mask_embedding" in converted)
    encoder = encoder.double().eval()  # float64 before loading: keep every digit
    encoder.load_state_dict(converted, strict=True)
    return encoder


# ------------------------------------------------------------------ numerical equivalence


def test_summary_mixing_cell_with_heads_matches_per_head_reference():
    """One SummaryMixing cell, 2 heads, 3-layer local MLP: explicit per-head slices."""
    name = "conformer-full-h2"
    state, model = sb_encoder_state(name), CASES[name]
    mixer = imported_encoder(name, state).blocks[1].mixer
    x, lengths = inputs(D)
    pad_mask = torch.arange(x.shape[1])[None] < lengths[:, None]
    y = mixer(x, pad_mask)
    for b, length in enumerate(LENGTHS):
        expected = ref_summary_mixing(
            state, "latent_encoder.layers.1.mha_layer", x[b, :length], model
        )
        torch.testing.assert_close(y[b, :length], expected, atol=ATOL, rtol=0)
    # the per-head blocks really are independent slices: head 1's input does not reach head 0
    local = imported_encoder(name, state).blocks[1].mixer.local_mlp
    probe = x[:1, :1].clone()
    changed = probe.clone()
    changed[..., D // 2 :] += 1.0
    first_head = local[-2].out_features // 2  # the last BlockLinear (an activation follows)
    torch.testing.assert_close(local(probe)[..., :first_head], local(changed)[..., :first_head])


def test_conformer_layer_matches_reference():
    name = "conformer-full-h2"
    state, model = sb_encoder_state(name), CASES[name]
    block = imported_encoder(name, state).blocks[0]
    x, lengths = inputs(D)
    pad_mask = torch.arange(x.shape[1])[None] < lengths[:, None]
    y = block(x, pad_mask)
    for b, length in enumerate(LENGTHS):
        expected = ref_conformer_layer(state, "latent_encoder.layers.0", x[b, :length], model)
        torch.testing.assert_close(y[b, :length], expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", list(CASES))
def test_encoder_matches_reference(name):
    state, model = sb_encoder_state(name), CASES[name]
    prefix = ""
    if name in ASR_CASES:  # a model.ckpt: ModuleList [CNN, TransformerASR, ...]
        state = {f"1.{key}": value for key, value in state.items()}
        state["0.convblock_0.convs.conv_0.conv.weight"] = torch.zeros(4, 1, 3, 3)  # not ours
        state["1.decoder.layers.0.w"] = torch.zeros(3)  # skipped with ignore
        prefix = "1."
    encoder = imported_encoder(name, state, prefix=prefix, ignore=("decoder.*",))
    feats, lengths = inputs(INPUT_DIM)
    out = encoder(feats, lengths).last
    sb = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    # smx keeps the expdecay decay as a float32 buffer (0.8 -> 0.80000001): 1e-8 relative
    atol = 1e-6 if model.mixer.kind == "summarymixing" and model.mixer.mode == "expdecay" else ATOL
    for b, length in enumerate(LENGTHS):
        expected = ref_encoder(sb, feats[b, :length], model)
        torch.testing.assert_close(out[b, :length], expected, atol=atol, rtol=0)
        assert not out[b, length:].any()


def test_mask_embedding_is_imported():
    name = "conformer-full-h2"
    state, model = sb_encoder_state(name), CASES[name]
    encoder = imported_encoder(name, state)
    torch.testing.assert_close(encoder.mask_embedding.data, state["mask_emb"], atol=0, rtol=0)
    feats, lengths = inputs(INPUT_DIM)
    masked = torch.zeros(feats.shape[:2], dtype=torch.bool)
    masked[:, 2:5] = True
    out = encoder(feats, lengths, masked=masked).last
    for b, length in enumerate(LENGTHS):
        expected = ref_encoder(state, feats[b, :length], model, masked[b, :length])
        torch.testing.assert_close(out[b, :length], expected, atol=ATOL, rtol=0)


def test_relpos_scale_is_absorbed_into_keys_and_positions():
    """smx divides by sqrt(d_h), SpeechBrain by sqrt(D): keys and W_pos carry 1/sqrt(H)."""
    name = "conformer-relpos"
    state = {f"1.{key}": value for key, value in sb_encoder_state(name).items()}
    converted = convert_speechbrain_encoder(state, CASES[name], prefix="1.")
    heads, head_dim = 4, D // 4
    raw = state["1.encoder.layers.0.mha_layer.in_proj_weight"].view(heads, 3, head_dim, D)
    qkv = converted["blocks.0.mixer.qkv.weight"]
    torch.testing.assert_close(qkv[:D], raw[:, 0].reshape(D, D), atol=0, rtol=0)
    torch.testing.assert_close(qkv[D : 2 * D], raw[:, 1].reshape(D, D) / 2, atol=1e-15, rtol=0)
    torch.testing.assert_close(qkv[2 * D :], raw[:, 2].reshape(D, D), atol=0, rtol=0)
    assert not converted["blocks.0.mixer.qkv.bias"].any()
    u = state["1.encoder.layers.0.mha_layer.pos_bias_u"]  # [d_h, H] memory viewed [H, d_h]
    assert torch.equal(converted["blocks.0.mixer.pos_bias_u"], u.reshape(heads, head_dim))


def test_cnn_matches_reference():
    cfg = FrontendCfg(cnn_channels=[8, 6])
    writer = SBState(seed=3)
    for i, (c_in, c_out) in enumerate([(80, 8), (8, 6)]):
        writer.put(f"extractor.convblock_{i}.convs.conv_0.conv.weight", c_out, c_in, 3)
        writer.layer_norm(f"extractor.convblock_{i}.convs.norm_0.norm", c_out)
    writer.layer_norm("norm", 6)
    sb = writer.state
    cnn = build_subsampling(cfg).double().eval()
    cnn.load_state_dict(convert_speechbrain_cnn(sb, cfg), strict=True)
    generator = torch.Generator().manual_seed(4)
    feats = torch.randn(2, 21, 80, generator=generator, dtype=torch.float64)
    lengths = torch.tensor([21, 15])
    out, out_lengths = cnn(feats, lengths)
    for b, length in enumerate(lengths.tolist()):
        x = F.layer_norm(feats[b, :length], (length, 80))  # parameter-free over [T, 80]
        for i, stride in enumerate((2, 1)):
            block = f"extractor.convblock_{i}.convs"
            x = F.conv1d(x.T[None], sb[f"{block}.conv_0.conv.weight"], stride=stride)[0].T
            x = F.gelu(layer_norm(sb, f"{block}.norm_0.norm", x))
        expected = layer_norm(sb, "norm", x)
        assert out_lengths[b] == expected.shape[0]
        torch.testing.assert_close(out[b, : expected.shape[0]], expected, atol=ATOL, rtol=0)


# ------------------------------------------------------------------ key bookkeeping


@pytest.mark.parametrize("name", list(CASES))
def test_listed_keys_are_the_reference_layout(name):
    """speechbrain_encoder_keys lists exactly the hand-written layout (minus dead buffers)."""
    state = sb_encoder_state(name)
    layout = "asr" if name in ASR_CASES else "wav2vec2"
    listed = speechbrain_encoder_keys(CASES[name], INPUT_DIM, layout)
    dead = {"positional_encoding.pe", "positional_encoding.inv_freq"}
    assert listed == {k: tuple(v.shape) for k, v in state.items() if k not in dead}


@pytest.mark.parametrize("name", ["conformer-fast", "branchformer-lite-h2"])
def test_fast_and_lite_accept_dead_layernorms(name):
    state = sb_encoder_state(name, dead_norms=True)
    assert "latent_encoder.layers.0.mha_layer.local_norm.weight" in state
    convert_speechbrain_encoder(state, CASES[name])


def test_unchanged_tensors_keep_their_values():
    state = sb_encoder_state("conformer-full-h1-noln")
    converted = convert_speechbrain_encoder(state, CASES["conformer-full-h1-noln"])
    weight = state["latent_encoder.layers.0.mha_layer.local_proj.linear.w.weight"]  # [out, in]
    assert torch.equal(converted["blocks.0.mixer.local_mlp.0.weight"], weight.T[None])
    pointwise = state["latent_encoder.layers.1.convolution_module.bottleneck.0.weight"]
    assert torch.equal(converted["blocks.1.conv.pointwise.weight"], pointwise[..., 0])


# ------------------------------------------------------------------ errors


def test_missing_key_names_key_and_shape():
    state = sb_encoder_state("conformer-full-h2")
    key = "latent_encoder.layers.1.mha_layer.local_proj.linear_1.biases"  # [h, out/h]
    del state[key]
    with pytest.raises(
        ValueError,
        match=re.escape(f"missing '{key}' (expected shape [2, 4]"),
    ):
        convert_speechbrain_encoder(state, CASES["conformer-full-h2"])


def test_unexpected_key_is_an_error_unless_ignored():
    state = sb_encoder_state("conformer-mhsa")
    state["latent_encoder.layers.0.mha_layer.att.bias_k"] = torch.zeros(1, 1, D)
    with pytest.raises(
        ValueError, match=r"unexpected key 'latent_encoder\.layers\.0\.mha_layer\.att\.bias_k'"
    ):
        convert_speechbrain_encoder(state, CASES["conformer-mhsa"])
    convert_speechbrain_encoder(state, CASES["conformer-mhsa"], ignore=("*.att.bias_k",))


def test_extra_layer_is_unexpected():
    model = make_cfg("conformer", {"kind": "mhsa", "heads": 2}, num_layers=1)
    with pytest.raises(ValueError, match=r"unexpected key 'latent_encoder\.layers\.1\."):
        convert_speechbrain_encoder(sb_encoder_state("conformer-mhsa"), model)


def test_wrong_shape_names_key_and_expected_shape():
    state = sb_encoder_state("branchformer-full-h1")
    key = "encoder.layers.0.convolution_branch.csgu.conv.conv.weight"
    state[key] = torch.zeros(CSGU // 2, 1, KERNEL + 2)
    with pytest.raises(
        ValueError,
        match=rf"sb_state\['{key}'\] has shape \[12, 1, 7\] but the config needs \[12, 1, 5\]",
    ):
        convert_speechbrain_encoder(state, CASES["branchformer-full-h1"])


def test_wrong_decay_is_an_error():
    state = sb_encoder_state("conformer-expdecay-h2")
    state["latent_encoder.layers.1.mha_layer.decay_constant"] = torch.tensor(0.995)
    with pytest.raises(ValueError, match=r"decay_constant'\] = \[0\.995.*model\.mixer\.decay=0\.8"):
        convert_speechbrain_encoder(state, CASES["conformer-expdecay-h2"])


def test_heads_mismatch_is_explained():
    state = sb_encoder_state("conformer-full-h2")
    model = make_cfg(
        "conformer",
        summary_mixing("full", 1, local_hidden=[24, 8], local_out=8, summary_hidden=[12]),
    )
    with pytest.raises(
        ValueError, match=r"linear\.w\.weight'.*ParallelLinear weights: the checkpoint has 2 heads"
    ):
        convert_speechbrain_encoder(state, model)


def test_layernorms_that_the_config_does_not_use_are_errors():
    """In full mode SpeechBrain applies the norms: dropping them would be wrong."""
    state = sb_encoder_state("conformer-full-h2")
    mixer = CASES["conformer-full-h2"].mixer.model_dump() | {"use_layernorm": False}
    model = make_cfg("conformer", mixer)
    with pytest.raises(ValueError, match=r"unexpected key '.*mha_layer\.local_norm\.weight'"):
        convert_speechbrain_encoder(state, model)
    # a checkpoint known to hold unused norms (streaming main branch): skip them on purpose
    convert_speechbrain_encoder(state, model, ignore=("*.local_norm.*", "*.summary_norm.*"))


def test_relpos_weights_into_abs_config_are_explained():
    state = sb_encoder_state("conformer-relpos")
    model = make_cfg("conformer", {"kind": "mhsa", "heads": 4})
    with pytest.raises(ValueError, match=r"RelPosMHAXL weights: set mixer\.pos 'relpos'"):
        convert_speechbrain_encoder(state, model)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (make_cfg("transformer", {"kind": "mhsa", "heads": 2}), r"encoder\.block 'transformer'"),
        (make_cfg("conformer", {"kind": "fastformer", "heads": 2}), r"mixer\.kind 'fastformer'"),
        (
            make_cfg(
                "branchformer",
                summary_mixing("full", 1, local_hidden=[8], local_out=16, summary_hidden=[8, 8]),
            ),
            r"summary_hidden must hold exactly one size",
        ),
    ],
)
def test_unsupported_configs(model, match):
    with pytest.raises(ValueError, match=match):
        convert_speechbrain_encoder(sb_encoder_state("conformer-mhsa"), model)


def test_unknown_wrapper_and_missing_projection():
    state = sb_encoder_state("conformer-mhsa")
    with pytest.raises(ValueError, match=r"no key starting with 'x\.latent_encoder\.'"):
        convert_speechbrain_encoder(state, CASES["conformer-mhsa"], prefix="x.")
    del state["input_projector.weight"]
    with pytest.raises(
        ValueError, match=r"missing 'input_projector\.weight' \(expected shape \[16, input_dim\]\)"
    ):
        convert_speechbrain_encoder(state, CASES["conformer-mhsa"])


def test_cnn_errors():
    cfg = FrontendCfg(cnn_channels=[8, 8])
    with pytest.raises(
        ValueError,
        match=re.escape(
            "missing 'convblock_0.convs.conv_0.conv.weight' (expected shape [64, 1, 3, 3]"
        ),
    ):
        convert_speechbrain_cnn({}, FrontendCfg(kind="conv2d"))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "missing 'extractor.convblock_0.convs.conv_0.conv.weight' (expected shape [8, 80, 3]"
        ),
    ):
        convert_speechbrain_cnn({}, cfg)
