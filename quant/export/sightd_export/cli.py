"""sightd-export: OpenCLIP-family checkpoints to sightd bundles.

sightd-export list
sightd-export export (--model NAME | --model-config FILE.json) --pretrained FILE|TAG
                     --precision float32|int8 [--calib DIR] [--calib-text FILE] --out DIR
sightd-export random-checkpoint (--model NAME | --model-config FILE.json) [--seed N]
                     [--photos DIR] --out FILE.pt
sightd-export distill (--teacher NAME | --teacher-config FILE.json) --pretrained FILE|TAG
                     --student NAME|list --data DIR... --out DIR [--epochs N] [--resume] ...
sightd-export compare BUNDLE_A BUNDLE_B --data DIR --rules FILE [--json FILE]
sightd-export reference (--model NAME | --model-config FILE.json) --pretrained FILE|TAG
                     [--image FILE]... [--text TEXT]... --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import load as load_mod
from .load import CATALOGUE, TINYCLIP_NOTE, ExportError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Texts for calibrating and checking the text tower when no --calib-text is given.
PROMPTS = [
    "a photo of a person",
    "a person walking on the street",
    "a car parked in front of the house",
    "a package on the porch",
    "a dog in the garden",
    "a cat sitting on a sofa",
    "an empty room",
    "the garage door is open",
    "a delivery truck",
    "a bicycle leaning against a wall",
    "fruit on a table",
    "a photo of a bird",
    "someone at the front door at night",
    "a red apple",
    "a butterfly on a flower",
    "a busy road with traffic",
]


SIGHTD_RESIZE = (
    "sightd resizes as PIL does (antialiased, with the manifest's interpolation: {}) on torchvision's geometry, "
    "bit-exact with open_clip's transform"
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def model_name(a: argparse.Namespace) -> str:
    if a.model_config:
        return load_mod.register_config(a.model_config)
    if not a.model:
        raise ExportError("give --model NAME or --model-config FILE.json")
    load_mod.model_config(a.model)  # unknown names fail here, with the list
    return str(a.model)


def calib_images(d: str | None) -> list[Path]:
    if not d:
        return []
    p = Path(d)
    if not p.is_dir():
        raise ExportError(f"--calib {p}: not a folder")
    imgs = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.is_file())
    if not imgs:
        raise ExportError(f"--calib {p}: no images in it ({', '.join(IMAGE_EXTS)})")
    return imgs


def calib_texts(f: str | None) -> list[str]:
    if not f:
        return list(PROMPTS)
    p = Path(f)
    if not p.is_file():
        raise ExportError(f"--calib-text {p}: no such file")
    lines = [s.strip() for s in p.read_text().splitlines() if s.strip()]
    if not lines:
        raise ExportError(f"--calib-text {p}: no texts in it")
    return lines


def synthetic_images(work: Path, n: int = 4) -> list[Path]:
    """Deterministic pattern images, used when no --calib folder is given."""
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        y, x = np.mgrid[0:320, 0:400].astype(np.float32)
        img = np.stack(
            [
                127 + 120 * np.sin(x / (13 + 7 * i) + i),
                127 + 120 * np.cos(y / (17 + 5 * i)),
                127 + 120 * np.sin((x + y) / (29 + 3 * i)),
            ],
            -1,
        )
        img += rng.normal(0, 12, img.shape)
        p = work / f"pattern{i}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p)
        out.append(p)
    return out


def cmd_export(a: argparse.Namespace) -> int:
    from . import quantize
    from .util import PeakMemory

    out = Path(a.out)
    check_new_out(out)
    name = model_name(a)
    images = calib_images(a.calib)
    if a.precision == "int8" and not images:
        raise ExportError("--precision int8 needs --calib DIR: photos like the camera's, to calibrate and check int8")
    texts = calib_texts(a.calib_text)
    t_start = time.monotonic()
    log(f"sightd-export: loading {name} from {a.pretrained}")
    with PeakMemory() as load_mem:
        loaded = load_mod.load(name, a.pretrained)
    if loaded.research_only:
        log(f"NOTE: {name}'s weights are licensed for RESEARCH ONLY: {loaded.licence}")
    from . import convert

    schemes = ("float32",) if a.precision == "float32" else quantize.SCHEMES
    if a.schemes:
        schemes = tuple(s for s in a.schemes.split(",") if s)
    report = write_bundle(
        out,
        loaded,
        convert.towers(loaded),
        {"image": schemes, "text": schemes},
        images,
        texts,
        a.name or f"{name}-{a.precision}",
        a.version,
        {"model": name, "precision": a.precision, "load_peak_rss_mb": round(load_mem.peak_mb)},
        t_start,
    )
    print_report(report, out)
    return 0


def check_new_out(out: Path) -> None:
    if out.exists():
        raise ExportError(f"--out {out}: exists; give a new folder (nothing is overwritten)")


def write_bundle(
    out: Path,
    loaded: load_mod.Loaded,
    towers: dict[str, Any],
    schemes: dict[str, tuple[str, ...]],
    images: list[Path],
    texts: list[str],
    name: str,
    version: int,
    report_head: dict[str, Any],
    t_start: float,
    force: dict[str, str] | None = None,
    manifest_extra: dict[str, Any] | None = None,
    files: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Converts, quantizes and checks both towers, writes the probes and the
    manifest, and moves the finished bundle to `out` (a new folder). `loaded`
    gives the image preprocessing and the text side; `force` names a tower's
    scheme that must be used (it fails loudly instead of falling back);
    `files` are copied into the bundle as they are (a plot, a report)."""
    from . import manifest, quantize
    from .verify import Runner, cosine

    work = out.parent / f".{out.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    (work / "build").mkdir(parents=True)
    bundle = work / "bundle"
    bundle.mkdir()
    force = force or {}
    try:
        if not images:
            images = synthetic_images(work / "build")
        from PIL import Image

        tf = loaded.transform()
        img_inputs = [tf(Image.open(p).convert("RGB")).unsqueeze(0).numpy() for p in images]
        tok = loaded.tokenizer()
        txt_inputs = [tok([t]).int().numpy() for t in texts]
        inputs = {"image": img_inputs, "text": txt_inputs}
        report: dict[str, Any] = {
            **report_head,
            "weights": loaded.weights,
            "licence": loaded.licence,
            "research_only": loaded.research_only,
            "embedding_dim": loaded.embed_dim,
            "logit_scale": loaded.logit_scale,
            "preprocess": {
                "size": list(loaded.preprocess.size),
                "mean": list(loaded.preprocess.mean),
                "std": list(loaded.preprocess.std),
                "interpolation": loaded.preprocess.interpolation,
                "resize_mode": loaded.preprocess.resize_mode,
                "from": loaded.preprocess.source,
                "sightd": SIGHTD_RESIZE.format(loaded.preprocess.interpolation),
            },
            "calibration": {"images": len(img_inputs), "texts": len(txt_inputs)},
            "towers": {},
        }
        from . import convert

        chosen: dict[str, quantize.Candidate] = {}
        for tower in ("image", "text"):
            ref = convert_reference(towers[tower], inputs[tower])
            best, cands = quantize.choose(
                tower,
                towers[tower],
                convert.sample_args(loaded, tower),
                work / "build",
                inputs[tower],
                ref,
                schemes[tower],
                log,
            )
            if tower in force:
                best = next(c for c in cands if c.scheme == force[tower])
                if best.error:
                    raise ExportError(f"{tower} tower: {force[tower]} failed: {best.error}")
            assert best.path is not None and best.fidelity is not None
            shutil.copyfile(best.path, bundle / f"{tower}.tflite")
            chosen[tower] = best
            report["towers"][tower] = {
                "scheme": best.scheme,
                "file": f"{tower}.tflite",
                "size_bytes": (bundle / f"{tower}.tflite").stat().st_size,
                "fidelity_vs_pytorch": best.fidelity.as_dict(),
                "ms_per_invoke_1_thread_litert": round(best.ms, 2),
                "conversion_seconds": round(sum(c.seconds for c in cands), 1),
                "conversion_peak_rss_mb": round(max(c.peak_rss_mb for c in cands)),
                "ops": best.ops,
                "int8_ops": best.int8_ops,
                "candidates": [c.as_dict() for c in cands],
            }

        # Probes: two photos at the input size, three texts, vectors from PyTorch.
        runners = {t: Runner(bundle / f"{t}.tflite") for t in ("image", "text")}
        floor = {"float32": 0.99}
        probes: list[manifest.Probe] = []
        (bundle / "probes").mkdir()
        for i, p in enumerate(images[:2]):
            img = manifest.probe_pixels(loaded, p)
            rel = f"probes/image{i}.png"
            img.save(bundle / rel)
            x = manifest.normalise(loaded, img)
            want = convert_reference(towers["image"], [x])[0].ravel()
            got = runners["image"](x)
            probes.append(
                manifest.Probe(
                    "image",
                    file=rel,
                    expected=list(want),
                    min_cosine=probe_floor(cosine(got, want), chosen["image"].scheme, floor),
                )
            )
        for t in manifest.PROBE_TEXTS:
            x = tok([t]).int().numpy()
            want = convert_reference(towers["text"], [x])[0].ravel()
            got = runners["text"](x)
            probes.append(
                manifest.Probe(
                    "text",
                    text=t,
                    expected=list(want),
                    min_cosine=probe_floor(cosine(got, want), chosen["text"].scheme, floor),
                )
            )
        m = manifest.write(
            bundle,
            loaded,
            name,
            version,
            "image.tflite",
            "text.tflite",
            (runners["image"].input_spec(), runners["image"].output_spec()),
            (runners["text"].input_spec(), runners["text"].output_spec()),
            probes,
            manifest_extra,
        )
        report["probes"] = [
            {"tower": p["tower"], "input": p.get("text") or p.get("file"), "min_cosine": p["min_cosine"]}
            for p in m["probes"]
        ]
        for fname, src in (files or {}).items():
            shutil.copyfile(src, bundle / fname)
        report["total_seconds"] = round(time.monotonic() - t_start, 1)
        (bundle / "export-report.json").write_text(json.dumps(report, indent=2) + "\n")
        os.replace(bundle, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def probe_floor(measured: float, scheme: str, floor: dict[str, float]) -> float:
    """A probe's minimum: 0.99 for float32 (0.95 for int8), lowered to 0.01
    under what this runtime measured on it, never below 0.9."""
    base = floor.get(scheme, 0.95)
    return round(max(0.9, min(base, measured - 0.01)), 3)


def convert_reference(module: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from .verify import torch_outputs

    return torch_outputs(module, inputs)


def print_report(r: dict[str, Any], out: Path) -> None:
    print(f"bundle {out}: {r['model']} ({r['precision']}), weights {r['weights']}")
    print(f"licence: {r['licence']}")
    p = r["preprocess"]
    print(
        f"preprocess: {p['size'][0]}x{p['size'][1]} {p['resize_mode']} {p['interpolation']}, "
        f"mean {p['mean']} std {p['std']} (from {p['from']})"
    )
    print(f"  {p['sightd']}")
    for t, d in r["towers"].items():
        f = d["fidelity_vs_pytorch"]
        print(
            f"{t} tower: {d['scheme']}, {d['size_bytes'] / 1e6:.1f} MB, cosine to PyTorch mean {f['mean_cosine']:.4f} "
            f"min {f['min_cosine']:.4f} (n={f['n']}), {d['ms_per_invoke_1_thread_litert']} ms/invoke (LiteRT, 1 thread)"
        )
        n8 = sum(d["int8_ops"].values())
        print(
            f"  ops {sum(d['ops'].values())}, int8 {n8}: "
            + ", ".join(
                f"{k} {v}" + (f" ({d['int8_ops'][k]} int8)" if k in d["int8_ops"] else "") for k, v in d["ops"].items()
            )
        )
        print(f"  conversion {d['conversion_seconds']} s, peak {d['conversion_peak_rss_mb']} MB")
        for c in d["candidates"]:
            if "error" in c:
                print(f"  candidate {c['scheme']}: failed: {c['error']}")
            else:
                print(
                    f"  candidate {c['scheme']}: cosine mean {c['mean_cosine']:.4f} min {c['min_cosine']:.4f}, "
                    f"{c['ms_per_invoke_1_thread']} ms, {c['size_bytes'] / 1e6:.1f} MB, "
                    f"int8 ops {c['int8_ops']}/{c['ops']}"
                )
    print(f"total {r['total_seconds']} s; report in {out / 'export-report.json'}")


def cmd_list(_: argparse.Namespace) -> int:
    import open_clip
    import torch

    print(
        f"{'model':<16} {'params':>9} {'image':>6} {'text':>6} {'dim':>4} {'input':>7} {'ctx':>4} "
        "tokenizer  licence of the weights"
    )
    for name, c in CATALOGUE.items():
        cfg = open_clip.get_model_config(name) or {}
        with torch.device("meta"):
            m = open_clip.create_model(name, pretrained=None, pretrained_text=False, device="meta")
        n_img = sum(p.numel() for p in m.visual.parameters())
        n_all = sum(p.numel() for p in m.parameters())
        size = cfg.get("vision_cfg", {}).get("image_size", 224)
        ctx = cfg.get("text_cfg", {}).get("context_length", 77)
        print(
            f"{name:<16} {n_all / 1e6:8.1f}M {n_img / 1e6:5.1f}M {(n_all - n_img) / 1e6:5.1f}M "
            f"{cfg.get('embed_dim', 0):>4} "
            f"{size:>3}x{size:<3} {ctx:>4} clip-bpe   {c.licence}"
        )
    print(f"\n{TINYCLIP_NOTE}")
    print("Not offered: SigLIP/SigLIP2 (SentencePiece tokenizer, not CLIP BPE).")
    return 0


def cmd_random_checkpoint(a: argparse.Namespace) -> int:
    import open_clip
    import torch

    from .init import recompute_batchnorm, spread_init

    name = model_name(a)
    model = open_clip.create_model(name, pretrained=None, pretrained_text=False)
    spread_init(model, a.seed)
    photos = calib_images(a.photos)
    if photos:
        from PIL import Image

        tf = open_clip.image_transform(model.visual.image_size, is_train=False)
        recompute_batchnorm(model, [tf(Image.open(p).convert("RGB")).unsqueeze(0) for p in photos])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), a.out)
    print(f"{a.out}: {name} with random weights (seed {a.seed})")
    return 0


