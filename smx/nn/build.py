"""Build smx.nn modules from the validated config (:mod:`smx.config`).

The only place where config sections turn into modules: mixers, blocks, the encoder and
the front-end parts. Everything else takes modules, not configs.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from smx.config import EncoderCfg, FrontendCfg, MixerCfg, ModelCfg
from smx.nn.base import Mixer
from smx.nn.blocks import BranchformerBlock, ConformerBlock, TransformerBlock
from smx.nn.encoder import Encoder
from smx.nn.frontend import CnnLatentExtractor, Conv2dSubsampling, FbankFrontend


def _summary_mixing(cfg: Any, encoder: EncoderCfg) -> Mixer:
    """SummaryMixing of ``cfg`` (a ``SummaryMixingCfg``) at the encoder's width."""
    from smx.nn.mixers.summary_mixing import SummaryMixing

    return SummaryMixing(
        encoder.d_model,
        mode=cfg.mode,
        local_hidden=cfg.local_hidden,
        local_out=cfg.local_out,
        summary_hidden=cfg.summary_hidden,
        heads=cfg.heads,
        use_layernorm=cfg.use_layernorm,
        dropout=cfg.dropout,
        activation=encoder.activation,
        decay=cfg.decay,
        activation_checkpointing=cfg.activation_checkpointing,
        recompute=cfg.recompute,
    )


def build_mixer(cfg: MixerCfg, encoder: EncoderCfg) -> Mixer:
    """The mixer of ``cfg`` at the encoder's width (SummaryMixing uses its activation).

    Arguments
    ---------
    cfg : MixerCfg
        The mixer config; ``cfg.kind`` picks the class.
    encoder : EncoderCfg
        The encoder config (width ``d_model`` and activation).

    Returns
    -------
    Mixer
        A fresh mixer ``[B, T, D] -> [B, T, D]``.

    Example
    -------
    >>> from smx.config import MHSACfg
    >>> type(build_mixer(MHSACfg(heads=2), EncoderCfg(d_model=16))).__name__
    'MultiHeadSelfAttention'
    """
    d_model = encoder.d_model
    if cfg.kind == "summarymixing":
        return _summary_mixing(cfg, encoder)
    if cfg.kind == "mhsa":
        from smx.nn.mixers.mhsa import MultiHeadSelfAttention

        return MultiHeadSelfAttention(
            d_model, cfg.heads, dropout=cfg.dropout, pos=cfg.pos, relpos=cfg.relpos
        )
    if cfg.kind == "fastformer":
        from smx.nn.mixers.fastformer import Fastformer

        return Fastformer(d_model, cfg.heads, dropout=cfg.dropout)
    if cfg.kind == "hypermixing":
        from smx.nn.mixers.hypermixing import HyperMixing

        return HyperMixing(d_model, cfg.heads, cfg.hypernet_size, dropout=cfg.dropout)
    if cfg.kind == "none":  # the no-mixing ablation (benchmark floor)
        from smx.nn.mixers.no_mixing import NoMixing

        return NoMixing(d_model)
    from smx.nn.mixers.mamba import BiMamba

    return BiMamba(
        d_model, d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand, dt_rank=cfg.dt_rank
    )


def build_block(encoder: EncoderCfg, mixer: MixerCfg) -> nn.Module:
    """One encoder layer of the configured type hosting a fresh mixer.

    Arguments
    ---------
    encoder : EncoderCfg
        The encoder config (block type, widths, dropout, activation).
    mixer : MixerCfg
        The mixer config.

    Returns
    -------
    nn.Module
        A Conformer, Transformer or Branchformer block.

    Example
    -------
    >>> from smx.config import MHSACfg
    >>> type(build_block(EncoderCfg(d_model=16), MHSACfg(heads=2))).__name__
    'ConformerBlock'
    """
    m = build_mixer(mixer, encoder)
    if encoder.block == "conformer":
        return ConformerBlock(
            encoder.d_model,
            m,
            d_ffn=encoder.d_ffn,
            kernel_size=encoder.kernel_size,
            dropout=encoder.dropout,
            activation=encoder.activation,
        )
    if encoder.block == "transformer":
        return TransformerBlock(
            encoder.d_model,
            m,
            d_ffn=encoder.d_ffn,
            dropout=encoder.dropout,
            activation=encoder.activation,
        )
    # SpeechBrain's SummaryMixing Branchformer merges with an MLP (hidden = summary_hidden[0]).
    merge_hidden = mixer.summary_hidden[0] if mixer.kind == "summarymixing" else None
    return BranchformerBlock(
        encoder.d_model,
        m,
        csgu_units=encoder.csgu_units,
        kernel_size=encoder.kernel_size,
        dropout=encoder.dropout,
        activation=encoder.activation,
        merge_hidden=merge_hidden,
        conv_padding=encoder.conv_padding,
    )


