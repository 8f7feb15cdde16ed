"""Encoder blocks that host any mixer: Conformer, Branchformer and Transformer layers.

Every block maps ``x [B, T, D]`` and ``pad_mask [B, T]`` (True = real frame) to
``[B, T, D]`` and, when its mixer is streamable, also offers ``forward_chunked`` and the
stateful ``init_state`` / ``forward_step`` API (equal to ``forward_chunked`` chunk by chunk).
"""

from smx.nn.blocks.branchformer import BranchformerBlock
from smx.nn.blocks.common import BlockState
from smx.nn.blocks.conformer import ConformerBlock
from smx.nn.blocks.transformer import TransformerBlock

__all__ = ["BlockState", "BranchformerBlock", "ConformerBlock", "TransformerBlock"]
