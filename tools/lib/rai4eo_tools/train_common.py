"""What every trainer of tools/train shares: command-line options, temporal view
pairing, crops, the bounded anchor buffer, schedules, progress lines, checkpoints,
and the export to safetensors plus registration in the database.

The method-specific parts (model, loss, update) live in train_<method>.py; each
exposes add_arguments(parser) and run(args).
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from rai4eo_tools import db_images
from rai4eo_tools import safetensors_io


# ---- command line -------------------------------------------------------------------

def int_pair(text):
    """Parse 'A,B' (two non-negative integers, A <= B)."""
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected two integers A,B, got %r" % text)
    if a < 0 or b < a:
        raise argparse.ArgumentTypeError("expected 0 <= A <= B, got %r" % text)
    return a, b


def float_pair(text):
    """Parse 'A,B' (two numbers in (0, 1], A <= B)."""
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected two numbers A,B, got %r" % text)
    if not (0 < a <= b <= 1):
        raise argparse.ArgumentTypeError("expected 0 < A <= B <= 1, got %r" % text)
    return a, b


def int_list(text):
    """Parse '1,2,3' (positive integers)."""
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated integers, got %r" % text)
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError("band numbers start at 1")
    return vals


def float_list(text):
    """Parse '0.1,0.2' (numbers)."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated numbers, got %r" % text)


# Options that belong to one invocation (connection, threads, logging, checkpointing,
# export and the feature recipe written into it); all others define the training run,
# and a resumed run takes them from its checkpoint.
RUN_OPTIONS = {"dsn", "device", "threads", "checkpoint", "checkpoint_every", "resume", "until", "minutes",
               "log_every", "export", "register", "name", "quiet", "method",
               "n_last_blocks", "avgpool", "readout", "readout_grid", "input", "export_backbone"}


def add_common_arguments(p):
    """Options every trainer has: data, run control, checkpoints, export."""
    g = p.add_argument_group("data")
    g.add_argument("--dsn", help="libpq connection string (default: PG* environment variables, like psql)")
    g.add_argument("--sensor", default="PF-SR",
                   help="images to train on: a registered sensor (rai4eo.sensor), e.g. PF-SR (4 bands) "
                        "or S2-SR (12 bands); default PF-SR")
    g.add_argument("--bands", type=int_list,
                   help="raster band numbers in model channel order (default: all bands of the sensor)")
    g.add_argument("--scale", type=float, default=1e-4,
                   help="raw values are multiplied by it before normalisation (default 1e-4: "
                        "reflectance x 10000 -> reflectance)")
    g.add_argument("--mean", type=float_list, help="per-band means of raw x scale (default: measured)")
    g.add_argument("--std", type=float_list, help="per-band standard deviations (default: measured)")
    g.add_argument("--stats-images", type=int, default=128,
                   help="images sampled to measure the per-band mean and std (default 128)")
    g.add_argument("--buffer-mb", type=float, default=512,
                   help="memory for decoded images: whole patches are held while their images serve as "
                        "anchors, then replaced by the next patch of the stream (default 512)")
    g.add_argument("--holdout", type=float, default=0.0,
                   help="leave out of training the patches whose split value (blake2b-64 of the "
                        "patch_id / 2^64, as tools/evaluate --holdout) is below this (default 0: none)")
    g.add_argument("--anchor-reuse", type=int, default=1,
                   help="times each image of a buffered patch serves as anchor before the patch is "
                        "replaced (default 1: every image once per epoch)")

    g = p.add_argument_group("run")
    g.add_argument("--steps", type=int, default=100,
                   help="length of the training in optimizer steps; the schedules span it (default 100)")
    g.add_argument("--minutes", type=float,
                   help="train for about this long instead of --steps: the first steps are timed "
                        "and --steps is set from their rate (then fixed, so --resume is exact)")
    g.add_argument("--until", type=int,
                   help="stop this run once STEP steps are done (default --steps); resume later")
    g.add_argument("--batch-size", type=int, default=32, help="anchor images per step (default 32)")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, sampling, crops (default 0)")
    g.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    g.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (default 0: all cores)")
    g.add_argument("--log-every", type=int, default=10, help="progress line every N steps (default 10)")
    g.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")

    g = p.add_argument_group("checkpoints and export")
    g.add_argument("--checkpoint", metavar="PATH",
                   help="training state file, written every --checkpoint-every steps, at the end "
                        "and on Ctrl-C")
    g.add_argument("--checkpoint-every", type=int, default=100, help="default 100 steps")
    g.add_argument("--resume", action="store_true",
                   help="continue the run saved in --checkpoint exactly where it stopped; the "
                        "training options come from the checkpoint")
    g.add_argument("--export", metavar="OUT.safetensors",
                   help="write the teacher backbone with its metadata when the run ends")
    g.add_argument("--register", metavar="NAME",
                   help="also store the exported model in the database: rai4eo_load_model(NAME, ...)")
    g.add_argument("--name", help="model name in the metadata (default: --register, else the export's base name)")
    g.add_argument("--n-last-blocks", type=int, default=1,
                   help="feature recipe written to the metadata: CLS tokens of the last N blocks (default 1)")
    g.add_argument("--avgpool", action="store_true",
                   help="feature recipe: also the mean of the last block's patch tokens (dino: the "
                        "default, --no-avgpool turns it off)")
    g.add_argument("--input", choices=("native", "resize"), default="native",
                   help="input handling written to the metadata (default native: the patch at its own "
                        "size, position embeddings interpolated as DINO does)")


