"""The configuration schema of smx: every parameter, its type, range and default.

This module is the only place defaults live. YAML files (``params.yaml``, ``configs/*.yaml``)
are data; :func:`load` reads one, validates it against :class:`Params` and returns a frozen,
typed object. Unknown keys are errors, the mixer and the SSL objective are discriminated
unions selected by ``kind``, and cross-field checks catch inconsistent sizes before any
compute is spent.

Defaults follow the published recipes (docs/algorithm.md): the wav2vec 2.0 SummaryMixing
recipe (arXiv 2407.13377) for the model, masking and optimisation, BEST-RQ's published
values (arXiv 2202.01855) for its objective, and MP3S for the downstream probes.
``params.yaml`` overrides them with the tiny demo values.

Example
-------
>>> p = Params.model_validate({"model": {"mixer": {"kind": "mhsa", "heads": 4}}})
>>> p.model.mixer.kind, p.model.encoder.d_model, p.ssl.kind
('mhsa', 768, 'wav2vec2')
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationError,
    model_serializer,
    model_validator,
)

from smx.data.text import INTENTS
from smx.yamlio import ConfigError, FieldProblem, load_yaml, validation_errors

# ----------------------------------------------------------------------------------------
# base


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


PositiveInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
DropoutRate = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
Activation = Literal["swish", "gelu", "relu"]
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def _check_heads(field: str, size: int, heads: int) -> None:
    if size % heads:
        raise FieldProblem(field, f"{size} is not divisible by heads={heads}")


def _omit_defaults(
    section: BaseModel, data: dict[str, Any], names: tuple[str, ...]
) -> dict[str, Any]:
    """``data`` (a dump of ``section``) without the fields ``names`` that hold their default.

    The SpeechBrain parity options and ``init`` are dumped only when set: a config that does
    not use them dumps (and names its resolved config, Ray run, DVC params and config hash)
    as before they existed.
    """
    fields = type(section).model_fields
    for name in names:
        if getattr(section, name) == fields[name].default:
            data.pop(name, None)
    return data


# ----------------------------------------------------------------------------------------
# data


SynthStyle = Literal["neutral", "fast", "slow", "high", "low", "whisper", "excited", "tired"]
NoiseKind = Literal["white", "pink", "brown", "babble"]


class StyleCfg(Section):
    """A speaking style of the embedded corpus: what espeak-ng changes of the speaker's voice.

    ``rate_scale`` multiplies the speaker's rate, ``pitch_offset`` is added to the speaker's
    base pitch (espeak-ng ``-p``, 0..99), ``whisper`` swaps the speaker's voice variant for
    the whisper variant of its gender.
    """

    rate_scale: Annotated[float, Field(gt=0.25, le=4.0)] = 1.0
    pitch_offset: Annotated[int, Field(ge=-50, le=50)] = 0
    whisper: bool = False

    def describe(self) -> str:
        """The settings in words.

        Example
        -------
        >>> StyleCfg(rate_scale=1.4).describe()
        'rate_scale 1.4, pitch_offset 0, whisper false'
        """
        return (
            f"rate_scale {self.rate_scale:g}, pitch_offset {self.pitch_offset}, "
            f"whisper {str(self.whisper).lower()}"
        )


#: the built-in speaking styles that ``data.synth.styles`` can name
BUILTIN_STYLES: dict[str, StyleCfg] = {
    "neutral": StyleCfg(),
    "fast": StyleCfg(rate_scale=1.4),
    "slow": StyleCfg(rate_scale=0.7),
    "high": StyleCfg(pitch_offset=22),
    "low": StyleCfg(pitch_offset=-22),
    "whisper": StyleCfg(whisper=True),
    "excited": StyleCfg(rate_scale=1.25, pitch_offset=18),
    "tired": StyleCfg(rate_scale=0.8, pitch_offset=-15),
}


class SynthCfg(Section):
    """The embedded espeak-ng corpus (see smx.data.synth)."""

    hours: PositiveFloat = 1.0
    seed: NonNegInt = 0  # the corpus' own seed: changing the training seed keeps the data
    num_speakers: Annotated[int, Field(ge=4)] = 30
    heldout_speakers: Annotated[int, Field(ge=2)] = 8
    dev_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.1
    test_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.1
    free_reading_fraction: Probability = 0.3
    free_sentences: Annotated[int, Field(ge=10, le=20000)] = 2000  # the free-reading list
    #: the intents whose templates the other sentences are drawn from (the intent task's
    #: classes besides ``none``); ``[]``: all of :data:`smx.data.text.INTENTS`
    intents: list[str] = Field(default_factory=list)
    snr_db: list[float] = Field(default_factory=lambda: [30.0, 20.0, 10.0, 5.0])
    noise_prob: Probability = 0.5
    noise_kinds: list[NoiseKind] = Field(
        default_factory=lambda: ["white", "pink", "brown", "babble"]
    )
    #: built-in style names (:data:`BUILTIN_STYLES`), or a mapping ``{name: {rate_scale,
    #: pitch_offset, whisper}}`` of the corpus' own styles (the style task's labels)
    styles: list[SynthStyle] | dict[str, StyleCfg] = Field(
        default_factory=lambda: ["neutral", "fast", "slow", "high", "low", "whisper"]
    )
    workers: NonNegInt = 0  # 0 = all cores

    @model_validator(mode="after")
    def _check(self) -> SynthCfg:
        if self.heldout_speakers >= self.num_speakers:
            raise FieldProblem(
                "heldout_speakers",
                f"{self.heldout_speakers} must be smaller than num_speakers={self.num_speakers}",
            )
        if self.dev_fraction + self.test_fraction >= 0.5:
            raise FieldProblem(
                "test_fraction",
                "dev_fraction + test_fraction must be below 0.5 so training keeps most data",
            )
        if len(self.styles) < 2 or len(set(self.styles)) != len(self.styles):
            raise FieldProblem("styles", "must list at least 2 distinct speaking styles")
        _check_styles(self.style_settings())
        _check_intents(self.intents)
        if not self.snr_db:
            raise FieldProblem("snr_db", "must list at least one signal-to-noise ratio")
        if not self.noise_kinds or len(set(self.noise_kinds)) != len(self.noise_kinds):
            raise FieldProblem("noise_kinds", "must list at least one noise kind, each once")
        return self

    def intent_names(self) -> list[str]:
        """The intents sentences are drawn from, sorted (``intents``, or all when empty).

        Example
        -------
        >>> SynthCfg(intents=["lights_on", "alarm_set"]).intent_names()
        ['alarm_set', 'lights_on']
        >>> len(SynthCfg().intent_names()) > 10
        True
        """
        return sorted(self.intents or INTENTS)

    def style_settings(self) -> dict[str, StyleCfg]:
        """Each style's settings, in the order of ``styles``.

        Example
        -------
        >>> SynthCfg(styles=["neutral", "fast"]).style_settings()["fast"].rate_scale
        1.4
        >>> SynthCfg(styles={"calm": {}, "hasty": {"rate_scale": 1.5}}).style_settings()["hasty"]
        StyleCfg(rate_scale=1.5, pitch_offset=0, whisper=False)
        """
        if isinstance(self.styles, dict):
            return dict(self.styles)
        return {name: BUILTIN_STYLES[name] for name in self.styles}


def _check_intents(intents: list[str]) -> None:
    """FieldProblem when ``intents`` repeats a name, names an unknown intent or just one."""
    unknown = [name for name in intents if name not in INTENTS]
    if unknown:
        raise FieldProblem(
            "intents", f"'{unknown[0]}' is not an intent (choose from {', '.join(sorted(INTENTS))})"
        )
    if len(set(intents)) != len(intents) or len(intents) == 1:
        raise FieldProblem("intents", f"must list at least 2 distinct intents, got {intents}")


def _check_styles(styles: dict[str, StyleCfg]) -> None:
    """FieldProblem when a style name is not a plain name, or two styles sound the same (no probe
    could tell their utterances apart: the style task would be unlearnable by construction)."""
    seen: dict[StyleCfg, str] = {}
    for name, style in styles.items():
        if not NAME_RE.match(name):
            raise FieldProblem(
                "styles", f"style name {name!r} must be lower case letters, digits and '_'"
            )
        if style in seen:
            raise FieldProblem(
                f"styles.{name}",
                f"has the same settings as styles.{seen[style]} ({style.describe()}), so no "
                "probe can tell the two styles apart; change one of them",
            )
        seen[style] = name


class DataCfg(Section):
    """Corpus, utterance filters and dynamic batching."""

    corpus: Literal["synth", "librispeech", "librilight", "folder"] = "synth"
    corpus_dir: str | None = None
    root: str = "data"
    sample_rate: Literal[8000, 16000, 22050, 24000, 44100, 48000] = 16000
    alphabet: str = "abcdefghijklmnopqrstuvwxyz' "  # transcripts are normalised to these
    min_duration: PositiveFloat = 1.0
    max_duration: PositiveFloat = 20.2
    max_batch_duration: PositiveFloat = 360.0
    num_buckets: PositiveInt = 30
    max_skip_fraction: Probability = 0.05
    num_loader_workers: NonNegInt = 0
    shar_shard_size: PositiveInt = 1000
    synth: SynthCfg = SynthCfg()

    @model_validator(mode="after")
    def _check(self) -> DataCfg:
        if self.min_duration >= self.max_duration:
            raise FieldProblem(
                "min_duration",
                f"{self.min_duration} must be smaller than max_duration={self.max_duration}",
            )
        if self.max_batch_duration < self.max_duration:
            raise FieldProblem(
                "max_batch_duration",
                f"{self.max_batch_duration} s cannot hold one utterance of "
                f"max_duration={self.max_duration} s",
            )
        if self.corpus != "synth" and self.corpus_dir is None:
            raise FieldProblem(
                "corpus", f"'{self.corpus}' needs corpus_dir, the local path of the corpus"
            )
        if not self.alphabet.strip() or len(set(self.alphabet)) != len(self.alphabet):
            raise FieldProblem(
                "alphabet", "must hold at least one letter and no repeated character"
            )
        return self


# ----------------------------------------------------------------------------------------
# model


class FrontendCfg(Section):
    """Log-mel features computed on the device, then a subsampling network."""

    kind: Literal["mel_cnn", "conv2d"] = "mel_cnn"
    n_mels: PositiveInt = 80
    n_fft: PositiveInt = 400
    win_ms: PositiveFloat = 25.0
    hop_ms: PositiveFloat = 10.0
    # mel_cnn: the wav2vec 2.0 latent extractor (Conv1d over time), 20 ms frames
    cnn_channels: list[PositiveInt] = Field(default_factory=lambda: [512, 512])
    cnn_kernels: list[PositiveInt] = Field(default_factory=lambda: [3, 3])
    cnn_strides: list[PositiveInt] = Field(default_factory=lambda: [2, 1])
    # conv2d: 2 x Conv2d stride 2 in time and frequency, 40 ms frames
    conv2d_channels: list[PositiveInt] = Field(default_factory=lambda: [64, 32])
    #: padding of the conv2d blocks: zeros, or SpeechBrain's reflection (an imported model)
    conv2d_padding: Literal["zeros", "reflect"] = "zeros"
    #: log-mel recipe: smx's (Hann, HTK filters, natural log) or SpeechBrain's Fbank (Hamming,
    #: its triangular filters, 10 log10 floored 80 dB below the utterance's maximum)
    fbank: Literal["smx", "speechbrain"] = "smx"
    #: per-bin normalisation of the log-mel features: over each utterance, or with global
    #: statistics of the first global_norm_updates training batches, then frozen (2409.02596)
    normalize: Literal["utterance", "global"] = "utterance"
    global_norm_updates: PositiveInt = 1000

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The fields, the parity and normalisation options left out while at their default."""
        names = ("conv2d_padding", "fbank", "normalize", "global_norm_updates")
        return _omit_defaults(self, handler(self), names)

    @model_validator(mode="after")
    def _check(self) -> FrontendCfg:
        if not (len(self.cnn_channels) == len(self.cnn_kernels) == len(self.cnn_strides)):
            raise FieldProblem(
                "cnn_kernels", "cnn_channels, cnn_kernels and cnn_strides must have the same length"
            )
        if len(self.conv2d_channels) != 2:
            raise FieldProblem(
                "conv2d_channels", "must list exactly 2 channel counts (two stride-2 blocks)"
            )
        if self.win_ms < self.hop_ms:
            raise FieldProblem("win_ms", f"{self.win_ms} must be at least hop_ms={self.hop_ms}")
        return self

    def hop_samples(self, sample_rate: int) -> int:
        """Samples between feature frames."""
        return round(sample_rate * self.hop_ms / 1000)

    def feature_frames(self, samples: int, sample_rate: int) -> int:
        """Log-mel frames for an utterance of ``samples`` samples (centred STFT)."""
        return samples // self.hop_samples(sample_rate) + 1

    def encoder_frames(self, feature_frames: int) -> int:
        """Encoder frames produced from ``feature_frames`` log-mel frames."""
        t = feature_frames
        if self.kind == "mel_cnn":
            for k, s in zip(self.cnn_kernels, self.cnn_strides, strict=True):
                t = (t - k) // s + 1
            return max(t, 0)
        for _ in range(2):
            t = (t - 1) // 2 + 1
        return t

    @property
    def subsampling(self) -> int:
        """Time subsampling factor from feature frames to encoder frames."""
        return math.prod(self.cnn_strides) if self.kind == "mel_cnn" else 4

    @property
    def frame_seconds(self) -> float:
        """Seconds of audio per encoder frame: ``hop_ms`` times :attr:`subsampling`.

        Example
        -------
        >>> FrontendCfg().frame_seconds, FrontendCfg(kind="conv2d").frame_seconds
        (0.02, 0.04)
        """
        return self.hop_ms * self.subsampling / 1000


