"""A multi-label CORINE Land Cover classifier trained on rai4eo's images and CLC 2018 labels.

The labels come from rai4eo.patch_clc, the share of each patch covered by each CLC
level-3 class: a patch is positive for a class when the class covers at least
--min-fraction of it, the classes being the seven coarse classes of the RapidAI4EO
poster (--classes class7: artificial, agricultural, forest, shrub, bare, wetlands,
water, from rai4eo.clc_class.class7) or the 15 CLC level-2 classes (--classes level2,
named by their codes 11 .. 52).  Every image of a labelled patch acquired in --years
(default 2018, the labels' year) is a sample with its patch's labels.

Patches are split by a hash of patch_id (blake2b of its decimal text, as a fraction
of 2^64, below --val-fraction: validation), so a patch never changes sides between
runs or corpora.  --label-fraction F trains on a seeded share of the training patches
(the seeds' 1% / 10% / 100% experiment; smaller shares are subsets of larger ones
under the same --seed).  The backbone is a ViT (DINO key names) or a torchvision
ResNet, from scratch or initialised from a model in rai4eo.model or a safetensors
file (--init, e.g. a DINO or BYOL model trained by this tool); a linear head (or a
one-hidden-layer MLP, --head mlp) maps its features to one logit per class; the loss
is binary cross-entropy with logits, optimised by AdamW with a cosine learning rate.
At the end, per-class precision and recall on the validation patches' images are
printed and written to --report.  The export is the backbone plus the head under
head.* with the metadata rai4eo_classify() needs (classes, multilabel, bands, scale,
mean, std, ...); --register-probabilities also stores it with "output":
"probabilities", whose rai4eo_embed() is the class-probability vector change
detection compares.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rai4eo_tools import db_images
from rai4eo_tools import resnet_reference
from rai4eo_tools import train_common as T
from rai4eo_tools.vit_reference import VisionTransformer

CLASS7 = ["artificial", "agricultural", "forest", "shrub", "bare", "wetlands", "water"]
VIT_PATCH = {"PF-SR": 16, "S2-SR": 8}
ARCHS = ["vit"] + list(resnet_reference.ARCHS)
# Options of one invocation, beyond the shared ones: where the report goes, the second
# registration, evaluation settings.  A resumed run takes all others from its checkpoint.
RUN_OPTIONS = T.RUN_OPTIONS | {"report", "register_probabilities", "threshold", "val_every"}
# Options that shape the model's features but are export options for the other trainers:
# a supervised checkpoint keeps them (its head was trained on those features).
RECIPE = ("n_last_blocks", "avgpool", "input")


# ---- labels and splits ------------------------------------------------------------------

def class_list(conn, kind):
    """(classes, names): the label set, in head-output order.  class7: the seven coarse
    class names; level2: the CLC level-2 codes (integers) and their names."""
    if kind == "class7":
        return list(CLASS7), list(CLASS7)
    rows = conn.execute("SELECT DISTINCT level2, level2_name FROM rai4eo.clc_class ORDER BY 1").fetchall()
    return [int(r[0]) for r in rows], [r[1] for r in rows]


def labelled_patches(conn, sensor, years):
    """Sorted ids of the patches with a CLC label and images of the sensor in the years (None: any)."""
    rows = conn.execute(
        "SELECT DISTINCT i.patch_id FROM rai4eo.image i "
        "WHERE i.sensor = %s AND (%s::int[] IS NULL OR extract(year FROM i.acquired)::int = ANY(%s::int[])) "
        "AND EXISTS (SELECT 1 FROM rai4eo.patch_clc pc WHERE pc.patch_id = i.patch_id) ORDER BY 1",
        (sensor, years, years)).fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64)


def patch_labels(conn, pids, kind, classes, min_fraction):
    """pid -> float32 [K] of 0/1: 1 where the class's summed CLC fraction >= min_fraction."""
    col = "c.class7" if kind == "class7" else "c.level2"
    index = {c: i for i, c in enumerate(classes)}
    out = {int(p): np.zeros(len(classes), np.float32) for p in pids}
    rows = conn.execute("SELECT pc.patch_id, " + col + ", sum(pc.fraction::float8) "
                        "FROM rai4eo.patch_clc pc JOIN rai4eo.clc_class c USING (code) "
                        "WHERE pc.patch_id = ANY(%s) GROUP BY 1, 2", ([int(p) for p in pids],)).fetchall()
    for pid, cls, frac in rows:
        if frac >= min_fraction:
            out[int(pid)][index[cls if kind == "class7" else int(cls)]] = 1.0
    return out


