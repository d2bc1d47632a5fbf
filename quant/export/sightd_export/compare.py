"""compare: how two bundles agree on the held-out frames of a data folder,
through sightd itself (its preprocessing, runtime and rule calibration):
the cosine of their image embeddings, and for each rule the fraction of
regions where both decide the same (calibrated score at or above the rule's
threshold: a still image's decision, without the camera's baseline or the
N-of-M window).

Rules FILE: sightd's rule JSON, one rule object or a list of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import records
from .load import ExportError
from .verify import cosine, sightd_similarity


def find_sightd(given: str | None) -> Path:
    for c in (given, os.environ.get("SIGHTD_BIN"), shutil.which("sightd")):
        if c and Path(c).is_file():
            return Path(c)
    raise ExportError("no sightd binary: give --sightd PATH (or set SIGHTD_BIN, or put sightd on PATH)")


def read_rules(path: str) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"--rules {p}: no such file")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"--rules {p}: not JSON: {e}") from e
    rules = doc if isinstance(doc, list) else [doc]
    if not rules or not all(isinstance(r, dict) and r.get("id") for r in rules):
        raise ExportError(
            f"--rules {p}: want a rule object (with an id) or a list of them, as `sightd rule add --json`"
        )
    return rules


def rule_scores(sightd: Path, bundle: Path, rule: dict[str, Any], images: list[Path], work: Path) -> dict[str, Any]:
    """`sightd rule test --scores-json` of one rule on the images (each image
    a region crop: its full region is the one scored)."""
    f = work / f"rule-{rule['id']}.json"
    f.write_text(json.dumps(rule))
    args = [str(sightd), "rule", "test", "--json", str(f), "--bundle", str(bundle), "--scores-json"]
    for p in images:
        args += ["--image", str(p)]
    r = subprocess.run(args, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise ExportError(f"sightd rule test {rule['id']} on {bundle}: {r.stderr.strip()[-1000:]}")
    return json.loads(r.stdout)


def compare(
    sightd: Path, a: Path, b: Path, images: list[Path], rules: list[dict[str, Any]], threads: int = 2
) -> dict[str, Any]:
    va = sightd_similarity(sightd, a, images, [], threads=threads)
    vb = sightd_similarity(sightd, b, images, [], threads=threads)
    cs = np.array([cosine(np.array(va[f"image:{p}"]), np.array(vb[f"image:{p}"])) for p in images])
    out: dict[str, Any] = {
        "bundle_a": str(a),
        "bundle_b": str(b),
        "images": len(images),
        "cosine": {"mean": float(cs.mean()), "min": float(cs.min()), "p05": float(np.percentile(cs, 5))},
        "rules": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for rule in rules:
            sa = rule_scores(sightd, a, rule, images, Path(tmp))
            sb = rule_scores(sightd, b, rule, images, Path(tmp))
            on_a = [im["regions"][0]["on"] for im in sa["images"]]
            on_b = [im["regions"][0]["on"] for im in sb["images"]]
            ca = np.array([im["regions"][0]["calibrated"] for im in sa["images"]])
            cb = np.array([im["regions"][0]["calibrated"] for im in sb["images"]])
            same = sum(x == y for x, y in zip(on_a, on_b, strict=True))
            out["rules"].append(
                {
                    "rule": rule["id"],
                    "threshold_a": sa["threshold"],
                    "threshold_b": sb["threshold"],
                    "on_a": sum(on_a),
                    "on_b": sum(on_b),
                    "agreement": same / len(images),
                    "calibrated_mean_abs_diff": float(np.abs(ca - cb).mean()),
                }
            )
    return out


def print_table(r: dict[str, Any]) -> None:
    c = r["cosine"]
    print(f"A {r['bundle_a']}\nB {r['bundle_b']}")
    print(
        f"image embeddings on {r['images']} held-out regions (sightd): cosine(A, B) mean {c['mean']:.4f} "
        f"min {c['min']:.4f} 5th percentile {c['p05']:.4f}"
    )
    if r["rules"]:
        print(f"{'rule':<20} {'threshold A/B':>13} {'on A':>5} {'on B':>5} {'agree':>7} {'|dcal|':>7}")
        for x in r["rules"]:
            print(
                f"{x['rule']:<20} {x['threshold_a']:>6.2f}/{x['threshold_b']:<6.2f} {x['on_a']:>5} {x['on_b']:>5} "
                f"{x['agreement']:>7.1%} {x['calibrated_mean_abs_diff']:>7.3f}"
            )


def cmd_compare(a: argparse.Namespace) -> int:
    sightd = find_sightd(a.sightd)
    for b in (a.bundle_a, a.bundle_b):
        if not (Path(b) / "manifest.json").is_file() and not Path(b).is_file():
            raise ExportError(f"{b}: not a bundle (no manifest.json)")
    rules = read_rules(a.rules) if a.rules else []
    data = records.load(a.data, a.holdout)
    images = [s.path for s in data.held_out]
    if not images:
        raise ExportError("--data: no held-out images")
    r = compare(sightd, Path(a.bundle_a), Path(a.bundle_b), images, rules)
    r["data_sha256"] = data.sha256
    r["holdout"] = a.holdout
    print_table(r)
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2) + "\n")
        print(f"JSON in {a.json}")
    return 0


def add_parser(sub: Any) -> None:
    c = sub.add_parser("compare", help="how two bundles agree on held-out frames (embeddings, rule decisions)")
    c.add_argument("bundle_a")
    c.add_argument("bundle_b")
    c.add_argument("--data", nargs="+", action="extend", required=True, help="folders as for distill")
    c.add_argument("--holdout", type=float, default=0.2, help="as given to distill: the last fraction of the frames")
    c.add_argument("--rules", help="sightd rule JSON: one rule or a list")
    c.add_argument("--json", help="also write the results here")
    c.add_argument("--sightd", help="the sightd binary (default $SIGHTD_BIN, then PATH)")
