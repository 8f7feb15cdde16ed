"""Front-ends: log-mel filterbanks from waveforms, then a subsampling network.

* :class:`FbankFrontend`: waveforms -> 80-dim log-mel features (25 ms window, 10 ms hop),
  computed on the input's device without gradient, normalised per utterance
  (docs/algorithm.md, "Front-end").
* :class:`CnnLatentExtractor`: the wav2vec 2.0 "mel_cnn" latent extractor, two valid Conv1d
  over time (strides 2, 1): 10 ms -> 20 ms frames (arXiv 2407.13377).
* :class:`Conv2dSubsampling`: two stride-2 Conv2d blocks over time and frequency:
  10 ms -> 40 ms frames (docs/algorithm.md, "Front-end").

Each one maps a padded batch and its lengths to a padded batch and new lengths, exposes
``output_dim`` and ``output_lengths(...)``, zeroes padded frames, and gives real frames that
do not depend on how much padding follows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Literal

import torch
import torchaudio
from torch import nn

from smx.nn.base import lengths_to_mask
from smx.nn.means import masked_mean


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


class FbankFrontend(nn.Module):
    """Log-mel filterbank features with per-utterance normalisation.

    Power mel spectrogram (Hann window, centred frames, HTK mel scale), ``log`` with a floor
    of ``1e-10``, then, with ``normalize="utterance"``, mean/variance normalisation of each
    mel bin over the real frames of each utterance. A row of length ``l`` samples has
    ``l // hop_length + 1`` frames. The samples after each row's end are replaced by the
    reflection that a centred STFT of the row alone would use, so a padded row gives exactly
    the features of the same utterance alone. No parameters; runs under ``torch.no_grad()``
    in float32 on the input's device.

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
        ``"utterance"`` (per-utterance mean/variance) or ``"none"``.

    Example
    -------
    >>> fbank = FbankFrontend()
    >>> feats, frames = fbank(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    >>> feats.shape, frames.tolist(), fbank.output_dim
    (torch.Size([2, 101, 80]), [101, 51], 80)
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        n_fft: int = 400,
        win_length: int = 400,
        hop_length: int = 160,
        normalize: Literal["utterance", "none"] = "utterance",
    ) -> None:
        super().__init__()
        if normalize not in ("utterance", "none"):
            raise ValueError(
                f"FbankFrontend: normalize must be 'utterance' or 'none', got {normalize!r}"
            )
        if win_length > n_fft:
            raise ValueError(
                f"FbankFrontend: win_length={win_length} must not exceed n_fft={n_fft}"
            )
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.normalize = normalize
        self.output_dim = n_mels
        self.floor = 1e-10
        self.eps = 1e-5
        filterbank = torchaudio.functional.melscale_fbanks(
            n_freqs=n_fft // 2 + 1,
            f_min=0.0,
            f_max=sample_rate / 2,
            n_mels=n_mels,
            sample_rate=sample_rate,
            norm=None,
            mel_scale="htk",
        )  # [n_fft/2 + 1, n_mels]
        # derived constants: not saved in checkpoints
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        self.register_buffer("filterbank", filterbank, persistent=False)

    def output_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        """Frames per row for ``samples [B]`` samples: ``samples // hop_length + 1``."""
        return torch.div(samples, self.hop_length, rounding_mode="floor") + 1

    def _reflect_tails(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Replace the samples after each row's end by the row's reflection at its end."""
        time = torch.arange(waveforms.shape[1], device=waveforms.device)[None, :]  # [1, S]
        last = (lengths - 1)[:, None]  # [B, 1]
        source = torch.where(time <= last, time, 2 * last - time).clamp(min=0)  # [B, S]
        return waveforms.gather(1, source)  # [B, S]

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
            wav = self._reflect_tails(waveforms.float(), lengths)  # [B, S]
            spec = torch.stft(
                wav,
                self.n_fft,
                hop_length=self.hop_length,
                win_length=self.win_length,
                window=self.window.to(wav.device),
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )  # [B, n_fft/2 + 1, T]
            power = spec.real.square() + spec.imag.square()  # [B, n_fft/2 + 1, T]
            mel = power.transpose(1, 2) @ self.filterbank.to(wav.device)  # [B, T, n_mels]
            feats = mel.clamp(min=self.floor).log()  # [B, T, n_mels]
            pad_mask = lengths_to_mask(frames, feats.shape[1])  # [B, T]
            if self.normalize == "utterance":
                mean, std = _masked_mean_std(feats, pad_mask, self.eps)  # [B, 1, n_mels]
                feats = (feats - mean) / std
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
    (64, 32); SpeechBrain's convolution pads with reflection, this one with zeros.

    Padding: padded input frames are zeroed, and so are the padded frames after each block,
    so the frames just past an utterance's end look exactly like the zero 'same' padding of
    the utterance alone; real outputs therefore never depend on how much padding follows,
    whether or not the real length is a multiple of 4.

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
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"Conv2dSubsampling: kernel_size must be an odd integer >= 1, got {kernel_size}"
            )
        if len(channels) < 1:
            raise ValueError("Conv2dSubsampling: channels must list at least one block")
        self.in_dim = in_dim
        self.kernel_size = kernel_size
        self.num_blocks = len(channels)
        sizes = [1, *channels]
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size, stride=2, padding=kernel_size // 2)
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
            x = conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # [B, T', F', C]
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
            pad_mask = lengths_to_mask(lengths.clamp(min=0), x.shape[1])  # [B, T']
            x = self.dropout(self.activation(norm(x)))
            x = x.masked_fill(~pad_mask[..., None, None], 0.0)  # [B, T', F', C]
        x = x.flatten(2)  # [B, T', F'·C]
        if self.proj is not None:
            x = self.proj(x).masked_fill(~pad_mask[..., None], 0.0)  # [B, T', out_dim]
        return x, lengths.clamp(min=0)