def split_value(pid):
    """A patch's place in [0, 1) for the validation split: blake2b-64 of its decimal id / 2^64."""
    h = hashlib.blake2b(str(int(pid)).encode("ascii"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0 ** 64


def split_patches(pids, val_fraction):
    """(train, val) id arrays: val holds the patches whose split_value is below val_fraction."""
    val = np.array([split_value(p) < val_fraction for p in pids], dtype=bool)
    pids = np.asarray(pids, dtype=np.int64)
    return pids[~val], pids[val]


def subset_size(n, fraction):
    """Training patches used at a label fraction: round(n * fraction), at least 1 (of n > 0)."""
    if n == 0:
        return 0
    return min(n, max(1, int(math.floor(n * fraction + 0.5))))


def label_subset(train, fraction, seed):
    """The sorted training patches a label fraction uses: a prefix of one seeded permutation
    of the sorted ids, so the 1% subset lies inside the 10% one, and so on."""
    ids = np.sort(np.asarray(train, dtype=np.int64))
    order = np.random.default_rng([seed, 3]).permutation(ids)
    return np.sort(order[:subset_size(len(ids), fraction)])


# ---- model ----------------------------------------------------------------------------------

def vit_init(m):
    """DINO's initialisation: truncated normal (std 0.02) linear weights, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def resnet_init(model):
    """torchvision's ResNet initialisation: He-normal (fan-out) convs, unit BatchNorms."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_backbone(spec):
    """A ViT or ResNet from its spec (a dict saved in checkpoints), randomly initialised."""
    if spec["kind"] == "vit":
        vit = VisionTransformer(img_size=spec["img_size"], patch_size=spec["patch_size"],
                                in_chans=spec["in_chans"], embed_dim=spec["embed_dim"], depth=spec["depth"],
                                num_heads=spec["num_heads"], mlp_hidden=spec["mlp_hidden"], eps=spec["eps"])
        nn.init.trunc_normal_(vit.pos_embed, std=0.02)
        nn.init.trunc_normal_(vit.cls_token, std=0.02)
        vit.apply(vit_init)
        return vit
    net = resnet_reference.ResNet(spec["block"], spec["layers"], spec["in_chans"], spec["width"], 0, spec["eps"])
    resnet_init(net)
    return net


def spec_from_args(a, in_chans, img_size):
    """The backbone spec the size options describe."""
    if a.arch == "vit":
        return {"kind": "vit", "img_size": int(img_size), "patch_size": a.patch_size, "in_chans": in_chans,
                "embed_dim": a.embed_dim, "depth": a.depth, "num_heads": a.num_heads,
                "mlp_hidden": int(a.embed_dim * a.mlp_ratio), "eps": 1e-6}
    block, default_layers = resnet_reference.ARCHS[a.arch]
    return {"kind": "resnet", "block": block, "layers": list(a.layers or default_layers), "in_chans": in_chans,
            "width": a.width, "eps": 1e-5}


def spec_from_weights(state, config):
    """The backbone spec of pretrained weights (their shapes, plus num_heads/ln_eps/bn_eps)."""
    if "pos_embed" in state and "patch_embed.proj.weight" in state:
        D, C, P, _ = state["patch_embed.proj.weight"].shape
        N = state["pos_embed"].shape[1] - 1
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        return {"kind": "vit", "img_size": int(round(math.sqrt(N))) * int(P), "patch_size": int(P),
                "in_chans": int(C), "embed_dim": int(D), "depth": depth,
                "num_heads": int(config.get("num_heads") or max(1, D // 64)),
                "mlp_hidden": int(state["blocks.0.mlp.fc1.weight"].shape[0]),
                "eps": float(config.get("ln_eps") or 1e-6)}
    if "conv1.weight" in state:
        block, layers, in_chans, width = resnet_reference.layout_of(state)
        return {"kind": "resnet", "block": block, "layers": layers, "in_chans": in_chans, "width": width,
                "eps": float(config.get("bn_eps") or 1e-5)}
    raise ValueError("neither ViT (pos_embed, patch_embed.proj.weight) nor ResNet (conv1.weight) weights")


def resnet_arch_name(spec):
    """The architecture name for the metadata: resnet18 .. resnet101 when the layout is
    torchvision's, else "resnet" (the layout is read from the shapes)."""
    for name, (block, layers) in resnet_reference.ARCHS.items():
        if spec["block"] == block and list(spec["layers"]) == list(layers) and spec["width"] == 64:
            return name
    return "resnet"


def feature_dim(spec, n_last_blocks, avgpool):
    """Width of the features the head reads."""
    if spec["kind"] == "vit":
        return spec["embed_dim"] * (n_last_blocks + (1 if avgpool else 0))
    planes = spec["width"] * 8
    return planes * (4 if spec["block"] == "bottleneck" else 1)


def build_head(in_dim, classes, kind, hidden):
    """Linear (head.weight/bias) or nn.Sequential Linear-ReLU-Linear (head.0.*, head.2.*)."""
    if kind == "linear":
        head = nn.Linear(in_dim, classes)
    else:
        head = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, classes))
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
    return head


class Classifier(nn.Module):
    """Backbone features (the database's recipe) -> head -> one logit per class."""

    def __init__(self, spec, backbone, head, n_last_blocks, avgpool):
        super().__init__()
        self.kind = spec["kind"]
        self.backbone = backbone
        self.head = head
        self.n_last_blocks, self.avgpool = n_last_blocks, avgpool

    def features(self, x):
        if self.kind == "vit":
            return self.backbone.features(x, self.n_last_blocks, self.avgpool)
        return self.backbone.features(x)

    def forward(self, x):
        return self.head(self.features(x))

    def export_state(self):
        """Backbone keys as the database names them, the head under head.*."""
        state = T.without_batch_counters(self.backbone.state_dict())
        state.update({"head." + k: v for k, v in self.head.state_dict().items()})
        return state


# ---- command line -----------------------------------------------------------------------

def year_list(text):
    """Parse '2018' or '2018,2019' (or 'all')."""
    if text == "all":
        return None
    try:
        years = sorted({int(v) for v in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError("expected years such as 2018 or 2018,2019, or all")
    return years


def set_help(p, option, text):
    """Replace the help text of a shared option where this trainer gives it another meaning."""
    for action in p._actions:
        if option in action.option_strings:
            action.help = text


def add_arguments(p):
    """The `supervised` subcommand's options (the shared ones come from train_common)."""
    T.add_common_arguments(p)
    set_help(p, "--export", "write the backbone and the classification head with their metadata when the run ends")
    g = p.add_argument_group("labels and splits")
    g.add_argument("--classes", choices=("class7", "level2"), default="class7",
                   help="label set: the seven coarse classes (default) or the CLC level-2 classes")
    g.add_argument("--min-fraction", type=float, default=0.1,
                   help="a class is a positive label of a patch covering at least this share (default 0.1)")
    g.add_argument("--years", type=year_list, default=[2018],
                   help="images used, by acquisition year: 2018 (the labels' year; default), a list, or all")
    g.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the labelled patches held out for validation, by a hash of patch_id "
                        "(default 0.2)")
    g.add_argument("--label-fraction", type=float, default=1.0,
                   help="share of the training patches trained on, a seeded subset (e.g. 0.01, 0.1; default 1)")

    g = p.add_argument_group("backbone")
    g.add_argument("--arch", choices=ARCHS, default="vit", help="default vit")
    g.add_argument("--init", metavar="MODEL",
                   help="start from a model's backbone: a name in rai4eo.model or a .safetensors file "
                        "(its architecture and sizes; its bands, scale, mean, std and feature recipe "
                        "unless given); without it, random initialisation")
    g.add_argument("--embed-dim", type=int, default=192, help="ViT width (default 192)")
    g.add_argument("--depth", type=int, default=4, help="ViT blocks (default 4)")
    g.add_argument("--num-heads", type=int, help="ViT heads (default embed-dim / 64)")
    g.add_argument("--patch-size", type=int, help="ViT patch (default 16 for PF-SR, 8 for S2-SR)")
    g.add_argument("--mlp-ratio", type=float, default=4.0, help="ViT MLP width / embed-dim (default 4)")
    g.add_argument("--width", type=int, default=64, help="ResNet stem width (default 64)")
    g.add_argument("--layers", type=T.int_list, help="ResNet blocks per stage, e.g. 2,2,2,2 (default: the arch's)")
    g.add_argument("--freeze-backbone", action="store_true",
                   help="train the head only (linear probing of --init's features)")

    g = p.add_argument_group("head and input")
    g.add_argument("--head", choices=("linear", "mlp"), default="linear",
                   help="linear (head.weight/bias) or an MLP with one hidden layer (head.0, head.2)")
    g.add_argument("--head-hidden-dim", type=int, default=512, help="MLP head width (default 512)")
    g.add_argument("--crop-size", type=int, default=0,
                   help="train on random resized crops of this side (default 0: whole images, as "
                        "inference sees them)")
    g.add_argument("--crop-scale", type=T.float_pair, default=(0.5, 1.0),
                   help="area share of a crop (default 0.5,1)")
    g.add_argument("--no-flips", action="store_true", help="no random horizontal/vertical flips")
    g.add_argument("--no-rot90", action="store_true", help="no random quarter turns")
    g.add_argument("--brightness", type=float, default=0.0,
                   help="random reflectance gain in [1-B, 1+B] for all bands (default 0: off)")

    g = p.add_argument_group("optimisation and evaluation")
    g.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
    g.add_argument("--min-lr", type=float, default=1e-6, help="final learning rate (default 1e-6)")
    g.add_argument("--warmup-steps", type=int, help="linear warm-up (default steps / 10)")
    g.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default 0.05)")
    g.add_argument("--backbone-lr-scale", type=float, default=1.0,
                   help="backbone learning rate / head learning rate (e.g. 0.1 to fine-tune --init "
                        "gently; default 1)")
    g.add_argument("--clip-grad", type=float, default=1.0, help="global gradient norm clip (0: off; default 1)")
    g.add_argument("--threshold", type=float, default=0.5,
                   help="probability above which validation counts a class as predicted (default 0.5)")
    g.add_argument("--val-every", type=int, default=0,
                   help="also validate every N steps (default 0: at the end only)")
    g.add_argument("--report", metavar="FILE.json", help="write the validation report (per-class precision/recall)")
    g.add_argument("--register-probabilities", metavar="NAME",
                   help="also store the export as NAME with \"output\": \"probabilities\" (rai4eo_embed "
                        "gives class probabilities, for class-change detection)")


def check_arguments(p, a):
    """Validate the supervised options and fill the per-sensor defaults."""
    T.check_common_arguments(p, a)
    if a.patch_size is None:
        if a.sensor not in VIT_PATCH:    # a sensor the user registered
            p.error("--patch-size is needed for sensor %s (defaults exist for %s)" % (a.sensor, ", ".join(sorted(VIT_PATCH))))
        a.patch_size = VIT_PATCH[a.sensor]
    if a.num_heads is None:
        a.num_heads = max(1, a.embed_dim // 64)
    if a.embed_dim < 1 or a.depth < 1 or a.num_heads < 1 or a.embed_dim % a.num_heads:
        p.error("--embed-dim must be a positive multiple of --num-heads, --depth >= 1")
    if a.patch_size < 1 or a.mlp_ratio <= 0:
        p.error("--patch-size must be >= 1 and --mlp-ratio > 0")
    if a.width < 1 or (a.layers is not None and len(a.layers) != 4):
        p.error("--width must be >= 1 and --layers lists 4 stages")
    if a.crop_size < 0 or a.head_hidden_dim < 1:
        p.error("--crop-size must be >= 0 and --head-hidden-dim >= 1")
    if not (0 <= a.min_fraction <= 1) or not (0 <= a.val_fraction < 1) or not (0 < a.label_fraction <= 1):
        p.error("--min-fraction lies in [0, 1], --val-fraction in [0, 1), --label-fraction in (0, 1]")
    if a.warmup_steps is None:
        a.warmup_steps = a.steps // 10
    if a.lr <= 0 or a.min_lr < 0 or a.weight_decay < 0 or a.backbone_lr_scale < 0 or a.clip_grad < 0:
        p.error("learning rates, weight decay and --clip-grad must be >= 0 (--lr > 0)")
    if a.brightness < 0 or a.brightness >= 1:
        p.error("--brightness lies in [0, 1)")
    if a.val_every < 0 or not (0 < a.threshold < 1):
        p.error("--val-every must be >= 0 and --threshold lie in (0, 1)")
    if a.register_probabilities and a.register_probabilities == a.register:
        p.error("--register-probabilities needs another name than --register")


def training_args(a):
    """The options that define the run (saved in checkpoints)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(a).items() if k not in RUN_OPTIONS}


# ---- data ---------------------------------------------------------------------------------

def augment(image, a, rng, norm):
    """One training view of a prepared image: a random resized crop (--crop-size) or the
    whole image, random flips and quarter turns, an optional reflectance gain."""
    flips, rot90 = not a.no_flips, not a.no_rot90
    if a.crop_size and a.input == "native":
        return T.make_crop(image, a.crop_size, a.crop_scale, rng, flips, rot90, a.brightness, norm)
    x = image
    if a.brightness > 0:
        g = float(rng.uniform(1 - a.brightness, 1 + a.brightness))
        x = x * g + (g - 1) * (norm.mean / norm.std)
    if flips:
        if rng.random() < 0.5:
            x = x.flip(2)
        if rng.random() < 0.5:
            x = x.flip(1)
    if rot90:
        k = int(rng.integers(4))
        if k:
            x = torch.rot90(x, k, (1, 2))
    return x


def make_preparer(norm, resize_to):
    """Raw image -> model input: the database's normalisation (nodata 0), and in resize
    mode its bilinear resample (align_corners=False, no antialiasing)."""
    def prepare(raw):
        x = norm(raw)
        if resize_to:
            x = F.interpolate(x.unsqueeze(0), size=(resize_to, resize_to), mode="bilinear",
                              align_corners=False, antialias=False).squeeze(0)
        return x
    return prepare


# ---- evaluation -------------------------------------------------------------------------------

def class_metrics(tp, fp, fn, tn):
    """precision, recall, F1 (None where undefined) and counts of one class or a sum."""
    tp, fp, fn, tn = int(tp), int(fp), int(fn), int(tn)
    prec = tp / (tp + fp) if tp + fp else None
    rec = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {"support": tp + fn, "predicted": tp + fp, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": prec, "recall": rec, "f1": f1}


@torch.no_grad()
def evaluate(model, conn, a, pids, labels, prepare, device):
    """Counts per class on every image of the patches: (tp, fp, fn, tn) arrays and the image count."""
    K = len(next(iter(labels.values()))) if labels else 0
    tp, fp, fn, tn = (np.zeros(K, np.int64) for _ in range(4))
    n = 0
    was_training = model.training
    model.eval()
    try:
        for pid in pids:
            _days, images = T.patch_images_in_years(conn, int(pid), a.sensor, a.bands, a.years)
            y = labels[int(pid)].astype(bool)
            for i in range(0, len(images), a.batch_size):
                with T.single_thread():
                    x = torch.stack([prepare(im) for im in images[i:i + a.batch_size]])
                pred = (torch.sigmoid(model(x.to(device))) > a.threshold).cpu().numpy()
                tp += (pred & y).sum(0)
                fp += (pred & ~y).sum(0)
                fn += (~pred & y).sum(0)
                tn += (~pred & ~y).sum(0)
                n += len(pred)
    finally:
        model.train(was_training)
        if a.freeze_backbone:
            model.backbone.eval()
    return (tp, fp, fn, tn), n


def report(classes, names, counts, nimages, extra):
    """The validation report: per-class and micro/macro precision, recall, F1."""
    tp, fp, fn, tn = counts
    per = []
    for k, (c, name) in enumerate(zip(classes, names)):
        m = {"class": c, "name": name}
        m.update(class_metrics(tp[k], fp[k], fn[k], tn[k]))
        per.append(m)

    def mean_of(key):
        vals = [m[key] for m in per if m[key] is not None]
        return sum(vals) / len(vals) if vals else None

    out = dict(extra)
    out.update({"val_images": int(nimages), "per_class": per,
                "micro": class_metrics(tp.sum(), fp.sum(), fn.sum(), tn.sum()),
                "macro": {"precision": mean_of("precision"), "recall": mean_of("recall"), "f1": mean_of("f1")}})
    return out


def format_report(rep):
    """The report as a table for the terminal."""
    def f(v):
        return "   -  " if v is None else "%6.3f" % v
    lines = ["%-34s %7s %7s %6s %6s %6s" % ("class", "support", "predict", "prec", "recall", "F1")]
    for m in rep["per_class"]:
        label = str(m["class"]) if m["class"] == m["name"] else "%s %s" % (m["class"], m["name"])
        lines.append("%-34s %7d %7d %s %s %s" % (label[:34], m["support"], m["predicted"],
                                                  f(m["precision"]), f(m["recall"]), f(m["f1"])))
    mi, ma = rep["micro"], rep["macro"]
    lines.append("%-34s %7d %7d %s %s %s" % ("micro average", mi["support"], mi["predicted"],
                                              f(mi["precision"]), f(mi["recall"]), f(mi["f1"])))
    lines.append("%-34s %7s %7s %s %s %s" % ("macro average", "", "", f(ma["precision"]), f(ma["recall"]),
                                              f(ma["f1"])))
    return "\n".join(lines)


# ---- training -------------------------------------------------------------------------------

def run(a, given):
    """Train (or continue) a supervised run as the options say; returns the exit status."""
    prog = "train supervised"
    log = T.stderr_logger(prog)
    try:
        ckpt, start, until, device, threads = T.begin_run(a, given, "supervised", log)
    except T.RunError as e:
        log(str(e))
        return 2
    if ckpt:
        for k in RECIPE:
            if k in given and given[k] != ckpt["recipe"][k]:
                log("note: --%s %s ignored: the checkpoint's head reads %s"
                    % (k.replace("_", "-"), given[k], ckpt["recipe"][k]))
            setattr(a, k, ckpt["recipe"][k])
        a.crop_scale = tuple(a.crop_scale)

    conn = T.open_database(a.dsn, log)
    if conn is None:
        return 2
    stream = None
    try:
        nb = db_images.band_count(conn, a.sensor)
        if nb is None:
            log("no %s images in rai4eo.image" % a.sensor)
            return 2

        # Pretrained backbone: its architecture, and its preprocessing unless given.
        init_state, spec = None, None
        if ckpt:
            spec = ckpt["spec"]
        elif a.init:
            init_state, config, what = T.read_model(conn, a.init)
            init_state = {k: v for k, v in init_state.items() if not k.startswith(("head.", "fc."))}
            try:
                spec = spec_from_weights(init_state, config)
            except ValueError as e:
                log("--init %s: %s" % (a.init, e))
                return 2
            for key in ("bands", "scale", "mean", "std", "n_last_blocks", "avgpool", "input"):
                if key in given or config.get(key) is None:
                    continue
                v = config[key]
                if key in ("mean", "std") and not isinstance(v, list):
                    v = [float(v)] * spec["in_chans"]
                if spec["kind"] == "resnet" and key in ("n_last_blocks", "avgpool"):
                    continue
                setattr(a, key, v)
            if spec["in_chans"] != len(a.bands):
                log("--init %s reads %d bands, but --bands gives %d" % (a.init, spec["in_chans"], len(a.bands)))
                return 2
            for key in ("arch", "embed_dim", "depth", "num_heads", "patch_size", "mlp_ratio", "width", "layers"):
                if key in given:
                    log("note: --%s ignored: the architecture comes from --init" % key.replace("_", "-"))
            if not a.quiet:
                log("initialising the backbone from %s (%s)" % (what, spec["kind"]))
        if max(a.bands) > nb:
            log("--bands %s: %s images have %d bands" % (a.bands, a.sensor, nb))
            return 2
        C = len(a.bands)

        # Labels and splits (a resumed run keeps its own).
        if ckpt:
            classes, names = ckpt["classes"], ckpt["class_names"]
            split = {k: np.asarray(v, dtype=np.int64) for k, v in ckpt["split"].items()}
            labels = {int(p): np.asarray(v, np.float32) for p, v in zip(ckpt["labels"]["pids"],
                                                                          ckpt["labels"]["matrix"])}
        else:
            classes, names = class_list(conn, a.classes)
            labelled = labelled_patches(conn, a.sensor, a.years)
            if len(labelled) == 0:
                log("no patch has both a CLC label (rai4eo.patch_clc) and %s images%s"
                    % (a.sensor, "" if a.years is None else " of %s" % ",".join(map(str, a.years))))
                return 2
            train, val = split_patches(labelled, a.val_fraction)
            if len(train) == 0:
                log("all %d labelled patches fell into the validation split; lower --val-fraction"
                    % len(labelled))
                return 2
            split = {"train": train, "used": label_subset(train, a.label_fraction, a.seed), "val": val}
            labels = patch_labels(conn, np.concatenate([split["used"], split["val"]]), a.classes, classes,
                                  a.min_fraction)
        K = len(classes)

        # Input size: the crop side, else the images' own side.
        size = conn.execute("SELECT ST_Width(rast), ST_Height(rast) FROM rai4eo.image WHERE patch_id = %s "
                            "AND sensor = %s LIMIT 1", (int(split["used"][0]), a.sensor)).fetchone()
        img_size = a.crop_size or min(size)
        if spec is None:
            spec = spec_from_args(a, C, img_size)
        if spec["kind"] == "vit" and a.n_last_blocks > spec["depth"]:
            log("--n-last-blocks %d exceeds the depth (%d blocks)" % (a.n_last_blocks, spec["depth"]))
            return 2
        if spec["kind"] == "resnet" and img_size < 32:
            log("a ResNet needs inputs of at least 32 x 32 pixels (--crop-size %d)" % img_size)
            return 2

        norm_saved = ckpt["normalisation"] if ckpt else None
        stats = T.normalisation(conn, a, np.concatenate([split["used"], split["val"]]), norm_saved, log)
        if stats is None:
            return 2
        mean, std = stats
        norm = T.Normaliser(a.scale, mean, std)
        prepare = make_preparer(norm, img_size if a.input == "resize" else 0)

        # Model and optimiser.
        torch.manual_seed(a.seed)
        backbone = build_backbone(spec)
        if init_state is not None:
            missing, unexpected = backbone.load_state_dict(init_state, strict=False)
            missing = [k for k in missing if not k.endswith("num_batches_tracked")]
            if missing or unexpected:
                log("--init %s: weights do not fit the backbone (missing %s, unexpected %s)"
                    % (a.init, missing[:4], unexpected[:4]))
                return 2
        head = build_head(feature_dim(spec, a.n_last_blocks, a.avgpool), K, a.head, a.head_hidden_dim)
        model = Classifier(spec, backbone, head, a.n_last_blocks, a.avgpool)
        if a.freeze_backbone:
            for p in model.backbone.parameters():
                p.requires_grad = False
        groups = []
        for part, scale in ((model.backbone, a.backbone_lr_scale), (model.head, 1.0)):
            for g in T.weight_decay_groups(part):
                g.setdefault("weight_decay", a.weight_decay)
                g["lr_scale"] = scale
                if g["params"]:
                    groups.append(g)
        optimizer = torch.optim.AdamW(groups, lr=a.lr, weight_decay=a.weight_decay)
        if ckpt:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
        model.to(device)
        T.optimizer_to(optimizer, device)
        model.train()
        if a.freeze_backbone:
            model.backbone.eval()

        lr_s = T.cosine_schedule(a.lr, a.min_lr, a.steps, a.warmup_steps)
        rng = np.random.default_rng([a.seed, 2])
        if ckpt:
            T.set_rng_state(ckpt["rng"], rng)
        pos = np.stack([labels[int(p)] for p in split["used"]]).mean(0)
        if not a.quiet:
            nparams = sum(p.numel() for p in model.backbone.parameters())
            log("%d labelled patches: %d for training (%d used at label fraction %g), %d for validation; "
                "%d classes (%s), positives per class in training %s"
                % (len(split["train"]) + len(split["val"]), len(split["train"]), len(split["used"]),
                   a.label_fraction, len(split["val"]), K, a.classes,
                   "[" + ", ".join("%.2f" % v for v in pos) + "]"))
            log("%s backbone %.2fM params%s, %s head; input %d px (%s); %s, %d threads; steps %d..%d of %d"
                % (spec["kind"] if spec["kind"] == "vit" else resnet_arch_name(spec), nparams / 1e6,
                   " (frozen)" if a.freeze_backbone else "", a.head, img_size, a.input, device, threads,
                   start, until, a.steps))

        def checkpoint(step, sampler):
            """The whole training state."""
            lp = np.array(sorted(labels), dtype=np.int64)
            return {"format": "rai4eo-train-checkpoint", "method": "supervised", "version": 1,
                    "step": step, "args": training_args(a), "recipe": {k: getattr(a, k) for k in RECIPE},
                    "spec": spec, "classes": classes, "class_names": names,
                    "split": {k: v.tolist() for k, v in split.items()},
                    "labels": {"pids": lp.tolist(), "matrix": np.stack([labels[int(p)] for p in lp]).tolist()},
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "normalisation": {"scale": a.scale, "bands": list(a.bands), "mean": list(mean), "std": list(std)},
                    "rng": T.rng_state(rng), "sampler": sampler}

        info = {"trainer": "tools/train supervised", "label_set": a.classes, "classes": classes,
                "min_fraction": a.min_fraction, "threshold": a.threshold, "years": a.years,
                "label_fraction": a.label_fraction, "val_fraction": a.val_fraction,
                "patches": {"train": len(split["train"]), "used": len(split["used"]), "val": len(split["val"])}}

        def validate(step):
            counts, nimg = evaluate(model, conn, a, split["val"], labels, prepare, device)
            extra = dict(info, step=step)
            return report(classes, names, counts, nimg, extra)

        bce = nn.BCEWithLogitsLoss()
        step = start
        t_run = time.monotonic()
        buffer = None
        if until > start:
            sampler_state = ckpt["sampler"] if ckpt else {"stream": [0, 0], "patches": []}
            stream = T.YearPatchStream(a.dsn, a.sensor, a.bands, split["used"], a.seed,
                                       epoch=sampler_state["stream"][0], pos=sampler_state["stream"][1],
                                       years=a.years)
            buffer = T.AnchorBuffer(stream, int(a.buffer_mb * 1024 * 1024), a.anchor_reuse, rng,
                                    len(split["used"]), prepare)
            buffer.restore(sampler_state, lambda pid: T.patch_images_in_years(conn, pid, a.sensor, a.bands, a.years))
            progress = T.Progress(prog, start, until, a.batch_size, a.log_every, a.quiet)
            with T.Interrupt(prog) as intr:
                while step < until:
                    it = step
                    anchors = buffer.draw(a.batch_size)
                    with T.single_thread():
                        views = [augment(e["images"][i], a, rng, norm) for e, i in anchors]
                        if len({tuple(v.shape) for v in views}) > 1:
                            raise db_images.DatabaseError("images of different sizes in one batch: "
                                                          "train on crops (--crop-size)")
                        x = torch.stack(views)
                        y = torch.from_numpy(np.stack([labels[e["pid"]] for e, _ in anchors]))
                    del anchors, views
                    for pg in optimizer.param_groups:
                        pg["lr"] = float(lr_s[it]) * pg["lr_scale"]
                    logits = model(x.to(device))
                    loss = bce(logits, y.to(device))
                    if not math.isfinite(loss.item()):
                        log("loss is %s at step %d; stopping (try a lower --lr or more --warmup-steps)"
                            % (loss.item(), it + 1))
                        return 1
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if a.clip_grad > 0:
                        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                       a.clip_grad)
                    optimizer.step()
                    step = it + 1
                    with torch.no_grad():
                        acc = float(((logits > 0) == (y.to(device) > 0.5)).float().mean())
                    progress.step(step, "loss %.4f  lr %.2e  label accuracy %.3f" % (loss.item(), lr_s[it], acc))
                    if a.val_every and step % a.val_every == 0 and step < until and len(split["val"]):
                        rep = validate(step)
                        mi = rep["micro"]
                        log("step %d validation: micro precision %s recall %s" % (step, mi["precision"], mi["recall"]))
                    last = step == until or intr.requested
                    if a.checkpoint and (step % a.checkpoint_every == 0 or last):
                        T.save_checkpoint(a.checkpoint, checkpoint(step, buffer.state()))
                    if intr.requested:
                        log("interrupted after step %d%s" % (step, "; checkpoint written to %s" % a.checkpoint
                                                            if a.checkpoint else " (no --checkpoint: state lost)"))
                        return 130
        elif a.checkpoint and not ckpt:
            T.save_checkpoint(a.checkpoint, checkpoint(0, {"stream": [0, 0], "patches": []}))

        done = step - start
        if done:
            elapsed = time.monotonic() - t_run
            print("%s: steps %d..%d in %.1f s (%.3f steps/s, %.2f img/s, %.1f s waiting for images)"
                  % (prog, start, step, elapsed, done / elapsed, done * a.batch_size / elapsed, buffer.wait_s))

        # Validation on the held-out patches.
        if len(split["val"]):
            t0 = time.monotonic()
            rep = validate(step)
            print("%s: validation on %d images of %d patches after %d steps (%.1f s), threshold %g:"
                  % (prog, rep["val_images"], len(split["val"]), step, time.monotonic() - t0, a.threshold))
            print(format_report(rep))
            if a.report:
                T.write_file_atomic(a.report, (json.dumps(rep, indent=1) + "\n").encode())
                print("%s: report written to %s" % (prog, a.report))
        else:
            log("no validation patches (--val-fraction %g of %d patches): no report"
                % (a.val_fraction, len(split["train"])))

        # Export backbone + head, and register.
        if a.export or a.register or a.register_probabilities:
            name = a.name or a.register or a.register_probabilities or os.path.splitext(os.path.basename(a.export))[0]
            a.name = name
            extra = {"classes": json.dumps(classes, separators=(",", ":")), "multilabel": "true",
                     "trainer": "tools/train supervised", "steps": step, "label_set": a.classes,
                     "min_fraction": repr(float(a.min_fraction))}
            model.cpu()
            if spec["kind"] == "vit":
                meta = T.export_metadata(a, mean, std, spec["img_size"] if a.input == "native" else img_size,
                                         spec["num_heads"], spec["eps"], extra)
            else:
                extra["bn_eps"] = repr(float(spec["eps"]))
                meta = T.resnet_export_metadata(a, mean, std, img_size, resnet_arch_name(spec), extra)
            data = T.export_backbone(model.export_state(), meta)
            if a.export:
                T.write_file_atomic(a.export, data)
                print("%s: exported backbone + head after %d steps to %s (%d bytes)" % (prog, step, a.export, len(data)))
            if conn.closed or conn.broken:
                conn.close()
                conn = db_images.connect(a.dsn)
            if a.register:
                print("%s: registered model %s: %s" % (prog, a.register, T.register_model(conn, a.register, data)))
            if a.register_probabilities:
                msg = T.register_model(conn, a.register_probabilities, data, {"output": "probabilities"})
                print("%s: registered model %s (output: probabilities): %s" % (prog, a.register_probabilities, msg))
        sys.stdout.flush()
        return 0
    except db_images.DatabaseError as e:
        log(str(e))
        return 2
    finally:
        if stream is not None:
            stream.close()
        conn.close()
