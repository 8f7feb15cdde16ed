"""Tests of the front-ends: log-mel fbank, wav2vec 2.0 CNN latent extractor, Conv2d subsampling."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio

from smx.nn.frontend import CnnLatentExtractor, Conv2dSubsampling, FbankFrontend


def pad_with_garbage(x: torch.Tensor, lengths: torch.Tensor, extra: int) -> torch.Tensor:
    """Append ``extra`` steps on axis 1 and fill everything past each length with noise."""
    x = torch.cat([x, torch.zeros(x.shape[0], extra, *x.shape[2:])], dim=1)
    past_end = torch.arange(x.shape[1])[None, :] >= lengths[:, None]  # [B, T]
    past_end = past_end.reshape(*past_end.shape, *([1] * (x.dim() - 2)))
    return torch.where(past_end, torch.randn_like(x) * 100, x)


# ----------------------------------------------------------------------------------------
# fbank


def test_fbank_frame_count() -> None:
    fbank = FbankFrontend()
    lengths = torch.tensor([16000, 15999, 16001, 3210, 401])
    feats, frames = fbank(torch.randn(5, 16001), lengths)
    assert frames.tolist() == [101, 100, 101, 21, 3]  # samples // 160 + 1
    assert feats.shape == (5, 16001 // 160 + 1, 80)
    assert fbank.output_lengths(torch.tensor([160000])).tolist() == [1001]
    assert fbank.output_dim == 80


def test_fbank_matches_torchaudio_melspectrogram() -> None:
    wav = torch.randn(1, 4000)
    feats, _ = FbankFrontend(normalize="none")(wav, torch.tensor([4000]))
    mel = torchaudio.transforms.MelSpectrogram(
        16000, n_fft=400, win_length=400, hop_length=160, n_mels=80
    )(wav)  # [1, 80, T]
    expected = mel.clamp(min=1e-10).log().transpose(1, 2)
    torch.testing.assert_close(feats, expected, atol=1e-4, rtol=1e-4)


def test_fbank_utterance_normalisation() -> None:
    torch.manual_seed(0)
    lengths = torch.tensor([8000, 5000])
    wav = torch.randn(2, 8000) * torch.tensor([[1.0], [0.01]])
    feats, frames = FbankFrontend()(wav, lengths)
    for i, n in enumerate(frames.tolist()):
        real = feats[i, :n]  # [n, 80]
        torch.testing.assert_close(real.mean(0), torch.zeros(80), atol=1e-4, rtol=0)
        torch.testing.assert_close(real.std(0, unbiased=False), torch.ones(80), atol=1e-3, rtol=0)
        assert bool((feats[i, n:] == 0).all())
    assert frames.tolist() == [51, 32]


def test_fbank_padded_row_equals_utterance_alone() -> None:
    torch.manual_seed(1)
    fbank = FbankFrontend()
    long, short = torch.randn(12000), torch.randn(7333)
    lengths = torch.tensor([12000, 7333])
    wav = torch.stack([long, torch.cat([short, torch.zeros(12000 - 7333)])])
    wav = pad_with_garbage(wav, lengths, 0)  # noise after the short row's end
    feats, frames = fbank(wav, lengths)
    alone, alone_frames = fbank(short[None], torch.tensor([7333]))
    assert frames[1] == alone_frames[0] == 46
    torch.testing.assert_close(feats[1, :46], alone[0], atol=1e-4, rtol=1e-4)
    alone_long, _ = fbank(long[None], torch.tensor([12000]))
    torch.testing.assert_close(feats[0], alone_long[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("style", ["smx", "speechbrain"])
@pytest.mark.parametrize("padding", [1, 43, 199, 200, 201])
def test_fbank_row_ending_within_half_a_window_of_the_batch_end_equals_the_row_alone(
    style: str, padding: int
) -> None:
    # the last frame of the short row reaches past the batch's end: it must see the row's own
    # tail (its reflection or zeros), not what the STFT pads the batch with
    torch.manual_seed(2)
    fbank = FbankFrontend(style=style)  # type: ignore[arg-type]
    long = torch.randn(8000 + padding)
    short = torch.randn(8000)
    lengths = torch.tensor([8000 + padding, 8000])
    wav = torch.stack([long, torch.cat([short, torch.randn(padding)])])  # noise after the end
    feats, frames = fbank(wav, lengths)
    alone, alone_frames = fbank(short[None], torch.tensor([8000]))
    assert frames[1] == alone_frames[0] == 51
    torch.testing.assert_close(feats[1, :51], alone[0], atol=1e-4, rtol=1e-4)
    alone_long, _ = fbank(long[None], lengths[:1])
    torch.testing.assert_close(feats[0], alone_long[0], atol=1e-4, rtol=1e-4)
    assert feats.shape[1] == (8000 + padding) // 160 + 1


def test_fbank_no_grad_and_errors() -> None:
    fbank = FbankFrontend()
    wav = torch.randn(2, 1000, requires_grad=True)
    feats, _ = fbank(wav, torch.tensor([1000, 900]))
    assert not feats.requires_grad
    assert list(fbank.state_dict()) == []  # derived constants are not checkpointed
    with pytest.raises(ValueError, match=r"waveforms must have shape \[B, S\]"):
        fbank(torch.randn(2, 1, 1000), torch.tensor([1000, 1000]))
    with pytest.raises(ValueError, match="lengths must have shape"):
        fbank(torch.randn(2, 1000), torch.tensor([1000]))
    with pytest.raises(ValueError, match="lengths must lie in"):
        fbank(torch.randn(2, 1000), torch.tensor([1001, 10]))
    with pytest.raises(ValueError, match="integer"):
        fbank(torch.randn(2, 1000), torch.tensor([1000.0, 10.0]))
    with pytest.raises(ValueError, match="normalize"):
        FbankFrontend(normalize="batch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="style"):
        FbankFrontend(style="kaldi")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------
# CNN latent extractor


def test_cnn_output_lengths() -> None:
    cnn = CnnLatentExtractor(channels=(16, 16))
    assert cnn.output_lengths(torch.tensor([1001])).tolist() == [498]  # 10 s -> 498 latents
    t = torch.arange(7, 60)
    t1 = (t - 3) // 2 + 1
    assert torch.equal(cnn.output_lengths(t), t1 - 2)
    assert cnn.output_lengths(torch.tensor([0, 1, 4])).tolist() == [0, 0, 0]
    assert cnn.output_lengths(torch.tensor([7])).tolist() == [1]
    assert cnn.min_frames == 7


def test_cnn_shapes_padding_and_invariance() -> None:
    torch.manual_seed(0)
    cnn = CnnLatentExtractor(in_dim=20, channels=(16, 12)).eval()
    lengths = torch.tensor([30, 17])
    feats = torch.randn(2, 30, 20)
    out, out_lengths = cnn(feats, lengths)
    assert out.shape == (2, 12, 12) and cnn.output_dim == 12
    assert out_lengths.tolist() == [12, 6]
    assert bool((out[1, 6:] == 0).all())
    garbage = pad_with_garbage(feats, lengths, 9)
    out_g, _ = cnn(garbage, lengths)
    torch.testing.assert_close(out_g[1, :6], out[1, :6], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_g[0, :12], out[0], atol=1e-5, rtol=1e-5)
    alone, _ = cnn(feats[1:, :17], lengths[1:])
    torch.testing.assert_close(alone[0], out[1, :6], atol=1e-5, rtol=1e-5)
    # the per-utterance normalisation of the whole input removes a gain and an offset
    scaled, _ = cnn(feats * 3.0 + 5.0, lengths)
    torch.testing.assert_close(scaled, out, atol=1e-4, rtol=1e-4)


def test_cnn_gradients_and_init() -> None:
    cnn = CnnLatentExtractor(in_dim=8, channels=(8, 8))
    assert all(conv.bias is None for conv in cnn.convs)
    out, _ = cnn(torch.randn(2, 15, 8), torch.tensor([15, 11]))
    out.square().sum().backward()
    for name, p in cnn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_cnn_errors() -> None:
    with pytest.raises(ValueError, match="same length"):
        CnnLatentExtractor(channels=(8, 8), kernels=(3,), strides=(2, 1))
    cnn = CnnLatentExtractor(in_dim=8, channels=(8, 8))
    with pytest.raises(ValueError, match="at least 7 frames"):
        cnn(torch.randn(1, 6, 8), torch.tensor([6]))
    with pytest.raises(ValueError, match="feature size must be 8"):
        cnn(torch.randn(1, 10, 9), torch.tensor([10]))
    with pytest.raises(ValueError, match=r"feats must have shape \[B, T, F\]"):
        cnn(torch.randn(10, 8), torch.tensor([10]))


# ----------------------------------------------------------------------------------------
# Conv2d subsampling


def test_conv2d_lengths_and_dims() -> None:
    sub = Conv2dSubsampling(80, channels=(64, 32))
    assert sub.output_dim == 32 * 20 == 640  # 80 mel bins -> 40 -> 20
    t = torch.arange(0, 50)
    expected = torch.tensor([math.ceil(math.ceil(n / 2) / 2) for n in t.tolist()])
    assert torch.equal(sub.output_lengths(t), expected)
    assert Conv2dSubsampling(81, channels=(4, 4)).output_dim == 4 * 21
    assert Conv2dSubsampling(80, channels=(4, 4), out_dim=24).output_dim == 24


def test_conv2d_padding_invariance() -> None:
    torch.manual_seed(0)
    sub = Conv2dSubsampling(12, channels=(6, 4), out_dim=10).eval()
    lengths = torch.tensor([23, 9, 14, 5, 1])  # none of the short ones a multiple of 4 but one
    feats = torch.randn(5, 23, 12)
    out, out_lengths = sub(pad_with_garbage(feats, lengths, 6), lengths)
    assert out.shape == (5, math.ceil(29 / 4), 10)
    assert out_lengths.tolist() == [6, 3, 4, 2, 1]
    for i, n in enumerate(lengths.tolist()):
        alone, alone_lengths = sub(feats[i : i + 1, :n], lengths[i : i + 1])
        assert alone.shape[1] == alone_lengths[0] == out_lengths[i]
        torch.testing.assert_close(out[i, : out_lengths[i]], alone[0], atol=1e-5, rtol=1e-5)
        assert bool((out[i, out_lengths[i] :] == 0).all())


def test_conv2d_gradients_and_errors() -> None:
    sub = Conv2dSubsampling(12, channels=(4, 4), out_dim=8)
    out, _ = sub(torch.randn(2, 16, 12), torch.tensor([16, 9]))
    out.square().sum().backward()
    for name, p in sub.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="odd"):
        Conv2dSubsampling(12, kernel_size=4)
    with pytest.raises(ValueError, match="lengths must lie in"):
        sub(torch.randn(2, 16, 12), torch.tensor([17, 9]))
    with pytest.raises(ValueError, match="feature size must be 12"):
        sub(torch.randn(2, 16, 13), torch.tensor([16, 9]))


def test_conv2d_keeps_the_level_across_frequencies() -> None:
    """Each frame is normalised over frequencies and channels together (SpeechBrain's
    LayerNorm), so a louder upper band still reads louder: normalising every time-frequency
    cell over its channels alone would map both inputs below to the same interior outputs."""
    sub = Conv2dSubsampling(16, channels=(4,)).eval()
    with torch.no_grad():
        sub.convs[0].bias.zero_()
    flat = torch.ones(1, 8, 16)
    tilted = flat.clone()
    tilted[..., 8:] = 2.0  # the upper 8 bins one log-mel unit louder
    lengths = torch.tensor([8])
    out_flat = sub(flat, lengths)[0].reshape(1, 4, 8, 4)  # [B, T', F', C]
    out_tilted = sub(tilted, lengths)[0].reshape(1, 4, 8, 4)
    # cells whose 3x3 input patch lies inside the upper band: input bins 9..15, frames 1..5
    upper = (slice(None), slice(1, 3), slice(5, 8))
    assert not torch.allclose(out_flat[upper], out_tilted[upper], atol=1e-3)
    # and within the tilted frame the two bands still read differently
    lower = (slice(None), slice(1, 3), slice(1, 3))
    assert float(out_tilted[upper].mean()) != pytest.approx(float(out_tilted[lower].mean()))
    assert sub.norms[0].normalized_shape == (8, 4)


# ----------------------------------------------------------------------------------------
# SpeechBrain's features, global normalisation, reflection padding


def test_speechbrain_fbank_padded_row_equals_utterance_alone() -> None:
    torch.manual_seed(5)
    fbank = FbankFrontend(style="speechbrain", normalize="none")
    lengths = torch.tensor([8000, 5123])
    wav = pad_with_garbage(torch.randn(2, 8000), lengths, 300)
    feats, frames = fbank(wav, lengths)
    alone, _ = fbank(wav[1:, :5123], lengths[1:])
    torch.testing.assert_close(feats[1, : frames[1]], alone[0, : frames[1]], atol=1e-5, rtol=0)
    assert float(feats[0, : frames[0]].amax() - feats[0, : frames[0]].amin()) <= 80.0 + 1e-4


def test_global_normalisation_accumulates_then_freezes() -> None:
    torch.manual_seed(6)
    fbank = FbankFrontend(normalize="global", global_updates=2)
    assert sorted(fbank.state_dict()) == ["stats_count", "stats_mean", "stats_updates", "stats_var"]
    raw = FbankFrontend(normalize="none")
    wavs = [torch.randn(2, 6000), torch.randn(1, 9000), torch.randn(2, 4000)]
    lengths = [torch.tensor([6000, 3000]), torch.tensor([9000]), torch.tensor([4000, 4000])]
    fbank.eval()
    before, frames = fbank(wavs[0], lengths[0])  # no statistics yet: per utterance
    torch.testing.assert_close(before, FbankFrontend()(wavs[0], lengths[0])[0])
    fbank.train()
    seen = []
    for wav, length in zip(wavs, lengths, strict=True):
        fbank(wav, length)
        feats, frames = raw(wav, length)
        seen += [feats[b, :n] for b, n in enumerate(frames.tolist())]
    frames_seen = torch.cat(seen[:3]).double()  # the first two batches only
    assert int(fbank.stats_updates) == 2 and int(fbank.stats_count) == frames_seen.shape[0]
    torch.testing.assert_close(fbank.stats_mean, frames_seen.mean(0), atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(
        fbank.stats_var, frames_seen.var(0, unbiased=False), atol=1e-8, rtol=1e-8
    )
    fbank.eval()
    feats, frames = fbank(wavs[2], lengths[2])
    expected = (raw(wavs[2], lengths[2])[0] - frames_seen.mean(0)) / (
        frames_seen.var(0, unbiased=False) + 1e-5
    ).sqrt()
    torch.testing.assert_close(feats[0], expected[0].float(), atol=1e-5, rtol=1e-5)
    copy = FbankFrontend(normalize="global", global_updates=2)
    copy.load_state_dict(fbank.state_dict())
    torch.testing.assert_close(copy.eval()(wavs[2], lengths[2])[0], feats)


def test_imported_global_statistics_are_frozen() -> None:
    fbank = FbankFrontend(normalize="global", global_updates=5).train()
    fbank.set_global_stats(
        torch.zeros(80, dtype=torch.float64), torch.ones(80, dtype=torch.float64), 10
    )
    assert int(fbank.stats_updates) == 5
    fbank(torch.randn(1, 4000), torch.tensor([4000]))
    assert int(fbank.stats_count) == 10 and not fbank.stats_mean.any()
    with pytest.raises(ValueError, match=r"mean and var of shape \[80\]"):
        fbank.set_global_stats(torch.zeros(40), torch.ones(40), 10)
    with pytest.raises(ValueError, match="needs normalize='global'"):
        FbankFrontend().set_global_stats(torch.zeros(80), torch.ones(80), 1)


def test_conv2d_reflect_padding_invariance() -> None:
    torch.manual_seed(7)
    sub = Conv2dSubsampling(80, channels=(8, 4), padding="reflect").eval()
    lengths = torch.tensor([41, 23, 5])
    feats = torch.randn(3, 41, 80)
    out, out_lengths = sub(pad_with_garbage(feats, lengths, 6), lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, m = sub(feats[b : b + 1, :n], lengths[b : b + 1])
        assert m.item() == out_lengths[b].item()
        torch.testing.assert_close(out[b, : m.item()], alone[0], atol=1e-5, rtol=1e-5)
        assert not out[b, m.item() :].any()
    assert list(sub.state_dict()) == list(Conv2dSubsampling(80, channels=(8, 4)).state_dict())
