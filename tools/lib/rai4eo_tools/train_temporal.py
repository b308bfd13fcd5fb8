"""A temporal CLC classifier: an LSTM or GRU over a patch's sequence of stored embeddings.

Inputs are the embeddings of any stored model (--input-model) of a patch's images of one
year, oldest first (rai4eo.embedding: compute them with CALL rai4eo_refresh_embeddings);
labels come from rai4eo.patch_clc (--classes class7|level2, --min-fraction), and the split
is tools/train supervised's: blake2b-64 of the patch id (--val-fraction), --label-fraction
a nested subset of the training patches.  Each step draws --batch-size training patches and
a random contiguous part (--min-window .. 100 %) of each one's sequence, so that the model
also classifies part of a year (class_transitions classifies the year from a change's
onset on).  BCE with logits, AdamW with a cosine schedule.

--baseline also trains, in the same run and on the same split, the mono-temporal classifier
of the same embeddings (one image at a time, an MLP of the same width) and reports both:
per class, micro and macro F1 (the temporal model per validation patch-year, the
mono-temporal one per validation image).  Exported with nn.LSTM / nn.GRU key names
(weight_ih_l0, ...) and the metadata rai4eo_classify_series needs; --register stores it.
"""

import json
import os
import time

import numpy as np
import torch
from torch import nn

from rai4eo_tools import train_common as T
from rai4eo_tools import train_supervised as S
from rai4eo_tools import safetensors_io
from rai4eo_tools.temporal_reference import TemporalClassifier


def add_arguments(p):
    g = p.add_argument_group("data")
    g.add_argument("--dsn", help="libpq connection string (default: PG* variables, like psql)")
    g.add_argument("--input-model", required=True, help="the stored model whose embeddings form the sequences")
    g.add_argument("--sensor", default="PF-SR", help="a registered sensor (rai4eo.sensor); default PF-SR")
    g.add_argument("--years", type=S.year_list, default=[2018],
                   help="years whose sequences are samples (default 2018, the labels' year)")
    g.add_argument("--classes", choices=("class7", "level2"), default="class7")
    g.add_argument("--min-fraction", type=float, default=0.1, help="class positive from this share (default 0.1)")
    g.add_argument("--val-fraction", type=float, default=0.2, help="held-out share of patches (default 0.2)")
    g.add_argument("--label-fraction", type=float, default=1.0, help="share of training patches used (default 1)")
    g = p.add_argument_group("model")
    g.add_argument("--arch", choices=("lstm", "gru"), default="lstm")
    g.add_argument("--hidden", type=int, default=64, help="hidden units (default 64)")
    g.add_argument("--layers", type=int, default=1, help="recurrent layers (default 1)")
    g.add_argument("--attention", action="store_true", help="temporal attention pooling instead of the last step")
    g.add_argument("--no-l2-normalize", dest="l2_normalize", action="store_false",
                   help="feed embeddings as stored (default: unit norm first)")
    g.add_argument("--min-window", type=float, default=0.3,
                   help="shortest part of a sequence drawn in training, as a share (default 0.3)")
    g.add_argument("--baseline", action="store_true", help="also train and report the mono-temporal classifier")
    g = p.add_argument_group("run")
    g.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    g.add_argument("--until", type=int, help="stop once STEP steps are done; resume later")
    g.add_argument("--batch-size", type=int, default=16, help="sequences per step (default 16)")
    g.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--threshold", type=float, default=0.5, help="probability cut in the report (default 0.5)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    g.add_argument("--threads", type=int, default=0, help="CPU threads (default all cores)")
    g.add_argument("--log-every", type=int, default=50)
    g.add_argument("--quiet", action="store_true")
    g = p.add_argument_group("checkpoints and export")
    g.add_argument("--checkpoint", metavar="PATH")
    g.add_argument("--checkpoint-every", type=int, default=100)
    g.add_argument("--resume", action="store_true")
    g.add_argument("--report", metavar="FILE.json", help="write the validation report")
    g.add_argument("--export", metavar="OUT.safetensors")
    g.add_argument("--register", metavar="NAME", help="store the model: rai4eo_load_model(NAME, ...)")
    g.add_argument("--name", help="model name in the metadata")


def check_arguments(p, a):
    if a.steps < 0 or (a.until is not None and a.until < 0):
        p.error("--steps and --until must be >= 0")
    if a.batch_size < 1 or a.hidden < 1 or a.layers < 1:
        p.error("--batch-size, --hidden and --layers must be >= 1")
    if not 0 < a.label_fraction <= 1 or not 0 <= a.val_fraction < 1 or not 0 < a.min_window <= 1:
        p.error("--label-fraction and --min-window must be in (0, 1], --val-fraction in [0, 1)")
    if a.resume and not a.checkpoint:
        p.error("--resume needs --checkpoint PATH")
    if a.checkpoint_every < 1 or a.log_every < 1:
        p.error("--checkpoint-every and --log-every must be >= 1")


