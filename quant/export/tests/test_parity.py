"""Parity through sightd itself: the Go binary's preprocessing, tokenizer and
runtime against open_clip's PyTorch output on real photos and texts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MEASURED, TEXTS
from PIL import Image

from sightd_export import verify


def compare(sightd: Path, bundle: Path, loaded, photos: list[Path], runtime: str = "auto") -> verify.Parity:
    return verify.parity(sightd, bundle, loaded, photos, TEXTS, runtime=runtime)


def summary(label: str, cos: dict[str, float]) -> None:
    for kind in ("image", "text"):
        cs = [c for k, c in cos.items() if k.startswith(kind)]
        line = f"{label} {kind}: cosine(sightd, PyTorch) mean {np.mean(cs):.5f} min {np.min(cs):.5f} (n={len(cs)})"
        print(line)
        MEASURED.append(line)


def test_embeddings_not_degenerate(loaded, photos):
    want = verify.torch_vectors(loaded, photos, [])
    V = np.stack([v.ravel() / np.linalg.norm(v) for v in want.values()])
    S = V @ V.T
    mean = (S.sum() - len(V)) / (len(V) * (len(V) - 1))
    MEASURED.append(f"mean pairwise cosine of different photos (PyTorch, random weights): {mean:.3f}")
    assert mean < 0.9, "random weights too degenerate to prove parity"


@pytest.mark.parametrize("runtime", ["litert", "tflite2.9"])
def test_float32_parity(sightd, bundle_f32, loaded, photos, runtime):
    """float32 bundles run right on both of sightd's runtimes."""
    par = compare(sightd, bundle_f32, loaded, photos, runtime)
    cos = par.cosines
    summary(f"float32 ({runtime})", cos)
    bad = {k: round(c, 4) for k, c in cos.items() if c < (0.99 if k.startswith("image") else 0.995)}
    assert not bad, f"below parity: {bad}"


def test_int8_parity(sightd, bundle_int8, loaded, photos):
    par = compare(sightd, bundle_int8, loaded, photos)
    cos = par.cosines
    summary("int8", cos)
    bad = {k: round(c, 4) for k, c in cos.items() if c < 0.95}
    assert not bad, f"below int8 parity: {bad}"
    MEASURED.append(
        f"int8 best text: same as PyTorch on {par.agree_all}/{len(photos)} photos; {par.decisive} have a "
        f"decisive best text (margin >= {verify.DECISIVE_MARGIN}), same on all of them: {par.same_best_text}"
    )
    assert par.decisive >= len(photos) // 2, "too few decisive photos to test the best text"
    assert par.same_best_text
    report = json.loads((bundle_int8 / "export-report.json").read_text())
    for tower in ("image", "text"):
        t = report["towers"][tower]
        MEASURED.append(
            f"int8 {tower}: scheme {t['scheme']}, int8 ops {sum(t['int8_ops'].values())}/{sum(t['ops'].values())}, "
            f"{t['size_bytes'] / 1e6:.1f} MB, LiteRT {t['ms_per_invoke_1_thread_litert']} ms"
        )


def test_resize_cost(loaded, photos, sightd, bundle_f32):
    """What the resize costs, as embedding cosine to open_clip's PyTorch (PIL's
    antialiased bicubic): sightd's own resize (PIL's, in Go) through the float32
    bundle, and, for comparison, a bilinear resize without antialiasing (what
    OpenCV's resize does) fed to the PyTorch model itself."""
    import torch.nn.functional as F

    cos = compare(sightd, bundle_f32, loaded, photos).cosines
    ours = {Path(k.split(":", 1)[1]).name: round(c, 5) for k, c in cos.items() if k.startswith("image")}
    want = verify.torch_vectors(loaded, photos, [])
    size = loaded.preprocess.size[0]
    mean = torch.tensor(loaded.preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.preprocess.std).view(1, 3, 1, 1)
    plain = {}
    for p in photos:
        x = torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
        f = size / min(x.shape[-2:])
        x = F.interpolate(x, size=(round(x.shape[-2] * f), round(x.shape[-1] * f)), mode="bilinear", antialias=False)
        t, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        with torch.no_grad():
            v = loaded.model.encode_image((x[..., t : t + size, left : left + size] - mean) / std).numpy()
        plain[p.name] = round(verify.cosine(v, want[f"image:{p}"]), 5)
    MEASURED.append(f"resize: sightd (PIL's bicubic in Go) vs open_clip, cosine per photo: {ours}")
    MEASURED.append(f"resize: bilinear without antialiasing (OpenCV's) vs open_clip, cosine per photo: {plain}")
    assert min(ours.values()) >= 0.9999


def test_probes_and_manifest(bundle_f32, bundle_int8, loaded):
    for b in (bundle_f32, bundle_int8):
        m = json.loads((b / "manifest.json").read_text())
        assert m["format"] == 1
        assert m["tokenizer"] == {**m["tokenizer"], "kind": "clip-bpe", "merges": 48894, "context_length": 77}
        assert m["image"]["input"]["mean"] == pytest.approx(list(loaded.preprocess.mean))
        assert m["logit_scale"] == pytest.approx(100.0, rel=1e-3)
        assert {p["tower"] for p in m["probes"]} == {"image", "text"}
        for p in m["probes"]:
            runner = verify.Runner(b / m[p["tower"]]["file"])
            if p["tower"] == "text":
                x = loaded.tokenizer()([p["text"]]).to(torch.int32).numpy()
            else:
                from sightd_export import manifest

                x = manifest.normalise(loaded, Image.open(b / p["file"]).convert("RGB"))
            assert verify.cosine(runner(x), np.array(p["expected"])) >= p["min_cosine"]


def test_bundle_pack_sign_verify(sightd, bundle_int8, tmp_path):
    def run(*args: str) -> str:
        r = subprocess.run([str(sightd), *args], capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr
        return r.stdout

    run("bundle", "keygen", "-o", str(tmp_path / "release"))
    tar = tmp_path / "b.tar.gz"
    run("bundle", "pack", str(bundle_int8), "-o", str(tar))
    run("bundle", "sign", "--key", str(tmp_path / "release.key"), str(tar))
    out = run("bundle", "verify", "--pubkey", str(tmp_path / "release.pub"), str(tar))
    assert ": ok" in out


def test_sightd_self_test_accepts_the_bundles(bundle_f32, bundle_int8):
    """sightd's own self-test at model load (quant/encoder's CheckModels and
    CheckProbes, as `sightd run` does it) passes on the exported bundles."""
    import os
    import shutil

    from conftest import REPO

    go = shutil.which("go")
    if go is None:
        pytest.fail("go is needed to run sightd's self-test on the bundles")
    env = {**os.environ, "SIGHTD_EXPORTED_BUNDLES": os.pathsep.join([str(bundle_f32), str(bundle_int8)])}
    r = subprocess.run(
        [go, "test", "-count=1", "-run", "^TestExportedBundles$", "-v", "./quant/encoder"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [s.strip() for s in r.stdout.splitlines() if "probe cosines" in s]
    MEASURED.extend(f"sightd self-test: {s}" for s in lines)
    assert r.returncode == 0 and len(lines) == 2, r.stdout[-3000:] + r.stderr[-2000:]