class SummaryMixingCfg(Section):
    """SummaryMixing: per-frame local MLP, a mean summary over real frames, a combiner."""

    kind: Literal["summarymixing"] = "summarymixing"
    mode: Literal["full", "lite", "fast", "expdecay"] = "full"
    local_hidden: list[PositiveInt] = Field(default_factory=lambda: [768])
    local_out: PositiveInt = 768
    summary_hidden: list[PositiveInt] = Field(default_factory=lambda: [768])
    heads: PositiveInt = 8
    use_layernorm: bool = True
    dropout: DropoutRate = 0.1
    decay: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.995
    #: recompute the cell in the backward pass instead of storing its activations (training
    #: only; less memory, one more cell forward per step; outputs and gradients unchanged)
    activation_checkpointing: bool = False
    #: activations: keep only the cell's input and matrix products' outputs for the backward
    #: pass, recompute the element-wise rest (training only; outputs unchanged); none: off
    recompute: Literal["none", "activations"] = "activations"

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The fields, ``activation_checkpointing`` left out while off (its default).

        It changes memory, never outputs, so a config that does not turn it on dumps (and
        names its resolved config, Ray run and DVC params) as one without the field;
        config_hash (smx.train.checkpoint) ignores it either way.
        """
        data = handler(self)
        if not self.activation_checkpointing:
            data.pop("activation_checkpointing", None)
        return _omit_defaults(self, data, ("recompute",))  # memory, not outputs, as above

    @model_validator(mode="after")
    def _check(self) -> SummaryMixingCfg:
        if self.mode == "fast":
            if self.heads != 1:
                raise FieldProblem(
                    "heads", "mode 'fast' uses one fused projection without heads; set heads: 1"
                )
            return self
        for i, h in enumerate(self.summary_hidden):
            _check_heads(f"summary_hidden.{i}", h, self.heads)
        if self.mode != "lite":
            for i, h in enumerate(self.local_hidden):
                _check_heads(f"local_hidden.{i}", h, self.heads)
            _check_heads("local_out", self.local_out, self.heads)
        return self


class MHSACfg(Section):
    """Multi-head self-attention through scaled_dot_product_attention (the baseline)."""

    kind: Literal["mhsa"] = "mhsa"
    heads: PositiveInt = 8
    dropout: DropoutRate = 0.1
    pos: Literal["abs", "relpos"] = "abs"
    #: relpos: encode the signed distance i - j, or |i - j| (symmetric: SpeechBrain's
    #: RelPosEncXL, which an imported SpeechBrain relpos model needs)
    relpos: Literal["signed", "symmetric"] = "signed"

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The fields, ``relpos`` left out while ``signed`` (its default)."""
        return _omit_defaults(self, handler(self), ("relpos",))

    @model_validator(mode="after")
    def _check(self) -> MHSACfg:
        if self.relpos != "signed" and self.pos != "relpos":
            raise FieldProblem("relpos", f"'{self.relpos}' needs pos: relpos")
        return self


