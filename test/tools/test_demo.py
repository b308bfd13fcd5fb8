"""A reduced run of the whole pipeline (tools/demo): tiny corpus, a few training steps.

Checks that every artefact exists and is well formed: the GeoTIFF's georeferencing
against the patches, the PNG decodes at the documented size with the planted changes
outlined, the CSV has every patch and every column, and the report's figures are in
range and agree with the CSV.  Needs a server named by PG* variables; creates and drops
its own database.
"""

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

import numpy as np                                           # noqa: E402
import psycopg                                               # noqa: E402
from osgeo import gdal, osr                                  # noqa: E402

gdal.UseExceptions()
GRID, SCALE = 4, 8
MODELS = ("dino_trained", "dino_random", "pixel_mean")


class DemoTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.db = "rai4eo_demo_test_%d" % os.getpid()
        with psycopg.connect("", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s"' % cls.db)
            admin.execute('CREATE DATABASE "%s"' % cls.db)
        cls.tmp = tempfile.mkdtemp(prefix="rai4eo-demo-")
        os.chmod(cls.tmp, 0o755)
        cls.out = os.path.join(cls.tmp, "out")
        cmd = [sys.executable, os.path.join(ROOT, "tools", "demo"), "--dsn", "dbname=" + cls.db,
               "--out", cls.out, "--grid", str(GRID), "--date-step", "24", "--train-steps", "3",
               "--embed-dim", "64", "--depth", "2", "--num-heads", "2", "--batch-size", "4",
               "--calib-positives", "2", "--calib-negatives", "2", "--png-scale", str(SCALE), "--threads", "1",
               "--supervised-steps", "2", "--temporal-steps", "3"]
        cls.proc = subprocess.run(cmd, capture_output=True, text=True)
        cls.conn = psycopg.connect("dbname=" + cls.db, autocommit=True)

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        with psycopg.connect("", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stdout[-3000:] + self.proc.stderr[-3000:])

    def report(self):
        with open(os.path.join(self.out, "report.json")) as f:
            return json.load(f)

    def test_every_stage_reported_progress(self):
        for stage in ("synthetic corpus", "load", "train", "embed", "calibrate", "yearly heatmap"):
            self.assertIn("stage: " + stage, self.proc.stdout)
        self.assertIn("# rai4eo demo: yearly change 2019", self.proc.stdout)

    def test_geotiff_is_georeferenced_on_the_patch_grid(self):
        ds = gdal.Open(os.path.join(self.out, "heatmap_2019.tif"))
        self.assertEqual((ds.RasterXSize, ds.RasterYSize, ds.RasterCount), (GRID, GRID, 6))
        xmin, ymax = self.conn.execute("SELECT min(ST_XMin(geom)), max(ST_YMax(geom)) FROM rai4eo.patch").fetchone()
        gt = ds.GetGeoTransform()
        self.assertEqual(gt, (xmin, 600.0, 0.0, ymax, 0.0, -600.0))
        srs = osr.SpatialReference(wkt=ds.GetProjection())
        srs.AutoIdentifyEPSG()
        self.assertEqual(srs.GetAuthorityCode(None), "32629")
        rate = ds.GetRasterBand(1).ReadAsArray()
        days = ds.GetRasterBand(3).ReadAsArray()
        nd = ds.GetRasterBand(1).GetNoDataValue()
        valid = rate != nd
        self.assertTrue(valid.any())
        self.assertTrue(np.all((rate[valid] >= 0) & (rate[valid] <= 1)))
        self.assertTrue(np.all(days[valid] >= 1))
        # each pixel is the patch under it: compare with yearly_change of the trained model
        rows = self.conn.execute(
            "SELECT ST_XMin(geom), ST_YMax(geom), change_rate, score, changed, extract(doy FROM onset) FROM yearly_change("
            "(SELECT ST_Envelope(ST_Collect(geom)) FROM rai4eo.patch), 2019, 'dino_trained') "
            "WHERE days_compared > 0").fetchall()
        self.assertEqual(len(rows), int(valid.sum()))
        score, changed, onset = (ds.GetRasterBand(b).ReadAsArray() for b in (4, 5, 6))
        self.assertEqual([ds.GetRasterBand(b).GetDescription() for b in range(1, 7)],
                         ["change_rate", "mean_distance", "days_compared", "score", "changed", "onset_doy"])
        for x, y, r, sc, ch, on in rows:
            col, row = int(round((x - xmin) / 600)), int(round((ymax - y) / 600))
            self.assertAlmostEqual(float(rate[row, col]), r, places=6)
            # bands 4-6: the model's decision (score, changed, onset day of year where changed)
            self.assertAlmostEqual(float(score[row, col]), float(np.float32(sc)), places=5)
            self.assertEqual(int(changed[row, col]), int(ch))
            self.assertEqual(float(onset[row, col]), float(on) if ch else nd)

    def test_png_decodes_with_planted_changes_outlined(self):
        ds = gdal.Open(os.path.join(self.out, "heatmap_2019.png"))
        self.assertEqual(ds.GetDriver().ShortName, "PNG")
        self.assertEqual((ds.RasterXSize, ds.RasterYSize, ds.RasterCount), (GRID * SCALE, GRID * SCALE, 3))
        img = np.stack([ds.GetRasterBand(i).ReadAsArray() for i in (1, 2, 3)], axis=-1)
        blue = np.all(img == (20, 60, 220), axis=-1)
        changed = self.conn.execute("SELECT count(*) FROM demo.truth WHERE changed").fetchone()[0]
        self.assertGreater(changed, 0)
        # a 2-pixel frame per outlined patch
        self.assertEqual(int(blue.sum()), changed * (4 * 2 * SCALE - 16))

    def test_csv_has_every_patch_and_column(self):
        with open(os.path.join(self.out, "patch_change_2019.csv")) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), GRID * GRID)
        for m in MODELS:
            for col in ("days_compared", "days_changed", "change_rate", "mean_distance"):
                self.assertIn(f"{m}_{col}", rows[0])
        self.assertEqual({r["split"] for r in rows} - {"calibration", "eval", "ambiguous"}, set())
        for r in rows:
            if r["dino_trained_change_rate"]:
                self.assertTrue(0 <= float(r["dino_trained_change_rate"]) <= 1)

    def test_report_figures_in_range_and_consistent_with_csv(self):
        rep = self.report()
        self.assertEqual(rep["corpus"]["patches"], GRID * GRID)
        with open(os.path.join(self.out, "patch_change_2019.csv")) as f:
            rows = [r for r in csv.DictReader(f) if r["split"] == "eval"]
        for m in MODELS:
            met = rep["metrics"][m]
            for k in ("precision", "recall", "f1"):
                self.assertTrue(0 <= met[k] <= 1, (m, k, met[k]))
            auc = met["roc_auc"]
            if met["positives"] and met["negatives"]:
                self.assertTrue(0 <= auc <= 1)
            else:
                self.assertTrue(math.isnan(auc))
            # recompute the confusion counts from the CSV
            scored = [r for r in rows if int(r[f"{m}_days_compared"]) > 0]
            pred = [float(r[f"{m}_change_rate"]) > 0.1 for r in scored]
            truth = [r["planted_change"] == "1" for r in scored]
            self.assertEqual(met["tp"], sum(p and t for p, t in zip(pred, truth)))
            self.assertEqual(met["fp"], sum(p and not t for p, t in zip(pred, truth)))
            self.assertEqual(met["fn"], sum(t and not p for p, t in zip(pred, truth)))
            thr = rep["calibration"][m]["threshold"]
            stored = self.conn.execute("SELECT change_threshold FROM rai4eo.models WHERE name = %s", (m,)).fetchone()[0]
            self.assertAlmostEqual(thr, stored)
        md = open(os.path.join(self.out, "report.md")).read()
        for label in ("trained here", "random weights", "raw pixels", "supervised CLC", "ensemble"):
            self.assertIn(label, md)
        # supervised class change and the ensemble are scored on the same patches
        for m in ("clc_probs", "ensemble"):
            met = rep["metrics"][m]
            self.assertEqual(met["positives"] + met["negatives"], sum(
                1 for r in rows if r[f"{m}_days_compared"] not in ("", "0")))
            for k in ("precision", "recall", "f1"):
                self.assertTrue(0 <= met[k] <= 1, (m, k, met[k]))
        self.assertEqual(self.conn.execute("SELECT output_dims FROM rai4eo.models WHERE name = 'clc_probs'").fetchone()[0], 7)

    def test_every_method_and_the_picked_decision(self):
        rep = self.report()
        methods = ("rate", "persistence", "annual", "seasonal", "zscore", "step", "cluster")
        for m in MODELS + ("clc_probs",):
            sc = rep["scores"][m]
            self.assertEqual(tuple(sc), methods)
            self.assertEqual(sum(r["chosen"] for r in sc.values()), 1)
            chosen = next(k for k, r in sc.items() if r["chosen"])
            # the chosen method has the best cross-validated F1 (ties: better fit, then simpler)
            best = max(sc.values(), key=lambda r: r["cv_f1"])["cv_f1"]
            self.assertEqual(sc[chosen]["cv_f1"], best)
            stored = self.conn.execute("SELECT config -> 'change_decision' FROM rai4eo.model WHERE name = %s",
                                       (m,)).fetchone()[0]
            self.assertEqual(stored["method"], chosen)
            self.assertAlmostEqual(stored["cut"], sc[chosen]["cut"])
            for r in sc.values():
                self.assertTrue(0 <= r["cv_f1"] <= 1 and 0 <= r["fit_f1"] <= 1 and 0 <= r["f1"] <= 1, r)
                # onset errors are measured on the detected true changes only
                self.assertLessEqual(r["onset_detected"], r["tp"])
                self.assertTrue(math.isnan(r["onset_within_15d"]) if not r["onset_detected"]
                                else 0 <= r["onset_within_15d"] <= 1, r)
        pk = rep["picked"]
        self.assertEqual(pk[1], next(k for k, r in rep["scores"][pk[0]].items() if r["chosen"]))
        self.assertEqual(rep["heatmap"]["png_decision"], pk)
        # the CSV's decision columns are yearly_change's; the PNG paints the picked model's changed patches red
        with open(os.path.join(self.out, "patch_change_2019.csv")) as f:
            rows = list(csv.DictReader(f))
        db = {r[0]: r[1] for r in self.conn.execute(
            f"SELECT patch_id, changed FROM yearly_change((SELECT ST_Envelope(ST_Collect(geom)) FROM rai4eo.patch), "
            f"2019, %s)", (pk[0],))}
        self.assertEqual({int(r["patch_id"]): r[f"{pk[0]}_changed"] == "1" for r in rows},
                         {k: bool(v) for k, v in db.items()})
        ds = gdal.Open(os.path.join(self.out, "heatmap_2019.png"))
        img = np.stack([ds.GetRasterBand(i + 1).ReadAsArray() for i in range(3)], axis=-1)
        red = (img[:, :, 0] == 255) & (img[:, :, 1] == 0) & (img[:, :, 2] == 0)
        # the cell centres (inside any outline) are pure red exactly where the decision says changed
        centres = red[SCALE // 2::SCALE, SCALE // 2::SCALE]
        self.assertEqual(int(centres.sum()), sum(1 for v in db.values() if v))

    def test_temporal_classifier_and_transitions_reported(self):
        tp = self.report()["temporal"]
        for k in ("temporal", "mono_temporal"):
            for avg in ("micro", "macro"):
                self.assertTrue(0 <= tp[k][avg] <= 1, (k, avg, tp[k][avg]))
        self.assertEqual(len(tp["per_class"]), 7)
        # the counts nest: truly changed >= decided changed >= with a known pair >= matching
        self.assertGreaterEqual(tp["changed"], tp["found"])
        self.assertGreaterEqual(tp["found"], tp["scored"])
        self.assertGreaterEqual(tp["scored"], tp["from_matches"])
        self.assertGreaterEqual(tp["from_matches"], tp["matches"])
        # the truly changed count is the truth's
        n = self.conn.execute("SELECT count(*) FROM demo.truth WHERE changed").fetchone()[0]
        self.assertEqual(tp["changed"], n)
        # the transitions the report counts are those class_transitions returns for the changed patches
        found = self.conn.execute("SELECT count(*) FROM class_transitions((SELECT ST_Envelope(ST_Collect(geom)) "
                                  "FROM rai4eo.patch), 2019, 'clc7_lstm', 'dino_trained') x JOIN demo.truth t "
                                  "USING (patch_id) WHERE t.changed").fetchone()[0]
        self.assertEqual(tp["found"], found)
        with open(os.path.join(self.out, "report.md")) as f:
            self.assertIn("## Temporal CLC classifier", f.read())

    def test_calibration_patches_are_not_scored(self):
        n = self.conn.execute("SELECT count(*) FROM demo.truth WHERE split = 'calibration'").fetchone()[0]
        self.assertEqual(n, 4)
        rep = self.report()
        scored = rep["metrics"]["dino_trained"]["positives"] + rep["metrics"]["dino_trained"]["negatives"]
        ev = self.conn.execute("SELECT count(*) FROM demo.truth WHERE split = 'eval'").fetchone()[0]
        self.assertLessEqual(scored, ev)


if __name__ == "__main__":
    unittest.main()
