"""Stage 1: find the architecture, load the weights, read the model's own
preprocessing and tokenizer conventions.

Everything that can be wrong with the user's input is an ExportError with one
clear line: an unknown name (with the list), a checkpoint that does not fit
the architecture (which keys), a tokenizer sightd cannot reproduce, a
pretrained tag that needs the network when there is none.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch

# CLIP's byte-level BPE as open_clip ships it (the same file as OpenAI's).
CLIP_VOCAB_SIZE = 49408
CLIP_MERGES = 48894  # 49152 - 256 - 2: the merges CLIP uses of the list


class ExportError(Exception):
    """A problem with the user's input, said in one line."""


@dataclass(frozen=True)
class Catalogued:
    """A model the toolchain offers by name, with its weights' licence."""

    name: str
    family: str
    licence: str
    research_only: bool = False
    note: str = ""


# Checked 2026-12 in the sources (apple/ml-mobileclip's LICENSE_MODELS and
# README, its history, the Hugging Face repos open_clip's tags download,
# openai/CLIP's LICENSE and model card, open_clip's LICENSE and issue #177).
_CLIP_VIT = (
    "MIT for the `openai` tag (openai/CLIP's licence; its model card calls any deployed use, commercial or not, "
    "out of scope) and the `laion*` tags (open_clip's MIT, which its maintainers apply to the weights); "
    "other tags carry their own (`dfn2b`: Apple, research only; metaclip, datacomp, commonpool: read theirs)"
)
_APPLE_V1 = (
    "RESEARCH ONLY: Apple Machine Learning Research Model licence (apple-amlr), as apple/ml-mobileclip "
    "(LICENSE_MODELS, since August 2025) and the Hugging Face repos of the `datacompdr` weights publish them now; "
    "no product use, derivatives included (released in 2024 under Apple's sample-code licence, apple-ascl)"
)
_APPLE_V2 = (
    "RESEARCH ONLY: Apple Machine Learning Research Model licence (apple-amlr); no product use, derivatives included"
)

CATALOGUE: dict[str, Catalogued] = {
    c.name: c
    for c in [
        Catalogued("ViT-B-32", "CLIP ViT", _CLIP_VIT),
        Catalogued("ViT-B-16", "CLIP ViT", _CLIP_VIT),
        Catalogued("MobileCLIP-S1", "MobileCLIP", _APPLE_V1, research_only=True),
        Catalogued("MobileCLIP-S2", "MobileCLIP", _APPLE_V1, research_only=True),
        Catalogued("MobileCLIP-B", "MobileCLIP", _APPLE_V1, research_only=True),
        Catalogued("MobileCLIP2-S0", "MobileCLIP2", _APPLE_V2, research_only=True),
        Catalogued("MobileCLIP2-S2", "MobileCLIP2", _APPLE_V2, research_only=True),
        Catalogued("MobileCLIP2-B", "MobileCLIP2", _APPLE_V2, research_only=True),
    ]
}

TINYCLIP_NOTE = (
    "TinyCLIP (MIT: wkcn/TinyCLIP's licence, the only one its README names for the checkpoints) is not in "
    "open_clip: pass its open_clip-shaped config with --model-config FILE.json"
)


