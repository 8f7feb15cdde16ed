"""Audio I/O, checks and repairs, resampling, noise and mixing (numpy + soundfile).

Every corpus goes through :func:`check_audio`, which decodes a file completely and either
repairs it (down-mix, resample, replace NaN/inf, normalise the peak) or says why it must be
skipped (empty, not audio, zero-length, truncated, silent). Audio is never read with
torchaudio; the high-quality resampler is Lhotse's torch port (imported only when needed),
and the synthetic corpus uses :func:`resample_fft`, exact for signals with silent edges.

Example
-------
>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "tone.flac")
>>> write_flac(path, 0.5 * np.sin(np.arange(8000) / 5), 16000)
>>> check = check_audio(path, 16000)
>>> check.ok, check.num_samples, check.repairs
(True, 8000, ())
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

PEAK = 0.99  # peak of repaired or mixed audio (full scale = 1.0)
_UNKNOWN_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF}  # streaming WAV headers leave sizes open
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@dataclass(frozen=True)
class AudioCheck:
    """What :func:`check_audio` found.

    Arguments
    ---------
    samples : np.ndarray or None
        ``[S]`` float32 mono audio at the target rate, or None when skipped.
    sampling_rate : int
        The target rate.
    repairs : tuple[str, ...]
        What was changed, in words (empty when the file is fine as it is).
    reason : str or None
        Why the file must be skipped, or None.

    Example: the module docstring.
    """

    samples: np.ndarray | None
    sampling_rate: int
    repairs: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when the audio is usable (possibly after repairs)."""
        return self.reason is None

    @property
    def num_samples(self) -> int:
        """Samples of the (repaired) audio; 0 when skipped."""
        return 0 if self.samples is None else int(self.samples.shape[0])


def _skip(reason: str, sampling_rate: int) -> AudioCheck:
    """The check of a file that must be skipped for ``reason``."""
    return AudioCheck(None, sampling_rate, (), reason)


def parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decode 16-bit PCM WAV bytes (e.g. espeak-ng ``--stdout``, whose sizes are left open).

    Arguments
    ---------
    data : bytes
        The bytes of a RIFF/WAVE file with 16-bit PCM samples.

    Returns
    -------
    tuple[np.ndarray, int]
        ``samples [S]`` float32 in [-1, 1] (channels averaged) and the sampling rate.

    Raises
    ------
    ValueError
        Not RIFF/WAVE, not 16-bit PCM, or no ``data`` chunk.

    Example
    -------
    >>> import io
    >>> buf = io.BytesIO()
    >>> sf.write(buf, np.array([0.0, 0.5, -0.5]), 22050, format="WAV", subtype="PCM_16")
    >>> x, sr = parse_wav(buf.getvalue())
    >>> sr, np.round(x, 3).tolist()
    (22050, [0.0, 0.5, -0.5])
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("data: expected RIFF/WAVE bytes")
    pos, rate, channels, bits = 12, 0, 1, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = pos + 8
        if chunk == b"fmt ":
            _, channels, rate, _, _, bits = struct.unpack("<HHIIHH", data[body : body + 16])
        elif chunk == b"data":
            if bits != 16:
                raise ValueError(f"data: expected 16-bit PCM, got {bits} bits")
            end = len(data) if size in _UNKNOWN_SIZES else min(len(data), body + size)
            end -= (end - body) % (2 * channels)
            pcm = np.frombuffer(data[body:end], dtype="<i2").reshape(-1, channels)
            return (pcm.astype(np.float32) / 32768.0).mean(axis=1), rate
        pos = body + size + (size & 1)
    raise ValueError("data: no 'data' chunk in the WAV bytes")


