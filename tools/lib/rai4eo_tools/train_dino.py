"""DINO self-distillation of a ViT on rai4eo's images, with temporal positives.

The recipe is DINO v1's (Caron et al. 2021, facebookresearch/dino main_dino.py):
a student and an EMA teacher with the same backbone and a projection head (MLP,
L2-normalised bottleneck, weight-normalised last layer), multi-crop training in which
the student matches the teacher's centred and sharpened output on the other global
crop from every crop, AdamW with cosine learning-rate and weight-decay schedules,
a cosine teacher-momentum schedule, a teacher-temperature warm-up and per-parameter
gradient clipping.  What differs, after the RapidAI4EO DINO poster: the views of one
anchor image are taken from other images of the same patch -- the second global crop
from an image 30-60 days away, every local crop from an image 15-30 days away -- so
the model learns what stays while phenology and noise change.  The backbone is
rai4eo_tools.vit_reference.VisionTransformer (DINO key names, no drop-path), so the
teacher's backbone exports to the safetensors rai4eo_embed() runs.
"""

import math
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rai4eo_tools import db_images
from rai4eo_tools import train_common as T
from rai4eo_tools.vit_reference import VisionTransformer

LN_EPS = 1e-6
# The defaults of the recipe; README "Measuring features" gives the held-out figures behind
# them.  The exported readout is token_stats: the final LayerNorm removes each token's
# magnitude, and the spread of the tokens across the patch is what a change in part of it
# moves.  The per-token loss (--dense) keeps the patch tokens about their own ground: with
# the CLS objective alone the trained tokens lost where they came from, and the trained
# model's change scores fell below those of the same network with random weights.
DEFAULT_READOUT = "token_stats"
# The readout grid when none is given: token_stats of 4 x 4 regions where the native token grid
# has at least 3 tokens per region side (Planet Fusion 200 px at patch 16: 12 x 12 tokens),
# fewer on smaller grids (Sentinel-2 60 px at its default patch 8: 7 x 7 tokens, 2 x 2).  Measured on
# three held-out corpora (README, "Measuring features"): a change of 5 % of the patch can fill
# most of one region (a sixteenth of it), and the regions' annual composite sees it.
MAX_AUTO_READOUT_GRID = 4
DEFAULT_DENSE = 1.0