class FastformerCfg(Section):
    """Fastformer additive attention."""

    kind: Literal["fastformer"] = "fastformer"
    heads: PositiveInt = 8
    dropout: DropoutRate = 0.1


class HyperMixingCfg(Section):
    """HyperMixing: token mixing with hypernetwork-generated weights."""

    kind: Literal["hypermixing"] = "hypermixing"
    heads: PositiveInt = 8
    hypernet_size: PositiveInt = 2048
    dropout: DropoutRate = 0.0

    @model_validator(mode="after")
    def _check(self) -> HyperMixingCfg:
        _check_heads("hypernet_size", self.hypernet_size, self.heads)
        return self


class MambaCfg(Section):
    """Bidirectional Mamba (selective state space)."""

    kind: Literal["mamba"] = "mamba"
    d_state: PositiveInt = 16
    d_conv: PositiveInt = 4
    expand: PositiveInt = 2
    dt_rank: PositiveInt | None = None


class NoMixingCfg(Section):
    """No token mixing (an ablation, not a model): the mixer returns zeros, has no parameters.

    A Conformer or Transformer block then keeps only its feed-forward and convolution
    modules. ``smx bench pretrain`` runs it as the floor of every mixer: what the rest of
    the step costs when the mixer is free (:mod:`smx.nn.mixers.no_mixing`).
    """

    kind: Literal["none"] = "none"


MixerCfg = Annotated[
    SummaryMixingCfg | MHSACfg | FastformerCfg | HyperMixingCfg | MambaCfg | NoMixingCfg,
    Field(discriminator="kind"),
]
#: The token mixers compared by the project (``none``, the no-mixing ablation, is not one).
MIXER_KINDS = ("summarymixing", "mhsa", "fastformer", "hypermixing", "mamba")
#: The ablation kind: no token mixing, the lower bound of the benchmarks.
NO_MIXING = "none"
STREAMABLE_MIXERS = ("summarymixing", "mhsa")