def check_common_arguments(p, a):
    """Validate the shared options (p.error on a bad one)."""
    if a.bands is None:
        nb = db_images.SENSOR_BANDS.get(a.sensor)
        if nb is None:                # a sensor the user registered: its bands from the registry
            import psycopg
            try:
                with psycopg.connect(a.dsn or "") as conn:
                    nb = db_images.sensor_band_count(conn, a.sensor)
            except psycopg.Error as e:
                p.error("cannot read the bands of sensor %s: %s" % (a.sensor, e))
            if nb is None:
                p.error("sensor %s is not registered (rai4eo.sensor)" % a.sensor)
        a.bands = list(range(1, nb + 1))
    C = len(a.bands)
    for key in ("mean", "std"):
        v = getattr(a, key)
        if v is not None and len(v) not in (1, C):
            p.error("--%s needs one value or one per band (%d)" % (key, C))
        if v is not None and len(v) == 1:
            setattr(a, key, v * C)
    if a.std is not None and min(a.std) <= 0:
        p.error("--std values must be > 0")
    if (a.mean is None) != (a.std is None):
        p.error("give both --mean and --std, or neither")
    if a.steps < 0:
        p.error("--steps must be >= 0")
    if a.until is not None and a.until < 0:
        p.error("--until must be >= 0")
    if a.batch_size < 1:
        p.error("--batch-size must be >= 1")
    if a.buffer_mb <= 0 or a.anchor_reuse < 1:
        p.error("--buffer-mb must be > 0 and --anchor-reuse >= 1")
    if a.checkpoint_every < 1 or a.log_every < 1:
        p.error("--checkpoint-every and --log-every must be >= 1")
    if a.resume and not a.checkpoint:
        p.error("--resume needs --checkpoint PATH")
    if a.n_last_blocks < 1:
        p.error("--n-last-blocks must be >= 1")
    if a.scale <= 0 or not math.isfinite(a.scale):
        p.error("--scale must be a positive number")
    if not 0 <= a.holdout < 1:
        p.error("--holdout lies in [0, 1)")
    if a.minutes is not None and a.minutes <= 0:
        p.error("--minutes must be > 0")


