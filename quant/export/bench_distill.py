"""make bench-distill: a ViT-B-32 teacher (spread random weights: no
pretrained weights are reachable here) distilled into a small student on the
record of vtest.avi; held-out cosine, rule agreement (compare) and both image
towers' speed in `sightd bench --compare` (LiteRT int8, 1 and 2 threads).

    .venv/bin/python quant/export/bench_distill.py --sightd bin/sightd --photos DIR --record DIR --work DIR
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from sightd_export import cli, compare, records

PHOTOS = ["apple.jpg", "orange.jpg", "butterfly.jpg", "fruits.jpg", "baboon.jpg", "messi5.jpg", "home.jpg", "board.jpg"]
# Rules a pedestrian street camera would have (sightd's rule JSON).
RULES = [
    {"id": "person", "prompts": ["a person walking"], "negatives": ["an empty pavement"]},
    {"id": "group", "prompts": ["a group of people"], "negatives": ["one person alone"]},
    {"id": "bag", "prompts": ["someone carrying a bag"]},
    {"id": "empty", "prompts": ["an empty street"], "negatives": ["people walking"]},
]


def run(args: list[str]) -> None:
    print("$ " + " ".join(args), file=sys.stderr, flush=True)
    if cli.main(args) != 0:
        raise SystemExit(f"failed: {' '.join(args)}")


def image_ms(sightd: str, bundle: Path) -> dict[int, float]:
    """The image tower's median ms on LiteRT (XNNPACK) per thread count."""
    r = subprocess.run(
        [sightd, "bench", "--compare", "--bundle", str(bundle), "--invokes", "30"],
        capture_output=True,
        text=True,
        check=True,
    )
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"image\s+litert/xnnpack\s+(\d+)\s+([\d.]+)", line)
        if m:
            out[int(m.group(1))] = float(m.group(2))
    if len(out) != 2:
        raise SystemExit(f"sightd bench --compare: no LiteRT image timings in:\n{r.stdout}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sightd", required=True)
    ap.add_argument("--photos", required=True)
    ap.add_argument("--record", required=True, help="a folder from sightd camera record (vtest.avi)")
    ap.add_argument("--work", required=True, help="kept between runs: finished steps are not redone")
    ap.add_argument("--teacher", default="ViT-B-32")
    ap.add_argument("--student", default="mobilenetv4-conv-small")
    ap.add_argument("--student-size", default="160")
    ap.add_argument("--epochs", default="12")
    ap.add_argument("--holdout", default="0.4")
    ap.add_argument("--views", default="2")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--text-precision", default="float32")
    a = ap.parse_args()
    work = Path(a.work)
    calib = work / "calib"
    calib.mkdir(parents=True, exist_ok=True)
    for p in PHOTOS:
        if not (calib / p).exists():
            (calib / p).symlink_to((Path(a.photos) / p).resolve())
    t0 = time.monotonic()
    ckpt = work / f"{a.teacher}.pt"
    if not ckpt.exists():
        run(["random-checkpoint", "--model", a.teacher, "--photos", str(calib), "--out", str(ckpt)])
    teacher = work / f"{a.teacher}-int8"
    if not teacher.exists():
        export = ["export", "--model", a.teacher, "--pretrained", str(ckpt), "--precision", "int8"]
        run([*export, "--calib", str(calib), "--out", str(teacher)])
    student = work / f"{a.student}-{a.student_size}"
    if not student.exists():
        d = ["distill", "--teacher", a.teacher, "--pretrained", str(ckpt), "--student", a.student]
        d += ["--student-size", a.student_size, "--data", a.record, "--holdout", a.holdout]
        d += ["--views", a.views, "--threads", a.threads, "--text-precision", a.text_precision]
        run([*d, "--epochs", a.epochs, "--out", str(student)])
    data = records.load([a.record], float(a.holdout))
    images = [s.path for s in data.held_out]
    cmp = compare.compare(Path(a.sightd), teacher, student, images, RULES)
    (work / "compare.json").write_text(json.dumps(cmp, indent=2) + "\n")
    ms_t, ms_s = image_ms(a.sightd, teacher), image_ms(a.sightd, student)
    rep = json.loads((student / "export-report.json").read_text())
    d = rep["distill"]
    c = cmp["cosine"]
    lines = [
        f"teacher {a.teacher} (random spread weights) int8 bundle, student {a.student} at {a.student_size} px, "
        f"static full int8; record {a.record}: {len(data.train)} training / {len(data.held_out)} held-out regions",
        f"held-out cosine(student, teacher), PyTorch: before training {d['held_out_cosine_pytorch']['before']:.4f}, "
        f"best {d['held_out_cosine_pytorch']['best']:.4f} (epoch {d['best_epoch']} of {d['epochs_run']}); "
        f"the teacher's mean vector as a constant: {d['held_out_cosine_pytorch']['constant_mean_vector']:.4f}",
        f"held-out cosine(student bundle, teacher bundle), sightd: mean {c['mean']:.4f} min {c['min']:.4f} "
        f"5th percentile {c['p05']:.4f}",
        "| rule | on (teacher) | on (student) | agreement |",
        "|---|---|---|---|",
        *(f"| {r['rule']} | {r['on_a']} | {r['on_b']} | {r['agreement']:.1%} |" for r in cmp["rules"]),
        "| image tower | 1 thread ms | 2 threads ms |",
        "|---|---|---|",
        f"| teacher {a.teacher} int8 ({rep_scheme(teacher)}) | {ms_t[1]:.2f} | {ms_t[2]:.2f} |",
        f"| student {a.student} full int8 | {ms_s[1]:.2f} | {ms_s[2]:.2f} |",
        f"speed-up: {ms_t[1] / ms_s[1]:.1f}x (1 thread), {ms_t[2] / ms_s[2]:.1f}x (2 threads)",
        f"goal (>= 5x faster at held-out cosine >= 0.9 through sightd): "
        f"{'met' if min(ms_t[1] / ms_s[1], ms_t[2] / ms_s[2]) >= 5 and c['mean'] >= 0.9 else 'NOT met'}",
        f"plot: {student / 'distill.png'}",
        f"bench time {time.monotonic() - t0:.0f} s (steps already done in {work} are not counted)",
    ]
    print("\n== bench-distill ==")
    print("\n".join(lines))
    return 0


def rep_scheme(bundle: Path) -> str:
    return str(json.loads((bundle / "export-report.json").read_text())["towers"]["image"]["scheme"])


if __name__ == "__main__":
    sys.exit(main())