class EncoderCfg(Section):
    """The stack of blocks that host the mixer."""

    block: Literal["conformer", "transformer", "branchformer"] = "conformer"
    num_layers: PositiveInt = 12
    d_model: PositiveInt = 768
    d_ffn: PositiveInt = 3072
    kernel_size: PositiveInt = 31
    csgu_units: PositiveInt = 3072
    dropout: DropoutRate = 0.1
    input_dropout: DropoutRate = 0.1
    layerdrop: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    activation: Activation = "swish"
    pos_enc: Literal["abs", "none"] = "abs"
    #: offline padding of the Branchformer's CSGU convolution: zeros, or SpeechBrain's
    #: reflection (an imported model); chunked and streaming modes always use zeros
    conv_padding: Literal["zeros", "reflect"] = "zeros"

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The fields, ``conv_padding`` left out while ``zeros`` (its default)."""
        return _omit_defaults(self, handler(self), ("conv_padding",))

    @model_validator(mode="after")
    def _check(self) -> EncoderCfg:
        if self.kernel_size % 2 == 0:
            raise FieldProblem(
                "kernel_size", f"{self.kernel_size} must be odd ('same' depthwise convolution)"
            )
        if self.csgu_units % 2:
            raise FieldProblem(
                "csgu_units", f"{self.csgu_units} must be even (the CSGU splits it in halves)"
            )
        if self.conv_padding != "zeros" and self.block != "branchformer":
            raise FieldProblem(
                "conv_padding",
                f"'{self.conv_padding}' applies to the Branchformer's CSGU only; "
                f"block is '{self.block}'",
            )
        return self


class StreamingCfg(Section):
    """Dynamic chunk training: a random chunk size and left context per batch."""

    enabled: bool = False
    chunkwise_prob: Probability = 0.6
    chunk_min: PositiveInt = 8
    chunk_max: PositiveInt = 32
    limited_left_prob: Probability = 0.75
    left_min: NonNegInt = 2
    left_max: NonNegInt = 32
    eval_chunk: PositiveInt = 32
    eval_left: NonNegInt | None = None

    @model_validator(mode="after")
    def _check(self) -> StreamingCfg:
        if self.chunk_min > self.chunk_max:
            raise FieldProblem(
                "chunk_min", f"{self.chunk_min} must not exceed chunk_max={self.chunk_max}"
            )
        if self.left_min > self.left_max:
            raise FieldProblem(
                "left_min", f"{self.left_min} must not exceed left_max={self.left_max}"
            )
        return self


class ModelCfg(Section):
    """Front-end, encoder blocks and mixer."""

    frontend: FrontendCfg = FrontendCfg()
    encoder: EncoderCfg = EncoderCfg()
    mixer: MixerCfg = SummaryMixingCfg()
    streaming: StreamingCfg = StreamingCfg()

    @model_validator(mode="after")
    def _check(self) -> ModelCfg:
        d_model, mixer = self.encoder.d_model, self.mixer
        heads = getattr(mixer, "heads", 1)
        if d_model % heads:
            raise FieldProblem("mixer.heads", f"{heads} does not divide encoder.d_model={d_model}")
        if mixer.kind == "mhsa" and mixer.pos == "relpos" and self.encoder.pos_enc == "abs":
            raise FieldProblem(
                "encoder.pos_enc", "mixer.pos 'relpos' already encodes positions; set pos_enc: none"
            )
        if (
            mixer.kind == "summarymixing"
            and mixer.mode == "lite"
            and self.encoder.block != "branchformer"
        ):
            raise FieldProblem(
                "mixer.mode",
                "'lite' gives every frame the same vector; it needs encoder.block 'branchformer', "
                "whose cgMLP branch supplies the local information",
            )
        if self.streaming.enabled:
            if mixer.kind not in (*STREAMABLE_MIXERS, NO_MIXING):
                raise FieldProblem(
                    "streaming.enabled",
                    f"needs a mixer with a streaming mode ({', '.join(STREAMABLE_MIXERS)}), "
                    f"not '{mixer.kind}'",
                )
            if mixer.kind == "summarymixing" and mixer.mode == "expdecay":
                raise FieldProblem(
                    "streaming.enabled", "is not available with mixer.mode 'expdecay'"
                )
        return self


# ----------------------------------------------------------------------------------------
# self-supervised objectives


class Wav2Vec2Cfg(Section):
    """wav2vec 2.0: span masking, Gumbel quantiser on CNN latents, contrastive loss."""

    kind: Literal["wav2vec2"] = "wav2vec2"
    mask_prob: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.65
    mask_length: PositiveInt = 10
    num_negatives: PositiveInt = 100
    logit_temp: PositiveFloat = 0.1
    codebook_groups: PositiveInt = 2
    codebook_entries: PositiveInt = 320
    code_dim: PositiveInt = 256
    proj_dim: PositiveInt = 256
    gumbel_temp_start: PositiveFloat = 2.0
    gumbel_temp_decay: Annotated[float, Field(gt=0.0, le=1.0)] = 0.999995
    gumbel_temp_min: PositiveFloat = 0.25
    diversity_weight: Annotated[float, Field(ge=0.0)] = 0.1
    feature_penalty_weight: Annotated[float, Field(ge=0.0)] = 0.0

    @model_validator(mode="after")
    def _check(self) -> Wav2Vec2Cfg:
        if self.code_dim % self.codebook_groups:
            raise FieldProblem(
                "code_dim",
                f"{self.code_dim} is not divisible by codebook_groups={self.codebook_groups}",
            )
        if self.gumbel_temp_min > self.gumbel_temp_start:
            raise FieldProblem("gumbel_temp_min", "must not exceed gumbel_temp_start")
        return self


class BestRQCfg(Section):
    """BEST-RQ: frozen random-projection targets, masked prediction with cross-entropy."""

    kind: Literal["bestrq"] = "bestrq"
    stack_frames: PositiveInt = 4
    code_dim: PositiveInt = 16
    codebook_size: Annotated[int, Field(ge=2)] = 8192
    num_codebooks: PositiveInt = 1
    mask_prob: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.15
    mask_length: PositiveInt = 4
    noise_std: Annotated[float, Field(ge=0.0)] = 0.1


SSLCfg = Annotated[Wav2Vec2Cfg | BestRQCfg, Field(discriminator="kind")]


# ----------------------------------------------------------------------------------------
# training, downstream, tracking, cluster


class TrainCfg(Section):
    """Optimiser, schedule, precision, checkpoints (the published wav2vec 2.0 recipe's values)."""

    max_steps: PositiveInt = 300_000
    lr: PositiveFloat = 5e-4
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.05
    betas: Annotated[list[float], Field(min_length=2, max_length=2)] = Field(
        default_factory=lambda: [0.9, 0.999]
    )
    eps: PositiveFloat = 1e-6
    schedule: Literal["warmcool", "noam", "tristage", "constant"] = "warmcool"
    warmup_steps: NonNegInt = 30_000
    grad_clip: PositiveFloat = 100.0
    grad_accum: PositiveInt = 4
    precision: Literal["fp32", "bf16"] = "bf16"
    checkpoint_every: PositiveInt = 1000
    keep_checkpoints: PositiveInt = 5
    log_every: PositiveInt = 50
    max_nan_steps: PositiveInt = 10
    #: torch.compile the encoder blocks: true, false, or auto = on a CUDA device only (on the
    #: project's CPU a block compiles in 14 to 130 s per utterance length for a 1.09x faster
    #: forward+backward; docs/benchmarks.md, "The default fast path")
    compile: bool | Literal["auto"] = "auto"

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The fields, ``compile`` left out while ``auto`` (speed, never outputs)."""
        return _omit_defaults(self, handler(self), ("compile",))

    @model_validator(mode="after")
    def _check(self) -> TrainCfg:
        if self.warmup_steps > self.max_steps:
            raise FieldProblem(
                "warmup_steps", f"{self.warmup_steps} exceeds max_steps={self.max_steps}"
            )
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise FieldProblem("betas", f"must lie in [0, 1), got {list(self.betas)}")
        return self


TASKS = ("asr", "speaker", "intent", "style", "emotion")
#: the tasks of ``downstream.tasks`` by default: those the embedded synthetic corpus labels
DEFAULT_TASKS = ("asr", "speaker", "intent", "style")
PROBES: dict[str, tuple[str, str]] = {
    "asr": ("bilstm", "conv"),
    "speaker": ("xvector", "ecapa"),
    "intent": ("linear", "bilstm_linear"),
    "style": ("linear", "ecapa"),
    "emotion": ("linear", "ecapa"),
}
#: the size above which the hidden-state cache of the probes drops its least recently used
#: entries (smx.downstream.state_cache); one entry of the demo's encoders is about 140 MB
STATE_CACHE_BYTES = 8 << 30
#: the utterance labels (a supervision's ``custom`` field) a classification task may read
CLASS_LABELS = ("intent", "style", "emotion")
#: the label fields each task may read; the first is its default
LABELS: dict[str, tuple[str, ...]] = {
    "asr": ("text",),
    "speaker": ("speaker",),
    **{task: (task, *(c for c in CLASS_LABELS if c != task)) for task in CLASS_LABELS},
}
#: IEMOCAP's sessions, the folds of a leave-one-session-out probing
SESSIONS = (1, 2, 3, 4, 5)
ProbeName = Literal["bilstm", "conv", "xvector", "ecapa", "linear", "bilstm_linear"]


class FinetuneCfg(Section):
    """CTC fine-tuning of the whole encoder (tri-stage LR, frozen first steps, SpecAugment).

    ``max_steps`` updates at peak ``lr``; the tri-stage schedule's warm-up, hold and decay
    take the ``tristage`` shares of them. For the first ``freeze_steps`` updates only the CTC
    head trains (the encoder runs under ``no_grad``). SpecAugment (training only) zeroes
    ``freq_masks`` bands of up to ``freq_mask_width`` mel bins and ``time_masks`` spans of up
    to ``time_mask_width`` frames, at most ``time_mask_fraction`` of the frames in all
    (Lhotse's LibriSpeech values). The rest of the loop (batching, clipping, checkpoints,
    logging, precision) follows the ``train`` section.
    """

    max_steps: PositiveInt = 20_000
    freeze_steps: NonNegInt = 10_000
    lr: PositiveFloat = 5e-5
    tristage: Annotated[list[float], Field(min_length=3, max_length=3)] = Field(
        default_factory=lambda: [0.1, 0.4, 0.5]
    )
    specaugment: bool = True
    freq_masks: NonNegInt = 2
    freq_mask_width: PositiveInt = 27
    time_masks: NonNegInt = 10
    time_mask_width: PositiveInt = 100
    time_mask_fraction: Probability = 0.15
    #: chunk sizes in seconds at which dev and test are also decoded chunk by chunk after
    #: training (streaming evaluation, left context ``model.streaming.eval_left``); each is
    #: rounded to whole encoder frames and must be at least one frame. ``[]``: offline only
    stream_chunks: list[PositiveFloat] = Field(default_factory=lambda: [0.32, 0.64, 1.28])

    @model_validator(mode="after")
    def _check(self) -> FinetuneCfg:
        if len(set(self.stream_chunks)) != len(self.stream_chunks):
            raise FieldProblem(
                "stream_chunks", f"must not repeat a chunk size, got {list(self.stream_chunks)}"
            )
        if self.freeze_steps >= self.max_steps:
            raise FieldProblem(
                "freeze_steps", f"{self.freeze_steps} must be below max_steps={self.max_steps}"
            )
        if abs(sum(self.tristage) - 1.0) > 1e-6 or min(self.tristage) < 0:
            raise FieldProblem(
                "tristage", f"shares must be non-negative and sum to 1, got {list(self.tristage)}"
            )
        return self

    def stages(self) -> tuple[int, int]:
        """Warm-up and hold updates of the tri-stage schedule (the decay takes the rest).

        Example
        -------
        >>> FinetuneCfg(max_steps=100, freeze_steps=10).stages()
        (10, 40)
        """
        warmup = round(self.tristage[0] * self.max_steps)
        hold = round((self.tristage[0] + self.tristage[1]) * self.max_steps) - warmup
        return warmup, hold


class TaskCfg(Section):
    """One probing task's data: the prepared corpus, the label it reads, its folds.

    ``folds: session`` probes leave-one-session-out (IEMOCAP: utterances with
    ``custom["session"]``): one fold per session of ``held_out``, which is the test split;
    the next remaining session is dev, the others train.
    """

    #: the prepared corpus (null: ``data.root/data.corpus``)
    corpus: str | None = None
    #: the label field (null: the task's default, the first of :data:`LABELS`)
    label: str | None = None
    folds: Literal["session"] | None = None
    held_out: Annotated[list[PositiveInt], Field(min_length=1)] = Field(
        default_factory=lambda: list(SESSIONS)
    )


def _check_task(name: str, task: TaskCfg) -> None:
    """FieldProblem when the label is not one of task ``name``'s or a held-out session unknown."""
    if task.label not in LABELS[name]:
        raise FieldProblem(
            f"tasks.{name}.label",
            f"'{task.label}' is not a label of task '{name}' (choose from "
            f"{', '.join(LABELS[name])})",
        )
    if task.folds is not None and name in ("asr", "speaker"):
        raise FieldProblem(f"tasks.{name}.folds", f"'{task.folds}' needs a classification task")
    held = list(task.held_out)
    if len(set(held)) != len(held) or not set(held) <= set(SESSIONS):
        raise FieldProblem(f"tasks.{name}.held_out", f"must list distinct sessions 1-5, got {held}")


#: ``downstream.tasks``: task names, or task -> :class:`TaskCfg` (a mapping is checked as one)
TaskList = Annotated[
    Annotated[list[str], Tag("names")] | Annotated[dict[str, TaskCfg], Tag("mapping")],
    Discriminator(lambda v: "mapping" if isinstance(v, dict) else "names"),
]


class DownstreamCfg(Section):
    """MP3S-style probing of frozen encoders and CTC fine-tuning."""

    #: the probing tasks: a list of names (each on ``data.root/data.corpus`` with its default
    #: label) or a mapping ``{task: {corpus, label, folds, held_out}}`` (:class:`TaskCfg`)
    tasks: TaskList = Field(default_factory=lambda: list(DEFAULT_TASKS))
    seeds: PositiveInt = 3
    epochs: PositiveInt = 20
    #: epochs of the named probes instead of ``epochs``, e.g. ``{linear: 30}``: a pooled
    #: linear probe's epoch costs a few per cent of a BiLSTM's or ECAPA's, and it needs many
    #: more epochs to converge (unconverged, its accuracy swings with the seed)
    probe_epochs: dict[ProbeName, PositiveInt] = Field(default_factory=dict)
    lr: PositiveFloat = 2e-4
    #: learning rate of the named probes (and of the speaker task's AAM head) instead of
    #: ``lr``, e.g. ``{xvector: 1e-3}``: a probe that many epochs train can need a smaller
    #: step than the pooled probes that a few epochs must converge
    probe_lr: dict[ProbeName, PositiveFloat] = Field(default_factory=dict)
    lr_weights: PositiveFloat = 1e-2
    # probe width: BiLSTM units per direction, conv/TDNN channels, embedding size (MP3S: 1024);
    # a multiple of 8 (ECAPA splits its channels in 8 for attention and 4 for Res2 scales)
    probe_dim: Annotated[int, Field(ge=8, multiple_of=8)] = 1024
    max_batch_duration: PositiveFloat = 120.0
    #: hypotheses kept per frame by the ASR probes' CTC beam search (cost ~ beam_size^2)
    beam_size: PositiveInt = 10
    #: the ASR metric comparisons are made on (both are always reported): ``wer`` as MP3S;
    #: ``cer`` for small labelled sets, where every upstream's WER stays near 1
    asr_metric: Literal["wer", "cer"] = "wer"
    newbob_threshold: Annotated[float, Field(ge=0.0)] = 0.0025
    newbob_factor: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    #: probe trainings run at once, each in its own process with one torch thread (1: one
    #: after the other in the calling process, with its threads); a small probe uses one core,
    #: so up to the number of cores pays. Thread counts change float rounding, which a few
    #: epochs can turn into a different test prediction now and then
    workers: PositiveInt = 1
    finetune: FinetuneCfg = FinetuneCfg()

    @model_validator(mode="after")
    def _check(self) -> DownstreamCfg:
        if len(set(self.tasks)) != len(self.tasks):
            raise FieldProblem("tasks", "must not repeat a task")
        for name in self.tasks:
            if name not in TASKS:
                raise FieldProblem(
                    "tasks", f"'{name}' is not a probing task (choose from {', '.join(TASKS)})"
                )
            _check_task(name, self.task(name))
        return self

    def task(self, name: str) -> TaskCfg:
        """The settings of task ``name``, its label filled in (a listed task: all defaults).

        Example
        -------
        >>> cfg = DownstreamCfg(tasks={"emotion": {"corpus": "data/iemocap"}})
        >>> cfg.task("emotion").corpus, cfg.task("emotion").label
        ('data/iemocap', 'emotion')
        >>> DownstreamCfg().task("asr").label
        'text'
        """
        found = self.tasks.get(name, TaskCfg()) if isinstance(self.tasks, dict) else TaskCfg()
        if found.label is None:
            return found.model_copy(update={"label": LABELS[name][0]})
        return found

    def epochs_of(self, probe: str) -> int:
        """Training epochs of ``probe``.

        Example
        -------
        >>> cfg = DownstreamCfg(epochs=4, probe_epochs={"linear": 30})
        >>> cfg.epochs_of("linear"), cfg.epochs_of("bilstm")
        (30, 4)
        """
        return self.probe_epochs.get(probe, self.epochs)  # type: ignore[call-overload]

    def lr_of(self, probe: str) -> float:
        """Peak learning rate of ``probe`` (its layer weights keep ``lr_weights``).

        Example
        -------
        >>> cfg = DownstreamCfg(lr=1e-2, probe_lr={"xvector": 1e-3})
        >>> cfg.lr_of("xvector"), cfg.lr_of("ecapa")
        (0.001, 0.01)
        """
        return self.probe_lr.get(probe, self.lr)  # type: ignore[call-overload]


TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "databricks")