def holdout_value(pid):
    """A patch's place in [0, 1): blake2b-64 of its decimal id / 2^64 (tools/evaluate's)."""
    import hashlib
    h = hashlib.blake2b(str(int(pid)).encode("ascii"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0 ** 64


def training_patches(pids, holdout):
    """The patches training may use: those whose holdout_value is at least holdout."""
    if holdout <= 0:
        return pids
    return type(pids)([p for p in pids if holdout_value(p) >= holdout]) if not isinstance(pids, np.ndarray) \
        else pids[np.array([holdout_value(p) >= holdout for p in pids], bool)]


class StepBudget:
    """--minutes: how many steps fit into the budget, from the time the steps take.

    The steps after the first (which fills the buffer) are timed twice: after `probe`
    steps a provisional count is returned, and once `share` of the budget has passed
    the final one (the schedules are still in their warm-up then, so stretching them
    is smooth).  A probe of a few steps alone read a rate 20-50 % too high on a shared
    machine: other jobs and the reader thread compete later in the run."""

    def __init__(self, minutes, probe=4, share=0.1):
        self.budget = minutes * 60.0
        self.probe = probe
        self.share = share
        self.t0 = time.monotonic()
        self.t1 = None
        self.provisional = False
        self.final = False

    def _total(self, step, now):
        per = (now - self.t1) / (step - 1)
        left = self.budget - (now - self.t0)
        return max(step + 1, step + int(left / max(per, 1e-6)))

    def after_step(self, step):
        """Called after each step (1-based, from the run's start); returns a step count
        when the provisional or the final estimate is made, else None."""
        now = time.monotonic()
        if step == 1:
            self.t1 = now
            return None
        if self.final or step < 1 + self.probe:
            return None
        if now - self.t0 >= self.share * self.budget:
            self.final = self.provisional = True
            return self._total(step, now)
        if not self.provisional:
            self.provisional = True
            return self._total(step, now)
        return None


# ---- temporal positives ---------------------------------------------------------------

def pick_in_window(days, anchor, window, rng):
    """An image whose date lies window[0]..window[1] days (inclusive) from the anchor's.

    days: acquisition days of one patch's images.  Returns (index, fell_back).  With
    no image in the window, the fallback is the image nearest to the window (ties
    drawn at random), never the anchor itself unless the patch has no other image.
    """
    days = np.asarray(days)
    lo, hi = window
    d = np.abs(days - days[anchor])
    idx = np.arange(len(days))
    cand = idx[(d >= lo) & (d <= hi) & (idx != anchor)]
    if cand.size:
        return int(cand[rng.integers(cand.size)]), False
    others = idx[idx != anchor]
    if others.size == 0:
        return int(anchor), True
    dist = np.where(d[others] < lo, lo - d[others], d[others] - hi)
    best = others[dist == dist.min()]
    return int(best[rng.integers(best.size)]), True


def pick_other_year(days, anchor, window, rng):
    """An image of another year within window days of the anchor's day of year (the
    nearest one when none is), or None when the patch has images of one year only."""
    days = np.asarray(days)
    lag = days - days[anchor]
    years = np.round(lag / 365.25)
    other = years != 0
    if not other.any():
        return None
    off = np.abs(lag - 365.25 * years)
    idx = np.flatnonzero(other & (off <= window))
    if idx.size:
        return int(idx[rng.integers(idx.size)])
    cand = np.flatnonzero(other)
    return int(cand[np.argmin(off[cand])])


def temporal_views(days, anchor, n_local, global_window, local_window, rng, cross_year=0.0,
                   year_window=30):
    """Images for one anchor's crops: [anchor, global partner], [local images], fallbacks.

    The two global crops come from the anchor and an image global_window days
    away -- or, with probability cross_year, an image of another year within
    year_window days of the same day of year (so inter-annual variation, such as a
    spring weeks late or another crop in a field, becomes a nuisance to ignore);
    each local crop from its own draw of an image local_window days away.
    Returns (global_idx, local_idx, global_fallbacks, local_fallbacks).
    """
    partner = None
    if cross_year > 0 and rng.random() < cross_year:
        partner = pick_other_year(days, anchor, year_window, rng)
        gfb = False
    if partner is None:
        partner, gfb = pick_in_window(days, anchor, global_window, rng)
    local, lfb = [], 0
    for _ in range(n_local):
        j, fb = pick_in_window(days, anchor, local_window, rng)
        local.append(j)
        lfb += int(fb)
    return [int(anchor), partner], local, int(gfb), lfb


# ---- crops ---------------------------------------------------------------------------

def random_resized_box(h, w, scale, ratio, rng):
    """A crop box (top, left, height, width) covering scale of the area with an aspect ratio
    drawn log-uniformly from ratio; after 10 misses, the largest centred box whose aspect
    ratio lies within ratio."""
    area = h * w
    lr = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(lr[0], lr[1]))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            return top, left, ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class Normaliser:
    """(raw * scale - mean) / std per band, non-finite (nodata) -> 0: the database's rule."""

    def __init__(self, scale, mean, std):
        self.scale = float(scale)
        self.mean = torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1)

    def __call__(self, raw):
        x = (torch.as_tensor(raw) * self.scale - self.mean) / self.std
        return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


class single_thread:
    """Run a block with one torch thread: the many small tensor ops of cropping are
    faster without a thread team to wake (and leave the other cores alone)."""

    def __enter__(self):
        self.n = torch.get_num_threads()
        if self.n != 1:
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self.n != 1:
            torch.set_num_threads(self.n)
        return False


# Radiometric nuisances of Planet Fusion-like series, in reflectance units per band
# (B, G, R, N, then the longer wavelengths): the haze spectrum rises towards the blue.
HAZE_SPECTRUM = (0.040, 0.030, 0.022, 0.012, 0.010, 0.009, 0.008, 0.008, 0.005, 0.004, 0.045, 0.008)


