#!/usr/bin/env python3
"""bench/ref_train.py: ./train written again in plain PyTorch, as a reviewer
would write it to check us. It reads the same .ssl packs, builds the same
network with the same names, computes the four losses the way their authors'
code does, runs the same optimizers and schedule, and writes OUT/log.jsonl
records of the same shape, ending with the same kNN and online-probe top-1.
It shares no code with ssl.h: where the two agree, two independent readings
of the papers agree.

    build/venv/bin/python bench/ref_train.py simclr data=train.ssl val=test.ssl \\
        width=0.25 res=28 bs=256 projector=256-128 views=crop_gray epochs=1 out=runs/ref
    ... init=runs/a/ckpt.sslt            (start from ./train's weights: backbone, heads,
                                          BYOL target, probe; epochs=0 writes the initial ones)
    ... init=runs/a/backbone.safetensors (./probe ckpt=... export=...: the backbone only)

Options are ./train's names and defaults (./train help) for what it
implements: method data val arch stem width zero_init projector predictor
tau sim std cov lambd ema optimizer lr lr_scale wd momentum eta warmup end_lr
epochs bs views res seed threads log_every max_steps probe_optim probe_lr
knn_k knn_train out order (random|sequential) and the view overrides
scale_min scale_max flip_p jitter_p gray_p blur_p solarize_p noise_p; and
its own: device (cpu|cuda, cuda untested), init (.sslt or .safetensors),
views_from (./train's dump_views= file(s), comma-separated: each step's
views and labels from there instead of this script's augmentation),
dtype (float32|float64: the whole run in float64 measures rounding),
save_at (steps, comma-separated: OUT/state_K.sslt after step K). The run
ends by writing OUT/final.sslt: weights, buffers, target.*, probe.*, the
optimizers' state, under ./train's checkpoint names (bench/ckpt_diff.py
compares it with ckpt.sslt).

What it matches (ssl.h section in brackets):
  - packs [3]: header, index and records as docs/formats.md; raw HWC uint8,
    JPEG/PNG through torchvision.io; gray images become 3 equal channels.
  - views [5]: torchvision.transforms.v2 with the presets' parameters:
    RandomResizedCrop (0.08, 1) (3/4, 4/3) antialiased, flip 0.5, ColorJitter
    0.8 x (0.4, 0.4, 0.2, 0.1), grayscale 0.2, blur (kernel 2*ceil(3 sigma)+1,
    sigma in [0.1, 2]), solarize at 0.5, noise (std 0.1, clamped to [0, 1]),
    ImageNet normalisation; byol's T (blur 1.0) and T' (blur 0.1, solarize
    0.2); noise = the whole image resized, no flip.
  - model [8]: ResNet-18/34/50 in torchvision's layout and state_dict names
    (no fc), CIFAR stem (3x3/1, no max pool) or ImageNet stem (7x7/2 + max
    pool), base width round(64*width); heads as nn.Sequential: Linear(bias)
    -BN-ReLU per hidden width, then a Linear, bias-free in the projector, with
    bias in the predictor; torchvision's init (conv kaiming_normal fan_out,
    BN 1/0, Linear U(+-1/sqrt(fan_in))); optional zero-init residual.
    Each view is its own forward (own BN batch statistics).
  - losses [9]: SimCLR NT-Xent over 2B rows, VICReg (its reference code),
    Barlow Twins (BatchNorm1d(affine=False) then c/N), BYOL 2-2cos symmetric.
  - optimizers [10]: LARS (trust ratio and decay only on conv/linear
    weights; biases and BN parameters neither decay nor adapt), SGD, AdamW
    with the same decay rule; lr * bs/256 when lr_scale=1; ssl_lr_at's
    warmup (lr*(step+1)/warmup) then cosine to lr*end_lr, per step.
  - step [11]: probe (Linear on detached features of both views, CE over
    2B rows, own AdamW/SGD at constant probe_lr, top-1 before its update);
    BYOL's target = copy of backbone+projector, EMA of parameters (not BN
    running stats) with tau = 1-(1-ema)(cos(pi k/K)+1)/2, k = steps done.
  - epoch [6]: bs // N steps per epoch (drop_last), a new random order per
    epoch; warmup in epochs (fractions allowed) as train.c turns it into steps.
  - evaluation [12, train.c]: eval-mode BN features of the whole image
    resized to res; kNN over the first knn_train training images, cosine,
    k nearest voting exp(cos/0.07); the online probe's top-1 on val.

Where it knowingly differs:
  - random numbers: torch's generator, not ssl.h's Philox keyed by (seed,
    epoch, sample, view, op): the same seed gives other crops, other epoch
    orders and other initial weights, unless init= loads ./train's weights.
    Losses therefore agree in distribution, not digit for digit.
  - torchvision's GaussianBlur convolves with the 2-D kernel and refuses a
    kernel larger than the image; here the kernel size is clipped to the
    image as ssl.h clips its radius.
  - crops: torchvision resamples the float image; ./train's loader rounds
    each crop to uint8 through a 16-bit fixed-point resampler (within 1 of
    the exact value, ssl.h section 4). Resizing uint8 first here is no
    closer (measured), so the float path stays.
  - ./train skips the final evaluation when max_steps stops the run; this
    script evaluates anyway when val= is given.
  - order=quasi, progressive resolution, resume, checkpoints, sweeps: not here.

Checked (2-core CPU, Fashion-MNIST t10k first 2048, width=0.125 bs=64
projector=32-16 threads=1, 2026-12-07): with ./train's own initial weights
(init=ckpt.sslt from epochs=0) and deterministic views (views=noise
noise_p=0 order=sequential) at res=28 (no resampling), the first 5 logged
losses and probe accuracies of all four methods equal ./train's to 6-7
digits (LARS, schedule, probe AdamW, BYOL's EMA included); at res=16 they
differ by 1e-4..2e-3 relative (Barlow to 1e-2): the crops (above; not
isolated further).
With warmup=0 epochs=1 (lr 0.075 from the first step) the two drift apart
at ~10x a step from step 3, to 1e-2 by step 10: exactly as fast as this
script in float32 drifts from itself in float64, so it is rounding that
the dynamics amplify, not a difference of method (bench/ref_parity.sh).
Both views are the same image there, so a swap between views would not
show; tests/ pins each loss on distinct views.
Learning, 6 epochs of 4096 training images (val: the 2048 above, crop_gray,
projector=64-32, warmup=1): simclr kNN 68.5% / 69.0% (./train / this),
probe 41.5% / 40.6%, last loss 3.015 / 3.069; byol, whose loss level
depends on the initial weights (seeds 0, 1 end at 1.20, 1.49 in ./train,
1.72, 1.42 here), ends at 1.204 / 1.201 when this script starts from
./train's seed-0 weights, kNN 59.2% / 58.5%.
"""
import json
import math
import mmap
import os
import struct
import sys
import time
import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.transforms import v2

