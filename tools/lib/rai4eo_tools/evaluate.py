"""Offline evaluation of change scores over stored embeddings, against a planted truth.

The measuring instrument for training and scoring recipes: it reads the embeddings of
one or more models from rai4eo.embedding (and, optionally, per-band pixel statistics
computed by PostGIS), computes per-patch change scores for a year in numpy, and reports
ROC AUC and F1 per model x score against truth/changes.csv of a synthetic corpus.

Scores (year Y against Y-1; every image of Y is paired with the image of Y-1 nearest
to 365 days earlier, within 8 days; distances are 1 - cosine similarity):

  daily_mean   mean daily distance
  daily_rate   share of paired days whose distance exceeds a day threshold (the seeds'
               rule); the threshold is calibrated with the cut
  annual       distance between the two years' mean embeddings
  monthly      mean over months of the distance between the months' mean embeddings
  seasonal     the same, each month of Y compared with the best of months m-1, m, m+1
               of Y-1 (tolerates phenology shifted by weeks)
  changepoint  s_t = distance of image t of Y to the nearest-in-embedding image of Y-1
               within 30 days of its date; the largest step mean(s[k:]) - mean(s[:k])
               with at least `persist` images after k; the onset estimate is the middle
               between the images either side of the least-squares split (the k maximising
               k (T - k) / T * step^2 among the rising ones)
  zscore       that step in units of the patch's own variability before k (median and
               MAD of s[:k]): a robust z-score
  daily_step   the changepoint score and onset over the paired daily distances instead of
               s (what rai4eo_calibrate's changepoint method computes in SQL)

Decisions are calibrated by K-fold cross-validation over the evaluated patches (the
folds by a hash of patch_id): each fold's cut (and daily_rate's day threshold) is the
best-F1 choice on the other folds, so every F1 reported is measured on patches its
cut never saw.  --holdout F evaluates only the patches tools/train --holdout F kept
out of training.
"""

import csv
import datetime as _dt
import hashlib
import math
import os

import numpy as np

SCORES = ("daily_mean", "daily_rate", "annual", "monthly", "seasonal", "changepoint", "zscore", "daily_step")
PIXELS = "pixels"                     # the per-band mean/std baseline's name in reports
EPOCH = _dt.date(2000, 1, 1)


