"""CTC decoding of character posteriors: greedy and beam search (no language model).

Beam search uses torchaudio's flashlight-based ``ctc_decoder`` (lexicon-free) when the
``flashlight-text`` package is installed, and otherwise :func:`prefix_beam_search`, a
plain CTC prefix beam search. Token 0 is the blank (:class:`smx.data.text.CharVocab`).

Example
-------
>>> import torch
>>> log_probs = torch.log(torch.tensor([[[0.1, 0.9, 0.0], [0.1, 0.9, 0.0], [0.9, 0.1, 0.0],
...                                      [0.1, 0.0, 0.9]]]).clamp(min=1e-6))
>>> greedy_decode(log_probs, torch.tensor([4]))
[[1, 2]]
>>> prefix_beam_search(log_probs[0], beam_size=4)
[1, 2]
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Callable, Sequence

import torch

BLANK = 0
#: beam width of :func:`beam_decode`
BEAM_SIZE = 10


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best token per frame, repeats merged, blanks dropped.

    The module docstring has an example.

    Arguments
    ---------
    log_probs : torch.Tensor
        ``[B, T, V]`` frame posteriors (any monotone scores work).
    lengths : torch.Tensor
        ``[B]`` real frames per utterance.

    Returns
    -------
    list[list[int]]
        The token ids of each utterance.
    """
    best = log_probs.argmax(-1).cpu()  # [B, T]
    out: list[list[int]] = []
    for row, n in zip(best, lengths.tolist(), strict=True):
        ids = torch.unique_consecutive(row[:n]).tolist()
        out.append([i for i in ids if i != BLANK])
    return out


def _logaddexp(a: float, b: float) -> float:
    """``log(exp(a) + exp(b))`` for Python floats (-inf allowed)."""
    if a < b:
        a, b = b, a
    if b == -math.inf:
        return a
    return a + math.log1p(math.exp(b - a))


Beams = dict[tuple[int, ...], tuple[float, float]]  # prefix -> (log p ending in blank, in token)


def _extend(beams: Beams, scores: list[float], tokens: list[int]) -> Beams:
    """One frame of prefix beam search: every prefix stays or grows by one of ``tokens``."""
    nxt: Beams = {}
    for prefix, (p_b, p_nb) in beams.items():
        total = _logaddexp(p_b, p_nb)
        b, nb = nxt.get(prefix, (-math.inf, -math.inf))
        stay = p_nb + scores[prefix[-1]] if prefix else -math.inf  # a repeat is merged
        nxt[prefix] = (_logaddexp(b, total + scores[BLANK]), _logaddexp(nb, stay))
        for tok in tokens:
            if tok == BLANK:
                continue
            # the same token again only starts a new one after a blank
            p = (p_b if prefix and prefix[-1] == tok else total) + scores[tok]
            grown = (*prefix, tok)
            b, nb = nxt.get(grown, (-math.inf, -math.inf))
            nxt[grown] = (b, _logaddexp(nb, p))
    return nxt


def prefix_beam_search(log_probs: torch.Tensor, beam_size: int = BEAM_SIZE) -> list[int]:
    """The most probable label sequence of one utterance under CTC (prefix beam search).

    Each prefix keeps the log probability of ending in a blank and in its last token; at each
    frame only the ``beam_size`` most likely tokens extend the ``beam_size`` best prefixes.

    The module docstring has an example.

    Arguments
    ---------
    log_probs : torch.Tensor
        ``[T, V]`` log posteriors of the real frames of one utterance.
    beam_size : int
        Prefixes kept per frame (>= 1).

    Returns
    -------
    list[int]
        The token ids of the best prefix (no blanks).

    Raises
    ------
    ValueError
        When ``beam_size`` is below 1.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size: must be at least 1, got {beam_size}")
    lp = log_probs.detach().float().cpu()
    beams: Beams = {(): (0.0, -math.inf)}
    top_k = min(beam_size, lp.shape[-1])
    for frame in lp:
        nxt = _extend(beams, frame.tolist(), frame.topk(top_k).indices.tolist())
        beams = dict(heapq.nlargest(beam_size, nxt.items(), key=lambda kv: _logaddexp(*kv[1])))
    return list(max(beams.items(), key=lambda kv: _logaddexp(*kv[1]))[0])


@functools.cache
def _torchaudio_decoder(tokens: tuple[str, ...], beam_size: int) -> Callable[..., object] | None:
    """torchaudio's lexicon-free CTC decoder, or None without flashlight-text or a space."""
    if " " not in tokens:
        return None
    try:
        from torchaudio.models.decoder import ctc_decoder

        return ctc_decoder(
            lexicon=None,
            tokens=list(tokens),
            beam_size=beam_size,
            blank_token=tokens[BLANK],
            sil_token=" ",
            unk_word=tokens[1],
        )
    except (ImportError, RuntimeError):
        return None


def beam_decode(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    tokens: Sequence[str],
    beam_size: int = BEAM_SIZE,
) -> list[list[int]]:
    """CTC beam search of a batch: torchaudio's decoder when available, else our own.

    Arguments
    ---------
    log_probs : torch.Tensor
        ``[B, T, V]`` log posteriors.
    lengths : torch.Tensor
        ``[B]`` real frames per utterance.
    tokens : Sequence[str]
        The ``V`` token strings (``CharVocab.tokens``: blank first, then unknown).
    beam_size : int
        Hypotheses kept per frame.

    Returns
    -------
    list[list[int]]
        The token ids of each utterance's best hypothesis (no blanks).

    Example
    -------
    >>> lp = torch.log_softmax(torch.randn(2, 6, 4), -1)
    >>> hyps = beam_decode(lp, torch.tensor([6, 3]), ["<blank>", "<unk>", " ", "a"])
    >>> len(hyps), all(BLANK not in h for h in hyps)
    (2, True)
    """
    decoder = _torchaudio_decoder(tuple(tokens), beam_size)
    if decoder is not None:
        emissions = log_probs.detach().float().cpu().contiguous()
        results = decoder(emissions, lengths.cpu().to(torch.int32))
        return [[int(t) for t in hyps[0].tokens if int(t) != BLANK] for hyps in results]
    return [
        prefix_beam_search(row[:n], beam_size)
        for row, n in zip(log_probs, lengths.tolist(), strict=True)
    ]


def beam_backend(tokens: Sequence[str]) -> str:
    """Which beam search :func:`beam_decode` uses: ``"torchaudio"`` or ``"prefix"``.

    Example
    -------
    >>> beam_backend(["<blank>", "<unk>", "a"])
    'prefix'
    """
    return "torchaudio" if _torchaudio_decoder(tuple(tokens), BEAM_SIZE) else "prefix"
