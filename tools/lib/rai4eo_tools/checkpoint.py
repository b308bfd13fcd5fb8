"""Read PyTorch checkpoints without running the code a pickle may name.

A .pth file is a pickle, and unpickling an untrusted pickle can call any
Python function.  load_torch() reads both torch.save formats itself (the
zip archive of torch >= 1.6 and the older pickle stream) onto the CPU, with
an unpickler that resolves only an allow-list of harmless globals: our own
tensor and parameter rebuild functions (over storages read from the file),
dtypes, OrderedDict, argparse.Namespace, numpy arrays and a few builtins.
Every other global (a training script's classes, os.system, ...) becomes an
inert Opaque stand-in that records its arguments and state and does nothing
else, so the weights still come out of checkpoints that also pickle
arguments, hyper-parameters or whole modules.  torch.load is not used: the
Debian build of torch 1.13 ignores its pickle_module argument unless
weights_only is set, and weights_only refuses DINO's argparse.Namespace.

Also here: recognising safetensors files, finding the state dicts inside a
loaded checkpoint (including the state of a pickled nn.Module), and finding
and stripping the key prefixes that DDP ("module."), DINO ("backbone.") or
Lightning ("model.") add; finding torchvision ResNets, including the
positional nn.Sequential(*children()[:-1]) encoders of BYOL code bases, and
telling a BYOL/momentum target network from the online one by its prefix.
"""

import argparse
import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from rai4eo_tools import safetensors_io


class CheckpointError(Exception):
    """A checkpoint that cannot be read or understood; the message says why."""


# ---- restricted unpickling ----------------------------------------------------------

class Opaque:
    """Stands in for an object of a type the restricted unpickler does not build.

    It accepts whatever pickle hands it (constructor arguments, state, list
    items, dict items) and keeps it for inspection; it runs no code.
    """

    _origin = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__["_r4_args"] = args
        obj.__dict__["_r4_state"] = None
        obj.__dict__["_r4_items"] = []
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.__dict__["_r4_state"] = state

    def __setitem__(self, key, value):
        self.__dict__["_r4_items"].append((key, value))

    def append(self, value):
        self.__dict__["_r4_items"].append((None, value))

    def extend(self, values):
        for v in values:
            self.append(v)

    def __repr__(self):
        return f"<opaque {self._origin}>"


_opaque_classes: Dict[str, type] = {}


def opaque_class(origin: str) -> type:
    """The stand-in class for a refused global, one per dotted name."""
    cls = _opaque_classes.get(origin)
    if cls is None:
        cls = type(origin.rsplit(".", 1)[-1], (Opaque,), {"_origin": origin})
        _opaque_classes[origin] = cls
    return cls


def opaque_origin(obj) -> Optional[str]:
    """The dotted name of the global an Opaque stands in for; None for other objects."""
    return type(obj)._origin if isinstance(obj, Opaque) else None


# Storage classes torch pickles (zip format: as a global; legacy: the same), by dtype name.
_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8",
}


class _StorageType:
    """What a pickled storage class resolves to: just its dtype."""

    def __init__(self, name, dtype):
        self.name = name
        self.dtype = dtype


def _storage_tensor(storage):
    """The flat tensor persistent_load made for a storage; refuse anything else."""
    import torch

    if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
        raise pickle.UnpicklingError("tensor data does not come from a storage of the file")
    return storage


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """torch._utils._rebuild_tensor(_v2) over our flat storage tensors (as_strided checks bounds)."""
    return _storage_tensor(storage).as_strided(tuple(size), tuple(stride), int(storage_offset))


def _rebuild_parameter(data, *unused):
    """A Parameter is just its tensor here."""
    return data


def _rebuild_from_type(func, new_type, args, *unused):
    """A tensor subclass is rebuilt as a plain tensor (its type and attributes are dropped)."""
    return func(*args)