def auto_readout_grid(width, height, patch_size, input_mode, global_size):
    """The readout grid for images of width x height: min(4, tokens per side // 3), at least 1
    (tokens of the native image, or of the global_size resize with --input resize)."""
    side = global_size if input_mode == "resize" else min(width, height)
    return max(1, min(MAX_AUTO_READOUT_GRID, side // patch_size // 3))


# Crop geometry per sensor: PF-SR patches are 200 x 200 px, S2-SR 60 x 60 px.
SENSOR_DEFAULTS = {
    "PF-SR": {"patch_size": 16, "global_size": 96, "local_size": 48},
    "S2-SR": {"patch_size": 8, "global_size": 48, "local_size": 24},
}


# ---- model ---------------------------------------------------------------------------

class DINOHead(nn.Module):
    """MLP -> L2 normalisation -> weight-normalised linear layer (DINO's projection head).

    Parameter names follow DINO: mlp.0/2/4 (GELU between), last_layer.weight_g/_v.
    """

    def __init__(self, in_dim, out_dim, hidden_dim=2048, bottleneck_dim=256, nlayers=3,
                 norm_last_layer=True):
        super().__init__()
        nlayers = max(nlayers, 1)
        if nlayers == 1:
            self.mlp = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
            for _ in range(nlayers - 2):
                layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        self.apply(_init_linear)
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        x = self.mlp(x)
        x = F.normalize(x, dim=-1, p=2)
        return self.last_layer(x)


def _init_linear(m):
    """DINO's initialisation: truncated normal (std 0.02) weights, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class MultiCrop(nn.Module):
    """Backbone + head over crops of several sizes: each size runs as one batch."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, groups):
        feats = torch.cat([self.backbone(g) for g in groups if g is not None and len(g)])
        return self.head(feats)

    def forward_dense(self, globals_, locals_=None):
        """forward([globals_, locals_]) and the head's output on every patch token of the
        globals ([B, N, out_dim]): one pass of the backbone over the globals serves both."""
        tokens = self.backbone.get_intermediate_layers(globals_, 1)[0]
        feats = [tokens[:, 0]]
        if locals_ is not None and len(locals_):
            feats.append(self.backbone(locals_))
        B, N1, D = tokens.shape
        patch = self.head(tokens[:, 1:].reshape(B * (N1 - 1), D)).reshape(B, N1 - 1, -1)
        return self.head(torch.cat(feats)), patch


def build_backbone(a, in_chans):
    """A DINO ViT with DINO's initialisation (the patch-embedding conv keeps PyTorch's)."""
    vit = VisionTransformer(img_size=a.global_size, patch_size=a.patch_size, in_chans=in_chans,
                            embed_dim=a.embed_dim, depth=a.depth, num_heads=a.num_heads,
                            mlp_hidden=int(a.embed_dim * a.mlp_ratio), eps=LN_EPS)
    nn.init.trunc_normal_(vit.pos_embed, std=0.02)
    nn.init.trunc_normal_(vit.cls_token, std=0.02)
    vit.apply(_init_linear)
    return vit


def build_model(a, in_chans):
    return MultiCrop(build_backbone(a, in_chans),
                     DINOHead(a.embed_dim, a.out_dim, a.head_hidden_dim, a.bottleneck_dim,
                              a.head_layers, norm_last_layer=not a.no_norm_last_layer))


class DINOLoss(nn.Module):
    """Cross-entropy between the teacher's centred, sharpened global outputs and the
    student's outputs on every other crop, averaged over pairs; updates the centre."""

    def __init__(self, out_dim, ncrops, student_temp, center_momentum):
        super().__init__()
        self.ncrops = ncrops
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_out, teacher_out, teacher_temp):
        s = (student_out / self.student_temp).chunk(self.ncrops)
        q = F.softmax((teacher_out - self.center) / teacher_temp, dim=-1).detach()
        t = q.chunk(2)
        total, n = 0.0, 0
        for iq, tq in enumerate(t):
            for v, sv in enumerate(s):
                if v == iq:
                    continue
                total = total + torch.sum(-tq * F.log_softmax(sv, dim=-1), dim=-1).mean()
                n += 1
        self.update_center(teacher_out)
        entropy = float(-(q * torch.log(q.clamp_min(1e-30))).sum(-1).mean())
        return total / n, entropy

    @torch.no_grad()
    def update_center(self, teacher_out):
        batch_center = teacher_out.sum(dim=0, keepdim=True) / len(teacher_out)
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))


class DenseLoss(nn.Module):
    """DINO's cross-entropy per patch token between two pixel-aligned global views (two
    dates of one place, the same crop box, flips and turns): the teacher's centred,
    sharpened output at a token position against the student's at the same position in
    the other view, averaged over positions and both directions.  The CLS objective
    alone leaves the patch tokens free to lose where they came from (trained ViTs read
    out per region were worse than random ones); this keeps each token about its own
    ground while teaching it what does not change between dates."""

    def __init__(self, out_dim, student_temp, center_momentum):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, 1, out_dim))

    def forward(self, student_patch, teacher_patch, teacher_temp):
        B2 = student_patch.shape[0]
        q = F.softmax((teacher_patch - self.center) / teacher_temp, dim=-1).detach()
        logp = F.log_softmax(student_patch / self.student_temp, dim=-1)
        half = B2 // 2
        # view 0's teacher against view 1's student, and the other way round
        loss = (torch.sum(-q[:half] * logp[half:], dim=-1).mean()
                + torch.sum(-q[half:] * logp[:half], dim=-1).mean()) / 2
        with torch.no_grad():
            c = teacher_patch.mean(dim=(0, 1), keepdim=True)
            self.center.mul_(self.center_momentum).add_(c * (1 - self.center_momentum))
        return loss


def param_groups(model):
    """AdamW groups: weight decay on weights, none on biases and norm parameters (DINO)."""
    reg, noreg = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (noreg if name.endswith(".bias") or p.ndim == 1 else reg).append(p)
    return [{"params": reg}, {"params": noreg, "weight_decay": 0.0}]


def clip_gradients(model, clip):
    """Scale each parameter's gradient to norm <= clip (DINO clips per parameter)."""
    for p in model.parameters():
        if p.grad is not None:
            norm = p.grad.detach().norm(2)
            coef = clip / (norm + 1e-6)
            if coef < 1:
                p.grad.detach().mul_(coef)


