"""Front-ends: log-mel filterbanks from waveforms, then a subsampling network.

* :class:`FbankFrontend`: waveforms -> 80-dim log-mel features (25 ms window, 10 ms hop),
  computed on the input's device without gradient, normalised per utterance or with global
  statistics (docs/algorithm.md, "Front-end"); ``style="speechbrain"`` computes SpeechBrain's
  ``Fbank`` instead of smx's own.
* :class:`CnnLatentExtractor`: the wav2vec 2.0 "mel_cnn" latent extractor, two valid Conv1d
  over time (strides 2, 1): 10 ms -> 20 ms frames (arXiv 2407.13377).
* :class:`Conv2dSubsampling`: two stride-2 Conv2d blocks over time and frequency:
  10 ms -> 40 ms frames (docs/algorithm.md, "Front-end").

Each one maps a padded batch and its lengths to a padded batch and new lengths, exposes
``output_dim`` and ``output_lengths(...)``, zeroes padded frames, and gives real frames that
do not depend on how much padding follows them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Literal

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from smx.nn.base import lengths_to_mask
from smx.nn.convolution import ConvPadding, reflect_index
from smx.nn.means import masked_mean

FbankStyle = Literal["smx", "speechbrain"]
Normalization = Literal["utterance", "global", "none"]


def check_features(feats: torch.Tensor, lengths: torch.Tensor, feat_dim: int, name: str) -> None:
    """Raise a ValueError naming the argument when ``feats`` or ``lengths`` is malformed.

    Arguments
    ---------
    feats : torch.Tensor
        ``[B, T, F]`` with ``F == feat_dim``.
    lengths : torch.Tensor
        ``[B]`` integer lengths in ``[0, T]`` (the range is not checked while compiling,
        since that needs the values).
    feat_dim : int
        Expected feature size.
    name : str
        Module name used in the message.

    Example
    -------
    >>> check_features(torch.zeros(2, 5, 3), torch.tensor([5, 2]), 3, "m")
    >>> check_features(torch.zeros(2, 5, 3), torch.tensor([6, 2]), 3, "m")
    Traceback (most recent call last):
    ...
    ValueError: m: lengths must lie in [0, T=5], got [6, 2]
    """
    if feats.dim() != 3:
        raise ValueError(f"{name}: feats must have shape [B, T, F], got {feats.dim()} dimensions")
    if feats.shape[-1] != feat_dim:
        raise ValueError(f"{name}: feats feature size must be {feat_dim}, got {feats.shape[-1]}")
    _check_lengths(lengths, feats.shape[0], feats.shape[1], name, "T")


def _check_lengths(lengths: torch.Tensor, batch: int, max_len: int, name: str, axis: str) -> None:
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ValueError(
            f"{name}: lengths must have shape [B] = [{batch}], got {list(lengths.shape)}"
        )
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise ValueError(f"{name}: lengths must be an integer tensor, got {lengths.dtype}")
    if not torch.compiler.is_compiling() and bool(((lengths < 0) | (lengths > max_len)).any()):
        raise ValueError(
            f"{name}: lengths must lie in [0, {axis}={max_len}], got {lengths.tolist()}"
        )


def _masked_mean_std(
    x: torch.Tensor, pad_mask: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and ``sqrt(biased variance + eps)`` of ``x`` over the real entries of ``pad_mask``.

    ``pad_mask`` covers the leading axes of ``x`` (see :func:`smx.nn.means.masked_mean`);
    both statistics keep the averaged axes with size 1.
    """
    mean = masked_mean(x, pad_mask, keepdim=True)
    var = masked_mean((x - mean).square(), pad_mask, keepdim=True)
    return mean, (var + eps).sqrt()


