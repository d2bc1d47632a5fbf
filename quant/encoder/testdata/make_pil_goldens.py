"""Writes the graf1-pil-*.png goldens of preprocess_test.go: torchvision's
Resize and CenterCrop on PIL (what open_clip's transform does) applied to
opencv-doc's graf1.png, with both of PIL's filters that manifests name.

    .venv/bin/python quant/encoder/testdata/make_pil_goldens.py third_party/opencv-data/graf1.png quant/encoder/testdata
"""

import sys
from pathlib import Path

from PIL import Image
from torchvision.transforms import CenterCrop, InterpolationMode, Resize

src, out = Image.open(sys.argv[1]).convert("RGB"), Path(sys.argv[2])
for name, mode in (("", InterpolationMode.BICUBIC), ("-bilinear", InterpolationMode.BILINEAR)):
    CenterCrop(64)(Resize(64, interpolation=mode)(src)).save(out / f"graf1-pil{name}-crop64.png")
    Resize((64, 48), interpolation=mode)(src).save(out / f"graf1-pil{name}-squash48x64.png")
    region = src.crop((0, 0, 301, 257))
    CenterCrop(64)(Resize(64, interpolation=mode)(region)).save(out / f"graf1-pil{name}-region-crop64.png")
    small = src.crop((100, 100, 141, 130))  # enlarged: the kernel at its own support
    CenterCrop(64)(Resize(64, interpolation=mode)(small)).save(out / f"graf1-pil{name}-upscale-crop64.png")
