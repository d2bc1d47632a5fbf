"""distill and compare end to end: the test's small random-weight ViT teacher
(spread init), frames recorded by `sightd camera record` from vtest.avi
(first 60% train, last 40% held out), a small student at a small input size.
The cosines are sightd's own embeddings of the bundles, not PyTorch's."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import CONFIG, MEASURED, opencv_data

from sightd_export import cli, compare, distill, load, quantize, records

STUDENT = ["--student", "mobilenetv3-small-050", "--student-size", "64"]
# One thread: on a machine other jobs keep busy, two spin-waiting threads made
# a step many times slower.
FAST = ["--batch", "16", "--views", "2", "--text-precision", "float32", "--holdout", "0.4", "--threads", "1"]
EPOCHS = 8
RULES = [
    {"id": "person", "prompts": ["a person walking"], "negatives": ["an empty pavement"]},
    {"id": "empty", "prompts": ["an empty street"]},
]


@pytest.fixture(scope="session")
def record(sightd: Path, workdir: Path) -> Path:
    """vtest.avi as `sightd camera record` writes it."""
    out = workdir / "record-vtest"
    video = opencv_data() / "vtest.avi"
    r = subprocess.run(
        [str(sightd), "camera", "record", "--source", str(video), "--frames", "60", "--every", "1s", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.fail(f"sightd camera record --source {video}: exit {r.returncode}: {r.stderr.strip()[-1500:]}")
    return out


@pytest.fixture(scope="session")
def unrelated(workdir: Path, photos: list[Path]) -> Path:
    d = workdir / "unrelated-photos"
    d.mkdir()
    for p in photos:
        (d / p.name).symlink_to(p)
    return d


def distill_args(checkpoint: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "distill",
        "--teacher-config",
        str(CONFIG),
        "--pretrained",
        str(checkpoint),
        *STUDENT,
        *FAST,
        "--data",
        str(data),
        "--out",
        str(out),
        *extra,
    ]


@pytest.fixture(scope="session")
def trained(workdir: Path, checkpoint: Path, record: Path) -> tuple[Path, str, str]:
    """The student trained on the record, interrupted after epoch 2 and
    resumed: (bundle, what the interrupted run said, what the resumed one said)."""
    out = workdir / "student-trained"
    args = distill_args(checkpoint, record, out, "--epochs", str(EPOCHS))

    def stop(epoch: int) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    said = []
    for i, argv in enumerate([args, [*args, "--resume"]]):
        distill.after_epoch = stop if i == 0 else (lambda _e: None)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                rc = cli.main(argv)
        finally:
            distill.after_epoch = lambda _e: None
        assert rc == (130 if i == 0 else 0), err.getvalue()[-3000:]
        assert out.exists() == (i == 1)
        said.append(err.getvalue())
    return out, said[0], said[1]


@pytest.fixture(scope="session")
def untrained(workdir: Path, checkpoint: Path, record: Path) -> Path:
    out = workdir / "student-untrained"
    assert cli.main(distill_args(checkpoint, record, out, "--epochs", "0")) == 0
    return out


@pytest.fixture(scope="session")
def off_site(workdir: Path, checkpoint: Path, unrelated: Path) -> tuple[Path, str]:
    """The same student trained as long on unrelated photos, its teacher
    catalogued here as research-only (the licence a student inherits):
    (bundle, what it printed)."""
    out = workdir / "student-unrelated"
    name = CONFIG.stem
    load.CATALOGUE[name] = load.Catalogued(name, "test", "research only (test)", research_only=True)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            rc = cli.main(distill_args(checkpoint, unrelated, out, "--epochs", str(EPOCHS), "--holdout", "0.2"))
    finally:
        del load.CATALOGUE[name]
    assert rc == 0
    return out, printed.getvalue()


def test_research_only_teacher_is_inherited(off_site):
    bundle, printed = off_site
    d = json.loads((bundle / "manifest.json").read_text())["distill"]
    assert d["research_only"] is True and "RESEARCH ONLY" in d["licence_note"], d
    assert "inherits" in printed and "RESEARCH ONLY" in printed, printed
    rep = json.loads((bundle / "export-report.json").read_text())
    assert rep["research_only"] and rep["distill"]["research_only"]


def test_record_split_by_time(record: Path):
    data = records.load([str(record)], 0.4)
    assert data.train and data.held_out
    assert max(s.time_s for s in data.train) < min(s.time_s for s in data.held_out)
    frames = len({(s.time_s, s.frame) for s in data.train + data.held_out})
    held = len({(s.time_s, s.frame) for s in data.held_out})
    assert abs(held / frames - 0.4) < 0.05, (held, frames)


def test_distill_beats_untrained_and_unrelated(sightd, bundle_f32, record, trained, untrained, off_site):
    bundle, interrupted, resumed = trained
    held = [s.path for s in records.load([str(record)], 0.4).held_out]
    cos = {}
    for name, b in (("trained", bundle), ("untrained", untrained), ("unrelated", off_site[0])):
        r = compare.compare(sightd, bundle_f32, b, held, [])
        cos[name] = r["cosine"]["mean"]
    line = (
        f"distill: held-out cosine(student, teacher) through sightd on {len(held)} regions of vtest.avi: "
        f"trained {cos['trained']:.4f}, before training {cos['untrained']:.4f}, "
        f"trained on unrelated photos {cos['unrelated']:.4f}"
    )
    print(line)
    MEASURED.append(line)
    assert cos["trained"] > cos["untrained"] + 0.3, cos
    assert cos["trained"] > cos["unrelated"] + 0.02, cos
    # The interrupted run said how to go on; the resumed one went on from epoch 3.
    assert f"holds epoch 2 of {EPOCHS}" in interrupted and "--resume" in interrupted, interrupted[-2000:]
    assert "resuming after epoch 2" in resumed and "distill: epoch 1:" not in resumed, resumed[-2000:]
    rep = json.loads((bundle / "export-report.json").read_text())["distill"]
    assert [h["epoch"] for h in rep["history"]][:4] == [0, 1, 2, 3]


def test_bundle_contents(trained, record):
    bundle = trained[0]
    m = json.loads((bundle / "manifest.json").read_text())
    d = m["distill"]
    assert d["student"] == "mobilenetv3-small-050" and d["teacher"] == "sightd-test-vit"
    assert d["data_sha256"] == records.load([str(record)], 0.4).sha256
    assert m["image"]["input"]["shape"] == [1, 3, 64, 64] and m["image"]["input"]["dtype"] == "int8"
    rep = json.loads((bundle / "export-report.json").read_text())
    img = rep["towers"]["image"]
    assert img["scheme"] == quantize.STATIC_FULL_INT8
    assert sum(img["int8_ops"].values()) == sum(img["ops"].values()), img["ops"]
    assert (bundle / "distill.png").stat().st_size > 1000
    assert (bundle / "distill.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_rules(sightd, bundle_f32, trained, record, tmp_path, capsys):
    bundle = trained[0]
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    out = tmp_path / "cmp.json"
    args = ["compare", str(bundle_f32), str(bundle), "--data", str(record), "--holdout", "0.4"]
    assert cli.main([*args, "--rules", str(rules), "--json", str(out), "--sightd", str(sightd)]) == 0
    printed = capsys.readouterr().out
    r = json.loads(out.read_text())
    assert [x["rule"] for x in r["rules"]] == ["person", "empty"]
    for x in r["rules"]:
        assert 0 <= x["agreement"] <= 1 and x["rule"] in printed
    MEASURED.append(
        "compare: rule agreement "
        + ", ".join(f"{x['rule']} {x['agreement']:.0%} (on {x['on_a']}/{x['on_b']})" for x in r["rules"])
    )


# ---- bad input: one clear line, exit 2 -------------------------------------------


def bad(capsys, args: list[str]) -> str:
    assert cli.main(args) == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_out_exists(capsys, tmp_path, checkpoint):
    line = bad(capsys, distill_args(checkpoint, tmp_path, tmp_path))
    assert "exists" in line


def test_empty_and_tiny_data(capsys, tmp_path, checkpoint, photos):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "0 images" in bad(capsys, distill_args(checkpoint, empty, tmp_path / "o"))
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    for p in photos[:3]:
        (tiny / p.name).symlink_to(p)
    assert "3 images" in bad(capsys, distill_args(checkpoint, tiny, tmp_path / "o"))
    assert "not a folder" in bad(capsys, distill_args(checkpoint, tmp_path / "nothing", tmp_path / "o"))


def test_unknown_and_unconvertible_students(capsys, tmp_path, checkpoint, unrelated):
    args = distill_args(checkpoint, unrelated, tmp_path / "o")
    i = args.index("mobilenetv3-small-050")
    line = bad(capsys, [*args[:i], "resnet-9000", *args[i + 1 :]])
    assert "not a student" in line and "mobilenetv3-large" in line
    line = bad(capsys, [*args[:i], "fastvit-mci0", *args[i + 1 :]])
    assert "not a student" in line and "1 s per" in line


def test_student_that_fails_int8(capsys, tmp_path, checkpoint, unrelated, monkeypatch):
    """A student whose full-int8 conversion fails stops with the reason and
    writes no bundle."""

    def fail(*_a: object) -> None:
        raise RuntimeError("op HARD_SWISH has no int8 kernel")

    monkeypatch.setattr(quantize, "aeq_static", fail)
    out = tmp_path / "o"
    line = bad(capsys, distill_args(checkpoint, unrelated, out, "--epochs", "0", "--student-size", "32"))
    assert "aeq_static_wi8_ai8 failed" in line and "HARD_SWISH" in line
    assert not out.exists()


def test_teacher_checkpoint_mismatch(capsys, tmp_path, checkpoint, unrelated):
    sd = torch.load(checkpoint, weights_only=True)
    sd.pop("visual.proj")
    bad_ckpt = tmp_path / "bad.pt"
    torch.save(sd, bad_ckpt)
    line = bad(capsys, distill_args(bad_ckpt, unrelated, tmp_path / "o"))
    assert "does not fit" in line and "visual.proj" in line


def test_resume_without_checkpoint(capsys, tmp_path, checkpoint, unrelated):
    line = bad(capsys, [*distill_args(checkpoint, unrelated, tmp_path / "o"), "--resume"])
    assert "no checkpoint" in line


def test_student_list(capsys):
    assert cli.main(["distill", "--student", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("mobilenetv3-small", "mobilenetv3-large", "mobilenetv4-conv-small", "efficientnet-lite0"):
        line = next(s for s in out.splitlines() if s.startswith(name + " "))
        assert "M " in line, line
    assert "fastvit-mci0" in out