def radiometric_jitter(x, norm, rng, strength):
    """What changes between acquisitions of an unchanged place, applied to a normalised
    C x S x S crop: a gain common to all bands (+-5 % x strength) and per band
    (+-2 %), per-band offsets, haze (an additive blue-heavy layer mixed with a blurred
    copy, on 30 % of the crops), a cloud shadow (a smooth darkening, 20 %) and sensor
    noise; all drawn from rng.  strength 0 returns x unchanged."""
    if strength <= 0:
        return x
    C = x.shape[0]
    mean = norm.mean[:C]
    std = norm.std[:C]
    r = (x * std + mean) / norm.scale * 1e-4                     # reflectance
    g = (1.0 + strength * 0.05 * (2 * rng.random() - 1)) \
        * (1.0 + strength * 0.02 * (2 * rng.random(C) - 1))
    o = strength * 0.004 * rng.standard_normal(C)
    r = r * torch.tensor(g, dtype=torch.float32).view(C, 1, 1) + torch.tensor(o, dtype=torch.float32).view(C, 1, 1)
    S = x.shape[-1]
    if rng.random() < 0.3 * min(1.0, strength):
        h = float(rng.uniform(0.2, 1.0)) * strength
        spec = torch.tensor([HAZE_SPECTRUM[i % len(HAZE_SPECTRUM)] for i in range(C)]).view(C, 1, 1)
        k = max(1, S // 8)
        blur = F.avg_pool2d(r.unsqueeze(0), k, k, ceil_mode=True)
        blur = F.interpolate(blur, size=(S, S), mode="nearest").squeeze(0)
        r = r + h * (0.5 * (blur - r) + spec)
    if rng.random() < 0.2 * min(1.0, strength):
        cy, cx = rng.uniform(0, S, 2)
        sig = rng.uniform(0.2, 0.6) * S
        yy = torch.arange(S, dtype=torch.float32).view(S, 1)
        xx = torch.arange(S, dtype=torch.float32).view(1, S)
        m = torch.exp(-((yy - float(cy)) ** 2 + (xx - float(cx)) ** 2) / (2 * float(sig) ** 2))
        r = r * (1.0 - float(rng.uniform(0.3, 0.6)) * m)
    r = r + strength * 0.003 * torch.from_numpy(rng.standard_normal(r.shape).astype(np.float32))
    return (r * 1e4 * norm.scale - mean) / std


def crop_geometry(h, w, scale, rng, flips=True, rot90=False):
    """The geometric part of a view, drawn once so that several views can share it: a crop
    box (random_resized_box), vertical and horizontal flips, quarter turns."""
    box = random_resized_box(h, w, scale, (3 / 4, 4 / 3), rng)
    fv = bool(flips and rng.random() < 0.5)
    fh = bool(flips and rng.random() < 0.5)
    k = int(rng.integers(4)) if rot90 else 0
    return box, fv, fh, k


def make_crop(image, size, scale, rng, flips=True, rot90=False, brightness=0.0, norm=None, jitter=0.0,
              geometry=None):
    """One augmented view of a normalised C x H x W image: a random resized crop,
    resized to size x size (bilinear, antialiased when shrinking), random flips (and
    quarter turns).  brightness > 0 multiplies the reflectance of all bands by one
    factor from [1 - b, 1 + b] (spectral ratios stay; norm, the Normaliser the image
    went through, says how that reads on normalised values).  geometry, from
    crop_geometry, replaces the crop box, flips and turns drawn here (views of two
    dates that must stay pixel-aligned)."""
    C, H, W = image.shape
    if geometry is None:
        top, left, ch, cw = random_resized_box(H, W, scale, (3 / 4, 4 / 3), rng)
    else:
        (top, left, ch, cw), fv, fh, k = geometry
    x = image[:, top:top + ch, left:left + cw]
    shrink = ch > size or cw > size
    x = F.interpolate(x.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=False,
                      antialias=shrink).squeeze(0)
    if brightness > 0:
        g = float(rng.uniform(1 - brightness, 1 + brightness))
        # raw * g, normalised: g * x + (g - 1) * mean / std
        x = x * g + (g - 1) * (norm.mean / norm.std)
    if jitter > 0:
        x = radiometric_jitter(x, norm, rng, jitter)
    if geometry is None:
        # (drawn in this order after the radiometry: the order older runs drew them in)
        fh = flips and rng.random() < 0.5
        fv = flips and rng.random() < 0.5
        k = int(rng.integers(4)) if rot90 else 0
    if fh:
        x = x.flip(2)
    if fv:
        x = x.flip(1)
    if k:
        x = torch.rot90(x, k, (1, 2))
    return x


# ---- the anchor buffer ---------------------------------------------------------------

class AnchorBuffer:
    """Whole patches in memory, each image drawn as anchor `reuse` times, then replaced.

    Images are held as prepare() made them (normalised float32 tensors).  Patches
    are added while the bytes held are below budget_bytes (so it is passed by at
    most one patch; the reader holds two more, read ahead), at least one and never
    more patches than the corpus has.  A batch draws its anchors from the buffered
    patches in proportion to the draws they have left, so the corpus is visited
    once per epoch (times reuse) while a batch mixes many patches.  state() and
    restore() make the draws after a resume equal to those of an uninterrupted run.
    """

    def __init__(self, stream, budget_bytes, reuse, rng, max_patches, prepare):
        self.stream, self.budget, self.reuse, self.rng = stream, budget_bytes, reuse, rng
        self.max_patches = max_patches
        self.prepare = prepare              # raw image (numpy) -> what crops are cut from
        self.patches = []                   # dicts: pid, days, images, queue (anchor indices), nbytes
        self.wait_s = 0.0                   # time spent waiting for the reader

    def _entry(self, pid, days, images, queue=None):
        """A held patch: its images prepared, its anchor draws shuffled (or as saved)."""
        if queue is None:
            queue = list((self.rng.permutation(len(days) * self.reuse) % len(days)).tolist()) if len(days) else []
        with single_thread():
            images = [self.prepare(im) for im in images]
        return {"pid": int(pid), "days": days, "images": images, "queue": queue,
                "nbytes": sum(im.numel() * im.element_size() for im in images)}

    def nbytes(self):
        """Bytes of decoded images held."""
        return sum(p["nbytes"] for p in self.patches)

    def fill(self):
        """Read patches from the stream until the budget or the patch cap is reached."""
        while not self.patches or (self.nbytes() < self.budget and len(self.patches) < self.max_patches):
            t0 = time.monotonic()
            pid, days, images = self.stream.next()
            self.wait_s += time.monotonic() - t0
            if len(days) == 0:
                continue
            self.patches.append(self._entry(pid, days, images))

    def draw(self, n):
        """n anchors: (patch entry, image index) pairs."""
        out = []
        for _ in range(n):
            self.fill()
            left = np.array([len(p["queue"]) for p in self.patches], dtype=np.float64)
            k = int(self.rng.choice(len(self.patches), p=left / left.sum()))
            entry = self.patches[k]
            out.append((entry, entry["queue"].pop()))
            if not entry["queue"]:
                del self.patches[k]
        return out

    def state(self):
        """What restore() needs: the stream position, the held patches and their draws left."""
        epoch, pos = self.stream.state()
        return {"stream": [int(epoch), int(pos)],
                "patches": [{"pid": p["pid"], "queue": list(p["queue"])} for p in self.patches]}

    def restore(self, state, load_patch):
        """Hold the patches a saved state held (load_patch(pid) -> (days, images))."""
        self.patches = []
        for p in state["patches"]:
            days, images = load_patch(p["pid"])
            if len(days) * self.reuse < len(p["queue"]) or (p["queue"] and max(p["queue"]) >= len(days)):
                raise db_images.DatabaseError("patch %d changed since the checkpoint was written" % p["pid"])
            self.patches.append(self._entry(p["pid"], days, images, list(p["queue"])))


# ---- schedules -----------------------------------------------------------------------

def cosine_schedule(base, final, steps, warmup_steps=0, start_warmup=0.0):
    """Per-step values: linear warm-up from start_warmup to base, then a cosine from base to final."""
    warmup_steps = min(max(warmup_steps, 0), steps)
    warm = np.linspace(start_warmup, base, warmup_steps, endpoint=False) if warmup_steps else np.zeros(0)
    n = steps - warmup_steps
    it = np.arange(n)
    cos = final + 0.5 * (base - final) * (1 + np.cos(np.pi * it / max(n, 1)))
    return np.concatenate([warm, cos]).astype(np.float64)


# ---- devices and random state ----------------------------------------------------------

def pick_device(name):
    """The torch device: the one named, else cuda when available, else cpu."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_threads(n):
    """Use n CPU threads (0: every core this process may run on) in torch and in the
    OpenBLAS that Debian's torch calls for matrix products: OpenBLAS otherwise starts
    one thread per core on top of torch's, and the two teams fight over the cores."""
    if not n:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = max(1, n)
    torch.set_num_threads(n)
    try:
        import ctypes
        ctypes.CDLL("libopenblas.so.0").openblas_set_num_threads(ctypes.c_int(n))
    except (OSError, AttributeError):
        pass                                          # another BLAS: it manages itself
    return torch.get_num_threads()


def rng_state(np_rng):
    """Random generator states worth saving: torch (CPU, CUDA) and the numpy generator."""
    state = {"torch": torch.get_rng_state(), "numpy": np_rng.bit_generator.state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state, np_rng):
    """Restore what rng_state saved."""
    torch.set_rng_state(state["torch"])
    np_rng.bit_generator.state = state["numpy"]
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except RuntimeError:
            pass                                     # another GPU count: CPU state is enough


# ---- checkpoints -----------------------------------------------------------------------

def save_checkpoint(path, state):
    """Write the training state atomically (a crash never leaves half a file)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".part"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, kind):
    """Read a training state written by save_checkpoint for trainer `kind`."""
    state = torch.load(path, map_location="cpu")
    if not isinstance(state, dict) or state.get("format") != "rai4eo-train-checkpoint":
        raise ValueError("%s is not a tools/train checkpoint" % path)
    if state.get("method") != kind:
        raise ValueError("%s is a %s checkpoint, not %s" % (path, state.get("method"), kind))
    return state


def apply_checkpoint_args(args, saved, given, log):
    """Take the training options of a resumed run from its checkpoint.

    given: the options the command line set (name -> value as parsed).  Those that
    differ from the checkpoint's are ignored with a note: changing them would not
    continue the same run.
    """
    def same(x, y):
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            return list(x) == list(y)
        return x == y

    for key, val in saved.items():
        if key in RUN_OPTIONS:
            continue
        if key in given and not same(given[key], val):
            log("note: --%s %s ignored: the checkpoint's run uses %s" % (key.replace("_", "-"), given[key], val))
        setattr(args, key, val)


class RunError(Exception):
    """A run that cannot start; the message says why (the trainer exits with status 2)."""


def stderr_logger(prog):
    """A log function writing "prog: message" lines to stderr."""
    def log(msg):
        sys.stderr.write("%s: %s\n" % (prog, msg))
        sys.stderr.flush()
    return log


def begin_run(a, given, kind, log):
    """What every trainer does first: the checkpoint to resume (None for a fresh run, its
    training options applied to a), the step range (start, until), and the device and
    thread count, deterministic on the CPU.  RunError for a missing or foreign checkpoint
    or an --until beyond --steps."""
    ckpt = None
    if a.resume:
        if not os.path.exists(a.checkpoint):
            raise RunError("no checkpoint at %s to resume" % a.checkpoint)
        try:
            ckpt = load_checkpoint(a.checkpoint, kind)
        except (ValueError, RuntimeError, OSError) as e:
            raise RunError(str(e))
        apply_checkpoint_args(a, ckpt["args"], given, log)
    until = a.steps if a.until is None else a.until
    if until > a.steps:
        raise RunError("--until %d is beyond --steps %d" % (until, a.steps))
    start = int(ckpt["step"]) if ckpt else 0
    device = pick_device(a.device)
    threads = set_threads(a.threads)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    return ckpt, start, until, device, threads


# ---- export -----------------------------------------------------------------------------

def export_metadata(args, mean, std, img_size, num_heads, ln_eps, extra=None):
    """The safetensors __metadata__ (strings holding JSON text) of an exported ViT."""
    meta = {
        "arch": "vit",
        "bands": json.dumps(list(args.bands), separators=(",", ":")),
        "scale": repr(float(args.scale)),
        "mean": json.dumps([float(v) for v in mean], separators=(",", ":")),
        "std": json.dumps([float(v) for v in std], separators=(",", ":")),
        "input": args.input,
        "img_size": str(int(img_size)),
        "n_last_blocks": str(int(args.n_last_blocks)),
        "avgpool": "true" if args.avgpool else "false",
        "readout": getattr(args, "readout", "cls"),
        "num_heads": str(int(num_heads)),
        "ln_eps": repr(float(ln_eps)),
        "sensor": args.sensor,
    }
    if getattr(args, "readout", "cls") == "token_stats":
        meta["readout_grid"] = str(int(getattr(args, "readout_grid", 1)))
    if args.name:
        meta["name"] = args.name
    if extra:
        meta.update({k: str(v) for k, v in extra.items()})
    return meta


def export_backbone(state_dict, metadata):
    """safetensors bytes of a backbone state dict (float32, contiguous)."""
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    return safetensors_io.serialize(tensors, metadata)


def register_model(conn, name, weights, config=None):
    """Store exported weights in the database; returns what rai4eo_load_model says.

    config: a dict for rai4eo_load_model's configuration argument, which overrides
    the file's metadata key by key (default none: the metadata alone)."""
    have = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'rai4eo_load_model')").fetchone()[0]
    if not have:
        raise db_images.DatabaseError("rai4eo_load_model() is not installed in this database "
                                      "(a newer rai4eo is needed to --register)")
    return conn.execute("SELECT rai4eo_load_model(%s, %s, %s::jsonb, replace => true)",
                        (name, weights, json.dumps(config or {}))).fetchone()[0]


