#!/usr/bin/python3
"""Daily distances relative to the day's regional median: a measurement, not yet a product score.

A patch's distance to the same day one year earlier carries, besides its own change, what
every patch of the region shares that day: a wetter spring, an earlier green-up, haze, snow.
Small changes (a few per cent of a patch) drown in it.  This scores the held-out labelled
patches of a corpus three ways from the same stored embeddings:

  raw       the daily distances as rai4eo.daily_distances pairs them (the product today)
  excess    minus the median distance of all the corpus's patches compared that day
  ratio     over that median

with the step score (rai4eo.change_step's definition, k = 1, 3, 6: ROC AUC against the truth)
and the least-squares onset (rai4eo.change_point_day's definition: the share of the changed
held-out patches whose onset lies within 15 days of the truth's).

  bench/relative_scores.py CORPUS MODEL... [--dsn DSN] [--holdout 0.5] [--pixels]

MODEL: models with stored PF-SR embeddings for 2018 and 2019 (as bench/train_eval.sh makes
them); --pixels adds tools/evaluate's raw-pixel baseline.  Held-out patches and truth rules as
tools/evaluate (split value below --holdout; changes under 5 % of a patch are left out).
"""
import argparse
import datetime as dt
import os
import sys
from collections import defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "tools", "lib"))

import numpy as np                                          # noqa: E402
import psycopg                                              # noqa: E402

from rai4eo_tools import evaluate as E                      # noqa: E402

YEAR = 2019
TOLERANCE = 2            # days either side of a year earlier, as yearly_change's default


def daily_series(embs):
    """{patch_id: (days, distances)}: each 2019 day against the 2018 image a year earlier."""
    y0 = (dt.date(YEAR, 1, 1) - E.EPOCH).days
    p0 = (dt.date(YEAR - 1, 1, 1) - E.EPOCH).days
    out = {}
    for pid, (days, emb) in embs.items():
        cur, prev = days >= y0, (days >= p0) & (days < y0)
        if cur.sum() < 2 or prev.sum() < 1:
            continue
        db, da = days[cur], days[prev]
        near = np.abs((db[:, None] - 365) - da[None, :])
        j = near.argmin(1)
        ok = near[np.arange(len(db)), j] <= TOLERANCE
        if ok.sum() < 2:
            continue
        out[pid] = (db[ok], 1.0 - np.sum(emb[cur][ok] * emb[prev][j[ok]], 1))
    return out


def step(s, k):
    """rai4eo.change_step: the largest mean after a split minus the mean before it."""
    T = len(s)
    cs = np.concatenate([[0.0], np.cumsum(s)])
    return max((cs[T] - cs[i]) / (T - i) - cs[i] / i for i in range(1, max(2, T - k + 1)))


def onset(days, s):
    """rai4eo.change_point_day: the middle of the gap at the least-squares rising split."""
    T = len(s)
    cs = np.concatenate([[0.0], np.cumsum(s)])
    best, p = 0.0, 0
    for i in range(1, T):
        g = (cs[T] - cs[i]) / (T - i) - cs[i] / i
        w = i * (T - i) / T * g * g
        if g > 0 and w > best:
            best, p = w, i
    return int((days[p - 1] + days[p]) // 2) if p > 0 else int(days[0])


def measure(series, truth, pids, holdout):
    by_day = defaultdict(list)
    for days, d in series.values():
        for x, v in zip(days, d):
            by_day[int(x)].append(v)
    med = {x: float(np.median(v)) for x, v in by_day.items()}
    labels, scores, hits = [], defaultdict(list), defaultdict(list)
    for pid, (days, d) in series.items():
        t = truth.get(pids[pid], (False, None, 0.0, 0))
        if t[0] is None or E.split_value(pid) >= holdout:
            continue
        m = np.array([med[int(x)] for x in days])
        variants = {"raw": d, "excess": d - m, "ratio": d / np.maximum(m, 1e-6)}
        labels.append(bool(t[0]))
        for name, s in variants.items():
            for k in (1, 3, 6):
                scores["%s step%d" % (name, k)].append(step(s, k))
            if t[0]:
                hits[name].append(abs(onset(days, s) - t[3]) <= 15)
    labels = np.array(labels)
    return (len(labels), int(labels.sum()),
            {k: E.roc_auc(np.array(v), labels) for k, v in scores.items()},
            {k: float(np.mean(v)) for k, v in hits.items()})


def main(argv=None):
    p = argparse.ArgumentParser(prog="relative_scores", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("corpus")
    p.add_argument("models", nargs="*")
    p.add_argument("--dsn", default="")
    p.add_argument("--holdout", type=float, default=0.5)
    p.add_argument("--pixels", action="store_true")
    a = p.parse_args(argv)
    conn = psycopg.connect(a.dsn)
    truth = E.read_truth(a.corpus)
    pids = dict(conn.execute("SELECT patch_id, sample_id FROM rai4eo.patch").fetchall())
    for m in a.models + (["pixels"] if a.pixels else []):
        embs = (E.load_pixel_stats(conn, "PF-SR", [YEAR - 1, YEAR]) if m == "pixels"
                else E.load_embeddings(conn, m, "PF-SR", [YEAR - 1, YEAR]))
        n, nc, auc, hit = measure(daily_series(embs), truth, pids, a.holdout)
        print("%s %s: %d held-out labelled, %d changed" % (a.corpus, m, n, nc))
        for name in ("raw", "excess", "ratio"):
            print("  %-6s AUC %s | onset within 15 d %.2f" % (
                name, "  ".join("step%d %.3f" % (k, auc["%s step%d" % (name, k)]) for k in (1, 3, 6)),
                hit[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