# ---- options: ./train's names and defaults ------------------------------

DEFAULTS = dict(
    method="simclr", data="", val="", arch="resnet18", stem="cifar", width=1.0, zero_init=0,
    projector="2048-2048-128", predictor="", tau=0.15, sim=25.0, std=25.0, cov=1.0, lambd=0.0051,
    ema=0.996, optimizer="lars", lr=0.3, lr_scale=1, wd=1e-6, momentum=0.9, eta=0.001, warmup=10.0,
    end_lr=0.001, epochs=100, bs=256, views="simclr", res=32, seed=0, threads=0, log_every=50,
    max_steps=0, probe_optim="adamw", probe_lr=1e-3, knn_k=20, knn_train=10000, out="runs/ref",
    device="cpu", init="", loader_threads=0, order="random", views_from="", dtype="float32", save_at="",
    scale_min=-1.0, scale_max=-1.0, flip_p=-1.0, jitter_p=-1.0, gray_p=-1.0, blur_p=-1.0, solarize_p=-1.0,
    noise_p=-1.0,
)
CHOICES = dict(method=("simclr", "vicreg", "barlow", "byol"), arch=("resnet18", "resnet34", "resnet50"),
               stem=("cifar", "imagenet"), optimizer=("lars", "sgd", "adamw"),
               views=("simclr", "byol", "crop_gray", "crop_flip", "noise"), probe_optim=("adamw", "sgd"),
               device=("cpu", "cuda"), order=("random", "sequential"), dtype=("float32", "float64"))


def parse_args(argv):
    cfg = dict(DEFAULTS)
    for arg in argv:
        if "=" not in arg:  # the method as a word: ./train simclr ...
            arg = "method=" + arg
        key, eq, val = arg.partition("=")
        if not eq or key not in DEFAULTS:
            sys.exit(f"ref_train: unknown option '{arg}' (known: {' '.join(DEFAULTS)})")
        kind = type(DEFAULTS[key])
        cfg[key] = kind(float(val)) if kind is int else kind(val)
        if key in CHOICES and cfg[key] not in CHOICES[key]:
            sys.exit(f"ref_train: {key}={val}: expected one of {'|'.join(CHOICES[key])}")
    if cfg["method"] == "byol" and not cfg["predictor"]:  # train.c: 4096-(the projector's output)
        cfg["predictor"] = "4096-" + cfg["projector"].split("-")[-1]
    if cfg["method"] != "byol" and cfg["predictor"]:
        sys.exit("ref_train: only byol uses a predictor")
    if not cfg["data"]:
        sys.exit("ref_train: data=PACK is required")
    return cfg


# ---- the .ssl pack (docs/formats.md) ------------------------------------