def speechbrain_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """SpeechBrain's triangular mel filters (its ``Filterbank`` with the defaults of ``Fbank``).

    ``n_mels + 2`` points equally spaced on the mel scale ``m(f) = 2595 log10(1 + f / 700)``
    from 0 to ``sample_rate // 2`` Hz give, for filter ``i``, the centre ``c_i`` (point
    ``i + 1``) and the half-width ``w_i = c_i - (point i)``; the filter is the *symmetric*
    triangle ``max(0, 1 - |f - c_i| / w_i)`` over the FFT bin frequencies
    ``f = linspace(0, sample_rate // 2, n_fft // 2 + 1)``, unnormalised (torchaudio's HTK
    filters instead end at the next point, so their two sides differ). Computed in float32,
    as SpeechBrain computes it: the same filters computed in float64 differ by up to 1e-5,
    which moves the features by about 1e-4 dB.

    Arguments
    ---------
    sample_rate : int
        Sampling rate in Hz.
    n_fft : int
        FFT size.
    n_mels : int
        Number of filters.

    Returns
    -------
    torch.Tensor
        ``[n_fft // 2 + 1, n_mels]`` float32.

    Example
    -------
    >>> bank = speechbrain_filterbank(16000, 400, 80)
    >>> bank.shape, float(bank.max()) <= 1.0, bool((bank.sum(0) > 0).all())
    (torch.Size([201, 80]), True, True)
    """
    top = sample_rate // 2
    mel_top = 2595.0 * math.log10(1.0 + top / 700.0)
    points = torch.linspace(0.0, mel_top, n_mels + 2, dtype=torch.float32)  # [M + 2] mel
    hertz = 700.0 * (10.0 ** (points / 2595.0) - 1.0)  # [M + 2]
    centre, width = hertz[1:-1], hertz[1:-1] - hertz[:-2]  # [M]
    freqs = torch.linspace(0.0, float(top), n_fft // 2 + 1, dtype=torch.float32)  # [n_stft]
    slope = (freqs[:, None] - centre[None, :]).abs() / width[None, :]  # [n_stft, M]
    return (1.0 - slope).clamp(min=0.0)


def decibels(mel: torch.Tensor, pad_mask: torch.Tensor, top_db: float = 80.0) -> torch.Tensor:
    """``10 log10(max(mel, 1e-10))`` floored ``top_db`` below each utterance's maximum.

    The maximum runs over the real frames (``pad_mask``) and every bin of the utterance, as
    SpeechBrain's ``Filterbank`` takes it over a sequence alone.

    Arguments
    ---------
    mel : torch.Tensor
        ``[B, T, F]`` mel power.
    pad_mask : torch.Tensor
        ``[B, T]`` bool, True = real frame.
    top_db : float
        Dynamic range kept below the maximum.

    Returns
    -------
    torch.Tensor
        ``[B, T, F]`` in dB.

    Example
    -------
    >>> mel = torch.tensor([[[1.0, 1e-12], [100.0, 0.1]]])
    >>> decibels(mel, torch.tensor([[True, True]]), top_db=25.0).tolist()
    [[[0.0, -5.0], [20.0, -5.0]]]
    """
    db = 10.0 * torch.log10(mel.clamp(min=1e-10))  # [B, T, F]
    peak = db.masked_fill(~pad_mask[..., None], -math.inf).amax(dim=(1, 2))  # [B]
    floor = (peak - top_db).nan_to_num(neginf=-100.0)  # rows without real frames
    return torch.maximum(db, floor[:, None, None])


def _all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over the processes of ``torch.distributed`` (itself when alone)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values)
    return values


