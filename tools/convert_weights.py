#!/usr/bin/env python3
"""Converts a PyTorch checkpoint to .safetensors for the engine (tensor/safetensors.h).

    python3 tools/convert_weights.py resnet18-f37072fd.pth resnet18.safetensors
    python3 tools/convert_weights.py ckpt.pth out.safetensors --strip-prefix module. --meta source=timm

The input is a .pth/.pt file holding a state_dict, or a dict with the state_dict under
"state_dict" or "model" (as torchvision, timm and most training scripts publish them).
Tensors keep their dtype (bfloat16 is written as BF16), key order and names; the engine
loads F16/BF16 as f32.

Also a module, with a writer and a reader that need only NumPy (no `safetensors` package):
    from convert_weights import write_safetensors, read_safetensors
    write_safetensors(path, {"w": np.zeros((2, 3), np.float32)}, metadata={"k": "v"})
    tensors = read_safetensors(path)            # dict name -> numpy array, in file order
    tensors, metadata = read_safetensors(path, with_metadata=True)
Files follow the engine's layout rules: the header is padded with spaces to a multiple of
8 bytes and the data of larger element types comes first, so every tensor is aligned to its
element size; the tensors tile the data section exactly (no gaps, no trailing bytes).
"""
import argparse
import json
import os
import pickle
import struct
import sys
import tempfile

import numpy as np

# safetensors dtype name <-> NumPy dtype (little-endian).
_TO_NUMPY = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("bool"),
}


def _little(dtype):
    """The little-endian twin of a NumPy dtype (one-byte types have no byte order)."""
    return dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype


_FROM_NUMPY = {_little(v): k for k, v in _TO_NUMPY.items()}
# BF16 has no NumPy type: raw uint16 bits stand for it (see `dtypes` of write_safetensors).
_RAW_BITS = {"BF16": np.dtype("<u2")}
_MAX_HEADER = 100_000_000


def write_safetensors(path, tensors, metadata=None, dtypes=None):
    """Writes `tensors` (a dict name -> NumPy array, order kept) to `path`, atomically.

    metadata: optional dict of str -> str. dtypes: optional dict name -> safetensors dtype
    for arrays that carry raw bits, e.g. {"w": "BF16"} with a uint16 array of bfloat16 bits.
    """
    dtypes = dtypes or {}
    metadata = metadata or {}
    if "__metadata__" in tensors:
        raise ValueError("write_safetensors: %s: '__metadata__' cannot name a tensor" % path)
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError("write_safetensors: %s: metadata must map str to str, got %r: %r" % (path, k, v))
    entries = []
    for name, array in tensors.items():
        array = np.asarray(array)
        if name in dtypes:
            kind = dtypes[name]
            raw = _RAW_BITS.get(kind) or _TO_NUMPY.get(kind)
            if raw is None or array.dtype.itemsize != raw.itemsize or array.dtype.kind not in "uif":
                raise ValueError("write_safetensors: %s: key %r: cannot store %s as %s" % (path, name, array.dtype, kind))
        else:
            kind = _FROM_NUMPY.get(_little(array.dtype))
            if kind is None:
                raise ValueError("write_safetensors: %s: key %r: unsupported dtype %s" % (path, name, array.dtype))
        data_type = _little(array.dtype)
        data = np.ascontiguousarray(array, dtype=data_type).tobytes()
        entries.append((name, kind, list(array.shape), data, data_type.itemsize))

    # Data by element size, largest first (stable): each tensor aligned to its element size.
    order = sorted(range(len(entries)), key=lambda i: -entries[i][4])
    offsets, position = {}, 0
    for i in order:
        offsets[i] = (position, position + len(entries[i][3]))
        position += len(entries[i][3])
    header = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    for i, (name, kind, shape, _, _) in enumerate(entries):
        header[name] = {"dtype": kind, "shape": shape, "data_offsets": list(offsets[i])}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)

    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".tmp.", dir=directory)
    try:
        umask = os.umask(0)  # mkstemp makes the file private; give it the usual 0666 & ~umask
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for i in order:
                f.write(entries[i][3])
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def read_safetensors(path, with_metadata=False, raw_bits=False):
    """Reads a .safetensors file into a dict name -> NumPy array (header order).

    BF16 tensors come back as float32 (exact), or as their uint16 bits with raw_bits=True.
    Validates the layout like the engine does and raises ValueError naming the file and key.
    """
    with open(path, "rb") as f:
        blob = f.read()

    def bad(what):
        raise ValueError("read_safetensors: %s: %s" % (path, what))

    if len(blob) < 8:
        bad("too short to be a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8 or n > _MAX_HEADER:
        bad("header length %d beyond the file (%d bytes)" % (n, len(blob)))

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            bad("duplicate key in the header")
        return dict(pairs)

    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        bad("header is not valid JSON: %s" % e)
    if not isinstance(header, dict):
        bad("the header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    data = memoryview(blob)[8 + n:]
    out, spans = {}, []
    for name, entry in header.items():
        try:
            kind, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            bad("key %r: expected dtype, shape and data_offsets [begin, end]" % name)
        dtype = _TO_NUMPY.get(kind) or _RAW_BITS.get(kind)
        if dtype is None:
            bad("key %r: unknown dtype %r" % (name, kind))
        if any(not isinstance(d, int) or d < 0 for d in shape):
            bad("key %r: bad shape %r" % (name, shape))
        count = int(np.prod(shape, dtype=object)) if shape else 1
        if not (0 <= begin <= end <= len(data)) or end - begin != count * dtype.itemsize:
            bad("key %r: data_offsets [%d, %d] do not fit %s%r in %d bytes" % (name, begin, end, kind, shape, len(data)))
        spans.append((begin, end, name))
        array = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).copy()
        if kind == "BF16" and not raw_bits:
            array = (array.astype(np.uint32) << 16).view(np.float32)
        out[name] = array
    covered = 0
    for begin, end, name in sorted(spans):
        if begin != covered:
            bad("key %r: data_offsets [%d, %d] overlap or leave a gap (expected to start at %d)" % (name, begin, end, covered))
        covered = end
    if covered != len(data):
        bad("%d trailing bytes after the last tensor" % (len(data) - covered))
    return (out, metadata) if with_metadata else out


# ---- PyTorch conversion ----------------------------------------------------------------------

def load_state_dict(path, trusted=False):
    """The state_dict inside a PyTorch checkpoint file, as an ordered dict name -> torch.Tensor.

    The file is unpickled with PyTorch's weights-only loader, which refuses arbitrary Python
    objects; trusted=True allows the full unpickler (it can run code from the file) for
    checkpoints that also pickle other objects (e.g. timm's argparse.Namespace).
    """
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trusted)
    except TypeError:  # PyTorch before 1.13 has no weights_only
        if not trusted:
            raise ValueError("convert_weights: %s: this PyTorch has no weights-only loader; pass --trusted "
                             "to use the full unpickler on a file you trust" % path)
        obj = torch.load(path, map_location="cpu")
    except pickle.UnpicklingError as e:
        why = " ".join(str(e).split()).rpartition("WeightsUnpickler error:")[2].strip()
        raise ValueError("convert_weights: %s: the weights-only loader refused the file (%s); pass --trusted "
                         "to use the full unpickler if you trust it" % (path, why))
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()  # a pickled nn.Module
    if not isinstance(obj, dict):
        raise ValueError("convert_weights: %s holds a %s, not a state_dict" % (path, type(obj).__name__))
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError("convert_weights: %s: no tensors found (keys: %s)" % (path, ", ".join(list(obj)[:10])))
    return tensors


