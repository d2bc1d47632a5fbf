"""Stage 4: the bundle: towers, CLIP's merge list, probe images and
manifest.json in sightd's manifest format 1 (quant/bundle/manifest.go), with
probe vectors computed by PyTorch."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
from PIL import Image

from .load import CLIP_MERGES, Loaded
from .util import sha256

FORMAT = 1
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
PROBE_TEXTS = ["a photo of a dog", "a red car parked in the street", "an empty porch at night"]


def vocab_source() -> Path:
    return Path(open_clip.__file__).parent / VOCAB_FILE


def file_ref(bundle: Path, name: str) -> dict[str, Any]:
    p = bundle / name
    return {"file": name, "sha256": sha256(p), "size": p.stat().st_size}


def probe_pixels(loaded: Loaded, image: Path) -> Image.Image:
    """The pixels the model sees of `image` (open_clip's own resize and crop,
    with the model's PIL filter), stored at the input size so that any runtime's resize is
    the identity: a probe tests the tower and the runtime, not the resize."""
    return probe_pixels_of(loaded, Image.open(image).convert("RGB"))


def probe_pixels_of(loaded: Loaded, img: Image.Image) -> Image.Image:
    """An RGB image resized and cropped as the model's own transform does."""
    t = loaded.transform()
    resize_crop = [s for s in t.transforms if type(s).__name__ in ("Resize", "CenterCrop", "ResizeKeepRatio")]
    for s in resize_crop:
        img = s(img)
    return img


def normalise(loaded: Loaded, img: Image.Image) -> np.ndarray:
    """An RGB image at the input size as the tower's NCHW float input."""
    p = loaded.preprocess
    x: np.ndarray = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    x = (x - np.array(p.mean, np.float32)) / np.array(p.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


@dataclass
class Probe:
    tower: str
    text: str = ""
    file: str = ""
    expected: list[float] | None = None
    min_cosine: float = 0.99


def write(
    bundle: Path,
    loaded: Loaded,
    name: str,
    version: int,
    image_file: str,
    text_file: str,
    image_io: tuple[tuple[list[int], str], tuple[list[int], str]],
    text_io: tuple[tuple[list[int], str], tuple[list[int], str]],
    probes: list[Probe],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes manifest.json; `extra` adds top-level fields sightd does not
    read (distill's teacher, student, data hash and licence)."""
    shutil.copyfile(vocab_source(), bundle / VOCAB_FILE)
    p = loaded.preprocess
    (img_in_shape, img_in_dtype), (img_out_shape, img_out_dtype) = image_io
    (txt_in_shape, txt_in_dtype), (txt_out_shape, txt_out_dtype) = text_io
    m: dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "version": version,
        "embedding_dim": loaded.embed_dim,
        "logit_scale": round(loaded.logit_scale, 4),
        "image": {
            **file_ref(bundle, image_file),
            "input": {
                "shape": img_in_shape,
                "dtype": img_in_dtype,
                "layout": "NCHW",
                "color": "RGB",
                "resize": "squash" if p.resize_mode == "squash" else "shortest_side_center_crop",
                "interpolation": p.interpolation,
                "mean": [round(float(v), 8) for v in p.mean],
                "std": [round(float(v), 8) for v in p.std],
            },
            "output": {"shape": img_out_shape, "dtype": img_out_dtype},
        },
        "text": {
            **file_ref(bundle, text_file),
            "input": {"shape": txt_in_shape, "dtype": txt_in_dtype},
            "output": {"shape": txt_out_shape, "dtype": txt_out_dtype},
        },
        "tokenizer": {
            "kind": "clip-bpe",
            **file_ref(bundle, VOCAB_FILE),
            "merges": CLIP_MERGES,
            "context_length": loaded.context_length,
        },
        "probes": [],
        **(extra or {}),
    }
    for pr in probes:
        d: dict[str, Any] = {"tower": pr.tower}
        if pr.tower == "text":
            d["text"] = pr.text
        else:
            d.update(file_ref(bundle, pr.file))
        d["expected"] = [float(np.float32(v)) for v in (pr.expected or [])]
        d["min_cosine"] = pr.min_cosine
        m["probes"].append(d)
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2, ensure_ascii=False) + "\n")
    return m