def cmd_reference(a: argparse.Namespace) -> int:
    """open_clip's own vectors for photos and texts (its PIL transform and
    tokenizer), for checking a bundle where PyTorch does not run (sightd's
    arm64 tests under QEMU)."""
    from . import verify

    if not a.image and not a.text:
        raise ExportError("reference: give at least one --image or --text")
    missing = [p for p in a.image if not Path(p).is_file()]
    if missing:
        raise ExportError(f"reference: no such image {missing[0]}")
    out = Path(a.out)
    if out.exists():
        raise ExportError(f"--out {out}: exists; choose a new file")
    name = model_name(a)
    loaded = load_mod.load(name, a.pretrained)
    images = [Path(p).resolve() for p in a.image]
    vec = verify.torch_vectors(loaded, images, a.text)

    def flat(v: np.ndarray) -> list[float]:
        return [float(np.float32(x)) for x in v.ravel()]

    ref = {
        "model": name,
        "weights": loaded.weights,
        "decisive_margin": verify.DECISIVE_MARGIN,
        "images": [{"file": str(p), "vector": flat(vec[f"image:{p}"])} for p in images],
        "texts": [{"text": t, "vector": flat(vec[f"text:{t}"])} for t in a.text],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(ref) + "\n")
    print(f"{out}: open_clip's vectors for {len(images)} images and {len(a.text)} texts ({name}, {loaded.weights})")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sightd-export", description="OpenCLIP-family checkpoints to sightd bundles")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the models on offer, with the licence of their weights")

    def model_args(p: argparse.ArgumentParser) -> None:
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--model", help="an open_clip model name (see list)")
        g.add_argument("--model-config", help="an open_clip-shaped config JSON (TinyCLIP, your own)")

    e = sub.add_parser("export", help="write a sightd bundle")
    model_args(e)
    e.add_argument("--pretrained", required=True, help="checkpoint file (.pt/.bin/.safetensors) or pretrained tag")
    e.add_argument("--precision", choices=("float32", "int8"), default="float32")
    e.add_argument("--calib", help="folder of calibration photos (needed for int8)")
    e.add_argument("--calib-text", help="file of calibration texts, one per line")
    e.add_argument("--out", required=True, help="the bundle folder to create")
    e.add_argument("--name", help="the bundle's name (default MODEL-PRECISION)")
    e.add_argument("--version", type=int, default=1, help="the bundle's version (default 1)")
    e.add_argument("--schemes", help="int8 candidates to measure, comma-separated (default: all)")

    from . import compare, distill

    distill.add_parser(sub)
    compare.add_parser(sub)

    r = sub.add_parser("random-checkpoint", help="a checkpoint with spread random weights (tests, benchmarks)")
    model_args(r)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--photos", help="photos to recompute BatchNorm statistics on")
    r.add_argument("--out", required=True)

    f = sub.add_parser("reference", help="open_clip's own vectors for photos and texts, as JSON")
    model_args(f)
    f.add_argument("--pretrained", required=True, help="checkpoint file (.pt/.bin/.safetensors) or pretrained tag")
    f.add_argument("--image", action="append", default=[], help="a photo (repeat)")
    f.add_argument("--text", action="append", default=[], help="a text (repeat)")
    f.add_argument("--out", required=True, help="the JSON file to create")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if a.cmd == "list":
            return cmd_list(a)
        if a.cmd == "export":
            return cmd_export(a)
        if a.cmd == "distill":
            from . import distill

            distill.check_args(a)
            return distill.cmd_distill(a)
        if a.cmd == "compare":
            from . import compare

            return compare.cmd_compare(a)
        if a.cmd == "reference":
            return cmd_reference(a)
        return cmd_random_checkpoint(a)
    except ExportError as e:
        print(f"sightd-export: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
