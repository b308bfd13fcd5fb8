"""BYOL of a ResNet on rai4eo's images, with temporal positives.

The recipe is BYOL's (Grill et al. 2020): an online network -- a ResNet encoder, a
projector MLP (Linear, BatchNorm, ReLU, Linear) and a predictor MLP of the same form
-- learns to predict the target network's projection of the other view; the target
(encoder and projector) is an exponential moving average of the online weights whose
momentum rises from --momentum-target to 1 on a cosine; the loss is 2 - 2 cos between
the L2-normalised prediction and target projection, symmetrised over the two views.
What differs: the two views of an anchor image are crops of the anchor and of an
image of the same patch --pair-window days away (default 30-60, the temporal
positives of the DINO trainer; the nearest image to the window when none lies in
it, counted as a fallback), with random resized crops, flips and optional quarter
turns and reflectance gain instead of colour jitter, which would break the bands'
reflectance semantics; and AdamW with a cosine learning rate replaces LARS, which
needs large batches.  The export is the online encoder with torchvision key names
and no fc, the ResNet rai4eo_embed() runs (layer4 average-pooled).
"""

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
from rai4eo_tools import train_supervised as S

CROP_SIZE = {"PF-SR": 96, "S2-SR": 48}


# ---- model ---------------------------------------------------------------------------------

def mlp(in_dim, hidden, out_dim):
    """BYOL's projector/predictor: Linear -> BatchNorm1d -> ReLU -> Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dim))


class BYOLNet(nn.Module):
    """Encoder + projector (+ predictor for the online network)."""

    def __init__(self, spec, hidden, proj_dim, predictor):
        super().__init__()
        self.encoder = S.build_backbone(spec)
        dim = S.feature_dim(spec, 1, False)
        self.projector = mlp(dim, hidden, proj_dim)
        self.predictor = mlp(proj_dim, hidden, proj_dim) if predictor else None

    def forward(self, x):
        z = self.projector(self.encoder.features(x))
        return z if self.predictor is None else self.predictor(z)


def regression_loss(p, z):
    """2 - 2 cos(p, z) per row."""
    return 2 - 2 * (F.normalize(p, dim=-1) * F.normalize(z, dim=-1)).sum(-1)


# ---- command line -----------------------------------------------------------------------

def add_arguments(p):
    """The `byol` subcommand's options (the shared ones come from train_common)."""
    T.add_common_arguments(p)
    S.set_help(p, "--export", "write the online encoder (no fc) with its metadata when the run ends")
    S.set_help(p, "--n-last-blocks", "ViT only; must stay 1")
    S.set_help(p, "--avgpool", "ViT only; not for a ResNet")
    g = p.add_argument_group("backbone (ResNet, torchvision key names)")
    g.add_argument("--arch", choices=list(resnet_reference.ARCHS), default="resnet18", help="default resnet18")
    g.add_argument("--width", type=int, default=64, help="stem width (default 64)")
    g.add_argument("--layers", type=T.int_list, help="blocks per stage, e.g. 2,2,2,2 (default: the arch's)")

    g = p.add_argument_group("BYOL")
    g.add_argument("--proj-dim", type=int, default=256, help="projection width (default 256)")
    g.add_argument("--proj-hidden-dim", type=int, default=4096,
                   help="hidden width of projector and predictor (default 4096)")
    g.add_argument("--momentum-target", type=float, default=0.99,
                   help="initial target EMA momentum, rising to 1 on a cosine (default 0.99)")

    g = p.add_argument_group("views and temporal positives")
    g.add_argument("--crop-size", type=int, help="crop side in px (default 96 PF-SR, 48 S2-SR); the exported img_size")
    g.add_argument("--crop-scale", type=T.float_pair, default=(0.2, 1.0), help="area share of a crop (default 0.2,1)")
    g.add_argument("--pair-window", type=T.int_pair, default=(30, 60),
                   help="days between the anchor and the second view's image (default 30,60)")
    g.add_argument("--no-flips", action="store_true", help="no random horizontal/vertical flips")
    g.add_argument("--rot90", action="store_true", help="also random quarter turns")
    g.add_argument("--brightness", type=float, default=0.0,
                   help="random reflectance gain in [1-B, 1+B] for all bands of a view (default 0: off)")
    g.add_argument("--jitter", type=float, default=0.0,
                   help="strength of the radiometric augmentation (gain, offsets, haze, cloud shadows, "
                        "noise; 1: the corpus's own range; default 0: off), as for dino")
    g.add_argument("--cross-year", type=float, default=0.0,
                   help="probability that the second view comes from another year, within "
                        "--year-window days of the anchor's day of year (default 0)")
    g.add_argument("--year-window", type=int, default=30, help="default 30 days")

    g = p.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    g.add_argument("--min-lr", type=float, default=1e-6, help="final learning rate (default 1e-6)")
    g.add_argument("--warmup-steps", type=int, help="linear warm-up (default steps / 10)")
    g.add_argument("--weight-decay", type=float, default=0.01,
                   help="AdamW weight decay, not on biases and BatchNorm (default 0.01)")
    g.add_argument("--clip-grad", type=float, default=3.0, help="global gradient norm clip (0: off; default 3)")