class FbankFrontend(nn.Module):
    """Log-mel filterbank features with per-utterance or global normalisation.

    ``style="smx"``: power mel spectrogram (Hann window, centred frames, reflection at the
    ends, torchaudio's HTK mel filters), ``log`` with a floor of ``1e-10``.
    ``style="speechbrain"``: what SpeechBrain's ``Fbank`` computes: Hamming window, centred
    frames with zeros beyond the ends, its triangular filters (:func:`speechbrain_filterbank`),
    ``10 log10`` with a floor of ``1e-10`` and of 80 dB below the utterance's maximum
    (:func:`decibels`). Either way a row of length ``l`` samples has ``l // hop_length + 1``
    frames, and the samples after each row's end are replaced by what the STFT of the row
    alone would see there (its reflection, or zeros), so a padded row gives exactly the
    features of the same utterance alone.

    Normalisation of each mel bin, ``(x - mean) / sqrt(var + 1e-5)`` (``smx``) or SpeechBrain's
    ``(x - mean) / max(sqrt(var), 1e-10)`` (``speechbrain``): ``"utterance"``, mean and
    variance over the real frames of each utterance; ``"global"``, mean and variance over
    every real frame of the first
    ``global_updates`` training batches (accumulated exactly, summed over the processes of a
    distributed run), then frozen, as BEST-RQ in arXiv 2409.02596; the statistics are
    buffers of the state dict. Before its first training batch a ``"global"`` front-end
    normalises each utterance by itself. ``"none"``: the log-mel values. No parameters; runs
    under ``torch.no_grad()`` in float32 on the input's device.

    Arguments
    ---------
    sample_rate : int
        Sampling rate in Hz.
    n_mels : int
        Mel bins (the output size).
    n_fft : int
        FFT size.
    win_length : int
        Window length in samples (25 ms at 16 kHz).
    hop_length : int
        Hop in samples (10 ms at 16 kHz).
    normalize : str
        ``"utterance"``, ``"global"`` or ``"none"``.
    style : str
        ``"smx"`` or ``"speechbrain"`` (see above).
    global_updates : int
        Training batches whose statistics a ``"global"`` front-end accumulates.

    Example
    -------
    >>> fbank = FbankFrontend()
    >>> feats, frames = fbank(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    >>> feats.shape, frames.tolist(), fbank.output_dim
    (torch.Size([2, 101, 80]), [101, 51], 80)
    >>> glob = FbankFrontend(normalize="global", global_updates=1).train()
    >>> _ = glob(torch.randn(2, 16000), torch.tensor([16000, 8000]))  # the one update
    >>> int(glob.stats_count), int(glob.stats_updates)
    (152, 1)
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        n_fft: int = 400,
        win_length: int = 400,
        hop_length: int = 160,
        normalize: Normalization = "utterance",
        style: FbankStyle = "smx",
        global_updates: int = 1000,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if normalize not in ("utterance", "global", "none"):
            raise ValueError(
                f"{name}: normalize must be 'utterance', 'global' or 'none', got {normalize!r}"
            )
        if style not in ("smx", "speechbrain"):
            raise ValueError(f"{name}: style must be 'smx' or 'speechbrain', got {style!r}")
        if win_length > n_fft:
            raise ValueError(f"{name}: win_length={win_length} must not exceed n_fft={n_fft}")
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.normalize, self.style = normalize, style
        self.output_dim = n_mels
        self.floor = 1e-10
        self.eps = 1e-5
        if style == "smx":
            window = torch.hann_window(win_length)
            filterbank = torchaudio.functional.melscale_fbanks(
                n_freqs=n_fft // 2 + 1,
                f_min=0.0,
                f_max=sample_rate / 2,
                n_mels=n_mels,
                sample_rate=sample_rate,
                norm=None,
                mel_scale="htk",
            )  # [n_fft/2 + 1, n_mels]
        else:
            window = torch.hamming_window(win_length)
            filterbank = speechbrain_filterbank(sample_rate, n_fft, n_mels)
        # derived constants: not saved in checkpoints
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("filterbank", filterbank, persistent=False)
        if normalize == "global":
            self._init_global_stats(n_mels, global_updates)

    def _init_global_stats(self, n_mels: int, updates: int) -> None:
        """Buffers of the global statistics: frames, mean and variance per bin, batches seen."""
        if not isinstance(updates, int) or updates < 1:
            raise ValueError(
                f"{type(self).__name__}: global_updates must be an integer >= 1, got {updates!r}"
            )
        self.global_updates = updates
        self.register_buffer("stats_count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("stats_mean", torch.zeros(n_mels, dtype=torch.float64))
        self.register_buffer("stats_var", torch.ones(n_mels, dtype=torch.float64))
        self.register_buffer("stats_updates", torch.zeros((), dtype=torch.long))

    def output_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        """Frames per row for ``samples [B]`` samples: ``samples // hop_length + 1``."""
        return torch.div(samples, self.hop_length, rounding_mode="floor") + 1

    def _fill_tails(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Replace the samples after each row's end by what the row alone would have there.

        ``smx``: the row's reflection at its end (the STFT pads by reflection); ``speechbrain``:
        zeros (its STFT pads with zeros).
        """
        time = torch.arange(waveforms.shape[1], device=waveforms.device)[None, :]  # [1, S]
        last = (lengths - 1)[:, None]  # [B, 1]
        if self.style == "speechbrain":
            return waveforms.masked_fill(time > last, 0.0)  # [B, S]
        source = torch.where(time <= last, time, 2 * last - time).clamp(min=0)  # [B, S]
        return waveforms.gather(1, source)  # [B, S]

    def set_global_stats(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        """Install global statistics (e.g. imported ones) and freeze them.

        Arguments
        ---------
        mean, var : torch.Tensor
            ``[n_mels]`` mean and (biased) variance of each bin.
        count : float
            Frames they summarise (> 0).
        """
        name = type(self).__name__
        if self.normalize != "global":
            raise ValueError(f"{name}: set_global_stats needs normalize='global'")
        shape = (self.output_dim,)
        if tuple(mean.shape) != shape or tuple(var.shape) != shape or not count > 0:
            raise ValueError(
                f"{name}: global statistics need mean and var of shape {list(shape)} and a "
                f"positive count, got {list(mean.shape)}, {list(var.shape)}, {count}"
            )
        self.stats_mean.copy_(mean)
        self.stats_var.copy_(var)
        self.stats_count.fill_(float(count))
        self.stats_updates.fill_(self.global_updates)

    def _update_global_stats(self, feats: torch.Tensor, pad_mask: torch.Tensor) -> None:
        """Fold the real frames of a batch into the global statistics (exactly, in float64)."""
        keep = pad_mask[..., None]  # [B, T, 1]
        values = feats.double().masked_fill(~keep, 0.0)  # [B, T, F]
        sums = torch.cat(
            [keep.sum().double()[None], values.sum((0, 1)), values.square().sum((0, 1))]
        )  # [1 + 2F]: frames, sum, sum of squares
        count, total, squares = _all_reduce_sum(sums).split([1, self.output_dim, self.output_dim])
        self.stats_updates.add_(1)
        if float(count) == 0:
            return
        mean = total / count  # [F]
        spread = (squares - count * mean.square()).clamp(min=0.0)  # [F] sum of squared deviations
        seen = self.stats_count
        both = seen + count
        delta = mean - self.stats_mean  # [F]
        self.stats_var.copy_(
            (self.stats_var * seen + spread + delta.square() * seen * count / both) / both
        )
        self.stats_mean.add_(delta * count / both)
        self.stats_count.copy_(both.squeeze())

    def _deviation(self, var: torch.Tensor) -> torch.Tensor:
        """Standard deviation from a variance: ``sqrt(var + 1e-5)`` (smx), or SpeechBrain's
        ``max(sqrt(var), 1e-10)`` (its ``InputNormalization``)."""
        if self.style == "smx":
            return (var + self.eps).sqrt()
        return var.sqrt().clamp(min=1e-10)

    def _normalise(self, feats: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Apply the configured normalisation to ``feats [B, T, F]`` (log-mel)."""
        if self.normalize == "none":
            return feats
        if self.normalize == "global":
            if self.training and int(self.stats_updates) < self.global_updates:
                self._update_global_stats(feats, pad_mask)
            if float(self.stats_count) > 0:
                std = self._deviation(self.stats_var)  # [F]
                return ((feats - self.stats_mean) / std).float()
        mean = masked_mean(feats, pad_mask, keepdim=True)  # [B, 1, n_mels]
        var = masked_mean((feats - mean).square(), pad_mask, keepdim=True)
        return (feats - mean) / self._deviation(var)

    def _log_mel(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Log-mel features ``[B, T, n_mels]`` of padded float32 ``waveforms [B, S]``.

        The batch is first extended by half a window, so that the last frames of a row that
        ends less than half a window before the batch's end see the row's own tail, not the
        STFT's reflection of the batch's end; the extra frames are dropped.
        """
        frames = waveforms.shape[1] // self.hop_length + 1
        wav = F.pad(waveforms, (0, self.n_fft // 2))  # [B, S + n_fft/2]
        wav = self._fill_tails(wav, lengths)  # [B, S + n_fft/2]
        spec = torch.stft(
            wav,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.to(wav.device),
            center=True,
            pad_mode="reflect" if self.style == "smx" else "constant",
            return_complex=True,
        )[..., :frames]  # [B, n_fft/2 + 1, T]
        power = spec.real.square() + spec.imag.square()  # [B, n_fft/2 + 1, T]
        mel = power.transpose(1, 2) @ self.filterbank.to(wav.device)  # [B, T, n_mels]
        if self.style == "smx":
            return mel.clamp(min=self.floor).log()  # [B, T, n_mels]
        pad_mask = lengths_to_mask(self.output_lengths(lengths), mel.shape[1])  # [B, T]
        return decibels(mel, pad_mask)

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel features of a padded batch of waveforms.

        Arguments
        ---------
        waveforms : torch.Tensor
            ``[B, S]`` samples.
        lengths : torch.Tensor
            ``[B]`` real samples per row.

        Returns
        -------
        tuple of torch.Tensor
            ``feats [B, T, n_mels]`` (float32, zero on padded frames) and ``frames [B]``, the
            real frames per row (:meth:`output_lengths`).
        """
        name = type(self).__name__
        if waveforms.dim() != 2:
            raise ValueError(
                f"{name}: waveforms must have shape [B, S], got {waveforms.dim()} dimensions"
            )
        if waveforms.shape[1] <= self.n_fft // 2:
            raise ValueError(
                f"{name}: waveforms need more than n_fft // 2 = {self.n_fft // 2} samples, "
                f"got {waveforms.shape[1]}"
            )
        _check_lengths(lengths, waveforms.shape[0], waveforms.shape[1], name, "S")
        lengths = lengths.to(waveforms.device)
        frames = self.output_lengths(lengths)  # [B]
        with torch.no_grad(), torch.autocast(waveforms.device.type, enabled=False):
            feats = self._log_mel(waveforms.float(), lengths)  # [B, T, n_mels]
            pad_mask = lengths_to_mask(frames, feats.shape[1])  # [B, T]
            feats = self._normalise(feats, pad_mask)
            feats = feats.masked_fill(~pad_mask[..., None], 0.0)
        return feats, frames


class CnnLatentExtractor(nn.Module):
    """wav2vec 2.0 latent extractor over log-mel frames (docs/algorithm.md, "Front-end").

    The whole ``[T, F]`` input of each utterance is first normalised to zero mean and unit
    variance over its real frames (one mean and variance per utterance); then each layer is
    a ``'valid'`` Conv1d over time without bias, a LayerNorm over channels and GELU; a final
    LayerNorm. Conv weights use Kaiming-normal init. With the defaults a frame covers
    20 ms: ``T1 = (T - 3) // 2 + 1``, ``T2 = T1 - 2`` (10 s -> 1001 -> 500 -> 498 frames).
    Real outputs only see real inputs, and padded outputs are zero.

    Arguments
    ---------
    in_dim : int
        Input features per frame (80 mel bins).
    channels, kernels, strides : sequence of int
        Output channels, kernel widths and strides of the Conv1d layers (same length).

    Example
    -------
    >>> cnn = CnnLatentExtractor(channels=(32, 32))
    >>> latents, lengths = cnn(torch.randn(2, 101, 80), torch.tensor([101, 50]))
    >>> latents.shape, lengths.tolist(), cnn.output_dim
    (torch.Size([2, 48, 32]), [48, 22], 32)
    """

    def __init__(
        self,
        in_dim: int = 80,
        channels: Sequence[int] = (512, 512),
        kernels: Sequence[int] = (3, 3),
        strides: Sequence[int] = (2, 1),
    ) -> None:
        super().__init__()
        if not len(channels) == len(kernels) == len(strides) >= 1:
            raise ValueError(
                "CnnLatentExtractor: channels, kernels and strides must be non-empty and of the "
                f"same length, got {len(channels)}, {len(kernels)}, {len(strides)}"
            )
        self.in_dim = in_dim
        self.kernels, self.strides = tuple(kernels), tuple(strides)
        self.output_dim = channels[-1]
        self.eps = 1e-5
        sizes = [in_dim, *channels]
        self.convs = nn.ModuleList(
            nn.Conv1d(c_in, c_out, k, stride=s, bias=False)
            for c_in, c_out, k, s in zip(sizes[:-1], sizes[1:], kernels, strides, strict=True)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in channels)
        self.activation = nn.GELU()
        self.out_norm = nn.LayerNorm(channels[-1])
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight)
        self.min_frames = 1  # shortest input giving one output frame
        for k, s in zip(reversed(self.kernels), reversed(self.strides), strict=True):
            self.min_frames = (self.min_frames - 1) * s + k

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for ``lengths [B]`` input frames (``'valid'`` convolutions)."""
        for k, s in zip(self.kernels, self.strides, strict=True):
            lengths = (torch.div(lengths - k, s, rounding_mode="floor") + 1).clamp(min=0)
        return lengths

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats [B, T, F]``, ``lengths [B]`` -> ``(latents [B, T', C], lengths [B])``."""
        name = type(self).__name__
        check_features(feats, lengths, self.in_dim, name)
        lengths = lengths.to(feats.device)
        if feats.shape[1] < self.min_frames:
            raise ValueError(
                f"{name}: feats needs at least {self.min_frames} frames, got {feats.shape[1]}"
            )
        pad_mask = lengths_to_mask(lengths, feats.shape[1])[..., None]  # [B, T, 1]
        mean, std = _masked_mean_std(feats, pad_mask.expand_as(feats), self.eps)  # [B, 1, 1]
        x = ((feats - mean) / std).masked_fill(~pad_mask, 0.0)  # [B, T, F]
        for conv, norm, k, s in zip(
            self.convs, self.norms, self.kernels, self.strides, strict=True
        ):
            x = conv(x.transpose(1, 2)).transpose(1, 2)  # [B, T', C]
            lengths = (torch.div(lengths - k, s, rounding_mode="floor") + 1).clamp(min=0)
            pad_mask = lengths_to_mask(lengths, x.shape[1])[..., None]  # [B, T', 1]
            x = self.activation(norm(x)).masked_fill(~pad_mask, 0.0)  # [B, T', C]
        return self.out_norm(x).masked_fill(~pad_mask, 0.0), lengths


class Conv2dSubsampling(nn.Module):
    """Stride-2 Conv2d blocks over (time, frequency): 4x time subsampling with two blocks.

    Each block is ``Conv2d(kernel k, stride 2, 'same' zero padding k//2) -> LayerNorm over
    each frame's frequencies and channels -> LeakyReLU -> Dropout``; the output
    ``[B, T', F', C]`` is flattened to ``C·F'`` features per frame and optionally projected
    by a Linear to ``out_dim``. Time and frequency shrink as ``n -> (n - 1) // 2 + 1`` per
    block (for odd k), so two blocks give ``ceil(ceil(T/2)/2)`` frames of 40 ms from 10 ms
    input. SpeechBrain's BEST-RQ recipe uses channels (128, 32), its supervised recipes
    (64, 32).

    Padding: ``"zeros"`` pads time and frequency with zeros; ``"reflect"`` mirrors them at
    their ends (the edge not repeated), as SpeechBrain's ``Conv2d`` does. Padded input
    frames are zeroed, and so are the padded frames after each block, and with ``"reflect"``
    each row is mirrored at its own last real frame, so the frames just past an utterance's
    end look exactly like the padding of the utterance alone; real outputs therefore never
    depend on how much padding follows, whether or not the real length is a multiple of 4.
    SpeechBrain's Conv2d weight ``[C_out, C_in, k_freq, k_time]`` is this one's
    ``[C_out, C_in, k_time, k_freq]`` transposed.

    Arguments
    ---------
    in_dim : int
        Input features per frame (80 mel bins).
    channels : sequence of int
        Output channels of each block.
    kernel_size : int
        Odd kernel size (in time and frequency).
    out_dim : int or None
        Size of the final Linear projection; None = no projection (``C·F'`` features).
    dropout : float
        Dropout after each block's activation (0.1 in SpeechBrain's recipes).
    padding : str
        ``"zeros"`` or ``"reflect"`` (see above).

    Example
    -------
    >>> sub = Conv2dSubsampling(80, channels=(8, 4), out_dim=16)
    >>> out, lengths = sub(torch.randn(2, 41, 80), torch.tensor([41, 30]))
    >>> out.shape, lengths.tolist(), sub.output_dim
    (torch.Size([2, 11, 16]), [11, 8], 16)
    """

    def __init__(
        self,
        in_dim: int = 80,
        channels: Sequence[int] = (64, 32),
        kernel_size: int = 3,
        out_dim: int | None = None,
        dropout: float = 0.0,
        padding: ConvPadding = "zeros",
    ) -> None:
        super().__init__()
        if padding not in ("zeros", "reflect"):
            raise ValueError(
                f"Conv2dSubsampling: padding must be 'zeros' or 'reflect', got {padding!r}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"Conv2dSubsampling: kernel_size must be an odd integer >= 1, got {kernel_size}"
            )
        if len(channels) < 1:
            raise ValueError("Conv2dSubsampling: channels must list at least one block")
        self.in_dim = in_dim
        self.kernel_size = kernel_size
        self.num_blocks = len(channels)
        self.padding = padding
        sizes = [1, *channels]
        built_in = kernel_size // 2 if padding == "zeros" else 0  # reflect: see _reflect
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size, stride=2, padding=built_in)
            for c_in, c_out in pairwise(sizes)
        )
        freqs = []  # F' after each block
        freq = in_dim
        for _ in channels:
            freq = self._shrink(freq)
            freqs.append(freq)
        # each output frame is normalised over frequency and channels together, as in
        # SpeechBrain's implementation: over channels alone, every time-frequency cell would
        # lose its level and the spectral envelope (what a speaker sounds like) would not
        # reach the encoder
        self.norms = nn.ModuleList(
            nn.LayerNorm((f, c)) for f, c in zip(freqs, channels, strict=True)
        )
        self.activation = nn.LeakyReLU()
        self.dropout = nn.Dropout(dropout)
        self.flat_dim = channels[-1] * freq
        self.proj = nn.Linear(self.flat_dim, out_dim) if out_dim is not None else None
        self.output_dim = out_dim if out_dim is not None else self.flat_dim

    def _shrink(self, n: int) -> int:
        """Output size of one block along an axis of size ``n``."""
        return (n + 2 * (self.kernel_size // 2) - self.kernel_size) // 2 + 1

    def _reflect(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x [B, C, T, F]`` mirrored by ``k // 2`` frames and bins at both ends of each
        row's real frames and of the frequencies -> ``[B, C, T + k - 1, F + k - 1]``."""
        context = self.kernel_size // 2
        batch, channels, time, freq = x.shape
        index = reflect_index(lengths, time, context)  # [B, T + k - 1]
        x = x.gather(2, index[:, None, :, None].expand(batch, channels, -1, freq))
        return F.pad(x, (context, context, 0, 0), mode="reflect")  # [B, C, T + k - 1, F + k - 1]

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for ``lengths [B]`` input frames: ``(n - 1) // 2 + 1`` per block."""
        for _ in range(self.num_blocks):
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
        return lengths.clamp(min=0)

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats [B, T, F]``, ``lengths [B]`` -> ``(out [B, T', output_dim], lengths [B])``."""
        check_features(feats, lengths, self.in_dim, type(self).__name__)
        lengths = lengths.to(feats.device)
        pad_mask = lengths_to_mask(lengths, feats.shape[1])  # [B, T]
        x = feats.masked_fill(~pad_mask[..., None], 0.0)[..., None]  # [B, T, F, 1]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = x.permute(0, 3, 1, 2)  # [B, C, T, F]
            if self.padding == "reflect":
                x = self._reflect(x, lengths)
            x = conv(x).permute(0, 2, 3, 1)  # [B, T', F', C]
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
            pad_mask = lengths_to_mask(lengths.clamp(min=0), x.shape[1])  # [B, T']
            x = self.dropout(self.activation(norm(x)))
            x = x.masked_fill(~pad_mask[..., None, None], 0.0)  # [B, T', F', C]
        x = x.flatten(2)  # [B, T', F'·C]
        if self.proj is not None:
            x = self.proj(x).masked_fill(~pad_mask[..., None], 0.0)  # [B, T', out_dim]
        return x, lengths.clamp(min=0)
