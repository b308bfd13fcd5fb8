"""Read and write safetensors files without the safetensors package.

The format (huggingface/safetensors' format description; docs/formats.md,
"safetensors"): a
little-endian u64 header length N, N bytes of UTF-8 JSON, then the tensor
bytes, little-endian and row-major.  The writer behaves like the reference
writer: tensors sorted by dtype alignment (descending), then by name, laid
out back to back; the JSON is compact, "__metadata__" first (keys sorted,
string values only), and padded with spaces to a multiple of 8 bytes so
that every tensor starts aligned.

Values may be numpy arrays, torch tensors (bfloat16 included) or RawTensor
for dtypes neither library has.  Reading gives numpy arrays (BF16 widened
exactly to float32, dtypes numpy lacks as RawTensor) or torch tensors.
"""

import json
import struct
from typing import Dict, Mapping, NamedTuple, Optional, Tuple

import numpy as np

# The reference writer's dtype enum, in increasing alignment order.
DTYPE_ORDER = [
    "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3",
    "F8_E8M0", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64",
    "F64", "I64", "U64",
]
_RANK = {name: i for i, name in enumerate(DTYPE_ORDER)}

DTYPE_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
    "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64,
    "F64": 64, "I64": 64, "U64": 64,
}

_NUMPY_OF = {
    "BOOL": np.dtype("?"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"), "U16": np.dtype("<u2"), "F16": np.dtype("<f2"),
    "I32": np.dtype("<i4"), "U32": np.dtype("<u4"), "F32": np.dtype("<f4"),
    "C64": np.dtype("<c8"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
}
_NAME_OF_NUMPY = {v: k for k, v in _NUMPY_OF.items()}

MAX_HEADER = 100_000_000


class RawTensor(NamedTuple):
    """A tensor given as its dtype string, shape and little-endian bytes."""
    dtype: str
    shape: Tuple[int, ...]
    data: bytes


def _torch():
    import torch  # imported lazily so numpy-only users need no torch
    return torch


def _torch_names():
    torch = _torch()
    return {
        torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
        torch.float64: "F64", torch.int64: "I64", torch.int32: "I32",
        torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
        torch.bool: "BOOL", torch.complex64: "C64",
    }


def _encode(value) -> RawTensor:
    """Turn one value into (dtype string, shape, bytes)."""
    if isinstance(value, RawTensor):
        numel = int(np.prod(value.shape, dtype=np.int64)) if value.shape else 1
        bits = DTYPE_BITS.get(value.dtype)
        if bits is None:
            raise ValueError(f"unknown dtype {value.dtype!r}")
        if numel * bits % 8 or len(value.data) != numel * bits // 8:
            raise ValueError(f"RawTensor {value.dtype}{list(value.shape)} has {len(value.data)} bytes")
        return RawTensor(value.dtype, tuple(int(d) for d in value.shape), bytes(value.data))
    if isinstance(value, np.ndarray):
        dt = value.dtype
        name = _NAME_OF_NUMPY.get(dt.newbyteorder("<") if dt.byteorder == ">" else dt)
        if name is None:
            raise ValueError(f"numpy dtype {dt} has no safetensors dtype")
        arr = np.ascontiguousarray(value, dtype=_NUMPY_OF[name])
        return RawTensor(name, tuple(int(d) for d in arr.shape), arr.tobytes())
    torch = _torch()
    if isinstance(value, torch.Tensor):
        name = _torch_names().get(value.dtype)
        if name is None:
            raise ValueError(f"torch dtype {value.dtype} has no safetensors dtype")
        t = value.detach().cpu().contiguous()
        if name == "BF16":
            data = t.view(torch.int16).numpy().astype("<i2").tobytes()
        else:
            data = t.numpy().astype(_NUMPY_OF[name]).tobytes()
        return RawTensor(name, tuple(int(d) for d in t.shape), data)
    raise TypeError(f"cannot store a {type(value).__name__} as a tensor")


def dtype_of(value) -> str:
    """The safetensors dtype string a value (numpy, torch or RawTensor) is stored as."""
    if isinstance(value, RawTensor):
        return value.dtype
    if isinstance(value, np.ndarray):
        dt = value.dtype
        name = _NAME_OF_NUMPY.get(dt.newbyteorder("<") if dt.byteorder == ">" else dt)
        if name is None:
            raise ValueError(f"numpy dtype {dt} has no safetensors dtype")
        return name
    torch = _torch()
    if isinstance(value, torch.Tensor):
        name = _torch_names().get(value.dtype)
        if name is None:
            raise ValueError(f"torch dtype {value.dtype} has no safetensors dtype")
        return name
    raise TypeError(f"cannot store a {type(value).__name__} as a tensor")


def serialize(tensors: Mapping[str, object], metadata: Optional[Mapping[str, str]] = None) -> bytes:
    """Encode tensors (name -> array) and string metadata as safetensors bytes."""
    if metadata is not None:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("safetensors metadata must map strings to strings")
    encoded = []
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"invalid tensor name {name!r}")
        encoded.append((name, _encode(value)))
    encoded.sort(key=lambda item: (-_RANK[item[1].dtype], item[0]))

    header = {}
    if metadata:
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    offset = 0
    for name, raw in encoded:
        header[name] = {"dtype": raw.dtype, "shape": list(raw.shape),
                        "data_offsets": [offset, offset + len(raw.data)]}
        offset += len(raw.data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    parts = [struct.pack("<Q", len(text)), text]
    parts.extend(raw.data for _, raw in encoded)
    return b"".join(parts)


def save_file(tensors: Mapping[str, object], path: str,
              metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write tensors and metadata to a safetensors file."""
    data = serialize(tensors, metadata)
    with open(path, "wb") as f:
        f.write(data)


def parse_header(data: bytes) -> Tuple[int, Dict[str, dict], Dict[str, str]]:
    """Validate the header like the reference reader; return (data start, entries, metadata)."""
    if len(data) < 8:
        raise ValueError("safetensors file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER:
        raise ValueError(f"safetensors header of {n} bytes is too large")
    if 8 + n > len(data):
        raise ValueError("safetensors header runs past the end of the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError("__metadata__ must map strings to strings")
    entries = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    start = 0
    for name, info in entries:
        dtype, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_BITS:
            raise ValueError(f"tensor {name!r} has unknown dtype {dtype!r}")
        if b != start or e < b:
            raise ValueError(f"tensor {name!r} has invalid data offsets")
        numel = 1
        for d in shape:
            if not isinstance(d, int) or d < 0:
                raise ValueError(f"tensor {name!r} has an invalid shape")
            numel *= d
        nbits = numel * DTYPE_BITS[dtype]
        if nbits % 8 or e - b != nbits // 8:
            raise ValueError(f"tensor {name!r}: offsets do not match dtype and shape")
        start = e
    if 8 + n + start != len(data):
        raise ValueError("safetensors data section does not end at the end of the file")
    return 8 + n, dict(entries), metadata


def deserialize(data: bytes, framework: str = "numpy") -> Tuple[Dict[str, object], Dict[str, str]]:
    """Decode safetensors bytes into (name -> tensor, metadata)."""
    base, entries, metadata = parse_header(data)
    out = {}
    for name, info in entries.items():
        b, e = info["data_offsets"]
        raw = RawTensor(info["dtype"], tuple(info["shape"]), data[base + b:base + e])
        out[name] = _decode(raw, framework)
    return out, metadata


def _decode(raw: RawTensor, framework: str):
    """Turn raw bytes into a numpy array or torch tensor."""
    if framework == "numpy":
        if raw.dtype == "BF16":
            bits = np.frombuffer(raw.data, dtype="<u2").astype(np.uint32) << 16
            return bits.view(np.float32).reshape(raw.shape)
        if raw.dtype in _NUMPY_OF:
            return np.frombuffer(raw.data, dtype=_NUMPY_OF[raw.dtype]).reshape(raw.shape).copy()
        return raw
    if framework in ("torch", "pt"):
        torch = _torch()
        if raw.dtype == "BF16":
            arr = np.frombuffer(raw.data, dtype="<i2").reshape(raw.shape).copy()
            return torch.from_numpy(arr).view(torch.bfloat16)
        if raw.dtype in _NUMPY_OF and raw.dtype not in ("U16", "U32", "U64"):
            arr = np.frombuffer(raw.data, dtype=_NUMPY_OF[raw.dtype]).reshape(raw.shape).copy()
            return torch.from_numpy(arr)
        return raw
    raise ValueError(f"unknown framework {framework!r}")


def load_file(path: str, framework: str = "numpy") -> Tuple[Dict[str, object], Dict[str, str]]:
    """Read a safetensors file into (name -> tensor, metadata)."""
    with open(path, "rb") as f:
        return deserialize(f.read(), framework)
