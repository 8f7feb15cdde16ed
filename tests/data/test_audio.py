"""Audio checks and repairs (one test per kind of bad input), resampling, noise, mixing."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from data_helpers import tone, truncate, write_audio

from smx.data.audio import (
    audio_frames,
    check_audio,
    coloured_noise,
    fast_length,
    mix_at_snr,
    parse_wav,
    resample,
    resample_fft,
    write_flac,
)

RATE = 16000


# ----------------------------------------------------------------------------------------
# bad input: skipped with a reason


def test_truncated_flac_is_skipped(tmp_path: Path) -> None:
    path = truncate(write_audio(tmp_path / "a.flac", tone(2.0)))
    check = check_audio(path, RATE)
    assert not check.ok and check.samples is None
    assert check.reason.startswith(("truncated", "not a readable"))


def test_truncated_wav_is_skipped_although_libsndfile_reads_it(tmp_path: Path) -> None:
    path = truncate(write_audio(tmp_path / "a.wav", tone(2.0), subtype="PCM_16"))
    assert sf.info(str(path)).frames > 0  # libsndfile alone would accept the file
    check = check_audio(path, RATE)
    assert check.reason is not None and check.reason.startswith("truncated WAV")


def test_non_audio_file_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio at all\n" * 20)
    assert check_audio(path, RATE).reason.startswith("not a readable audio file")


def test_empty_file_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "empty.flac"
    path.touch()
    assert check_audio(path, RATE).reason == "empty file (0 bytes)"


def test_zero_length_audio_is_skipped(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32))
    assert check_audio(path, RATE).reason == "zero-length audio (0 samples)"


def test_missing_file_is_skipped(tmp_path: Path) -> None:
    assert check_audio(tmp_path / "nope.wav", RATE).reason == "missing audio file"


def test_all_nan_audio_is_skipped(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "nan.wav", np.full(800, np.nan, np.float32), subtype="FLOAT")
    assert check_audio(path, RATE).reason == "no finite samples (all NaN or inf)"


def test_silent_audio_is_skipped(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "silence.flac", np.zeros(1600, dtype=np.float32))
    assert check_audio(path, RATE).reason == "silent audio (every sample is 0)"


# ----------------------------------------------------------------------------------------
# bad input: repaired


def test_nan_and_inf_samples_are_replaced_by_zero(tmp_path: Path) -> None:
    wave = tone(0.5)
    wave[[10, 20]] = np.nan
    wave[30] = np.inf
    wave[40] = -np.inf
    path = write_audio(tmp_path / "nan.wav", wave, subtype="FLOAT")
    check = check_audio(path, RATE)
    assert check.ok and check.repairs == ("replaced 4 NaN/inf samples with 0",)
    expected = np.where(np.isfinite(wave), wave, 0.0)
    np.testing.assert_array_equal(check.samples, expected)


def test_wrong_sample_rate_is_resampled(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "hi.wav", tone(1.5, rate=44100, freq=300.0), rate=44100)
    check = check_audio(path, RATE)
    assert check.ok and check.repairs == ("resampled 44100 Hz to 16000 Hz",)
    assert check.num_samples == 24000
    inner = slice(2000, 22000)  # away from the edges of the filter
    np.testing.assert_allclose(check.samples[inner], tone(1.5, freq=300.0)[inner], atol=2e-3)


def test_stereo_is_down_mixed_to_the_channel_mean(tmp_path: Path) -> None:
    left, right = tone(0.5, freq=200.0), tone(0.5, freq=500.0)
    path = write_audio(tmp_path / "st.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    check = check_audio(path, RATE)
    assert check.repairs == ("down-mixed 2 channels to mono",)
    np.testing.assert_allclose(check.samples, (left + right) / 2, atol=1e-7)


def test_a_peak_above_full_scale_is_normalised(tmp_path: Path) -> None:
    wave = tone(0.2) * 10  # peak 3.0
    path = write_audio(tmp_path / "loud.wav", wave, subtype="FLOAT")
    check = check_audio(path, RATE)
    assert check.repairs == ("normalised peak 3 to 0.99",)
    np.testing.assert_allclose(check.samples, wave * 0.99 / np.abs(wave).max(), rtol=1e-6)


def test_a_good_file_needs_no_repair_and_keeps_its_samples(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "ok.flac", tone(0.5))
    check = check_audio(path, RATE)
    assert check.ok and check.repairs == () and check.num_samples == 8000
    np.testing.assert_allclose(check.samples, tone(0.5), atol=1 / 32768)


# ----------------------------------------------------------------------------------------
# I/O, resampling, noise


def espeak_like_wav(samples: np.ndarray, rate: int) -> bytes:
    """A WAV as espeak-ng writes it to a pipe: sizes left at 0x7fffffff."""
    pcm = (samples * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 0x7FFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", 0x7FFFFFFF)
        + pcm
    )


def test_parse_wav_reads_a_streamed_header() -> None:
    wave = tone(0.1, rate=22050)
    samples, rate = parse_wav(espeak_like_wav(wave, 22050))
    assert rate == 22050 and samples.shape == wave.shape
    np.testing.assert_allclose(samples, wave, atol=1.5 / 32768)
    with pytest.raises(ValueError, match="RIFF"):
        parse_wav(b"not a wav file")


@pytest.mark.parametrize("n", [1, 2, 7, 97, 441, 1025, 22050])
def test_fast_length_is_the_smallest_5_smooth_number_not_below_n(n: int) -> None:
    def smooth(k: int) -> bool:
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        return k == 1

    expected = next(k for k in range(n, 4 * n + 2) if smooth(k))
    assert fast_length(n) == expected


@pytest.mark.parametrize("n_in", [22050, 22051, 30007])
def test_resample_fft_matches_the_band_limited_signal(n_in: int) -> None:
    rate_in, rate_out = 22050, 16000
    t_in = np.arange(n_in) / rate_in
    window = np.sin(np.pi * np.arange(n_in) / n_in) ** 2  # silent edges, like espeak output
    freqs = (300.0, 1200.0, 5000.0)
    signal = sum(np.sin(2 * np.pi * f * t_in) for f in freqs) * window
    out = resample_fft(signal, rate_in, rate_out)
    n_out = round(n_in * rate_out / rate_in)
    t_out = np.arange(n_out) / rate_out
    expected = sum(np.sin(2 * np.pi * f * t_out) for f in freqs)
    expected *= np.sin(np.pi * t_out * rate_in / n_in) ** 2
    assert out.shape == (n_out,) and out.dtype == np.float32
    assert np.abs(out - expected).max() < 2e-3


def test_resample_fft_removes_content_above_the_new_nyquist() -> None:
    t = np.arange(22050) / 22050
    out = resample_fft(np.sin(2 * np.pi * 9000 * t), 22050, 16000)  # 9 kHz > 8 kHz
    assert np.abs(out).max() < 1e-6


def test_resample_with_lhotse_agrees_with_resample_fft_inside_the_band() -> None:
    t = np.arange(44100) / 44100
    wave = (np.sin(2 * np.pi * 440 * t) * np.hanning(44100)).astype(np.float32)
    a, b = resample(wave, 44100, 16000), resample_fft(wave, 44100, 16000)
    assert a.shape == b.shape == (16000,)
    assert np.abs(a - b).max() < 5e-3


@pytest.mark.parametrize(("kind", "slope_db"), [("white", 0.0), ("pink", -3.0), ("brown", -6.0)])
def test_coloured_noise_has_its_spectral_slope(kind: str, slope_db: float) -> None:
    noise = coloured_noise(kind, 2**16, np.random.default_rng(0))
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0, rel=1e-5)
    power = np.abs(np.fft.rfft(noise)) ** 2
    bands = [power[lo : 2 * lo].mean() for lo in (64, 128, 256, 512, 1024, 2048)]
    per_octave = np.diff(10 * np.log10(bands))
    assert np.mean(per_octave) == pytest.approx(slope_db, abs=0.7)


def test_coloured_noise_is_seeded_and_rejects_unknown_kinds() -> None:
    a = coloured_noise("pink", 1000, np.random.default_rng(3))
    b = coloured_noise("pink", 1000, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="kind"):
        coloured_noise("purple", 10, np.random.default_rng(0))


@pytest.mark.parametrize("snr_db", [30.0, 5.0, -3.0])
def test_mix_at_snr_gives_the_requested_ratio(snr_db: float) -> None:
    rng = np.random.default_rng(1)
    speech, noise = tone(1.0), coloured_noise("brown", RATE, rng)
    added = mix_at_snr(speech, noise, snr_db) - speech
    ratio = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(added**2))
    assert ratio == pytest.approx(snr_db, abs=1e-4)
    with pytest.raises(ValueError, match="noise"):
        mix_at_snr(speech, noise[:-1], snr_db)


def test_write_flac_is_atomic_16_bit_mono_and_readable(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.flac"
    write_flac(path, tone(0.25), RATE)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (
        RATE,
        1,
        4000,
        "PCM_16",
    )
    assert [p.name for p in path.parent.iterdir()] == ["x.flac"]  # no temporary left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's owner-only
    assert audio_frames(path, RATE) == 4000
    assert audio_frames(path, 8000) is None  # wrong rate: not reusable
    assert audio_frames(tmp_path / "missing.flac", RATE) is None
