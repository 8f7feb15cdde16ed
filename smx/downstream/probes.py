"""The probe heads of every task (two per task, as MP3S), and the model a probe trains.

A probe reads the weighted layer sum ``x [B, T, D]`` with ``lengths [B]``:

| task | probe 1 | probe 2 | output |
| --- | --- | --- | --- |
| asr | ``bilstm``: 2-layer BiLSTM + Linear | ``conv``: depthwise-separable conv blocks + Linear | CTC log-probs ``[B, T, V]`` |
| speaker | ``xvector`` | ``ecapa`` | embeddings ``[B, E]`` (AAM-softmax while training) |
| intent | ``linear``: mean pooling + Linear | ``bilstm_linear``: BiLSTM, Linear, mean pooling, Linear | logits ``[B, C]`` |
| style, emotion | ``linear`` | ``ecapa`` + Linear | logits ``[B, C]`` |

Widths follow ``downstream.probe_dim`` (``W``): BiLSTM units per direction, conv channels,
TDNN channels and embedding size.

Example
-------
>>> model = build_probe_model("intent", "bilstm_linear", num_layers=3, dim=8, outputs=4, width=16)
>>> model(torch.randn(2, 10, 3, 8), torch.tensor([10, 6])).shape
torch.Size([2, 4])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from smx.config import PROBES
from smx.downstream.layers import WeightedLayerSum
from smx.downstream.tdnn import Ecapa, XVector
from smx.nn.base import lengths_to_mask


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Average of ``x [B, T, D]`` over the first ``lengths`` frames -> ``[B, D]``.

    Example
    -------
    >>> masked_mean(torch.tensor([[[1.0], [3.0], [100.0]]]), torch.tensor([2])).tolist()
    [[2.0]]
    """
    w = lengths_to_mask(lengths, x.shape[1]).to(x.dtype)[..., None]  # [B, T, 1]
    return (x * w).sum(1) / w.sum(1).clamp(min=1.0)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first ``lengths`` frames of each row of ``x [B, T, D]``; padding stays put.

    Example
    -------
    >>> reverse_padded(torch.tensor([[[1], [2], [3]], [[4], [5], [0]]]), torch.tensor([3, 2]))[..., 0]
    tensor([[3, 2, 1],
            [5, 4, 0]])
    """
    t = torch.arange(x.shape[1], device=x.device)[None, :]  # [1, T]
    source = lengths.to(x.device)[:, None] - 1 - t  # [B, T]
    source = torch.where(source >= 0, source, t)
    return x.gather(1, source[..., None].expand(-1, -1, x.shape[2]))


class BiLSTM(nn.Module):
    """Bidirectional LSTM over the real frames, zero on padded frames -> ``[B, T, 2W]``.

    The backward direction is a forward LSTM over each utterance reversed within its length,
    so outputs on real frames do not depend on the padding (as with packed sequences, which
    are an order of magnitude slower on CPU).

    Arguments
    ---------
    in_dim : int
        Input features ``D``.
    width : int
        ``W``, the units of each direction.
    layers : int
        Stacked bidirectional layers.
    dropout : float
        Dropout on the input of every layer but the first.

    Example
    -------
    >>> lstm = BiLSTM(3, 4).eval()
    >>> x = torch.randn(1, 5, 3)
    >>> padded = torch.cat([x, torch.randn(1, 2, 3)], dim=1)
    >>> torch.allclose(lstm(x, torch.tensor([5])), lstm(padded, torch.tensor([5]))[:, :5], atol=1e-6)
    True
    """

    def __init__(self, in_dim: int, width: int, layers: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        sizes = [in_dim] + [2 * width] * (layers - 1)
        self.forward_lstms = nn.ModuleList(nn.LSTM(d, width, batch_first=True) for d in sizes)
        self.backward_lstms = nn.ModuleList(nn.LSTM(d, width, batch_first=True) for d in sizes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x [B, T, D]``, ``lengths [B]`` -> ``[B, T, 2W]``."""
        mask = lengths_to_mask(lengths, x.shape[1])[..., None]  # [B, T, 1]
        for i, (fwd, bwd) in enumerate(zip(self.forward_lstms, self.backward_lstms, strict=True)):
            if i:
                x = self.dropout(x)
            ahead = fwd(x)[0]  # [B, T, W]
            behind = reverse_padded(bwd(reverse_padded(x, lengths))[0], lengths)  # [B, T, W]
            x = torch.cat([ahead, behind], dim=-1).masked_fill(~mask, 0.0)  # [B, T, 2W]
        return x


