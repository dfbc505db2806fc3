"""Scaled dot-product attention for the block stacks: torch's fused kernel, or, under the 'reference' deformable-
attention implementation, the explicit form the official backbones compute (scores as a matmul, softmax, matmul).

'reference' is the whole-model baseline the speed goals are measured against (`msda.py`), so it keeps the official
attention too: on a CPU the fused kernel is about 1.5x faster than the explicit form at 1024 tokens. Both give the
same result to float rounding.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .msda import get_msda_impl


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
              scale_query: bool = False) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v for (..., N, d) q, k, v. `scale_query`: the official form scales q before
    the product (BEiT) rather than the scores after it (ViT, Uni-Perceiver); it matters only under 'reference'."""
    if get_msda_impl() != "reference":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    scale = q.shape[-1] ** -0.5
    scores = (q * scale) @ k.transpose(-2, -1) if scale_query else (q @ k.transpose(-2, -1)) * scale
    if bias is not None:
        scores = scores + bias
    return scores.softmax(dim=-1) @ v