def check_arguments(p, a):
    """Validate the byol options and fill the per-sensor defaults."""
    T.check_common_arguments(p, a)
    if a.crop_size is None:
        if a.sensor not in CROP_SIZE:    # a sensor the user registered
            p.error("--crop-size is needed for sensor %s (defaults exist for %s)" % (a.sensor, ", ".join(sorted(CROP_SIZE))))
        a.crop_size = CROP_SIZE[a.sensor]
    if a.crop_size < 32:
        p.error("--crop-size must be at least 32 (a ResNet's smallest input)")
    if a.width < 1 or (a.layers is not None and len(a.layers) != 4):
        p.error("--width must be >= 1 and --layers lists 4 stages")
    if a.proj_dim < 1 or a.proj_hidden_dim < 1:
        p.error("projector sizes must be >= 1")
    if not (0 <= a.momentum_target <= 1):
        p.error("--momentum-target lies in [0, 1]")
    if a.warmup_steps is None:
        a.warmup_steps = a.steps // 10
    if a.lr <= 0 or a.min_lr < 0 or a.weight_decay < 0 or a.clip_grad < 0:
        p.error("--lr must be > 0; --min-lr, --weight-decay, --clip-grad >= 0")
    if a.brightness < 0 or a.brightness >= 1:
        p.error("--brightness lies in [0, 1)")
    if a.jitter < 0 or not 0 <= a.cross_year <= 1 or a.year_window < 0:
        p.error("--jitter >= 0, --cross-year in [0, 1], --year-window >= 0")
    if a.n_last_blocks != 1 or a.avgpool:
        p.error("--n-last-blocks and --avgpool are ViT feature recipes; a ResNet's features are pooled layer4")


