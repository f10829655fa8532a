"""SSLT tensor-file format: writer and strict reader (fixtures, checkpoints).

Layout, all little-endian:
  header : b"SSLTNSR\\0" | u32 version=1 | u32 count | u32 meta_len | meta (UTF-8)
  record : u32 name_len | name (UTF-8, no NUL) | u32 dtype | u32 ndim (0..8)
           | ndim x u64 dims | u64 nbytes (= prod(dims)*itemsize)
           | u32 crc32(data) | data (C order, little-endian)
  trailer: u32 crc32 of every byte before the trailer
dtype codes: 0=float32 1=uint8 2=int32 3=float64 4=int64 5=bfloat16.
bfloat16 arrays are carried as numpy uint16 bit patterns: pass them to write()
wrapped as BF16(array_of_uint16); read() returns them as BF16 too.

Usage: python tests/sslt.py FILE   -> prints meta and a table of tensors.
"""
import os
import struct
import sys
import zlib

import numpy as np

MAGIC = b"SSLTNSR\0"
VERSION = 1
MAX_NDIM = 8


class BF16:
    """bfloat16 tensor stored as its raw uint16 bit patterns."""

    def __init__(self, bits):
        bits = np.asarray(bits)
        if bits.dtype != np.uint16:
            raise TypeError("BF16 wants a uint16 array of bit patterns")
        self.bits = bits

    @property
    def shape(self):
        return self.bits.shape

    def to_float32(self):
        return (self.bits.astype("<u4") << 16).view("<f4")


_DTYPES = {  # code -> (numpy little-endian dtype, itemsize)
    0: np.dtype("<f4"),
    1: np.dtype("u1"),
    2: np.dtype("<i4"),
    3: np.dtype("<f8"),
    4: np.dtype("<i8"),
    5: np.dtype("<u2"),  # bfloat16 bit patterns
}
_CODE = {np.dtype("float32"): 0, np.dtype("uint8"): 1, np.dtype("int32"): 2,
         np.dtype("float64"): 3, np.dtype("int64"): 4}


class SSLTError(ValueError):
    pass


def _encode(name, arr):
    if isinstance(arr, BF16):
        code, a = 5, arr.bits
    else:
        a = np.asarray(arr)
        key = np.dtype(a.dtype.name)  # drops byte order
        if key not in _CODE:
            raise TypeError(f"{name}: unsupported dtype {a.dtype}")
        code = _CODE[key]
    if a.ndim > MAX_NDIM:
        raise ValueError(f"{name}: ndim {a.ndim} > {MAX_NDIM}")
    data = np.ascontiguousarray(a, dtype=_DTYPES[code]).tobytes()
    nb = name.encode("utf-8")
    if b"\0" in nb or not nb:
        raise ValueError(f"bad tensor name {name!r}")
    out = [struct.pack("<I", len(nb)), nb, struct.pack("<II", code, a.ndim)]
    out.append(struct.pack(f"<{a.ndim}Q", *a.shape))
    out.append(struct.pack("<QI", len(data), zlib.crc32(data) & 0xFFFFFFFF))
    out.append(data)
    return b"".join(out)


def dumps(tensors, meta=""):
    mb = meta.encode("utf-8")
    parts = [MAGIC, struct.pack("<III", VERSION, len(tensors), len(mb)), mb]
    for name, arr in tensors.items():
        parts.append(_encode(name, arr))
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def write(path, tensors, meta=""):
    """Write dict name->array (or BF16) atomically (path+'.tmp', os.replace)."""
    blob = dumps(tensors, meta)
    tmp = str(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def loads(buf):
    buf = memoryview(bytes(buf))
    n = len(buf)
    pos = 0

    def take(k, what):
        nonlocal pos
        if k < 0 or pos + k > n - 4:  # trailer is never part of a field
            raise SSLTError(f"truncated reading {what} at offset {pos}")
        b = buf[pos:pos + k]
        pos += k
        return b

    if n < len(MAGIC) + 12 + 4:
        raise SSLTError("file too short")
    (trailer,) = struct.unpack_from("<I", buf, n - 4)
    if zlib.crc32(buf[:n - 4]) & 0xFFFFFFFF != trailer:
        raise SSLTError("trailer crc32 mismatch")
    if bytes(take(8, "magic")) != MAGIC:
        raise SSLTError("bad magic")
    version, count, meta_len = struct.unpack("<III", take(12, "header"))
    if version != VERSION:
        raise SSLTError(f"unsupported version {version}")
    try:
        meta = bytes(take(meta_len, "meta")).decode("utf-8")
    except UnicodeDecodeError as e:
        raise SSLTError(f"meta not UTF-8: {e}")
    tensors = {}
    for i in range(count):
        (name_len,) = struct.unpack("<I", take(4, "name_len"))
        nb = bytes(take(name_len, "name"))
        if not nb or b"\0" in nb:
            raise SSLTError(f"record {i}: bad name")
        try:
            name = nb.decode("utf-8")
        except UnicodeDecodeError:
            raise SSLTError(f"record {i}: name not UTF-8")
        if name in tensors:
            raise SSLTError(f"duplicate tensor name {name!r}")
        code, ndim = struct.unpack("<II", take(8, "dtype/ndim"))
        if code not in _DTYPES:
            raise SSLTError(f"{name}: unknown dtype code {code}")
        if ndim > MAX_NDIM:
            raise SSLTError(f"{name}: ndim {ndim} > {MAX_NDIM}")
        dims = struct.unpack(f"<{ndim}Q", take(8 * ndim, "dims"))
        nbytes, crc = struct.unpack("<QI", take(12, "nbytes/crc"))
        dt = _DTYPES[code]
        expect = dt.itemsize
        for d in dims:
            expect *= d
        if nbytes != expect:
            raise SSLTError(f"{name}: nbytes {nbytes} != prod(dims)*itemsize {expect}")
        data = take(nbytes, "data")
        if zlib.crc32(data) & 0xFFFFFFFF != crc:
            raise SSLTError(f"{name}: data crc32 mismatch")
        a = np.frombuffer(data, dtype=dt).reshape(dims).copy()
        tensors[name] = BF16(a) if code == 5 else a
    if pos != n - 4:
        raise SSLTError(f"{n - 4 - pos} unexpected bytes before trailer")
    return tensors, meta


def read(path):
    """Read and fully validate a file; returns (dict name->array, meta str)."""
    with open(path, "rb") as f:
        return loads(f.read())


if __name__ == "__main__":
    t, m = read(sys.argv[1])
    print(f"meta: {m}")
    for k, v in t.items():
        dt = "bfloat16" if isinstance(v, BF16) else v.dtype
        print(f"{k:40s} {str(dt):8s} {tuple(v.shape)}")
