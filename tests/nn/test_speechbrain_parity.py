"""Parity with SpeechBrain's own modules (the pinned ``test-speechbrain`` extra).

SpeechBrain's Conformer (RelPosMHAXL and regular MHA), Branchformer, ``Fbank``,
``InputNormalization``, wav2vec 2.0 latent extractor and Conv2d front-end are built with
random weights (every parameter perturbed, so LayerNorms, biases and position biases are
not at their initial values), their state dicts are converted by :mod:`smx.nn.speechbrain`,
and the smx modules, built with the SpeechBrain parity options, run on padded batches. Each
utterance is compared with SpeechBrain on that utterance alone (eval mode, float32): the
largest absolute difference must stay below 1e-5. Where an option restores parity, the test
also shows that leaving it out breaks it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from smx.config import FrontendCfg, ModelCfg, deep_merge, speechbrain_parity
from smx.nn.build import build_encoder, build_subsampling
from smx.nn.frontend import FbankFrontend
from smx.nn.positional import relative_sinusoidal_positions
from smx.nn.speechbrain import convert_speechbrain_cnn, convert_speechbrain_encoder

sb_features = pytest.importorskip("speechbrain.lobes.features", reason="make test installs it")
from speechbrain.lobes.models.convolution import ConvolutionFrontEnd  # noqa: E402
from speechbrain.lobes.models.transformer.Conformer import ConformerEncoder  # noqa: E402
from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR  # noqa: E402
from speechbrain.lobes.models.wav2vec import EncoderWrapper, W2VLatentExtractor  # noqa: E402
from speechbrain.nnet.attention import RelPosEncXL  # noqa: E402
from speechbrain.nnet.CNN import Conv1d  # noqa: E402
from speechbrain.nnet.normalization import LayerNorm  # noqa: E402
from speechbrain.processing.features import InputNormalization  # noqa: E402

TOL = 1e-5
D, HEADS, LAYERS, D_FFN, KERNEL, CSGU, IN = 64, 4, 2, 128, 7, 96, 40
LENGTHS = [37, 25, 12]  # encoder frames of a padded batch


def perturb(module: torch.nn.Module, seed: int, scale: float = 0.1) -> torch.nn.Module:
    """Add noise to every parameter (LayerNorm weights off 1, biases off 0); eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(scale * noise.to(parameter.dtype))
    return module.eval()