# ---- command line -----------------------------------------------------------------------

def add_arguments(p):
    """The `dino` subcommand's options (the shared ones come from train_common)."""
    T.add_common_arguments(p)
    # With --readout cls the exported features include the mean of the patch tokens unless
    # --no-avgpool: it keeps the patch's spectral composition, which clear-cuts, drying
    # reservoirs and new surfaces change (CLS alone: held-out AUC 0.79 / F1 0.59, with the
    # mean 0.87 / 0.84, iberia seed 1, same weights).
    p.set_defaults(avgpool=None)
    p.add_argument("--no-avgpool", dest="avgpool", action="store_false",
                   help="cls readout: export the CLS token(s) alone, without the mean of the patch tokens")
    p.add_argument("--readout", choices=("cls", "token_stats"), default=DEFAULT_READOUT,
                   help="features the exported model returns: token_stats (the mean and std over the "
                        "patch tokens of the last block before its final norm, 2 x embed-dim) or cls "
                        "(DINO eval_linear: the normed CLS token(s), with the patch-token mean unless "
                        "--no-avgpool); default %s" % DEFAULT_READOUT)
    p.add_argument("--readout-grid", type=int, metavar="G",
                   help="token_stats per region of a G x G cut of the token grid (2 G^2 x embed-dim "
                        "values; 1..8; default with token_stats: tokens per side // 3, at most %d, so "
                        "4 for Planet Fusion's 200 px at patch 16, 2 for Sentinel-2's 60 px at patch 8; cls: 1)"
                        % MAX_AUTO_READOUT_GRID)
    g = p.add_argument_group("backbone (ViT, DINO key names)")
    g.add_argument("--embed-dim", type=int, default=192, help="default 192")
    g.add_argument("--depth", type=int, default=4, help="transformer blocks (default 4)")
    g.add_argument("--num-heads", type=int, help="default embed-dim / 64")
    g.add_argument("--patch-size", type=int, help="default 16 for PF-SR, 8 for S2-SR")
    g.add_argument("--mlp-ratio", type=float, default=4.0, help="MLP width / embed-dim (default 4)")

    g = p.add_argument_group("DINO head and loss")
    g.add_argument("--out-dim", type=int, default=256,
                   help="prototypes of the head's last layer (default 256: with 1024 and small batches "
                        "the teacher drifted to uniform outputs)")
    g.add_argument("--head-hidden-dim", type=int, default=1024, help="default 1024")
    g.add_argument("--bottleneck-dim", type=int, default=256, help="default 256")
    g.add_argument("--head-layers", type=int, default=3, help="MLP layers of the head (default 3)")
    g.add_argument("--no-norm-last-layer", action="store_true",
                   help="let the last layer's weight norm (weight_g) train")
    g.add_argument("--student-temp", type=float, default=0.1, help="default 0.1")
    g.add_argument("--teacher-temp", type=float, default=0.04, help="teacher temperature after warm-up (default 0.04)")
    g.add_argument("--warmup-teacher-temp", type=float, default=0.04, help="initial teacher temperature (default 0.04)")
    g.add_argument("--warmup-teacher-temp-steps", type=int, default=0,
                   help="steps of linear teacher-temperature warm-up (default 0)")
    g.add_argument("--center-momentum", type=float, default=0.9, help="default 0.9")
    g.add_argument("--dense", type=float, default=DEFAULT_DENSE,
                   help="weight of the per-patch-token loss between the two global views, which "
                        "then share their crop box, flips and turns (0: off; default %g)" % DEFAULT_DENSE)

    g = p.add_argument_group("crops and temporal positives")
    g.add_argument("--global-size", type=int, help="global crop side in px (default 96 PF-SR, 48 S2-SR); "
                   "the exported img_size")
    g.add_argument("--local-size", type=int, help="local crop side in px (default 48 PF-SR, 24 S2-SR)")
    g.add_argument("--local-crops", type=int, default=4, help="local crops per anchor (default 4)")
    g.add_argument("--global-scale", type=T.float_pair, default=(0.4, 1.0),
                   help="area share of a global crop (default 0.4,1)")
    g.add_argument("--local-scale", type=T.float_pair, default=(0.05, 0.4),
                   help="area share of a local crop (default 0.05,0.4)")
    g.add_argument("--global-window", type=T.int_pair, default=(30, 60),
                   help="days between the anchor and the second global crop's image (default 30,60)")
    g.add_argument("--local-window", type=T.int_pair, default=(15, 30),
                   help="days between the anchor and each local crop's image (default 15,30)")
    g.add_argument("--no-flips", action="store_true", help="no random horizontal/vertical flips")
    g.add_argument("--rot90", action="store_true", help="also random quarter turns")
    g.add_argument("--brightness", type=float, default=0.0,
                   help="random reflectance gain in [1-B, 1+B], the same for all bands of a crop "
                        "(keeps spectral ratios; default 0: off)")
    g.add_argument("--jitter", type=float, default=1.0,
                   help="strength of the radiometric augmentation modelling what differs between "
                        "acquisitions: common and per-band gain, offsets, haze, cloud shadows, "
                        "noise (default 1: the range of Planet Fusion series; 0: off)")
    g.add_argument("--cross-year", type=float, default=0.0,
                   help="probability that the second global crop comes from another year, within "
                        "--year-window days of the anchor's day of year (default 0)")
    g.add_argument("--year-window", type=int, default=30,
                   help="days around the same day of year for --cross-year partners (default 30)")

    g = p.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, default=3e-4,
                   help="peak learning rate after warm-up, not scaled by the batch size (default 3e-4)")
    g.add_argument("--min-lr", type=float, default=1e-6, help="learning rate at the end (default 1e-6)")
    g.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up (default steps / 10)")
    g.add_argument("--weight-decay", type=float, default=0.04, help="initial weight decay (default 0.04)")
    g.add_argument("--weight-decay-end", type=float, default=0.4, help="final weight decay (default 0.4)")
    g.add_argument("--momentum-teacher", type=float,
                   help="initial teacher EMA momentum, rising to 1 on a cosine (default: from the "
                        "run length, see --teacher-horizon)")
    g.add_argument("--teacher-horizon", type=float, default=0.1,
                   help="without --momentum-teacher: the teacher's initial EMA horizon "
                        "1 / (1 - momentum) as a share of the run's steps, the momentum capped at "
                        "DINO's 0.996 (default 0.1: 0.95 for 200 steps, 0.99 for 1000; a "
                        "fixed momentum leaves the teacher of a short run near its random start)")
    g.add_argument("--clip-grad", type=float, default=3.0, help="per-parameter gradient norm clip (0: off; default 3)")
    g.add_argument("--export-backbone", choices=("teacher", "student"), default="teacher",
                   help="the backbone --export writes (default teacher, as DINO evaluates; a "
                        "finished checkpoint can be exported both ways)")
    g.add_argument("--freeze-last-layer-steps", type=int, default=0,
                   help="steps during which the head's last layer does not learn (default 0)")