def _allowed_globals() -> Dict[str, object]:
    """Globals whose construction cannot do anything but build data."""
    import numpy as np
    import torch

    allowed: Dict[str, object] = {
        "collections.OrderedDict": collections.OrderedDict,
        "argparse.Namespace": argparse.Namespace,
        "builtins.set": set, "builtins.frozenset": frozenset, "builtins.slice": slice,
        "builtins.complex": complex, "builtins.range": range, "builtins.bytearray": bytearray,
        "__builtin__.set": set, "__builtin__.frozenset": frozenset,
        "_codecs.encode": __import__("codecs").encode,
        "torch.Size": torch.Size,
        "torch.device": torch.device,
        "torch._utils._rebuild_tensor": _rebuild_tensor,
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
        "torch._tensor._rebuild_from_type": _rebuild_from_type,
        "torch._tensor._rebuild_from_type_v2": _rebuild_from_type,
        "numpy.ndarray": np.ndarray,
        "numpy.dtype": np.dtype,
    }
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), torch.dtype):
            allowed["torch." + name] = getattr(torch, name)
    for name, dtype in _STORAGE_DTYPES.items():
        for module in ("torch", "torch.cuda", "torch.storage"):
            allowed[f"{module}.{name}"] = _StorageType(name, getattr(torch, dtype))
    multiarray = np.core.multiarray
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[mod + "._reconstruct"] = multiarray._reconstruct
        allowed[mod + ".scalar"] = multiarray.scalar
    # numpy dtype classes (newer numpy pickles e.g. numpy.dtypes.Float32DType)
    for name in dir(getattr(np, "dtypes", object())):
        if name.endswith("DType"):
            allowed["numpy.dtypes." + name] = getattr(np.dtypes, name)
    return allowed


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds allowed globals and stands in Opaque for the rest.

    Tensors come out of the rebuild functions above, over the flat storage
    tensors a persistent_load hands in; without one, a pickle that refers to
    storages fails.
    """

    _allowed: Optional[Dict[str, object]] = None

    def find_class(self, module, name):
        if SafeUnpickler._allowed is None:
            SafeUnpickler._allowed = _allowed_globals()
        full = f"{module}.{name}"
        found = SafeUnpickler._allowed.get(full)
        if found is not None:
            return found
        return opaque_class(full)


def _text(v) -> str:
    return v.decode("ascii") if isinstance(v, bytes) else v


def _flat_from_bytes(data: bytes, dtype):
    """A 1-D tensor of dtype over a copy of little-endian bytes."""
    import torch

    size = torch.tensor([], dtype=dtype).element_size()
    if len(data) % size:
        raise CheckpointError(f"a storage of {len(data)} bytes does not hold whole {dtype} values")
    if not data:
        return torch.empty(0, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=dtype)


def _load_zip(path: str):
    """Read torch.save's zip format (torch >= 1.6): <dir>/data.pkl plus <dir>/data/<key>."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
        if any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names):
            raise CheckpointError(f"{path} is a TorchScript archive, not a checkpoint; "
                                  "save the model's state_dict() with torch.save instead")
        if len(pkl) != 1:
            raise CheckpointError(f"cannot read {path}: a zip file but not a torch.save checkpoint "
                                  "(no single <dir>/data.pkl)")
        base = pkl[0][:-len("data.pkl")]
        if base + "byteorder" in names and z.read(base + "byteorder").strip() != b"little":
            raise CheckpointError(f"cannot read {path}: saved on a big-endian machine, which is not supported")
        storages: Dict[str, Any] = {}

        def persistent_load(pid):
            if not isinstance(pid, tuple) or len(pid) < 5 or _text(pid[0]) != "storage":
                raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:60]}")
            stype, key = pid[1], _text(pid[2])
            if not isinstance(stype, _StorageType):
                raise pickle.UnpicklingError(f"unknown storage type {stype!r}")
            if key not in storages:
                try:
                    data = z.read(base + "data/" + str(key))
                except KeyError:
                    raise pickle.UnpicklingError(f"storage {key} is missing from the archive") from None
                storages[key] = _flat_from_bytes(data, stype.dtype)
            return storages[key]

        with z.open(pkl[0]) as f:
            unpickler = SafeUnpickler(io.BytesIO(f.read()), encoding="utf-8")
        unpickler.persistent_load = persistent_load
        return unpickler.load()


_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