# ---- data ---------------------------------------------------------------------------------

def load_sequences(conn, model, sensor, years):
    """{(patch_id, year): float32 [T][D]} of the stored embeddings, oldest first."""
    rows = conn.execute(
        "SELECT e.patch_id, extract(year FROM rai4eo.image_acquired(e.image_id))::int, "
        "e.emb::text FROM rai4eo.embedding e WHERE e.model = %s "
        "AND rai4eo.image_sensor_code(e.image_id) = rai4eo.sensor_code(%s) "
        "ORDER BY e.image_id", (model, sensor)).fetchall()
    out = {}
    for pid, year, text in rows:
        if year in years:
            out.setdefault((int(pid), int(year)), []).append(np.array(json.loads(text), np.float32))
    return {k: np.stack(v) for k, v in out.items()}


def batch(seqs, device):
    """Padded [B][T][D] and lengths."""
    L = torch.tensor([len(s) for s in seqs])
    x = torch.zeros(len(seqs), int(L.max()), seqs[0].shape[1])
    for i, s in enumerate(seqs):
        x[i, :len(s)] = torch.from_numpy(s)
    return x.to(device), L


def window(seq, min_window, rng):
    """A random contiguous part of a sequence, at least min_window of it."""
    n = len(seq)
    k = int(rng.integers(max(1, int(np.ceil(min_window * n))), n + 1))
    s = int(rng.integers(0, n - k + 1))
    return seq[s:s + k]


class MonoClassifier(nn.Module):
    """The mono-temporal baseline: one embedding -> logits, an MLP as wide as the RNN."""

    def __init__(self, input_dim, hidden, classes, l2_normalize):
        super().__init__()
        self.l2_normalize = l2_normalize
        self.net = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x):
        if self.l2_normalize:
            x = nn.functional.normalize(x, dim=-1, eps=1e-12)
        return self.net(x)


def counts(pred, y):
    return ((pred & y).sum(0), (pred & ~y).sum(0), (~pred & y).sum(0), (~pred & ~y).sum(0))


@torch.no_grad()
def evaluate_temporal(model, keys, data, labels, a, device):
    model.eval()
    K = len(next(iter(labels.values())))
    tot = [np.zeros(K, np.int64) for _ in range(4)]
    for i in range(0, len(keys), 64):
        ks = keys[i:i + 64]
        x, L = batch([data[k] for k in ks], device)
        pred = (torch.sigmoid(model(x, L)) > a.threshold).cpu().numpy()
        y = np.stack([labels[k[0]] for k in ks]).astype(bool)
        tot = [t + c for t, c in zip(tot, counts(pred, y))]
    model.train()
    return tot, len(keys)


@torch.no_grad()
def evaluate_mono(model, keys, data, labels, a, device):
    model.eval()
    K = len(next(iter(labels.values())))
    tot = [np.zeros(K, np.int64) for _ in range(4)]
    n = 0
    for k in keys:
        x = torch.from_numpy(data[k]).to(device)
        pred = (torch.sigmoid(model(x)) > a.threshold).cpu().numpy()
        y = np.repeat(labels[k[0]][None].astype(bool), len(pred), 0)
        tot = [t + c for t, c in zip(tot, counts(pred, y))]
        n += len(pred)
    model.train()
    return tot, n


def export_metadata(a, classes):
    meta = {"arch": a.arch, "classes": json.dumps(classes), "multilabel": "true",
            "l2_normalize": "true" if a.l2_normalize else "false", "input_model": a.input_model,
            "sensor": a.sensor}
    name = a.name or a.register
    if name:
        meta["name"] = name
    return meta


# ---- training --------------------------------------------------------------------------------