def teacher_momentum(a, steps):
    """The initial teacher momentum: --momentum-teacher, or the one whose EMA horizon
    1 / (1 - m) is --teacher-horizon of the run (at least 1 step), at most 0.996.

    DINO's 0.996 averages the last ~250 of its ~250,000 steps; a run of a few hundred
    steps with that momentum exports a teacher still close to its initialisation."""
    if a.momentum_teacher is not None:
        return a.momentum_teacher
    horizon = max(1.0, a.teacher_horizon * max(steps, 1))
    return min(0.996, 1.0 - 1.0 / horizon)


def check_arguments(p, a):
    """Validate the dino options and fill the per-sensor defaults."""
    T.check_common_arguments(p, a)
    for k, v in SENSOR_DEFAULTS.get(a.sensor, {}).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    for k in ("patch_size", "global_size", "local_size"):
        if getattr(a, k) is None:     # a sensor the user registered: its crops are the user's choice
            p.error("--%s is needed for sensor %s (defaults exist for %s)"
                    % (k.replace("_", "-"), a.sensor, ", ".join(sorted(SENSOR_DEFAULTS))))
    if a.num_heads is None:
        a.num_heads = max(1, a.embed_dim // 64)
    if a.embed_dim < 1 or a.depth < 1 or a.num_heads < 1 or a.embed_dim % a.num_heads:
        p.error("--embed-dim must be a positive multiple of --num-heads, --depth >= 1")
    if a.patch_size < 1 or a.global_size < a.patch_size or a.local_size < a.patch_size:
        p.error("crop sizes must be at least --patch-size")
    if a.local_crops < 0:
        p.error("--local-crops must be >= 0")
    if a.out_dim < 1 or a.head_hidden_dim < 1 or a.bottleneck_dim < 1 or a.head_layers < 1:
        p.error("head sizes must be >= 1")
    if a.mlp_ratio <= 0:
        p.error("--mlp-ratio must be > 0")
    if a.warmup_steps is None:
        a.warmup_steps = a.steps // 10
    if min(a.student_temp, a.teacher_temp, a.warmup_teacher_temp) <= 0:
        p.error("temperatures must be > 0")
    if a.teacher_horizon <= 0:
        p.error("--teacher-horizon must be > 0")
    if not ((a.momentum_teacher is None or 0 <= a.momentum_teacher <= 1) and 0 <= a.center_momentum <= 1):
        p.error("momenta lie in [0, 1]")
    if a.brightness < 0 or a.brightness >= 1:
        p.error("--brightness lies in [0, 1)")
    if not a.dense >= 0:
        p.error("--dense must be >= 0")
    if a.jitter < 0 or not 0 <= a.cross_year <= 1 or a.year_window < 0:
        p.error("--jitter >= 0, --cross-year in [0, 1], --year-window >= 0")


# ---- training -------------------------------------------------------------------------------

class _Interrupt:
    """Ctrl-C ends the run after the current step (a second one at once)."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            sys.stderr.write("\ntrain dino: stopping after this step (Ctrl-C again to abort)\n")
        try:
            self._old = signal.signal(signal.SIGINT, handler)
        except ValueError:                         # not the main thread
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def make_batch(anchors, a, rng, counters, norm):
    """Crops of a batch: globals [2B] and locals [L*B], crop-major (crop k of every anchor together)."""
    flips = not a.no_flips
    g = [[], []]
    loc = [[] for _ in range(a.local_crops)]
    with T.single_thread():
        for entry, anchor in anchors:
            gi, li, gfb, lfb = T.temporal_views(entry["days"], anchor, a.local_crops,
                                                a.global_window, a.local_window, rng,
                                                a.cross_year, a.year_window)
            counters["anchors"] += 1
            counters["global_fallbacks"] += gfb
            counters["local_crops"] += len(li)
            counters["local_fallbacks"] += lfb
            geometry = None
            if a.dense > 0:
                _, H, W = entry["images"][gi[0]].shape
                geometry = T.crop_geometry(H, W, a.global_scale, rng, flips, a.rot90)
            for k in range(2):
                g[k].append(T.make_crop(entry["images"][gi[k]], a.global_size, a.global_scale, rng,
                                        flips, a.rot90, a.brightness, norm, a.jitter, geometry))
            for k, j in enumerate(li):
                loc[k].append(T.make_crop(entry["images"][j], a.local_size, a.local_scale, rng,
                                          flips, a.rot90, a.brightness, norm, a.jitter))
        globals_ = torch.stack(g[0] + g[1])
        locals_ = torch.stack([c for crops in loc for c in crops]) if a.local_crops else None
    return globals_, locals_


def training_args(a):
    """The options that define the run (saved in checkpoints)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(a).items()
            if k not in T.RUN_OPTIONS}


