"""Tests of the offline evaluator's scores and metrics (tools/lib/rai4eo_tools/evaluate.py).

Exact values on hand-made embeddings; no database needed.
Run: /usr/bin/python3 -m unittest discover -s test/tools -p test_evaluate.py -v
"""

import datetime as dt
import os
import sys
import unittest

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "lib"))

import numpy as np                                           # noqa: E402

from rai4eo_tools import evaluate as E                       # noqa: E402


def day(y, m, d):
    return (dt.date(y, m, d) - E.EPOCH).days


def series(step_at=None, dates_per_year=24):
    """Unit embeddings every 15 days of 2018 and 2019: e0 everywhere, e1 from step_at on."""
    days = [day(2018, 1, 5) + 15 * i for i in range(dates_per_year)]
    days += [d + 365 for d in days]
    e0, e1 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    emb = np.array([e1 if step_at is not None and d >= step_at else e0 for d in days])
    return np.array(days, np.int64), emb


class MetricTest(unittest.TestCase):

    def test_roc_auc(self):
        self.assertEqual(E.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]), 0.75)
        self.assertEqual(E.roc_auc([1, 1, 1], [0, 1, 0]), 0.5)                  # ties count half
        self.assertEqual(E.roc_auc([3, 2, 1], [1, 0, 0]), 1.0)
        self.assertTrue(np.isnan(E.roc_auc([1, 2], [1, 1])))

    def test_best_cut(self):
        f1, cut = E.best_cut([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0])
        self.assertEqual((f1, cut), (1.0, 0.55))
        # One positive below a negative: best F1 takes the top three (tp 2 of 3 predicted, 2 positives).
        f1, cut = E.best_cut([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0])
        self.assertAlmostEqual(f1, 0.8)
        self.assertAlmostEqual(cut, 0.4)
        # A cut never splits equal scores.
        f1, cut = E.best_cut([0.5, 0.5, 0.1], [1, 0, 0])
        self.assertAlmostEqual(f1, 2 / 3)
        self.assertAlmostEqual(cut, 0.3)

    def test_f1_of(self):
        self.assertEqual(E.f1_of([1, 1, 0, 0], [1, 0, 1, 0]), (0.5, 1, 1, 1))
        self.assertEqual(E.f1_of([0, 0], [1, 0]), (0.0, 0, 0, 1))

    def test_split_value(self):
        v = E.split_value(12345)
        self.assertTrue(0 <= v < 1)
        self.assertEqual(v, E.split_value(12345))
        self.assertNotEqual(v, E.split_value(12345, "fold:"))
        from rai4eo_tools import train_common as T
        self.assertEqual(v, T.holdout_value(12345))                # the trainer's --holdout rule


class ScoreTest(unittest.TestCase):

    def test_unchanged_patch_scores_zero(self):
        days, emb = series()
        f = E.patch_features(days, emb, 2019)
        self.assertEqual(f["daily"].size, 24)
        self.assertEqual(float(np.abs(f["daily"]).max()), 0.0)
        for k in ("annual", "monthly", "seasonal", "changepoint"):
            self.assertAlmostEqual(f[k], 0.0, places=12, msg=k)

    def test_planted_step(self):
        days, emb = series(day(2019, 6, 3))
        onset = int(days[days >= day(2019, 6, 3)][0])                         # first image showing it
        last_before = int(days[days < day(2019, 6, 3)][-1])
        f = E.patch_features(days, emb, 2019)
        after = int((days[days >= day(2019, 1, 1)] >= onset).sum())            # images showing it
        self.assertEqual(after, 14)
        np.testing.assert_array_equal(f["daily"], [0.0] * 10 + [1.0] * 14)
        self.assertAlmostEqual(f["changepoint"], 1.0, places=12)               # 1 after, 0 before
        self.assertEqual(f["onset"], (last_before + onset) // 2)              # the middle of the gap
        # annual: 1 - cos(mean 2019, e0) with 10 x e0 + 14 x e1.
        self.assertAlmostEqual(f["annual"], 1 - 10 / np.hypot(10, 14), places=12)
        tab = E.score_table({1: f}, [1], 0.5)
        self.assertAlmostEqual(tab["daily_rate"][0], 14 / 24, places=12)
        self.assertAlmostEqual(tab["daily_mean"][0], 14 / 24, places=12)

    def test_onset_is_the_least_squares_split(self):
        """A step at image 10 of 2019 and a short stronger tail at image 20: the score is the
        largest step (the tail), the onset the least-squares split (the step)."""
        days = np.array([day(2018, 1, 5) + 15 * i for i in range(24)]
                        + [day(2019, 1, 5) + 15 * i for i in range(24)], np.int64)
        dist = np.array([0.0] * 24 + [0.0] * 10 + [0.5] * 10 + [1.0] * 4)      # 1 - cos to 2018
        ang = np.arccos(1.0 - dist)
        emb = np.stack([np.cos(ang), np.sin(ang)], 1)
        f = E.patch_features(days, emb, 2019)
        self.assertAlmostEqual(f["changepoint"], 1.0 - 0.25, places=9)        # after 20: 1, before: 0.25
        self.assertEqual(f["onset"], (days[24 + 9] + days[24 + 10]) // 2)
        # Every day is paired (15-day revisit, partner 365 days back): daily_step is the same.
        self.assertAlmostEqual(f["daily_step"], 1.0 - 0.25, places=9)
        self.assertEqual(f["daily_step_onset"], f["onset"])

    def test_phenology_shift_is_tolerated_by_seasonal_and_changepoint(self):
        """A seasonal cycle shifted by 15 days in 2019 against 2018: daily distances see it,
        the shift-tolerant scores do not."""
        days = np.array([day(2018, 1, 5) + 15 * i for i in range(24)]
                        + [day(2019, 1, 5) + 15 * i for i in range(24)], np.int64)
        doy = np.array([(d - day(2018, 1, 1)) % 365 for d in days], np.float64)
        doy[24:] -= 15                                                         # 2019 is 15 days late
        ang = 2 * np.pi * doy / 365.0
        emb = np.stack([np.cos(ang), np.sin(ang), np.zeros_like(ang)], 1)
        f = E.patch_features(days, emb, 2019)
        self.assertGreater(f["daily"].mean(), 0.01)
        self.assertLess(f["changepoint"], 0.005)
        self.assertLess(f["seasonal"], f["monthly"])
        self.assertGreater(f["daily_step"], f["changepoint"])                  # pairs by date: sees it

    def test_evaluate_model_separates_planted_steps(self):
        feats, labels, kinds, onsets = {}, [], [], []
        for p in range(20):
            changed = p % 4 == 0
            onset = day(2019, 3, 1) + 10 * p if changed else None
            days, emb = series(onset)
            feats[p] = E.patch_features(days, emb, 2019)
            labels.append(changed)
            kinds.append("step" if changed else None)
            onsets.append(onset or 0)
        res = E.evaluate_model(feats, list(range(20)), labels, kinds, onsets, folds=4)
        for score in ("daily_mean", "annual", "changepoint"):
            self.assertEqual(res[score]["auc"], 1.0, score)
        # Every step is 1 after its onset and 0 before: any cut between works in every fold.
        self.assertEqual(res["changepoint"]["f1_cv"], 1.0)
        self.assertEqual(res["changepoint"]["onset_within_15d"], 1.0)
        self.assertEqual(res["changepoint"]["kinds"]["step"]["n"], 5)


if __name__ == "__main__":
    unittest.main()