def run(a, given):
    prog = "train temporal"
    log = T.stderr_logger(prog)
    # what to report and where belong to this invocation, not to the resumed run
    own = {k: getattr(a, k) for k in ("report", "threshold")}
    try:
        ckpt, start, until, device, threads = T.begin_run(a, given, "temporal", log)
    except T.RunError as e:
        log(str(e))
        return 2
    for k, v in own.items():
        setattr(a, k, v)
    conn = T.open_database(a.dsn, log)
    if conn is None:
        return 2
    classes, names = S.class_list(conn, a.classes)
    data = load_sequences(conn, a.input_model, a.sensor, set(a.years))
    if not data:
        log("no embeddings of model %r for %s in %s: run CALL rai4eo_refresh_embeddings(%r) first"
            % (a.input_model, a.sensor, a.years, a.input_model))
        return 2
    have_labels = {int(r[0]) for r in conn.execute("SELECT DISTINCT patch_id FROM rai4eo.patch_clc")}
    pids = np.array(sorted({k[0] for k in data} & have_labels), dtype=np.int64)
    train, val = S.split_patches(pids, a.val_fraction)
    train = S.label_subset(train, a.label_fraction, a.seed)
    labels = S.patch_labels(conn, pids, a.classes, classes, a.min_fraction)
    tkeys = sorted(k for k in data if k[0] in set(train.tolist()))
    vkeys = sorted(k for k in data if k[0] in set(val.tolist()))
    if not tkeys:
        log("no labelled training patch has embeddings")
        return 2
    D = next(iter(data.values())).shape[1]
    if not a.quiet:
        log("%d training and %d validation patch-years of %d-d embeddings of %s (%d threads, %s)"
            % (len(tkeys), len(vkeys), D, a.input_model, threads, device))

    torch.manual_seed(a.seed)
    rng = np.random.default_rng([a.seed, 7])
    model = TemporalClassifier(a.arch, D, a.hidden, a.layers, len(classes), a.attention, a.l2_normalize).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    mono = mono_opt = None
    if a.baseline:
        mono = MonoClassifier(D, a.hidden, len(classes), a.l2_normalize).to(device)
        mono_opt = torch.optim.AdamW(mono.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    if ckpt:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if mono is not None and ckpt.get("mono"):
            mono.load_state_dict(ckpt["mono"])
            mono_opt.load_state_dict(ckpt["mono_optimizer"])
        T.set_rng_state(ckpt["rng"], rng)
    lr_at = T.cosine_schedule(a.lr, a.lr * 0.01, max(a.steps, 1), warmup_steps=min(20, a.steps // 10))
    lossf = nn.BCEWithLogitsLoss()

    def save(step):
        if a.checkpoint:
            T.save_checkpoint(a.checkpoint, {
                "format": "rai4eo-train-checkpoint", "method": "temporal", "step": step,
                "args": {k: v for k, v in vars(a).items()}, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "mono": mono.state_dict() if mono else None,
                "mono_optimizer": mono_opt.state_dict() if mono else None, "rng": T.rng_state(rng)})

    t0 = time.monotonic()
    step = start
    with T.Interrupt(prog) as intr:
        try:
            while step < until:
                if intr.requested:
                    save(step)
                    return 130
                for g in opt.param_groups:
                    g["lr"] = lr_at[step]
                pick = rng.integers(0, len(tkeys), a.batch_size)
                seqs = [window(data[tkeys[i]], a.min_window, rng) for i in pick]
                y = torch.from_numpy(np.stack([labels[tkeys[i][0]] for i in pick])).to(device)
                x, L = batch(seqs, device)
                loss = lossf(model(x, L), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if mono is not None:
                    for g in mono_opt.param_groups:
                        g["lr"] = lr_at[step]
                    # the same patches, one random image each
                    xm = torch.from_numpy(np.stack([s[int(rng.integers(0, len(s)))] for s in seqs])).to(device)
                    mloss = lossf(mono(xm), y)
                    mono_opt.zero_grad()
                    mloss.backward()
                    mono_opt.step()
                if not np.isfinite(loss.item()):
                    log("the loss diverged at step %d" % step)
                    return 1
                step += 1
                if not a.quiet and (step % a.log_every == 0 or step == until):
                    log("step %d/%d loss %.4f lr %.2e %.1f steps/s" % (step, a.steps, loss.item(), lr_at[step - 1],
                                                                       (step - start) / (time.monotonic() - t0)))
                if a.checkpoint and step % a.checkpoint_every == 0:
                    save(step)
        except KeyboardInterrupt:
            save(step)
            raise
    save(step)

    extra = {"method": "temporal", "arch": a.arch, "hidden": a.hidden, "layers": a.layers,
             "attention": a.attention, "input_model": a.input_model, "steps": step,
             "train_patches": int(len(train)), "val_patches": int(len(val))}
    rep = {}
    if vkeys:
        c, n = evaluate_temporal(model, vkeys, data, labels, a, device)
        rep = S.report(classes, names, c, n, extra)
        rep["val_sequences"] = n
        if mono is not None:
            cm, nm = evaluate_mono(mono, vkeys, data, labels, a, device)
            rep["mono_temporal"] = S.report(classes, names, cm, nm, {"method": "mono-temporal MLP"})
        if not a.quiet:
            print("temporal (%s, per validation patch-year):\n%s" % (a.arch, S.format_report(rep)))
            if mono is not None:
                print("mono-temporal (per validation image):\n%s" % S.format_report(rep["mono_temporal"]))
    if a.report:
        T.write_file_atomic(a.report, json.dumps(rep or extra, indent=1).encode())
    if a.export or a.register:
        blob = safetensors_io.serialize(model.cpu().export_state(), export_metadata(a, classes))
        if a.export:
            T.write_file_atomic(a.export, blob)
        if a.register:
            T.register_model(conn, a.register, blob)
            if not a.quiet:
                log("stored as model %r" % a.register)
    return 0
