#!/usr/bin/env python3
"""torchvision baseline for Table 2: source images/s, 2 views at --res.

  python bench/torchvision_loader.py --root DIR --res 224 --workers 2 \
      --batch 64 --images 2000 --recipe jitter [--pipeline official|v2]

--root is an ImageFolder directory (<root>/<class>/<image>), e.g. an
extracted imagenette/train. Recipes are cumulative (SimCLR / FFCV-SSL style):
  decode : PIL open + convert("RGB") + PILToTensor (one view, no augmentation)
  crops  : RandomResizedCrop(res) + RandomHorizontalFlip
  blur   : + Gaussian blur, sigma uniform in (0.1, 2.0), p=0.5
  gray   : + RandomGrayscale(p=0.2)
  sol    : + solarize (threshold 128 on uint8), p=0.2
  jitter : + RandomApply([ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8)
each followed by conversion to float32 in [0, 1] and Normalize(ImageNet).
The order of the augmentations is crop, flip, jitter, gray, blur, solarize
(the SimCLR/BYOL/VICReg order).

--pipeline official (the default) is the pipeline published SSL code runs,
as the VICReg reference code and solo-learn write it: the classic
torchvision.transforms on PIL images, RandomResizedCrop with bicubic
interpolation, the blur through PIL's ImageFilter.GaussianBlur(radius=sigma)
and solarize through PIL's ImageOps.solarize, then ToTensor and Normalize.
--pipeline v2 is torchvision.transforms.v2 with its own 23-tap GaussianBlur
and bilinear antialiased crops (a much slower blur on the CPU); --mode
applies to it only: pil (default) runs the ops on PIL images, tensor
converts to a uint8 tensor first (ToImage) and runs the tensor kernels.
The first --warmup batches are not timed (worker start-up, page cache).
Prints one JSON line on stdout.
"""
import argparse
import json
import random
import sys
import time

import PIL
import torch
import torchvision
from torch.utils.data import DataLoader, Subset
from PIL import ImageFilter, ImageOps
from torchvision import datasets, transforms
from torchvision.transforms import v2

RECIPES = ["decode", "crops", "blur", "gray", "sol", "jitter"]
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class PilBlur:
    """Gaussian blur as published SSL code applies it: sigma drawn uniformly
    in (lo, hi), then PIL's GaussianBlur(radius=sigma)."""

    def __init__(self, lo=0.1, hi=2.0):
        self.lo, self.hi = lo, hi

    def __call__(self, img):
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.lo, self.hi)))


class PilSolarize:
    def __call__(self, img):
        return ImageOps.solarize(img, 128)


def build_official(recipe, res):
    """The classic torchvision.transforms pipeline on PIL images."""
    if recipe == "decode":
        return transforms.PILToTensor()
    level = RECIPES.index(recipe)
    t = [transforms.RandomResizedCrop(res, interpolation=transforms.InterpolationMode.BICUBIC),
         transforms.RandomHorizontalFlip()]
    if level >= RECIPES.index("jitter"):
        t.append(transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8))
    if level >= RECIPES.index("gray"):
        t.append(transforms.RandomGrayscale(p=0.2))
    if level >= RECIPES.index("blur"):
        t.append(transforms.RandomApply([PilBlur()], p=0.5))
    if level >= RECIPES.index("sol"):
        t.append(transforms.RandomApply([PilSolarize()], p=0.2))
    t += [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    return transforms.Compose(t)


def build_v2(recipe, res, mode):
    """torchvision.transforms.v2, with its own 23-tap GaussianBlur."""
    if recipe == "decode":
        return v2.PILToTensor()
    level = RECIPES.index(recipe)
    t = [v2.ToImage()] if mode == "tensor" else []
    t += [v2.RandomResizedCrop(res, antialias=True), v2.RandomHorizontalFlip()]
    if level >= RECIPES.index("jitter"):
        t.append(v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8))
    if level >= RECIPES.index("gray"):
        t.append(v2.RandomGrayscale(p=0.2))
    if level >= RECIPES.index("blur"):
        t.append(v2.RandomApply([v2.GaussianBlur(23, (0.1, 2.0))], p=0.5))
    if level >= RECIPES.index("sol"):
        t.append(v2.RandomSolarize(threshold=128, p=0.2))  # uint8 / PIL domain
    if mode == "pil":
        t.append(v2.ToImage())
    t += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
    return v2.Compose(t)


class Views:
    """Apply `t` to the decoded image n times (n=1 for decode)."""

    def __init__(self, t, n):
        self.t, self.n = t, n

    def __call__(self, img):
        if self.n == 1:
            return self.t(img)
        return tuple(self.t(img) for _ in range(self.n))


def collate(batch):
    xs = [b[0] for b in batch]
    ys = torch.tensor([b[1] for b in batch])
    if isinstance(xs[0], tuple):
        return tuple(torch.stack(v) for v in zip(*xs)), ys
    if all(x.shape == xs[0].shape for x in xs):
        return torch.stack(xs), ys
    return xs, ys


def worker_init(worker_id):
    torch.set_num_threads(1)
    random.seed(torch.initial_seed() + worker_id)  # PilBlur's draws differ between workers


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--workers", type=int, default=0, help="0 = main process")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--images", type=int, default=2000, help="cap on source images")
    ap.add_argument("--recipe", choices=RECIPES, default="jitter")
    ap.add_argument("--pipeline", choices=["official", "v2"], default="official",
                    help="official: transforms with PIL's blur (VICReg, solo-learn); v2: transforms.v2")
    ap.add_argument("--mode", choices=["pil", "tensor"], default="pil", help="--pipeline v2 only")
    ap.add_argument("--warmup", type=int, default=2, help="untimed batches")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads in the main process (workers always use 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    nviews = 1 if args.recipe == "decode" else 2
    if args.pipeline == "official":
        t = build_official(args.recipe, args.res)
    else:
        t = build_v2(args.recipe, args.res, args.mode)
    ds = datasets.ImageFolder(args.root, transform=Views(t, nviews))
    n = min(args.images, len(ds))
    if n < len(ds):  # spread the cap over all classes (ImageFolder is class-sorted)
        ds = Subset(ds, [int(i * len(ds) / n) for i in range(n)])
    warm_batches = min(args.warmup, max(0, (n - 1) // args.batch))
    loader = DataLoader(ds, batch_size=args.batch, shuffle=False, num_workers=args.workers,
                        collate_fn=collate, worker_init_fn=worker_init if args.workers else None,
                        persistent_workers=False, prefetch_factor=2 if args.workers else None)

    seen = timed = 0
    t0 = time.perf_counter()  # with --warmup 0 this includes worker start-up
    for bi, (x, y) in enumerate(loader):
        seen += len(y)
        if bi < warm_batches:
            t0 = time.perf_counter()  # timing starts after the last warmup batch
        else:
            timed += len(y)
    seconds = time.perf_counter() - t0
    out = {"recipe": args.recipe, "res": args.res, "workers": args.workers, "images": timed,
           "seconds": round(seconds, 4), "images_per_s": round(timed / seconds, 2),
           "torch": torch.__version__, "torchvision": torchvision.__version__,
           "pillow": PIL.__version__, "pipeline": args.pipeline,
           "views": nviews, "mode": args.mode if args.pipeline == "v2" else "pil", "batch": args.batch,
           "warmup_images": seen - timed}
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