def split_value(pid, salt=""):
    """A patch's place in [0, 1): blake2b-64 of (salt +) its decimal id / 2^64 (the same
    rule as tools/train's --holdout and supervised --val-fraction when salt is empty)."""
    h = hashlib.blake2b((salt + str(int(pid))).encode("ascii"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0 ** 64


# ---- truth -------------------------------------------------------------------------------

def read_truth(corpus, min_fraction=0.05):
    """{sample_id: (changed, kind, fraction, onset day)} from truth/changes.csv; patches whose
    planted changes all cover less than min_fraction are ambiguous (changed None)."""
    out = {}
    with open(os.path.join(corpus, "truth", "changes.csv")) as f:
        for r in csv.DictReader(f):
            frac = float(r["changed_fraction"])
            onset = r.get("onset") or r["date"]
            day = (_dt.date.fromisoformat(onset) - EPOCH).days
            old = out.get(r["sample_id"])
            if old is None or frac > old[2]:             # a patch's largest planted change
                out[r["sample_id"]] = (None if frac < min_fraction else True, r["kind"], frac, day)
    return out


# ---- reading the database ---------------------------------------------------------------------

def _day(d):
    return (d - EPOCH).days


def load_embeddings(conn, model, sensor, years, center=False):
    """{patch_id: (days int array, unit-norm float64 matrix)} of a model's embeddings;
    center: standardise each dimension over the corpus first (as the pixel baseline is)."""
    rows = conn.execute(
        "SELECT i.patch_id, i.acquired, e.emb::real[] FROM rai4eo.embedding e "
        "JOIN rai4eo.image i USING (image_id) WHERE e.model = %s AND i.sensor = %s "
        "AND extract(year FROM i.acquired)::int = ANY(%s) ORDER BY i.patch_id, i.acquired",
        (model, sensor, list(years))).fetchall()
    if center and rows:
        m = np.array([r[2] for r in rows], np.float64)
        m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
        sd = m.std(0)
        sd[sd == 0] = 1.0
        m = (m - m.mean(0)) / sd
        rows = [(r[0], r[1], v) for r, v in zip(rows, m)]
    return _group(rows)


def load_pixel_stats(conn, sensor, years):
    """{patch_id: (days, features)}: per-band mean and std of the raw pixels (PostGIS's
    ST_SummaryStats), standardised per feature over the corpus, as unit vectors."""
    nb = conn.execute("SELECT ST_NumBands(rast) FROM rai4eo.image WHERE sensor = %s LIMIT 1",
                      (sensor,)).fetchone()[0]
    cols = ", ".join("(ST_SummaryStats(rast, %d)).mean, (ST_SummaryStats(rast, %d)).stddev" % (b, b)
                     for b in range(1, nb + 1))
    rows = conn.execute(
        "SELECT patch_id, acquired, ARRAY[" + cols + "]::float8[] FROM rai4eo.image "
        "WHERE sensor = %s AND extract(year FROM acquired)::int = ANY(%s) ORDER BY patch_id, acquired",
        (sensor, list(years))).fetchall()
    feats = np.array([r[2] for r in rows], np.float64)
    mu, sd = feats.mean(0), feats.std(0)
    sd[sd == 0] = 1.0
    feats = (feats - mu) / sd
    return _group([(r[0], r[1], f) for r, f in zip(rows, feats)])


def _group(rows):
    out = {}
    cur, days, vecs = None, [], []
    for pid, acq, v in rows + [(None, None, None)]:
        if pid != cur:
            if cur is not None:
                m = np.asarray(vecs, np.float64)
                n = np.linalg.norm(m, axis=1, keepdims=True)
                n[n == 0] = 1.0
                out[int(cur)] = (np.asarray(days, np.int64), m / n)
            cur, days, vecs = pid, [], []
        if pid is not None:
            days.append(_day(acq))
            vecs.append(v)
    return out


# ---- scores --------------------------------------------------------------------------------

def _month(day):
    d = EPOCH + _dt.timedelta(days=int(day))
    return d.month


def patch_features(days, emb, year, persist_days=30):
    """What the scores need for one patch: daily distances, composites, change point."""
    y0 = (_dt.date(year, 1, 1) - EPOCH).days
    y1 = (_dt.date(year + 1, 1, 1) - EPOCH).days
    p0 = (_dt.date(year - 1, 1, 1) - EPOCH).days
    cur = (days >= y0) & (days < y1)
    prev = (days >= p0) & (days < y0)
    if cur.sum() < 2 or prev.sum() < 2:
        return None
    B, db = emb[cur], days[cur]
    A, da = emb[prev], days[prev]
    sim = B @ A.T                                       # cosine similarities, T_B x T_A
    lag = (db[:, None] - 365) - da[None, :]
    near = np.abs(lag)
    j = near.argmin(1)
    paired = near[np.arange(len(db)), j] <= 8
    daily = 1.0 - sim[np.arange(len(db)), j]
    daily = daily[paired]
    tol = np.where(near <= 30, sim, -np.inf).max(1)
    s = np.where(np.isfinite(tol), 1.0 - tol, 1.0 - sim[np.arange(len(db)), j])
    ma, mb = A.mean(0), B.mean(0)
    annual = 1.0 - float(ma @ mb) / max(1e-12, np.linalg.norm(ma) * np.linalg.norm(mb))
    mon_a = {m: A[[_month(d) == m for d in da]].mean(0) for m in set(_month(d) for d in da)}
    mon_b = {m: B[[_month(d) == m for d in db]].mean(0) for m in set(_month(d) for d in db)}

    def cd(u, v):
        return 1.0 - float(u @ v) / max(1e-12, np.linalg.norm(u) * np.linalg.norm(v))
    monthly = [cd(mon_b[m], mon_a[m]) for m in mon_b if m in mon_a]
    seasonal = [min(cd(mon_b[m], mon_a[k]) for k in (m - 1, m, m + 1) if k in mon_a)
                for m in mon_b if any(k in mon_a for k in (m - 1, m, m + 1))]
    best, bz, onset = _steps(s, db, persist_days)
    dstep, _, donset = _steps(daily, db[paired], persist_days) if paired.sum() >= 2 else (0.0, 0.0, int(db[0]))
    return {"daily": daily, "annual": annual,
            "monthly": float(np.mean(monthly)) if monthly else annual,
            "seasonal": float(np.mean(seasonal)) if seasonal else annual,
            "changepoint": best, "zscore": bz, "onset": onset,
            "daily_step": dstep, "daily_step_onset": donset}


def _steps(s, db, persist_days):
    """The change point of a series s on days db: (largest rising step with at least
    `persist` values after it, that step as a robust z, the least-squares onset day)."""
    T = len(s)
    step = max(1.0, float(np.median(np.diff(db)))) if T > 1 else 5.0
    m = max(2, int(math.ceil(persist_days / step)))
    best, bk, bz = -np.inf, 0, -np.inf
    lsq, lk = 0.0, 0
    cs = np.concatenate([[0.0], np.cumsum(s)])
    for k in range(1, max(2, T - m + 1)):
        if k >= T:
            break
        after = (cs[T] - cs[k]) / (T - k)
        before = cs[k] / k
        g = after - before
        if g > best:
            best, bk = g, k
        # The onset: the least-squares split (a step's maximum likelihood location under
        # Gaussian noise); the unweighted step above, the score, leans to short tails.
        w = k * (T - k) / T * g * g
        if g > 0 and w > lsq:
            lsq, lk = w, k
        pre = s[:max(k, 3)]
        med = float(np.median(pre))
        mad = 1.4826 * float(np.median(np.abs(pre - med)))
        z = (after - med) / (mad + 0.05 * med + 1e-4)
        if z > bz:
            bz = z
    # between the last image before the split and the first after it: the middle
    onset = int((db[lk - 1] + db[lk]) // 2) if lk > 0 else int(db[bk])
    return float(best), float(bz), onset


def score_table(features, pids, day_threshold):
    """Per-patch values of every score (daily_rate at the given day threshold)."""
    out = {k: np.zeros(len(pids)) for k in SCORES}
    for i, p in enumerate(pids):
        f = features[p]
        out["daily_mean"][i] = f["daily"].mean() if f["daily"].size else 0.0
        out["daily_rate"][i] = (f["daily"] > day_threshold).mean() if f["daily"].size else 0.0
        for k in ("annual", "monthly", "seasonal", "changepoint", "zscore", "daily_step"):
            out[k][i] = f[k]
    return out


# ---- metrics -----------------------------------------------------------------------------

def roc_auc(scores, labels):
    """ROC AUC (Mann-Whitney U with average ranks for ties); NaN without both classes."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    npos, nneg = int(labels.sum()), int((~labels).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = 0.5 * (i + j) + 1.0
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    return float((r[labels].sum() - npos * (npos + 1) / 2.0) / (npos * nneg))


def best_cut(scores, labels):
    """(F1, cut): the cut (predict changed when score > cut) with the best F1; the cut
    lies halfway between the two scores it separates."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    npos = int(labels.sum())
    if npos == 0:
        return 0.0, float(scores.max()) if len(scores) else 0.0
    order = np.argsort(-scores, kind="mergesort")
    s, l = scores[order], labels[order]
    tp = np.cumsum(l)
    k = np.arange(1, len(s) + 1)
    f1 = 2 * tp / (k + npos)
    valid = np.append(s[1:] < s[:-1], True)             # cut only between distinct scores
    f1 = np.where(valid, f1, -1.0)
    i = int(np.argmax(f1))
    cut = 0.5 * (s[i] + s[i + 1]) if i + 1 < len(s) else s[i] - 1e-9
    return float(f1[i]), float(cut)


def f1_of(pred, labels):
    pred, labels = np.asarray(pred, bool), np.asarray(labels, bool)
    tp = int((pred & labels).sum())
    fp = int((pred & ~labels).sum())
    fn = int((~pred & labels).sum())
    return (2.0 * tp / (2 * tp + fp + fn)) if tp else 0.0, tp, fp, fn


def day_thresholds(features, pids):
    """Candidate day thresholds for daily_rate: quantiles of the daily distances."""
    allv = np.concatenate([features[p]["daily"] for p in pids if features[p]["daily"].size] or [np.zeros(1)])
    return np.unique(np.quantile(allv, np.linspace(0.5, 0.995, 34)))


def calibrate(features, pids, labels, score, thresholds):
    """(cut, day threshold) with the best F1 on the given patches."""
    if score != "daily_rate":
        vals = score_table(features, pids, 0.0)[score]
        return best_cut(vals, labels)[1], None
    best = (-1.0, 0.0, 0.0)
    for t in thresholds:
        vals = score_table(features, pids, t)["daily_rate"]
        f, c = best_cut(vals, labels)
        if f > best[0]:
            best = (f, c, t)
    return best[1], best[2]


def evaluate_model(features, pids, labels, kinds, onsets, folds=5):
    """Per score: AUC, cross-validated F1 (with TP/FP/FN), oracle F1, per-kind results and the
    onset error of detected changes; returns {score: dict}."""
    pids = list(pids)
    labels = np.asarray(labels, bool)
    fold = np.array([int(split_value(p, "fold:") * folds) for p in pids])
    thresholds = day_thresholds(features, pids)
    res = {}
    for score in SCORES:
        pred = np.zeros(len(pids), bool)
        vals = np.zeros(len(pids))
        for k in range(folds):
            test = fold == k
            if not test.any():
                continue
            train = ~test
            tp_ids = [p for p, t in zip(pids, train) if t]
            cut, thr = calibrate(features, tp_ids, labels[train], score, thresholds)
            te_ids = [p for p, t in zip(pids, test) if t]
            v = score_table(features, te_ids, thr if thr is not None else 0.0)[score]
            pred[test] = v > cut
        if score == "daily_rate":
            _, thr_all = calibrate(features, pids, labels, score, thresholds)
            vals = score_table(features, pids, thr_all)[score]
        else:
            vals = score_table(features, pids, 0.0)[score]
        f1, tp, fp, fn = f1_of(pred, labels)
        r = {"auc": roc_auc(vals, labels), "f1_cv": f1, "tp": tp, "fp": fp, "fn": fn,
             "f1_oracle": best_cut(vals, labels)[0], "kinds": {}}
        for kind in sorted(set(k for k in kinds if k)):
            sel = np.array([k == kind for k in kinds]) & labels
            keep = sel | ~labels
            f, tpk, fpk, fnk = f1_of(pred[keep], labels[keep])
            r["kinds"][kind] = {"n": int(sel.sum()), "auc": roc_auc(vals[keep], labels[keep]),
                                "recall": tpk / max(1, int(sel.sum())), "f1_cv": f}
        if score in ("changepoint", "zscore", "daily_step"):
            key = "daily_step_onset" if score == "daily_step" else "onset"
            errs = [abs(features[p][key] - onsets[i]) for i, p in enumerate(pids) if pred[i] and labels[i]]
            r["onset_within_15d"] = (sum(e <= 15 for e in errs) / len(errs)) if errs else float("nan")
            r["onset_median_err_days"] = float(np.median(errs)) if errs else float("nan")
        res[score] = r
    return res


def evaluate(conn, corpus, models, year=2019, sensor="PF-SR", pixels=True, holdout=0.0,
             min_fraction=0.05, folds=5, persist_days=30, center=False):
    """Evaluate models (names in rai4eo.model; plus the pixel baseline) on the corpus's
    truth; returns {"patches": ..., "models": {name: {score: result}}}."""
    truth = read_truth(corpus, min_fraction)
    sids = dict(conn.execute("SELECT patch_id, sample_id FROM rai4eo.patch").fetchall())
    series = {}
    for m in models:
        series[m] = load_embeddings(conn, m, sensor, (year - 1, year))
        if center:
            series[m + "/std"] = load_embeddings(conn, m, sensor, (year - 1, year), True)
    if pixels:
        series[PIXELS] = load_pixel_stats(conn, sensor, (year - 1, year))
    common = None
    for s in series.values():
        common = set(s) if common is None else common & set(s)
    pids = []
    for p in sorted(common or ()):
        t = truth.get(sids.get(p))
        if t is not None and t[0] is None:
            continue                                     # ambiguous: only tiny changes
        if holdout > 0 and split_value(p) >= holdout:
            continue
        pids.append(p)
    out = {"year": year, "holdout": holdout, "models": {}}
    feats = {}
    for name, s in series.items():
        feats[name] = {p: patch_features(s[p][0], s[p][1], year, persist_days) for p in pids}
    pids = [p for p in pids if all(feats[n][p] is not None for n in feats)]
    labels = [bool(truth.get(sids[p], (False,))[0]) for p in pids]
    kinds = [truth[sids[p]][1] if truth.get(sids[p], (False,))[0] else None for p in pids]
    onsets = [truth[sids[p]][3] if truth.get(sids[p], (False,))[0] else 0 for p in pids]
    out["patches"] = len(pids)
    out["changed"] = int(sum(labels))
    out["kinds"] = {k: kinds.count(k) for k in sorted(set(k for k in kinds if k))}
    for name in feats:
        out["models"][name] = evaluate_model(feats[name], pids, labels, kinds, onsets, folds)
    return out


def format_report(res):
    """The evaluation as text tables."""
    lines = ["year %d: %d patches (%d changed: %s)%s" % (
        res["year"], res["patches"], res["changed"],
        ", ".join("%s %d" % kv for kv in res["kinds"].items()),
        ", held out of training: split < %g" % res["holdout"] if res["holdout"] else "")]
    lines.append("%-22s %-12s %6s %6s %6s %4s %4s %4s %7s" % ("model", "score", "AUC", "F1cv", "F1max",
                                                             "TP", "FP", "FN", "onset15"))
    for name, scores in res["models"].items():
        for sc, r in scores.items():
            lines.append("%-22s %-12s %6.3f %6.3f %6.3f %4d %4d %4d %7s" % (
                name, sc, r["auc"], r["f1_cv"], r["f1_oracle"], r["tp"], r["fp"], r["fn"],
                ("%.2f" % r["onset_within_15d"]) if "onset_within_15d" in r and
                not math.isnan(r["onset_within_15d"]) else "-"))
    lines.append("")
    lines.append("per change type (AUC / cross-validated recall against all unchanged patches):")
    for name, scores in res["models"].items():
        best = max(scores, key=lambda k: (scores[k]["f1_cv"], scores[k]["auc"]))
        r = scores[best]
        lines.append("  %-20s %-12s " % (name, best) + "  ".join(
            "%s %.2f/%.2f (n=%d)" % (k, v["auc"], v["recall"], v["n"]) for k, v in r["kinds"].items()))
    return "\n".join(lines)