def build_encoder(model: ModelCfg, input_dim: int, mask_embedding: bool = False) -> Encoder:
    """The encoder stack of ``model`` over ``input_dim`` features per frame.

    Arguments
    ---------
    model : ModelCfg
        The encoder and mixer configs.
    input_dim : int
        Features per input frame (the front-end's ``output_dim``).
    mask_embedding : bool
        Give the encoder a learned embedding for masked frames (wav2vec 2.0).

    Returns
    -------
    Encoder
        ``model.encoder.num_layers`` blocks, each with its own mixer.

    Example
    -------
    >>> from smx.config import ModelCfg
    >>> cfg = ModelCfg.model_validate({"encoder": {"num_layers": 2, "d_model": 32, "d_ffn": 64},
    ...     "mixer": {"kind": "summarymixing", "local_hidden": [32], "local_out": 32,
    ...               "summary_hidden": [32], "heads": 4}})
    >>> enc = build_encoder(cfg, input_dim=80)
    >>> len(enc.blocks), enc.d_model
    (2, 32)
    """
    enc = model.encoder
    return Encoder(
        input_dim,
        enc.d_model,
        [build_block(enc, model.mixer) for _ in range(enc.num_layers)],
        input_dropout=enc.input_dropout,
        layerdrop=enc.layerdrop,
        pos_enc=enc.pos_enc,
        mask_embedding=mask_embedding,
    )


def build_fbank(frontend: FrontendCfg, sample_rate: int) -> FbankFrontend:
    """Log-mel features of the front-end config (on the device, normalised as configured).

    Arguments
    ---------
    frontend : FrontendCfg
        Mel bins, FFT size, window, hop, the log-mel recipe (``fbank``) and the
        normalisation (``normalize``, ``global_norm_updates``).
    sample_rate : int
        Sampling rate of the audio in Hz.

    Returns
    -------
    FbankFrontend
        The feature extractor (no parameters).

    Example
    -------
    >>> build_fbank(FrontendCfg(), 16000).output_dim
    80
    """
    ms = sample_rate / 1000
    return FbankFrontend(
        sample_rate=sample_rate,
        n_mels=frontend.n_mels,
        n_fft=frontend.n_fft,
        win_length=round(frontend.win_ms * ms),
        hop_length=frontend.hop_samples(sample_rate),
        normalize=frontend.normalize,
        style=frontend.fbank,
        global_updates=frontend.global_norm_updates,
    )


def build_subsampling(
    frontend: FrontendCfg, dropout: float = 0.0
) -> CnnLatentExtractor | Conv2dSubsampling:
    """The network between log-mel frames and encoder frames.

    Arguments
    ---------
    frontend : FrontendCfg
        ``kind`` (``"mel_cnn"`` or ``"conv2d"``), its channels and the conv2d padding.
    dropout : float
        Dropout after each conv2d block (the encoder's ``dropout``, as SpeechBrain's
        front-end takes its recipe's; the CNN latent extractor has none).

    Returns
    -------
    CnnLatentExtractor or Conv2dSubsampling
        The subsampling network.

    Example
    -------
    >>> build_subsampling(FrontendCfg(kind="conv2d")).output_dim
    640
    """
    if frontend.kind == "mel_cnn":
        return CnnLatentExtractor(
            frontend.n_mels, frontend.cnn_channels, frontend.cnn_kernels, frontend.cnn_strides
        )
    return Conv2dSubsampling(
        frontend.n_mels,
        frontend.conv2d_channels,
        dropout=dropout,
        padding=frontend.conv2d_padding,
    )
