"""Random weights that are not degenerate, for tests and benchmarks.

With std 0.02 everywhere the embeddings of different photos have a mean
pairwise cosine above 0.99, which proves nothing. This spreads them: Linear
and the attention in-projection N(0, 0.05), convolutions N(0, 1/sqrt(fan_in)),
embeddings N(0, 0.05), LayerNorm 1/0, timm layer scales 0.1, and BatchNorm
statistics recomputed on a few real images.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def spread_init(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)

    def normal(t: torch.Tensor, std: float) -> None:
        with torch.no_grad():
            t.copy_(torch.randn(t.shape, generator=g) * std)

    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            normal(m.weight, 0.05)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        elif isinstance(m, torch.nn.Conv2d | torch.nn.Conv1d):
            fan_in = m.weight[0].numel()
            normal(m.weight, 1 / math.sqrt(fan_in))
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        elif isinstance(m, torch.nn.LayerNorm | torch.nn.GroupNorm) and m.weight is not None:
            torch.nn.init.ones_(m.weight)
            torch.nn.init.zeros_(m.bias)
        elif isinstance(m, torch.nn.MultiheadAttention):
            if m.in_proj_weight is not None:
                normal(m.in_proj_weight, 0.05)
            if m.in_proj_bias is not None:
                torch.nn.init.zeros_(m.in_proj_bias)
        elif isinstance(m, torch.nn.Embedding):
            normal(m.weight, 0.05)
        for pname, p in m.named_parameters(recurse=False):
            full = f"{name}.{pname}" if name else pname
            if pname in ("gamma", "layer_scale") or ("layer_scale" in full and p.dim() <= 3):
                with torch.no_grad():
                    p.fill_(0.1)
    # Parameters held directly by the CLIP model (not by a submodule).
    for pname, p in model.named_parameters():
        leaf = pname.rsplit(".", 1)[-1]
        if leaf in ("positional_embedding", "class_embedding", "cls_token", "pos_embed"):
            normal(p, 0.05)
        elif leaf in ("proj", "text_projection") and p.dim() == 2:
            normal(p, 1 / math.sqrt(p.shape[0]))
        elif leaf == "logit_scale":
            with torch.no_grad():
                p.fill_(math.log(100.0))


def recompute_batchnorm(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """BatchNorm running statistics from real images (MobileCLIP's towers)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches
    model.train()
    with torch.no_grad():
        for x in batches:
            model.encode_image(x)  # type: ignore[operator]
    model.eval()