class Pack:
    """A memory-mapped .ssl pack: header and index checked, records on demand."""

    def __init__(self, path):
        f = open(path, "rb")
        self.m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        (magic, version, _hsize, n, self.num_classes, _mode, _max_res, flags, _data_off, index_off,
         strings_off, strings_size, file_size, _page, index_crc, _strings_crc) = struct.unpack_from(
            "<8sIIQIIIIQQQQQIII", self.m, 0)
        if magic != b"SSLPACK\0" or version != 1 or file_size != len(self.m):
            raise ValueError(f"{path}: not a version-1 .ssl pack of the size its header says")
        if zlib.crc32(self.m[0:124]) != struct.unpack_from("<I", self.m, 124)[0]:
            raise ValueError(f"{path}: header CRC mismatch")
        if zlib.crc32(self.m[index_off:index_off + 32 * n]) != index_crc:
            raise ValueError(f"{path}: index CRC mismatch")
        self.entries = [struct.unpack_from("<QIHHBBHIII", self.m, index_off + 32 * i) for i in range(n)]
        names = self.m[strings_off:strings_off + strings_size].split(b"\0")
        self.classes = [s.decode() for s in names[:self.num_classes]]

    def __len__(self):
        return len(self.entries)

    def label(self, i):
        return self.entries[i][7]

    def image(self, i):
        """uint8 tensor [3, H, W]."""
        off, size, w, h, c, enc, _, _label, _crc, _ = self.entries[i]
        data = self.m[off:off + size]
        if enc == 0:
            x = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(h, w, c).permute(2, 0, 1)
        else:
            x = torchvision.io.decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        return x[:3].contiguous()


# ---- views (ssl.h section 5's presets) ----------------------------------

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class RandomBlur(nn.Module):
    """GaussianBlur with probability p, sigma ~ U[lo, hi], kernel 2*ceil(3 sigma)+1
    clipped to the image (ssl.h clips the radius to min(w, h) - 1)."""

    def __init__(self, p, lo=0.1, hi=2.0):
        super().__init__()
        self.p, self.lo, self.hi = p, lo, hi

    def forward(self, x):
        if torch.rand(()) >= self.p:
            return x
        sigma = float(torch.empty(()).uniform_(self.lo, self.hi))
        radius = min(math.ceil(3 * sigma), min(x.shape[-2:]) - 1)
        return v2.functional.gaussian_blur(x, [2 * radius + 1] * 2, [sigma, sigma])


class RandomNoise(nn.Module):
    """Additive Gaussian noise with probability p, clamped to [0, 1]."""

    def __init__(self, p, std):
        super().__init__()
        self.p, self.std = p, std

    def forward(self, x):
        if torch.rand(()) >= self.p:
            return x
        return (x + self.std * torch.randn_like(x)).clamp_(0, 1)


OVERRIDES = ("scale_min", "scale_max", "flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p", "noise_p")


def view_recipe(preset, view, cfg):
    """ssl_view_preset's recipe, then train.c's overrides (-1 = the preset's)."""
    r = dict(scale_min=0.08, scale_max=1.0, crop=True, flip_p=0.5, jitter_p=0.0, gray_p=0.0, blur_p=0.0,
             solarize_p=0.0, noise_p=0.0)
    if preset in ("simclr", "byol"):
        r.update(jitter_p=0.8, gray_p=0.2)
    if preset == "simclr":
        r.update(blur_p=0.5)
    if preset == "byol":  # T for even views, T' for odd ones
        r.update(blur_p=1.0, solarize_p=0.0) if view % 2 == 0 else r.update(blur_p=0.1, solarize_p=0.2)
    if preset == "crop_gray":
        r.update(gray_p=0.2)
    if preset == "noise":  # the whole image resized (its own ratio, then stretched), no flip
        r.update(scale_min=1.0, crop=False, flip_p=0.0, noise_p=1.0)
    for k in OVERRIDES:
        if cfg.get(k, -1) >= 0:
            r[k] = cfg[k]
    return r


def view_transform(r, res):
    ops = [v2.ToDtype(torch.float32, scale=True)]
    if not r["crop"] and r["scale_min"] == r["scale_max"] == 1.0:
        ops += [v2.Resize((res, res), antialias=True)]
    else:
        ops += [v2.RandomResizedCrop(res, scale=(r["scale_min"], r["scale_max"]), ratio=(3 / 4, 4 / 3), antialias=True)]
    ops += [v2.RandomHorizontalFlip(r["flip_p"]),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=r["jitter_p"]),
            v2.RandomGrayscale(r["gray_p"]),
            RandomBlur(r["blur_p"]),
            v2.RandomSolarize(0.5, p=r["solarize_p"]),
            RandomNoise(r["noise_p"], 0.1),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(ops)


def eval_transform(res):  # train.c's eval views: the whole image resized, normalised
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Resize((res, res), antialias=True),
                       v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, pack, cfg):
        self.pack, self.t = pack, [view_transform(view_recipe(cfg["views"], v, cfg), cfg["res"]) for v in range(2)]

    def __len__(self):
        return len(self.pack)

    def __getitem__(self, i):
        x = self.pack.image(i)
        return self.t[0](x), self.t[1](x), self.pack.label(i)


