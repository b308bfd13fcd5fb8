"""Tests of tools/synth and the layout helpers (no database needed)."""

import csv
import datetime as dt
import glob
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "lib"))

import numpy as np                                           # noqa: E402
from osgeo import gdal                                       # noqa: E402

from rai4eo_tools import corpus_layout as L                  # noqa: E402
from rai4eo_tools import synth_scene as S                    # noqa: E402

gdal.UseExceptions()
SYNTH = os.path.join(ROOT, "tools", "synth")


def synth(out, *args):
    r = subprocess.run([sys.executable, SYNTH, "--out", out, "--quiet"] + list(args),
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("synth failed (%d): %s %s" % (r.returncode, r.stdout, r.stderr))
    return r


def read(path):
    return gdal.Open(path).ReadAsArray()


def tree(root):
    return sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                  if os.path.isfile(p))


class LayoutTest(unittest.TestCase):
    """Sample ids, identifiers and dates, checked against independent arithmetic."""

    def test_sample_id_parse_and_format(self):
        s = L.SampleId.parse("33N_16E-243N_39_05")
        self.assertEqual((s.zone, s.north, s.e, s.n, s.col, s.row), (33, True, 16, 243, 39, 5))
        self.assertEqual(str(s), "33N_16E-243N_39_05")
        self.assertEqual((s.utm, s.tile, s.epsg), ("33N", "16E-243N", 32633))
        self.assertEqual(L.SampleId.parse("1S_0E-0N_00_00").epsg, 32701)
        for bad in ("33N_16E-243N_40_05", "33N_016E-243N_39_05", "61N_1E-1N_00_00", "0N_1E-1N_00_00",
                    "33X_16E-243N_39_05", "33N_16E-1024N_00_00", "33N_16E-243N_39_5", "33N-16E-243N_39_05", ""):
            with self.assertRaises(ValueError, msg=bad):
                L.SampleId.parse(bad)

    def test_patch_id_packing(self):
        # ((((zone*2 + hemi)*1024 + E)*1024 + N)*64 + col)*64 + row, written out by hand.
        self.assertEqual(L.patch_id_of("33N_16E-243N_39_05"),
                         33 * 2 * 2**32 + 16 * 2**22 + 243 * 2**12 + 39 * 2**6 + 5)
        self.assertEqual(L.patch_id_of("60S_1023E-1023N_39_39"),
                         (60 * 2 + 1) * 2**32 + 1023 * 2**22 + 1023 * 2**12 + 39 * 64 + 39)
        self.assertLess(L.patch_id_of("60S_1023E-1023N_39_39"), 2**39)
        rng = np.random.default_rng(3)
        seen = set()
        for _ in range(2000):
            s = L.SampleId(int(rng.integers(1, 61)), bool(rng.integers(2)), int(rng.integers(1024)),
                           int(rng.integers(1024)), int(rng.integers(40)), int(rng.integers(40)))
            pid = s.patch_id()
            self.assertEqual(L.SampleId.from_patch_id(pid), s)
            self.assertEqual(L.SampleId.parse(str(s)), s)
            seen.add((str(s), pid))
        self.assertEqual(len(set(p for _, p in seen)), len(set(s for s, _ in seen)))

    def test_image_id(self):
        pid = L.patch_id_of("29N_23E-183N_10_10")
        d = dt.date(2019, 12, 29)
        self.assertEqual(L.image_id_of(pid, L.PF, d), pid * 2**24 + (d - dt.date(2000, 1, 1)).days)
        self.assertEqual(L.image_id_of(pid, L.S2, d), pid * 2**24 + 2**16 + (d - dt.date(2000, 1, 1)).days)
        self.assertEqual(L.image_id_of(pid, 255, d), pid * 2**24 + 255 * 2**16 + (d - dt.date(2000, 1, 1)).days)
        self.assertEqual(L.image_patch_id(L.image_id_of(pid, L.S2, d)), pid)
        self.assertEqual(L.image_sensor_code(L.image_id_of(pid, 7, d)), 7)
        self.assertEqual(L.image_acquired(L.image_id_of(pid, 7, d)), d)
        self.assertLess(L.image_id_of(2**39 - 1, L.S2, dt.date(2179, 6, 6)), 2**63)
        with self.assertRaises(ValueError):
            L.image_id_of(pid, L.PF, dt.date(1999, 12, 31))

    def test_grid_geometry(self):
        s = L.SampleId.parse("29N_23E-183N_10_11")
        self.assertEqual(s.bounds(), (23 * 24000 + 6000.0, 183 * 24000 + 6600.0,
                                      23 * 24000 + 6600.0, 183 * 24000 + 7200.0))
        self.assertEqual(s.geotransform(3), (558000.0, 3.0, 0.0, 4399200.0, 0.0, -3.0))
        self.assertEqual(L.SampleId.from_grid(29, True, 23 * 40 + 10, 183 * 40 + 11), s)

    def test_pf_dates(self):
        full = L.pf_dates()
        self.assertEqual(len(full), 146)
        self.assertEqual((full[0], full[-1]), (dt.date(2018, 1, 3), dt.date(2019, 12, 29)))
        self.assertTrue(all((b - a).days == 5 for a, b in zip(full, full[1:])))
        for step in (1, 2, 4, 7, 24, 36, 73):
            ds = L.pf_dates((2018, 2019), step)
            y18 = [d for d in ds if d.year == 2018]
            y19 = [d for d in ds if d.year == 2019]
            self.assertEqual(len(y18), len(range(0, 73, step)))
            self.assertEqual([d - dt.timedelta(days=365) for d in y19], y18)
            self.assertTrue(set(ds) <= set(full))
        self.assertEqual(len(L.pf_dates((2018,))), 73)
        self.assertEqual([d.isoformat() for d in L.pf_dates((2018, 2019), 73)], ["2018-01-03", "2019-01-03"])

    def test_names(self):
        self.assertEqual(L.parse_image_name(L.PF, "2018-01-03.tif"), dt.date(2018, 1, 3))
        self.assertEqual(L.parse_image_name(L.S2, "2018-07.tif"), dt.date(2018, 7, 1))
        for sensor, bad in ((L.PF, "2018-13-03.tif"), (L.PF, "2018-01.tif"), (L.S2, "2018-01-03.tif"),
                            (L.PF, "2018-02-30.tif"), (L.S2, "x.tif")):
            with self.assertRaises(ValueError):
                L.parse_image_name(sensor, bad)

    def test_clc_codes(self):
        self.assertEqual(len(L.CLC_CODES), 44)
        self.assertEqual(L.CLC_CODES[0], 111)
        self.assertEqual(L.CLC_CODES[-1], 523)
        groups = {g: [c for c in L.CLC_CODES if L.class7_of(c) == g] for g in L.CLASS7}
        self.assertEqual(groups["forest"], [311, 312, 313])
        self.assertEqual(groups["shrub"], [321, 322, 323, 324])
        self.assertEqual(groups["bare"], [331, 332, 333, 334, 335])
        self.assertIn(243, groups["agricultural"])
        self.assertIn(244, groups["agricultural"])
        self.assertEqual(sum(len(v) for v in groups.values()), 44)