def padded(lengths: list[int], width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch ``[B, T, width]`` with noise (large values) in its padding."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), width, generator=generator)
    for row, length in enumerate(lengths):
        x[row, length:] = 100.0
    return x, torch.tensor(lengths)


def max_diff(ours: torch.Tensor, lengths: torch.Tensor, reference) -> float:
    """Largest |ours - reference(row alone)| over the real frames of every row."""
    worst = 0.0
    for row, length in enumerate(lengths.tolist()):
        expected = reference(row, length)  # [length, ...]
        worst = max(worst, (ours[row, :length] - expected).abs().max().item())
    return worst


# ------------------------------------------------------------------------ positions


def test_symmetric_relative_positions_are_relposencxl() -> None:
    time = 50
    expected = RelPosEncXL(D).make_pe(time)[0]  # [2T - 1, D]
    table, index = relative_sinusoidal_positions(time, time, D, symmetric=True)
    assert (table - expected).abs().max().item() < TOL
    signed, _ = relative_sinusoidal_positions(time, time, D)
    assert (signed - expected).abs().max().item() > 0.5  # sin(d) != sin(|d|) for d < 0
    assert index[3, 5].item() == time - 1 - 2  # query 3, key 5: distance -2


# ------------------------------------------------------------------------ encoders


def sb_transformer(block: str, attention: str, seed: int) -> TransformerASR:
    """SpeechBrain's encoder-only TransformerASR, perturbed, eval mode."""
    relpos = attention == "RelPosMHAXL"
    model = TransformerASR(
        tgt_vocab=10,
        input_size=IN,
        d_model=D,
        nhead=HEADS,
        num_encoder_layers=LAYERS,
        num_decoder_layers=0,
        d_ffn=D_FFN,
        dropout=0.0,
        encoder_module=block,
        attention_type=attention,
        positional_encoding=None if relpos else "fixed_abs_sine",
        normalize_before=True,
        causal=False,
        kernel_size=KERNEL,
        csgu_linear_units=CSGU,
        branchformer_activation=torch.nn.GELU,
    )
    return perturb(model, seed)


def smx_model(block: str, relpos: bool, parity: bool = True) -> ModelCfg:
    """The smx config of :func:`sb_transformer`'s encoder (with the parity options)."""
    mixer = {"kind": "mhsa", "heads": HEADS, "dropout": 0.0, "pos": "relpos" if relpos else "abs"}
    encoder = {
        "block": block,
        "num_layers": LAYERS,
        "d_model": D,
        "d_ffn": D_FFN,
        "kernel_size": KERNEL,
        "csgu_units": CSGU,
        "dropout": 0.0,
        "input_dropout": 0.0,
        "layerdrop": 0.0,
        "activation": "swish" if block == "conformer" else "gelu",
        "pos_enc": "none" if relpos else "abs",
    }
    model = ModelCfg.model_validate({"encoder": encoder, "mixer": mixer})
    return speechbrain_parity(model) if parity else model


def imported(sb_state: dict, model: ModelCfg, **kwargs) -> torch.nn.Module:
    converted = convert_speechbrain_encoder(sb_state, model, **kwargs)
    encoder = build_encoder(model, IN, mask_embedding="mask_embedding" in converted)
    encoder.load_state_dict(converted, strict=True)
    return encoder.eval()


def encoder_diff(sb: TransformerASR, model: ModelCfg, seed: int) -> float:
    encoder = imported(sb.state_dict(), model)
    feats, lengths = padded(LENGTHS, IN, seed)
    with torch.no_grad():
        out = encoder(feats, lengths).last
        return max_diff(out, lengths, lambda b, n: sb.encode(feats[b : b + 1, :n])[0])


@pytest.mark.parametrize(
    ("block", "attention"),
    [
        ("conformer", "RelPosMHAXL"),
        ("conformer", "regularMHA"),
        ("branchformer", "RelPosMHAXL"),
        ("branchformer", "regularMHA"),
    ],
)
def test_encoder_matches_speechbrain(block: str, attention: str) -> None:
    sb = sb_transformer(block, attention, seed=1)
    relpos = attention == "RelPosMHAXL"
    assert encoder_diff(sb, smx_model(block, relpos), seed=2) < TOL


def test_relpos_needs_symmetric_positions() -> None:
    sb = sb_transformer("conformer", "RelPosMHAXL", seed=3)
    model = smx_model("conformer", relpos=True, parity=False)
    assert model.mixer.relpos == "signed"
    assert encoder_diff(sb, model, seed=4) > 1e-3


def test_branchformer_needs_reflection_padding() -> None:
    sb = sb_transformer("branchformer", "regularMHA", seed=5)
    model = smx_model("branchformer", relpos=False, parity=False)
    assert model.encoder.conv_padding == "zeros"
    assert encoder_diff(sb, model, seed=6) > 1e-3


def test_wav2vec2_encoder_wrapper_matches_speechbrain() -> None:
    """The wav2vec 2.0 EncoderWrapper: projection, mask embedding, absolute positions."""
    conformer = ConformerEncoder(
        num_layers=LAYERS,
        d_model=D,
        d_ffn=D_FFN,
        nhead=HEADS,
        kernel_size=KERNEL,
        dropout=0.0,
        attention_type="regularMHA",
    )
    sb = perturb(EncoderWrapper(IN, D, conformer, dropout_encoder_input=0.0), seed=7)
    model = smx_model("conformer", relpos=False)
    encoder = imported(sb.state_dict(), model)
    feats, lengths = padded(LENGTHS, IN, seed=8)
    masked = torch.zeros(feats.shape[:2], dtype=torch.bool)
    masked[:, 3:9] = True
    with torch.no_grad():
        out = encoder(feats, lengths, masked=masked).last

        def reference(b: int, n: int) -> torch.Tensor:
            latents = feats[b : b + 1, :n]
            return sb(latents, mask=masked[b : b + 1, :n])["embeddings"][0]

        assert max_diff(out, lengths, reference) < TOL


# ------------------------------------------------------------------------ features


def waveforms(lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tones in noise, zero-padded (SpeechBrain pads its batches with zeros)."""
    generator = torch.Generator().manual_seed(seed)
    wav = torch.zeros(len(lengths), max(lengths))
    for row, length in enumerate(lengths):
        time = torch.arange(length) / 16000
        tone = 0.3 * torch.sin(2 * torch.pi * (150.0 + 400.0 * row) * time)
        wav[row, :length] = tone + 0.05 * torch.randn(length, generator=generator)
    return wav, torch.tensor(lengths)


@pytest.mark.parametrize(("n_fft", "win_ms"), [(400, 25.0), (512, 32.0)])
def test_fbank_matches_speechbrain(n_fft: int, win_ms: float) -> None:
    sb = sb_features.Fbank(sample_rate=16000, n_fft=n_fft, n_mels=80, win_length=win_ms)
    sentence = InputNormalization(norm_type="sentence")
    wav, lengths = waveforms([16000, 11111, 4321], seed=9)
    win = round(win_ms * 16)
    raw = FbankFrontend(n_fft=n_fft, win_length=win, normalize="none", style="speechbrain")
    norm = FbankFrontend(n_fft=n_fft, win_length=win, style="speechbrain")
    feats, frames = raw(wav, lengths)
    normalised, _ = norm(wav, lengths)
    alone = [sb(wav[b : b + 1, :n]) for b, n in enumerate(lengths.tolist())]
    assert max_diff(feats, frames, lambda b, n: alone[b][0]) < TOL
    reference = lambda b, n: sentence(alone[b], torch.ones(1))[0]  # noqa: E731
    assert max_diff(normalised, frames, reference) < TOL
    smx_style = FbankFrontend(n_fft=n_fft, win_length=win, normalize="none")(wav, lengths)[0]
    assert max_diff(smx_style, frames, lambda b, n: alone[b][0]) > 1.0


def test_global_normalisation_matches_input_normalization() -> None:
    """Exact global statistics of the first N training batches, frozen afterwards."""
    sb_fbank = sb_features.Fbank(sample_rate=16000, n_fft=400, n_mels=80)
    sb_norm = InputNormalization(norm_type="global").train()
    ours = FbankFrontend(normalize="global", style="speechbrain", global_updates=2).train()
    batches = ((10, [9000, 6000]), (11, [12000, 7000, 3000]))
    for step, (seed, lengths) in enumerate(batches, start=1):
        wav, samples = waveforms(lengths, seed)
        feats, frames = ours(wav, samples)
        alone = [sb_fbank(wav[b : b + 1, :n])[0] for b, n in enumerate(samples.tolist())]
        batch = torch.zeros(len(alone), int(frames.max()), 80)
        for row, features in enumerate(alone):
            batch[row, : features.shape[0]] = features
        sb_norm(batch, frames / frames.max())
        assert int(ours.stats_updates) == step
    before = ours.stats_mean.clone()
    ours(*waveforms([5000], seed=12))  # a third training batch: frozen
    assert torch.equal(ours.stats_mean, before) and int(ours.stats_updates) == 2
    assert int(ours.stats_count) == int(sb_norm.count)
    ours.eval()
    sb_norm.eval()
    wav, samples = waveforms([8000, 5000], seed=13)
    feats, frames = ours(wav, samples)
    alone = [sb_fbank(wav[b : b + 1, :n]) for b, n in enumerate(samples.tolist())]
    assert max_diff(feats, frames, lambda b, n: sb_norm(alone[b], torch.ones(1))[0]) < TOL


# ------------------------------------------------------------------------ front-ends


def test_w2v_latent_extractor_matches_speechbrain() -> None:
    """The mel variant of the wav2vec 2.0 latent extractor (arXiv 2407.13377).

    SpeechBrain's W2VLatentExtractor takes raw audio; the recipe's version takes 80 log-mel
    bins: the same ConvolutionFrontEnd built for 80 input channels, after the whole
    utterance is layer-normalised and before the final LayerNorm.
    """
    channels, kernels, strides = [32, 24], [3, 3], [2, 1]
    sb = W2VLatentExtractor(out_channels=channels, kernel_sizes=kernels, strides=strides)
    sb.extractor = ConvolutionFrontEnd(
        (None, 16000, 80),
        num_blocks=2,
        num_layers_per_block=1,
        out_channels=channels,
        kernel_sizes=kernels,
        strides=strides,
        dilations=[1, 1],
        residuals=[False, False],
        conv_module=Conv1d,
        activation=torch.nn.GELU,
        norm=LayerNorm,
        dropout=0.0,
        conv_bias=False,
        padding="valid",
    )
    perturb(sb, seed=14)
    cfg = FrontendCfg(cnn_channels=channels, cnn_kernels=kernels, cnn_strides=strides)
    cnn = build_subsampling(cfg)
    cnn.load_state_dict(convert_speechbrain_cnn(sb.state_dict(), cfg), strict=True)
    feats, lengths = padded([41, 30, 17], 80, seed=15)
    with torch.no_grad():
        out, out_lengths = cnn.eval()(feats, lengths)

        def reference(b: int, n: int) -> torch.Tensor:
            x = feats[b : b + 1, : lengths[b]]
            return sb.norm(sb.extractor(F.layer_norm(x, x.shape[1:])))[0]

        assert max_diff(out, out_lengths, reference) < TOL


def sb_conv2d(seed: int) -> torch.nn.Module:
    return perturb(
        ConvolutionFrontEnd(
            (8, 10, 80),
            num_blocks=2,
            num_layers_per_block=1,
            out_channels=(16, 8),
            kernel_sizes=(3, 3),
            strides=(2, 2),
            residuals=(False, False),
        ),
        seed,
    )


@pytest.mark.parametrize("padding", ["reflect", "zeros"])
def test_conv2d_frontend_matches_speechbrain(padding: str) -> None:
    """SpeechBrain's Conv2d front-end (ASR and BEST-RQ recipes) pads by reflection."""
    sb = sb_conv2d(seed=16)
    cfg = FrontendCfg(kind="conv2d", conv2d_channels=[16, 8], conv2d_padding=padding)
    sub = build_subsampling(cfg)
    state = {f"0.{k}": v for k, v in sb.state_dict().items()}  # module 0 of a model.ckpt
    sub.load_state_dict(convert_speechbrain_cnn(state, cfg, prefix="0."), strict=True)
    feats, lengths = padded([41, 30, 17, 4], 80, seed=17)
    with torch.no_grad():
        out, out_lengths = sub.eval()(feats, lengths)
        reference = lambda b, n: sb(feats[b : b + 1, : lengths[b]])[0].flatten(1)  # noqa: E731
        diff = max_diff(out, out_lengths, reference)
    assert diff < TOL if padding == "reflect" else diff > 1e-3


# ------------------------------------------------------------------------ what cannot match


def test_transformer_layers_and_missing_positions_are_explained() -> None:
    transformer = sb_transformer("transformer", "regularMHA", seed=18)
    with pytest.raises(
        ValueError, match=r"holds SpeechBrain Transformer layers \('encoder\.layers\.0\.self_att\."
    ):
        convert_speechbrain_encoder(transformer.state_dict(), smx_model("conformer", relpos=False))
    absolute = sb_transformer("conformer", "regularMHA", seed=19).state_dict()
    patch = {"encoder": {"pos_enc": "none"}}
    model = ModelCfg.model_validate(deep_merge(smx_model("conformer", False).model_dump(), patch))
    with pytest.raises(ValueError, match=r"holds 'positional_encoding\.pe' .* set it to 'abs'"):
        convert_speechbrain_encoder(absolute, model)
