"""Sinusoidal position encodings: absolute (added to the encoder input) and relative (MHSA).

Position ``p`` (any integer, negative included) is encoded as in "Attention is all you
need": ``e[2i] = sin(p * w_i)``, ``e[2i + 1] = cos(p * w_i)`` with ``w_i = 10000^(-2i / D)``.
Angles are computed in float64 and cast at the end, so far positions keep their precision.
There is no maximum length.

Relative encodings come in two kinds: *signed* (the distance ``d = i - j`` itself, so a key
in the past and one as far in the future get different encodings) and *symmetric* (the
absolute distance ``|i - j|``, the same for past and future, as SpeechBrain's
``RelPosEncXL`` computes; an imported SpeechBrain relpos model needs it).
"""

from __future__ import annotations

import math

import torch


def sinusoidal_embedding(
    positions: torch.Tensor, d_model: int, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Sinusoidal embeddings of arbitrary integer (or real) positions.

    Arguments
    ---------
    positions : torch.Tensor
        ``[L]`` positions (may be negative: relative distances).
    d_model : int
        Embedding size ``D >= 1`` (odd sizes drop the last cosine).
    dtype : torch.dtype, optional
        Output dtype (default: the default float dtype).

    Returns
    -------
    torch.Tensor
        ``[L, D]`` on the device of ``positions``.

    Example
    -------
    >>> sinusoidal_embedding(torch.tensor([0, 1]), 2).tolist()  # [sin p, cos p]
    [[0.0, 1.0], [0.8414709568023682, 0.5403022766113281]]
    """
    if not isinstance(d_model, int) or d_model < 1:
        raise ValueError(f"sinusoidal_embedding: d_model must be an integer >= 1, got {d_model!r}")
    device = positions.device
    half = (d_model + 1) // 2
    exponent = torch.arange(half, device=device, dtype=torch.float64) * (2.0 / d_model)
    frequency = torch.exp(-math.log(10000.0) * exponent)  # [D/2] w_i
    angles = positions.to(torch.float64)[:, None] * frequency[None, :]  # [L, D/2]
    interleaved = torch.stack([angles.sin(), angles.cos()], dim=-1)  # [L, D/2, 2]
    out = interleaved.reshape(positions.shape[0], 2 * half)[:, :d_model]  # [L, D]
    return out.to(dtype or torch.get_default_dtype())


def sinusoidal_positions(
    length: int,
    d_model: int,
    offset: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Absolute sinusoidal encodings of positions ``offset .. offset + length - 1``.

    A streaming caller passes the number of frames already seen as ``offset`` to continue
    the positions of the previous chunks.

    Arguments
    ---------
    length : int
        Number of positions ``T >= 0``.
    d_model : int
        Embedding size ``D``.
    offset : int
        First position.
    device, dtype
        Of the result.

    Returns
    -------
    torch.Tensor
        ``[T, D]``.

    Example
    -------
    >>> pe = sinusoidal_positions(6, 4)
    >>> pe.shape, pe[0].tolist()
    (torch.Size([6, 4]), [0.0, 1.0, 0.0, 1.0])
    >>> torch.equal(sinusoidal_positions(2, 4, offset=4), pe[4:])
    True
    """
    if not isinstance(length, int) or length < 0:
        raise ValueError(f"sinusoidal_positions: length must be an integer >= 0, got {length!r}")
    positions = torch.arange(offset, offset + length, device=device)  # [T]
    return sinusoidal_embedding(positions, d_model, dtype)


def relative_sinusoidal_positions(
    query_length: int,
    key_length: int,
    d_model: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    symmetric: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encodings of every query-key distance, and where each pair finds its row.

    The queries are the last ``Tq`` of the ``Tk`` keys (``Tq == Tk`` offline; in a streaming
    step the keys are the cache followed by the chunk). Query ``i`` sits at key position
    ``Tk - Tq + i``, so its distance to key ``j`` is ``d = Tk - Tq + i - j``, from
    ``-(Tq - 1)`` to ``Tk - 1``. Row ``r`` of the table encodes ``d = r - (Tq - 1)``;
    ``index[i, j] = Tk - 1 + i - j`` is the row of the pair ``(i, j)``. With ``symmetric``
    row ``r`` encodes ``|d|`` instead (same rows, same index).

    Arguments
    ---------
    query_length : int
        ``Tq >= 1``.
    key_length : int
        ``Tk >= Tq``.
    d_model : int
        Embedding size ``D``.
    device, dtype
        Of the table (the index is ``long`` on ``device``).
    symmetric : bool
        Encode the absolute distance ``|d|`` (past and future alike) instead of ``d``.

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        ``table [Tq + Tk - 1, D]`` and ``index [Tq, Tk]``.

    Example
    -------
    >>> table, index = relative_sinusoidal_positions(2, 3, 4)
    >>> table.shape, index.tolist()
    (torch.Size([4, 4]), [[2, 1, 0], [3, 2, 1]])
    >>> torch.equal(table[index[1, 0]], sinusoidal_positions(1, 4, offset=2)[0])  # d = 2 - 0
    True
    >>> mirrored, _ = relative_sinusoidal_positions(2, 3, 4, symmetric=True)
    >>> torch.equal(mirrored[0], mirrored[2]), torch.equal(table[0], table[2])  # d = -1, +1
    (True, False)
    """
    if not 1 <= query_length <= key_length:
        raise ValueError(
            "relative_sinusoidal_positions: need 1 <= query_length <= key_length, "
            f"got query_length={query_length}, key_length={key_length}"
        )
    distances = torch.arange(-(query_length - 1), key_length, device=device)  # [Tq + Tk - 1]
    if symmetric:
        distances = distances.abs()
    table = sinusoidal_embedding(distances, d_model, dtype)  # [Tq + Tk - 1, D]
    query = torch.arange(query_length, device=device)[:, None]  # [Tq, 1]
    key = torch.arange(key_length, device=device)[None, :]  # [1, Tk]
    return table, key_length - 1 + query - key  # [Tq + Tk - 1, D], [Tq, Tk]