def write_file_atomic(path, data):
    """Write bytes to path through a temporary file and a rename."""
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ---- progress ---------------------------------------------------------------------------

def hms(s):
    """Seconds as H:MM:SS."""
    s = int(max(s, 0))
    return "%d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60)


class Progress:
    """Progress lines on stderr: step, loss, images/s, ETA (rates over the run so far)."""

    def __init__(self, prefix, start_step, until, batch, every, quiet):
        self.prefix, self.start, self.until, self.batch = prefix, start_step, until, batch
        self.every, self.quiet = every, quiet
        self.t0 = time.monotonic()

    def log(self, msg):
        sys.stderr.write("%s: %s\n" % (self.prefix, msg))
        sys.stderr.flush()

    def rate(self, step):
        el = time.monotonic() - self.t0
        done = step - self.start
        return el, (done / el if el > 0 else 0.0)

    def step(self, step, fields):
        if self.quiet or not (step % self.every == 0 or step == self.until):
            return
        el, sps = self.rate(step)
        eta = (self.until - step) / sps if sps > 0 else 0.0
        self.log("step %d/%d  %s  %.2f steps/s  %.1f img/s  ETA %s"
                 % (step, self.until, fields, sps, sps * self.batch, hms(eta)))


# ---- shared by the supervised and BYOL trainers -------------------------------------------

