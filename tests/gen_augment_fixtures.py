#!/usr/bin/env python3
"""Generate tests/fixtures/augment.sslt: torchvision reference outputs that pin
the C augmentations (ssl.h) to torchvision.transforms.v2.functional.

Inputs are real images from ../shared/data (CIFAR-10 test JPEGs, 32x32, and
Imagenette val JPEGs resized with PIL Image.BOX to a small non-square size).

Naming (all outputs float32 HWC, not rounded, unless noted):
  in/<i>                       uint8 HWC input i
  lut/u8_to_f32                float32[256]: the exact u8->float map used
                               (torchvision ToDtype(float32, scale=True), i.e.
                               x.float() * (1/255), NOT x/255: 126 of 256
                               values differ by 1 ulp)
  <op>[/<params>]/<i>          output of op on float CHW input i
  p/<op>[/<params>]/<i>        float32[] numeric parameters of that output
ops:
  hflip                        p=[]
  gray                         rgb_to_grayscale(num_output_channels=3), p=[]
  brightness/<f>               adjust_brightness, p=[f]
  contrast/<f>                 adjust_contrast, p=[f]
  saturation/<f>               adjust_saturation, p=[f]
  hue/<h>                      adjust_hue, p=[h]
  solarize/<t>                 solarize(threshold=t) on float, p=[t]
  blur/<sigma>                 gaussian_blur([k,k],[sigma,sigma]),
                               k=2*ceil(3*sigma)+1, p=[k, sigma]
  crop/<t>_<l>_<h>_<w>_<oh>_<ow>     resized_crop(top,left,h,w,[oh,ow],
                               BILINEAR, antialias=True) on float input,
                               p=[t,l,h,w,oh,ow]
  crop_u8/<same>               same on the uint8 CHW tensor (torchvision's
                               native uint8 path); stored as uint8 HWC
  normalize                    normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
                               p=[m0,m1,m2,s0,s1,s2]
  jitter/<order>               brightness 1.3, contrast 0.7, saturation 1.5,
                               hue 0.08 applied in the order of the letters
                               of <order> (a permutation of "bcsh"),
                               p=[1.3,0.7,1.5,0.08, idx0..idx3] where
                               idx = position of each applied op in "bcsh"
Numbers in names are formatted with '%g' (e.g. 0.0 -> "0", 1.0 -> "1").
"""
import argparse
import io
import math
import os
import sys
import tarfile

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sslt  # noqa: E402

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
JITTER = {"b": 1.3, "c": 0.7, "s": 1.5, "h": 0.08}


def g(x):
    return "%g" % x


def take_images(tar_path, prefix, n, skip_every=1):
    """Stream a .tar.gz and return the first n image files under prefix
    (every skip_every-th match, to get some variety), as PIL RGB images."""
    out, seen = [], 0
    with tarfile.open(tar_path, "r|gz") as t:
        for m in t:
            if not m.isfile() or not m.name.startswith(prefix):
                continue
            if not m.name.lower().endswith((".jpg", ".jpeg")):
                continue
            seen += 1
            if (seen - 1) % skip_every:
                continue
            data = t.extractfile(m).read()
            im = Image.open(io.BytesIO(data))
            im.load()
            out.append((m.name, im.convert("RGB")))
            if len(out) == n:
                break
    if len(out) < n:
        raise SystemExit(f"only {len(out)} images under {prefix} in {tar_path}")
    return out


def hwc(t):
    """CHW torch tensor -> contiguous HWC numpy."""
    return np.ascontiguousarray(t.permute(1, 2, 0).numpy())