# ---- the model (ssl.h section 8): torchvision's names --------------------

def conv_bn(cin, cout, k, stride):
    return nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, planes, 3, stride)
        self.conv2, self.bn2 = conv_bn(planes, planes, 3, 1)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(*conv_bn(cin, planes, 1, stride))

    def last_bn(self):
        return self.bn2

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):  # v1.5: the stride on the 3x3
    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, planes, 1, 1)
        self.conv2, self.bn2 = conv_bn(planes, planes, 3, stride)
        self.conv3, self.bn3 = conv_bn(planes, planes * 4, 1, 1)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(*conv_bn(cin, planes * 4, 1, stride))

    def last_bn(self):
        return self.bn3

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    """torchvision's ResNet without fc, width-scaled, with either stem."""

    def __init__(self, depth, width, cifar_stem, zero_init_residual=False):
        super().__init__()
        block, counts = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
                         50: (Bottleneck, (3, 4, 6, 3))}[depth]
        base = max(1, math.floor(64 * width + 0.5))  # C's lround
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, base, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.maxpool = nn.Identity() if cifar_stem else nn.MaxPool2d(3, 2, 1)
        cin = base
        for s, n in enumerate(counts):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, base << s, (1 if s == 0 else 2) if j == 0 else 1))
                cin = (base << s) * block.expansion
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.feat_dim = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def mlp(spec, cin, last_bias):
    """Linear(bias)-BN-ReLU per hidden width, then Linear: indices 3i, 3i+1, 3i+2."""
    widths = [int(w) for w in spec.split("-")] if spec else []
    layers = []
    for i, w in enumerate(widths):
        last = i == len(widths) - 1
        layers.append(nn.Linear(cin, w, bias=last_bias if last else True))
        if not last:
            layers += [nn.BatchNorm1d(w), nn.ReLU(inplace=True)]
        cin = w
    return nn.Sequential(*layers), cin


class Net(nn.Module):
    """backbone + projector (+ predictor): state_dict names as ./probe export writes them."""

    def __init__(self, cfg, with_predictor):
        super().__init__()
        self.backbone = ResNet(int(cfg["arch"][6:]), cfg["width"], cfg["stem"] == "cifar", bool(cfg["zero_init"]))
        self.projector, d = mlp(cfg["projector"], self.backbone.feat_dim, last_bias=False)
        self.predictor, d = mlp(cfg["predictor"], d, last_bias=True) if with_predictor else (nn.Sequential(), d)
        self.out_dim = d

    def forward(self, x):
        f = self.backbone(x)
        return f, self.predictor(self.projector(f))

    def flat_state(self):
        """name -> tensor in torchvision's names: the backbone's without a prefix."""
        out = {}
        for k, v in self.state_dict().items():
            if k.endswith("num_batches_tracked"):
                continue
            out[k[len("backbone."):] if k.startswith("backbone.") else k] = v
        return out

    def flat_named_parameters(self):
        for k, p in self.named_parameters():
            yield (k[len("backbone."):] if k.startswith("backbone.") else k), p