class Interrupt:
    """Ctrl-C ends the run after the current step (a second one at once)."""

    def __init__(self, prog):
        self.prog = prog
        self.requested = False
        self._old = None

    def __enter__(self):
        import signal

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            sys.stderr.write("\n%s: stopping after this step (Ctrl-C again to abort)\n" % self.prog)
        try:
            self._old = signal.signal(signal.SIGINT, handler)
        except ValueError:                         # not the main thread
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            import signal
            signal.signal(signal.SIGINT, self._old)
        return False


def open_database(dsn, log):
    """A db_images connection, or None after logging why there is none."""
    try:
        return db_images.connect(dsn)
    except db_images.DatabaseError as e:
        log(str(e))
    except Exception as e:                              # noqa: BLE001 - psycopg.OperationalError and kin
        log("cannot connect: %s" % str(e).strip())
    return None


def normalisation(conn, a, pids, saved, log):
    """Per-band (mean, std): from a checkpoint's `saved` dict, the options, or measured
    on a sample of the patches' images (a constant band gets std 1).  None (logged)
    when no image could be read."""
    if saved:
        return list(saved["mean"]), list(saved["std"])
    if a.mean is not None:
        return list(a.mean), list(a.std)
    t0 = time.monotonic()
    mean, std, nread = db_images.band_statistics(conn, a.sensor, a.bands, a.scale, pids,
                                                 a.stats_images, np.random.default_rng([a.seed, 1]))
    if nread == 0:
        log("no image could be read for the statistics")
        return None
    for i, s in enumerate(std):
        if not s > 0:
            log("band %d is constant in the sample; its std is set to 1" % a.bands[i])
            std[i] = 1.0
    if not a.quiet:
        log("band statistics of raw x %g from %d images (%.1f s): mean %s, std %s"
            % (a.scale, nread, time.monotonic() - t0,
               "[" + ", ".join("%.5g" % v for v in mean) + "]",
               "[" + ", ".join("%.5g" % v for v in std) + "]"))
    return mean, std


