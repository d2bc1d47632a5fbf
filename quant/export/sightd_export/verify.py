"""Stage 5: what a .tflite tower computes on LiteRT (ai_edge_litert, the
runtime sightd ships, in Python) against PyTorch, its ops, and its speed;
and the same comparison through sightd itself (the Go binary: its
preprocessing, tokenizer and runtime)."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0 or not np.isfinite(na * nb):
        return float("nan")
    return float(a @ b / (na * nb))


class Runner:
    """One .tflite tower on LiteRT's Python interpreter (XNNPACK)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.ip = Interpreter(model_path=str(path), num_threads=threads)
        self.ip.allocate_tensors()
        self.inp = self.ip.get_input_details()[0]
        self.out = self.ip.get_output_details()[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        d = self.inp
        if d["dtype"] in (np.int8, np.uint8) and x.dtype == np.float32:
            scale, zp = d["quantization"]
            info = np.iinfo(d["dtype"])
            x = np.clip(np.round(x / scale) + zp, info.min, info.max).astype(d["dtype"])
        self.ip.set_tensor(d["index"], x.astype(d["dtype"], copy=False))
        self.ip.invoke()
        y = self.ip.get_tensor(self.out["index"]).astype(np.float32)
        if self.out["dtype"] in (np.int8, np.uint8):
            scale, zp = self.out["quantization"]
            y = (y - zp) * scale
        return y

    def median_ms(self, x: np.ndarray, n: int = 10) -> float:
        self(x)
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            self(x)
            ts.append((time.perf_counter() - t0) * 1000)
        return statistics.median(ts)

    def input_spec(self) -> tuple[list[int], str]:
        return [int(s) for s in self.inp["shape"]], np.dtype(self.inp["dtype"]).name

    def output_spec(self) -> tuple[list[int], str]:
        return [int(s) for s in self.out["shape"]], np.dtype(self.out["dtype"]).name


@dataclass
class OpInventory:
    ops: dict[str, int] = field(default_factory=dict)
    int8_ops: dict[str, int] = field(default_factory=dict)


_INT8 = {9, 3}  # TensorType INT8, UINT8
_PLUMBING = {"QUANTIZE", "DEQUANTIZE"}


def op_inventory(path: Path) -> OpInventory:
    """The ops of a .tflite file by type, and those computing in int8: an op
    with an int8 (or uint8) input, weights included, other than the
    QUANTIZE/DEQUANTIZE conversions themselves."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    model = fb.read_model(path)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops: Counter[str] = Counter()
    int8: Counter[str] = Counter()
    for sg in model.subgraphs:
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            b = max(code.builtinCode, code.deprecatedBuiltinCode)
            name = names.get(b, f"OP{b}")
            if b == schema.BuiltinOperator.CUSTOM and code.customCode:
                name = "CUSTOM:" + code.customCode.decode()
            ops[name] += 1
            ins = [i for i in (op.inputs if op.inputs is not None else []) if i >= 0]
            if name not in _PLUMBING and any(sg.tensors[i].type in _INT8 for i in ins):
                int8[name] += 1
    return OpInventory(dict(sorted(ops.items())), dict(sorted(int8.items())))


@dataclass
class Fidelity:
    mean: float
    min: float
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {"mean_cosine": round(self.mean, 5), "min_cosine": round(self.min, 5), "n": self.n}


def fidelity(runner: Runner, inputs: list[np.ndarray], reference: list[np.ndarray]) -> Fidelity:
    cs = [cosine(runner(x), r) for x, r in zip(inputs, reference, strict=True)]
    cs = [c if np.isfinite(c) else -1.0 for c in cs]
    return Fidelity(float(np.mean(cs)), float(np.min(cs)), len(cs))


def torch_outputs(module: torch.nn.Module, inputs: list[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        return [module(torch.from_numpy(x)).numpy() for x in inputs]


# ---- through sightd ----------------------------------------------------------


def sightd_similarity(
    sightd: Path, bundle: Path, images: list[Path], texts: list[str], threads: int = 2, runtime: str = "auto"
) -> dict[str, list[float]]:
    """sightd's own vectors (`sightd similarity --json`): image path or text -> vector."""
    args = [str(sightd), "similarity", "--bundle", str(bundle), "--json", "--threads", str(threads)]
    args += ["--runtime", runtime]
    for p in images:
        args += ["--image", str(p)]
    for t in texts:
        args += ["--text", t]
    r = subprocess.run(args, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"sightd similarity failed: {r.stderr.strip()[-2000:]}")
    out = json.loads(r.stdout)
    return {("image:" if it["kind"] == "image" else "text:") + it["input"]: it["vector"] for it in out["items"]}


def sightd_tokenize(sightd: Path, vocab: Path, texts: list[str], context: int = 77) -> list[list[int]]:
    """sightd's token ids (`sightd tokenize`), one list per text."""
    out: list[list[int]] = []
    for i in range(0, len(texts), 200):
        chunk = texts[i : i + 200]
        r = subprocess.run(
            [str(sightd), "tokenize", "--vocab", str(vocab), "--context", str(context), "--", *chunk],
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            raise RuntimeError(f"sightd tokenize failed: {r.stderr.strip()[-2000:]}")
        lines = r.stdout.splitlines()
        if len(lines) != len(chunk):
            raise RuntimeError(f"sightd tokenize: {len(lines)} lines for {len(chunk)} texts")
        out += [[int(t) for t in line.split()] for line in lines]
    return out


def torch_vectors(loaded: Any, images: list[Path], texts: list[str]) -> dict[str, np.ndarray]:
    """open_clip's own vectors (PIL preprocessing, open_clip's tokenizer)."""
    from PIL import Image

    tf, tok = loaded.transform(), loaded.tokenizer()
    out = {}
    with torch.no_grad():
        for p in images:
            out[f"image:{p}"] = loaded.model.encode_image(tf(Image.open(p).convert("RGB")).unsqueeze(0)).numpy()
        for t in texts:
            out[f"text:{t}"] = loaded.model.encode_text(tok([t])).numpy()
    return out


def _unit(v: Any) -> np.ndarray:
    a = np.asarray(v, np.float64).ravel()
    return a / np.linalg.norm(a)


def text_scores(vectors: dict[str, Any], image: Path, texts: list[str]) -> np.ndarray:
    t = np.stack([_unit(vectors[f"text:{s}"]) for s in texts])
    return t @ _unit(vectors[f"image:{image}"])


def best_texts(vectors: dict[str, Any], images: list[Path], texts: list[str]) -> list[str]:
    return [texts[int(np.argmax(text_scores(vectors, p, texts)))] for p in images]


# A photo whose best text leads the second by less than this (in cosine) under
# PyTorch has no decisive best text: with random weights image-text cosines
# span about +-0.09, and a difference of 0.004 is within float32 rounding of
# sightd's resize, let alone int8.
DECISIVE_MARGIN = 0.01


@dataclass
class Parity:
    cosines: dict[str, float]
    same_best_text: bool  # on every photo with a decisive best text (PyTorch)
    decisive: int  # photos with a decisive best text
    agree_all: int  # photos, decisive or not, whose best text is the same

    def stats(self, kind: str) -> tuple[float, float]:
        cs = [c for k, c in self.cosines.items() if k.startswith(kind + ":")]
        return float(np.mean(cs)), float(np.min(cs))


def parity(
    sightd: Path, bundle: Path, loaded: Any, images: list[Path], texts: list[str], runtime: str = "auto"
) -> Parity:
    """sightd's vectors against PyTorch's, per photo and text."""
    got = sightd_similarity(sightd, bundle, images, texts, runtime=runtime)
    want = torch_vectors(loaded, images, texts)
    cos = {k: cosine(np.array(got[k]), want[k]) for k in want}
    same, decisive, agree = True, 0, 0
    for p in images:
        w, g = text_scores(want, p, texts), text_scores(got, p, texts)
        top = np.sort(w)[::-1]
        ok = int(np.argmax(w)) == int(np.argmax(g))
        agree += ok
        if top[0] - top[1] >= DECISIVE_MARGIN:
            decisive += 1
            same = same and ok
    return Parity(cos, same, decisive, agree)
