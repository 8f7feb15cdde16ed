"""Branchformer block: a mixer branch and a cgMLP branch in parallel, merged by a projection."""

from __future__ import annotations

import torch
from torch import nn

from smx.nn.activations import ActivationName
from smx.nn.activations import activation as make_activation
from smx.nn.base import Mixer
from smx.nn.blocks.common import Branch, MixerBlock, check_mixer_width
from smx.nn.convolution import CSGU, ConvPadding


class BranchformerBlock(MixerBlock):
    """Branchformer layer with a pluggable mixer, without feed-forward.

    * mixer branch: ``x1 = Dropout(mixer(LN_a(x)))``;
    * cgMLP branch: ``x2 = Dropout(Linear(U/2, D)(CSGU(act(Linear(D, U)(LN_b(x))))))``;
    * merge: ``x <- x + Dropout(merge([x1; x2]))``.

    ``merge`` is ``Linear(2D, D)`` (SpeechBrain's merge for MHSA and HyperMixing) or, when
    ``merge_hidden`` is given, the MLP ``Linear(2D, H) -> act -> Linear(H, D) -> act`` of
    SpeechBrain's SummaryMixing Branchformer (docs/algorithm.md, "Where the cell sits").
    SpeechBrain declares that MLP's input size as ``local_proj_out_dim + summary_out_dim``,
    which only works when the local width equals ``D``; the true input is the concatenation
    of two ``D``-wide branches, so the input size here is ``2D``. Unlike SpeechBrain's
    implementation (which asserts it away), chunked and streaming modes work: the CSGU
    convolution runs as a dynamic chunk convolution.

    Arguments
    ---------
    d_model : int
        Model width ``D``.
    mixer : Mixer
        Context mixer ``[B, T, D] -> [B, T, D]``.
    csgu_units : int
        Even width ``U`` of the cgMLP branch (3072 in SpeechBrain's recipes).
    kernel_size : int
        Odd depthwise kernel of the CSGU.
    dropout : float
        Dropout on each branch, inside the CSGU and on the merged output.
    activation : str
        Activation of the cgMLP (and of the merge MLP), GELU by default.
    merge_hidden : int or None
        Hidden size ``H`` of the merge MLP; None = a single Linear.
    conv_padding : str
        Offline padding of the CSGU convolution: ``"zeros"`` or ``"reflect"`` (SpeechBrain's;
        :class:`smx.nn.convolution.DepthwiseConv1d`).

    Example
    -------
    >>> from smx.nn.mixers.summary_mixing import SummaryMixing
    >>> mixer = SummaryMixing(16, local_hidden=[16], local_out=16, summary_hidden=[16], heads=2)
    >>> block = BranchformerBlock(16, mixer, csgu_units=32, kernel_size=3, merge_hidden=24)
    >>> block(torch.randn(2, 7, 16), torch.ones(2, 7, dtype=torch.bool)).shape
    torch.Size([2, 7, 16])
    """

    conv_module = "csgu"

    def __init__(
        self,
        d_model: int,
        mixer: Mixer,
        csgu_units: int = 3072,
        kernel_size: int = 31,
        dropout: float = 0.1,
        activation: ActivationName = "gelu",
        merge_hidden: int | None = None,
        conv_padding: ConvPadding = "zeros",
    ) -> None:
        super().__init__()
        check_mixer_width(mixer, d_model, type(self).__name__)
        self.d_model = d_model
        self.mixer_norm = nn.LayerNorm(d_model)
        self.mixer = mixer
        self.mlp_norm = nn.LayerNorm(d_model)
        self.mlp_in = nn.Linear(d_model, csgu_units)
        self.mlp_act = make_activation(activation)
        self.csgu = CSGU(csgu_units, kernel_size, dropout, padding=conv_padding)
        self.mlp_out = nn.Linear(csgu_units // 2, d_model)
        self.branch_dropout = nn.Dropout(dropout)
        if merge_hidden is None:
            self.merge: nn.Module = nn.Linear(2 * d_model, d_model)
        else:
            self.merge = nn.Sequential(
                nn.Linear(2 * d_model, merge_hidden),
                make_activation(activation),
                nn.Linear(merge_hidden, d_model),
                make_activation(activation),
            )
        self.merge_dropout = nn.Dropout(dropout)

    def _layer(self, x: torch.Tensor, mix: Branch, gate: Branch | None) -> torch.Tensor:
        """The block equations, with the mixer and the CSGU passed as functions."""
        x1 = self.branch_dropout(mix(self.mixer_norm(x)))  # [B, T, D]
        u = self.mlp_act(self.mlp_in(self.mlp_norm(x)))  # [B, T, U]
        x2 = self.branch_dropout(self.mlp_out(gate(u)))  # [B, T, D]
        return x + self.merge_dropout(self.merge(torch.cat([x1, x2], dim=-1)))  # [B, T, D]