def patch_images_in_years(conn, patch_id, sensor, bands, years):
    """db_images.patch_images restricted to images acquired in the given years (None: all)."""
    if years is None:
        return db_images.patch_images(conn, patch_id, sensor, bands)
    days, images = [], []
    sql = ("SELECT acquired, " + db_images._VALUES + " FROM rai4eo.image "
           "WHERE patch_id = %s AND sensor = %s AND extract(year FROM acquired)::int = ANY(%s) "
           "ORDER BY acquired")
    for acquired, values in db_images._stream_rows(conn, sql, (list(bands), patch_id, sensor,
                                                               [int(y) for y in years])):
        if values.ndim != 3 or values.shape[0] != len(bands):
            raise db_images.DatabaseError("image of patch %d on %s decoded to shape %s, not %d bands"
                                          % (patch_id, acquired, values.shape, len(bands)))
        days.append(db_images.day_number(acquired))
        images.append(values)
    return np.array(days, dtype=np.int64), images


class YearPatchStream(db_images.PatchStream):
    """A PatchStream that hands out only the images acquired in `years` (None: all)."""

    def __init__(self, dsn, sensor, bands, pids, seed, epoch=0, pos=0, ahead=2, years=None):
        self.years = None if years is None else [int(y) for y in years]   # read by the thread
        super().__init__(dsn, sensor, bands, pids, seed, epoch=epoch, pos=pos, ahead=ahead)

    def _fetch(self, conn, pid):
        """One patch's images of the years, reconnecting like PatchStream._fetch."""
        import psycopg
        for attempt in range(db_images.RETRIES + 1):
            try:
                if conn is None or conn.closed:
                    conn = db_images.connect(self._dsn)
                return conn, patch_images_in_years(conn, pid, self.sensor, self.bands, self.years)
            except psycopg.OperationalError:
                if attempt == db_images.RETRIES or self._stop.is_set():
                    raise
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(min(2 ** attempt, 30))


