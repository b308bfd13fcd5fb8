#!/usr/bin/python3
"""Convert a DINO / timm / TorchGeo ViT or a torchvision / BYOL / DINO ResNet checkpoint
into a safetensors file rai4eo loads.

Inputs (recognised by content, not by file name):
  - a DINO training checkpoint (torch.save of a dict with 'teacher' and 'student',
    plus 'optimizer', 'epoch', 'args', ...): the --which network's backbone is taken
    (default teacher, the network DINO evaluates); the projection head is dropped;
  - a DINO backbone file or any ViT state dict, plain or with DDP/DINO/Lightning
    prefixes ("module.", "backbone.", "model.") and wrapped in {'state_dict': ...},
    {'model': ...} or similar;
  - a timm or TorchGeo ViT state dict (classifier heads are dropped);
  - a whole pickled nn.Module (its parameters and persistent buffers);
  - a safetensors file (re-written with new metadata; its old metadata is kept
    unless an option replaces a key);
  - a torchvision / timm ResNet state dict (fc.* dropped), a DINO ResNet-50
    training checkpoint (teacher / student as above), or a BYOL checkpoint:
    the online encoder is taken, the target (momentum) encoder, projector and
    predictor are dropped (--which target takes the target encoder instead).
    Layouts: lucidrains/byol-pytorch ('net.', 'online_encoder.net.' — the same
    tensors twice — and 'target_encoder.net.'), yaox12/BYOL-PyTorch and
    sthalles/PyTorch-BYOL (positional nn.Sequential encoders 'encoder.0' = conv1,
    'encoder.1' = bn1, 'encoder.4'..'encoder.7' = layer1..layer4, mapped to
    torchvision names), solo-learn ('backbone.' / 'momentum_backbone.'),
    TorchGeo BYOLTask ('model.backbone.model.' / 'model.target.model.').

Checkpoints are unpickled with an allow-list: no code named by the pickle is run
(see tools/lib/rai4eo_tools/checkpoint.py).  A ViT is found by its
"patch_embed.proj.weight" tensor, a ResNet by "conv1.weight" with
"layer1.0.conv1.weight" (or a positional encoder); the prefix in front of it is
stripped and everything outside it (DINO heads, BYOL projectors and predictors,
the other network, optimizer state) is dropped.  Tensors of variants the engine
does not implement (ViT: LayerScale, q/k norm, register tokens, norm_pre,
fc_norm; ResNet: deep stems, SE modules, average-pool downsampling, conv biases)
are kept with a warning: rai4eo then reports the model as unsupported, naming
the tensor.

The options write the safetensors "__metadata__" that rai4eo reads at load time
(include/rai4eo/model_config.h): string values, numbers and lists as JSON text.

Exit status: 0 written, 2 usage error or an input that cannot be converted.
"""

import argparse
import json
import math
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "lib"))

from rai4eo_tools import checkpoint as ck                    # noqa: E402
from rai4eo_tools import safetensors_io                      # noqa: E402

PROG = "convert_checkpoint"
EXIT_OK, EXIT_ERROR = 0, 2

ANCHOR = "patch_embed.proj.weight"
RESNET_ANCHOR = ck.RESNET_ANCHOR
BN_ENTRIES = ("weight", "bias", "running_mean", "running_var")
# Torchvision's standard layouts, for naming what was found.
RESNET_NAMES = {(False, (2, 2, 2, 2)): "ResNet-18", (False, (3, 4, 6, 3)): "ResNet-34",
                (True, (3, 4, 6, 3)): "ResNet-50", (True, (3, 4, 23, 3)): "ResNet-101",
                (True, (3, 8, 36, 3)): "ResNet-152"}
# ResNet tensors inside the stem or a block that the engine understands (model_config.c).
RESNET_BLOCK_OK = re.compile(r"^(conv[12]\.weight|conv3\.weight|bn[123]\.(weight|bias|running_mean|"
                             r"running_var|num_batches_tracked)|downsample\.0\.weight|downsample\.1\."
                             r"(weight|bias|running_mean|running_var|num_batches_tracked))$")
RESNET_BLOCK_RE = re.compile(r"^layer([1-4])\.(0|[1-9]\d*)\.(.*)$")
FC_RE = re.compile(r"^fc\.")
# Options that only mean something for one architecture.
VIT_ONLY_OPTIONS = (("n_last_blocks", "--n-last-blocks"), ("avgpool", "--avgpool"),
                    ("num_heads", "--num-heads"), ("ln_eps", "--ln-eps"))