def load_safetensors(path):
    """The tensors of a safetensors file (F32/F64/I64/I32) as a dict."""
    dtypes = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32,
              "BF16": torch.bfloat16, "F16": torch.float16}
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack_from("<Q", raw, 0)[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        buf = bytearray(raw[8 + n + a:8 + n + b])
        out[name] = torch.frombuffer(buf, dtype=dtypes[e["dtype"]]).reshape(e["shape"]).clone() if b > a else \
            torch.zeros(e["shape"], dtype=dtypes[e["dtype"]])
    return out


def load_sslt(path):
    """The tensors of an SSLT file (./train's ckpt.sslt, docs/formats.md),
    4-D conv weights turned from our OHWI into torch's OIHW."""
    dtypes = {0: torch.float32, 1: torch.uint8, 2: torch.int32, 3: torch.float64, 4: torch.int64}
    with open(path, "rb") as f:
        raw = f.read()
    magic, version, count, meta_len = struct.unpack_from("<8sIII", raw, 0)
    if magic != b"SSLTNSR\0" or version != 1 or zlib.crc32(raw[:-4]) != struct.unpack_from("<I", raw, len(raw) - 4)[0]:
        raise ValueError(f"{path}: not an intact version-1 SSLT file")
    pos, out = 20 + meta_len, {}
    for _ in range(count):
        (name_len,) = struct.unpack_from("<I", raw, pos)
        name = raw[pos + 4:pos + 4 + name_len].decode()
        pos += 4 + name_len
        dtype, rank = struct.unpack_from("<II", raw, pos)
        dims = struct.unpack_from(f"<{rank}Q", raw, pos + 8)
        pos += 8 + 8 * rank
        nbytes, _crc = struct.unpack_from("<QI", raw, pos)
        pos += 12
        if dtype in dtypes:
            t = torch.frombuffer(bytearray(raw[pos:pos + nbytes]), dtype=dtypes[dtype]).reshape(dims) if nbytes else \
                torch.zeros(dims, dtype=dtypes[dtype])
            out[name] = t.permute(0, 3, 1, 2).contiguous() if t.ndim == 4 else t
        pos += nbytes
    return out


def init_from(path, online, target, probe):
    """Weights by torchvision name from ./probe's export (.safetensors: the
    backbone) or a ./train checkpoint (.sslt: backbone, heads, BYOL's target
    as target.*, the online probe as probe.*). Every backbone tensor must be
    there; what the file lacks keeps this script's init. Returns the names of
    the model's tensors left at their init."""
    src = load_sslt(path) if path.endswith(".sslt") else load_safetensors(path)
    left, online_flat = [], online.flat_state()
    for prefix, module in (("", online), ("target.", target), ("probe.", probe)):
        if module is None:
            continue
        flat = module.flat_state() if prefix != "probe." else {k: v for k, v in module.state_dict().items()}
        for k, t in flat.items():
            name = prefix + k
            if name not in src and prefix == "target.":  # a file without a target: the online weights
                with torch.no_grad():
                    t.copy_(online_flat[k])
                continue
            if name not in src:
                if prefix == "" and not k.startswith(("projector.", "predictor.")):
                    sys.exit(f"ref_train: init={path} lacks the backbone's {k}")
                left.append(name)
                continue
            if tuple(src[name].shape) != tuple(t.shape):
                sys.exit(f"ref_train: init={path}: {name} is {tuple(src[name].shape)}, the model wants {tuple(t.shape)}")
            with torch.no_grad():
                t.copy_(src[name].to(t.dtype))
    return left


# ---- losses (ssl.h section 9), as the authors' code writes them ----------

def off_diagonal(m):
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def simclr_loss(z1, z2, tau):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = z @ z.t() / tau
    s.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(s, positives)


def vicreg_loss(x, y, sim, std, cov):
    n, d = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    cov_loss = off_diagonal(cov_x).pow(2).sum() / d + off_diagonal(cov_y).pow(2).sum() / d
    return sim * repr_loss + std * std_loss + cov * cov_loss


def barlow_loss(z1, z2, lambd):
    n, d = z1.shape
    bn = lambda z: F.batch_norm(z, None, None, training=True, eps=1e-5)  # BatchNorm1d(affine=False)
    c = bn(z1).T @ bn(z2) / n
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = off_diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def byol_loss(p1, p2, z1, z2):
    def loss_fn(p, z):
        return 2 - 2 * (F.normalize(p, dim=-1) * F.normalize(z, dim=-1)).sum(dim=-1)
    return loss_fn(p1, z2.detach()).mean() + loss_fn(p2, z1.detach()).mean()


# ---- optimizers and schedule (ssl.h section 10) -------------------------

def adapts(name, p):
    """ssl.h's table rule: only conv and linear weights decay (and, in LARS,
    get a trust ratio); biases and BN parameters do neither."""
    return p.ndim > 1


class LARS(torch.optim.Optimizer):
    """SGD with momentum on (g + wd w) * q, q = eta ||w|| / ||g + wd w|| (1 if
    either is 0) for the groups with lars=True, q = 1 and wd = 0 otherwise."""

    def __init__(self, groups, lr, momentum, eta):
        super().__init__(groups, dict(lr=lr, momentum=momentum, eta=eta, weight_decay=0.0, lars=False))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=g["weight_decay"])
                if g["lars"]:
                    wn, un = torch.norm(p.double()), torch.norm(d.double())
                    if wn > 0 and un > 0:
                        d = d.mul((g["eta"] * wn / un).float())
                st = self.state[p]
                if "mu" not in st:
                    st["mu"] = torch.zeros_like(p)
                st["mu"].mul_(g["momentum"]).add_(d)
                p.add_(st["mu"], alpha=-g["lr"])


def make_optimizer(kind, named, lr, wd, momentum, eta):
    yes = [p for n, p in named if adapts(n, p)]
    no = [p for n, p in named if not adapts(n, p)]
    if kind == "lars":
        return LARS([dict(params=yes, weight_decay=wd, lars=True), dict(params=no)], lr, momentum, eta)
    groups = [dict(params=yes, weight_decay=wd), dict(params=no, weight_decay=0.0)]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999), eps=1e-8)


def lr_at(base, step, warmup, total, end_ratio):
    """ssl_lr_at: linear warmup from 0 (step+1 of warmup), then cosine to base*end_ratio."""
    if step < warmup:
        return base * (step + 1) / warmup
    if total <= warmup:
        return base
    t = min(1.0, (step - warmup) / (total - warmup))
    end = base * end_ratio
    return end + (base - end) * 0.5 * (1 + math.cos(math.pi * t))