class BiLSTMCTC(nn.Module):
    """ASR probe 1: 2-layer BiLSTM, dropout, Linear to the characters; log-softmax.

    Arguments
    ---------
    in_dim : int
        Input features ``D``.
    vocab : int
        Output tokens ``V`` (id 0 is the CTC blank).
    width : int
        ``W``, the BiLSTM units per direction.
    dropout : float
        Dropout between the BiLSTM layers and before the Linear.
    """

    def __init__(self, in_dim: int, vocab: int, width: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.lstm = BiLSTM(in_dim, width, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * width, vocab)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` -> log-probs ``[B, T, V]``."""
        return self.out(self.dropout(self.lstm(x, lengths))).log_softmax(-1)


class ConvBlock(nn.Module):
    """Depthwise 'same' conv over time, pointwise Linear, LayerNorm, Swish, residual.

    Arguments
    ---------
    width : int
        Channels ``W``, in and out.
    kernel_size : int
        Frames seen by the depthwise convolution (odd, so that it keeps the length).
    dropout : float
        Dropout before the residual sum.
    """

    def __init__(self, width: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(
            width, width, kernel_size, padding=kernel_size // 2, groups=width
        )
        self.pointwise = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x [B, T, W]`` -> ``[B, T, W]``, zero on padded frames."""
        y = self.depthwise(x.transpose(1, 2)).transpose(1, 2)  # [B, T, W]
        y = self.dropout(F.silu(self.norm(self.pointwise(y))))
        return (x + y).masked_fill(~mask[..., None], 0.0)


class ConvCTC(nn.Module):
    """ASR probe 2: a light ContextNet-like stack of convolution blocks, Linear, log-softmax.

    Arguments
    ---------
    in_dim : int
        Size ``D`` of each input frame, projected to ``width`` first.
    vocab : int
        Characters ``V`` of the CTC output, the blank (id 0) included.
    width : int
        Channels ``W`` of the blocks.
    blocks : int
        Number of :class:`ConvBlock`.
    kernel_size : int
        Frames seen by each depthwise convolution.
    dropout : float
        Dropout in each block.
    """

    def __init__(
        self,
        in_dim: int,
        vocab: int,
        width: int,
        blocks: int = 3,
        kernel_size: int = 5,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(ConvBlock(width, kernel_size, dropout) for _ in range(blocks))
        self.out = nn.Linear(width, vocab)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` -> log-probs ``[B, T, V]``."""
        mask = lengths_to_mask(lengths, x.shape[1])  # [B, T]
        h = self.inp(x).masked_fill(~mask[..., None], 0.0)  # [B, T, W]
        for block in self.blocks:
            h = block(h, mask)
        return self.out(h).log_softmax(-1)


class PooledLinear(nn.Module):
    """Mean pooling over time, then Linear -> logits ``[B, C]``.

    Arguments
    ---------
    in_dim : int
        Input features ``D``.
    classes : int
        Output classes ``C``.
    """

    def __init__(self, in_dim: int, classes: int) -> None:
        super().__init__()
        self.out = nn.Linear(in_dim, classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` -> ``[B, C]``."""
        return self.out(masked_mean(x, lengths))


class BiLSTMLinear(nn.Module):
    """Intent probe 2: BiLSTM, Linear(2W -> W), mean pooling, Linear(W -> C, no bias).

    Arguments
    ---------
    in_dim : int
        Size ``D`` of each input frame.
    classes : int
        Intents ``C``.
    width : int
        ``W``, the BiLSTM units per direction.
    dropout : float
        Dropout between the BiLSTM layers.
    """

    def __init__(self, in_dim: int, classes: int, width: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.lstm = BiLSTM(in_dim, width, dropout=dropout)
        self.proj = nn.Linear(2 * width, width)
        self.out = nn.Linear(width, classes, bias=False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` -> ``[B, C]``."""
        return self.out(masked_mean(self.proj(self.lstm(x, lengths)), lengths))


class EmbedClassify(nn.Module):
    """An utterance embedder followed by a Linear classifier -> logits ``[B, C]``.

    Arguments
    ---------
    embedder : nn.Module
        ``(x [B, T, D], lengths [B]) -> [B, E]``, with ``output_dim`` = ``E``.
    classes : int
        Output classes ``C``.
    """

    def __init__(self, embedder: nn.Module, classes: int) -> None:
        super().__init__()
        self.embedder = embedder
        self.out = nn.Linear(embedder.output_dim, classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` -> ``[B, C]``."""
        return self.out(self.embedder(x, lengths))


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax: ``s * cos(theta_y + m)`` for the target class.

    Arguments
    ---------
    dim : int
        Embedding size.
    classes : int
        Training speakers.
    margin : float
        ``m``, in radians (MP3S: 0.2).
    scale : float
        ``s`` (MP3S: 30).

    Example
    -------
    >>> head = AAMSoftmax(4, 3)
    >>> emb, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    >>> head(emb, y).shape, bool(head(emb, y)[0, 0] <= head(emb)[0, 0])
    (torch.Size([5, 3]), True)
    """

    def __init__(self, dim: int, classes: int, margin: float = 0.2, scale: float = 30.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, dim))
        nn.init.xavier_uniform_(self.weight)
        self.margin, self.scale = margin, scale

    def forward(self, emb: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled cosine logits ``[B, C]``; with ``labels``, the target's angle gets the margin."""
        cos = F.normalize(emb, dim=-1) @ F.normalize(self.weight, dim=-1).T  # [B, C]
        if labels is None:
            return self.scale * cos
        cos = cos.clamp(-1 + 1e-7, 1 - 1e-7)
        target = torch.cos(torch.acos(cos) + self.margin)
        # beyond pi - m the margin would make the angle wrap round: use a linear penalty
        target = torch.where(
            cos > math.cos(math.pi - self.margin),
            target,
            cos - self.margin * math.sin(self.margin),
        )
        onehot = F.one_hot(labels, cos.shape[1]).bool()
        return self.scale * torch.where(onehot, target, cos)


class ProbeModel(nn.Module):
    """What a probe trains: the layer weights, the probe head and an optional training head.

    ``forward(states [B, T, L, D], lengths [B])`` returns the probe output; ``head`` (the
    AAM-softmax of the speaker task) only turns embeddings into training logits.

    Arguments
    ---------
    num_layers : int
        ``L``, the hidden states per frame (the size of :class:`WeightedLayerSum`).
    probe : nn.Module
        ``(x [B, T, D], lengths [B]) ->`` the probe output.
    head : nn.Module | None
        The training head over the probe's embeddings, or None.
    """

    def __init__(self, num_layers: int, probe: nn.Module, head: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = WeightedLayerSum(num_layers)
        self.probe = probe
        self.head = head

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T, L, D]`` -> the probe output (log-probs, logits or embeddings)."""
        return self.probe(self.layers(states), lengths)


def build_probe(task: str, name: str, dim: int, outputs: int, width: int) -> nn.Module:
    """The probe ``name`` of ``task`` (see the module docstring's table).

    Arguments
    ---------
    task : str
        One of :data:`smx.config.TASKS`.
    name : str
        One of the task's two probes (:data:`smx.config.PROBES`).
    dim : int
        Input features ``D``.
    outputs : int
        Output tokens or classes (unused by the speaker embedders).
    width : int
        ``W``, ``downstream.probe_dim``.

    Returns
    -------
    nn.Module
        The probe, ``(x [B, T, D], lengths [B]) ->`` its output.

    Raises
    ------
    ValueError
        When ``task`` is not a task or ``name`` not one of its probes.

    Example
    -------
    >>> type(build_probe("asr", "conv", dim=8, outputs=30, width=16)).__name__
    'ConvCTC'
    >>> build_probe("asr", "linear", 8, 30, 16)
    Traceback (most recent call last):
    ...
    ValueError: probe: 'linear' is not a probe of task 'asr' (choose from bilstm, conv)
    """
    if task not in PROBES:
        raise ValueError(f"task: '{task}' is not a task (choose from {', '.join(PROBES)})")
    if name not in PROBES[task]:
        raise ValueError(
            f"probe: '{name}' is not a probe of task '{task}' (choose from "
            f"{', '.join(PROBES[task])})"
        )
    if task == "asr":
        return BiLSTMCTC(dim, outputs, width) if name == "bilstm" else ConvCTC(dim, outputs, width)
    if task == "speaker":
        return XVector(dim, width) if name == "xvector" else Ecapa(dim, width)
    if name == "linear":
        return PooledLinear(dim, outputs)
    if name == "bilstm_linear":
        return BiLSTMLinear(dim, outputs, width)
    return EmbedClassify(Ecapa(dim, width), outputs)


def build_probe_model(
    task: str, name: str, num_layers: int, dim: int, outputs: int, width: int
) -> ProbeModel:
    """Layer weights + probe (+ AAM-softmax over ``outputs`` speakers for the speaker task).

    The arguments are those of :func:`build_probe`, plus ``num_layers``, the upstream's
    hidden states per frame.

    Returns
    -------
    ProbeModel
        The model a probe training trains.
    """
    probe = build_probe(task, name, dim, outputs, width)
    head = AAMSoftmax(probe.output_dim, outputs) if task == "speaker" else None
    return ProbeModel(num_layers, probe, head)
