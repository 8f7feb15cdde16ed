"""Multi-head self-attention: the quadratic baseline SummaryMixing is compared with.

``y = W_o concat_h softmax(q_h k_h^T / sqrt(d_h) + bias) v_h`` with one fused ``q, k, v``
projection and :func:`torch.nn.functional.scaled_dot_product_attention` (SDPA), so the
baseline is as fast as PyTorch makes it. Dropout acts on the attention weights only (SDPA
``dropout_p`` in training), never on the output (docs/algorithm.md, "Where the cell sits").

Cost: every frame attends to every frame, so time is O(T^2 * D) and the scores take
O(T^2 * H) memory unless SDPA picks a fused kernel — this is the quadratic cost the linear
mixers remove (docs/algorithm.md, "Other mixers").

Positions
---------
``pos="abs"``
    No positional information inside the module: the encoder adds absolute sinusoidal
    positions to its input (the wav2vec 2.0 recipe's regular-MHA baseline).
``pos="relpos"``
    Transformer-XL relative attention (RelPosMHAXL): with learned per-head biases ``u, v``
    and ``p_d = W_p e_d`` the projected sinusoidal encoding of the distance
    ``d = i - j`` (``W_p`` without bias),
    ``score_ij = ((q_i + u) . k_j + (q_i + v) . p_{i-j}) / sqrt(d_h)``.
    The positional term is computed against the ``2T - 1`` distinct distances and gathered
    into place (the gather plays the role of XL's ``rel_shift``), then passed to SDPA as a
    float bias. ``relpos="symmetric"`` encodes ``|i - j|`` instead of ``i - j`` (the same
    for past and future, as SpeechBrain's ``RelPosEncXL``; :mod:`smx.nn.positional`). Extra cost: one more ``[B, H, T, 2T - 1]`` score tensor and a materialised
    ``[B, H, T, T]`` bias, i.e. about three times the score memory of ``abs``, and SDPA cannot
    use its fused flash kernel with an arbitrary bias.

Padding: padded frames are zeroed on the input and masked out as keys; queries of padded
frames (and rows that see no real key at all) are allowed to see every key of their window
so that softmax never meets an empty row (no NaN), and their outputs are zeroed.

Streaming: :meth:`MultiHeadSelfAttention.forward_chunked` restricts frame ``t`` of chunk
``c`` to the frames of chunks ``max(0, c - L) .. c``; :meth:`MultiHeadSelfAttention.forward_step`
computes the same one chunk at a time from a cache of the keys and values of the last ``L``
chunks (all of them for ``L = None``: then the cost per chunk grows with the position).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from smx.nn.base import Mixer, check_chunking, check_mixer_input
from smx.nn.positional import relative_sinusoidal_positions

PositionScheme = Literal["abs", "relpos"]
RelativeDistance = Literal["signed", "symmetric"]


@dataclass
class AttentionCache:
    """Keys and values of the chunks a streaming step may still attend to.

    Arguments
    ---------
    keys : torch.Tensor
        ``[B, H, S, d_h]`` projected keys of the cached frames, oldest first.
    values : torch.Tensor
        ``[B, H, S, d_h]`` projected values.
    key_mask : torch.Tensor
        ``[B, S]`` bool, True = real frame.
    chunk_sizes : tuple[int, ...]
        Frames of every cached chunk, oldest first (they sum to ``S``).
    offset : int
        Frames streamed so far (the position of the next chunk's first frame).

    Example
    -------
    >>> cache = MultiHeadSelfAttention(8, 2).init_state(3, torch.device("cpu"), torch.float32)
    >>> cache.keys.shape, cache.offset
    (torch.Size([3, 2, 0, 4]), 0)
    """

    keys: torch.Tensor
    values: torch.Tensor
    key_mask: torch.Tensor
    chunk_sizes: tuple[int, ...]
    offset: int


def chunk_visibility(
    time: int, chunk_size: int, left_chunks: int | None, device: torch.device | None = None
) -> torch.Tensor:
    """``[T, T]`` bool: query ``i`` may see key ``j`` (chunks ``c_i - L <= c_j <= c_i``).

    Arguments
    ---------
    time : int
        ``T``.
    chunk_size : int
        Frames per chunk ``C >= 1``.
    left_chunks : int or None
        Visible previous chunks ``L``; None = all of them.
    device : torch.device, optional
        Device of the result.

    Example
    -------
    >>> chunk_visibility(4, 2, 0).int().tolist()
    [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    """
    chunk = torch.arange(time, device=device) // chunk_size  # [T]
    lag = chunk[:, None] - chunk[None, :]  # [T, T] c_i - c_j
    visible = lag >= 0
    if left_chunks is not None:
        visible = visible & (lag <= left_chunks)
    return visible


def _no_empty_rows(allowed: torch.Tensor) -> torch.Tensor:
    """Let every row of ``allowed [..., Tq, Tk]`` that sees no key see all keys instead.

    Only rows of padded queries (whose outputs are zeroed) can be empty, because a real query
    always sees itself.
    """
    return allowed | ~allowed.any(-1, keepdim=True)


class MultiHeadSelfAttention(Mixer):
    """Multi-head self-attention through SDPA, with key padding and a streaming mode.

    Quadratic in ``T``: O(T^2 * D) time (see the module docstring).

    Arguments
    ---------
    d_model : int
        Model width ``D``, divisible by ``heads``.
    heads : int
        Attention heads ``H``; head size ``d_h = D / H``.
    dropout : float
        Dropout on the attention weights (training only).
    bias : bool
        Biases of the ``q, k, v`` and output projections.
    pos : str
        ``"abs"`` (no positions inside the module) or ``"relpos"`` (Transformer-XL).
    relpos : str
        With ``pos="relpos"``: encode the ``"signed"`` distance ``i - j`` or the
        ``"symmetric"`` one ``|i - j|``.

    Example
    -------
    >>> mhsa = MultiHeadSelfAttention(16, heads=4, pos="relpos").eval()
    >>> x, pad_mask = torch.randn(2, 10, 16), torch.ones(2, 10, dtype=torch.bool)
    >>> pad_mask[1, 7:] = False
    >>> y = mhsa(x, pad_mask)
    >>> y.shape, bool((y[1, 7:] == 0).all())
    (torch.Size([2, 10, 16]), True)
    >>> chunked = mhsa.forward_chunked(x, pad_mask, chunk_size=4, left_chunks=1)
    >>> state = mhsa.init_state(2, x.device, x.dtype)
    >>> y0, state = mhsa.forward_step(x[:, :4], pad_mask[:, :4], state, left_chunks=1)
    >>> torch.allclose(y0, chunked[:, :4], atol=1e-5)
    True
    """

    streamable = True

    def __init__(
        self,
        d_model: int,
        heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        pos: PositionScheme = "abs",
        relpos: RelativeDistance = "signed",
    ) -> None:
        super().__init__()
        if not isinstance(heads, int) or heads < 1 or d_model % heads:
            raise ValueError(
                f"MultiHeadSelfAttention: heads must be an integer >= 1 dividing "
                f"d_model={d_model}, got {heads!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiHeadSelfAttention: dropout must lie in [0, 1), got {dropout}")
        if pos not in ("abs", "relpos"):
            raise ValueError(f"MultiHeadSelfAttention: pos must be 'abs' or 'relpos', got {pos!r}")
        if relpos not in ("signed", "symmetric"):
            raise ValueError(
                f"MultiHeadSelfAttention: relpos must be 'signed' or 'symmetric', got {relpos!r}"
            )
        self.d_model = d_model
        self.heads = heads
        self.head_dim = d_model // heads
        self.dropout = dropout
        self.pos = pos
        self.relpos = relpos
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)
        if pos == "relpos":
            self.pos_proj = nn.Linear(d_model, d_model, bias=False)
            self.pos_bias_u = nn.Parameter(torch.empty(heads, self.head_dim))
            self.pos_bias_v = nn.Parameter(torch.empty(heads, self.head_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform ``q, k, v`` (each ``D x D`` block) and ``u, v``; zero biases."""
        for block in self.qkv.weight.chunk(3, dim=0):
            nn.init.xavier_uniform_(block)
        for linear in (self.qkv, self.out):
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        if self.pos == "relpos":
            nn.init.xavier_uniform_(self.pos_bias_u)
            nn.init.xavier_uniform_(self.pos_bias_v)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, heads={self.heads}, pos={self.pos!r}, relpos={self.relpos!r}"
        )

    # ---- pieces

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, D] -> [B, H, T, d_h]``."""
        batch, time, _ = x.shape
        return x.view(batch, time, self.heads, self.head_dim).transpose(1, 2)

    def _project(
        self, x: torch.Tensor, pad_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked input -> ``q, k, v``, each ``[B, H, T, d_h]``."""
        x = x.masked_fill(~pad_mask.unsqueeze(-1), 0.0)  # [B, T, D] padding cannot leak
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # [B, T, D] each
        return self._split_heads(q), self._split_heads(k), self._split_heads(v)

    def _position_bias(self, q: torch.Tensor, key_length: int) -> torch.Tensor:
        """Relpos term ``(q_i + v) . p_{i-j} / sqrt(d_h)`` for the last ``Tq`` of ``Tk`` keys.

        ``q [B, H, Tq, d_h] -> [B, H, Tq, Tk]``.
        """
        batch, _, query_length, _ = q.shape
        table, index = relative_sinusoidal_positions(
            query_length,
            key_length,
            self.d_model,
            device=q.device,
            dtype=q.dtype,
            symmetric=self.relpos == "symmetric",
        )  # [R, D], [Tq, Tk] with R = Tq + Tk - 1
        p = self.pos_proj(table).view(-1, self.heads, self.head_dim).transpose(0, 1)  # [H,R,dh]
        per_distance = (q + self.pos_bias_v[:, None, :]) @ p.transpose(-1, -2)  # [B, H, Tq, R]
        index = index.expand(batch, self.heads, query_length, key_length)  # [B, H, Tq, Tk]
        return per_distance.gather(-1, index) / math.sqrt(self.head_dim)  # [B, H, Tq, Tk]

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        """SDPA of ``q [B,H,Tq,dh]`` over ``k, v [B,H,Tk,dh]`` where ``allowed`` -> ``[B,Tq,D]``.

        ``allowed`` is bool, broadcastable to ``[B, H, Tq, Tk]``, without empty rows.
        """
        mask: torch.Tensor = allowed
        if self.pos == "relpos":
            bias = self._position_bias(q, k.shape[2])  # [B, H, Tq, Tk]
            mask = bias.masked_fill(~allowed, float("-inf"))
            q = q + self.pos_bias_u[:, None, :]  # [B, H, Tq, d_h]
        dropout = self.dropout if self.training else 0.0
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        batch, _, query_length, _ = mixed.shape
        mixed = mixed.transpose(1, 2).reshape(batch, query_length, self.d_model)  # [B, Tq, D]
        return self.out(mixed)  # [B, Tq, D]

    # ---- public entry points

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Offline attention over the whole utterance.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, T, D]``.
        pad_mask : torch.Tensor
            ``[B, T]`` bool, True = real frame.

        Returns
        -------
        torch.Tensor
            ``[B, T, D]``, zero on padded frames.
        """
        check_mixer_input(x, pad_mask, self.d_model, "MultiHeadSelfAttention")
        q, k, v = self._project(x, pad_mask)  # [B, H, T, d_h]
        allowed = _no_empty_rows(pad_mask[:, None, None, :])  # [B, 1, 1, T] real keys
        y = self._attend(q, k, v, allowed)  # [B, T, D]
        return y.masked_fill(~pad_mask.unsqueeze(-1), 0.0)

    def forward_chunked(
        self, x: torch.Tensor, pad_mask: torch.Tensor, chunk_size: int, left_chunks: int | None
    ) -> torch.Tensor:
        """Attention restricted to the chunk window: chunks ``c - L .. c`` for chunk ``c``.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, T, D]``.
        pad_mask : torch.Tensor
            ``[B, T]`` bool, True = real frame.
        chunk_size : int
            Frames per chunk ``C >= 1``.
        left_chunks : int or None
            Visible previous chunks ``L >= 0``; None = all of them.

        Returns
        -------
        torch.Tensor
            ``[B, T, D]``, zero on padded frames. Still O(T^2) (a masked dense attention).
        """
        check_mixer_input(x, pad_mask, self.d_model, "MultiHeadSelfAttention")
        check_chunking(chunk_size, left_chunks, "MultiHeadSelfAttention")
        q, k, v = self._project(x, pad_mask)  # [B, H, T, d_h]
        visible = chunk_visibility(x.shape[1], chunk_size, left_chunks, x.device)  # [T, T]
        allowed = _no_empty_rows(visible & pad_mask[:, None, None, :])  # [B, 1, T, T]
        y = self._attend(q, k, v, allowed)  # [B, T, D]
        return y.masked_fill(~pad_mask.unsqueeze(-1), 0.0)

    def init_state(
        self, batch_size: int, device: torch.device, dtype: torch.dtype
    ) -> AttentionCache:
        """Empty key/value cache.

        Arguments
        ---------
        batch_size : int
            ``B``.
        device : torch.device
            Device of the activations.
        dtype : torch.dtype
            Dtype of the activations.
        """
        empty = torch.zeros(batch_size, self.heads, 0, self.head_dim, device=device, dtype=dtype)
        key_mask = torch.zeros(batch_size, 0, device=device, dtype=torch.bool)
        return AttentionCache(empty, empty, key_mask, (), 0)

    def forward_step(
        self,
        x: torch.Tensor,
        pad_mask: torch.Tensor,
        state: AttentionCache,
        left_chunks: int | None,
    ) -> tuple[torch.Tensor, AttentionCache]:
        """Attend from the next chunk to itself and the cached chunks.

        Equals :meth:`forward_chunked` with ``chunk_size = C`` chunk by chunk; use the same
        ``left_chunks`` for every chunk of a stream.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, C, D]``: the next chunk (the last one may be shorter).
        pad_mask : torch.Tensor
            ``[B, C]`` bool, True = real frame.
        state : AttentionCache
            From :meth:`init_state` or the previous call (not modified).
        left_chunks : int or None
            Visible previous chunks ``L >= 0``; None = all of them.

        Returns
        -------
        tuple[torch.Tensor, AttentionCache]
            The chunk's output ``[B, C, D]`` (zero on padded frames) and the new cache.
        """
        check_mixer_input(x, pad_mask, self.d_model, "MultiHeadSelfAttention")
        check_chunking(x.shape[1], left_chunks, "MultiHeadSelfAttention")
        q, k, v = self._project(x, pad_mask)  # [B, H, C, d_h]
        keys = torch.cat([state.keys, k], dim=2)  # [B, H, S + C, d_h]
        values = torch.cat([state.values, v], dim=2)  # [B, H, S + C, d_h]
        key_mask = torch.cat([state.key_mask, pad_mask], dim=1)  # [B, S + C]
        allowed = _no_empty_rows(key_mask[:, None, None, :])  # [B, 1, 1, S + C]
        y = self._attend(q, keys, values, allowed).masked_fill(~pad_mask.unsqueeze(-1), 0.0)
        chunk_sizes = (*state.chunk_sizes, x.shape[1])
        if left_chunks is not None:  # keep the last L chunks only
            chunk_sizes = (
                chunk_sizes[max(len(chunk_sizes) - left_chunks, 0) :] if left_chunks else ()
            )
            kept = sum(chunk_sizes)
            start = keys.shape[2] - kept
            keys, values, key_mask = keys[:, :, start:], values[:, :, start:], key_mask[:, start:]
        new_state = AttentionCache(keys, values, key_mask, chunk_sizes, state.offset + x.shape[1])
        return y, new_state
