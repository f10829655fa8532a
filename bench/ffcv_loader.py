#!/usr/bin/env python3
"""FFCV-SSL baseline for the loader table: source images/s, 2 views at --res.

The loader that ssl.h reimplements, on the same images and cores as
bench/loader_bench.c and bench/torchvision_loader.py.

  python bench/ffcv_loader.py write --root DIR --beton FILE [--mode jpg|raw] [--workers N]
  python bench/ffcv_loader.py load --beton FILE --res 224 --workers 2 --recipe noblur --images 3000

write: an ImageFolder directory into FFCV's .beton (RGBImageField: 'jpg'
re-encodes every image at quality 90, as `./pack mode=jpeg` does; 'raw'
stores pixels, as `./pack mode=raw`), timed: FFCV's packing speed.

load: the recipes of bench/loader_bench.c that FFCV-SSL can run on the
host, with FFCV-SSL's own CPU ops:
  decode : SimpleRGBImageDecoder, one view (every image is decoded whole)
  crops  : RandomResizedCrop((res, res)) + RandomHorizontalFlip, two views
  noblur : crops + RandomColorJitter(0.8, 0.4, 0.4, 0.2, 0.1)
           + RandomGrayscale(0.2) + RandomSolarization(0.2, 128): the SimCLR
           recipe less the blur, which is FFCV-SSL's own host recipe (its
           train_ssl.py blurs on the GPU, with torchvision, after ToDevice)
  u8     : crops, left as uint8 (what a GPU pipeline takes)
crops and noblur end with NormalizeImage(ImageNet, float32): float32 NHWC
views on the host, as ssl.h's float recipes. FFCV-SSL makes two views as
its own train_ssl.py does: two pipelines on the one image field
(custom_field_mapper), so each view decodes the image again.

No blur: FFCV-SSL's CPU GaussianBlur (scipy's convolve2d from Python; it
turns the pipeline's jit_mode off) stopped the blur recipe's pipeline
here with a numba TypingError in a worker thread (numba 0.68.1: "Cannot
determine Numba type of <class 'torch.Tensor'>"), and the loader then
waited forever; the jitter recipe, blur included, hung the same way. So
the cumulative blur/gray/sol/jitter recipes are not offered.

Timing: a first pass over the images is not timed (numba compiles every
pipeline there, and the page cache fills); the second pass, a fresh epoch of
the same Loader, is timed from its first request to its last batch, so no
batch made ahead counts for free. Prints one JSON line on stdout.

"""
import argparse
import json
import os
import sys
import time

import numpy as np

RECIPES = ["decode", "crops", "noblur", "u8"]
MEAN = np.array([0.485, 0.456, 0.406]) * 255
STD = np.array([0.229, 0.224, 0.225]) * 255


def write(a):
    import torchvision
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    ds = torchvision.datasets.ImageFolder(a.root)
    field = RGBImageField(write_mode=a.mode, jpeg_quality=90) if a.mode == "jpg" else RGBImageField(write_mode="raw")
    w = DatasetWriter(a.beton, {"image": field, "label": IntField()}, num_workers=a.workers)
    t0 = time.perf_counter()
    w.from_indexed_dataset(ds)
    dt = time.perf_counter() - t0
    print(json.dumps({"images": len(ds), "seconds": round(dt, 3), "images_per_s": round(len(ds) / dt, 1),
                      "mode": a.mode, "workers": a.workers, "bytes": os.path.getsize(a.beton)}))


def pipeline(recipe, res):
    import ffcv.transforms as T
    from ffcv.fields.decoders import SimpleRGBImageDecoder

    if recipe == "decode":
        return [SimpleRGBImageDecoder(), T.ToTensor()]
    p = [T.RandomResizedCrop((res, res)), T.RandomHorizontalFlip()]
    if recipe == "noblur":
        p += [T.RandomColorJitter(0.8, 0.4, 0.4, 0.2, 0.1), T.RandomGrayscale(0.2), T.RandomSolarization(0.2, 128)]
    if recipe != "u8":
        p.append(T.NormalizeImage(MEAN, STD, np.float32))
    p.append(T.ToTensor())
    return p


def load(a):
    import ffcv
    from ffcv.fields.decoders import IntDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.reader import Reader
    import ffcv.transforms as T

    total = Reader(a.beton).num_samples
    n = min(a.images, total)
    # the same spread over the classes as the torchvision bench's cap
    idx = [int(i * total / n) for i in range(n)]
    pipes = {"image": pipeline(a.recipe, a.res), "label": [IntDecoder(), T.ToTensor()]}
    mapper = None
    if a.recipe != "decode":
        pipes["image_0"] = pipeline(a.recipe, a.res)
        mapper = {"image_0": "image"}
    loader = Loader(a.beton, batch_size=a.batch, num_workers=a.workers, order=OrderOption.RANDOM,
                    os_cache=True, drop_last=True, indices=idx, pipelines=pipes,
                    custom_field_mapper=mapper, seed=a.seed)
    t0 = time.perf_counter()
    for _ in loader:  # untimed: compiles, fills the page cache
        pass
    warm = time.perf_counter() - t0
    shape = None
    seen = 0
    t0 = time.perf_counter()
    for b in loader:
        seen += len(b[0])
        shape = (tuple(b[0].shape), str(b[0].dtype))
    dt = time.perf_counter() - t0
    print(json.dumps({"recipe": a.recipe, "res": a.res, "workers": a.workers, "images": seen,
                      "seconds": round(dt, 4), "images_per_s": round(seen / dt, 2), "first_pass_s": round(warm, 2),
                      "views": 1 if a.recipe == "decode" else 2, "batch": a.batch, "view_shape": shape,
                      "ffcv": getattr(ffcv, "__version__", "FFCV-SSL")}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--root", required=True)
    w.add_argument("--beton", required=True)
    w.add_argument("--mode", choices=["jpg", "raw"], default="jpg")
    w.add_argument("--workers", type=int, default=os.cpu_count())
    l = sub.add_parser("load")
    l.add_argument("--beton", required=True)
    l.add_argument("--res", type=int, default=224)
    l.add_argument("--workers", type=int, default=1)
    l.add_argument("--batch", type=int, default=64)
    l.add_argument("--images", type=int, default=3000, help="cap on source images")
    l.add_argument("--recipe", choices=RECIPES, default="noblur")
    l.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.cmd == "write":
        if not os.path.isdir(a.root):
            ap.error(f"--root {a.root}: not a directory (an ImageFolder: ROOT/<class>/<image>)")
        if a.workers < 1:
            ap.error("--workers must be 1 or more")
        write(a)
    else:
        if not os.path.isfile(a.beton):
            ap.error(f"--beton {a.beton}: no such file (make it with: ffcv_loader.py write)")
        if a.res < 1 or a.workers < 1 or a.batch < 1:
            ap.error("--res, --workers and --batch must be 1 or more")
        if a.images < 2 * a.batch:
            ap.error("--images must be at least two batches")
        load(a)


if __name__ == "__main__":
    sys.exit(main())