class TrackingCfg(Section):
    """MLflow tracking. ``uri: null`` = $MLFLOW_TRACKING_URI or a SQLite store in the project."""

    uri: str | None = None
    experiment: str = "smx"
    log_system_metrics: bool = True
    #: each variant's encoder is registered as ``<registry_prefix>-<variant>``, the newest
    #: version as ``models:/<name>@latest``; null logs the model to its run only
    registry_prefix: str | None = "smx"

    @model_validator(mode="after")
    def _check(self) -> TrackingCfg:
        if self.uri is not None:
            scheme = self.uri.split(":", 1)[0].split("+", 1)[0]
            if ":" not in self.uri or scheme not in TRACKING_SCHEMES:
                raise FieldProblem(
                    "uri",
                    f"'{self.uri}' must start with one of "
                    f"{', '.join(s + ':' for s in TRACKING_SCHEMES)} "
                    "(MLflow's file store is no longer supported)",
                )
        prefix = self.registry_prefix
        if prefix is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", prefix):
            raise FieldProblem(
                "registry_prefix",
                f"'{prefix}' must be letters, digits, '-', '_' or '.' (an MLflow model name)",
            )
        return self


class ClusterCfg(Section):
    """Ray Train workers and storage. Storage URIs may be local paths, s3:// or gs://."""

    num_workers: PositiveInt = 1
    use_gpu: bool = False
    cpus_per_worker: PositiveFloat = 1.0
    gpus_per_worker: Annotated[float, Field(ge=0.0)] = 0.0
    storage_path: str = "ray_results"
    max_failures: NonNegInt = 2

    @model_validator(mode="after")
    def _check(self) -> ClusterCfg:
        if self.use_gpu and self.gpus_per_worker == 0:
            raise FieldProblem(
                "use_gpu", "is true but gpus_per_worker is 0; set gpus_per_worker: 1"
            )
        if not self.use_gpu and self.gpus_per_worker > 0:
            raise FieldProblem("gpus_per_worker", f"{self.gpus_per_worker} needs use_gpu: true")
        return self


