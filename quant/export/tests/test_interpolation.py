"""The manifest's interpolation, through sightd: a MobileCLIP-family model
(a timm FastViT image tower, a text tower without causal mask, mean 0 / std 1
and PIL's bilinear resize, as MobileCLIP's published transform has it) in a
tiny config with spread random weights, exported to float32. sightd resizes
with the model's own filter, and the gain over its bicubic default is
measured on the same bundle with the manifest saying bicubic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import HERE, MEASURED, TEXTS

from sightd_export import cli, load, verify
from sightd_export.load import ExportError

MOBILECLIP_CONFIG = HERE / "data" / "sightd-test-mobileclip.json"


@pytest.fixture(scope="module")
def mc_checkpoint(workdir: Path) -> Path:
    out = workdir / "sightd-test-mobileclip.pt"
    args = ["random-checkpoint", "--model-config", str(MOBILECLIP_CONFIG), "--seed", "0", "--out", str(out)]
    assert cli.main(args) == 0
    return out


@pytest.fixture(scope="module")
def mc_bundle(workdir: Path, mc_checkpoint: Path, calib: Path) -> Path:
    out = workdir / "bundle-mobileclip-float32"
    args = ["export", "--model-config", str(MOBILECLIP_CONFIG), "--pretrained", str(mc_checkpoint)]
    assert cli.main([*args, "--precision", "float32", "--calib", str(calib), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def mc_loaded(mc_checkpoint: Path) -> load.Loaded:
    return load.load(load.register_config(MOBILECLIP_CONFIG), str(mc_checkpoint))


def image_cosines(sightd: Path, bundle: Path, loaded: load.Loaded, photos: list[Path]) -> list[float]:
    cos = verify.parity(sightd, bundle, loaded, photos, TEXTS).cosines
    return [c for k, c in cos.items() if k.startswith("image")]


def test_config_file_preprocessing(mc_loaded: load.Loaded, mc_bundle: Path) -> None:
    p = mc_loaded.preprocess
    assert (p.interpolation, p.mean, p.std) == ("bilinear", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert "preprocess_cfg" in p.source
    m = json.loads((mc_bundle / "manifest.json").read_text())
    assert m["image"]["input"]["interpolation"] == "bilinear"
    rep = json.loads((mc_bundle / "export-report.json").read_text())
    assert rep["preprocess"]["interpolation"] == "bilinear"


def test_bilinear_parity_and_gain(
    sightd: Path, mc_bundle: Path, mc_loaded: load.Loaded, photos: list[Path], tmp_path: Path
) -> None:
    want = verify.torch_vectors(mc_loaded, photos, [])
    V = np.stack([v.ravel() / np.linalg.norm(v) for v in want.values()])
    spread = float((V @ V.T).sum() - len(V)) / (len(V) * (len(V) - 1))
    assert spread < 0.9, f"random weights too degenerate (mean pairwise cosine {spread:.3f})"

    own = image_cosines(sightd, mc_bundle, mc_loaded, photos)
    # The same towers with the manifest saying bicubic: sightd before the
    # field existed.
    bicubic = tmp_path / "bicubic"
    shutil.copytree(mc_bundle, bicubic)
    m = json.loads((bicubic / "manifest.json").read_text())
    m["image"]["input"]["interpolation"] = "bicubic"
    (bicubic / "manifest.json").write_text(json.dumps(m))
    other = image_cosines(sightd, bicubic, mc_loaded, photos)
    line = (
        f"MobileCLIP-family tiny config (bilinear), cosine(sightd, PyTorch) over {len(photos)} photos: "
        f"manifest bilinear mean {np.mean(own):.5f} min {np.min(own):.5f}; "
        f"bicubic mean {np.mean(other):.5f} min {np.min(other):.5f}; mean pairwise cosine {spread:.3f}"
    )
    print(line)
    MEASURED.append(line)
    assert min(own) >= 0.9999, f"sightd's bilinear resize is not open_clip's: {sorted(own)[:3]}"
    assert min(own) > min(other) and np.mean(own) > np.mean(other)


def test_unknown_interpolation_refused(tmp_path: Path) -> None:
    cfg = json.loads(MOBILECLIP_CONFIG.read_text())
    cfg["preprocess_cfg"]["interpolation"] = "lanczos"
    f = tmp_path / "sightd-test-lanczos.json"
    f.write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match="interpolation 'lanczos' is not one sightd has"):
        load.register_config(f)