GLOBAL_TENSORS = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                  "norm.weight", "norm.bias"]
BLOCK_TENSORS = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                 "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
                 "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
# Tensors of timm ViT variants the engine does not implement (model_config.c check_variant).
VARIANT_RE = re.compile(r"^(reg_token|dist_token|norm_pre\..*|fc_norm\..*|"
                        r"blocks\.\d+\.(ls1|ls2|attn\.q_norm|attn\.k_norm)\..*)$")
# Classifier heads: DINO's projection head (head.mlp.*, head.last_layer.*) and timm's
# classification heads (head.weight/bias, head_dist.*).
HEAD_RE = re.compile(r"^(head|head_dist)\.")
# What rai4eo runs as a classification head (include/rai4eo/head.h): a linear layer or an
# nn.Sequential of linear layers under head.* (or a ResNet's fc.*); never DINO's projection head.
CLASSIFIER_RE = re.compile(r"^(head|fc)\.(\d+\.)?(weight|bias)$")
DTYPE_NAMES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}
FLOAT_NAMES = ("F64", "F32", "F16", "BF16")


class Fail(Exception):
    """Stop with this message and exit status 2."""


# ---- option parsing -------------------------------------------------------------------

def _number(text: str, what: str) -> float:
    """Parse one finite number."""
    try:
        v = float(text)
    except ValueError:
        raise Fail(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise Fail(f"{what}: {text!r} is not a finite number")
    return v


def _numbers(text: str, what: str):
    """Parse "a,b,c", "[a, b, c]" or one number into a list of floats."""
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    parts = [p.strip() for p in body.split(",")]
    if not parts or any(p == "" for p in parts):
        raise Fail(f"{what}: {text!r} is not a comma-separated list of numbers")
    return [_number(p, what) for p in parts]


def _json_number(v: float) -> str:
    """A number as compact JSON text: integers without a fraction."""
    if v.is_integer() and abs(v) < 2 ** 53:
        return str(int(v))
    return repr(v)


def _json_numbers(values) -> str:
    """One number, or a JSON list of numbers."""
    if len(values) == 1:
        return _json_number(values[0])
    return "[" + ",".join(_json_number(v) for v in values) + "]"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="convert_checkpoint.py",
        description="Convert a DINO training checkpoint, a DINO backbone file, a timm / TorchGeo\n"
                    "ViT state dict, a torchvision / BYOL / DINO ResNet checkpoint or a safetensors\n"
                    "file into a safetensors file that rai4eo loads, with the model's\n"
                    "preprocessing and feature recipe in its metadata.\n"
                    "Pickled checkpoints are read without running any code they name.",
        epilog="Examples:\n"
               "  convert_checkpoint.py checkpoint0100.pth vits16.safetensors \\\n"
               "      --bands 3,2,1,4 --scale 0.0001 --mean 0.05,0.07,0.09,0.25 "
               "--std 0.03,0.035,0.05,0.1\n"
               "  convert_checkpoint.py dino_deitsmall16_pretrain.pth dino.safetensors "
               "--n-last-blocks 4\n"
               "  convert_checkpoint.py ssl4eo_vits16.pth s2.safetensors --bands 1,2,3,4,5,6,7,8,9,10,11,12,13 "
               "--scale 0.0001 --input resize --img-size 224\n"
               "  convert_checkpoint.py old.safetensors new.safetensors --dtype f16 --name vits16-f16\n"
               "  convert_checkpoint.py byol_epoch100.pth byol-rn50.safetensors --bands 3,2,1,4 "
               "--scale 0.0001\n"
               "Exit status: 0 written, 2 usage error or an input that cannot be converted.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="INPUT", help="checkpoint (.pth/.pt/.ckpt, any torch.save file) or .safetensors")
    p.add_argument("dest", metavar="OUTPUT", help="safetensors file to write")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    p.add_argument("--dry-run", action="store_true", help="convert and report, write nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="print warnings and errors only")

    g = p.add_argument_group("choosing the weights")
    g.add_argument("--which", choices=["teacher", "student", "online", "target"],
                   help="network of a DINO training checkpoint (teacher, the default, or student) "
                        "or of a BYOL-style checkpoint (online, the default for ResNets, or the "
                        "target / momentum copy)")
    g.add_argument("--key", metavar="PATH",
                   help="container holding the state dict when several do, as reported "
                        "(e.g. state_dict, model, teacher; nested: a/b)")
    g.add_argument("--prefix", metavar="PREFIX",
                   help="key prefix to strip when a state dict holds several models "
                        "(e.g. 'model.backbone.model.')")
    g.add_argument("--keep-head", action="store_true",
                   help="keep a classification head (head.weight/bias, head.N.* of an "
                        "nn.Sequential, or a ResNet's fc.*) so rai4eo_classify can run it; "
                        "DINO projection heads are always dropped")
    g.add_argument("--dtype", choices=["keep", "f32", "f16", "bf16"], default="keep",
                   help="store floating tensors as F32, F16 or BF16 (default keep: F32, F16 "
                        "and BF16 as they are, F64 as F32)")

    m = p.add_argument_group("metadata (rai4eo model configuration, see model_config.h)")
    m.add_argument("--arch", choices=["vit", "resnet"],
                   help="architecture (default: what the checkpoint holds; given, it also picks "
                        "that kind of model from a checkpoint holding both)")
    m.add_argument("--name", help='model name, stored as metadata "name"')
    m.add_argument("--bands", metavar="B1,B2,...",
                   help="1-based raster band numbers in model channel order, one per input channel")
    m.add_argument("--scale", metavar="X", help="raw values are multiplied by X first (e.g. 0.0001)")
    m.add_argument("--mean", metavar="M[,M...]", help="per-channel mean (after scale), or one for all")
    m.add_argument("--std", metavar="S[,S...]", help="per-channel std (> 0), or one for all")
    m.add_argument("--input", dest="input_mode", choices=["native", "resize"],
                   help="native: the patch at its own size with DINO's position-embedding "
                        "interpolation (rai4eo's default); resize: bilinear to img-size")
    m.add_argument("--img-size", type=int, metavar="N", help="resize target (default: the training grid)")
    m.add_argument("--n-last-blocks", type=int, metavar="N",
                   help="feature = CLS tokens of the last N blocks (DINO eval_linear; default 1)")
    m.add_argument("--avgpool", action=argparse.BooleanOptionalAction, default=None,
                   help="also the mean of the last block's patch tokens (default no)")
    m.add_argument("--num-heads", type=int, metavar="N", help="attention heads (default embed_dim / 64)")
    m.add_argument("--ln-eps", metavar="X", help="ViT LayerNorm epsilon (default 1e-6)")
    m.add_argument("--bn-eps", metavar="X", help="ResNet BatchNorm epsilon (default 1e-5)")
    m.add_argument("--change-threshold", metavar="X",
                   help="calibrated cosine-distance change threshold in [0, 2]")
    m.add_argument("--classes", metavar="NAME[,NAME...]",
                   help="class names of the kept head, in output order (stored as a JSON list)")
    m.add_argument("--multilabel", action="store_true",
                   help="the head is multi-label (sigmoid per class) rather than softmax")
    m.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="any other metadata entry, stored as given (repeatable)")
    return p


# ---- finding the ViT ------------------------------------------------------------------

def load_input(path):
    """Load the input; return (object, metadata, description of the format)."""
    if not os.path.exists(path):
        raise Fail(f"cannot read {path}: no such file")
    if os.path.isdir(path):
        raise Fail(f"cannot read {path}: it is a directory")
    if not os.access(path, os.R_OK):
        raise Fail(f"cannot read {path}: permission denied")
    try:
        if ck.is_safetensors(path):
            tensors, meta = ck.load_safetensors(path)
            return tensors, dict(meta), "safetensors file"
        return ck.load_torch(path), {}, "PyTorch checkpoint"
    except ck.CheckpointError as e:
        raise Fail(str(e)) from None


def is_dino_training(obj) -> bool:
    """A DINO main_dino.py checkpoint: a dict with both networks."""
    return isinstance(obj, dict) and "teacher" in obj and "student" in obj


def find_models(state):
    """(prefix, arch, positional) of every model in one state dict."""
    found = [(r, "vit", False) for r in ck.roots(state, ANCHOR)]
    found += [(r, "resnet", pos) for r, pos in ck.resnet_roots(state)]
    return found


def model_noun(candidates) -> str:
    """'ViTs', 'ResNets' or 'models' for a list of candidates."""
    archs = {c[2] for c in candidates}
    return {"vit": "ViTs", "resnet": "ResNets"}.get(archs.pop(), "models") if len(archs) == 1 else "models"


def choose_weights(obj, args):
    """Find the model's state dict and prefix.

    Returns (state, prefix, path, outside keys, kind, arch).
    """
    kind = None
    notes = []
    path_filter = None
    which = args.which
    if args.key is not None:
        path_filter = tuple(part for part in args.key.split("/") if part != "")
        try:
            ck.lookup(obj, path_filter)
        except (KeyError, TypeError):
            raise Fail(f"--key {args.key}: the checkpoint has no such container "
                       f"(top-level keys: {top_keys(obj)})") from None
    elif is_dino_training(obj):
        if which in ("online", "target"):
            raise Fail(f"--which {which} applies to BYOL-style checkpoints; a DINO training "
                       "checkpoint has a teacher and a student")
        which = which or "teacher"
        path_filter = (which,)
        kind = f"DINO training checkpoint, {which}"
    elif which in ("teacher", "student"):
        raise Fail("--which applies to DINO training checkpoints (a dict with 'teacher' and "
                   f"'student'); this one has {top_keys(obj)}")

    candidates = []
    all_roots = {}
    for path, state in ck.iter_state_dicts(obj):
        if path_filter is not None and path[:len(path_filter)] != path_filter:
            continue
        found = find_models(state)
        all_roots[path] = (state, [f[0] for f in found])
        candidates += [(path,) + f for f in found]
    if args.arch is not None:
        candidates = [c for c in candidates if c[2] == args.arch]
    if args.prefix is not None:
        want = args.prefix if args.prefix == "" or args.prefix.endswith(".") else args.prefix + "."
        found = [c for c in candidates if c[1] == want]
        if not found:
            known = ", ".join(f"{ck.describe_path(c[0])}: {c[1]!r}" for c in candidates) or "none"
            raise Fail(f"--prefix {args.prefix!r}: no tensor {want + ANCHOR!r} or "
                       f"{want + RESNET_ANCHOR!r} (model prefixes found: {known})")
        candidates = found
    if not candidates:
        where = f" under {args.key or path_filter[0]}" if path_filter else ""
        nstates = len(all_roots)
        what = {"vit": "no ViT weights found", "resnet": "no ResNet weights found"}.get(
            args.arch, "no ViT weights found and no ResNet weights")
        raise Fail(f"{what}{where}: no tensor named '{ANCHOR}' nor '{ck.RESNET_STEM}' with "
                   f"'{RESNET_ANCHOR}' (with or without a prefix, or as a positional encoder) in "
                   f"{nstates} state dict{'s' if nstates != 1 else ''} of the checkpoint "
                   f"(top-level keys: {top_keys(obj)}); only DINO/timm ViT and torchvision/timm "
                   "ResNet checkpoints are converted")

    # BYOL-style checkpoints: the online network unless the target one is asked for.
    if which in ("online", "target"):
        chosen = [c for c in candidates if ck.is_target_network(c[0], c[1]) == (which == "target")]
        if not chosen:
            listing = ", ".join(f"{ck.describe_path(c[0])}: {c[1]!r}" for c in candidates)
            raise Fail(f"--which {which}: the checkpoint has no {which} network ({listing}; a "
                       "target network's container or prefix names 'target', 'momentum' or 'ema')")
        dropped = [c for c in candidates if c not in chosen]
        candidates = chosen
        notes.append(f"{which} network")
    elif len(candidates) > 1 and all(c[2] == "resnet" for c in candidates):
        online = [c for c in candidates if not ck.is_target_network(c[0], c[1])]
        dropped = [c for c in candidates if c not in online]
        if online and dropped:
            candidates = online
            notes.append("online network")
    else:
        dropped = []
    if dropped:
        notes.append("dropped " + ", ".join(repr(c[1]) if not c[0] else
                                             f"{ck.describe_path(c[0])}:{c[1]!r}" for c in dropped))

    # A BYOL learner holds its online encoder twice (net. and online_encoder.net.).
    if len(candidates) > 1:
        def stripped(c):
            state, rs = all_roots[c[0]]
            kept = ck.strip_prefix(state, c[1], rs)[0]
            return ck.rename_positional(kept) if c[3] else kept

        candidates.sort(key=lambda c: (len(c[1]), len(c[0]), c[1]))
        first = stripped(candidates[0])
        copies = [c for c in candidates[1:] if c[2] == candidates[0][2] and ck.same_state(first, stripped(c))]
        if len(copies) == len(candidates) - 1:
            notes.append("identical copies ignored: " + ", ".join(repr(c[1]) for c in copies))
            candidates = candidates[:1]

    paths = sorted({c[0] for c in candidates})
    if len(candidates) > 1:
        listing = "; ".join(f"container {ck.describe_path(c[0])!r} prefix {c[1]!r}" for c in candidates)
        hint = "--key" if len(paths) > 1 else "--prefix"
        if any(ck.is_target_network(c[0], c[1]) for c in candidates):
            hint += " (or --which online / target)"
        raise Fail(f"the checkpoint holds {len(candidates)} {model_noun(candidates)} ({listing}); "
                   f"choose one with {hint}")
    path, prefix, arch, positional = candidates[0]
    state, rs = all_roots[path]
    kept, outside = ck.strip_prefix(state, prefix, rs)
    if positional:
        kept = ck.rename_positional(kept)
        notes.append("positional encoder keys mapped to torchvision names")
    if kind is None:
        if path and path[-1] == "<module>":
            kind = "pickled nn.Module"
        else:
            kind = "state dict" if not path else f"state dict under {ck.describe_path(path)!r}"
    if notes:
        kind += ", " + ", ".join(notes)
    return kept, prefix, path, outside, kind, arch


def top_keys(obj) -> str:
    """The top-level keys of a checkpoint, for error messages."""
    if isinstance(obj, dict):
        keys = [str(k) for k in obj][:8]
        more = f", ... {len(obj) - 8} more" if len(obj) > 8 else ""
        return "[" + ", ".join(repr(k) for k in keys) + more + "]"
    origin = ck.opaque_origin(obj)
    return f"a pickled {origin}" if origin else f"a {type(obj).__name__}"


def dtype_name(t) -> str:
    """The safetensors dtype string of a tensor value (torch's name when it has none)."""
    try:
        return safetensors_io.dtype_of(t)
    except ValueError:
        return str(t.dtype)


def classify(state, arch="vit", keep_head=False):
    """Split the backbone's entries into kept tensors and dropped names by reason."""
    kept = {}
    dropped = {"head": [], "buffers": [], "not tensors": [], "no dtype": []}
    head_re = FC_RE if arch == "resnet" else HEAD_RE
    anchor = ck.RESNET_STEM if arch == "resnet" else ANCHOR
    for name, value in state.items():
        if keep_head and CLASSIFIER_RE.match(name) and ck.is_tensor(value):
            kept[name] = value
        elif head_re.match(name):
            dropped["head"].append(name)
        elif not ck.is_tensor(value):
            dropped["not tensors"].append(name)
        elif name.endswith("num_batches_tracked"):
            dropped["buffers"].append(name)
        elif name != anchor and dtype_name(value) not in safetensors_io.DTYPE_BITS:
            dropped["no dtype"].append(name)
        else:
            kept[name] = value
    return kept, dropped


def depth_of(names) -> int:
    """Number of blocks: one more than the largest N in 'blocks.N.'."""
    idx = [int(m.group(1)) for m in (re.match(r"^blocks\.(\d+)\.", n) for n in names) if m]
    return 1 + max(idx) if idx else 0


def describe_vit(kept):
    """Dimensions from the shapes; also the missing, variant and unused tensor names."""
    w = kept[ANCHOR]
    shape = tuple(w.shape)
    if len(shape) != 4 or shape[2] != shape[3]:
        raise Fail(f"tensor '{ANCHOR}' has shape {list(shape)}, expected [embed_dim, in_chans, "
                   "patch, patch]")
    if dtype_name(w) not in FLOAT_NAMES:
        raise Fail(f"tensor '{ANCHOR}' has dtype {dtype_name(w)}; ViT weights are floating point")
    D, C, P = shape[0], shape[1], shape[2]
    depth = depth_of(kept)
    required = list(GLOBAL_TENSORS) + [f"blocks.{b}.{t}" for b in range(depth) for t in BLOCK_TENSORS]
    missing = [n for n in required if n not in kept]
    variant = [n for n in kept if VARIANT_RE.match(n)]
    known = set(required) | set(variant)
    unused = [n for n in kept if n not in known]
    info = {"embed_dim": D, "in_chans": C, "patch_size": P, "depth": depth}
    fc1 = kept.get("blocks.0.mlp.fc1.weight")
    info["mlp_hidden"] = tuple(fc1.shape)[0] if fc1 is not None and len(fc1.shape) == 2 else None
    pos = kept.get("pos_embed")
    grid = None
    if pos is not None and len(pos.shape) == 3:
        g = int(round(math.sqrt(pos.shape[1] - 1))) if pos.shape[1] > 1 else 0
        grid = g if g * g == pos.shape[1] - 1 else None
    info["pos_grid"] = grid
    info["params"] = sum(_numel(kept[n]) for n in required if n in kept)
    return info, missing, variant, unused


def _shape(kept, name):
    """A tensor's shape as a tuple, or None when it is absent."""
    t = kept.get(name)
    return tuple(int(d) for d in t.shape) if t is not None else None


def describe_resnet(kept):
    """Layout from the shapes; also the missing, variant and unused tensor names.

    Mirrors the engine's rules (src/core/model_config.c): blocks per stage
    from the highest layerS.N, Bottleneck when any block has conv3, widths
    from each stage's first block, a downsample wherever the stride or the
    width changes.
    """
    stem = _shape(kept, ck.RESNET_STEM)
    if stem is None and "conv1.0.weight" in kept:
        raise Fail("the ResNet has a deep stem (conv1.0.weight, conv1.1.*, ...: timm's resnet*d "
                   "variants), which rai4eo does not implement; it runs torchvision's 7x7 stem")
    if stem is None or len(stem) != 4:
        raise Fail(f"tensor '{ck.RESNET_STEM}' has shape {list(stem or ())}, expected "
                   "[width, in_chans, 7, 7]")
    if dtype_name(kept[ck.RESNET_STEM]) not in FLOAT_NAMES:
        raise Fail(f"tensor '{ck.RESNET_STEM}' has dtype {dtype_name(kept[ck.RESNET_STEM])}; "
                   "ResNet weights are floating point")
    width, C = stem[0], stem[1]
    layers = [0, 0, 0, 0]
    bottleneck = False
    variant = []
    for name in kept:
        m = RESNET_BLOCK_RE.match(name)
        if m:
            s = int(m.group(1)) - 1
            layers[s] = max(layers[s], int(m.group(2)) + 1)
            bottleneck = bottleneck or m.group(3) == "conv3.weight"
    for name in kept:
        m = RESNET_BLOCK_RE.match(name)
        if m:
            rest = m.group(3)
            ok = bool(RESNET_BLOCK_OK.match(rest)) and (bottleneck or not rest.startswith(("conv3.", "bn3.")))
        elif name.startswith("conv1."):
            ok = name == "conv1.weight"
        elif name.startswith("bn1."):
            ok = name[4:] in BN_ENTRIES + ("num_batches_tracked",)
        else:
            continue
        if not ok:
            variant.append(name)
    if stem[2:] != (7, 7):
        variant.append(ck.RESNET_STEM)

    def bn(prefix):
        return [f"{prefix}.{e}" for e in BN_ENTRIES]

    required = [ck.RESNET_STEM] + bn("bn1")
    outw = []
    for s in range(4):
        P = (_shape(kept, f"layer{s + 1}.0.conv1.weight") or (None,))[0]
        O = (_shape(kept, f"layer{s + 1}.0.conv3.weight") or (None,))[0] if bottleneck else P
        outw.append(O)
    bin_ = width
    for s in range(4):
        for b in range(max(layers[s], 1)):
            p = f"layer{s + 1}.{b}."
            for j in range(1, 4 if bottleneck else 3):
                required += [f"{p}conv{j}.weight"] + bn(f"{p}bn{j}")
            block_in = bin_ if b == 0 else outw[s]
            if (p + "downsample.0.weight" in kept or (b == 0 and s > 0)
                    or (outw[s] is not None and block_in != outw[s])):
                required += [p + "downsample.0.weight"] + bn(p + "downsample.1")
        bin_ = outw[s]
    missing = [n for n in required if n not in kept]
    known = set(required) | set(variant)
    unused = [n for n in kept if n not in known and not n.endswith("num_batches_tracked")]
    name = RESNET_NAMES.get((bottleneck, tuple(layers)))
    info = {"in_chans": C, "width": width, "layers": layers, "bottleneck": bottleneck,
            "out_dim": outw[3], "name": name,
            "params": sum(_numel(kept[n]) for n in required
                          if n in kept and not n.endswith(("running_mean", "running_var")))}
    return info, missing, variant, unused


def _numel(t) -> int:
    n = 1
    for d in t.shape:
        n *= int(d)
    return n


# ---- dtypes ---------------------------------------------------------------------------

def convert_dtypes(kept, target):
    """Cast floating tensors to the target dtype (keep: F64 to F32 only)."""
    import torch

    torch_of = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    out = {}
    for name, t in kept.items():
        src = dtype_name(t)
        if isinstance(t, safetensors_io.RawTensor) or src not in FLOAT_NAMES:
            out[name] = t
            continue
        if target == "keep":
            want = "F32" if src == "F64" else src
        else:
            want = DTYPE_NAMES[target]
        if want == src:
            out[name] = t
            continue
        c = t.to(torch_of[want])
        if not bool(torch.isfinite(c).all()) and bool(torch.isfinite(t).all()):
            big = float(t.abs().max())
            raise Fail(f"tensor '{name}' does not fit {want}: its largest magnitude is {big:g}; "
                       "use --dtype f32 or bf16")
        out[name] = c
    return out


# ---- metadata -------------------------------------------------------------------------

def build_metadata(args, info, old, arch="vit"):
    """The __metadata__ map: the input's, then the options, checked against the shapes."""
    meta = dict(old)
    C = info["in_chans"]
    if arch == "resnet":
        D, depth, P = info["out_dim"], sum(info["layers"]), 32
        for key, opt in VIT_ONLY_OPTIONS:
            if getattr(args, key) is not None:
                raise Fail(f"{opt} applies to ViT models only; this checkpoint holds a ResNet")
        # old ViT-only keys would make rai4eo refuse the file
        for key, _ in VIT_ONLY_OPTIONS:
            meta.pop(key, None)
    else:
        D, depth, P = info["embed_dim"], info["depth"], info["patch_size"]
        if args.bn_eps is not None:
            raise Fail("--bn-eps applies to ResNet models only; this checkpoint holds a ViT")
        meta.pop("bn_eps", None)
    meta["arch"] = arch
    if args.name is not None:
        meta["name"] = args.name
    if args.bands is not None:
        vals = _numbers(args.bands, "--bands")
        if any(not v.is_integer() or v < 1 or v > 65535 for v in vals):
            raise Fail(f"--bands {args.bands}: band numbers are integers from 1")
        if len(vals) != C:
            raise Fail(f"--bands lists {len(vals)} bands but the model has {C} input channels")
        meta["bands"] = "[" + ",".join(str(int(v)) for v in vals) + "]"
    if args.scale is not None:
        v = _number(args.scale, "--scale")
        if v == 0:
            raise Fail("--scale must not be zero")
        meta["scale"] = _json_number(v)
    for opt, key, positive in (("--mean", "mean", False), ("--std", "std", True)):
        text = getattr(args, key)
        if text is None:
            continue
        vals = _numbers(text, opt)
        if len(vals) not in (1, C):
            raise Fail(f"{opt} has {len(vals)} values but the model has {C} input channels "
                       "(give one per channel or one for all)")
        if positive and any(v <= 0 for v in vals):
            raise Fail(f"{opt} values must be greater than zero")
        meta[key] = _json_numbers(vals)
    if args.input_mode is not None:
        meta["input"] = args.input_mode
    if args.img_size is not None:
        if not P <= args.img_size <= 65535:
            what = f"the patch is {P} px" if arch == "vit" else f"a ResNet needs at least {P} px"
            raise Fail(f"--img-size {args.img_size} is outside {P}..65535 ({what})")
        meta["img_size"] = str(args.img_size)
    if args.n_last_blocks is not None:
        if not 1 <= args.n_last_blocks <= depth:
            raise Fail(f"--n-last-blocks {args.n_last_blocks} is outside 1..{depth} "
                       f"(the model has {depth} blocks)")
        meta["n_last_blocks"] = str(args.n_last_blocks)
    if args.avgpool is not None:
        meta["avgpool"] = "true" if args.avgpool else "false"
    if args.num_heads is not None:
        if args.num_heads < 1 or D % args.num_heads:
            raise Fail(f"--num-heads {args.num_heads} does not divide embed_dim {D}")
        meta["num_heads"] = str(args.num_heads)
    if args.ln_eps is not None:
        v = _number(args.ln_eps, "--ln-eps")
        if not 0 < v < 1:
            raise Fail("--ln-eps must be in (0, 1)")
        meta["ln_eps"] = _json_number(v)
    if args.bn_eps is not None:
        v = _number(args.bn_eps, "--bn-eps")
        if not 0 < v < 1:
            raise Fail("--bn-eps must be in (0, 1)")
        meta["bn_eps"] = _json_number(v)
    if args.change_threshold is not None:
        v = _number(args.change_threshold, "--change-threshold")
        if not 0 <= v <= 2:
            raise Fail("--change-threshold is a cosine distance in [0, 2]")
        meta["change_threshold"] = _json_number(v)
    if args.classes:
        names = [c.strip() for c in args.classes.split(",")]
        if any(not c for c in names):
            raise Fail("--classes: empty class name")
        meta["classes"] = json.dumps(names)
    if args.multilabel:
        meta["multilabel"] = "true"
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Fail(f"--meta {item!r}: expected KEY=VALUE")
        meta[key] = value
    meta.setdefault("format", "pt")
    return meta


# ---- output ---------------------------------------------------------------------------

def write_atomically(path, tensors, meta):
    """Write the file next to its destination, then rename it into place."""
    data = safetensors_io.serialize(tensors, meta)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".convert-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return len(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def warn(text):
    print(f"{PROG}: warning: {text}", file=sys.stderr)


def convert(args):
    """Run the conversion; raise Fail for anything the user must fix."""
    out = args.dest
    if not args.dry_run:
        if os.path.isdir(out):
            raise Fail(f"output {out} is a directory")
        if os.path.lexists(out) and not args.force:
            raise Fail(f"output {out} exists; use --force to overwrite it")
        parent = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(parent):
            raise Fail(f"cannot write {out}: directory {parent} does not exist")

    obj, old_meta, fmt = load_input(args.source)
    state, prefix, path, outside, kind, arch = choose_weights(obj, args)
    if fmt == "safetensors file":
        kind = "safetensors file" + kind[len(kind.split(",")[0]):]
    kept, dropped = classify(state, arch, args.keep_head)
    if (args.classes or args.multilabel) and not any(CLASSIFIER_RE.match(k) for k in kept):
        raise Fail("--classes and --multilabel describe a classification head: give --keep-head "
                   "(and a checkpoint that has head.weight / head.N.weight / fc.weight)")
    if arch == "resnet":
        info, missing, variant, unused = describe_resnet(kept)
    else:
        info, missing, variant, unused = describe_vit(kept)
    meta = build_metadata(args, info, old_meta, arch)
    tensors = convert_dtypes(kept, args.dtype)
    what = "ResNet" if arch == "resnet" else "ViT"

    if variant:
        warn(f"kept tensors of {what} variants the engine does not implement: {ck.group_names(variant, 12)}; "
             "rai4eo will refuse this model as unsupported")
    if missing:
        warn(f"the {what} lacks {len(missing)} tensor{'s' if len(missing) != 1 else ''} the engine "
             f"requires: {ck.group_names(missing)}; rai4eo will refuse this model")
    if arch == "vit" and info["embed_dim"] % 64 and args.num_heads is None and "num_heads" not in meta:
        warn(f"embed_dim {info['embed_dim']} is not a multiple of 64: give --num-heads "
             "(rai4eo's default is embed_dim / 64)")

    written = 0
    if not args.dry_run:
        try:
            written = write_atomically(out, tensors, meta)
        except OSError as e:
            raise Fail(f"cannot write {out}: {e.strerror or e}") from None

    if args.quiet:
        return
    dtypes = {}
    for t in tensors.values():
        dtypes[dtype_name(t)] = dtypes.get(dtype_name(t), 0) + 1
    heads = meta.get("num_heads")
    if arch == "vit" and heads is None and info["embed_dim"] % 64 == 0:
        heads = info["embed_dim"] // 64
    strip = f", prefix {prefix!r} stripped" if prefix else ""
    print(f"input:    {args.source}: {kind}{strip}")
    print(f"kept:     {len(tensors)} tensors ("
          + ", ".join(f"{n} {d}" for d, n in sorted(dtypes.items())) + ")")
    drops = []
    if outside:
        drops.append(f"{len(outside)} outside the backbone ({ck.group_names(outside, 4)})")
    labels = {"head": "classifier/projection head" if arch == "vit" else "classifier (fc)",
              "buffers": "num_batches_tracked",
              "not tensors": "not tensors", "no dtype": "of a dtype safetensors lacks"}
    for reason, names in dropped.items():
        if names:
            drops.append(f"{len(names)} {labels[reason]} ({ck.group_names(names, 4)})")
    print("dropped:  " + ("; ".join(drops) if drops else "nothing"))
    if arch == "resnet":
        block = "Bottleneck" if info["bottleneck"] else "BasicBlock"
        name = info["name"] or "ResNet"
        print(f"model:    {name} ({block}, layers {info['layers']}), width {info['width']}, "
              f"in_chans {info['in_chans']}, out_dim {info['out_dim'] or '?'}, params {info['params']}")
    else:
        grid = f"{info['pos_grid']}x{info['pos_grid']}" if info["pos_grid"] else "?"
        print(f"model:    ViT embed_dim {info['embed_dim']}, depth {info['depth']}, patch "
              f"{info['patch_size']}, in_chans {info['in_chans']}, heads {heads or '?'}, MLP "
              f"{info['mlp_hidden'] or '?'}, position grid {grid}, params {info['params']}")
    if unused:
        print(f"unused:   {len(unused)} kept tensors the engine does not read: {ck.group_names(unused)}")
    print("metadata: " + " ".join(f"{k}={v}" for k, v in sorted(meta.items())))
    if args.dry_run:
        print("dry run:  nothing written")
    else:
        print(f"wrote:    {out} ({written} bytes)")


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_ERROR
    try:
        convert(args)
    except Fail as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