# ---- evaluation (train.c's evaluate) ------------------------------------

@torch.no_grad()
def features(backbone, pack, res, limit, bs, dev):
    backbone.eval()
    t = eval_transform(res)
    n = min(len(pack), limit)
    feats, labels = [], []
    for a in range(0, n, bs):
        x = torch.stack([t(pack.image(i)) for i in range(a, min(n, a + bs))]).to(dev)
        feats.append(backbone(x.to(next(backbone.parameters()).dtype)).float().cpu())
        labels += [pack.label(i) for i in range(a, min(n, a + bs))]
    backbone.train()
    return torch.cat(feats), torch.tensor(labels)


def knn_top1(bank, bank_y, q, q_y, k, classes, temperature=0.07):
    bank, q = F.normalize(bank, dim=1), F.normalize(q, dim=1)
    k = min(k, bank.shape[0])
    correct = 0
    for a in range(0, q.shape[0], 256):
        sims, idx = (q[a:a + 256] @ bank.T).topk(k, dim=1)
        votes = torch.zeros(sims.shape[0], classes, dtype=torch.float64)
        votes.scatter_add_(1, bank_y[idx], (sims.double() / temperature).exp())
        correct += (votes.argmax(dim=1) == q_y[a:a + 256]).sum().item()
    return correct / max(1, q.shape[0])


# ---- the step (ssl.h section 11) as a class: main() and tests/gen_traj_fixtures.py ----

class RefTrainer:
    """The online net, BYOL's target, the probe and their optimizers; step()
    is one of ./train's steps (ssl_train_step): both forwards, the loss, its
    backward, the probe on detached features, the optimizer at lr_at(step),
    BYOL's EMA at tau(step)."""

    def __init__(self, cfg, classes, total, warmup, dev, init=""):
        self.cfg, self.total, self.warmup, self.method = cfg, total, warmup, cfg["method"]
        self.online = Net(cfg, with_predictor=self.method == "byol").to(dev)
        self.target = None
        if self.method == "byol":  # backbone + projector, a copy of the online one
            self.target = Net(dict(cfg, predictor=""), with_predictor=False).to(dev)
            self.target.load_state_dict({k: v for k, v in self.online.state_dict().items()
                                         if not k.startswith("predictor.")})
            self.target.requires_grad_(False)
        self.probe = nn.Linear(self.online.backbone.feat_dim, classes).to(dev) if classes > 1 else None
        if self.probe is not None:
            bound = 1 / math.sqrt(self.online.backbone.feat_dim)
            nn.init.uniform_(self.probe.weight, -bound, bound)
            nn.init.uniform_(self.probe.bias, -bound, bound)
        self.left = init_from(init, self.online, self.target, self.probe) if init else []
        self.base_lr = cfg["lr"] * (cfg["bs"] / 256 if cfg["lr_scale"] else 1.0)
        self.opt = make_optimizer(cfg["optimizer"], list(self.online.named_parameters()), self.base_lr, cfg["wd"],
                                  cfg["momentum"], cfg["eta"])
        if self.probe is not None:
            pgroups = [dict(params=list(self.probe.parameters()), weight_decay=0.0)]
            self.popt = torch.optim.AdamW(pgroups, lr=cfg["probe_lr"]) if cfg["probe_optim"] == "adamw" else \
                torch.optim.SGD(pgroups, lr=cfg["probe_lr"], momentum=0.9)
        self.step_count = 0

    def to(self, dtype):
        """Every tensor (and optimizer state, made lazily) in dtype: float64 runs
        measure what float32's rounding does to a trajectory."""
        for m in (self.online, self.target, self.probe):
            if m is not None:
                m.to(dtype)
        return self

    def loss(self, o1, o2, x1, x2):
        cfg, method = self.cfg, self.method
        if method == "simclr":
            return simclr_loss(o1, o2, cfg["tau"])
        if method == "vicreg":
            return vicreg_loss(o1, o2, cfg["sim"], cfg["std"], cfg["cov"])
        if method == "barlow":
            return barlow_loss(o1, o2, cfg["lambd"])
        with torch.no_grad():
            z1, z2 = self.target(x1)[1], self.target(x2)[1]
        return byol_loss(o1, o2, z1, z2)

    def step(self, x1, x2, y):
        """One step; returns (loss, probe top-1 before its update, lr, ema tau)."""
        cfg, step = self.cfg, self.step_count
        f1, o1 = self.online(x1)  # each view its own forward: its own BN statistics
        f2, o2 = self.online(x2)
        loss = self.loss(o1, o2, x1, x2)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"step {step}: {self.method} loss is {loss.item()}")
        self.opt.zero_grad(set_to_none=False)
        loss.backward()
        acc = 0.0
        if self.probe is not None:  # on detached features of both views, accuracy before its update
            logits = self.probe(torch.cat([f1.detach(), f2.detach()]))
            yy = torch.cat([y, y])
            ploss = F.cross_entropy(logits, yy)
            acc = (logits.argmax(1) == yy).float().mean().item()
            self.popt.zero_grad()
            ploss.backward()
            self.popt.step()
        lr = lr_at(self.base_lr, step, self.warmup, self.total, cfg["end_lr"])
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()
        ema_tau = 0.0
        if self.target is not None:  # parameters only: the target keeps its own BN running statistics
            k = min(step, self.total)
            ema_tau = 1 - (1 - cfg["ema"]) * (math.cos(math.pi * k / max(1, self.total)) + 1) / 2
            with torch.no_grad():
                online_p = dict(self.online.named_parameters())
                for n, p in self.target.named_parameters():
                    p.mul_(ema_tau).add_(online_p[n], alpha=1 - ema_tau)
        self.step_count += 1
        return loss.item(), acc, lr, ema_tau

    def state(self):
        """name -> tensor (torch layout) under ./train's checkpoint names: the
        online net's, target.*, probe.*, and the optimizers' first moments
        (optim.m.*: LARS/SGD's momentum buffer, AdamW's exp_avg), second
        (optim.v.*, AdamW), the probe's (probe_optim.m.*, .v.*)."""
        out = {k: v.detach() for k, v in self.online.flat_state().items()}
        if self.target is not None:
            out.update({"target." + k: v.detach() for k, v in self.target.flat_state().items()})
        if self.probe is not None:
            out.update({"probe." + k: v.detach() for k, v in self.probe.state_dict().items()})
        flat_names = {id(p): n for n, p in self.online.flat_named_parameters()}
        for prefix, opt, names in (("optim.", self.opt, flat_names),
                                   ("probe_optim.", getattr(self, "popt", None),
                                    {id(p): "probe." + n for n, p in (self.probe.named_parameters() if self.probe else [])})):
            if opt is None:
                continue
            for p, st in opt.state.items():
                for key, slot in (("mu", "m"), ("momentum_buffer", "m"), ("exp_avg", "m"), ("exp_avg_sq", "v")):
                    if key in st and st[key] is not None:
                        out[f"{prefix}{slot}.{names[id(p)]}"] = st[key].detach()
        return out