def to_numpy(tensors):
    """torch tensors -> (dict of NumPy arrays, dtypes overrides for write_safetensors)."""
    import torch

    arrays, dtypes = {}, {}
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            arrays[name] = t.view(torch.int16).numpy().view(np.uint16)
            dtypes[name] = "BF16"
        else:
            arrays[name] = t.numpy()
    return arrays, dtypes


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert a PyTorch checkpoint (.pth/.pt: a state_dict, or a dict with one under "
        "'state_dict' or 'model') to .safetensors for the hpa engine.")
    parser.add_argument("input", help="PyTorch checkpoint (.pth/.pt)")
    parser.add_argument("output", help="output .safetensors file (written atomically)")
    parser.add_argument("--strip-prefix", action="append", default=[], metavar="PREFIX",
                        help="remove PREFIX from the start of every key that has it (e.g. 'module.'); repeatable")
    parser.add_argument("--float32", action="store_true", help="store floating tensors as F32")
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                        help="add a string to the file's __metadata__; repeatable")
    parser.add_argument("--list", action="store_true", help="print every key, dtype and shape written")
    parser.add_argument("--trusted", action="store_true",
                        help="unpickle with the full loader, which can run code from the file (only for files you "
                             "trust; needed for checkpoints that pickle more than tensors)")
    args = parser.parse_args(argv)

    try:
        tensors = load_state_dict(args.input, trusted=args.trusted)
    except (OSError, ValueError, RuntimeError) as e:
        message = str(e)
        sys.stderr.write(message if message.startswith("convert_weights:") else "convert_weights: %s: %s" % (args.input, message))
        sys.stderr.write("\n")
        return 1
    renamed = {}
    for name, t in tensors.items():
        for prefix in args.strip_prefix:
            if name.startswith(prefix):
                name = name[len(prefix):]
        if name in renamed:
            parser.error("two keys become %r after --strip-prefix" % name)
        renamed[name] = t.float() if args.float32 and t.is_floating_point() else t
    arrays, dtypes = to_numpy(renamed)
    metadata = {"format": "pt", "source": os.path.basename(args.input)}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error("--meta expects KEY=VALUE, got %r" % item)
        metadata[key] = value
    write_safetensors(args.output, arrays, metadata=metadata, dtypes=dtypes)
    if args.list:
        for name, a in arrays.items():
            print("%-60s %-5s %s" % (name, dtypes.get(name, _FROM_NUMPY.get(_little(a.dtype))), list(a.shape)))
    total = sum(a.nbytes for a in arrays.values())
    print("wrote %s: %d tensors, %.1f MB" % (args.output, len(arrays), total / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
