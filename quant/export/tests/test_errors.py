"""Bad input gets one clear line (exit status 2), before any heavy work."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import CONFIG

from sightd_export import cli


def run(capsys, *args: str) -> str:
    assert cli.main(list(args)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


def test_unknown_model(capsys, tmp_path):
    line = run(capsys, "export", "--model", "ViT-Q-99", "--pretrained", "x.pt", "--out", str(tmp_path / "o"))
    assert "unknown model 'ViT-Q-99'" in line and "MobileCLIP2-S0" in line and "ViT-B-32" in line


def test_siglip_refused(capsys, tmp_path):
    line = run(capsys, "export", "--model", "ViT-B-16-SigLIP", "--pretrained", "x.pt", "--out", str(tmp_path / "o"))
    assert "not CLIP's BPE" in line and "SigLIP" in line


def test_existing_out(capsys, tmp_path):
    line = run(capsys, "export", "--model", "ViT-B-32", "--pretrained", "x.pt", "--out", str(tmp_path))
    assert "exists" in line


def test_empty_calib(capsys, tmp_path):
    (tmp_path / "calib").mkdir()
    line = run(
        capsys,
        "export",
        "--model-config",
        str(CONFIG),
        "--pretrained",
        "x.pt",
        "--precision",
        "int8",
        "--calib",
        str(tmp_path / "calib"),
        "--out",
        str(tmp_path / "o"),
    )
    assert "no images" in line


def test_int8_needs_calib(capsys, tmp_path):
    line = run(
        capsys,
        "export",
        "--model-config",
        str(CONFIG),
        "--pretrained",
        "x.pt",
        "--precision",
        "int8",
        "--out",
        str(tmp_path / "o"),
    )
    assert "--calib" in line


def test_checkpoint_mismatch(capsys, tmp_path, checkpoint: Path):
    sd = torch.load(checkpoint, weights_only=True)
    sd.pop("visual.proj")
    sd["visual.extra"] = torch.zeros(1)
    sd["text_projection"] = torch.zeros(3, 3)
    bad = tmp_path / "bad.pt"
    torch.save(sd, bad)
    line = run(capsys, "export", "--model-config", str(CONFIG), "--pretrained", str(bad), "--out", str(tmp_path / "o"))
    assert "does not fit" in line and "visual.proj" in line and "visual.extra" in line and "text_projection" in line


def test_offline_tag(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = run(capsys, "export", "--model", "ViT-B-32", "--pretrained", "openai", "--out", str(tmp_path / "o"))
    assert "--pretrained FILE" in line and "hub" in line


def test_unknown_tag(capsys, tmp_path):
    line = run(capsys, "export", "--model", "ViT-B-32", "--pretrained", "nosuchtag", "--out", str(tmp_path / "o"))
    assert "not a pretrained tag" in line and "openai" in line


def test_list_says_licences(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "ViT-B-32",
        "ViT-B-16",
        "MobileCLIP-S1",
        "MobileCLIP-S2",
        "MobileCLIP-B",
        "MobileCLIP2-S0",
        "MobileCLIP2-S2",
        "MobileCLIP2-B",
    ):
        line = next(s for s in out.splitlines() if s.startswith(name + " "))
        # Apple's MobileCLIP weights, v1 included, are research only as published now.
        assert ("RESEARCH ONLY" in line) == name.startswith("MobileCLIP"), line
    assert "TinyCLIP" in out


def test_reference_needs_inputs(capsys, tmp_path):
    line = run(capsys, "reference", "--model-config", str(CONFIG), "--pretrained", "x.pt", "--out", str(tmp_path / "r"))
    assert "at least one --image or --text" in line


def test_reference_missing_image(capsys, tmp_path):
    args = ["reference", "--model-config", str(CONFIG), "--pretrained", "x.pt", "--image", str(tmp_path / "no.jpg")]
    line = run(capsys, *args, "--out", str(tmp_path / "r"))
    assert "no such image" in line