class CorpusTest(unittest.TestCase):
    """A small corpus generated once: layout, GeoTIFFs, labels, truth, determinism."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rai4eo-synth-")
        cls.a = os.path.join(cls.tmp, "a")
        synth(cls.a, "--grid", "2", "--date-step", "36", "--s2-years", "2018", "--jobs", "1")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def samples(self):
        return [L.SampleId.from_grid(29, True, 23 * 40 + 10 + c, 183 * 40 + 10 + r) for r in range(2) for c in range(2)]

    def test_layout(self):
        want = set()
        for sid in self.samples():
            for d in L.pf_dates((2018, 2019), 36):
                want.add(os.path.relpath(L.image_path(self.a, sid, L.PF, d), self.a))
            for y, m in L.s2_months((2018,)):
                want.add(os.path.relpath(L.image_path(self.a, sid, L.S2, L.s2_date(y, m)), self.a))
            want.add(os.path.relpath(L.label_path(self.a, sid), self.a))
        got = set(tree(self.a))
        self.assertEqual({p for p in got if p.startswith(("imagery", "labels"))}, want)
        self.assertIn("resources/rapidai4eo_geometries.geojson.gz", got)
        for f in ("changes.csv", "README", "synth.json"):
            self.assertIn("truth/" + f, got)
        self.assertIn("imagery/29N/23E-183N/29N_23E-183N_10_10/PF-SR/2018-01-03.tif", got)
        self.assertIn("imagery/29N/23E-183N/29N_23E-183N_11_11/S2-SR/2018-12.tif", got)
        self.assertIn("labels/29N/23E-183N/labels_29N_23E-183N_11_10.geojson", got)

    def test_geotiffs(self):
        for sid in self.samples():
            for sensor, d in ((L.PF, dt.date(2019, 12, 29)), (L.S2, dt.date(2018, 7, 1))):
                ds = gdal.Open(L.image_path(self.a, sid, sensor, d))
                nb, h, w = L.SENSOR_SHAPE[sensor]
                self.assertEqual((ds.RasterCount, ds.RasterYSize, ds.RasterXSize), (nb, h, w))
                self.assertEqual(ds.GetGeoTransform(), sid.geotransform(L.SENSOR_PIXEL_M[sensor]))
                srs = ds.GetSpatialRef()
                self.assertEqual((srs.GetAuthorityName(None), srs.GetAuthorityCode(None)), ("EPSG", "32629"))
                self.assertEqual(ds.GetMetadata("IMAGE_STRUCTURE").get("COMPRESSION"), "DEFLATE")
                self.assertEqual(ds.GetRasterBand(1).DataType, gdal.GDT_UInt16)
                names = PF_NAMES if sensor == L.PF else L.S2_BANDS
                self.assertEqual([ds.GetRasterBand(i + 1).GetDescription() for i in range(nb)], list(names))
                a = ds.ReadAsArray().astype(np.float64)
                self.assertGreater(a.min(), 0)
                self.assertLess(a.max(), 12000)
                # Surface reflectance x 10000: plausible scene means, NIR brightest of BGRN.
                means = a.reshape(nb, -1).mean(axis=1)
                self.assertTrue(np.all((means > 100) & (means < 6000)), means)
                if sensor == L.PF:
                    self.assertLess(means[0], means[3])

    def test_labels(self):
        with gzip.open(L.geometries_path(self.a)) as f:
            res = json.load(f)
        by_id = {ft["properties"]["sample_id"]: ft["geometry"] for ft in res["features"]}
        self.assertEqual(set(by_id), {str(s) for s in self.samples()})
        for sid in self.samples():
            with open(L.label_path(self.a, sid)) as f:
                doc = json.load(f)
            self.assertEqual(doc["type"], "Feature")
            props = doc["properties"]
            self.assertEqual(props["country"], "PT")
            keys = [k for k in props if k.startswith("clc_")]
            self.assertEqual(sorted(keys), sorted(L.clc_key(c) for c in L.CLC_CODES))
            vals = [props[k] for k in keys]
            self.assertTrue(all(0 <= v <= 1 for v in vals))
            self.assertAlmostEqual(math.fsum(vals), 1.0, places=9)
            # Shares are whole pixels of the 200 x 200 patch.
            self.assertTrue(all(abs(v * 40000 - round(v * 40000)) < 1e-6 for v in vals))
            ring = doc["geometry"]["coordinates"][0]
            self.assertEqual(doc["geometry"], by_id[str(sid)])
            self.assertEqual(len(ring), 5)
            lon = [p[0] for p in ring]
            lat = [p[1] for p in ring]
            # Zone 29N, easting ~558 km, northing ~4398 km: central Portugal.
            self.assertTrue(all(-8.5 < x < -8.0 for x in lon), lon)
            self.assertTrue(all(39.6 < y < 39.8 for y in lat), lat)

    def test_truth(self):
        with open(os.path.join(self.a, "truth", "changes.csv")) as f:
            rows = list(csv.DictReader(f))
        self.assertGreater(len(rows), 0)
        ids = {str(s) for s in self.samples()}
        for r in rows:
            self.assertIn(r["sample_id"], ids)
            self.assertIn(r["kind"], S.CHANGE_KINDS)
            d = dt.date.fromisoformat(r["date"])
            self.assertEqual(d.year, 2019)
            self.assertIn(d, L.pf_dates((2019,)))
            # onset: the first image of the corpus (every 36th date) on or after the date.
            kept = [x for x in L.pf_dates((2018, 2019), 36) if x >= d]
            self.assertEqual(r["onset"], kept[0].isoformat() if kept else "")
            m = read(os.path.join(self.a, "truth", "masks", r["sample_id"] + ".tif"))
            self.assertAlmostEqual(float(r["changed_fraction"]), m.sum() / 40000.0, places=6)

    def test_deterministic_by_seed(self):
        b = os.path.join(self.tmp, "b")
        c = os.path.join(self.tmp, "c")
        synth(b, "--grid", "2", "--date-step", "36", "--s2-years", "2018", "--jobs", "2")
        synth(c, "--grid", "2", "--date-step", "36", "--s2-years", "2018", "--seed", "2")
        self.assertEqual(tree(self.a), tree(b))
        differ = 0
        for rel in tree(self.a):
            pa, pb, pc = (os.path.join(x, rel) for x in (self.a, b, c))
            if rel.endswith(".tif"):
                np.testing.assert_array_equal(read(pa), read(pb), err_msg=rel)
                if os.path.exists(pc) and not np.array_equal(read(pa), read(pc)):
                    differ += 1
            elif not rel.endswith("synth.json"):
                with open(pa, "rb") as fa, open(pb, "rb") as fb:
                    self.assertEqual(fa.read(), fb.read(), rel)
        self.assertGreater(differ, 50)

    def test_usage_errors(self):
        r = subprocess.run([sys.executable, SYNTH, "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        self.assertIn("--date-step", r.stdout)
        for bad in (["--grid", "0"], ["--date-step", "0"], ["--zone", "99N"], ["--years", "2017"]):
            r = subprocess.run([sys.executable, SYNTH, "--out", os.path.join(self.tmp, "x")] + bad,
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, bad)
        # An existing corpus is not overwritten without --force.
        r = subprocess.run([sys.executable, SYNTH, "--out", self.a, "--grid", "1"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)


PF_NAMES = L.PF_BANDS


def dilate(mask, r):
    out = mask.copy()
    h, w = mask.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] |= \
                mask[max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)]
    return out


def ndvi(img):
    r, n = img[2].astype(np.float64), img[3].astype(np.float64)
    return (n - r) / (n + r)


class SceneTest(unittest.TestCase):
    """The simulation itself: planted changes, phenology, S2 against PF."""

    @classmethod
    def setUpClass(cls):
        cls.scene = S.Scene(5, 5, 5)
        cls.bank = S.NoiseBank(5, cls.scene.h, cls.scene.w)

    def without_changes(self):
        """A copy of the scene in which nothing is planted (same noise, same phenology)."""
        import copy
        other = copy.copy(self.scene)
        other._bufs = {}
        other.events = []
        other.basins = []
        for b in self.scene.basins:
            nb = copy.copy(b)
            nb.date = dt.date(2100, 1, 1)              # basins stay as they were in 2018
            other.basins.append(nb)
        return other

    def test_every_kind_planted(self):
        kinds = {t[2] for t in self.scene.truth}
        self.assertTrue(kinds <= set(S.CHANGE_KINDS))
        self.assertEqual({"water_to_bare", "bare_to_water"} & kinds, {"water_to_bare", "bare_to_water"})
        # A larger AOI with a larger share of changed patches holds every kind.
        sc = S.Scene(1, 10, 10, change_share=0.25)
        self.assertEqual({t[2] for t in sc.truth}, set(S.CHANGE_KINDS))
        for (col, row), date, kind, frac in sc.truth:
            if sum(1 for t in sc.truth if t[0] == (col, row)) == 1:
                self.assertAlmostEqual(frac, sc.truth_masks[(col, row)].sum() / 40000.0, places=6)

    def test_changes_visible_after_their_date_only(self):
        sc, ref = self.scene, self.without_changes()
        for (col, row), date, kind, frac in self.scene.truth:
            if frac < 0.02:
                continue
            mask = sc.truth_masks[(col, row)].astype(bool)
            ys, xs = sc.patch_slice(col, row)
            before = date - dt.timedelta(days=5)
            a = sc.render_pf(before, self.bank)[:, ys, xs].copy()
            b = ref.render_pf(before, self.bank)[:, ys, xs].copy()
            np.testing.assert_array_equal(a, b, err_msg="%s %s changed before %s" % (kind, (col, row), date))
            # Slow changes (building, panel rows, tunnels, a growing pit) are judged later.
            later = {"agriculture_to_construction": 150, "agriculture_to_solar": 150,
                     "agriculture_to_greenhouse": 90}
            after = date + dt.timedelta(days=later.get(kind, 60))
            if kind == "shrub_to_quarry":
                after = dt.date(2019, 12, 29)
            a = sc.render_pf(after, self.bank)[:, ys, xs].astype(np.float64)
            b = ref.render_pf(after, self.bank)[:, ys, xs].astype(np.float64)
            diff = np.abs(a - b).max(axis=0)
            if kind not in ("water_to_bare", "bare_to_water"):
                # Gap-fill blotches (4 x 4 px block means) may carry a change 3 px across the edge.
                far = ~dilate(mask, 4)
                self.assertTrue(np.all(diff[far] == 0), "%s %s changed outside its mask" % (kind, (col, row)))
            self.assertGreater(np.median(diff[mask]), 200, "%s %s too faint" % (kind, (col, row)))
            if kind == "forest_to_shrub":
                self.assertLess(ndvi(a)[mask].mean(), ndvi(b)[mask].mean() - 0.2)
            elif kind == "water_to_bare":
                self.assertGreater(a[3][mask].mean(), b[3][mask].mean() + 1000)
            elif kind == "bare_to_water":
                self.assertLess(a[3][mask].mean(), b[3][mask].mean() - 1000)
            else:
                self.assertLess(ndvi(a)[mask].mean(), 0.35)

    def test_year_pairs_show_phenology_but_not_structure(self):
        """Unchanged patches: year-to-year differences far smaller than planted changes."""
        sc = self.scene
        d18, d19 = dt.date(2018, 9, 20), dt.date(2019, 9, 20)
        a = sc.render_pf(d18, self.bank).astype(np.float64)
        b = sc.render_pf(d19, self.bank).astype(np.float64)
        changed = set(sc.truth_masks)
        ratios = []
        for col in range(sc.nx):
            for row in range(sc.ny):
                if (col, row) in changed:
                    continue
                ys, xs = sc.patch_slice(col, row)
                ratios.append(np.abs(ndvi(a[:, ys, xs]) - ndvi(b[:, ys, xs])).mean())
        self.assertLess(np.median(ratios), 0.06)
        self.assertGreater(np.max(ratios), 0.005)       # years are not identical

    def test_seasonal_cycle(self):
        sc = self.scene
        kind = sc.kind[sc.unit]
        spring = ndvi(sc.render_pf(dt.date(2018, 4, 13), self.bank))
        summer = ndvi(sc.render_pf(dt.date(2018, 8, 11), self.bank))
        grass = np.isin(kind, (S.K_PASTURE, S.K_GRASS))
        forest = np.isin(kind, (S.K_BROAD, S.K_CONIFER))
        # (0.05, not more: a dry year's spring is less green)
        self.assertGreater(spring[grass].mean() - summer[grass].mean(), 0.05)
        self.assertLess(abs(spring[forest].mean() - summer[forest].mean()), 0.1)
        self.assertGreater(summer[forest].mean(), summer[grass].mean())

    def test_s2_matches_pf_at_10m(self):
        sc = self.scene
        s2 = sc.render_s2(2018, 6, None).astype(np.float64)
        pf = sc.render_pf(dt.date(2018, 6, 15), self.bank).astype(np.float32)
        for i in range(4):
            agg = S.aggregate_to_s2(pf[i]).astype(np.float64)
            rel = np.abs(agg - s2[i]).mean() / s2[i].mean()
            self.assertLess(rel, 0.06, "band %d" % i)
        self.assertEqual(s2.shape, (12, sc.h * 3 // 10, sc.w * 3 // 10))
        # B01 dimmer than B09 over vegetation, as in L2A data.
        self.assertLess(s2[10].mean(), s2[11].mean())

    def test_aggregate_to_s2(self):
        rng = np.random.default_rng(1)
        x = rng.random((40, 60)).astype(np.float32)
        got = S.aggregate_to_s2(x)
        # Independent: split each 3 m pixel into 30 x 30 cells of 0.1 m, average 100 x 100 cells.
        fine = np.repeat(np.repeat(x.astype(np.float64), 30, 0), 30, 1)
        want = fine.reshape(12, 100, 18, 100).mean(axis=(1, 3))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    def test_gap_fill_copies_repeat_an_earlier_date(self):
        sc = self.scene
        dates = L.pf_dates((2018, 2019))
        copies = [d for d in dates if sc.gapfill_source(d) != d]
        self.assertGreater(len(copies), 0)
        self.assertLess(len(copies), 0.15 * len(dates))
        d = copies[0]
        src = sc.gapfill_source(d)
        self.assertIn((d - src).days, (5, 10, 15))
        a = sc.render_pf(d, self.bank).copy()
        np.testing.assert_array_equal(a, sc.render_pf(src, self.bank))

    def test_regions_differ_in_cover_and_weather(self):
        cont = S.Scene(3, 4, 4, "continental")
        atl = S.Scene(3, 4, 4, "atlantic")
        arable = [np.isin(sc.kind[sc.unit], (S.K_ARABLE,)).mean() for sc in (cont, atl)]
        pasture = [np.isin(sc.kind[sc.unit], (S.K_PASTURE,)).mean() for sc in (cont, atl)]
        self.assertGreater(arable[0], arable[1])
        self.assertLess(pasture[0], pasture[1])
        self.assertEqual(self.scene.snow_level(dt.date(2018, 1, 23)), 0.0)    # iberia: no snow
        days = [d for d in L.pf_dates((2018, 2019)) if cont.snow_level(d) > 0.3]
        self.assertGreater(len(days), 0)
        snowy = cont.render_pf(days[0], S.NoiseBank(3, cont.h, cont.w)).astype(np.float64)
        # Snow lifts the visible bands far above any snow-free winter scene.
        clear = [d for d in L.pf_dates((2018,)) if d.month in (1, 2, 12) and cont.snow_level(d) == 0
                 and cont.gapfill_source(d) == d][0]
        plain = cont.render_pf(clear, S.NoiseBank(3, cont.h, cont.w)).astype(np.float64)
        self.assertGreater(snowy[0].mean(), plain[0].mean() + 1000)
        with self.assertRaises(ValueError):
            S.Scene(1, 2, 2, "atlantis")

    def test_floods_come_and_go(self):
        sc = S.Scene(2, 4, 4, "atlantic")
        dates = L.pf_dates((2018, 2019))
        wet = [d for d in dates if sc.flood_level(d) > 0.3]
        self.assertGreater(len(wet), 0)
        self.assertLess(len(wet), 12)
        self.assertEqual(sc.flood_level(dt.date(2018, 7, 2)), 0.0)
        bank = S.NoiseBank(2, sc.h, sc.w)
        d = wet[0]
        while sc.gapfill_source(d) != d:
            d = [x for x in wet if x > d][0]
        img = sc.render_pf(d, bank).astype(np.float64)
        fl = sc.flood_idx[sc.flood_dist < sc.flood_level(d)]
        self.assertLess(img[3].ravel()[fl].mean(), 1000)          # water is dark in the NIR

    def test_share_of_changed_patches(self):
        for seed in (1, 2):
            sc = S.Scene(seed, 10, 10)
            big = {p for p, _, _, f in sc.truth if f >= 0.05}
            self.assertGreaterEqual(len(big), 8, seed)
            self.assertLessEqual(len(big), 20, seed)


if __name__ == "__main__":
    unittest.main()
