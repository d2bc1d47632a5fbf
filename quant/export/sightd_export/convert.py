"""Stage 2: the two towers as PyTorch modules sightd can run, converted to
float32 .tflite files with litert-torch.

The image tower takes NCHW float pixels already normalised (sightd's
preprocessing does resize, crop, mean and std); the text tower takes int32
token ids [1, context] and pools at the end token inside the graph, as CLIP
does (argmax of the ids). Both return the raw embedding; sightd normalises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .load import Loaded
from .util import PeakMemory


class ImageTower(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model: Any = model  # an open_clip model: encode_image is not on nn.Module

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)


class TextTower(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model: Any = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(ids)


def towers(loaded: Loaded) -> dict[str, torch.nn.Module]:
    return {"image": ImageTower(loaded.model).eval(), "text": TextTower(loaded.model).eval()}


def sample_args(loaded: Loaded, tower: str) -> tuple[torch.Tensor]:
    if tower == "image":
        h, w = loaded.preprocess.size
        return (torch.zeros(1, 3, h, w),)
    ids = torch.zeros(1, loaded.context_length, dtype=torch.int32)
    ids[0, 0], ids[0, 1] = 49406, 49407
    return (ids,)


@dataclass
class Converted:
    path: Path
    seconds: float
    peak_rss_mb: float


def to_tflite(module: torch.nn.Module, args: tuple[Any, ...], path: Path, **kw: Any) -> Converted:
    """litert-torch conversion of one tower to a .tflite file."""
    import litert_torch

    t0 = time.monotonic()
    with PeakMemory() as mem, torch.no_grad():
        edge = litert_torch.convert(module, args, **kw)
        edge.export(str(path))
    return Converted(path, time.monotonic() - t0, mem.peak_mb)
