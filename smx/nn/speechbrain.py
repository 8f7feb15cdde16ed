"""Import weights trained with SpeechBrain's recipes (SummaryMixing and MHSA) into smx modules.

Two converters turn a SpeechBrain ``state_dict`` (a plain mapping of names to tensors, as
stored in the recipes' ``*.ckpt`` files) into a state dict that loads with ``strict=True``:

* :func:`convert_speechbrain_encoder`: a Conformer or Branchformer encoder with a
  SummaryMixing (modes ``full``, ``fast``, ``lite``, ``expdecay``) or MHSA mixer, into
  ``build_encoder(model, input_dim)`` (``mask_embedding=True`` when the checkpoint holds a
  mask embedding, as the wav2vec 2.0 ``latent_encoder.ckpt`` does);
* :func:`convert_speechbrain_cnn`: the wav2vec 2.0 latent extractor (``CNN.ckpt``), into
  ``build_subsampling(frontend)`` (``kind: mel_cnn``), or the Conv2d front-end of an ASR or
  BEST-RQ ``model.ckpt`` (``kind: conv2d``).

The weights alone do not make a model compute as in SpeechBrain: the modules around them
must too. :func:`smx.config.speechbrain_parity` sets the options that do (SpeechBrain's
log-mel features, reflection padding in the Conv2d front-end and the Branchformer's CSGU,
symmetric relative positions); :mod:`smx.importers.speechbrain` applies them when it
imports a checkpoint folder. tests/nn/test_speechbrain_parity.py compares the imported
modules with SpeechBrain's own.

:func:`speechbrain_encoder_keys` lists the SpeechBrain keys and shapes a config needs.

Every tensor is placed by an explicit rule, and the conversion fails with a one-sentence
ValueError naming the SpeechBrain key when a key is missing, has the wrong shape, or is left
unused (never a silent partial load). The sizes come from the smx config; the state dict
must agree with it: the number of heads and the hidden widths of the SummaryMixing MLPs
(some versions of SpeechBrain's SummaryMixing recipes did not forward the recipe's widths to
the encoder, so read them from the tensors, not from the recipe).

Encoder wrappers (detected from the keys under ``prefix``)
---------------------------------------------------------
- wav2vec 2.0 ``EncoderWrapper`` (``latent_encoder.ckpt``): the stack under
  ``latent_encoder.``, ``input_projector.{weight,bias}`` -> ``input_proj``, ``mask_emb`` ->
  ``mask_embedding``;
- ``TransformerASR``: the stack under ``encoder.``, ``custom_src_module.layers.0.w.*`` ->
  ``input_proj``, no mask embedding.

For an ASR ``model.ckpt`` (a ModuleList ``[CNN, TransformerASR, ...]``) pass
``prefix="1."`` and ``ignore=("decoder.*", "custom_tgt_module.*")`` when it has a decoder;
for a BEST-RQ ``model.ckpt`` (``[CNN, EncoderWrapper(TransformerASR)]``)
``prefix="1.transformer."``. Keys outside ``prefix`` are not looked at.

Positions: SpeechBrain adds absolute sinusoids to the encoder input exactly when the state
holds their table ``positional_encoding.pe`` (the wav2vec 2.0 wrapper always; a
``TransformerASR`` with ``fixed_abs_sine`` and no relpos attention), so ``encoder.pos_enc``
must be ``abs`` when it is there and ``none`` otherwise (ValueError naming the key).

Key and layout mapping (SpeechBrain -> smx, per layer ``layers.<i>.`` -> ``blocks.<i>.``)
-----------------------------------------------------------------------------------------
Conformer: ``ffn_moduleN.0`` -> ``ffnN.norm``, ``ffn_moduleN.1.ffn.{0,3}`` ->
``ffnN.net.{0,3}``, ``norm1.norm`` -> ``mixer_norm``, ``norm2.norm`` -> ``out_norm``,
``convolution_module.``: ``layer_norm`` -> ``conv.norm``, ``bottleneck.0`` (Conv1d kernel 1,
weight ``[2D, D, 1]``) -> ``conv.pointwise`` (Linear ``[2D, D]``), ``conv`` ->
``conv.depthwise.conv``, ``after_conv.0`` -> ``conv.conv_norm``, ``after_conv.2`` ->
``conv.out``. Encoder ``norm.norm`` -> ``norm``.

Branchformer: ``norm_mhsa.norm`` -> ``mixer_norm``, ``norm_conv.norm`` -> ``mlp_norm``,
``convolution_branch.``: ``pre_channel_proj`` -> ``mlp_in``, ``csgu.norm.norm`` ->
``csgu.norm``, ``csgu.conv.conv`` -> ``csgu.conv.conv``, ``post_channel_proj`` ->
``mlp_out``; ``merge_proj`` -> ``merge`` (MHSA: one Linear; SummaryMixing: the MLP
``merge_proj.linear.w``, ``merge_proj.linear_0.w`` -> ``merge.0``, ``merge.2``).

SummaryMixing (``mha_layer.`` -> ``mixer.``): the MLPs ``local_proj`` / ``summary_proj`` ->
``local_mlp`` / ``summary_mlp``, layer ``linear``, ``linear_0``, ``linear_1``, ... ->
``0``, ``2``, ``4``, ... (the activations sit in between). One head: SpeechBrain
``Linear`` ``.w.weight [out, in]`` -> BlockLinear weight ``[1, in, out]`` (transposed).
``h > 1`` heads: ``ParallelLinear`` ``.weights [h, in/h, out/h]`` -> the same tensor (both
apply ``x_head @ weight[head]`` on contiguous input slices and concatenate the outputs head
by head), ``.biases [h, out/h]`` -> bias ``[out]`` (flattened head by head).
``summary_local_merging.linear.w`` -> ``combiner``; ``local_norm`` / ``summary_norm`` ->
the same names. Fast: ``global_proj.linear.w [2L, D]`` -> ``projection.0`` (first half =
local, second half = summary in both). Expdecay: ``decay_constant`` is not a parameter in
smx; it must equal ``model.mixer.decay`` (ValueError otherwise).

MHSA (``mixer.kind: mhsa``): ``pos: abs`` takes the regular ``torch.nn.MultiheadAttention``
(``mha_layer.att.in_proj_weight [3D, D]`` with rows ``[q; k; v]``, ``in_proj_bias``,
``out_proj``) -> ``qkv``, ``out`` unchanged. ``pos: relpos`` takes ``RelPosMHAXL``:

- its ``in_proj_weight`` rows are interleaved per head ``[q_0, k_0, v_0, q_1, ...]`` and
  are reordered to smx's ``[q; k; v]``; it has no input bias, so ``qkv.bias`` is zero;
- ``pos_bias_u`` / ``pos_bias_v`` are stored ``[d_h, H]`` but used as the same memory
  viewed ``[H, d_h]``: they are reshaped, not transposed;
- SpeechBrain scales scores by ``1/sqrt(D)``, smx by ``1/sqrt(d_h)``. Both terms of the
  score, ``(q + u)·k`` and ``(q + v)·W_pos e``, are linear in the keys and in ``W_pos``, so
  multiplying the key rows of ``qkv`` and ``pos_proj.weight`` (``linear_pos``) by
  ``sqrt(d_h / D) = 1/sqrt(H)`` gives exactly SpeechBrain's scores (up to rounding);
- SpeechBrain's relative encoding ``e`` (``RelPosEncXL``) encodes the absolute distance
  ``|i - j|`` (standard frequencies, sine and cosine interleaved, the same for past and
  future), which smx computes with ``mixer.relpos: symmetric``; with ``signed`` an
  imported model gives other outputs.

Known dead keys (accepted and dropped)
--------------------------------------
- ``positional_encoding.pe`` (absolute sinusoid buffer; smx computes it on the fly, see
  Positions above), ``positional_encoding.inv_freq`` (RelPosEncXL buffer) and
  ``positional_encoding_decoder.pe`` (the decoder's sinusoids a relpos ``TransformerASR``
  keeps even without a decoder);
- ``mha_layer.local_norm.{weight,bias}`` and ``mha_layer.summary_norm.{weight,bias}`` in
  modes ``fast`` and ``lite``: one version of SpeechBrain's SummaryMixing creates them in
  every mode while the fast and lite cells never apply a LayerNorm.

Everything else must be used. Parameter-free modules (activations, dropouts, GLU) have no
keys. The first layer's keys tell its block (``ffn_module1.``: Conformer,
``convolution_branch.``: Branchformer, ``self_att.``: Transformer); one other than
``encoder.block`` is a ValueError naming the key. Cannot be imported (ValueError):
SpeechBrain's Transformer blocks, other mixers, a Branchformer
SummaryMixing merge MLP with more than one hidden layer (smx's has one), the CSGU
``linear`` after the convolution (``use_linear_after_conv``). Not visible in a state
dict, hence not checked: the number of MHSA heads, the activation (Swish in the
Conformer, GELU in the Branchformer recipes), causal convolutions (smx is non-causal), and
whether ``local_norm`` / ``summary_norm`` of a ``full`` cell were applied: they are
imported when ``use_layernorm`` is true and rejected otherwise, as the wav2vec 2.0 SSL code
of arXiv 2407.13377 and its first version apply them (the streaming version of the
SummaryMixing code applies none; if such a checkpoint holds unused norms, skip them with
``ignore=("*.local_norm.*", "*.summary_norm.*")``). A Branchformer SummaryMixing needs
``local_out == d_model``: SpeechBrain's merge MLP declares ``local_out + D`` inputs for a
``2D``-wide concatenation.

Remaining behaviour differences (not weights), with the parity options set: padded
frames never reach real ones in smx (SpeechBrain's convolutions see the padding, and its
reflection padding mirrors the padded row's end, not the utterance's), and ``expdecay``
divides by the weighted count of real frames only (SpeechBrain's implementation counts
padded frames in its denominator), so only padded batches differ: each utterance of a
padded batch gives in smx what SpeechBrain gives for it alone (docs/algorithm.md,
"Differences from the SpeechBrain implementation").

Mask polarity caveat
--------------------
The weights are imported exactly, but a checkpoint only behaves as in training if it was
trained with a consistent padding mask (docs/algorithm.md, "Padding and masks"). In the
wav2vec 2.0 SSL code of arXiv 2407.13377 the encoder wrapper passes ``True = padding`` to a
SummaryMixing cell (and convolution module) that multiplies by it as if ``1 = keep``: real
frames are zeroed, padded frames averaged, and utterances without padding get a 0/0
summary. smx always uses ``pad_mask`` True = real frame, so a checkpoint trained with that
inverted mask sees, in smx, inputs unlike those of its training; the first version of that
code (June 2024) was self-consistent. Nothing in the state dict tells the two apart:
validate an imported model (e.g. a downstream probe) before trusting it. SpeechBrain's
padded output frames (LayerNorm biases) are zero in smx; real frames are what SpeechBrain
gives for each utterance alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

import torch
from torch import nn

from smx.config import FrontendCfg, MHSACfg, ModelCfg, SummaryMixingCfg
from smx.nn.build import build_encoder, build_subsampling

Shape = tuple[int, ...]
Layout = Literal["wav2vec2", "asr"]


# --------------------------------------------------------------------------- tensor layouts


@dataclass(frozen=True)
class _Transform:
    """How a SpeechBrain tensor becomes an smx tensor of shape ``t`` (smx's own shape)."""

    sb_shape: Callable[[Shape], Shape]  # the SpeechBrain shape that gives smx shape t
    convert: Callable[[torch.Tensor, Shape], torch.Tensor]


_COPY = _Transform(lambda t: t, lambda x, t: x)
#: SpeechBrain Linear ``[out, in]`` -> one-head BlockLinear ``[1, in, out]``.
_LINEAR_TO_BLOCK = _Transform(lambda t: (t[2], t[1]), lambda x, t: x.t().reshape(t))
#: Conv1d with kernel 1 ``[out, in, 1]`` -> Linear ``[out, in]``.
_POINTWISE = _Transform(lambda t: (*t, 1), lambda x, t: x.reshape(t))
#: RelPosMHAXL position bias stored ``[d_h, H]``, used as the same memory viewed ``[H, d_h]``.
_POS_BIAS = _Transform(lambda t: (t[1], t[0]), lambda x, t: x.reshape(t))
#: SpeechBrain Conv2d ``[C_out, C_in, k_freq, k_time]`` -> ``[C_out, C_in, k_time, k_freq]``.
_CONV2D = _Transform(lambda t: (t[0], t[1], t[3], t[2]), lambda x, t: x.transpose(-1, -2))


def _head_bias(heads: int) -> _Transform:
    """ParallelLinear biases ``[h, out/h]`` -> BlockLinear bias ``[out]`` (head by head)."""
    return _Transform(lambda t: (heads, t[0] // heads), lambda x, t: x.reshape(t))


def _scaled(scale: float) -> _Transform:
    return _Transform(lambda t: t, lambda x, t: x * scale)


def _relpos_qkv(heads: int) -> _Transform:
    """RelPosMHAXL rows ``[q_0, k_0, v_0, q_1, ...]`` -> ``[q; k; v]``, keys times 1/sqrt(H)."""

    def convert(x: torch.Tensor, t: Shape) -> torch.Tensor:
        d_model = x.shape[1]
        q, k, v = x.reshape(heads, 3, d_model // heads, d_model).unbind(1)  # [H, d_h, D] each
        k = k / math.sqrt(heads)  # 1/sqrt(D) = 1/sqrt(H) * 1/sqrt(d_h)
        return torch.cat([q, k, v]).reshape(t)  # [3D, D]

    return _Transform(lambda t: t, convert)


def _zero_bias(d_model: int) -> _Transform:
    """A zero bias ``[3D]`` for a projection without bias (read from its weight ``[3D, D]``)."""
    return _Transform(lambda t: (t[0], d_model), lambda x, t: x.new_zeros(t))


@dataclass(frozen=True)
class _Rule:
    """smx tensor <- SpeechBrain key (relative to the prefix) through a transform."""

    source: str
    transform: _Transform = _COPY


Rules = dict[str, _Rule]


def _copy(rules: Rules, smx: str, sb: str, names: Sequence[str] = ("weight", "bias")) -> None:
    for name in names:
        rules[f"{smx}.{name}"] = _Rule(f"{sb}.{name}")


def _sb_linear_name(index: int) -> str:
    """Child names of a SpeechBrain Sequential: ``linear``, ``linear_0``, ``linear_1``, ..."""
    return "linear" if index == 0 else f"linear_{index - 1}"


def _mlp(rules: Rules, smx: str, sb: str, layers: int, heads: int) -> None:
    """An smx MLP (``smx.0``, ``smx.2``, ...) from a VanillaNN (``sb.linear``, ``sb.linear_0``)."""
    for index in range(layers):
        source, target = f"{sb}.{_sb_linear_name(index)}", f"{smx}.{2 * index}"
        if heads == 1:
            rules[f"{target}.weight"] = _Rule(f"{source}.w.weight", _LINEAR_TO_BLOCK)
            rules[f"{target}.bias"] = _Rule(f"{source}.w.bias")
        else:
            rules[f"{target}.weight"] = _Rule(f"{source}.weights")
            rules[f"{target}.bias"] = _Rule(f"{source}.biases", _head_bias(heads))


# --------------------------------------------------------------------------- per module rules


@dataclass
class _Plan:
    """Everything a conversion needs: rules, accepted dead keys, value checks."""

    rules: Rules
    dead: set[str]
    decay_keys: list[str]


def _summary_mixing(plan: _Plan, cfg: SummaryMixingCfg, smx: str, sb: str) -> None:
    rules = plan.rules
    norms = [f"{sb}.{n}.{p}" for n in ("local_norm", "summary_norm") for p in ("weight", "bias")]
    if cfg.mode in ("full", "expdecay"):
        _mlp(rules, f"{smx}.local_mlp", f"{sb}.local_proj", len(cfg.local_hidden) + 1, cfg.heads)
        _mlp(
            rules,
            f"{smx}.summary_mlp",
            f"{sb}.summary_proj",
            len(cfg.summary_hidden) + 1,
            cfg.heads,
        )
        if cfg.use_layernorm:
            _copy(rules, f"{smx}.local_norm", f"{sb}.local_norm")
            _copy(rules, f"{smx}.summary_norm", f"{sb}.summary_norm")
        _copy(rules, f"{smx}.combiner", f"{sb}.summary_local_merging.linear.w")
        if cfg.mode == "expdecay":
            plan.decay_keys.append(f"{sb}.decay_constant")
    elif cfg.mode == "lite":
        _mlp(
            rules,
            f"{smx}.summary_mlp",
            f"{sb}.summary_proj",
            len(cfg.summary_hidden) + 1,
            cfg.heads,
        )
        plan.dead.update(norms)
    else:  # fast: one fused one-head projection
        _mlp(rules, f"{smx}.projection", f"{sb}.global_proj", 1, 1)
        _copy(rules, f"{smx}.combiner", f"{sb}.summary_local_merging.linear.w")
        plan.dead.update(norms)


def _mhsa(plan: _Plan, cfg: MHSACfg, d_model: int, smx: str, sb: str) -> None:
    rules = plan.rules
    if cfg.pos == "abs":
        rules[f"{smx}.qkv.weight"] = _Rule(f"{sb}.att.in_proj_weight")
        rules[f"{smx}.qkv.bias"] = _Rule(f"{sb}.att.in_proj_bias")
        _copy(rules, f"{smx}.out", f"{sb}.att.out_proj")
        return
    heads = cfg.heads
    rules[f"{smx}.qkv.weight"] = _Rule(f"{sb}.in_proj_weight", _relpos_qkv(heads))
    rules[f"{smx}.qkv.bias"] = _Rule(f"{sb}.in_proj_weight", _zero_bias(d_model))
    _copy(rules, f"{smx}.out", f"{sb}.out_proj")
    rules[f"{smx}.pos_proj.weight"] = _Rule(f"{sb}.linear_pos.weight", _scaled(heads**-0.5))
    rules[f"{smx}.pos_bias_u"] = _Rule(f"{sb}.pos_bias_u", _POS_BIAS)
    rules[f"{smx}.pos_bias_v"] = _Rule(f"{sb}.pos_bias_v", _POS_BIAS)


def _mixer(plan: _Plan, model: ModelCfg, smx: str, sb: str) -> None:
    if isinstance(model.mixer, SummaryMixingCfg):
        _summary_mixing(plan, model.mixer, smx, sb)
    elif isinstance(model.mixer, MHSACfg):
        _mhsa(plan, model.mixer, model.encoder.d_model, smx, sb)


def _conformer(plan: _Plan, model: ModelCfg, smx: str, sb: str) -> None:
    rules = plan.rules
    for n in (1, 2):
        _copy(rules, f"{smx}.ffn{n}.norm", f"{sb}.ffn_module{n}.0")
        _copy(rules, f"{smx}.ffn{n}.net.0", f"{sb}.ffn_module{n}.1.ffn.0")
        _copy(rules, f"{smx}.ffn{n}.net.3", f"{sb}.ffn_module{n}.1.ffn.3")
    _copy(rules, f"{smx}.mixer_norm", f"{sb}.norm1.norm")
    _mixer(plan, model, f"{smx}.mixer", f"{sb}.mha_layer")
    conv, sb_conv = f"{smx}.conv", f"{sb}.convolution_module"
    _copy(rules, f"{conv}.norm", f"{sb_conv}.layer_norm")
    rules[f"{conv}.pointwise.weight"] = _Rule(f"{sb_conv}.bottleneck.0.weight", _POINTWISE)
    rules[f"{conv}.pointwise.bias"] = _Rule(f"{sb_conv}.bottleneck.0.bias")
    _copy(rules, f"{conv}.depthwise.conv", f"{sb_conv}.conv")
    _copy(rules, f"{conv}.conv_norm", f"{sb_conv}.after_conv.0")
    _copy(rules, f"{conv}.out", f"{sb_conv}.after_conv.2")
    _copy(rules, f"{smx}.out_norm", f"{sb}.norm2.norm")


def _branchformer(plan: _Plan, model: ModelCfg, smx: str, sb: str) -> None:
    rules = plan.rules
    _copy(rules, f"{smx}.mixer_norm", f"{sb}.norm_mhsa.norm")
    _mixer(plan, model, f"{smx}.mixer", f"{sb}.mha_layer")
    _copy(rules, f"{smx}.mlp_norm", f"{sb}.norm_conv.norm")
    branch = f"{sb}.convolution_branch"
    _copy(rules, f"{smx}.mlp_in", f"{branch}.pre_channel_proj")
    _copy(rules, f"{smx}.csgu.norm", f"{branch}.csgu.norm.norm")
    _copy(rules, f"{smx}.csgu.conv.conv", f"{branch}.csgu.conv.conv")
    _copy(rules, f"{smx}.mlp_out", f"{branch}.post_channel_proj")
    if model.mixer.kind == "summarymixing":  # the merge MLP: Linear, act, Linear, act
        _copy(rules, f"{smx}.merge.0", f"{sb}.merge_proj.linear.w")
        _copy(rules, f"{smx}.merge.2", f"{sb}.merge_proj.linear_0.w")
    else:
        _copy(rules, f"{smx}.merge", f"{sb}.merge_proj")


@dataclass(frozen=True)
class _Wrapper:
    """Names of one SpeechBrain encoder wrapper."""

    stack: str
    projection: str
    mask: str | None


_WRAPPERS: dict[str, _Wrapper] = {
    "wav2vec2": _Wrapper("latent_encoder.", "input_projector.", "mask_emb"),
    "asr": _Wrapper("encoder.", "custom_src_module.layers.0.w.", None),
}
_ABS_POSITIONS = "positional_encoding.pe"
_POSITION_BUFFERS = (
    _ABS_POSITIONS,
    "positional_encoding.inv_freq",
    "positional_encoding_decoder.pe",
)


def _check_supported(model: ModelCfg) -> None:
    block, mixer = model.encoder.block, model.mixer
    if block not in ("conformer", "branchformer"):
        raise ValueError(
            f"model.encoder.block {block!r} has no SpeechBrain import; use 'conformer' or "
            "'branchformer'"
        )
    if mixer.kind not in ("summarymixing", "mhsa"):
        raise ValueError(
            f"model.mixer.kind {mixer.kind!r} has no SpeechBrain import; use 'summarymixing' "
            "or 'mhsa'"
        )
    if (
        block == "branchformer"
        and isinstance(mixer, SummaryMixingCfg)
        and len(mixer.summary_hidden) != 1
    ):
        raise ValueError(
            "model.mixer.summary_hidden must hold exactly one size for a Branchformer "
            "import: SpeechBrain's merge MLP has one layer per entry, smx's one hidden "
            f"layer, got {mixer.summary_hidden}"
        )


def _encoder_plan(model: ModelCfg, wrapper: _Wrapper, mask_embedding: bool) -> _Plan:
    plan = _Plan(rules={}, dead=set(_POSITION_BUFFERS), decay_keys=[])
    _copy(plan.rules, "input_proj", wrapper.projection.rstrip("."))
    if mask_embedding and wrapper.mask is not None:
        plan.rules["mask_embedding"] = _Rule(wrapper.mask)
    layer = _conformer if model.encoder.block == "conformer" else _branchformer
    for i in range(model.encoder.num_layers):
        layer(plan, model, f"blocks.{i}", f"{wrapper.stack}layers.{i}")
    _copy(plan.rules, "norm", f"{wrapper.stack}norm.norm")
    return plan


def _target_shapes(build: Callable[[], nn.Module], device: str = "meta") -> dict[str, Shape]:
    """Keys and shapes of the state dict of the module ``build()``.

    An encoder is built on the meta device (no memory); a front-end, small, on the CPU: on
    the meta device its Kaiming initialisation would load torch's reference kernels, which
    takes seconds.
    """
    with torch.device(device):
        module = build()
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


# --------------------------------------------------------------------------- the conversion


def _shape(shape: Sequence[int]) -> str:
    return str(list(shape))


def _hint(sb_state: Mapping[str, torch.Tensor], key: str) -> str:
    """Why a key may be missing, when the state dict holds a telling sibling."""
    for ours, theirs, advice in (
        (".w.weight", ".weights", "ParallelLinear weights: the checkpoint has {h} heads"),
        (".weights", ".w.weight", "a one-head Linear: the checkpoint has 1 head"),
        (".att.in_proj_weight", ".in_proj_weight", "RelPosMHAXL weights: set mixer.pos 'relpos'"),
        (".in_proj_weight", ".att.in_proj_weight", "regular MHA weights: set mixer.pos 'abs'"),
    ):
        if key.endswith(ours) and (other := key[: -len(ours)] + theirs) in sb_state:
            heads = sb_state[other].shape[0] if theirs == ".weights" else 1
            return f"; it holds {other!r} instead ({advice.format(h=heads)}; check model.mixer)"
    return ""


def _apply(
    sb_state: Mapping[str, torch.Tensor],
    prefix: str,
    plan: _Plan,
    targets: dict[str, Shape],
    ignore: Sequence[str],
    source: str,
) -> dict[str, torch.Tensor]:
    """Run the rules of ``plan``; check that every key of ``sb_state`` under ``prefix`` is used."""
    if set(plan.rules) != set(targets):  # a bug of this module, not of the input
        missing = sorted(set(targets) - set(plan.rules))
        extra = sorted(set(plan.rules) - set(targets))
        raise RuntimeError(f"smx.nn.speechbrain has no rule for {missing}; stale rules {extra}")
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for smx_key, shape in targets.items():
        rule = plan.rules[smx_key]
        key = prefix + rule.source
        expected = rule.transform.sb_shape(shape)
        if key not in sb_state:
            raise ValueError(
                f"{source} is missing {key!r} (expected shape {_shape(expected)}, for smx "
                f"{smx_key!r}){_hint(sb_state, key)}"
            )
        tensor = sb_state[key]
        if tuple(tensor.shape) != expected:
            raise ValueError(
                f"{source}[{key!r}] has shape {_shape(tensor.shape)} but the config needs "
                f"{_shape(expected)} (for smx {smx_key!r}); check model sizes and heads"
            )
        out[smx_key] = rule.transform.convert(tensor.detach(), shape).contiguous()
        used.add(key)
    for key in sb_state:
        if not key.startswith(prefix) or key in used:
            continue
        relative = key[len(prefix) :]
        if relative in plan.dead or any(fnmatchcase(relative, pattern) for pattern in ignore):
            continue
        raise ValueError(
            f"{source} has an unexpected key {key!r} (shape {_shape(sb_state[key].shape)}) that "
            "no smx tensor of this config uses; check model (block, mixer, sizes, num_layers) "
            "or pass it in ignore"
        )
    return out


def _detect_wrapper(sb_state: Mapping[str, torch.Tensor], prefix: str, source: str) -> _Wrapper:
    for wrapper in _WRAPPERS.values():
        if any(key.startswith(prefix + wrapper.stack) for key in sb_state):
            return wrapper
    stacks = " or ".join(repr(prefix + w.stack) for w in _WRAPPERS.values())
    raise ValueError(
        f"{source} has no key starting with {stacks}: pass the prefix of a wav2vec 2.0 "
        "EncoderWrapper or of a TransformerASR (e.g. '1.' in an ASR model.ckpt)"
    )


def _check_decay(
    sb_state: Mapping[str, torch.Tensor], prefix: str, plan: _Plan, model: ModelCfg, source: str
) -> None:
    """SpeechBrain's frozen ``decay_constant`` of every expdecay layer must equal the config's.

    Checked, the keys are then dropped: smx rebuilds the decay from the config.
    """
    if not isinstance(model.mixer, SummaryMixingCfg):
        return
    decay = model.mixer.decay
    for key in [prefix + name for name in plan.decay_keys]:
        if key not in sb_state:
            raise ValueError(f"{source} is missing {key!r} (expected shape [], the expdecay decay)")
        value = sb_state[key]
        if value.numel() != 1 or abs(float(value) - decay) > 1e-6:
            raise ValueError(
                f"{source}[{key!r}] = {value.flatten().tolist()} differs from "
                f"model.mixer.decay={decay}; set the config's decay to the checkpoint's value"
            )
    plan.dead.update(plan.decay_keys)


#: a key part that only one kind of SpeechBrain encoder layer has -> that layer
_LAYER_MARKS = {
    "ffn_module1.": "conformer",
    "convolution_branch.": "branchformer",
    "self_att.": "transformer",
}


def _check_block(
    sb_state: Mapping[str, torch.Tensor], layers: str, model: ModelCfg, source: str
) -> None:
    """The first layer under ``layers`` must be of the configured block type."""
    for key in sb_state:
        if not key.startswith(layers):
            continue
        for mark, block in _LAYER_MARKS.items():
            if mark in key and block != model.encoder.block:
                if block == "transformer":
                    raise ValueError(
                        f"{source} holds SpeechBrain Transformer layers ({key!r}), which have "
                        "no SpeechBrain import (Conformer and Branchformer have)"
                    )
                raise ValueError(
                    f"{source} holds {block} layers ({key!r}): set model.encoder.block to "
                    f"'{block}' (the config has '{model.encoder.block}')"
                )


def _check_positions(
    sb_state: Mapping[str, torch.Tensor], prefix: str, model: ModelCfg, source: str
) -> None:
    """``encoder.pos_enc`` must be ``abs`` exactly when SpeechBrain added absolute positions."""
    key = prefix + _ABS_POSITIONS
    added = key in sb_state
    if added != (model.encoder.pos_enc == "abs"):
        holds = "holds" if added else "has no"
        want = "abs" if added else "none"
        raise ValueError(
            f"{source} {holds} {key!r} (SpeechBrain's absolute positions) but "
            f"model.encoder.pos_enc is {model.encoder.pos_enc!r}; set it to {want!r}"
        )


def speechbrain_encoder_keys(
    model: ModelCfg, input_dim: int, layout: Layout = "wav2vec2"
) -> dict[str, Shape]:
    """The SpeechBrain keys and shapes that :func:`convert_speechbrain_encoder` needs.

    Dead keys (see the module docstring) are not listed; ``decay_constant`` (shape ``()``)
    is listed for ``expdecay``; with ``layout="wav2vec2"`` the mask embedding ``mask_emb``
    is listed (the EncoderWrapper always has one).

    Arguments
    ---------
    model : ModelCfg
        The smx model config (encoder and mixer).
    input_dim : int
        Features per input frame of the input projection.
    layout : str
        ``"wav2vec2"`` (``latent_encoder.ckpt``) or ``"asr"`` (a ``TransformerASR``).

    Returns
    -------
    dict[str, tuple[int, ...]]
        SpeechBrain key (without prefix) -> shape.

    Example
    -------
    >>> mixer = {"kind": "summarymixing", "local_hidden": [16], "local_out": 16,
    ...          "summary_hidden": [16], "heads": 2}
    >>> cfg = ModelCfg.model_validate(
    ...     {"encoder": {"num_layers": 1, "d_model": 16, "d_ffn": 32}, "mixer": mixer})
    >>> keys = speechbrain_encoder_keys(cfg, input_dim=12)
    >>> keys["latent_encoder.layers.0.mha_layer.local_proj.linear.weights"]
    (2, 8, 8)
    >>> keys["latent_encoder.layers.0.mha_layer.local_proj.linear.biases"]
    (2, 8)
    """
    if layout not in _WRAPPERS:
        raise ValueError(f"layout must be one of {list(_WRAPPERS)}, got {layout!r}")
    _check_supported(model)
    wrapper = _WRAPPERS[layout]
    mask = wrapper.mask is not None
    plan = _encoder_plan(model, wrapper, mask)
    targets = _target_shapes(lambda: build_encoder(model, input_dim, mask_embedding=mask))
    keys = {rule.source: rule.transform.sb_shape(targets[smx]) for smx, rule in plan.rules.items()}
    keys.update({key: () for key in plan.decay_keys})
    return keys


def _input_dim(
    sb_state: Mapping[str, torch.Tensor], projection: str, d_model: int, source: str
) -> int:
    """Features per input frame: the input size of the checkpoint's ``projection`` weight."""
    if projection not in sb_state:
        raise ValueError(
            f"{source} is missing {projection!r} (expected shape "
            f"[{d_model}, input_dim]): the smx encoder needs its input projection"
        )
    return sb_state[projection].shape[-1]


def convert_speechbrain_encoder(
    sb_state: Mapping[str, torch.Tensor],
    model: ModelCfg,
    prefix: str = "",
    ignore: Sequence[str] = (),
    source: str = "sb_state",
) -> dict[str, torch.Tensor]:
    """State dict of ``build_encoder(model, input_dim)`` from a SpeechBrain encoder checkpoint.

    Conformer and Branchformer layers with SummaryMixing (any mode and heads) or MHSA
    (``pos: abs`` or ``relpos``) in a wav2vec 2.0 ``EncoderWrapper`` or a ``TransformerASR``;
    mapping and caveats in the module docstring. ``input_dim`` is read from the input
    projection; build with ``mask_embedding=True`` when the checkpoint has a mask embedding.

    Arguments
    ---------
    sb_state : Mapping[str, torch.Tensor]
        SpeechBrain state dict (e.g. ``torch.load("latent_encoder.ckpt")``).
    model : ModelCfg
        The smx model config the weights are for; its sizes must match the tensors.
    prefix : str
        Prefix of the wrapper's keys in ``sb_state`` (e.g. ``"1."`` in an ASR
        ``model.ckpt``); keys not starting with it are not looked at.
    ignore : Sequence[str]
        Glob patterns (``fnmatch``, relative to ``prefix``) of keys to skip on purpose,
        e.g. ``("decoder.*", "custom_tgt_module.*")``.
    source : str
        What the error messages call ``sb_state`` (e.g. the checkpoint file).

    Returns
    -------
    dict[str, torch.Tensor]
        smx state dict, loadable with ``strict=True``.

    Raises
    ------
    ValueError
        Unsupported block or mixer, missing / unexpected key, wrong shape, another expdecay
        decay, absolute positions unlike ``encoder.pos_enc``; the message names the key.

    Example
    -------
    >>> from smx.nn.build import build_encoder
    >>> mixer = {"kind": "summarymixing", "local_hidden": [16], "local_out": 16,
    ...          "summary_hidden": [16], "heads": 2}
    >>> cfg = ModelCfg.model_validate(
    ...     {"encoder": {"num_layers": 2, "d_model": 16, "d_ffn": 32}, "mixer": mixer})
    >>> layout = speechbrain_encoder_keys(cfg, input_dim=12)  # what latent_encoder.ckpt holds
    >>> sb_state = {key: torch.randn(shape) for key, shape in layout.items()}
    >>> sb_state["positional_encoding.pe"] = torch.zeros(1, 3500, 16)  # dropped
    >>> encoder = build_encoder(cfg, input_dim=12, mask_embedding=True)
    >>> encoder.load_state_dict(convert_speechbrain_encoder(sb_state, cfg), strict=True)
    <All keys matched successfully>
    """
    plan, targets = _checked_plan(sb_state, model, prefix, source)
    converted = _apply(sb_state, prefix, plan, targets, ignore, source)
    _check_positions(sb_state, prefix, model, source)
    return converted


def _checked_plan(
    sb_state: Mapping[str, torch.Tensor], model: ModelCfg, prefix: str, source: str
) -> tuple[Any, Any]:
    """The conversion plan of an encoder state and the target shapes, after the checks of
    the block, the wrapper, the input projection and the decay."""
    _check_supported(model)
    wrapper = _detect_wrapper(sb_state, prefix, source)
    projection = f"{prefix}{wrapper.projection}weight"
    input_dim = _input_dim(sb_state, projection, model.encoder.d_model, source)
    mask = wrapper.mask is not None and f"{prefix}{wrapper.mask}" in sb_state
    plan = _encoder_plan(model, wrapper, mask)
    targets = _target_shapes(lambda: build_encoder(model, input_dim, mask_embedding=mask))
    _check_block(sb_state, f"{prefix}{wrapper.stack}layers.0.", model, source)
    _check_decay(sb_state, prefix, plan, model, source)
    return plan, targets


def _cnn_plan(frontend: FrontendCfg) -> _Plan:
    """Rules of the wav2vec 2.0 latent extractor (``mel_cnn``) or the Conv2d front-end."""
    plan = _Plan(rules={}, dead=set(), decay_keys=[])
    if frontend.kind == "mel_cnn":
        for i in range(len(frontend.cnn_channels)):
            block = f"extractor.convblock_{i}.convs"
            plan.rules[f"convs.{i}.weight"] = _Rule(f"{block}.conv_0.conv.weight")
            _copy(plan.rules, f"norms.{i}", f"{block}.norm_0.norm")
        _copy(plan.rules, "out_norm", "norm")
        return plan
    for i in range(len(frontend.conv2d_channels)):
        block = f"convblock_{i}.convs"
        plan.rules[f"convs.{i}.weight"] = _Rule(f"{block}.conv_0.conv.weight", _CONV2D)
        plan.rules[f"convs.{i}.bias"] = _Rule(f"{block}.conv_0.conv.bias")
        _copy(plan.rules, f"norms.{i}", f"{block}.norm_0.norm")
    return plan


def convert_speechbrain_cnn(
    sb_state: Mapping[str, torch.Tensor],
    frontend: FrontendCfg,
    prefix: str = "",
    ignore: Sequence[str] = (),
    source: str = "sb_state",
) -> dict[str, torch.Tensor]:
    """State dict of ``build_subsampling(frontend)`` from a SpeechBrain front-end.

    ``kind: mel_cnn``, the wav2vec 2.0 ``W2VLatentExtractor`` (``CNN.ckpt``):
    ``extractor.convblock_<i>.convs.conv_0.conv.weight [C_out, C_in, k]`` ->
    ``convs.<i>.weight`` (same layout; bias-free), ``extractor.convblock_<i>.convs.norm_0.norm.*``
    -> ``norms.<i>.*``, ``norm.*`` -> ``out_norm.*``.

    ``kind: conv2d``, the ``ConvolutionFrontEnd`` of an ASR or BEST-RQ ``model.ckpt`` (its
    ``0.``): ``convblock_<i>.convs.conv_0.conv.weight [C_out, C_in, k_freq, k_time]`` ->
    ``convs.<i>.weight [C_out, C_in, k_time, k_freq]`` (transposed: SpeechBrain convolves
    ``[B, C, F, T]``), its bias unchanged, ``convblock_<i>.convs.norm_0.norm.* [F', C]`` ->
    ``norms.<i>.*`` (both normalise each frame's frequencies and channels together).
    SpeechBrain pads that front-end by reflection: set ``frontend.conv2d_padding: reflect``.

    Arguments
    ---------
    sb_state : Mapping[str, torch.Tensor]
        SpeechBrain state dict.
    frontend : FrontendCfg
        The smx front-end config (channels, kernels and strides must match the tensors).
    prefix : str
        Prefix of the front-end's keys in ``sb_state`` (``"0."`` in a ``model.ckpt``).
    ignore : Sequence[str]
        Glob patterns of keys (relative to ``prefix``) to skip.
    source : str
        What the error messages call ``sb_state`` (e.g. the checkpoint file).

    Returns
    -------
    dict[str, torch.Tensor]
        State dict of :class:`smx.nn.frontend.CnnLatentExtractor` or
        :class:`smx.nn.frontend.Conv2dSubsampling`, loadable with ``strict=True``.

    Example
    -------
    >>> from smx.nn.build import build_subsampling
    >>> cfg = FrontendCfg(cnn_channels=[8, 8])
    >>> sb_state = {"extractor.convblock_0.convs.conv_0.conv.weight": torch.randn(8, 80, 3),
    ...     "extractor.convblock_1.convs.conv_0.conv.weight": torch.randn(8, 8, 3)}
    >>> for i in (0, 1):
    ...     sb_state[f"extractor.convblock_{i}.convs.norm_0.norm.weight"] = torch.ones(8)
    ...     sb_state[f"extractor.convblock_{i}.convs.norm_0.norm.bias"] = torch.zeros(8)
    >>> sb_state.update({"norm.weight": torch.ones(8), "norm.bias": torch.zeros(8)})
    >>> build_subsampling(cfg).load_state_dict(convert_speechbrain_cnn(sb_state, cfg))
    <All keys matched successfully>
    """
    targets = _target_shapes(lambda: build_subsampling(frontend), device="cpu")
    return _apply(sb_state, prefix, _cnn_plan(frontend), targets, ignore, source)