def wav_truncation(path: str | Path) -> str | None:
    """Why a WAV file is truncated (its data chunk is shorter than its header says), or None.

    libsndfile silently reads what is there, so this check reads the RIFF header itself.
    Non-WAV files and streaming headers (sizes left open) give None.

    Arguments
    ---------
    path : str or Path
        Any file.

    Returns
    -------
    str or None
        The reason, naming the declared and the present data bytes.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(path, np.zeros(1000), 16000, subtype="PCM_16")
    >>> wav_truncation(path) is None
    True
    >>> with open(path, "r+b") as fh:
    ...     _ = fh.truncate(1000)
    >>> wav_truncation(path)
    'truncated WAV: header declares 2000 data bytes, file holds 956'
    """
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    size_on_disk = os.path.getsize(path)
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if chunk == b"data":
            have = size_on_disk - (pos + 8)
            if size not in _UNKNOWN_SIZES and have < size:
                return f"truncated WAV: header declares {size} data bytes, file holds {have}"
            return None
        pos += 8 + size + (size & 1)
    return None


def fast_length(n: int) -> int:
    """The smallest 5-smooth number (only factors 2, 3, 5) >= ``n``: a fast FFT length.

    Arguments
    ---------
    n : int
        The least length, at least 1.

    Returns
    -------
    int
        The FFT length.

    Example
    -------
    >>> fast_length(1), fast_length(97), fast_length(1025)
    (1, 100, 1080)
    """
    best = None
    p5 = 1
    while True:
        p35 = p5
        while True:
            quotient = -(-n // p35)  # ceil(n / p35)
            p2 = 1 << max(0, (quotient - 1).bit_length())
            candidate = p2 * p35
            best = candidate if best is None else min(best, candidate)
            if p35 >= n:
                break
            p35 *= 3
        if p5 >= n:
            break
        p5 *= 5
    return best


def resample_fft(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling of a whole signal in the frequency domain.

    Exact for signals that start and end in silence (such as espeak-ng output); use
    :func:`resample` for arbitrary recordings.

    Arguments
    ---------
    samples : np.ndarray
        ``[S]`` mono audio.
    rate_in, rate_out : int
        Sampling rates in Hz.

    Returns
    -------
    np.ndarray
        ``[round(S * rate_out / rate_in)]`` float32.

    Example
    -------
    >>> t = np.arange(22050) / 22050
    >>> y = resample_fft(np.sin(2 * np.pi * 440 * t), 22050, 16000)
    >>> y.shape, float(np.abs(y - np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).max()) < 1e-6
    ((16000,), True)
    """
    if rate_in == rate_out:
        return samples.astype(np.float32)
    target = round(samples.shape[0] * rate_out / rate_in)
    if samples.shape[0] == 0 or target == 0:
        return np.zeros(target, dtype=np.float32)
    # zero-pad to a length whose input and output sizes are both fast FFT lengths
    g = math.gcd(rate_in, rate_out)
    step_in, step_out = rate_in // g, rate_out // g
    blocks = fast_length(-(-samples.shape[0] // step_in))
    n_in, n_out = blocks * step_in, blocks * step_out
    spectrum = np.fft.rfft(samples.astype(np.float64), n=n_in)  # [n_in // 2 + 1]
    out = np.zeros(n_out // 2 + 1, dtype=np.complex128)
    keep = min(spectrum.shape[0], out.shape[0])
    out[:keep] = spectrum[:keep]
    if n_out < n_in and n_out % 2 == 0:
        out[-1] = out[-1].real  # the new Nyquist bin of a real signal is real
    resampled = np.fft.irfft(out, n=n_out) * (n_out / n_in)  # [n_out]
    return resampled[:target].astype(np.float32)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample ``[S]`` audio with a windowed-sinc filter (Lhotse's torch resampler).

    Arguments
    ---------
    samples : np.ndarray
        ``[S]`` mono audio of any kind (a decoded recording need not start in silence).
    rate_in, rate_out : int
        The rate of ``samples`` and the rate wanted, in Hz.

    Returns
    -------
    np.ndarray
        ``[round(S * rate_out / rate_in)]`` float32 (``samples`` itself at equal rates).

    Example
    -------
    >>> resample(np.zeros(44100, dtype=np.float32), 44100, 16000).shape
    (16000,)
    """
    if rate_in == rate_out:
        return samples.astype(np.float32)
    import torch
    from lhotse.augmentation.resample import Resample

    wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]  # [1, S]
    out = Resample(rate_in, rate_out)(wave)[0]  # [S']
    target = round(samples.shape[0] * rate_out / rate_in)
    return out.numpy()[:target].astype(np.float32)


def coloured_noise(kind: str, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f^2 power) noise with unit RMS.

    Arguments
    ---------
    kind : str
        ``white``, ``pink`` or ``brown``.
    num_samples : int
        Length S.
    rng : np.random.Generator
        Random generator.

    Returns
    -------
    np.ndarray
        ``[S]`` float32, zero mean.

    Raises
    ------
    ValueError
        ``kind`` is none of the three.

    Example
    -------
    >>> n = coloured_noise("pink", 16000, np.random.default_rng(0))
    >>> n.shape, round(float(np.sqrt(np.mean(n**2))), 3)
    ((16000,), 1.0)
    """
    exponents = {"white": 0.0, "pink": 0.5, "brown": 1.0}
    if kind not in exponents:
        raise ValueError(f"kind: expected one of {sorted(exponents)}, got '{kind}'")
    if kind == "white":
        noise = rng.standard_normal(num_samples)
    else:
        n_fft = fast_length(num_samples)
        spectrum = np.fft.rfft(rng.standard_normal(n_fft))  # [n_fft // 2 + 1]
        freqs = np.arange(spectrum.shape[0], dtype=np.float64)
        freqs[0] = 1.0
        noise = np.fft.irfft(spectrum / freqs ** exponents[kind], n=n_fft)[:num_samples]
    noise = noise - noise.mean()
    return (noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)).astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add ``noise`` to ``speech`` at a signal-to-noise ratio of ``snr_db`` (power ratio).

    Arguments
    ---------
    speech, noise : np.ndarray
        ``[S]`` audio of equal length.
    snr_db : float
        10 log10(speech power / noise power) after mixing.

    Returns
    -------
    np.ndarray
        ``[S]`` speech plus scaled noise.

    Raises
    ------
    ValueError
        The shapes differ.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> s, n = rng.standard_normal(1000), rng.standard_normal(1000)
    >>> mixed = mix_at_snr(s, n, 10.0)
    >>> round(float(10 * np.log10(np.mean(s**2) / np.mean((mixed - s) ** 2))), 6)
    10.0
    """
    if speech.shape != noise.shape:
        raise ValueError(f"noise: expected shape {speech.shape}, got {noise.shape}")
    p_speech = float(np.mean(speech.astype(np.float64) ** 2))
    p_noise = max(float(np.mean(noise.astype(np.float64) ** 2)), 1e-20)
    gain = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    return speech + gain * noise


def limit_peak(samples: np.ndarray, peak: float = PEAK) -> np.ndarray:
    """Scale ``samples`` down so that their absolute peak is at most ``peak``.

    Arguments
    ---------
    samples : np.ndarray
        ``[S]`` audio.
    peak : float
        The largest allowed absolute value.

    Returns
    -------
    np.ndarray
        ``[S]``, ``samples`` itself when already within ``peak``.

    Example
    -------
    >>> limit_peak(np.array([0.5, -2.0]), peak=1.0).tolist(), limit_peak(np.array([0.5])).tolist()
    ([0.25, -1.0], [0.5])
    """
    top = float(np.max(np.abs(samples))) if samples.size else 0.0
    return samples * (peak / top) if top > peak else samples


def write_flac(path: str | Path, samples: np.ndarray, sampling_rate: int) -> None:
    """Write ``[S]`` float audio as 16-bit FLAC, atomically (temporary file, then rename).

    Arguments
    ---------
    path : str or Path
        The destination (folders are created).
    samples : np.ndarray
        ``[S]`` float audio in [-1, 1] (clipped to it).
    sampling_rate : int
        In Hz.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x", "a.flac")
    >>> write_flac(path, np.zeros(160), 16000)
    >>> sf.info(path).frames, sorted(os.listdir(os.path.dirname(path)))
    (160, ['a.flac'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".flac", dir=path.parent)
    os.close(fd)
    try:
        clipped = np.clip(samples, -1.0, 32767 / 32768)
        sf.write(tmp, clipped, sampling_rate, format="FLAC", subtype="PCM_16")
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; audio is shared
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def audio_frames(path: str | Path, sampling_rate: int) -> int | None:
    """Samples of a finished mono file at ``sampling_rate`` (header only), or None if unusable.

    Used on re-runs to keep audio that a previous run already wrote.

    Arguments
    ---------
    path : str or Path
        An audio file, possibly missing.
    sampling_rate : int
        The rate the file must have.

    Returns
    -------
    int or None
        Its number of samples; None when missing, unreadable, not mono, at another rate,
        or empty.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.flac")
    >>> write_flac(path, np.zeros(160), 16000)
    >>> audio_frames(path, 16000), audio_frames(path, 8000), audio_frames(path + "x", 16000)
    (160, None, None)
    """
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None
    if info.samplerate != sampling_rate or info.channels != 1 or info.frames <= 0:
        return None
    return int(info.frames)


def _decode(path: Path) -> tuple[np.ndarray, int] | str:
    """Decode a whole file to ``[S, C]`` float32 and its rate, or say why it cannot be used."""
    if not path.is_file():
        return "missing audio file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    truncated = wav_truncation(path)
    if truncated:
        return truncated
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        return f"not a readable audio file ({_short(exc)})"
    if info.frames == 0:
        return "zero-length audio (0 samples)"
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [S, C]
    except (sf.LibsndfileError, RuntimeError) as exc:
        return f"truncated or corrupt audio ({_short(exc)})"
    if data.shape[0] < info.frames:
        return f"truncated audio: header declares {info.frames} samples, decoded {data.shape[0]}"
    return data, rate


def _repair(data: np.ndarray, rate: int, sampling_rate: int) -> AudioCheck:
    """Mono, finite, ``sampling_rate`` audio from decoded ``data [S, C]``, or why it is unusable."""
    repairs: list[str] = []
    samples = data[:, 0]  # [S]
    if data.shape[1] > 1:
        samples = data.mean(axis=1)
        repairs.append(f"down-mixed {data.shape[1]} channels to mono")
    bad = ~np.isfinite(samples)
    if bad.all():
        return _skip("no finite samples (all NaN or inf)", sampling_rate)
    if bad.any():
        samples = np.where(bad, np.float32(0.0), samples)
        repairs.append(f"replaced {int(bad.sum())} NaN/inf samples with 0")
    if rate != sampling_rate:
        samples = resample(samples, rate, sampling_rate)
        repairs.append(f"resampled {rate} Hz to {sampling_rate} Hz")
    top = float(np.max(np.abs(samples)))
    if top == 0.0:
        return _skip("silent audio (every sample is 0)", sampling_rate)
    if top > 1.0:
        samples = limit_peak(samples)
        repairs.append(f"normalised peak {top:.3g} to {PEAK}")
    if samples.shape[0] == 0:
        return _skip("zero-length audio after resampling", sampling_rate)
    return AudioCheck(samples.astype(np.float32), sampling_rate, tuple(repairs), None)


def check_audio(path: str | Path, sampling_rate: int) -> AudioCheck:
    """Decode a file completely and repair it for training, or say why it must be skipped.

    Repairs: down-mix to mono, resample to ``sampling_rate``, replace NaN/inf samples by 0,
    scale a peak above full scale down to 0.99. Skips: missing, empty, not audio,
    zero-length, truncated, no finite samples, silent.

    Arguments
    ---------
    path : str or Path
        The audio file (any format libsndfile reads: WAV, FLAC, OGG, MP3 ...).
    sampling_rate : int
        The target rate in Hz.

    Returns
    -------
    AudioCheck
        The usable audio and its repairs, or the reason to skip the file.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "stereo.wav")
    >>> sf.write(path, np.full((8000, 2), 0.1, dtype=np.float32), 8000)
    >>> check = check_audio(path, 16000)
    >>> check.num_samples, check.repairs
    (16000, ('down-mixed 2 channels to mono', 'resampled 8000 Hz to 16000 Hz'))
    """
    decoded = _decode(Path(path))
    if isinstance(decoded, str):
        return _skip(decoded, sampling_rate)
    data, rate = decoded
    return _repair(data, rate, sampling_rate)


def _short(exc: BaseException) -> str:
    """libsndfile's message without its ``Error opening <path>:`` prefix, on one line."""
    text = " ".join(str(exc).split())
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text
