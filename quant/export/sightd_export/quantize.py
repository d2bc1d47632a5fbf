"""Stage 3: int8 per tower, chosen by measurement in the export itself.

Candidates (see DESIGN, "model export"): ai-edge-quantizer's dynamic-range
int8 (`dynamic_wi8_afp32`: int8 weights, activations quantised on the fly,
LayerNorm/softmax/attention matmuls stay float) on the float32 file, and
litert-torch's PT2E static per-tensor int8 (calibrated on the calibration
set; LayerNorm, BATCH_MATMUL, SOFTMAX, ADD and MUL stay float). Each is timed
on LiteRT and compared with PyTorch on the calibration inputs; the fastest
whose worst cosine stays above the floor wins (within 15% of its time the
better fidelity wins), float32 included, so a tower where int8 does not pay
stays float.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .convert import to_tflite
from .util import PeakMemory
from .verify import Fidelity, Runner, fidelity, op_inventory

SCHEMES = ("float32", "aeq_dynamic_wi8_afp32", "pt2e_static_per_tensor")
# Every op int8: what distill's students are converted with (not one of
# export's candidates, whose choice stays as measured).
STATIC_FULL_INT8 = "aeq_static_wi8_ai8"
FLOOR = {"image": 0.97, "text": 0.97}  # worst calibration cosine a scheme must keep
TIE = 0.15  # schemes this close to the fastest in time are chosen by fidelity


@dataclass
class Candidate:
    scheme: str
    path: Path | None = None
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    fidelity: Fidelity | None = None
    ms: float = 0.0
    error: str = ""
    ops: dict[str, int] = field(default_factory=dict)
    int8_ops: dict[str, int] = field(default_factory=dict)

    def eligible(self, floor: float) -> bool:
        return not self.error and self.fidelity is not None and self.fidelity.min >= floor

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"scheme": self.scheme}
        if self.error:
            d["error"] = self.error
            return d
        d.update(
            {
                "ms_per_invoke_1_thread": round(self.ms, 2),
                "size_bytes": self.path.stat().st_size if self.path else 0,
                "conversion_seconds": round(self.seconds, 1),
                "conversion_peak_rss_mb": round(self.peak_rss_mb),
                "int8_ops": sum(self.int8_ops.values()),
                "ops": sum(self.ops.values()),
            }
        )
        if self.fidelity:
            d.update(self.fidelity.as_dict())
        return d


def aeq_dynamic(float_path: Path, out: Path) -> None:
    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(str(float_path))
    qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    res = qt.quantize(enable_progress_report=False)
    out.write_bytes(bytes(res.quantized_model or b""))


def aeq_static(float_path: Path, calib: list[np.ndarray], out: Path) -> None:
    """ai-edge-quantizer's static_wi8_ai8: every op int8, input and output
    included, activation ranges from the calibration inputs (distill's
    students; the float32 file is litert-torch's)."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    sigs = Interpreter(model_path=str(float_path)).get_signature_list()
    key = next(iter(sigs))
    name = sigs[key]["inputs"][0]
    qt = quantizer.Quantizer(str(float_path))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    cal = qt.calibrate({key: [{name: x} for x in calib]})
    res = qt.quantize(cal, enable_progress_report=False)
    out.write_bytes(bytes(res.quantized_model or b""))


def pt2e_static(module: torch.nn.Module, args: tuple[Any, ...], calib: list[np.ndarray], out: Path) -> None:
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    q = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=False)
    )
    with torch.no_grad():
        m = torch.export.export(module, args).module()
        m = quantize_pt2e.prepare_pt2e(m, q)
        for x in tqdm(calib, desc="    calibrating", leave=False, unit="input"):
            m(torch.from_numpy(x))
        m = quantize_pt2e.convert_pt2e(m, fold_quantize=False)
        edge = litert_torch.convert(m, args, quant_config=quant_config.QuantConfig(pt2e_quantizer=q))
        edge.export(str(out))


def measure(c: Candidate, inputs: list[np.ndarray], reference: list[np.ndarray]) -> None:
    assert c.path is not None
    r = Runner(c.path, threads=1)
    c.fidelity = fidelity(r, inputs, reference)
    c.ms = r.median_ms(inputs[0])
    inv = op_inventory(c.path)
    c.ops, c.int8_ops = inv.ops, inv.int8_ops


def build(
    scheme: str,
    tower: str,
    module: torch.nn.Module,
    args: tuple[Any, ...],
    work: Path,
    calib: list[np.ndarray],
    float_path: Path | None,
) -> Candidate:
    path = work / f"{tower}.{scheme}.tflite"
    c = Candidate(scheme, path=path)
    t0 = time.monotonic()
    try:
        with PeakMemory() as mem:
            if scheme == "float32":
                r = to_tflite(module, args, path)
                c.seconds, c.peak_rss_mb = r.seconds, r.peak_rss_mb
                return c
            if scheme == "aeq_dynamic_wi8_afp32":
                assert float_path is not None
                aeq_dynamic(float_path, path)
            elif scheme == STATIC_FULL_INT8:
                assert float_path is not None
                aeq_static(float_path, calib, path)
            elif scheme == "pt2e_static_per_tensor":
                pt2e_static(module, args, calib, path)
            else:
                raise ValueError(f"unknown scheme {scheme}")
        c.seconds, c.peak_rss_mb = time.monotonic() - t0, mem.peak_mb
    except Exception as e:  # a scheme that fails is reported, not fatal
        c.error = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        c.path = None
        traceback.print_exc(limit=2)
    return c


def choose(
    tower: str,
    module: torch.nn.Module,
    args: tuple[Any, ...],
    work: Path,
    calib: list[np.ndarray],
    reference: list[np.ndarray],
    schemes: tuple[str, ...],
    log: Callable[[str], None],
) -> tuple[Candidate, list[Candidate]]:
    """Builds and measures each scheme for one tower; returns the winner and all."""
    out: list[Candidate] = []
    float_path: Path | None = None
    for s in schemes:
        log(f"  {tower}: {s} ...")
        c = build(s, tower, module, args, work, calib, float_path)
        if not c.error:
            try:
                measure(c, calib, reference)
            except Exception as e:  # e.g. a runtime that refuses the file
                c.error = f"LiteRT: {type(e).__name__}: {e}".splitlines()[0][:300]
        if s == "float32":
            if c.error:
                raise RuntimeError(f"{tower} tower: float32 conversion failed: {c.error}")
            float_path = c.path
        fid = f"cosine mean {c.fidelity.mean:.4f} min {c.fidelity.min:.4f}" if c.fidelity else ""
        log(f"  {tower}: {s}: " + (c.error or f"{fid}, {c.ms:.1f} ms, {c.seconds:.0f} s to build"))
        out.append(c)
    return pick(out, FLOOR[tower]), out


def pick(cands: list[Candidate], floor: float) -> Candidate:
    """The fastest candidate whose worst cosine is at or above floor; those
    within TIE of its time (timing noise on a shared machine) are a tie that
    the better fidelity breaks. float32 (first) when none qualifies."""
    ok = [c for c in cands if c.eligible(floor)]
    if not ok:
        return cands[0]
    fastest = min(c.ms for c in ok)
    ties = [c for c in ok if c.ms <= fastest * (1 + TIE)]
    return max(ties, key=lambda c: c.fidelity.mean if c.fidelity else 0.0)