def optimizer_to(optimizer, device):
    """Move an optimizer's state tensors (not its step counters) to the device."""
    for st in optimizer.state.values():
        for k, v in st.items():
            if torch.is_tensor(v) and k != "step":
                st[k] = v.to(device)


def weight_decay_groups(module):
    """AdamW groups: weight decay on weights, none on biases and norm parameters."""
    reg, noreg = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (noreg if name.endswith(".bias") or p.ndim == 1 else reg).append(p)
    return [{"params": reg}, {"params": noreg, "weight_decay": 0.0}]


def resnet_export_metadata(args, mean, std, img_size, arch, extra=None):
    """The safetensors __metadata__ of an exported ResNet (no ViT-only keys: the
    database refuses them for a ResNet)."""
    meta = {
        "arch": arch,
        "bands": json.dumps(list(args.bands), separators=(",", ":")),
        "scale": repr(float(args.scale)),
        "mean": json.dumps([float(v) for v in mean], separators=(",", ":")),
        "std": json.dumps([float(v) for v in std], separators=(",", ":")),
        "input": args.input,
        "img_size": str(int(img_size)),
        "sensor": args.sensor,
    }
    if getattr(args, "readout", "cls") == "token_stats":
        meta["readout_grid"] = str(int(getattr(args, "readout_grid", 1)))
    if args.name:
        meta["name"] = args.name
    if extra:
        meta.update({k: str(v) for k, v in extra.items()})
    return meta


def without_batch_counters(state_dict):
    """A state dict without BatchNorm's num_batches_tracked (integers the engine ignores)."""
    return {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}


def metadata_config(meta):
    """safetensors metadata (JSON text or bare words) as configuration values."""
    out = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except (TypeError, ValueError):
            out[k] = v
    return out


def read_model(conn, source):
    """Weights and configuration of an existing model, to initialise a backbone from.

    source: a model name in rai4eo.model (its stored weights and resolved
    configuration), or the path of a .safetensors file (its metadata).  Returns
    (tensors as float32 torch tensors, configuration dict, description).
    """
    if source.endswith(".safetensors") and os.path.exists(source):
        with open(source, "rb") as f:
            data = f.read()
        tensors, meta = safetensors_io.deserialize(data, "torch")
        config, what = metadata_config(meta), "file %s" % source
    else:
        row = conn.execute("SELECT weights, config FROM rai4eo.model WHERE name = %s", (source,)).fetchone()
        if row is None:
            raise db_images.DatabaseError("no model %r in rai4eo.model (nor a .safetensors file of that name)"
                                          % source)
        try:
            tensors, meta = safetensors_io.deserialize(bytes(row[0]), "torch")
        except ValueError as e:
            raise db_images.DatabaseError("model %s holds no readable safetensors weights: %s" % (source, e))
        config = metadata_config(meta)
        config.update(row[1] or {})
        what = "model %s" % source
    out = {}
    for k, v in tensors.items():
        if not torch.is_tensor(v):
            raise db_images.DatabaseError("%s: tensor %s has a dtype torch cannot read" % (what, k))
        out[k] = v if k.endswith("num_batches_tracked") else v.float()
    return out, config, what
