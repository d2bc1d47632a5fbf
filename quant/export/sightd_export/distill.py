"""distill: trains a small student image tower to reproduce a CLIP teacher's
L2-normalised image embeddings on the frames of one camera, then exports it
as a static full-int8 tower beside the teacher's own text tower.

Loss: 1 - cosine(student, teacher) plus either a relational term (the
student's pairwise similarity matrix over the batch against the teacher's,
as TinyCLIP's affinity mimicking) or a contrastive-to-text-anchor term (the
distribution over the teacher's text embeddings of a prompt list, as
MobileCLIP's reinforced training distils). Augmented views (random resized
crop, flip, colour jitter, the same pixels for teacher and student) are drawn
once, and the teacher's embedding of each is cached: an epoch then costs the
student alone (MobileCLIP's "reinforced data set").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance
from tqdm import tqdm

from . import load as load_mod
from . import records, students
from .load import ExportError, Loaded, Preprocess

CKPT = "checkpoint.pt"
CACHE = "cache.npz"
PLOT = "distill.png"
REPORT = "distill-report.json"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# Called after each finished epoch with its number (tests interrupt here).
after_epoch: Callable[[int], None] = lambda _epoch: None  # noqa: E731


@dataclasses.dataclass(frozen=True)
class Aug:
    """One augmented view: crop box as fractions, flip, colour factors."""

    box: tuple[float, float, float, float]  # left, top, right, bottom in 0..1
    flip: bool
    brightness: float
    contrast: float
    saturation: float

    @staticmethod
    def identity() -> Aug:
        return Aug((0.0, 0.0, 1.0, 1.0), False, 1.0, 1.0, 1.0)

    @staticmethod
    def draw(rng: random.Random, aspect: float) -> Aug:
        """torchvision's RandomResizedCrop geometry (scale 0.5..1, ratio 3/4..4/3)."""
        for _ in range(10):
            area = rng.uniform(0.5, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            w = math.sqrt(area * ratio / aspect)
            h = math.sqrt(area / ratio * aspect)
            if w <= 1 and h <= 1:
                x, y = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
                box = (x, y, x + w, y + h)
                break
        else:
            box = (0.0, 0.0, 1.0, 1.0)
        j = 0.3
        return Aug(
            box, rng.random() < 0.5, rng.uniform(1 - j, 1 + j), rng.uniform(1 - j, 1 + j), rng.uniform(1 - j, 1 + j)
        )

    def apply(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        x0, y0, x1, y1 = self.box
        if self.box != (0.0, 0.0, 1.0, 1.0):
            left, top = round(x0 * w), round(y0 * h)
            img = img.crop((left, top, max(round(x1 * w), left + 1), max(round(y1 * h), top + 1)))
        if self.flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.brightness != 1:
            img = ImageEnhance.Brightness(img).enhance(self.brightness)
        if self.contrast != 1:
            img = ImageEnhance.Contrast(img).enhance(self.contrast)
        if self.saturation != 1:
            img = ImageEnhance.Color(img).enhance(self.saturation)
        return img


def student_loaded(teacher: Loaded, size: int) -> Loaded:
    """The teacher's Loaded with the student's image preprocessing: its input
    size, the teacher's mean and std, shortest side and centre crop, bicubic
    (sightd's resize)."""
    p = teacher.preprocess
    pre = Preprocess(
        size=(size, size),
        mean=p.mean,
        std=p.std,
        interpolation="bicubic",
        resize_mode="shortest",
        source=f"distill: the student's input size, the teacher's mean and std ({p.source})",
    )
    return dataclasses.replace(teacher, preprocess=pre)


def pixels(loaded: Loaded, img: Image.Image) -> np.ndarray:
    """uint8 HWC pixels at the input size (the model's own resize and crop)."""
    from .manifest import probe_pixels_of

    return np.asarray(probe_pixels_of(loaded, img), dtype=np.uint8)


def normalise(x: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW."""
    mean = torch.tensor(pre.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


@dataclasses.dataclass
class Cache:
    train_px: np.ndarray  # [N, V, S, S, 3] uint8: student inputs of each view
    train_t: np.ndarray  # [N, V, D] the teacher's normalised embeddings
    held_px: np.ndarray  # [M, S, S, 3]
    held_t: np.ndarray  # [M, D]


def build_cache(
    teacher: Loaded,
    student_pre: Loaded,
    data: records.DataSet,
    views: int,
    seed: int,
    device: torch.device,
    batch: int,
) -> Cache:
    """Draws `views` augmented views of each training sample (view 0 is the
    sample as it is) and embeds each with the teacher, once."""
    tf = teacher.transform()
    model = teacher.model.to(device).eval()
    jobs: list[tuple[records.Sample, Aug]] = []
    for i, s in enumerate(data.train):
        with Image.open(s.path) as im:
            aspect = im.width / max(1, im.height)
        rng = random.Random(f"{seed}:{i}")
        jobs += [(s, Aug.identity() if v == 0 else Aug.draw(rng, aspect)) for v in range(views)]
    jobs += [(s, Aug.identity()) for s in data.held_out]
    px = np.zeros((len(jobs), *student_pre.preprocess.size, 3), np.uint8)
    emb = np.zeros((len(jobs), teacher.embed_dim), np.float32)
    bar = tqdm(total=len(jobs), desc="teacher embeddings", unit="view", file=sys.stderr)
    last = None
    img: Image.Image | None = None
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        xs = []
        for k, (s, aug) in enumerate(chunk):
            if s.path != last:
                with Image.open(s.path) as im:
                    img = im.convert("RGB")
                last = s.path
            assert img is not None
            a = aug.apply(img)
            px[start + k] = pixels(student_pre, a)
            xs.append(tf(a))
        with torch.no_grad():
            e = model.encode_image(torch.stack(xs).to(device))  # type: ignore[operator]
            emb[start : start + len(chunk)] = torch.nn.functional.normalize(e.float(), dim=-1).cpu().numpy()
        bar.update(len(chunk))
    bar.close()
    model.cpu()
    n = len(data.train) * views
    return Cache(
        px[:n].reshape(len(data.train), views, *px.shape[1:]),
        emb[:n].reshape(len(data.train), views, -1),
        px[n:],
        emb[n:],
    )


def text_anchors(teacher: Loaded, texts: list[str]) -> torch.Tensor:
    tok = teacher.tokenizer()
    with torch.no_grad():
        t = teacher.model.encode_text(tok(texts))  # type: ignore[operator]
    return torch.nn.functional.normalize(t.float(), dim=-1)


def loss_fn(
    s: torch.Tensor, t: torch.Tensor, kind: str, anchors: torch.Tensor | None, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(total, cosine part). s raw student outputs, t normalised teacher."""
    s = torch.nn.functional.normalize(s, dim=-1)
    cos = 1 - (s * t).sum(-1).mean()
    if kind == "relational":
        extra = torch.nn.functional.mse_loss(s @ s.T, t @ t.T) * 10
    else:
        assert anchors is not None
        ls = torch.log_softmax(scale * s @ anchors.T, dim=-1)
        lt = torch.log_softmax(scale * t @ anchors.T, dim=-1)
        extra = torch.nn.functional.kl_div(ls, lt, log_target=True, reduction="batchmean")
    return cos + extra, cos


def held_out_cosine(student: torch.nn.Module, c: Cache, pre: Preprocess, device: torch.device, batch: int) -> float:
    student.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(c.held_px), batch):
            x = normalise(torch.from_numpy(c.held_px[i : i + batch]).to(device), pre)
            s = torch.nn.functional.normalize(student(x).float(), dim=-1).cpu().numpy()
            out.append((s * c.held_t[i : i + batch]).sum(-1))
    return float(np.concatenate(out).mean())


def plot(history: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ep = [h["epoch"] for h in history]
    trained = [h for h in history if h["epoch"] > 0]
    ax.plot(
        [h["epoch"] for h in trained], [h["train_loss"] for h in trained], "o-", color="tab:red", label="train loss"
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:red")
    ax2 = ax.twinx()
    ax2.plot(ep, [h["held_out_cosine"] for h in history], "s-", color="tab:blue", label="held-out cosine")
    ax2.set_ylabel("held-out cosine(student, teacher)", color="tab:blue")
    ax2.set_ylim(min(0.0, *[h["held_out_cosine"] for h in history]), 1.0)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def teacher_name(a: argparse.Namespace) -> str:
    if a.teacher_config:
        return load_mod.register_config(a.teacher_config)
    if not a.teacher:
        raise ExportError("give --teacher NAME or --teacher-config FILE.json")
    load_mod.model_config(a.teacher)
    return str(a.teacher)


def resume_hint(a: argparse.Namespace) -> str:
    argv = getattr(a, "argv", None) or []
    cmd = " ".join(["sightd-export", *argv]) if argv else "the same sightd-export distill command"
    return cmd if "--resume" in argv else cmd + " --resume"


def cmd_distill(a: argparse.Namespace) -> int:
    from . import cli, convert, quantize

    if a.student == "list":
        students.print_list()
        return 0
    t_start = time.monotonic()
    out = Path(a.out)
    cli.check_new_out(out)
    work = out.parent / f".{out.name}.distill"
    if work.exists() and not a.resume:
        raise ExportError(
            f"{work}: an earlier run of this --out stopped before the end; add --resume to go on from its last "
            f"checkpoint, or delete {work} to start again"
        )
    if a.resume and not (work / CKPT).is_file():
        raise ExportError(f"--resume: no checkpoint in {work}; run without --resume to start")
    st = students.get(a.student)
    size = a.student_size or st.size
    if size < 32:
        raise ExportError(f"--student-size {size}: want at least 32 px")
    name = teacher_name(a)
    data = records.load(a.data, a.holdout)
    log(
        f"distill: {len(data.train)} training and {len(data.held_out)} held-out images from "
        f"{', '.join(s['folder'] for s in data.sources)} (data sha256 {data.sha256[:16]})"
    )
    if a.batch < 2:
        raise ExportError(f"--batch {a.batch}: want 2 or more (the relational loss compares within a batch)")
    if a.device == "cuda" and not torch.cuda.is_available():
        raise ExportError("--device cuda: torch sees no GPU here (use --device cpu or auto)")
    device = torch.device(a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if a.threads:
        # On a machine other jobs keep busy, two threads that spin-wait on each
        # other made a training step 25 times slower than one thread here.
        torch.set_num_threads(a.threads)
    log(f"distill: loading the teacher {name} from {a.pretrained}; training on {device}")
    teacher = load_mod.load(name, a.pretrained)
    inherit = ""
    if teacher.research_only:
        inherit = (
            f"the student inherits the teacher's licence: {name}'s weights are RESEARCH ONLY ({teacher.licence}); "
            "so is this bundle"
        )
        log(f"NOTE: {inherit}")
    spre = student_loaded(teacher, size)
    key = {
        "teacher": name,
        "weights": teacher.weights,
        "student": st.name,
        "size": size,
        "data_sha256": data.sha256,
        "holdout": a.holdout,
        "views": a.views,
        "seed": a.seed,
        "loss": a.loss,
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "run.json").write_text(json.dumps(key, indent=2) + "\n")
    student = students.build(st, teacher.embed_dim, a.seed).to(device)
    opt = torch.optim.AdamW(student.parameters(), lr=a.lr, weight_decay=0.05)
    steps = max(1, math.ceil(len(data.train) / a.batch) * a.epochs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps, pct_start=0.1)
    history: list[dict[str, float]] = []
    best_cos, best_state, bad, first = -2.0, None, 0, 1
    if a.resume:
        ck = torch.load(work / CKPT, map_location=device, weights_only=False)
        if ck["key"] != key:
            diff = {k: (ck["key"].get(k), v) for k, v in key.items() if ck["key"].get(k) != v}
            raise ExportError(f"--resume: the checkpoint in {work} is of another run; differs in {diff}")
        student.load_state_dict(ck["student"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        history, best_cos, best_state, bad = ck["history"], ck["best_cos"], ck["best_state"], ck["bad"]
        first = ck["epoch"] + 1
        log(f"distill: resuming after epoch {ck['epoch']} (best held-out cosine {best_cos:.4f})")
    cache_path = work / CACHE
    if cache_path.is_file():
        z = np.load(cache_path)
        cache = Cache(z["train_px"], z["train_t"], z["held_px"], z["held_t"])
        log(f"distill: teacher embeddings from {cache_path}")
    else:
        cache = build_cache(teacher, spre, data, a.views, a.seed, device, a.batch)
        tmp = work / "cache.tmp.npz"
        np.savez(tmp, train_px=cache.train_px, train_t=cache.train_t, held_px=cache.held_px, held_t=cache.held_t)
        os.replace(tmp, cache_path)
    # What a student that learnt nothing but the teacher's average vector
    # would score: the bar for "learnt the frames", not just the scene.
    mean_t = cache.train_t[:, 0].mean(0)
    mean_t /= np.linalg.norm(mean_t)
    mean_baseline = float((cache.held_t @ mean_t).mean())
    log(f"distill: held-out cosine of the teacher's mean training vector (a constant student): {mean_baseline:.4f}")
    anchors = text_anchors(teacher, cli.PROMPTS).to(device) if a.loss == "text" else None
    pre = spre.preprocess
    title = f"{st.name} {size}px from {name}; {len(data.train)} train / {len(data.held_out)} held-out images"
    if not history:
        c0 = held_out_cosine(student, cache, pre, device, a.batch)
        history.append({"epoch": 0, "train_loss": float("nan"), "held_out_cosine": c0, "lr": 0.0})
        best_cos, best_state = c0, {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}
        log(f"distill: before training, held-out cosine {c0:.4f}")
    done = first - 1  # the last epoch whose checkpoint is written
    try:
        for epoch in range(first, a.epochs + 1):
            if bad >= a.patience:
                break
            student.train()
            rng = np.random.default_rng([a.seed, epoch])
            order = rng.permutation(len(cache.train_px))
            vsel = rng.integers(0, cache.train_px.shape[1], len(order))
            total, n = 0.0, 0
            bar = tqdm(range(0, len(order), a.batch), desc=f"epoch {epoch}/{a.epochs}", unit="batch", file=sys.stderr)
            for i in bar:
                idx, vs = order[i : i + a.batch], vsel[i : i + a.batch]
                if len(idx) < 2:  # BatchNorm needs two
                    continue
                x = normalise(torch.from_numpy(cache.train_px[idx, vs]).to(device), pre)
                t = torch.from_numpy(cache.train_t[idx, vs]).to(device)
                loss, _ = loss_fn(student(x), t, a.loss, anchors, teacher.logit_scale)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss) * len(idx)
                n += len(idx)
                bar.set_postfix(loss=f"{total / max(n, 1):.4f}")
            bar.close()
            c = held_out_cosine(student, cache, pre, device, a.batch)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": total / max(n, 1),
                    "held_out_cosine": c,
                    "lr": float(sched.get_last_lr()[0]),
                }
            )
            if c > best_cos + 1e-4:
                best_cos, bad = c, 0
                best_state = {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}
            else:
                bad += 1
            log(
                f"distill: epoch {epoch}: train loss {total / max(n, 1):.4f}, held-out cosine {c:.4f} "
                f"(best {best_cos:.4f})"
            )
            ck = {
                "key": key,
                "epoch": epoch,
                "student": student.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "history": history,
                "best_cos": best_cos,
                "best_state": best_state,
                "bad": bad,
            }
            torch.save(ck, work / "checkpoint.tmp")
            os.replace(work / "checkpoint.tmp", work / CKPT)
            plot(history, work / PLOT, title)
            done = epoch
            after_epoch(epoch)
    except KeyboardInterrupt:
        log(
            f"\ndistill: interrupted; the checkpoint in {work} holds epoch {done} of {a.epochs}. "
            f"Resume with:\n  {resume_hint(a)}"
        )
        return 130
    if bad >= a.patience:
        log(f"distill: stopped early: no better held-out cosine for {a.patience} epochs")
    assert best_state is not None
    student.load_state_dict(best_state)
    student = student.cpu().eval()
    plot(history, work / PLOT, title)
    best = max(history, key=lambda h: h["held_out_cosine"])
    dinfo: dict[str, Any] = {
        "teacher": name,
        "teacher_weights": teacher.weights,
        "teacher_licence": teacher.licence,
        "research_only": teacher.research_only,
        "student": st.name,
        "student_timm": st.arch,
        "student_size": size,
        "data_sha256": data.sha256,
    }
    if inherit:
        dinfo["licence_note"] = inherit
    report = {
        **dinfo,
        "data": data.sources,
        "holdout": a.holdout,
        "views": a.views,
        "loss": a.loss,
        "device": str(device),
        "epochs_run": history[-1]["epoch"],
        "best_epoch": best["epoch"],
        "held_out_cosine_pytorch": {
            "before": history[0]["held_out_cosine"],
            "best": best["held_out_cosine"],
            "constant_mean_vector": mean_baseline,
        },
        "history": history,
    }
    (work / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    # Calibration for int8: up to 64 training images, spread over the time.
    step = max(1, len(data.train) // 64)
    calib = [s.path for s in data.train[::step]][:64]
    text_schemes = quantize.SCHEMES if a.text_precision == "int8" else ("float32",)
    log("distill: exporting the student (static full int8) and the teacher's text tower")
    towers = {"image": student, "text": convert.TextTower(teacher.model).eval()}
    rep = cli.write_bundle(
        out,
        spre,
        towers,
        {"image": ("float32", quantize.STATIC_FULL_INT8), "text": text_schemes},
        calib,
        list(cli.PROMPTS),
        a.name or f"{st.name}-from-{name}",
        a.version,
        {"model": f"{st.name} (student of {name})", "precision": "int8", "distill": report},
        t_start,
        force={"image": quantize.STATIC_FULL_INT8},
        manifest_extra={"distill": dinfo},
        files={PLOT: work / PLOT, REPORT: work / REPORT},
    )
    shutil.rmtree(work, ignore_errors=True)
    img = rep["towers"]["image"]
    print(f"bundle {out}: student {st.name} ({st.arch}, {size}x{size}) of teacher {name} ({teacher.weights})")
    print(f"licence: the teacher's weights: {teacher.licence}")
    if inherit:
        print(f"NOTE: {inherit}")
    print(f"data: sha256 {data.sha256}, {len(data.train)} training / {len(data.held_out)} held-out images")
    print(
        f"held-out cosine(student, teacher), PyTorch: {history[0]['held_out_cosine']:.4f} before training, "
        f"{best['held_out_cosine']:.4f} at epoch {best['epoch']} of {history[-1]['epoch']} "
        f"(the teacher's mean vector as a constant: {mean_baseline:.4f})"
    )
    f = img["fidelity_vs_pytorch"]
    n8 = sum(img["int8_ops"].values())
    print(
        f"image tower: {img['scheme']}, {n8}/{sum(img['ops'].values())} ops int8, {img['size_bytes'] / 1e6:.2f} MB, "
        f"cosine to PyTorch mean {f['mean_cosine']:.4f} min {f['min_cosine']:.4f}"
    )
    print(f"text tower (the teacher's): {rep['towers']['text']['scheme']}")
    print(f"plot {out / PLOT}; report {out / 'export-report.json'}")
    return 0


def add_parser(sub: Any) -> None:
    d = sub.add_parser("distill", help="train a small int8 student image tower from a CLIP teacher on your frames")
    g = d.add_mutually_exclusive_group(required=False)
    g.add_argument("--teacher", help="an open_clip model name (see list)")
    g.add_argument("--teacher-config", help="an open_clip-shaped config JSON")
    d.add_argument("--pretrained", help="the teacher's checkpoint file or pretrained tag")
    d.add_argument("--student", required=True, help="a student (--student list shows them)")
    d.add_argument("--data", nargs="+", action="extend", help="folders from `sightd camera record`, or of images")
    d.add_argument("--out", help="the bundle folder to create")
    d.add_argument("--epochs", type=int, default=30)
    d.add_argument("--batch", type=int, default=32)
    d.add_argument("--lr", type=float, default=2e-3)
    d.add_argument("--holdout", type=float, default=0.2, help="fraction of the frames held out, the last in time")
    d.add_argument("--patience", type=int, default=5, help="epochs without a better held-out cosine before stopping")
    d.add_argument("--views", type=int, default=4, help="views of each image (the first unaugmented)")
    d.add_argument("--loss", choices=("relational", "text"), default="relational", help="the term beside cosine")
    d.add_argument("--resume", action="store_true", help="go on from the last checkpoint of this --out")
    d.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: a GPU when torch sees one")
    d.add_argument("--student-size", type=int, default=0, help="the student's input size in px")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default, all cores)")
    d.add_argument(
        "--text-precision",
        choices=("int8", "float32"),
        default="int8",
        help="int8: the teacher's text tower as export --precision int8 chooses it",
    )
    d.add_argument("--name", help="the bundle's name")
    d.add_argument("--version", type=int, default=1)


def check_args(a: argparse.Namespace) -> None:
    if a.student == "list":
        return
    missing = [f for f, v in (("--pretrained", a.pretrained), ("--data", a.data), ("--out", a.out)) if not v]
    if not (a.teacher or a.teacher_config):
        missing.insert(0, "--teacher or --teacher-config")
    if missing:
        raise ExportError(f"distill needs {', '.join(missing)}")
    if a.epochs < 0 or a.views < 1:
        raise ExportError("--epochs: want 0 (export the untrained student) or more; --views: 1 or more")
