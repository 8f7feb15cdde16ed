"""Target quantisers: wav2vec 2.0's Gumbel-softmax product quantiser and BEST-RQ's frozen one.

* :class:`GumbelVectorQuantizer` (arXiv 2006.11477): ``G`` groups of ``V`` learned code
  vectors; each group picks one entry by a straight-through hard Gumbel-softmax in training
  (argmax in eval), and the selected entries are concatenated. Computed in float32 even
  under autocast. The temperature follows :func:`gumbel_temperature` through
  :meth:`GumbelVectorQuantizer.set_step`.
* :class:`RandomProjectionQuantizer` (arXiv 2202.01855): a frozen random projection of
  stacked feature frames, L2-normalised along the feature (code) dimension, and the nearest
  entry of frozen L2-normalised random codebooks. Nothing in it is trained.

Randomness: the Gumbel noise is drawn from the ``generator`` given to ``forward`` (None =
torch's global RNG on the input's device, like dropout); the random projection and
codebooks come from their own seeded generator, so every worker builds the same ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def gumbel_temperature(step: int, start: float, decay: float, minimum: float) -> float:
    """Annealed Gumbel temperature ``max(start * decay**step, minimum)``.

    Arguments
    ---------
    step : int
        Optimiser step ``>= 0``.
    start, decay, minimum : float
        Initial temperature, decay per step and floor.

    Returns
    -------
    float
        The temperature at ``step``.

    Example
    -------
    >>> gumbel_temperature(0, 2.0, 0.999995, 0.25)
    2.0
    >>> round(gumbel_temperature(300_000, 2.0, 0.999995, 0.25), 4)
    0.4463
    >>> gumbel_temperature(10**6, 2.0, 0.999995, 0.25)
    0.25
    """
    if step < 0:
        raise ValueError(f"gumbel_temperature: step must be >= 0, got {step}")
    return max(start * decay**step, minimum)


def perplexity(probs: torch.Tensor) -> torch.Tensor:
    """Sum over groups of ``exp(entropy)`` of the code distribution averaged over frames.

    ``PP = sum_g exp(-sum_v p_gv log p_gv)`` with ``p_g = mean_n probs[n, g]`` (exact
    ``0 log 0 = 0``). A uniform use of ``V`` entries gives ``V`` per group; a single used
    entry gives 1. An empty batch (``N = 0``) gives ``G``.

    Arguments
    ---------
    probs : torch.Tensor
        ``[N, G, V]`` assignment probabilities (soft, or one-hot for hard codes).

    Returns
    -------
    torch.Tensor
        Scalar perplexity, in ``[G, G * V]``.

    Example
    -------
    >>> round(float(perplexity(torch.full((5, 2, 4), 0.25))), 4)
    8.0
    >>> float(perplexity(F.one_hot(torch.zeros(5, 2, dtype=torch.long), 4).float()))
    2.0
    """
    if probs.dim() != 3:
        raise ValueError(f"perplexity: probs must have shape [N, G, V], got {list(probs.shape)}")
    mean = probs.sum(0) / max(probs.shape[0], 1)  # [G, V]
    entropy = -torch.xlogy(mean, mean).sum(-1)  # [G]
    return entropy.exp().sum()


@dataclass
class GumbelOutput:
    """What :class:`GumbelVectorQuantizer` returns.

    Attributes
    ----------
    codes : torch.Tensor
        ``[N, code_dim]`` float32 concatenation of the selected entry of every group.
    indices : torch.Tensor
        ``[N, G]`` selected entry per group.
    code_perplexity : torch.Tensor
        Scalar perplexity of the hard assignments (no gradient).
    prob_perplexity : torch.Tensor
        Scalar perplexity of the softmax probabilities without noise (differentiable; the
        diversity loss uses it).
    """

    codes: torch.Tensor
    indices: torch.Tensor
    code_perplexity: torch.Tensor
    prob_perplexity: torch.Tensor


class GumbelVectorQuantizer(nn.Module):
    """Gumbel-softmax product quantiser with ``groups`` codebooks of ``entries`` vectors.

    ``logits = Linear(input_dim -> G * V)(x)`` (weight N(0, 1), bias 0, as in SpeechBrain);
    in training, per group, ``y = softmax((logits + g) / tau)`` with Gumbel noise ``g`` and
    the straight-through one-hot ``onehot(argmax y) - y.detach() + y``; in eval,
    ``onehot(argmax logits)``. Each group's one-hot selects one row of its codebook
    (``V x code_dim / G``, initialised U(0, 1)); the ``G`` rows are concatenated. The whole
    computation runs in float32 even under autocast.

    Arguments
    ---------
    input_dim : int
        Features per input frame (the CNN latent size).
    groups : int
        ``G``, number of codebooks (2 in the wav2vec 2.0 recipe).
    entries : int
        ``V``, entries per codebook (320).
    code_dim : int
        Size of the concatenated code (256), divisible by ``groups``.
    temp_start, temp_decay, temp_min : float
        Temperature schedule, see :func:`gumbel_temperature` (2.0, 0.999995, 0.25).

    Example
    -------
    >>> q = GumbelVectorQuantizer(8, groups=2, entries=5, code_dim=6)
    >>> out = q(torch.randn(7, 8))
    >>> out.codes.shape, out.indices.shape, q.temperature
    (torch.Size([7, 6]), torch.Size([7, 2]), 2.0)
    >>> q.set_step(300_000); round(q.temperature, 3)
    0.446
    """

    def __init__(
        self,
        input_dim: int,
        groups: int = 2,
        entries: int = 320,
        code_dim: int = 256,
        temp_start: float = 2.0,
        temp_decay: float = 0.999995,
        temp_min: float = 0.25,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if groups < 1 or entries < 1:
            raise ValueError(f"{name}: groups and entries must be >= 1, got {groups}, {entries}")
        if code_dim % groups:
            raise ValueError(f"{name}: code_dim={code_dim} must be divisible by groups={groups}")
        if not 0.0 < temp_min <= temp_start:
            raise ValueError(
                f"{name}: temperatures must satisfy 0 < temp_min <= temp_start, "
                f"got temp_min={temp_min}, temp_start={temp_start}"
            )
        self.input_dim, self.code_dim = input_dim, code_dim
        self.groups, self.entries = groups, entries
        self.temp_start, self.temp_decay, self.temp_min = temp_start, temp_decay, temp_min
        self.temperature = temp_start
        self.logits = nn.Linear(input_dim, groups * entries)
        nn.init.normal_(self.logits.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.logits.bias)
        self.codebook = nn.Parameter(torch.rand(groups, entries, code_dim // groups))

    @property
    def num_codes(self) -> int:
        """``G * V``, the largest possible perplexity."""
        return self.groups * self.entries

    def set_step(self, step: int) -> None:
        """Set the temperature for optimiser step ``step`` (see :func:`gumbel_temperature`)."""
        self.temperature = gumbel_temperature(step, self.temp_start, self.temp_decay, self.temp_min)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> GumbelOutput:
        """Quantise ``x``: one code vector per row.

        Arguments
        ---------
        x : torch.Tensor
            ``[N, input_dim]``.
        generator : torch.Generator or None
            Draws the Gumbel noise in training (on ``x``'s device); None = global RNG.

        Returns
        -------
        GumbelOutput
            Codes ``[N, code_dim]``, indices ``[N, G]`` and the two perplexities.
        """
        name = type(self).__name__
        if x.dim() != 2 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"{name}: x must have shape [N, {self.input_dim}], got {list(x.shape)}"
            )
        n = x.shape[0]
        with torch.autocast(x.device.type, enabled=False):
            logits = self.logits(x.float()).view(n, self.groups, self.entries)  # [N, G, V]
            probs = logits.softmax(-1)  # [N, G, V]
            if self.training:
                noise = torch.empty_like(logits).exponential_(generator=generator).log().neg()
                soft = ((logits + noise) / self.temperature).softmax(-1)  # [N, G, V]
                indices = soft.argmax(-1)  # [N, G]
                hard = F.one_hot(indices, self.entries).to(soft.dtype)  # [N, G, V]
                onehot = hard - soft.detach() + soft  # straight-through
            else:
                indices = logits.argmax(-1)  # [N, G]
                onehot = F.one_hot(indices, self.entries).to(logits.dtype)  # [N, G, V]
            codes = torch.einsum("ngv,gvd->ngd", onehot, self.codebook.float())  # [N, G, d]
        return GumbelOutput(
            codes=codes.reshape(n, self.code_dim),
            indices=indices,
            code_perplexity=perplexity(onehot.detach()),
            prob_perplexity=perplexity(probs),
        )


def stack_frames(feats: torch.Tensor, stack: int) -> torch.Tensor:
    """Concatenate each run of ``stack`` consecutive frames: ``[B, T, F] -> [B, ceil(T/s), s*F]``.

    ``T`` is zero-padded to a multiple of ``stack`` first; stacked frame ``j`` is
    ``[x_{sj}; x_{sj+1}; ...; x_{sj+s-1}]``.

    Arguments
    ---------
    feats : torch.Tensor
        ``[B, T, F]``.
    stack : int
        ``s >= 1`` frames per stacked frame.

    Returns
    -------
    torch.Tensor
        ``[B, ceil(T / s), s * F]``.

    Example
    -------
    >>> stack_frames(torch.arange(5.0).view(1, 5, 1), 2).tolist()
    [[[0.0, 1.0], [2.0, 3.0], [4.0, 0.0]]]
    """
    if feats.dim() != 3:
        raise ValueError(f"stack_frames: feats must have shape [B, T, F], got {list(feats.shape)}")
    if stack < 1:
        raise ValueError(f"stack_frames: stack must be >= 1, got {stack}")
    b, t, f = feats.shape
    pad = -t % stack
    if pad:
        feats = F.pad(feats, (0, 0, 0, pad))  # [B, T + pad, F]
    return feats.reshape(b, (t + pad) // stack, stack * f)


class RandomProjectionQuantizer(nn.Module):
    """BEST-RQ targets: frozen random projection + nearest entry of frozen random codebooks.

    For each of ``num_codebooks`` codebooks ``k``: ``q_k = normalize(x @ P_k)`` with
    ``P_k [input_dim, code_dim]`` Xavier-uniform and the L2 normalisation along the
    **feature** (code) dimension, so every projected vector has unit norm; the target is
    ``argmin_v ||E_kv - q_k|| = argmax_v <E_kv, q_k>`` over the rows of ``E_k
    [codebook_size, code_dim]``, standard-normal rows L2-normalised. ``P`` and ``E`` are
    buffers (saved in checkpoints, no gradient, not in ``parameters()``), drawn from a
    generator seeded with ``seed`` so that every worker builds the same quantiser.

    Normalisation axis: the SpeechBrain quantiser used for arXiv 2409.02596 called
    ``F.normalize`` with its default ``dim=1`` on a ``[B, T', code_dim]`` tensor, i.e.
    normalised each code dimension over **time**, so its targets depended on the utterance
    length and padding; here, as in later SpeechBrain versions, the feature dimension.

    Arguments
    ---------
    input_dim : int
        Size of a stacked input vector (``stack_frames * n_mels`` = 320).
    code_dim : int
        Projection size (16).
    codebook_size : int
        Entries per codebook (8192).
    num_codebooks : int
        Independent projections and codebooks (1 in SpeechBrain's BEST-RQ recipe).
    seed : int
        Seed of the projection and codebooks.

    Example
    -------
    >>> q = RandomProjectionQuantizer(12, code_dim=4, codebook_size=10, num_codebooks=2)
    >>> q(torch.randn(3, 7, 12)).shape
    torch.Size([3, 7, 2])
    >>> list(q.parameters())
    []
    """

    def __init__(
        self,
        input_dim: int,
        code_dim: int = 16,
        codebook_size: int = 8192,
        num_codebooks: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if min(input_dim, code_dim, codebook_size, num_codebooks) < 1:
            raise ValueError(
                f"{name}: input_dim, code_dim, codebook_size and num_codebooks must be >= 1, "
                f"got {input_dim}, {code_dim}, {codebook_size}, {num_codebooks}"
            )
        self.input_dim, self.code_dim = input_dim, code_dim
        self.codebook_size, self.num_codebooks = codebook_size, num_codebooks
        generator = torch.Generator().manual_seed(seed)
        bound = math.sqrt(6.0 / (input_dim + code_dim))  # Xavier-uniform
        shape = (num_codebooks, input_dim, code_dim)
        projection = (torch.rand(shape, generator=generator) * 2.0 - 1.0) * bound
        codebooks = torch.randn(num_codebooks, codebook_size, code_dim, generator=generator)
        self.register_buffer("projection", projection)  # [K, input_dim, code_dim]
        self.register_buffer("codebooks", F.normalize(codebooks, dim=-1))  # [K, V, code_dim]

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., input_dim] -> [..., K, code_dim]`` unit vectors (norm along ``code_dim``)."""
        if x.shape[-1] != self.input_dim:
            raise ValueError(
                f"{type(self).__name__}: x must have {self.input_dim} features in its last "
                f"dimension, got shape {list(x.shape)}"
            )
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            projected = torch.einsum("...f,kfd->...kd", x.float(), self.projection)
            return F.normalize(projected, dim=-1)  # [..., K, code_dim], along features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Targets: the nearest codebook entry of each projected vector.

        Arguments
        ---------
        x : torch.Tensor
            ``[..., input_dim]`` stacked feature frames.

        Returns
        -------
        torch.Tensor
            ``[..., K]`` long, one code per codebook.
        """
        q = self.project(x)  # [..., K, code_dim]
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            similarity = torch.einsum("...kd,kvd->...kv", q, self.codebooks)  # [..., K, V]
            return similarity.argmax(-1)
