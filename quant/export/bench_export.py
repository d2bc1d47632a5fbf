"""make bench-export: full-size architectures with spread random weights,
exported in float32 and int8, parity through sightd, and sightd's own timing
of each tower (sightd bench --compare: LiteRT, 1 and 2 threads).

    .venv/bin/python quant/export/bench_export.py --sightd bin/sightd --photos DIR --work DIR [MODEL...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sightd_export import cli, load, verify

TEXTS = [
    "a red apple",
    "an orange",
    "a butterfly on a flower",
    "fruit on a table",
    "a monkey's face",
    "a football player",
    "a house with a garden",
    "a tall building",
    "a chessboard",
    "an aeroplane",
]
PHOTOS = [
    "apple.jpg",
    "orange.jpg",
    "butterfly.jpg",
    "fruits.jpg",
    "baboon.jpg",
    "messi5.jpg",
    "home.jpg",
    "building.jpg",
    "board.jpg",
    "aero1.jpg",
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sightd", required=True)
    ap.add_argument("--photos", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--precisions", default="float32,int8")
    ap.add_argument("models", nargs="*", default=["ViT-B-32", "MobileCLIP2-S0"])
    a = ap.parse_args()
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    calib = work / "calib"
    calib.mkdir(parents=True)
    photos = [Path(a.photos) / p for p in PHOTOS]
    for p in photos[:8]:
        (calib / p.name).symlink_to(p.resolve())
    rows = []
    for m in a.models:
        ckpt = work / f"{m}.pt"
        cli.main(["random-checkpoint", "--model", m, "--photos", str(calib), "--out", str(ckpt)])
        loaded = load.load(m, str(ckpt))
        for prec in a.precisions.split(","):
            out = work / f"{m}-{prec}"
            t0 = time.monotonic()
            if (
                cli.main(
                    [
                        "export",
                        "--model",
                        m,
                        "--pretrained",
                        str(ckpt),
                        "--precision",
                        prec,
                        "--calib",
                        str(calib),
                        "--out",
                        str(out),
                    ]
                )
                != 0
            ):
                rows.append(f"{m} {prec}: export failed")
                continue
            secs = time.monotonic() - t0
            rep = json.loads((out / "export-report.json").read_text())
            par = verify.parity(Path(a.sightd), out, loaded, photos, TEXTS)
            bench = subprocess.run(
                [a.sightd, "bench", "--compare", "--bundle", str(out), "--invokes", "20"],
                capture_output=True,
                text=True,
                check=False,
            )
            im, tx = par.stats("image"), par.stats("text")
            t = rep["towers"]
            rows.append(
                f"{m} {prec}: image {t['image']['scheme']} {t['image']['size_bytes'] / 1e6:.1f} MB, "
                f"text {t['text']['scheme']} {t['text']['size_bytes'] / 1e6:.1f} MB; export {secs:.0f} s, "
                f"peak {max(t['image']['conversion_peak_rss_mb'], t['text']['conversion_peak_rss_mb'])} MB; "
                f"sightd vs PyTorch image mean {im[0]:.4f} min {im[1]:.4f}, text mean {tx[0]:.4f} min {tx[1]:.4f}, "
                f"best text same as PyTorch on {par.agree_all}/{len(photos)} photos "
                f"(all {par.decisive} decisive ones: {par.same_best_text})\n"
                + "".join(
                    f"    {tw} candidate {c['scheme']}: "
                    + (
                        c.get("error")
                        or f"cosine mean {c['mean_cosine']:.4f} min {c['min_cosine']:.4f}, "
                        f"{c['ms_per_invoke_1_thread']} ms (LiteRT Python, 1 thread), {c['size_bytes'] / 1e6:.1f} MB, "
                        f"int8 ops {c['int8_ops']}/{c['ops']}, built in {c['conversion_seconds']} s"
                    )
                    + "\n"
                    for tw in ("image", "text")
                    for c in t[tw]["candidates"]
                )
                + "\n".join("    " + s for s in bench.stdout.splitlines() if s.strip())
                + (f"\n    bench failed: {bench.stderr.strip()[-300:]}" if bench.returncode else "")
            )
            print(rows[-1], flush=True)
    print("\n== bench-export ==")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
