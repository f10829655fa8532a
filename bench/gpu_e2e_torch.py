#!/usr/bin/env python3
"""End to end in PyTorch, the baseline for bench/gpu_e2e.sh: a torchvision
DataLoader with T workers decoding the pack's JPEGs with PIL and applying
the SimCLR recipe (torchvision.transforms.v2: RandomResizedCrop, flip,
ColorJitter 0.8, Grayscale 0.2, GaussianBlur 0.5, ToDtype, Normalize) to
two views, pinned memory, feeding bench/gpu_step_torch.py's step (same
model, bf16 autocast, channels_last, cudnn.benchmark, fused SGD). Reports
images/s and the share of the time the step waited for the loader. The
images are read from the same .ssl pack ./train uses (its records are the
JPEG files; the reader is the one in README.md).

  python3 bench/gpu_e2e_torch.py --pack imagenette.ssl --threads 8 --res 224 --steps 40
"""
import json
import mmap
import os
import struct
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_step_torch as G  # noqa: E402


class PackDataset(torch.utils.data.Dataset):
    def __init__(self, path, res):
        from torchvision.transforms import v2 as T
        self.path, self.m = path, None
        with open(path, "rb") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            n, = struct.unpack_from("<Q", m, 16)
            index_off, = struct.unpack_from("<Q", m, 48)
            self.items = [struct.unpack_from("<QIHHBBHI", m, index_off + 32 * i) for i in range(n)]
        view = T.Compose([
            T.RandomResizedCrop(res, antialias=True), T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
            T.RandomApply([T.GaussianBlur(23, (0.1, 2.0))], p=0.5),
            T.ToImage(), T.ToDtype(torch.float32, scale=True),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        self.view = view

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        import io
        from PIL import Image
        if self.m is None:  # per worker
            self.f = open(self.path, "rb")
            self.m = mmap.mmap(self.f.fileno(), 0, access=mmap.ACCESS_READ)
        off, size, w, h, c, enc, _, label = self.items[i]
        img = Image.open(io.BytesIO(self.m[off:off + size])).convert("RGB")
        return self.view(img), self.view(img), label


def extra(ap):
    ap.add_argument("--pack", required=True)
    ap.add_argument("--threads", type=int, default=8)


def main():
    a = G.options(extra=extra)
    S = G.Setup(a)
    dev = S.dev
    ds = PackDataset(a.pack, a.res)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.bs, shuffle=True, drop_last=True, num_workers=a.threads,
                                     pin_memory=dev.type == "cuda", persistent_workers=a.threads > 0,
                                     prefetch_factor=4 if a.threads > 0 else None)
    it, steps, waited, imgs = iter(dl), 0, 0.0, 0
    tstart = None
    while steps < a.warmup + a.steps:
        t0 = time.perf_counter()
        try:
            x1, x2, y = next(it)
        except StopIteration:
            it = iter(dl)
            x1, x2, y = next(it)
        if steps == a.warmup:
            S.sync()
            tstart, waited, imgs = time.perf_counter(), 0.0, 0
            t0 = tstart
        elif steps > a.warmup:
            waited += time.perf_counter() - t0
        x1 = x1.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
        x2 = x2.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
        S.step(x1, x2, y.to(dev, non_blocking=True))
        imgs += a.bs
        steps += 1
    S.sync()
    el = time.perf_counter() - tstart
    print(f"torch {torch.__version__} DataLoader {a.threads} workers + resnet{a.depth} {a.res}x{a.res} bs {a.bs} {a.precision}: "
          f"{imgs / el:.0f} images/s, waiting for data {100 * waited / el:.0f}% of the time")
    print(json.dumps(dict(impl="torch", threads=a.threads, res=a.res, bs=a.bs, depth=a.depth, precision=a.precision,
                          images_per_s=round(imgs / el, 1), data_wait=round(waited / el, 4))))


if __name__ == "__main__":
    main()
