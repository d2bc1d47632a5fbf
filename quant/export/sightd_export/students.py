"""The student image towers `distill` trains: timm architectures checked to
convert to a static full-int8 .tflite (every op int8, ai-edge-quantizer's
static_wi8_ai8 on litert-torch's float32 file) that LiteRT runs.

Checked on this toolchain (timm 1.0.31, litert-torch 0.10.0, ai-edge-quantizer
0.10.0, LiteRT 2.3.0) at 96 px with random weights: every op int8, cosine to
PyTorch 0.996 or more; the tests check mobilenetv3-small-050 at 64 px and the
benchmark mobilenetv3-large at 160 px. NOT_OFFERED says which failed and why.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .load import ExportError


@dataclass(frozen=True)
class Student:
    name: str  # what --student takes
    arch: str  # timm's model name
    size: int  # default input size (px, square)
    family: str


STUDENTS: dict[str, Student] = {
    s.name: s
    for s in [
        Student("mobilenetv3-small-050", "mobilenetv3_small_050", 224, "MobileNetV3"),
        Student("mobilenetv3-small", "mobilenetv3_small_100", 224, "MobileNetV3"),
        Student("mobilenetv3-large", "mobilenetv3_large_100", 224, "MobileNetV3"),
        Student("mobilenetv4-conv-small", "mobilenetv4_conv_small", 224, "MobileNetV4"),
        Student("efficientnet-lite0", "efficientnet_lite0", 224, "EfficientNet-Lite"),
    ]
}

# Tried and left out, with the reason measured here.
NOT_OFFERED: dict[str, str] = {
    "fastvit-mci0": (
        "MobileCLIP's MCi0 (timm fastvit_mci0) converts to full int8 (376 of 376 ops), but LiteRT runs that graph "
        "at about 1 s per 96 px image, against 0.5 to 2 ms for the students offered"
    ),
}


def get(name: str) -> Student:
    s = STUDENTS.get(name)
    if s is None:
        why = f" ({NOT_OFFERED[name]})" if name in NOT_OFFERED else ""
        raise ExportError(
            f"--student {name!r}: not a student sightd-export offers{why}; "
            f"offered: {', '.join(STUDENTS)} (sightd-export distill --student list)"
        )
    return s


def build(s: Student, embed_dim: int, seed: int = 0) -> torch.nn.Module:
    """The student with random weights (no pretrained weights are fetched)
    and a head that outputs the teacher's embedding dimension."""
    import timm

    torch.manual_seed(seed)
    return timm.create_model(s.arch, pretrained=False, num_classes=embed_dim)


def cost(s: Student, size: int, embed_dim: int = 512) -> tuple[int, int]:
    """Parameters and multiply-accumulates of one image at size x size."""
    from torch.utils.flop_counter import FlopCounterMode

    m = build(s, embed_dim).eval()
    params = sum(p.numel() for p in m.parameters())
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(torch.zeros(1, 3, size, size))
    return params, fc.get_total_flops() // 2


def print_list(embed_dim: int = 512) -> None:
    print(f"{'student':<24} {'timm':<24} {'params':>8} {'MMACs':>7}  input (head to {embed_dim} dims)")
    for s in STUDENTS.values():
        params, macs = cost(s, s.size, embed_dim)
        print(f"{s.name:<24} {s.arch:<24} {params / 1e6:7.2f}M {macs / 1e6:7.0f}  {s.size}x{s.size}")
    print(
        "\nEach was checked to convert to a static full-int8 .tflite (every op int8) that LiteRT runs "
        "(at 96 px); --student-size PX sets the input."
    )
    for name, why in NOT_OFFERED.items():
        print(f"not offered: {name}: {why}")