def run(a, given):
    """Train (or continue) a DINO run as the options say; returns the exit status."""
    prog = "train dino"
    log = T.stderr_logger(prog)
    try:
        ckpt, start, until, device, threads = T.begin_run(a, given, "dino", log)
    except T.RunError as e:
        log(str(e))
        return 2
    if ckpt and "dense" not in ckpt["args"]:
        a.dense = 0.0               # a run from before --dense: it had no per-token loss
    for k in ("global_scale", "local_scale", "global_window", "local_window"):
        setattr(a, k, tuple(getattr(a, k)))
    if a.n_last_blocks > a.depth:
        log("--n-last-blocks %d exceeds the depth (%d blocks)" % (a.n_last_blocks, a.depth))
        return 2
    if a.readout == "token_stats" and (a.avgpool or a.n_last_blocks != 1):
        log("--avgpool and --n-last-blocks choose among cls readouts; give --readout cls with them")
        return 2
    if a.readout_grid is not None and (not 1 <= a.readout_grid <= 8 or (a.readout_grid != 1 and a.readout != "token_stats")):
        log("--readout-grid takes 1..8 and needs --readout token_stats")
        return 2
    if a.avgpool is None:                   # cls: the patch-token mean on unless --no-avgpool
        a.avgpool = a.readout == "cls"

    try:
        conn = db_images.connect(a.dsn)
    except db_images.DatabaseError as e:
        log(str(e))
        return 2
    except Exception as e:                              # noqa: BLE001 - psycopg.OperationalError and kin
        log("cannot connect: %s" % str(e).strip())
        return 2

    stream = None
    try:
        pids = T.training_patches(db_images.patch_ids(conn, a.sensor), a.holdout)
        if len(pids) == 0:
            log("no %s images in rai4eo.image%s" % (a.sensor, " outside the holdout" if a.holdout else ""))
            return 2
        nb = db_images.band_count(conn, a.sensor)
        if max(a.bands) > nb:
            log("--bands %s: %s images have %d bands" % (a.bands, a.sensor, nb))
            return 2
        C = len(a.bands)
        if a.readout_grid is None:
            if a.readout != "token_stats":
                a.readout_grid = 1
            else:
                a.readout_grid = auto_readout_grid(*db_images.image_size(conn, a.sensor), a.patch_size,
                                                   a.input, a.global_size)
                if not a.quiet:
                    log("readout: token_stats of %d x %d regions" % (a.readout_grid, a.readout_grid))

        # Normalisation: from the checkpoint, the options, or a sample of the data.
        if ckpt:
            mean, std = ckpt["normalisation"]["mean"], ckpt["normalisation"]["std"]
        elif a.mean is not None:
            mean, std = list(a.mean), list(a.std)
        else:
            t0 = time.monotonic()
            mean, std, nread = db_images.band_statistics(conn, a.sensor, a.bands, a.scale, pids,
                                                         a.stats_images, np.random.default_rng([a.seed, 1]))
            if nread == 0:
                log("no image could be read for the statistics")
                return 2
            for i, s in enumerate(std):
                if not s > 0:
                    log("band %d is constant in the sample; its std is set to 1" % a.bands[i])
                    std[i] = 1.0
            if not a.quiet:
                log("band statistics of raw x %g from %d images (%.1f s): mean %s, std %s"
                    % (a.scale, nread, time.monotonic() - t0,
                       "[" + ", ".join("%.5g" % v for v in mean) + "]",
                       "[" + ", ".join("%.5g" % v for v in std) + "]"))
        norm = T.Normaliser(a.scale, mean, std)

        # Models, loss, optimiser.
        torch.manual_seed(a.seed)
        student = build_model(a, C)
        teacher = build_model(a, C)
        teacher.load_state_dict(student.state_dict())
        for p in teacher.parameters():
            p.requires_grad = False
        ncrops = 2 + a.local_crops
        dino_loss = DINOLoss(a.out_dim, ncrops, a.student_temp, a.center_momentum)
        dense_loss = DenseLoss(a.out_dim, a.student_temp, a.center_momentum)
        optimizer = torch.optim.AdamW(param_groups(student))
        if ckpt:
            student.load_state_dict(ckpt["student"])
            teacher.load_state_dict(ckpt["teacher"])
            optimizer.load_state_dict(ckpt["optimizer"])
            dino_loss.center.copy_(ckpt["dino_loss"]["center"])
            if "dense_center" in ckpt["dino_loss"]:
                dense_loss.center.copy_(ckpt["dino_loss"]["dense_center"])
        student.to(device)
        teacher.to(device)
        dino_loss.to(device)
        dense_loss.to(device)
        # Optimiser state follows its parameters to the device.
        for st in optimizer.state.values():
            for k, v in st.items():
                if torch.is_tensor(v) and k != "step":
                    st[k] = v.to(device)

        clock = None
        if a.minutes is not None and not ckpt:
            clock = T.StepBudget(a.minutes)
            a.steps = max(a.steps, 1 + clock.probe + 1)      # provisional, while timing
            until = a.steps
        warmup_given = "warmup_steps" in given

        def schedules(steps):
            if not warmup_given and clock is not None:
                a.warmup_steps = steps // 10
            wt = min(a.warmup_teacher_temp_steps, steps)
            return (T.cosine_schedule(a.lr, a.min_lr, steps, a.warmup_steps),
                    T.cosine_schedule(a.weight_decay, a.weight_decay_end, steps),
                    T.cosine_schedule(teacher_momentum(a, steps), 1.0, steps),
                    np.concatenate([np.linspace(a.warmup_teacher_temp, a.teacher_temp, wt),
                                    np.full(steps - wt, a.teacher_temp)]))
        steps = a.steps
        lr_s, wd_s, mom_s, temp_s = schedules(steps)

        rng = np.random.default_rng([a.seed, 2])
        counters = {"anchors": 0, "global_fallbacks": 0, "local_crops": 0, "local_fallbacks": 0}
        if ckpt:
            T.set_rng_state(ckpt["rng"], rng)
            counters.update(ckpt.get("counters", {}))

        nparams = sum(p.numel() for p in student.backbone.parameters())
        hparams = sum(p.numel() for p in student.head.parameters())
        if not a.quiet:
            log("%d patches of %s, bands %s; ViT %dx%d (%d heads, patch %d, %.2fM params) + head %.2fM; "
                "crops 2x%d px + %dx%d px; %s, %d threads; steps %d..%d of %d"
                % (len(pids), a.sensor, a.bands, a.embed_dim, a.depth, a.num_heads, a.patch_size,
                   nparams / 1e6, hparams / 1e6, a.global_size, a.local_crops, a.local_size,
                   device, threads, start, until, steps))

        def checkpoint(step, sampler):
            """The whole training state; keys as in DINO's checkpoints where DINO has them."""
            return {"format": "rai4eo-train-checkpoint", "method": "dino", "version": 1,
                    "step": step, "args": training_args(a),
                    "student": student.state_dict(), "teacher": teacher.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "dino_loss": {"center": dino_loss.center.detach().cpu(),
                                  "dense_center": dense_loss.center.detach().cpu()},
                    "normalisation": {"scale": a.scale, "bands": list(a.bands),
                                      "mean": list(mean), "std": list(std)},
                    "rng": T.rng_state(rng), "sampler": sampler, "counters": dict(counters)}

        step = start
        t_run = time.monotonic()
        if until > start:
            sampler_state = ckpt["sampler"] if ckpt else {"stream": [0, 0], "patches": []}
            stream = db_images.PatchStream(a.dsn, a.sensor, a.bands, pids, a.seed,
                                           epoch=sampler_state["stream"][0], pos=sampler_state["stream"][1])
            budget = int(a.buffer_mb * 1024 * 1024)
            buffer = T.AnchorBuffer(stream, budget, a.anchor_reuse, rng, len(pids), norm)
            buffer.restore(sampler_state, lambda pid: db_images.patch_images(conn, pid, a.sensor, a.bands))
            progress = T.Progress(prog, start, until, a.batch_size, a.log_every, a.quiet)
            student.train()
            teacher.train()
            with _Interrupt() as intr:
                while step < until:
                    it = step
                    anchors = buffer.draw(a.batch_size)
                    globals_, locals_ = make_batch(anchors, a, rng, counters, norm)
                    del anchors
                    globals_ = globals_.to(device, non_blocking=True)
                    locals_ = locals_.to(device, non_blocking=True) if locals_ is not None else None
                    for i, pg in enumerate(optimizer.param_groups):
                        pg["lr"] = float(lr_s[it])
                        if i == 0:
                            pg["weight_decay"] = float(wd_s[it])
                    if a.dense > 0:
                        with torch.no_grad():
                            t_out, t_patch = teacher.forward_dense(globals_)
                        s_out, s_patch = student.forward_dense(globals_, locals_)
                        loss, entropy = dino_loss(s_out, t_out, float(temp_s[it]))
                        dense_part = dense_loss(s_patch, t_patch, float(temp_s[it]))
                        loss = loss + a.dense * dense_part
                    else:
                        with torch.no_grad():
                            t_out = teacher([globals_])
                        s_out = student([globals_, locals_])
                        loss, entropy = dino_loss(s_out, t_out, float(temp_s[it]))
                        dense_part = None
                    if not math.isfinite(loss.item()):
                        log("loss is %s at step %d; stopping (try a lower --lr or more --warmup-steps)"
                            % (loss.item(), it + 1))
                        return 1
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if a.clip_grad > 0:
                        clip_gradients(student, a.clip_grad)
                    if it < a.freeze_last_layer_steps:
                        for n, p in student.named_parameters():
                            if "last_layer" in n:
                                p.grad = None
                    optimizer.step()
                    with torch.no_grad():
                        m = float(mom_s[it])
                        for ps, pt in zip(student.parameters(), teacher.parameters()):
                            pt.mul_(m).add_(ps.detach(), alpha=1 - m)
                    step = it + 1
                    if clock is not None:
                        total = clock.after_step(step - start)
                        if total is not None:
                            a.steps = steps = until = total
                            lr_s, wd_s, mom_s, temp_s = schedules(steps)
                            progress.until = until
                            log("--minutes %g: %d steps fit (timed steps 2..%d%s)"
                                % (a.minutes, steps, step, "" if clock.final else "; provisional"))
                    gf = counters["global_fallbacks"] / max(counters["anchors"], 1)
                    lf = counters["local_fallbacks"] / max(counters["local_crops"], 1)
                    progress.step(step, "loss %.4f  %slr %.2e  wd %.3f  m %.4f  T %.3f  H(t) %.2f  "
                                  "fallbacks %.0f%%/%.0f%%"
                                  % (loss.item(), "" if dense_part is None else "dense %.4f  " % dense_part.item(),
                                     lr_s[it], wd_s[it], m, temp_s[it], entropy, 100 * gf, 100 * lf))
                    last = step == until or intr.requested
                    if a.checkpoint and (step % a.checkpoint_every == 0 or last):
                        T.save_checkpoint(a.checkpoint, checkpoint(step, buffer.state()))
                    if intr.requested:
                        log("interrupted after step %d%s" % (step, "; checkpoint written to %s" % a.checkpoint
                                                            if a.checkpoint else " (no --checkpoint: state lost)"))
                        return 130
        elif a.checkpoint and not ckpt:
            # --steps 0 (or --until 0): the initial state, resumable.
            T.save_checkpoint(a.checkpoint, checkpoint(0, {"stream": [0, 0], "patches": []}))

        elapsed = time.monotonic() - t_run
        done = step - start
        if done:
            gf = counters["global_fallbacks"] / max(counters["anchors"], 1)
            lf = counters["local_fallbacks"] / max(counters["local_crops"], 1)
            print("%s: steps %d..%d in %.1f s (%.3f steps/s, %.2f img/s, %.1f s waiting for images); "
                  "temporal fallbacks: global %d of %d anchors (%.1f%%), local %d of %d crops (%.1f%%)"
                  % (prog, start, step, elapsed, done / elapsed, done * a.batch_size / elapsed, buffer.wait_s,
                     counters["global_fallbacks"], counters["anchors"], 100 * gf,
                     counters["local_fallbacks"], counters["local_crops"], 100 * lf))

        # Export the teacher's backbone (DINO evaluates the teacher) and register it.
        if a.export or a.register:
            name = a.name or a.register or os.path.splitext(os.path.basename(a.export))[0]
            a.name = name
            meta = T.export_metadata(a, mean, std, a.global_size, a.num_heads, LN_EPS,
                                     {"trainer": "tools/train dino", "steps": step,
                                      "backbone": a.export_backbone})
            chosen = student if a.export_backbone == "student" else teacher
            data = T.export_backbone(chosen.backbone.state_dict(), meta)
            if a.export:
                T.write_file_atomic(a.export, data)
                print("%s: exported the %s backbone after %d steps to %s (%d bytes)"
                      % (prog, a.export_backbone, step, a.export, len(data)))
            if a.register:
                if conn.closed or conn.broken:
                    conn.close()
                    conn = db_images.connect(a.dsn)        # the server restarted meanwhile
                msg = T.register_model(conn, a.register, data)
                print("%s: registered model %s: %s" % (prog, a.register, msg))
        sys.stdout.flush()
        return 0
    except db_images.DatabaseError as e:
        log(str(e))
        return 2
    finally:
        if stream is not None:
            stream.close()
        conn.close()