def _load_legacy(path: str):
    """Read torch.save's pre-1.6 format: magic, version, sys_info, the object, storage keys, data."""
    import torch

    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        def load_plain():
            return SafeUnpickler(f, encoding="utf-8").load()

        if load_plain() != _LEGACY_MAGIC:
            raise CheckpointError(f"cannot read {path}: not a torch.save checkpoint or a safetensors file")
        if load_plain() != 1001:
            raise CheckpointError(f"cannot read {path}: unknown legacy torch.save protocol version")
        load_plain()  # sys_info
        roots_: Dict[str, Any] = {}
        views: Dict[str, Any] = {}

        def persistent_load(pid):
            if not isinstance(pid, tuple) or not pid:
                raise pickle.UnpicklingError("bad persistent id")
            kind = _text(pid[0])
            if kind == "module":
                return pid[1]
            if kind != "storage" or len(pid) != 6 or not isinstance(pid[1], _StorageType):
                raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:60]}")
            stype, key, _, numel, view = pid[1], _text(pid[2]), pid[3], int(pid[4]), pid[5]
            if key not in roots_:
                # the data follows the pickle, so no storage can be larger than the file
                itemsize = torch.tensor([], dtype=stype.dtype).element_size()
                if numel < 0 or numel * itemsize > file_size:
                    raise pickle.UnpicklingError(f"storage {key} has an impossible size {numel}")
                roots_[key] = torch.empty(numel, dtype=stype.dtype)
            if view is None:
                return roots_[key]
            vkey, offset, size = _text(view[0]), int(view[1]), int(view[2])
            if vkey not in views:
                if offset < 0 or size < 0 or offset + size > roots_[key].numel():
                    raise pickle.UnpicklingError(f"storage view {vkey} is out of bounds")
                views[vkey] = roots_[key][offset:offset + size]
            return views[vkey]

        unpickler = SafeUnpickler(f, encoding="utf-8")
        unpickler.persistent_load = persistent_load
        result = unpickler.load()
        keys = load_plain()
        if not isinstance(keys, list):
            raise CheckpointError(f"cannot read {path}: damaged storage key list")
        for key in keys:
            flat = roots_.get(_text(key))
            if flat is None:
                raise CheckpointError(f"cannot read {path}: storage {key} is not referenced")
            head = f.read(8)
            if len(head) != 8:
                raise CheckpointError(f"cannot read {path}: the file is truncated")
            (count,) = struct.unpack("<q", head)
            nbytes = count * flat.element_size()
            if count != flat.numel():
                raise CheckpointError(f"cannot read {path}: storage {key} holds {count} values, expected {flat.numel()}")
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise CheckpointError(f"cannot read {path}: the file is truncated")
            if nbytes:
                flat.copy_(_flat_from_bytes(data, flat.dtype))
        return result


def load_torch(path: str):
    """Load a torch.save file onto the CPU, running none of the code its pickle names.

    Both torch.save formats are read here, not by torch.load: zip (torch >=
    1.6) and the older pickle stream.  Tensors are plain CPU tensors (a
    Parameter or tensor subclass comes back as a plain tensor).
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic == b"PK\x03\x04":
            return _load_zip(path)
        return _load_legacy(path)
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError(f"out of memory reading {path}") from None
    except Exception as e:  # pickle, zipfile and torch raise many types for a damaged file
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint: {text}") from None


# ---- safetensors --------------------------------------------------------------------

def is_safetensors(path: str) -> bool:
    """Report whether the file starts like a safetensors file (header length, then '{')."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    if n > safetensors_io.MAX_HEADER or 8 + n > size:
        return False
    return head[8:].lstrip(b" \t\r\n")[:1] == b"{"


