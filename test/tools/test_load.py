"""Tests of tools/load and the corpus schema (sql/src/40_corpus.sql) against a live server.

The server comes from the PG* environment variables (as for psql).  The tests create
their own database (rai4eo_tools_test_<pid>) with CREATE EXTENSION rai4eo CASCADE and
drop it afterwards.  RAI4EO_TEST_SETUP_SQL may name an SQL file to run instead of
CREATE EXTENSION (a stand-in schema while the extension is not installed).  Out-db
checks read the generated files as the server's OS user and set superuser-only GUCs.
"""

import datetime as dt
import glob
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "lib"))

import numpy as np                                           # noqa: E402
import psycopg                                               # noqa: E402
from osgeo import gdal                                       # noqa: E402

from rai4eo_tools import corpus_layout as L                  # noqa: E402

gdal.UseExceptions()
SYNTH = os.path.join(ROOT, "tools", "synth")
LOAD = os.path.join(ROOT, "tools", "load")
GRID, STEP = 2, 24
N_PF = 2 * len(range(0, 73, STEP))               # per patch
N_S2 = 24


def parse_wkb(wkb):
    """Header and band payloads of an in-db WKB raster (postgis-raster-format.md section 2)."""
    endian = "<" if wkb[0] == 1 else ">"
    ver, nb, sx, sy, ix, iy, kx, ky, srid, w, h = struct.unpack(endian + "HHddddddiHH", wkb[1:61])
    off, bands = 61, []
    for _ in range(nb):
        flags = wkb[off]
        pt = flags & 0x0F
        size = {4: 1, 5: 2, 6: 2, 7: 4, 8: 4, 10: 4, 11: 8}[pt]
        off += 1 + size
        assert not flags & 0x80, "out-db band in WKB"
        bands.append((pt, wkb[off:off + w * h * size]))
        off += w * h * size
    assert off == len(wkb)
    return dict(ver=ver, scale=(sx, sy), ul=(ix, iy), skew=(kx, ky), srid=srid, size=(w, h)), bands


class LoaderTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        try:
            admin = psycopg.connect("", autocommit=True)
        except psycopg.Error as e:
            raise RuntimeError("test_load needs a PostgreSQL server named by PG* variables: %s" % e)
        cls.db = "rai4eo_tools_test_%d" % os.getpid()
        admin.execute('DROP DATABASE IF EXISTS "%s"' % cls.db)
        admin.execute('CREATE DATABASE "%s"' % cls.db)
        admin.close()
        cls.dsn = "dbname=%s" % cls.db
        cls.conn = psycopg.connect(cls.dsn, autocommit=True)
        setup = os.environ.get("RAI4EO_TEST_SETUP_SQL")
        if setup:
            with open(setup) as f:
                cls.conn.execute(f.read())
        else:
            cls.conn.execute("CREATE EXTENSION rai4eo CASCADE")
        cls.tmp = tempfile.mkdtemp(prefix="rai4eo-load-")
        os.chmod(cls.tmp, 0o755)                      # the server reads out-db files as its own user
        cls.corpus = os.path.join(cls.tmp, "corpus")
        r = subprocess.run([sys.executable, SYNTH, "--out", cls.corpus, "--grid", str(GRID),
                            "--date-step", str(STEP), "--quiet", "--jobs", "1"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("synth failed: %s" % r.stderr)
        cls.samples = [L.SampleId.from_grid(29, True, 23 * 40 + 10 + c, 183 * 40 + 10 + rw)
                       for rw in range(GRID) for c in range(GRID)]

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        with psycopg.connect("", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.conn.execute("TRUNCATE rai4eo.patch CASCADE")

    # ---- helpers ------------------------------------------------------------------------

    def load(self, *args, expect=0):
        r = subprocess.run([sys.executable, LOAD, "--dsn", self.dsn] + [str(a) for a in args],
                           capture_output=True, text=True)
        if expect is not None:
            self.assertEqual(r.returncode, expect, "load %s -> %d\n%s%s" % (args, r.returncode, r.stdout, r.stderr))
        return r

    def q(self, sql, *params):
        return self.conn.execute(sql, params).fetchall()

    def files(self, root=None):
        """{(sample_id, sensor, date): path} of the corpus images."""
        root = root or self.corpus
        out = {}
        for sid in self.samples:
            for sensor in L.SENSORS:
                for p in glob.glob(os.path.join(L.image_dir(root, sid, sensor), "*.tif")):
                    out[(str(sid), sensor, L.parse_image_name(sensor, os.path.basename(p)))] = p
        return out

    def check_pixels(self, path, wkb):
        ds = gdal.Open(path)
        meta, bands = parse_wkb(wkb)
        gt = ds.GetGeoTransform()
        self.assertEqual(meta["ul"], (gt[0], gt[3]))
        self.assertEqual(meta["scale"], (gt[1], gt[5]))
        self.assertEqual(meta["srid"], 32629)
        self.assertEqual(meta["size"], (ds.RasterXSize, ds.RasterYSize))
        self.assertEqual(len(bands), ds.RasterCount)
        arr = ds.ReadAsArray()
        for i, (pt, data) in enumerate(bands):
            self.assertEqual(pt, 6)                                  # 16BUI
            np.testing.assert_array_equal(np.frombuffer(data, "<u2").reshape(arr.shape[1:]), arr[i])

    def check_dumpvalues(self, image_id, path):
        arr = gdal.Open(path).ReadAsArray()
        rows = self.q("SELECT (d).nband, (d).valarray FROM (SELECT ST_DumpValues(rast, NULL::int[], false) d "
                      "FROM rai4eo.image WHERE image_id = %s) s ORDER BY 1", image_id)
        self.assertEqual(len(rows), arr.shape[0])
        for nband, vals in rows:
            np.testing.assert_array_equal(np.array(vals, dtype=np.float64), arr[nband - 1].astype(np.float64))

    def check_loaded(self, outdb):
        files = self.files()
        got = self.q("SELECT p.sample_id, i.sensor, i.acquired, i.image_id, i.patch_id FROM rai4eo.image i "
                     "JOIN rai4eo.patch p USING (patch_id)")
        self.assertEqual({(s, sn, a) for s, sn, a, _, _ in got}, set(files))
        self.assertEqual(len(got), GRID * GRID * (N_PF + N_S2))
        for s, sn, a, iid, pid in got:
            self.assertEqual(pid, L.patch_id_of(s))
            self.assertEqual(iid, L.image_id_of(pid, sn, a))
        # Footprints, CRS and country.
        rows = self.q("SELECT sample_id, ST_SRID(geom), ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom), "
                      "ST_NPoints(geom), country FROM rai4eo.patch")
        self.assertEqual(len(rows), GRID * GRID)
        for s, srid, x0, y0, x1, y1, npts, country in rows:
            self.assertEqual(srid, 32629)
            self.assertEqual((x0, y0, x1, y1), L.SampleId.parse(s).bounds())
            self.assertEqual((npts, country), (5, "PT"))
        # Raster georeference agrees with each patch footprint.
        bad = self.q("SELECT count(*) FROM rai4eo.image i JOIN rai4eo.patch p USING (patch_id) "
                     "WHERE NOT ST_Equals(ST_Envelope(i.rast), p.geom) OR ST_SRID(i.rast) <> 32629 "
                     "OR ST_NumBands(i.rast) <> CASE i.sensor WHEN 'PF-SR' THEN 4 ELSE 12 END "
                     "OR ST_BandPixelType(i.rast, 1) <> '16BUI' OR ST_BandIsNoData(i.rast, 1)")
        self.assertEqual(bad[0][0], 0)
        # Labels equal the files.
        for sid in self.samples:
            with open(L.label_path(self.corpus, sid)) as f:
                props = json.load(f)["properties"]
            want = {c: props[L.clc_key(c)] for c in L.CLC_CODES if props[L.clc_key(c)] > 0}
            got = dict(self.q("SELECT code, fraction FROM rai4eo.patch_clc WHERE patch_id = %s", sid.patch_id()))
            self.assertEqual(set(got), set(want))
            for c in want:
                self.assertAlmostEqual(got[c], want[c], delta=1e-6 * max(1.0, want[c]))
            g7 = {}
            for c, f in want.items():
                g7[L.class7_of(c)] = g7.get(L.class7_of(c), 0.0) + f
            row = self.q("SELECT artificial, agricultural, forest, shrub, bare, wetlands, water, dominant "
                         "FROM rai4eo.patch_class7 WHERE patch_id = %s", sid.patch_id())[0]
            for name, v in zip(L.CLASS7, row[:7]):
                self.assertAlmostEqual(v, g7.get(name, 0.0), delta=1e-5)
            self.assertEqual(row[7], max(L.CLASS7, key=lambda k: (g7.get(k, 0.0), -L.CLASS7.index(k))))
            self.assertAlmostEqual(sum(row[:7]), 1.0, delta=1e-5)
        if outdb:
            paths = self.q("SELECT i.image_id, ST_BandPath(i.rast, b), (ST_BandMetadata(i.rast, b)).outdbbandnum, b "
                           "FROM rai4eo.image i, generate_series(1, ST_NumBands(i.rast)) b")
            byid = {L.image_id_of(L.patch_id_of(s), sn, a): p for (s, sn, a), p in files.items()}
            for iid, path, num, b in paths:
                self.assertEqual(path, os.path.abspath(byid[iid]))
                self.assertEqual(num, b)
        return files

    # ---- corpus mode ----------------------------------------------------------------------

    def test_in_db(self):
        r = self.load(self.corpus)
        self.assertIn("%d images loaded" % (GRID * GRID * (N_PF + N_S2)), r.stdout)
        self.assertIn("%d new patches" % (GRID * GRID), r.stdout)
        self.assertRegex(r.stderr, r"load: \d+/%d images" % (GRID * GRID * (N_PF + N_S2)))
        files = self.check_loaded(outdb=False)
        rows = self.q("SELECT p.sample_id, i.sensor, i.acquired, ST_AsBinary(i.rast) FROM rai4eo.image i "
                      "JOIN rai4eo.patch p USING (patch_id)")
        for s, sn, a, wkb in rows:
            self.check_pixels(files[(s, sn, a)], bytes(wkb))
        sid = str(self.samples[1])
        for sensor, d in ((L.PF, dt.date(2019, 12, 29)), (L.S2, dt.date(2018, 6, 1))):
            self.check_dumpvalues(L.image_id_of(L.patch_id_of(sid), sensor, d), files[(sid, sensor, d)])
        # Loading again adds nothing.
        before = self.q("SELECT count(*), sum(image_id) FROM rai4eo.image")
        r = self.load(self.corpus)
        self.assertIn("0 images loaded", r.stdout)
        self.assertIn("%d already present" % len(files), r.stdout)
        self.assertIn("0 new patches", r.stdout)
        self.assertEqual(self.q("SELECT count(*), sum(image_id) FROM rai4eo.image"), before)
        self.assertEqual(self.q("SELECT count(*) FROM rai4eo.patch_clc WHERE fraction > 0")[0][0],
                         self.q("SELECT count(*) FROM rai4eo.patch_clc")[0][0])

    def test_out_db(self):
        r = self.load("--out-db", self.corpus)
        self.assertIn("%d images loaded" % (GRID * GRID * (N_PF + N_S2)), r.stdout)
        files = self.check_loaded(outdb=True)
        # Header-only rasters: small, and reading them needs the out-db GUCs.
        size = self.q("SELECT max(pg_column_size(rast)) FROM rai4eo.image")[0][0]
        self.assertLess(size, 2000)
        with psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute("SELECT postgis_raster_lib_version()")
            c.execute("SET postgis.gdal_enabled_drivers = 'GTiff'")
            c.execute("SET postgis.enable_outdb_rasters = on")
            rows = c.execute("SELECT p.sample_id, i.sensor, i.acquired, ST_AsBinary(i.rast, true) FROM rai4eo.image i "
                             "JOIN rai4eo.patch p USING (patch_id)").fetchall()
            for s, sn, a, wkb in rows:
                self.check_pixels(files[(s, sn, a)], bytes(wkb))
            sid = str(self.samples[2])
            d = dt.date(2018, 1, 3)
            vals = c.execute("SELECT ST_DumpValues(rast, 4, false) FROM rai4eo.image WHERE image_id = %s",
                             (L.image_id_of(L.patch_id_of(sid), L.PF, d),)).fetchone()[0]
            np.testing.assert_array_equal(np.array(vals, np.float64),
                                          gdal.Open(files[(sid, L.PF, d)]).ReadAsArray()[3].astype(np.float64))
        r = self.load("--out-db", self.corpus)
        self.assertIn("0 images loaded", r.stdout)

    def test_resume(self):
        self.load("--quiet", self.corpus)
        total = self.q("SELECT count(*) FROM rai4eo.image")[0][0]
        a, b = self.samples[0].patch_id(), self.samples[3].patch_id()
        # As if the load had stopped: one patch half done, one not started.
        self.conn.execute("DELETE FROM rai4eo.image WHERE patch_id = %s AND acquired >= '2019-01-01'", (a,))
        self.conn.execute("DELETE FROM rai4eo.patch WHERE patch_id = %s", (b,))
        missing = total - self.q("SELECT count(*) FROM rai4eo.image")[0][0]
        r = self.load(self.corpus)
        self.assertIn("%d images loaded" % missing, r.stdout)
        self.assertIn("1 new patches", r.stdout)
        self.assertEqual(self.q("SELECT count(*) FROM rai4eo.image")[0][0], total)
        self.assertGreater(self.q("SELECT count(*) FROM rai4eo.patch_clc WHERE patch_id = %s", b)[0][0], 0)

    def test_bad_files_are_reported_and_skipped(self):
        bad = os.path.join(self.tmp, "bad")
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(self.corpus, bad)
        os.chmod(bad, 0o755)
        s0, s1, s2 = (str(s) for s in self.samples[:3])
        f = self.files(bad)
        corrupt = f[(s0, L.PF, dt.date(2018, 1, 3))]
        with open(corrupt, "wb") as fh:
            fh.write(b"II*\x00" + os.urandom(2000))
        truncated = f[(s0, L.PF, dt.date(2019, 1, 3))]
        with open(truncated, "rb") as fh:
            data = fh.read()
        with open(truncated, "wb") as fh:
            fh.write(data[:len(data) // 2])
        small = f[(s1, L.PF, dt.date(2018, 5, 3))]
        src = gdal.Open(f[(s1, L.PF, dt.date(2018, 8, 31))])
        gdal.Translate(small, src, srcWin=[0, 0, 100, 100], creationOptions=["COMPRESS=DEFLATE"])
        fewbands = f[(s1, L.S2, dt.date(2018, 2, 1))]
        gdal.Translate(fewbands, gdal.Open(f[(s1, L.S2, dt.date(2018, 3, 1))]), bandList=[1, 2, 3, 4])
        badname = os.path.join(L.image_dir(bad, self.samples[2], L.PF), "2018-13-40.tif")
        shutil.copy(f[(s2, L.PF, dt.date(2018, 1, 3))], badname)
        label = L.label_path(bad, self.samples[3])
        with open(label, "w") as fh:
            fh.write('{"type": "Feature", "properties": {"clc_999": 1.0}}')
        broken = [corrupt, truncated, small, fewbands, badname, label]
        for mode in ("--in-db", "--out-db"):
            self.conn.execute("TRUNCATE rai4eo.patch CASCADE")
            r = self.load(mode, bad, expect=3)
            for p in broken:
                self.assertIn("skipped %s: " % p, r.stderr, mode)
            self.assertIn("expected 4 bands of 200 x 200 px", r.stderr)
            self.assertIn("expected 12 bands of 60 x 60 px", r.stderr)
            self.assertIn("unknown CLC code clc_999", r.stderr)
            n_images = GRID * GRID * (N_PF + N_S2) - 4
            self.assertEqual(self.q("SELECT count(*) FROM rai4eo.image")[0][0], n_images)
            self.assertIn("%d images loaded" % n_images, r.stdout)
            self.assertEqual(self.q("SELECT count(*) FROM rai4eo.patch_clc WHERE patch_id = %s",
                                    self.samples[3].patch_id())[0][0], 0)
            r = self.load(mode, bad, expect=3)
            self.assertIn("0 images loaded", r.stdout)
            self.assertEqual(self.q("SELECT count(*) FROM rai4eo.image")[0][0], n_images)

    def test_usage_and_connection_errors(self):
        r = subprocess.run([sys.executable, LOAD, "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        self.assertIn("--out-db", r.stdout)
        for args in ([], [self.corpus, "--scene", "x.tif"], [os.path.join(self.tmp, "nope")], [self.tmp],
                     ["--in-db", "--out-db", self.corpus]):
            r = subprocess.run([sys.executable, LOAD] + args, capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, args)
        r = subprocess.run([sys.executable, LOAD, "--dsn", "host=%s port=1" % self.tmp, self.corpus],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot connect", r.stderr)
        r = subprocess.run([sys.executable, LOAD, "--dsn", "dbname=template1", self.corpus],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("not installed", r.stderr)

    # ---- scene mode -------------------------------------------------------------------------

    def make_scene(self, name, date, xoff=0):
        f = self.files()
        paths = [f[(str(s), L.PF, date)] for s in self.samples]
        vrt = gdal.BuildVRT("", paths)
        out = os.path.join(self.tmp, name)
        gdal.Translate(out, vrt, srcWin=[xoff, 0, 400 - xoff, 400], creationOptions=["COMPRESS=DEFLATE", "TILED=YES"])
        return out

    def test_scene(self):
        d = dt.date(2018, 5, 3)
        scene = self.make_scene("aoi_2018-05-03.tif", d)
        files = self.files()
        for mode in ("--in-db", "--out-db"):
            self.conn.execute("TRUNCATE rai4eo.patch CASCADE")
            r = self.load(mode, "--scene", scene, "--country", "PT")
            self.assertIn("4 images loaded", r.stdout)
            rows = self.q("SELECT p.sample_id, i.sensor, i.acquired, ST_AsBinary(i.rast, true), p.country, "
                          "ST_Equals(ST_Envelope(i.rast), p.geom) FROM rai4eo.image i JOIN rai4eo.patch p USING (patch_id)") \
                if mode == "--in-db" else None
            if mode == "--out-db":
                with psycopg.connect(self.dsn, autocommit=True) as c:
                    c.execute("SELECT postgis_raster_lib_version()")
                    c.execute("SET postgis.gdal_enabled_drivers = 'GTiff'")
                    c.execute("SET postgis.enable_outdb_rasters = on")
                    rows = c.execute("SELECT p.sample_id, i.sensor, i.acquired, ST_AsBinary(i.rast, true), p.country, "
                                     "ST_Equals(ST_Envelope(i.rast), p.geom) FROM rai4eo.image i "
                                     "JOIN rai4eo.patch p USING (patch_id)").fetchall()
                    self.assertEqual(c.execute("SELECT DISTINCT ST_BandPath(rast, 1) FROM rai4eo.image").fetchall(),
                                     [(os.path.abspath(scene),)])
            self.assertEqual(sorted(x[0] for x in rows), sorted(str(s) for s in self.samples))
            for s, sn, a, wkb, country, same in rows:
                self.assertEqual((sn, a, country, same), (L.PF, d, "PT", True))
                self.check_pixels(files[(s, L.PF, d)], bytes(wkb))
            r = self.load(mode, "--scene", scene)
            self.assertIn("0 images loaded", r.stdout)
            self.assertIn("4 already present", r.stdout)
        # Tiles follow the 600 m grid, not the scene's corner; the date can be given.
        odd = self.make_scene("odd.tif", d, xoff=1)
        self.conn.execute("TRUNCATE rai4eo.patch CASCADE")
        r = self.load("--scene", odd, expect=3)
        self.assertIn("no date in the file name", r.stderr)
        r = self.load("--scene", odd, "--date", "2018-05-03")
        self.assertIn("2 images loaded", r.stdout)
        rows = self.q("SELECT p.sample_id, ST_AsBinary(i.rast) FROM rai4eo.image i JOIN rai4eo.patch p USING (patch_id)")
        self.assertEqual(sorted(x[0] for x in rows), sorted(str(s) for s in self.samples if s.col == 11))
        for s, wkb in rows:
            self.check_pixels(files[(s, L.PF, d)], bytes(wkb))
        # A pixel grid off the 600 m grid is cut from the scene's corner, with a note.
        ds = gdal.Open(odd, gdal.GA_Update)
        gt = list(ds.GetGeoTransform())
        gt[0] += 1.5
        ds.SetGeoTransform(gt)
        ds = None
        self.conn.execute("TRUNCATE rai4eo.patch CASCADE")
        r = self.load("--scene", odd, "--date", "2018-05-03")
        self.assertIn("not aligned to the 600 m grid", r.stderr)
        self.assertIn("2 images loaded", r.stdout)
        self.assertEqual(self.q("SELECT min(ST_XMin(geom)) FROM rai4eo.patch")[0][0], gt[0])

    # ---- schema -----------------------------------------------------------------------------

    def test_clc_class_table(self):
        rows = self.q("SELECT code, name, level2, level2_name, level1, level1_name, class7 FROM rai4eo.clc_class ORDER BY code")
        self.assertEqual([r[0] for r in rows], list(L.CLC_CODES))
        for code, name, l2, l2n, l1, l1n, c7 in rows:
            # The rule of the brief, written out independently of class7_of.
            want = ("artificial" if code < 200 else "agricultural" if code < 300 else
                    "forest" if 311 <= code <= 313 else "shrub" if 321 <= code <= 324 else
                    "bare" if 331 <= code <= 335 else "wetlands" if code < 500 else "water")
            self.assertEqual(c7, want, code)
            self.assertEqual((name, l2, l2n, l1, l1n),
                             (L.CLC_LEVEL3[code], code // 10, L.CLC_LEVEL2[code // 10], code // 100, L.CLC_LEVEL1[code // 100]))
        self.assertEqual(len({r[6] for r in rows}), 7)

    def test_identifiers_match_python(self):
        rng = np.random.default_rng(7)
        ids = [str(s) for s in self.samples] + ["33N_16E-243N_39_05", "60S_1023E-1023N_39_39", "1N_0E-0N_00_00"]
        for _ in range(200):
            ids.append(str(L.SampleId(int(rng.integers(1, 61)), bool(rng.integers(2)), int(rng.integers(1024)),
                                      int(rng.integers(1024)), int(rng.integers(40)), int(rng.integers(40)))))
        rows = self.q("SELECT s, rai4eo.patch_id_of(s), rai4eo.sample_id_of(rai4eo.patch_id_of(s)) FROM unnest(%s::text[]) s", ids)
        for s, pid, back in rows:
            self.assertEqual((pid, back), (L.patch_id_of(s), s))
        pid = L.patch_id_of("29N_23E-183N_10_10")
        for sensor, d in ((L.PF, dt.date(2018, 1, 3)), (L.S2, dt.date(2019, 12, 1)), (L.PF, dt.date(2179, 6, 6))):
            self.assertEqual(self.q("SELECT rai4eo.image_id_of(%s, %s, %s)", pid, sensor, d)[0][0],
                             L.image_id_of(pid, sensor, d))
        for bad in ("33N_016E-243N_39_05", "33N_16E-243N_40_05", "33N_1024E-243N_39_05", " x", "x\n", ""):
            with self.assertRaises(psycopg.errors.InvalidTextRepresentation):
                self.q("SELECT rai4eo.patch_id_of(%s)", bad)
            with self.assertRaises(ValueError):
                L.patch_id_of(bad)
        # The user's own ids: the same 33-bit hash in SQL and Python, below every RapidAI4EO id.
        own = ["x", "tile_12_34", "field-0042", "l7_5_6", "Ünïcødé tile", "33N_16E", "a" * 200]
        rows = self.q("SELECT s, rai4eo.patch_id_of(s), rai4eo.sample_id_of(rai4eo.patch_id_of(s)) FROM unnest(%s::text[]) s", own)
        self.assertEqual(rows, [(s, L.own_patch_id(s), None) for s in own])
        self.assertLess(max(r[1] for r in rows), min(L.patch_id_of(s) for s in ids))
        self.assertLess(max(r[1] for r in rows), 2 ** 33)
        with self.assertRaises(psycopg.errors.CheckViolation):
            self.q("INSERT INTO rai4eo.patch VALUES (1, '29N_23E-183N_10_10', "
                   "ST_MakeEnvelope(0, 0, 600, 600, 32629), NULL)")
        with self.assertRaises(psycopg.errors.CheckViolation):
            self.q("INSERT INTO rai4eo.patch VALUES (%s, '29N_23E-183N_10_10', ST_MakeEnvelope(0, 0, 600, 600), NULL)", pid)


if __name__ == "__main__":
    unittest.main()