def save_sslt(path, tensors, meta=""):
    """An SSLT file (docs/formats.md) of float32/int64 tensors, 4-D ones turned
    from torch's OIHW into the checkpoint's OHWI: load_sslt and ./train read it."""
    blob = bytearray()
    count = 0
    for name, t in tensors.items():
        t = t.detach().cpu()
        if t.ndim == 4:
            t = t.permute(0, 2, 3, 1)
        t = t.contiguous()
        code = {torch.float32: 0, torch.float64: 0, torch.int32: 2, torch.int64: 4}[t.dtype]
        t = t.float() if t.dtype == torch.float64 else t
        data = t.numpy().tobytes()
        nm = name.encode()
        blob += struct.pack("<I", len(nm)) + nm + struct.pack("<II", code, t.ndim)
        blob += struct.pack(f"<{t.ndim}Q", *t.shape) + struct.pack("<QI", len(data), zlib.crc32(data)) + data
        count += 1
    m = meta.encode()
    raw = struct.pack("<8sIII", b"SSLTNSR\0", 1, count, len(m)) + m + blob
    raw += struct.pack("<I", zlib.crc32(raw))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(raw)
    os.replace(tmp, path)


class DumpedViews:
    """./train's dump_views=FILE: step.K.view0, step.K.view1 ([n,h,w,3] float32,
    normalized, as the step got them; NCHW once read) and step.K.labels."""

    def __init__(self, paths):  # one file, or several (comma-separated: a run stopped and resumed)
        self.t = {}
        for path in paths.split(","):
            self.t.update(load_sslt(path))

    def __contains__(self, k):
        return f"step.{k}.view0" in self.t

    def __getitem__(self, k):
        return (self.t[f"step.{k}.view0"], self.t[f"step.{k}.view1"], self.t[f"step.{k}.labels"].long())


# ---- the run -------------------------------------------------------------