def load_safetensors(path: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Read a safetensors file into torch tensors (RawTensor for dtypes torch lacks)."""
    try:
        return safetensors_io.load_file(path, "torch")
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {path} as safetensors: {e}") from None


# ---- finding state dicts ------------------------------------------------------------

def is_tensor(v) -> bool:
    """Report whether v is a torch tensor or a RawTensor."""
    import torch
    return isinstance(v, (torch.Tensor, safetensors_io.RawTensor))


def module_state(obj, limit: int = 100000) -> Optional[Dict[str, Any]]:
    """The state dict of a pickled nn.Module that came back as Opaque; None if it is not one.

    A module pickles its __dict__: _parameters, _buffers (minus the names in
    _non_persistent_buffers_set) and _modules, recursively.
    """
    def state_of(o):
        st = o.__dict__.get("_r4_state") if isinstance(o, Opaque) else None
        if isinstance(st, tuple) and len(st) == 2 and isinstance(st[1], dict):
            st = st[1]  # (dict, slots) form
        if isinstance(st, dict) and "_parameters" in st and "_modules" in st:
            return st
        return None

    if state_of(obj) is None:
        return None
    out: Dict[str, Any] = {}

    def walk(o, prefix):
        st = state_of(o)
        if st is None or len(out) > limit:
            return
        for name, p in (st.get("_parameters") or {}).items():
            if p is not None:
                out[prefix + name] = p
        skip = st.get("_non_persistent_buffers_set") or set()
        for name, b in (st.get("_buffers") or {}).items():
            if b is not None and name not in skip:
                out[prefix + name] = b
        for name, m in (st.get("_modules") or {}).items():
            if m is not None:
                walk(m, prefix + name + ".")

    walk(obj, "")
    return out


def iter_state_dicts(obj, max_depth: int = 8) -> Iterator[Tuple[Tuple[str, ...], Mapping[str, Any]]]:
    """Yield (path, mapping) for every mapping in obj with tensor values under string keys.

    The path names the containers from the top (dict keys, list indexes,
    "<module>" for a pickled nn.Module).  Cycles and deep nesting are cut off.
    """
    seen = set()

    def walk(o, path):
        if id(o) in seen or len(path) > max_depth:
            return
        seen.add(id(o))
        if isinstance(o, Opaque):
            st = module_state(o)
            if st is not None:
                yield path + ("<module>",), st
            return
        if isinstance(o, argparse.Namespace):
            return
        if isinstance(o, Mapping):
            if any(isinstance(k, str) and is_tensor(v) for k, v in o.items()):
                yield path, o
            for k, v in o.items():
                if isinstance(v, (Mapping, list, tuple, Opaque)):
                    yield from walk(v, path + (str(k),))
        elif isinstance(o, (list, tuple)):
            for i, v in enumerate(o):
                if isinstance(v, (Mapping, list, tuple, Opaque)):
                    yield from walk(v, path + (str(i),))

    yield from walk(obj, ())


def lookup(obj, path: Tuple[str, ...]):
    """Follow a path of container keys (as iter_state_dicts names them); KeyError if absent."""
    for part in path:
        if isinstance(obj, Mapping):
            if part in obj:
                obj = obj[part]
                continue
            matches = [k for k in obj if str(k) == part]
            if len(matches) != 1:
                raise KeyError(part)
            obj = obj[matches[0]]
        elif isinstance(obj, (list, tuple)) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        elif isinstance(obj, Opaque) and part == "<module>" and module_state(obj) is not None:
            obj = module_state(obj)
        else:
            raise KeyError(part)
    return obj


def roots(state: Mapping[str, Any], anchor: str) -> List[str]:
    """The prefixes p ("" or ending in ".") for which p + anchor is a tensor key in state."""
    found = []
    for k, v in state.items():
        if not isinstance(k, str) or not is_tensor(v) or not k.endswith(anchor):
            continue
        p = k[:len(k) - len(anchor)]
        if p == "" or p.endswith("."):
            found.append(p)
    return sorted(found)


def strip_prefix(state: Mapping[str, Any], prefix: str,
                 other_roots: List[str] = ()) -> Tuple[Dict[str, Any], List[str]]:
    """Split state into (entries under prefix with it removed, keys left out).

    Keys under another root nested inside prefix (a second model inside the
    first) are left out too.
    """
    nested = [q for q in other_roots if q != prefix and q.startswith(prefix)]
    kept: Dict[str, Any] = {}
    outside: List[str] = []
    for k, v in state.items():
        if isinstance(k, str) and k.startswith(prefix) and not any(k.startswith(q) for q in nested):
            kept[k[len(prefix):]] = v
        else:
            outside.append(str(k))
    return kept, outside


# torchvision ResNet anchors: the stem and the first block, under one prefix.
RESNET_STEM = "conv1.weight"
RESNET_ANCHOR = "layer1.0.conv1.weight"
# nn.Sequential(*list(resnet.children())[:-1]) numbers the children: conv1, bn1,
# relu, maxpool, layer1..layer4, avgpool (sthalles/PyTorch-BYOL, yaox12/BYOL-PyTorch).
POSITIONAL_RESNET = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3",
                     "7": "layer4"}


def resnet_roots(state: Mapping[str, Any]) -> List[Tuple[str, bool]]:
    """The prefixes of the ResNets in state, each with True when it is a positional encoder.

    A torchvision-named ResNet has p + "conv1.weight" (timm's deep-stem
    variants p + "conv1.0.weight") and p + "layer1.0.conv1.weight"; a
    positional one p + "0.weight" (a 4-D conv) and p + "4.0.conv1.weight".
    """
    found = []
    for p in roots(state, RESNET_ANCHOR):
        if is_tensor(state.get(p + RESNET_STEM)) or is_tensor(state.get(p + "conv1.0.weight")):
            found.append((p, False))
    for p in roots(state, "4.0.conv1.weight"):
        stem = state.get(p + "0.weight")
        if is_tensor(stem) and len(stem.shape) == 4:
            found.append((p, True))
    return sorted(found)


def rename_positional(state: Mapping[str, Any]) -> Dict[str, Any]:
    """Map a positional encoder's keys (0., 1., 4.-7.) to torchvision names; others stay."""
    out: Dict[str, Any] = {}
    for k, v in state.items():
        head, dot, rest = k.partition(".")
        out[POSITIONAL_RESNET[head] + dot + rest if dot and head in POSITIONAL_RESNET else k] = v
    return out


def is_target_network(path: Tuple[str, ...], prefix: str) -> bool:
    """Whether a network's container path or key prefix marks it as a BYOL target / momentum / EMA copy.

    Examples: target_network.encoder., target_encoder.net., model.target.model.,
    momentum_backbone., a 'target_network_state_dict' container.
    """
    parts = [str(p).lower() for p in path] + [p.lower() for p in prefix.split(".") if p]
    return any("target" in p or "momentum" in p or p in ("ema", "model_ema", "ema_model") for p in parts)


def same_state(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two state dicts hold the same names and equal tensors (shared copies of one network)."""
    import torch

    ta = {k: v for k, v in a.items() if is_tensor(v)}
    tb = {k: v for k, v in b.items() if is_tensor(v)}
    if ta.keys() != tb.keys():
        return False
    for k, x in ta.items():
        y = tb[k]
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x, y):
                return False
        elif x != y:
            return False
    return True


def describe_path(path: Tuple[str, ...]) -> str:
    """A container path as the --key option spells it ("teacher", "state_dict", "<top level>")."""
    return "/".join(path) if path else "<top level>"


def group_names(names, width: int = 6) -> str:
    """Summarise tensor names by pattern: blocks.N. numbers become '*', counts in parentheses."""
    import re

    counts: Dict[str, int] = collections.OrderedDict()
    for n in names:
        pat = re.sub(r"(?<=\.)\d+(?=\.)|^\d+(?=\.)", "*", n)
        counts[pat] = counts.get(pat, 0) + 1
    parts = [p if c == 1 else f"{p} ({c})" for p, c in counts.items()]
    if len(parts) > width:
        parts = parts[:width] + [f"... {len(parts) - width} more"]
    return ", ".join(parts)


__all__ = [
    "CheckpointError", "Opaque", "opaque_origin", "SafeUnpickler", "load_torch",
    "is_safetensors", "load_safetensors", "is_tensor", "module_state", "iter_state_dicts", "lookup",
    "roots", "strip_prefix", "describe_path", "group_names", "RESNET_STEM", "RESNET_ANCHOR",
    "POSITIONAL_RESNET", "resnet_roots", "rename_positional", "is_target_network", "same_state",
]
