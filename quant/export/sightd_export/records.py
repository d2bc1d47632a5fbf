"""distill's input: folders written by `sightd camera record` (record.json
and the region crops it names) or plain folders of images, as samples in
time order, split into training and held-out parts by time (neighbouring
frames are near duplicates: a random split would hold out copies of training
frames), and the data set's hash.

record.json (format sightd-record/1):
    {"format": "sightd-record/1",
     "frames": [{"index", "time_s", "file": "frames/000123.jpg", "motion",
                 "regions": [{"file": "regions/000123-00.png", "kind": "full|grid|motion",
                              "rect": [x, y, w, h]}]}], ...}
The samples are the region crops.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .load import ExportError

RECORD_FORMAT = "sightd-record/1"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MIN_SAMPLES = 8  # fewer cannot be split into a training and a held-out part worth the name


@dataclass(frozen=True)
class Sample:
    path: Path
    time_s: float  # the frame's time (a plain folder: its position in name order)
    frame: int  # the frame's index; samples of one frame share it
    kind: str  # full, grid, motion; "image" in a plain folder


@dataclass
class DataSet:
    train: list[Sample]
    held_out: list[Sample]
    sha256: str
    sources: list[dict[str, Any]]


def parse_record(data: bytes, where: str) -> list[tuple[float, int, str, str]]:
    """record.json's frames as (time_s, index, region file, kind), checked.
    Paths must stay inside the record folder."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{where}: not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ExportError(f"{where}: want a JSON object")
    if doc.get("format") != RECORD_FORMAT:
        raise ExportError(f"{where}: format {doc.get('format')!r}; want {RECORD_FORMAT!r}")
    frames = doc.get("frames")
    if not isinstance(frames, list):
        raise ExportError(f"{where}: no frames list")
    out: list[tuple[float, int, str, str]] = []
    for i, f in enumerate(frames):
        at = f"{where}: frames[{i}]"
        if not isinstance(f, dict):
            raise ExportError(f"{at}: want an object")
        t, idx, regions = f.get("time_s"), f.get("index"), f.get("regions", [])
        if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
            raise ExportError(f"{at}.time_s: want a number, got {t!r}")
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise ExportError(f"{at}.index: want an integer, got {idx!r}")
        if not isinstance(regions, list):
            raise ExportError(f"{at}.regions: want a list")
        for j, r in enumerate(regions):
            if not isinstance(r, dict) or not isinstance(r.get("file"), str) or not r["file"]:
                raise ExportError(f"{at}.regions[{j}]: want an object with a file")
            rel = r["file"]
            if rel.startswith("/") or ".." in Path(rel).parts:
                raise ExportError(f"{at}.regions[{j}].file {rel!r}: must stay inside the record folder")
            kind = r.get("kind", "")
            out.append((float(t), idx, rel, kind if isinstance(kind, str) else ""))
    return out


def _folder(d: Path) -> tuple[list[Sample], list[Path]]:
    """A folder's samples in time order and the files its hash covers."""
    rec = d / "record.json"
    if rec.is_file():
        data = rec.read_bytes()
        rows = parse_record(data, str(rec))
        samples = [Sample(d / rel, t, idx, kind) for t, idx, rel, kind in rows]
        missing = [s.path for s in samples if not s.path.is_file()]
        if missing:
            raise ExportError(
                f"{rec}: {len(missing)} region files missing, e.g. {missing[0]}; the record is incomplete"
            )
        samples.sort(key=lambda s: (s.time_s, s.frame, s.path.name))
        return samples, [rec, *(s.path for s in samples)]
    imgs = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
    return [Sample(p, float(i), i, "image") for i, p in enumerate(imgs)], imgs


def data_hash(files_by_folder: list[tuple[Path, list[Path]]]) -> str:
    """sha256 over each file's path (relative to its folder) and contents."""
    h = hashlib.sha256()
    for root, files in files_by_folder:
        for f in sorted(set(files)):
            h.update(str(f.relative_to(root)).encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def split(samples: list[Sample], holdout: float) -> tuple[list[Sample], list[Sample]]:
    """The first (1 - holdout) of the frames, in time order, train; the rest
    is held out. Regions of one frame stay on one side."""
    frames = sorted({(s.time_s, s.frame) for s in samples})
    n_held = max(1, round(len(frames) * holdout))
    cut = frames[len(frames) - n_held]
    train = [s for s in samples if (s.time_s, s.frame) < cut]
    held = [s for s in samples if (s.time_s, s.frame) >= cut]
    return train, held


def load(dirs: list[str], holdout: float) -> DataSet:
    if not 0 < holdout < 1:
        raise ExportError(f"--holdout {holdout}: want a fraction between 0 and 1")
    train: list[Sample] = []
    held: list[Sample] = []
    hashed: list[tuple[Path, list[Path]]] = []
    sources = []
    for d in dirs:
        p = Path(d)
        if not p.is_dir():
            raise ExportError(f"--data {p}: not a folder")
        samples, files = _folder(p)
        frames = len({(s.time_s, s.frame) for s in samples})
        if len(samples) < MIN_SAMPLES or frames < 2:
            raise ExportError(
                f"--data {p}: {len(samples)} images in {frames} frames; want at least {MIN_SAMPLES} images in 2 or "
                f"more frames (a folder from `sightd camera record`, or a folder of {', '.join(IMAGE_EXTS)} images)"
            )
        tr, ho = split(samples, holdout)
        train += tr
        held += ho
        hashed.append((p, files))
        sources.append(
            {
                "folder": str(p.resolve()),
                "kind": "record" if (p / "record.json").is_file() else "images",
                "frames": frames,
                "samples": len(samples),
                "train": len(tr),
                "held_out": len(ho),
            }
        )
    if not train:
        raise ExportError("--data: nothing left to train on after holding out; lower --holdout")
    return DataSet(train, held, data_hash(hashed), sources)