def crop_boxes(h, w):
    """(top, left, box_h, box_w, out_h, out_w): shrink, enlarge, whole->aspect."""
    if (h, w) == (32, 32):
        return [(2, 5, 28, 20, 16, 16),      # shrink (antialias matters)
                (6, 8, 20, 16, 32, 32),      # enlarge
                (0, 0, 32, 32, 24, 40)]      # whole image, other aspect
    # generic (used for the Imagenette inputs): scale the 96x80 recipe
    sy, sx = h / 80.0, w / 96.0
    r = lambda v, s: max(1, int(round(v * s)))
    return [(r(7, sy), r(13, sx), r(60, sy), r(70, sx), r(24, sy), r(24, sy)),
            (r(30, sy), r(40, sx), r(16, sy), r(20, sx), r(48, sy), r(48, sy)),
            (0, 0, h, w, r(100, sy), r(56, sy))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(HERE, "fixtures", "augment.sslt"))
    ap.add_argument("--inet-size", default="48x36",
                    help="WxH for the Imagenette inputs (96x80 gives ~4.5 MB; 48x36 keeps the file ~1.45 MB)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    iw, ih = (int(v) for v in args.inet_size.split("x"))

    data = args.data
    if not os.path.isdir(data):
        data = "/work/shared/data"
    cif = take_images(os.path.join(data, "cifar10-jpg.tar.gz"), "cifar10/test/", 2, skip_every=1500)
    inet = take_images(os.path.join(data, "imagenette-val.tar.gz"), "imagenette/val/", 2, skip_every=500)
    srcs = [(n, im) for n, im in cif] + [(n, im.resize((iw, ih), Image.BOX)) for n, im in inet]

    T = {}
    lut = F.to_dtype(torch.arange(256, dtype=torch.uint8).reshape(1, 1, 256),
                     torch.float32, scale=True).reshape(256)
    T["lut/u8_to_f32"] = lut.numpy().copy()

    def put(name, out, params):
        T[name] = hwc(out) if out.dtype == torch.uint8 else hwc(out.to(torch.float32))
        T["p/" + name] = np.asarray(params, dtype=np.float32).reshape(-1)

    for i, (src, im) in enumerate(srcs):
        u8 = np.asarray(im, dtype=np.uint8).copy()           # HWC
        T[f"in/{i}"] = u8
        xu = torch.from_numpy(u8).permute(2, 0, 1).contiguous()  # CHW uint8
        x = F.to_dtype(xu, torch.float32, scale=True)            # CHW float [0,1]
        assert torch.equal(x, lut[xu.long()])
        H, W = u8.shape[:2]

        put(f"hflip/{i}", F.horizontal_flip(x), [])
        put(f"gray/{i}", F.rgb_to_grayscale(x, num_output_channels=3), [])
        for f in (0.6, 1.4):
            put(f"brightness/{g(f)}/{i}", F.adjust_brightness(x, f), [f])
        for f in (0.6, 1.4):
            put(f"contrast/{g(f)}/{i}", F.adjust_contrast(x, f), [f])
        for f in (0.0, 0.5, 1.8):
            put(f"saturation/{g(f)}/{i}", F.adjust_saturation(x, f), [f])
        for h in (-0.1, 0.05, 0.3, -0.45):
            put(f"hue/{g(h)}/{i}", F.adjust_hue(x, h), [h])
        put(f"solarize/{g(0.5)}/{i}", F.solarize(x, 0.5), [0.5])
        for s in (0.5, 1.0, 2.0):
            k = 2 * math.ceil(3 * s) + 1
            put(f"blur/{g(s)}/{i}", F.gaussian_blur(x, [k, k], [s, s]), [k, s])
        for (t, l, bh, bw, oh, ow) in crop_boxes(H, W):
            assert t + bh <= H and l + bw <= W
            tag = f"{t}_{l}_{bh}_{bw}_{oh}_{ow}"
            p = [t, l, bh, bw, oh, ow]
            put(f"crop/{tag}/{i}", F.resized_crop(x, t, l, bh, bw, [oh, ow],
                interpolation=InterpolationMode.BILINEAR, antialias=True), p)
            put(f"crop_u8/{tag}/{i}", F.resized_crop(xu, t, l, bh, bw, [oh, ow],
                interpolation=InterpolationMode.BILINEAR, antialias=True), p)
        put(f"normalize/{i}", F.normalize(x, MEAN, STD), MEAN + STD)
        for order in ("bcsh", "hscb", "cbhs"):
            y = x
            for c in order:
                fn = {"b": F.adjust_brightness, "c": F.adjust_contrast,
                      "s": F.adjust_saturation, "h": F.adjust_hue}[c]
                y = fn(y, JITTER[c])
            put(f"jitter/{order}/{i}", y,
                [JITTER[c] for c in "bcsh"] + ["bcsh".index(c) for c in order])
        print(f"in/{i}: {src} -> {W}x{H}", file=sys.stderr)

    meta = (f"generator=tests/gen_augment_fixtures.py torch={torch.__version__} "
            f"torchvision={torchvision.__version__} "
            f"cpu_capability={torch.backends.cpu.get_cpu_capability()}\n"
            "names: in/<i> uint8 HWC input; <op>[/<params>]/<i> float32 HWC output of "
            "torchvision.transforms.v2.functional.<op> on float CHW input "
            "(lut/u8_to_f32 = ToDtype scale map); crop_u8/* is uint8 HWC from the uint8 "
            "input; p/<name> float32 numeric params; see the generator's docstring.")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    sslt.write(args.out, T, meta)

    # verify round trip
    R, m2 = sslt.read(args.out)
    assert m2 == meta and list(R) == list(T)
    for k in T:
        assert R[k].dtype == T[k].dtype and R[k].shape == T[k].shape, k
        assert np.array_equal(R[k], T[k]), k
    outs = [k for k in T if not k.startswith("p/")]
    print(f"wrote {args.out}: {os.path.getsize(args.out)} bytes, "
          f"{len(T)} tensors ({len(outs)} data + {len(T) - len(outs)} params), round-trip OK")
    groups = {}  # name without the trailing /<i> -> shapes per input
    for k in outs:
        base, _, idx = k.rpartition("/")
        if k.startswith("lut/"):
            base, idx = k, "-"
        groups.setdefault(base, []).append(f"{idx}:{'x'.join(map(str, T[k].shape))}")
    for base, shapes in groups.items():
        print(f"  {base:36s} {T[next(k for k in outs if k.startswith(base))].dtype}  {' '.join(shapes)}")

if __name__ == "__main__":
    main()