@dataclass
class Preprocess:
    """The image tower's preprocessing, from the model's own transform config."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str  # PIL's: bicubic or bilinear
    resize_mode: str  # open_clip's: shortest or squash
    source: str  # where these values came from


@dataclass
class Loaded:
    name: str
    model: torch.nn.Module
    preprocess: Preprocess
    context_length: int
    embed_dim: int
    logit_scale: float  # exp of the checkpoint's stored log
    licence: str
    research_only: bool
    weights: str  # what --pretrained was
    model_cfg: dict[str, Any] = field(default_factory=dict)

    def tokenizer(self) -> Any:
        return open_clip.get_tokenizer(self.name, context_length=self.context_length)

    def transform(self) -> Any:
        """open_clip's own eval transform (PIL) for this model's preprocessing."""
        p = self.preprocess
        return open_clip.image_transform(
            p.size,
            is_train=False,
            mean=p.mean,
            std=p.std,
            interpolation=p.interpolation,
            resize_mode=p.resize_mode,
        )


def known_names() -> list[str]:
    return list(CATALOGUE)


# Preprocessing that a --model-config file carries (open_clip_config.json's
# "preprocess_cfg", as the hub publishes it next to the weights), by name.
_FILE_PREPROCESS: dict[str, dict[str, Any]] = {}

# PIL's resize filters that sightd's manifest can name (quant/bundle).
SIGHTD_INTERPOLATIONS = ("bicubic", "bilinear")


def register_config(path: str | os.PathLike[str]) -> str:
    """Registers a custom open_clip config (its file name is the model name):
    a model config, or open_clip_config.json's shape ({"model_cfg": ...,
    "preprocess_cfg": ...}), whose preprocessing then applies to local
    checkpoints."""
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"--model-config {p}: no such file")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ExportError(f"--model-config {p}: not JSON: {e}") from e
    pp: dict[str, Any] = {}
    if isinstance(cfg, dict) and "model_cfg" in cfg:
        pp = cfg.get("preprocess_cfg") or {}
        cfg = cfg["model_cfg"]
        if not isinstance(pp, dict):
            raise ExportError(f"--model-config {p}: preprocess_cfg is not an object")
        if pp.get("interpolation", "bicubic") not in SIGHTD_INTERPOLATIONS:
            raise ExportError(
                f"--model-config {p}: preprocess_cfg interpolation {pp['interpolation']!r} is not one sightd has "
                f"({', '.join(SIGHTD_INTERPOLATIONS)})"
            )
    if not isinstance(cfg, dict) or not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ExportError(f"--model-config {p}: want an open_clip config with embed_dim, vision_cfg and text_cfg")
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / f"{p.stem}.json"
        f.write_text(json.dumps(cfg))
        open_clip.add_model_config(f)
    _FILE_PREPROCESS[p.stem] = pp
    return p.stem


def model_config(name: str) -> dict[str, Any]:
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ExportError(
            f"unknown model {name!r}; sightd-export offers: {', '.join(known_names())} "
            f"(or any open_clip config with --model-config FILE.json)"
        )
    return cfg


def check_tokenizer(name: str, cfg: dict[str, Any]) -> None:
    """sightd's tokenizer is CLIP's BPE; refuse a model that uses another."""
    t = cfg.get("text_cfg", {})
    hf = t.get("hf_tokenizer_name")
    vocab = t.get("vocab_size", CLIP_VOCAB_SIZE)
    if hf or vocab != CLIP_VOCAB_SIZE:
        raise ExportError(
            f"model {name!r} uses the tokenizer {hf or 'with vocabulary ' + str(vocab)}, not CLIP's BPE "
            f"(vocabulary {CLIP_VOCAB_SIZE}); sightd's tokenizer is CLIP BPE only, for now "
            "(SigLIP/SigLIP2 use SentencePiece)"
        )
    kw = t.get("tokenizer_kwargs") or {}
    if kw and kw != {"clean": "lower"}:
        raise ExportError(
            f"model {name!r} sets tokenizer options {kw}; sightd's CLIP tokenizer cleans and lower-cases only"
        )
    if t.get("hf_model_name"):
        raise ExportError(f"model {name!r} has a Hugging Face text tower ({t['hf_model_name']}); not supported")


def _preprocess(name: str, model: torch.nn.Module, tag: str | None) -> Preprocess:
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    if isinstance(size, int):
        size = (size, size)
    values = {
        "mean": tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        "std": tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)),
        "interpolation": cfg.get("interpolation", "bicubic"),
        "resize_mode": cfg.get("resize_mode", "shortest"),
    }
    source = "the model config"
    if _FILE_PREPROCESS.get(name):
        for k, v in _FILE_PREPROCESS[name].items():
            if k in values:
                values[k] = tuple(v) if isinstance(v, list) else v
        source = "the --model-config file's preprocess_cfg"
    # A local file carries no preprocessing: take the published weights' own
    # (MobileCLIP's are mean 0 / std 1, bilinear) when all their tags agree.
    tags = [tag] if tag else open_clip.list_pretrained_tags_by_model(name)
    pcfgs = [open_clip.get_pretrained_cfg(name, t) for t in tags]
    keys = ("mean", "std", "interpolation", "resize_mode")
    seen = {tuple((k, tuple(c[k]) if isinstance(c.get(k), list | tuple) else c.get(k)) for k in keys) for c in pcfgs}
    if pcfgs and len(seen) == 1:
        for k, v in dict(next(iter(seen))).items():
            if v is not None:
                values[k] = v
        source = f"the published weights' config ({', '.join(tags)})"
    if values["interpolation"] not in SIGHTD_INTERPOLATIONS:
        raise ExportError(
            f"model {name!r}: interpolation {values['interpolation']!r} is not one sightd has "
            f"({', '.join(SIGHTD_INTERPOLATIONS)})"
        )
    if values["resize_mode"] not in ("shortest", "squash"):
        raise ExportError(
            f"model {name!r}: resize mode {values['resize_mode']!r} is not one sightd has (shortest, squash)"
        )
    return Preprocess(size=(int(size[0]), int(size[1])), source=source, **values)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint as open_clip writes or publishes it: .pt/.bin (state dict,
    {'state_dict': ...} or a whole pickled model) or .safetensors."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        # A whole pickled model (torch.save(model)) needs the full unpickler:
        # only for files the user chose to trust.
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ExportError(f"--pretrained {path}: not a state dict or model (got {type(obj).__name__})")
    sd = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return sd


def apply_state_dict(name: str, model: torch.nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
    want = model.state_dict()
    missing = sorted(set(want) - set(sd))
    unexpected = sorted(set(sd) - set(want))
    shapes = sorted(
        f"{k} {tuple(sd[k].shape)} (model {tuple(want[k].shape)})"
        for k in set(sd) & set(want)
        if sd[k].shape != want[k].shape
    )
    if missing or unexpected or shapes:

        def few(xs: list[str]) -> str:
            return ", ".join(xs[:5]) + (f" and {len(xs) - 5} more" if len(xs) > 5 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {few(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} of another shape: {few(shapes)}")
        raise ExportError(f"--pretrained {path} does not fit {name}: keys " + "; ".join(parts))
    model.load_state_dict(sd, strict=True)


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load(name: str, pretrained: str) -> Loaded:
    """Builds `name` and loads `pretrained` (a local file or a pretrained tag)."""
    cfg = model_config(name)
    check_tokenizer(name, cfg)
    cat = CATALOGUE.get(name)
    path = Path(pretrained)
    tag: str | None = None
    if path.exists():
        if path.is_dir():
            raise ExportError(f"--pretrained {path}: a directory; want a checkpoint file (.pt, .bin, .safetensors)")
        model = open_clip.create_model(name, pretrained=None, pretrained_text=False)
        apply_state_dict(name, model, read_state_dict(path), path)
        weights = str(path.resolve())
    else:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise ExportError(
                f"--pretrained {pretrained!r}: no such file, and not a pretrained tag of {name} "
                f"(tags: {', '.join(tags) or 'none'})"
            )
        if os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable():
            raise ExportError(
                f"--pretrained {pretrained}: the weights of {name}/{pretrained} are a download from the Hugging Face "
                "hub, which this machine cannot reach; download them elsewhere and pass --pretrained FILE"
            )
        tag = pretrained
        model = open_clip.create_model(name, pretrained=pretrained)
        weights = f"{name}/{pretrained}"
    model.eval()
    ctx = int(cfg["text_cfg"].get("context_length", 77))
    ls = float(model.logit_scale.detach().exp().item()) if hasattr(model, "logit_scale") else 100.0
    return Loaded(
        name=name,
        model=model,
        preprocess=_preprocess(name, model, tag),
        context_length=ctx,
        embed_dim=int(cfg["embed_dim"]),
        logit_scale=ls,
        licence=cat.licence if cat else "not catalogued: the licence of your checkpoint applies",
        research_only=bool(cat and cat.research_only),
        weights=weights,
        model_cfg=cfg,
    )