class BenchCfg(Section):
    """The pipeline's scaling benchmark (DVC stage ``bench``, ``smx bench pretrain``).

    One full pre-training step (front-end, encoder, objective, backward, optimiser) of each
    variant's model at each utterance length, in a fresh process per point.
    """

    lengths_s: Annotated[list[PositiveFloat], Field(min_length=1)] = Field(
        default_factory=lambda: [20.0, 40.0, 80.0]
    )
    batch: PositiveInt = 1
    repeats: PositiveInt = 3
    warmup: NonNegInt = 1
    #: intra-op threads per measurement (None: one per core)
    threads: PositiveInt | None = None


# ----------------------------------------------------------------------------------------
# the whole configuration


class InitCfg(Section):
    """Where a variant's encoder comes from instead of pre-training.

    ``speechbrain``: a SpeechBrain checkpoint folder (a wav2vec 2.0 save with ``CNN.ckpt`` and
    ``latent_encoder.ckpt``, or an ASR / BEST-RQ save with ``model.ckpt``), imported by the
    pretrain stage (``smx import speechbrain`` by hand); the variant's ``model`` gets the
    SpeechBrain parity options (:func:`speechbrain_parity`).
    """

    speechbrain: Annotated[str, Field(min_length=1)]


def speechbrain_parity(model: ModelCfg) -> ModelCfg:
    """``model`` with the options under which a SpeechBrain checkpoint computes as in SpeechBrain.

    SpeechBrain's log-mel features (``frontend.fbank``), its reflection padding in the conv2d
    front-end (``frontend.conv2d_padding``, with ``kind: conv2d``) and in the Branchformer's
    CSGU (``encoder.conv_padding``), and its symmetric relative positions (``mixer.relpos``,
    with MHSA ``pos: relpos``). Sizes and the feature normalisation stay as configured
    (docs/algorithm.md, "Differences from the SpeechBrain implementation").

    Example
    -------
    >>> model = ModelCfg.model_validate({"encoder": {"block": "branchformer", "pos_enc": "none"},
    ...     "mixer": {"kind": "mhsa", "pos": "relpos"}})
    >>> sb = speechbrain_parity(model)
    >>> sb.frontend.fbank, sb.encoder.conv_padding, sb.mixer.relpos, sb.frontend.conv2d_padding
    ('speechbrain', 'reflect', 'symmetric', 'zeros')
    """
    data = model.model_dump()
    data["frontend"]["fbank"] = "speechbrain"
    if model.frontend.kind == "conv2d":
        data["frontend"]["conv2d_padding"] = "reflect"
    if model.encoder.block == "branchformer":
        data["encoder"]["conv_padding"] = "reflect"
    if isinstance(model.mixer, MHSACfg) and model.mixer.pos == "relpos":
        data["mixer"]["relpos"] = "symmetric"
    return ModelCfg.model_validate(data)