def training_args(a):
    """The options that define the run (saved in checkpoints)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(a).items() if k not in T.RUN_OPTIONS}


# ---- training -------------------------------------------------------------------------------

def make_views(anchors, a, rng, counters, norm):
    """The two views of a batch, [2B] view-major: crops of every anchor, then of its partner."""
    flips = not a.no_flips
    v = [[], []]
    with T.single_thread():
        for entry, anchor in anchors:
            partner = None
            if a.cross_year > 0 and rng.random() < a.cross_year:
                partner, fb = T.pick_other_year(entry["days"], anchor, a.year_window, rng), False
            if partner is None:
                partner, fb = T.pick_in_window(entry["days"], anchor, a.pair_window, rng)
            counters["anchors"] += 1
            counters["fallbacks"] += int(fb)
            for k, j in enumerate((anchor, partner)):
                v[k].append(T.make_crop(entry["images"][j], a.crop_size, a.crop_scale, rng,
                                        flips, a.rot90, a.brightness, norm, a.jitter))
        return torch.stack(v[0] + v[1])


def run(a, given):
    """Train (or continue) a BYOL run as the options say; returns the exit status."""
    prog = "train byol"
    log = T.stderr_logger(prog)
    try:
        ckpt, start, until, device, threads = T.begin_run(a, given, "byol", log)
    except T.RunError as e:
        log(str(e))
        return 2
    a.crop_scale, a.pair_window = tuple(a.crop_scale), tuple(a.pair_window)

    conn = T.open_database(a.dsn, log)
    if conn is None:
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
        stats = T.normalisation(conn, a, pids, ckpt["normalisation"] if ckpt else None, log)
        if stats is None:
            return 2
        mean, std = stats
        norm = T.Normaliser(a.scale, mean, std)

        torch.manual_seed(a.seed)
        spec = ckpt["spec"] if ckpt else S.spec_from_args(a, C, a.crop_size)
        online = BYOLNet(spec, a.proj_hidden_dim, a.proj_dim, predictor=True)
        target = BYOLNet(spec, a.proj_hidden_dim, a.proj_dim, predictor=False)
        target.load_state_dict({k: v for k, v in online.state_dict().items() if not k.startswith("predictor.")})
        for p in target.parameters():
            p.requires_grad = False
        groups = [g for g in T.weight_decay_groups(online) if g["params"]]
        optimizer = torch.optim.AdamW(groups, lr=a.lr, weight_decay=a.weight_decay)
        counters = {"anchors": 0, "fallbacks": 0}
        rng = np.random.default_rng([a.seed, 2])
        if ckpt:
            online.load_state_dict(ckpt["online"])
            target.load_state_dict(ckpt["target"])
            optimizer.load_state_dict(ckpt["optimizer"])
            T.set_rng_state(ckpt["rng"], rng)
            counters.update(ckpt["counters"])
        online.to(device)
        target.to(device)
        T.optimizer_to(optimizer, device)
        online.train()
        target.train()
        target_params = dict(target.named_parameters())
        pairs = [(po, target_params[n]) for n, po in online.named_parameters() if n in target_params]

        clock = None
        if a.minutes is not None and not ckpt:
            clock = T.StepBudget(a.minutes)
            a.steps = until = max(a.steps, 1 + clock.probe + 1)        # provisional, while timing
        warmup_given = "warmup_steps" in given
        lr_s = T.cosine_schedule(a.lr, a.min_lr, a.steps, a.warmup_steps)
        mom_s = T.cosine_schedule(a.momentum_target, 1.0, a.steps)
        arch = S.resnet_arch_name(spec)
        if not a.quiet:
            nparams = sum(p.numel() for p in online.encoder.parameters())
            log("%d patches of %s, bands %s; %s encoder (width %d, layers %s, %.2fM params), projector %d-%d; "
                "crops %d px, pairs %d-%d days apart; %s, %d threads; steps %d..%d of %d"
                % (len(pids), a.sensor, a.bands, arch, spec["width"], spec["layers"], nparams / 1e6,
                   a.proj_hidden_dim, a.proj_dim, a.crop_size, a.pair_window[0], a.pair_window[1],
                   device, threads, start, until, a.steps))

        def checkpoint(step, sampler):
            """The whole training state."""
            return {"format": "rai4eo-train-checkpoint", "method": "byol", "version": 1,
                    "step": step, "args": training_args(a), "spec": spec,
                    "online": online.state_dict(), "target": target.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "normalisation": {"scale": a.scale, "bands": list(a.bands), "mean": list(mean), "std": list(std)},
                    "rng": T.rng_state(rng), "sampler": sampler, "counters": dict(counters)}

        step = start
        t_run = time.monotonic()
        buffer = None
        if until > start:
            sampler_state = ckpt["sampler"] if ckpt else {"stream": [0, 0], "patches": []}
            stream = db_images.PatchStream(a.dsn, a.sensor, a.bands, pids, a.seed,
                                           epoch=sampler_state["stream"][0], pos=sampler_state["stream"][1])
            buffer = T.AnchorBuffer(stream, int(a.buffer_mb * 1024 * 1024), a.anchor_reuse, rng, len(pids), norm)
            buffer.restore(sampler_state, lambda pid: db_images.patch_images(conn, pid, a.sensor, a.bands))
            progress = T.Progress(prog, start, until, a.batch_size, a.log_every, a.quiet)
            with T.Interrupt(prog) as intr:
                while step < until:
                    it = step
                    anchors = buffer.draw(a.batch_size)
                    views = make_views(anchors, a, rng, counters, norm).to(device)
                    del anchors
                    B = len(views) // 2
                    for pg in optimizer.param_groups:
                        pg["lr"] = float(lr_s[it])
                    p = online(views)
                    with torch.no_grad():
                        z = target(views)
                    # View 1 predicts view 2's target projection and vice versa.
                    loss = (regression_loss(p[:B], z[B:]) + regression_loss(p[B:], z[:B])).mean()
                    if not math.isfinite(loss.item()):
                        log("loss is %s at step %d; stopping (try a lower --lr or more --warmup-steps)"
                            % (loss.item(), it + 1))
                        return 1
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if a.clip_grad > 0:
                        torch.nn.utils.clip_grad_norm_(online.parameters(), a.clip_grad)
                    optimizer.step()
                    m = float(mom_s[it])
                    with torch.no_grad():
                        for po, pt in pairs:
                            pt.mul_(m).add_(po.detach(), alpha=1 - m)
                    step = it + 1
                    if clock is not None:
                        total = clock.after_step(step - start)
                        if total is not None:
                            a.steps = until = progress.until = total
                            if not warmup_given:
                                a.warmup_steps = total // 10
                            lr_s = T.cosine_schedule(a.lr, a.min_lr, a.steps, a.warmup_steps)
                            mom_s = T.cosine_schedule(a.momentum_target, 1.0, a.steps)
                            log("--minutes %g: %d steps fit (timed steps 2..%d%s)"
                                % (a.minutes, total, step, "" if clock.final else "; provisional"))
                    progress.step(step, "loss %.4f  lr %.2e  m %.4f  fallbacks %.0f%%"
                                  % (loss.item(), lr_s[it], m,
                                     100 * counters["fallbacks"] / max(counters["anchors"], 1)))
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
            print("%s: steps %d..%d in %.1f s (%.3f steps/s, %.2f img/s, %.1f s waiting for images); "
                  "temporal fallbacks: %d of %d anchors (%.1f%%)"
                  % (prog, start, step, elapsed, done / elapsed, done * a.batch_size / elapsed, buffer.wait_s,
                     counters["fallbacks"], counters["anchors"],
                     100 * counters["fallbacks"] / max(counters["anchors"], 1)))

        # Export the online encoder (BYOL keeps it; the target is a training device).
        if a.export or a.register:
            a.name = a.name or a.register or os.path.splitext(os.path.basename(a.export))[0]
            meta = T.resnet_export_metadata(a, mean, std, a.crop_size, arch,
                                            {"trainer": "tools/train byol", "steps": step,
                                             "bn_eps": repr(float(spec["eps"]))})
            data = T.export_backbone(T.without_batch_counters(online.encoder.state_dict()), meta)
            if a.export:
                T.write_file_atomic(a.export, data)
                print("%s: exported the online encoder after %d steps to %s (%d bytes)"
                      % (prog, step, a.export, len(data)))
            if a.register:
                if conn.closed or conn.broken:
                    conn.close()
                    conn = db_images.connect(a.dsn)
                print("%s: registered model %s: %s" % (prog, a.register, T.register_model(conn, a.register, data)))
        sys.stdout.flush()
        return 0
    except db_images.DatabaseError as e:
        log(str(e))
        return 2
    finally:
        if stream is not None:
            stream.close()
        conn.close()
