#!/usr/bin/env python3
"""Proves that ./probe's export loads into torchvision, and that torchvision
weights import into ./probe, by comparing features with PyTorch's.

  python tests/test_export.py EXPORT.safetensors DUMP.sslt
      EXPORT from `./probe ... export=EXPORT`, DUMP from the same command's
      `dump=DUMP` (its "input" NHWC and "features"). Builds torchvision's
      ResNet of the architecture in EXPORT's metadata (the CIFAR stem: conv1
      replaced by a 3x3 stride-1 conv, maxpool by nn.Identity; width != 1:
      torchvision's own ResNet class and blocks with every width scaled),
      loads EXPORT plus the model's own fc with load_state_dict(strict=True),
      and checks its eval-mode pooled features on DUMP's input against DUMP's.

  python tests/test_export.py            (self-contained; run from the repo root)
      1. export: a tiny ./train run on a Fashion-MNIST pack (width 1/8), then
         `./probe ckpt=... export=... dump=...`, checked as above; and a
         width-1 random init, loaded into plain torchvision.models.resnet18.
      2. import: torchvision.models.resnet18() (ImageNet stem, max pool, BN
         running statistics randomized so they matter) saved as safetensors,
         `./probe import=... dump=... res=64` on a seeded random input;
         ./probe's features must match torchvision's on that input.
      SSL_PROBE, SSL_TRAIN, SSL_PACK name the programs (default ./probe ...).

Needs torch and torchvision (build/venv/bin/python has them); the
safetensors package is used as a cross-check when installed, otherwise the
file is read by the 20-line reader below. Prints "N passed, N failed" last
and exits non-zero on a failure.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sslt  # noqa: E402

ST_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}
FAILED = []
PASSED = []


def check(cond, what):
    (PASSED if cond else FAILED).append(what)
    print(("ok   " if cond else "FAIL ") + what, flush=True)


def read_safetensors(path):
    """The format from its specification: u64 header length, JSON, bytes."""
    with open(path, "rb") as f:
        buf = f.read()
    (hl,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + hl])
    meta = header.pop("__metadata__", {})
    data = buf[8 + hl:]
    out, end = {}, 0
    for name, h in header.items():
        b0, b1 = h["data_offsets"]
        arr = np.frombuffer(data[b0:b1], dtype=ST_DTYPES[h["dtype"]]).reshape(h["shape"])
        out[name] = torch.from_numpy(arr.copy())
        end = max(end, b1)
    assert end == len(data), f"{path}: {len(data) - end} bytes after the last tensor"
    return out, meta


def write_safetensors(path, tensors, meta=None):
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name, t in tensors.items():
        a = t.detach().cpu().contiguous().numpy()
        dt = {np.dtype(v): k for k, v in ST_DTYPES.items()}[a.dtype]
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class ScaledResNet(ResNet):
    """torchvision's ResNet with every width times `width` (same classes, same names)."""

    def __init__(self, block, layers, width):
        self._width = width
        self._first = True
        super().__init__(block, layers)
        base = max(1, round(64 * width))
        self.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.fc = nn.Linear(8 * base * block.expansion, 1000)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if self._first:
            self.inplanes = max(1, round(64 * self._width))
            self._first = False
        return super()._make_layer(block, max(1, round(64 * self._width)) * (planes // 64), blocks, stride, dilate)


def torchvision_model(arch, stem, width):
    block, layers = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet34": (BasicBlock, [3, 4, 6, 3]),
                     "resnet50": (Bottleneck, [3, 4, 6, 3])}[arch]
    if width == 1:
        m = getattr(torchvision.models, arch)()
    else:
        m = ScaledResNet(block, layers, width)
    if stem == "cifar":
        base = m.conv1.out_channels
        m.conv1 = nn.Conv2d(3, base, kernel_size=3, stride=1, padding=1, bias=False)
        m.maxpool = nn.Identity()
    return m


def pooled_features(m, x):
    m.eval()
    with torch.no_grad():
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return torch.flatten(m.avgpool(x), 1)


def compare(ours, theirs, what):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    scale = max(np.abs(theirs).max(), 1e-6)
    err = np.abs(ours - theirs).max()
    check(ours.shape == theirs.shape and err <= 1e-4 * scale + 1e-5,
          f"{what}: features {ours.shape} max |ours - torch| = {err:.3g} (feature scale {scale:.3g})")


def check_export(export_path, dump_path):
    sd, meta = read_safetensors(export_path)
    arch, stem, width = meta.get("arch", "resnet18"), meta.get("stem", "cifar"), float(meta.get("width", "1"))
    try:
        from safetensors.torch import load_file  # optional cross-check
        other = load_file(export_path)
        check(set(other) == set(sd) and all(torch.equal(other[k], sd[k]) for k in sd),
              f"{os.path.basename(export_path)}: safetensors.torch.load_file reads the same tensors")
    except ImportError:
        pass
    m = torchvision_model(arch, stem, width)
    want = m.state_dict()
    missing = sorted(set(want) - set(sd))
    check(missing == ["fc.bias", "fc.weight"], f"{arch} {stem} width {width}: export has every tensor but fc (missing {missing})")
    extra = sorted(set(sd) - set(want))
    check(not extra, f"export has no tensor torchvision lacks (extra {extra[:5]})")
    sd = dict(sd)
    sd["fc.weight"], sd["fc.bias"] = want["fc.weight"], want["fc.bias"]
    try:
        m.load_state_dict(sd, strict=True)
        check(True, "load_state_dict(strict=True) with the model's own fc")
    except RuntimeError as e:
        check(False, f"load_state_dict(strict=True): {e}")
        return
    dump, _ = sslt.read(dump_path)
    x = torch.from_numpy(np.ascontiguousarray(dump["input"].transpose(0, 3, 1, 2)))
    compare(dump["features"], pooled_features(m, x).numpy(), f"export {arch} {stem} width {width}")


def run(cmd):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if r.returncode:
        print(r.stdout + r.stderr)
        raise SystemExit(f"failed: {cmd}")
    return r.stdout


def self_contained():
    probe = os.environ.get("SSL_PROBE", "./probe")
    train = os.environ.get("SSL_TRAIN", "./train")
    pack = os.environ.get("SSL_PACK", "./pack")
    fm = os.environ.get("SSL_FMNIST", "/usr/share/datasets/fashion-mnist")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        # 1. export of a (briefly) trained checkpoint: BN running stats are not 0/1
        run(f"{pack} {fm}/t10k-images-idx3-ubyte.gz {d}/fm.ssl limit=256 force=1")
        run(f"{train} simclr data={d}/fm.ssl epochs=1 width=0.125 projector=32-16 bs=32 res=16 out={d}/run threads=2")
        run(f"{probe} ckpt={d}/run export={d}/a.safetensors train={d}/fm.ssl eval={d}/fm.ssl modes=knn k=5 "
            f"out={d}/po dump={d}/a.sslt dump_n=8 res=32")
        check_export(f"{d}/a.safetensors", f"{d}/a.sslt")
        # the evaluation transform against torchvision's: Resize(floor(res*256/224)) + CenterCrop(res)
        # at res 24 (28x28 images: the usual protocol) and plain Resize(res) at res 32 (tiny images)
        import gzip
        from torchvision.transforms import v2
        with gzip.open(f"{fm}/t10k-images-idx3-ubyte.gz") as f:
            raw = np.frombuffer(f.read(), np.uint8)[16:16 + 8 * 784].reshape(8, 1, 28, 28)
        img = torch.from_numpy(raw.astype(np.float32)).repeat(1, 3, 1, 1)
        norm = v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        for res, tf in ((24, v2.Compose([v2.Resize(24 * 256 // 224, antialias=True), v2.CenterCrop(24)])),
                        (32, v2.Resize((32, 32), antialias=True))):
            run(f"{probe} ckpt={d}/run train={d}/fm.ssl eval={d}/fm.ssl modes=knn k=5 out={d}/po dump={d}/t{res}.sslt res={res}")
            dump, _ = sslt.read(f"{d}/t{res}.sslt")
            want = norm(tf(img) / 255.0).numpy().transpose(0, 2, 3, 1)
            err = np.abs(dump["input"] - want).max()
            check(dump["input"].shape == want.shape and err < 2e-3,
                  f"eval transform at res {res} matches torchvision's (max difference {err:.2g})")
        # width 1, random init: plain torchvision.models.resnet18
        run(f"{probe} init=random arch=resnet18 stem=cifar export={d}/b.safetensors dump={d}/b.sslt dump_n=4 res=32 seed=3")
        check_export(f"{d}/b.safetensors", f"{d}/b.sslt")
        # 2. import: torchvision's resnet18, ImageNet stem, with BN statistics that matter
        m = torchvision.models.resnet18()
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.running_mean.uniform_(-0.1, 0.1)
                    mod.running_var.uniform_(0.5, 2.0)
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.uniform_(-0.1, 0.1)
                    mod.num_batches_tracked.fill_(7)
        write_safetensors(f"{d}/tv.safetensors", m.state_dict(), {"format": "pt"})
        out = run(f"{probe} import={d}/tv.safetensors dump={d}/tv.sslt dump_n=4 res=64 seed=1 export={d}/tv2.safetensors")
        check("imagenet stem" in out, "import recognizes the ImageNet stem from conv1's shape")
        dump, _ = sslt.read(f"{d}/tv.sslt")
        x = torch.from_numpy(np.ascontiguousarray(dump["input"].transpose(0, 3, 1, 2)))
        compare(dump["features"], pooled_features(m, x).numpy(), "import torchvision resnet18 (imagenet stem, res 64)")
        # and back out again: the same tensors, bit for bit (fc dropped)
        back, _ = read_safetensors(f"{d}/tv2.safetensors")
        want = {k: v for k, v in m.state_dict().items() if not k.startswith("fc.")}
        check(set(back) == set(want) and all(torch.equal(back[k], want[k]) for k in want),
              "import then export gives torchvision's tensors back bit for bit")


def main():
    torch.set_num_threads(2)
    if len(sys.argv) == 3:
        check_export(sys.argv[1], sys.argv[2])
    elif len(sys.argv) == 1:
        self_contained()
    else:
        raise SystemExit(__doc__)
    print(f"{len(PASSED)} passed, {len(FAILED)} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