class Params(Section):
    """Every parameter of an smx run. ``variants`` patch ``model`` for pipeline comparisons."""

    seed: NonNegInt = 0
    data: DataCfg = DataCfg()
    model: ModelCfg = ModelCfg()
    ssl: SSLCfg = Wav2Vec2Cfg()
    train: TrainCfg = TrainCfg()
    downstream: DownstreamCfg = DownstreamCfg()
    tracking: TrackingCfg = TrackingCfg()
    cluster: ClusterCfg = ClusterCfg()
    bench: BenchCfg = BenchCfg()
    #: name -> partial ``model`` mapping merged over ``model`` (e.g. ``{mixer: {kind: mhsa}}``);
    #: its ``init`` entry (``{speechbrain: DIR}``) imports the variant's encoder instead of
    #: pre-training it
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: set by :meth:`variant` from the variant's ``init`` (a resolved variant config)
    init: InitCfg | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The fields, ``init`` left out while unset."""
        return _omit_defaults(self, handler(self), ("init",))

    @model_validator(mode="after")
    def _check(self) -> Params:
        self._check_masks()
        self._check_stream_chunks()
        if self.init is not None and self.variants:
            raise FieldProblem(
                "init", "belongs inside a variant (variants.<name>.init), which it imports"
            )
        for name, patch in self.variants.items():
            problem = variant_problems(name, patch)
            if problem:
                raise ValueError(f"variants.{name}: {problem}")
            model_patch = {k: v for k, v in patch.items() if k != "init"}
            for section, where, data in (
                (ModelCfg, "", deep_merge(self.model.model_dump(), model_patch)),
                (InitCfg, "init.", patch.get("init", {"speechbrain": "-"})),
            ):
                try:
                    section.model_validate(data)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    path = ".".join(str(p) for p in first["loc"])
                    raise ValueError(f"variants.{name}.{where}{path}: {first['msg']}") from None
        return self

    def _check_masks(self) -> None:
        """The masked span must fit in the shortest utterance the data filter lets through."""
        fe = self.model.frontend
        shortest = fe.feature_frames(
            int(self.data.min_duration * self.data.sample_rate), self.data.sample_rate
        )
        if self.ssl.kind == "wav2vec2":
            frames = fe.encoder_frames(shortest)
            if self.ssl.mask_length >= frames:
                raise FieldProblem(
                    "ssl.mask_length",
                    f"{self.ssl.mask_length} encoder frames is not shorter than the shortest "
                    "utterance "
                    f"(data.min_duration={self.data.min_duration} s = {frames} frames)",
                )
        else:
            if self.ssl.stack_frames != fe.subsampling:
                raise FieldProblem(
                    "ssl.stack_frames",
                    f"{self.ssl.stack_frames} must equal the front-end's time subsampling "
                    f"({fe.subsampling}) so that every encoder frame has one target",
                )
            if self.ssl.mask_length >= shortest:
                raise FieldProblem(
                    "ssl.mask_length",
                    f"{self.ssl.mask_length} feature frames is not shorter than the shortest "
                    "utterance "
                    f"(data.min_duration={self.data.min_duration} s = {shortest} frames)",
                )

    def _check_stream_chunks(self) -> None:
        """Every streaming-evaluation chunk must hold at least one encoder frame."""
        frame = self.model.frontend.frame_seconds
        for i, seconds in enumerate(self.downstream.finetune.stream_chunks):
            if seconds < frame * (1 - 1e-9):
                raise FieldProblem(
                    f"downstream.finetune.stream_chunks.{i}",
                    f"{seconds} s is shorter than one encoder frame ({frame:g} s with "
                    f"model.frontend.kind '{self.model.frontend.kind}')",
                )

    def variant(self, name: str) -> Params:
        """The full configuration of one variant (``model`` patched by ``variants[name]``).

        A variant with ``init`` carries it in the result's ``init``, and its model gets the
        SpeechBrain parity options (:func:`speechbrain_parity`).

        Arguments
        ---------
        name : str
            A key of ``variants``.

        Returns
        -------
        Params
            The validated configuration, with ``variants`` empty.

        Raises
        ------
        KeyError
            When ``name`` is not a key of ``variants`` (the message lists those defined).

        Example
        -------
        >>> p = Params.model_validate({"variants": {"attn": {"mixer": {"kind": "mhsa"}}}})
        >>> p.variant("attn").model.mixer.kind, p.model.mixer.kind
        ('mhsa', 'summarymixing')
        """
        if name not in self.variants:
            known = ", ".join(sorted(self.variants)) or "none"
            raise KeyError(f"variant '{name}' is not defined in variants (defined: {known})")
        patch = dict(self.variants[name])
        init = patch.pop("init", None)
        data = self.model_dump()
        data["model"] = deep_merge(data["model"], patch)
        data["variants"] = {}
        if init is not None:
            data["init"] = init
            data["model"] = speechbrain_parity(ModelCfg.model_validate(data["model"])).model_dump()
        return Params.model_validate(data)


def variant_problems(name: str, patch: Any) -> str | None:
    """Why a variant entry is unusable before its model is validated.

    Arguments
    ---------
    name : str
        The variant's name (it names files and DVC stages).
    patch : Any
        The variant's entry, a mapping merged over ``model`` when usable.

    Returns
    -------
    str | None
        The problem in words, or None when the entry can be merged and validated.
    """
    if not NAME_RE.match(str(name)):
        return (
            f"variant name '{name}' must be lower-case letters, digits and '_' "
            "(it names files and stages)"
        )
    if not isinstance(patch, dict):
        return "a variant must be a mapping that patches `model` (e.g. {mixer: {kind: mhsa}})"
    if "init" in patch and not isinstance(patch["init"], dict):
        return "init must be a mapping such as {speechbrain: DIR}"
    return None


def flat_values(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to ``{"a.b": value}``; an empty dict below the top stays a value.

    Example
    -------
    >>> flat_values({"a": {"b": 1, "c": {}}, "d": [2]})
    {'a.b': 1, 'a.c': {}, 'd': [2]}
    """
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(flat_values(value, f"{prefix}{key}."))
        if not data and prefix:
            flat[prefix[:-1]] = {}
        return flat
    return {prefix[:-1]: data}


