"""Shared fixtures: a small ViT-based open_clip config with spread random
weights saved as a local checkpoint, exported to float32 and int8 bundles
once per session, and sightd's binary to check them with."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sightd_export import cli

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
CONFIG = HERE / "data" / "sightd-test-vit.json"

# Real photos nobody here wrote (Debian's opencv-doc; make deps unpacks them).
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
    "HappyFish.jpg",
    "licenseplate_motion.jpg",
]
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
    "a fish",
    "a car's licence plate",
]


def opencv_data() -> Path:
    return Path(os.environ.get("OPENCV_DATA", REPO / "third_party" / "opencv-data"))


@pytest.fixture(scope="session")
def sightd() -> Path:
    p = Path(os.environ.get("SIGHTD_BIN", REPO / "bin" / "sightd"))
    if not p.is_file():
        pytest.fail(f"{p}: no sightd binary (make build, or make test-export which builds it)")
    return p


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    d = opencv_data()
    ps = [d / f for f in PHOTOS]
    missing = [p for p in ps if not p.is_file()]
    if missing:
        pytest.fail(f"missing photos {missing}: make deps unpacks them into {d}")
    return ps


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="session")
def calib(workdir: Path, photos: list[Path]) -> Path:
    d = workdir / "calib"
    d.mkdir()
    for p in photos[:8]:
        (d / p.name).symlink_to(p)
    return d


@pytest.fixture(scope="session")
def checkpoint(workdir: Path) -> Path:
    out = workdir / "sightd-test-vit.pt"
    assert cli.main(["random-checkpoint", "--model-config", str(CONFIG), "--seed", "0", "--out", str(out)]) == 0
    return out


def export(workdir: Path, checkpoint: Path, calib: Path, precision: str, *extra: str) -> Path:
    out = workdir / f"bundle-{precision}"
    args = ["export", "--model-config", str(CONFIG), "--pretrained", str(checkpoint), "--precision", precision]
    args += ["--calib", str(calib), "--out", str(out), *extra]
    assert cli.main(args) == 0
    return out


@pytest.fixture(scope="session")
def bundle_f32(workdir: Path, checkpoint: Path, calib: Path) -> Path:
    return export(workdir, checkpoint, calib, "float32")


@pytest.fixture(scope="session")
def bundle_int8(workdir: Path, checkpoint: Path, calib: Path) -> Path:
    return export(workdir, checkpoint, calib, "int8")


@pytest.fixture(scope="session")
def loaded(checkpoint: Path) -> object:
    from sightd_export import load

    name = load.register_config(CONFIG)
    return load.load(name, str(checkpoint))


# Measurements the tests record, printed at the end of the run (pytest hides
# a passing test's output).
MEASURED: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASURED:
        terminalreporter.section("export measurements")
        for line in MEASURED:
            terminalreporter.write_line(line)
