"""The choices the export makes, on made-up measurements."""

from __future__ import annotations

from sightd_export.cli import probe_floor
from sightd_export.load import CATALOGUE
from sightd_export.quantize import Candidate, pick
from sightd_export.verify import Fidelity


def cand(scheme: str, ms: float, mean: float, worst: float, error: str = "") -> Candidate:
    return Candidate(scheme, ms=ms, fidelity=Fidelity(mean, worst, 8), error=error)


def test_pick_fastest_that_keeps_fidelity():
    f32 = cand("float32", 130, 1.0, 1.0)
    dyn = cand("aeq_dynamic_wi8_afp32", 40, 0.999, 0.998)
    static = cand("pt2e_static_per_tensor", 20, 0.99, 0.98)
    assert pick([f32, dyn, static], 0.97) is static


def test_pick_breaks_a_near_tie_by_fidelity():
    f32 = cand("float32", 130, 1.0, 1.0)
    dyn = cand("aeq_dynamic_wi8_afp32", 20.5, 0.9994, 0.9993)
    static = cand("pt2e_static_per_tensor", 19.0, 0.991, 0.9875)
    assert pick([f32, dyn, static], 0.97) is dyn


def test_pick_refuses_low_fidelity_and_failures():
    f32 = cand("float32", 110, 1.0, 1.0)
    static = cand("pt2e_static_per_tensor", 10, 0.79, 0.70)
    broken = cand("aeq_dynamic_wi8_afp32", 5, 0, 0, error="LiteRT: refused")
    assert pick([f32, static, broken], 0.97) is f32


def test_pick_keeps_float_when_int8_is_slower():
    f32 = cand("float32", 111, 1.0, 1.0)
    static = cand("pt2e_static_per_tensor", 385, 0.99, 0.985)
    assert pick([f32, static], 0.97) is f32


def test_probe_floor():
    assert probe_floor(1.0, "float32", {"float32": 0.99}) == 0.99
    assert probe_floor(0.999, "aeq_dynamic_wi8_afp32", {"float32": 0.99}) == 0.95
    assert probe_floor(0.955, "pt2e_static_per_tensor", {"float32": 0.99}) == 0.945
    assert probe_floor(0.5, "pt2e_static_per_tensor", {"float32": 0.99}) == 0.9


def test_catalogue_apple_weights_research_only():
    """Apple publishes MobileCLIP's weights, v1 and v2, under its research-only
    licence (apple-amlr) now; only the CLIP ViTs' openai/laion weights are MIT."""
    for name, c in CATALOGUE.items():
        apple = name.startswith("MobileCLIP")
        assert c.research_only == apple, name
        assert ("RESEARCH ONLY" in c.licence) == apple, name