#: the value :func:`differences` gives a key absent on one side
ABSENT = "(absent)"


def differences(left: dict[str, Any], right: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Where two nested dicts differ, compared key by key after :func:`flat_values`.

    Returns
    -------
    list[tuple[str, Any, Any]]
        ``(dotted key, left value, right value)`` for every differing key, sorted by key;
        a key present on one side only differs, with :data:`ABSENT` on the other.

    Example
    -------
    >>> differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0})
    [('a.c', 2, 3), ('d', '(absent)', 0)]
    """
    a, b = flat_values(left), flat_values(right)
    pairs = ((k, a.get(k, ABSENT), b.get(k, ABSENT)) for k in sorted(set(a) | set(b)))
    return [(k, x, y) for k, x, y in pairs if x != y]


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``patch`` into a copy of ``base``; a changed ``kind`` replaces the section.

    Example
    -------
    >>> deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}})
    {'a': {'b': 1, 'c': 3}}
    >>> deep_merge({"m": {"kind": "x", "p": 1}}, {"m": {"kind": "y"}})
    {'m': {'kind': 'y'}}
    """
    out = dict(base)
    for key, value in patch.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            if "kind" in value and value["kind"] != old.get("kind"):
                out[key] = dict(value)  # another union member: its own defaults apply
            else:
                out[key] = deep_merge(old, value)
        else:
            out[key] = value
    return out


def load(path: str | Path) -> Params:
    """Read and validate a YAML config.

    Arguments
    ---------
    path : str | Path
        The YAML file (``params.yaml``, ``configs/*.yaml``).

    Returns
    -------
    Params
        The frozen, validated configuration, defaults filled in.

    Raises
    ------
    ConfigError
        When the file cannot be read or parsed, or fails validation; it lists every problem
        as ``FILE:LINE: dotted.path: message``.

    Example
    -------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    ...     _ = f.write("seed: 3\\n")
    >>> load(f.name).seed
    3
    >>> os.unlink(f.name)
    """
    data, doc = load_yaml(path)
    errors = validation_errors(Params, data, doc, path)
    if errors:
        raise ConfigError(errors)
    return Params.model_validate(data)