def main():
    cfg = parse_args(sys.argv[1:])
    torch.manual_seed(cfg["seed"])
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    dev = torch.device(cfg["device"])
    pack = Pack(cfg["data"])
    bs, per_epoch = cfg["bs"], len(pack) // cfg["bs"]
    if per_epoch < 1:
        sys.exit(f"ref_train: {cfg['data']} has {len(pack)} samples, fewer than one batch of {bs}")
    classes = pack.num_classes
    method = cfg["method"]

    total = cfg["epochs"] * per_epoch
    warmup = int(cfg["warmup"] * per_epoch)
    tr = RefTrainer(cfg, classes, total, warmup, dev, init=cfg["init"])
    if cfg["init"]:
        print(f"ref_train: weights from {cfg['init']}" +
              (f"; left at this script's init: {' '.join(tr.left)}" if tr.left else ""))
    if cfg["dtype"] == "float64":
        tr.to(torch.float64)
    online, base_lr = tr.online, tr.base_lr
    dumped = DumpedViews(cfg["views_from"]) if cfg["views_from"] else None

    os.makedirs(cfg["out"], exist_ok=True)
    log = open(os.path.join(cfg["out"], "log.jsonl"), "w")
    log.write(json.dumps({"config": cfg, "resumed_at_step": 0}) + "\n")
    nweights = sum(p.numel() for p in online.parameters())
    print(f"ref_train: {method}, {cfg['arch']} ({cfg['stem']} stem, width {cfg['width']}: {nweights} weights), "
          f"projector {cfg['projector']}{', predictor ' + cfg['predictor'] if cfg['predictor'] else ''}; "
          f"{len(pack)} samples, {classes} classes, {per_epoch} steps/epoch; lr {base_lr:g} (peak), {cfg['optimizer']}")

    tr_dtype = torch.float64 if cfg["dtype"] == "float64" else torch.float32
    data = TwoViews(pack, cfg)
    gen = torch.Generator().manual_seed(cfg["seed"])
    step, t0 = 0, time.time()
    tlast = t0
    sums = [0.0, 0.0, 0]
    stopped = False
    for epoch in range(cfg["epochs"]):
        loader = torch.utils.data.DataLoader(data, batch_size=bs, shuffle=cfg["order"] == "random", drop_last=True,
                                             generator=gen,
                                             num_workers=cfg["loader_threads"])
        if dumped is not None:  # ./train's own views of each step (dump_views=), no loader
            loader = (dumped[k] for k in range(step, step + per_epoch) if k in dumped)
        for b, (x1, x2, y) in enumerate(loader):
            x1, x2, y = x1.to(dev, tr_dtype), x2.to(dev, tr_dtype), y.to(dev)
            try:
                loss, acc, lr, ema_tau = tr.step(x1, x2, y)
            except FloatingPointError as e:
                log.write(json.dumps({"error": "non-finite loss", "step": step}) + "\n")
                sys.exit(f"ref_train: {e}")
            step += 1
            if str(step) in cfg["save_at"].split(","):
                save_sslt(os.path.join(cfg["out"], f"state_{step}.sslt"), dict(tr.state(), **{"trainer.state": torch.tensor([step])}),
                          meta=f"ref_train.py {method}: the state after {step} steps")
            sums[0] += loss
            sums[1] += acc
            sums[2] += 1
            last = b + 1 == per_epoch and epoch == cfg["epochs"] - 1
            if step % cfg["log_every"] == 0 or step == 1 or last:
                rec = dict(epoch=epoch, epochs_done=round(step / per_epoch, 4), step=step,
                           loss=round(sums[0] / sums[2], 6), probe_acc=round(sums[1] / sums[2], 4), lr=lr,
                           ema_tau=round(ema_tau, 6), res=cfg["res"],
                           img_per_s=round(sums[2] * bs / (time.time() - tlast), 1), elapsed=round(time.time() - t0, 1))
                tlast = time.time()
                log.write(json.dumps(rec) + "\n")
                log.flush()
                print(f"epoch {epoch + 1}/{cfg['epochs']} step {step}/{total} loss {rec['loss']:.4f} "
                      f"probe {100 * rec['probe_acc']:.1f}% lr {lr:.4g}", flush=True)
                sums = [0.0, 0.0, 0]
            if cfg["max_steps"] and step >= cfg["max_steps"]:
                stopped = True
                break
        if stopped or (dumped is not None and step not in dumped):
            break

    save_sslt(os.path.join(cfg["out"], "final.sslt"), dict(tr.state(), **{"trainer.state": torch.tensor([step])}),
              meta=f"ref_train.py {method}: the state after {step} steps (./train's checkpoint names)")
    probe = tr.probe
    if cfg["val"]:
        te = time.time()
        val = Pack(cfg["val"])
        bank, bank_y = features(online.backbone, pack, cfg["res"], cfg["knn_train"], min(bs, 256), dev)
        q, q_y = features(online.backbone, val, cfg["res"], len(val), min(bs, 256), dev)
        knn = knn_top1(bank, bank_y, q, q_y, cfg["knn_k"], classes)
        probe_top1 = -1.0
        if probe is not None:
            with torch.no_grad():
                probe_top1 = (probe(q.to(dev, tr_dtype)).argmax(1).cpu() == q_y).float().mean().item()
        print(f"eval: kNN top-1 {100 * knn:.2f}% (k={cfg['knn_k']}, bank {len(bank)} train images, {len(q)} val "
              f"images), online probe top-1 {100 * probe_top1:.2f}% ({time.time() - te:.1f}s)")
        log.write(json.dumps({"eval": dict(step=step, knn_top1=knn, probe_top1=probe_top1, knn_k=cfg["knn_k"],
                                           bank=len(bank), val=len(q))}) + "\n")
    log.close()


if __name__ == "__main__":
    main()
