"""A real scene of a sensor the user registers, on the user's own grid, end to end.

The scene is the Landsat 7 ETM+ crop L7_ETMs.tif that Debian's r-cran-stars ships (349 x 352
px, 6 bands B1 B2 B3 B4 B5 B7, Byte DNs, 28.5 m pixels, SIRGAS 2000 / UTM 25S, EPSG:31985).
The test registers the sensor, makes a second date by a documented transform of the scene
(TRANSFORM below), and loads both dates twice:
  (a) raster2pgsql tiles of 50 x 50 px into a staging table, inserted through the documented
      insert views rai4eo.patch_input / rai4eo.image_input with ids r2p_col_row;
  (b) tools/load --scene FILE --sensor L7-ETM+ --date D --patch-size 50 --prefix l7.
It checks the patch count and ids, that the pixels round-trip exactly (against GDAL's read of
the file) and that (a) and (b) hold the same pixels and footprints; then embeds every image
with a tiny random ViT of 6 input channels and runs daily_change and yearly_change: the planted
patches rank top and are exactly the changed set.
"""

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "lib"))
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))

import numpy as np                                           # noqa: E402
import psycopg                                               # noqa: E402
from osgeo import gdal                                       # noqa: E402

from r4_fixture import admin, schemas                        # noqa: E402
from rai4eo_tools import corpus_layout as L                  # noqa: E402
from rai4eo_tools import safetensors_io                      # noqa: E402
from rai4eo_tools import vit_reference as ref                # noqa: E402

gdal.UseExceptions()
LOAD = os.path.join(ROOT, "tools", "load")
L7 = "/usr/lib/R/site-library/stars/tif/L7_ETMs.tif"        # dpkg -L r-cran-stars | grep L7_ETMs
PX = 50
DAY1, DAY2 = dt.date(2018, 6, 1), dt.date(2019, 6, 1)        # 365 days apart: each other's partner
SENSOR = "L7-ETM+"
# TRANSFORM: date 2 = date 1 with every DN times 1.1 (a global gain, rounded, clipped to 255),
# and the 2 x 2 tiles at col 1-2, row 2-3 replaced by a constant dark-water spectrum (B1..B7
# = 62, 45, 30, 12, 6, 4) plus the tile's own B1 texture / 8: a planted land-cover change.
GAIN = 1.1
PLANTED = {(c, r) for c in (1, 2) for r in (2, 3)}
WATER = np.array([62, 45, 30, 12, 6, 4], np.float64)


def transform(scene):
    out = np.clip(np.rint(scene.astype(np.float64) * GAIN), 0, 255)
    for c, r in PLANTED:
        ys, xs = slice(r * PX, (r + 1) * PX), slice(c * PX, (c + 1) * PX)
        tex = scene[0, ys, xs].astype(np.float64) / 8
        out[:, ys, xs] = np.rint(WATER[:, None, None] + tex[None])
    return out.astype(np.uint8)


@unittest.skipUnless(os.path.exists(L7) and shutil.which("raster2pgsql"),
                     "needs r-cran-stars (L7_ETMs.tif) and postgis (raster2pgsql): scripts/test.sh installs them")
class SceneTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.db = "r4_scene_%d" % os.getpid()
        with admin() as a:
            a.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)
            a.execute('CREATE DATABASE "%s"' % cls.db)
        cls.conn = psycopg.connect("dbname=%s" % cls.db, autocommit=True)
        cls.conn.execute("CREATE EXTENSION rai4eo CASCADE")
        x, g = schemas(cls.conn)
        cls.conn.execute("SET search_path = %s, %s" % (x, g))
        cls.code = cls.conn.execute("SELECT rai4eo_register_sensor(%s, '{B1,B2,B3,B4,B5,B7}', 30, "
                                    "'{485,560,660,835,1650,2220}', 16, 1, 0, "
                                    "'Landsat 7 ETM+ DNs (r-cran-stars L7_ETMs.tif)')", (SENSOR,)).fetchone()[0]
        cls.tmp = tempfile.mkdtemp(prefix="r4_scene_")
        ds = gdal.Open(L7)
        cls.scene = ds.ReadAsArray()                         # [6][352][349] uint8
        cls.gt, cls.wkt = ds.GetGeoTransform(), ds.GetProjection()
        cls.files = {DAY1: os.path.join(cls.tmp, "l7_day1.tif"), DAY2: os.path.join(cls.tmp, "l7_day2.tif")}
        cls.pixels = {DAY1: cls.scene, DAY2: transform(cls.scene)}
        for day, path in cls.files.items():
            out = gdal.GetDriverByName("GTiff").Create(path, ds.RasterXSize, ds.RasterYSize, 6, gdal.GDT_Byte)
            out.SetGeoTransform(cls.gt)
            out.SetProjection(cls.wkt)
            for b in range(6):
                out.GetRasterBand(b + 1).WriteArray(cls.pixels[day][b])
            out = None
        cls.ncol, cls.nrow = ds.RasterXSize // PX, ds.RasterYSize // PX      # 6 x 7 full tiles

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        with admin() as a:
            a.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def q(self, sql, args=None):
        return self.conn.execute(sql, args).fetchall()

    def env(self):
        e = dict(os.environ, PGDATABASE=self.db)
        e.pop("PGOPTIONS", None)
        return e

    def test_scene(self):
        # ---- the sensor ----
        code = self.code
        self.assertEqual(code, 2)
        self.assertEqual(self.q("SELECT band_names, wavelengths, resolution FROM rai4eo.sensor WHERE name = %s", (SENSOR,)),
                         [(["B1", "B2", "B3", "B4", "B5", "B7"], [485, 560, 660, 835, 1650, 2220], 30)])
        with self.assertRaises(psycopg.errors.UniqueViolation):
            self.q("SELECT rai4eo_register_sensor(%s, '{B1}', 30)", (SENSOR,))

        # ---- (a) raster2pgsql tiles through the insert views ----
        for day, path in self.files.items():
            sql = subprocess.run(["raster2pgsql", "-s", "31985", "-t", "%dx%d" % (PX, PX), "-c" if day == DAY1 else "-a",
                                  path, "public.l7_staging"], capture_output=True, text=True, check=True).stdout
            subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.db], input=sql, text=True,
                           check=True, env=self.env(), capture_output=True)
            self.conn.execute("ALTER TABLE public.l7_staging ADD COLUMN IF NOT EXISTS day date")
            self.conn.execute("UPDATE public.l7_staging SET day = %s WHERE day IS NULL", (day,))
        # Tile (col, row) from its upper-left corner; only full 50 x 50 tiles.
        self.conn.execute("""
            CREATE TEMP VIEW tiles AS
            SELECT format('r2p_%%s_%%s', round((ST_UpperLeftX(rast) - %r) / (%d * %r))::int,
                          round((%r - ST_UpperLeftY(rast)) / (%d * %r))::int) AS sample_id, day, rast
            FROM public.l7_staging WHERE ST_Width(rast) = %d AND ST_Height(rast) = %d"""
                          % (self.gt[0], PX, self.gt[1], self.gt[3], PX, -self.gt[5], PX, PX))
        self.conn.execute("INSERT INTO rai4eo.patch_input (sample_id, geom) "
                          "SELECT sample_id, ST_Envelope(rast) FROM tiles WHERE day = %s", (DAY1,))
        got = self.q("INSERT INTO rai4eo.image_input (sample_id, sensor, acquired, rast) "
                     "SELECT sample_id, %s, day, rast FROM tiles RETURNING image_id, patch_id, sample_id", (SENSOR,))
        self.assertEqual(len(got), 2 * 42)
        for iid, pid, sid in got:
            self.assertEqual(pid, L.own_patch_id(sid))
            self.assertLess(pid, 2 ** 33)
            self.assertEqual(L.image_patch_id(iid), pid)
            self.assertEqual(L.image_sensor_code(iid), code)

        # ---- (b) tools/load --scene on the own grid ----
        for day, path in self.files.items():
            r = subprocess.run([sys.executable, LOAD, "--scene", path, "--sensor", SENSOR, "--date", day.isoformat(),
                                "--patch-size", str(PX), "--prefix", "l7", "--quiet"],
                               capture_output=True, text=True, env=self.env())
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # A rerun loads nothing new; a sensor of another band count is refused.
        r = subprocess.run([sys.executable, LOAD, "--scene", self.files[DAY1], "--sensor", SENSOR, "--date",
                            DAY1.isoformat(), "--patch-size", str(PX), "--prefix", "l7", "--quiet"],
                           capture_output=True, text=True, env=self.env())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = subprocess.run([sys.executable, LOAD, "--scene", self.files[DAY1], "--sensor", "PF-SR", "--date",
                            DAY1.isoformat(), "--patch-size", str(PX), "--prefix", "l7pf", "--quiet"],
                           capture_output=True, text=True, env=self.env())
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("6 bands, but sensor PF-SR has 4", r.stdout + r.stderr)

        # ---- patch count and ids ----
        want = {"%s_%d_%d" % (p, c, r) for p in ("l7", "r2p") for c in range(self.ncol) for r in range(self.nrow)}
        self.assertEqual((self.ncol, self.nrow), (6, 7))
        rows = self.q("SELECT sample_id, patch_id, ST_SRID(geom) FROM rai4eo.patch")
        self.assertEqual({r[0] for r in rows}, want)
        self.assertEqual(len(rows), 84)
        for sid, pid, srid in rows:
            self.assertEqual((pid, srid), (L.patch_id_of(sid), 31985))
        self.assertEqual(self.q("SELECT sensor, acquired, count(*) FROM rai4eo.image GROUP BY 1, 2 ORDER BY 2"),
                         [(SENSOR, DAY1, 84), (SENSOR, DAY2, 84)])
        self.assertEqual(self.q("SELECT count(*) FROM rai4eo.image "
                                "WHERE image_id <> rai4eo.image_id_of(patch_id, sensor, acquired)"), [(0,)])

        # ---- pixels round-trip; (a) and (b) agree ----
        for sid, day, vals, w, h, ulx, uly in self.q(
                "SELECT p.sample_id, i.acquired, rai4eo_raster_values(i.rast), ST_Width(i.rast), ST_Height(i.rast), "
                "ST_UpperLeftX(i.rast), ST_UpperLeftY(i.rast) FROM rai4eo.image i JOIN rai4eo.patch p USING (patch_id)"):
            _, c, r = sid.rsplit("_", 2)
            c, r = int(c), int(r)
            expect = self.pixels[day][:, r * PX:(r + 1) * PX, c * PX:(c + 1) * PX]
            self.assertEqual((w, h), (PX, PX))
            self.assertEqual((ulx, uly), (self.gt[0] + c * PX * self.gt[1], self.gt[3] + r * PX * self.gt[5]))
            np.testing.assert_array_equal(np.array(vals, np.float64), expect.astype(np.float64), err_msg=sid)
        self.assertEqual(self.q("""
            SELECT count(*) FROM rai4eo.patch a JOIN rai4eo.patch b ON b.sample_id = 'r2p' || substr(a.sample_id, 3)
            WHERE a.sample_id LIKE 'l7\\_%%' AND ST_Equals(a.geom, b.geom)"""), [(42,)])

        # ---- embed with a tiny random ViT of 6 channels ----
        state = ref.random_vit_state(embed_dim=16, depth=1, patch_size=10, in_chans=6, img_size=PX, seed=5)
        self.q("SELECT rai4eo_load_model('l7tiny', %s::bytea, %s::jsonb)",
               (safetensors_io.serialize(state), '{"bands": [1, 2, 3, 4, 5, 6], "num_heads": 2, "scale": 0.00392156862}'))
        self.conn.execute("CALL rai4eo_refresh_embeddings('l7tiny', %s)", (SENSOR,))
        self.assertEqual(self.q("SELECT count(*) FROM rai4eo.embedding WHERE model = 'l7tiny'"), [(168,)])

        # ---- change: the planted tiles rank top, and are the changed set ----
        aoi = "ST_MakeEnvelope(%s, %s, %s, %s, 31985)" % (self.gt[0], self.gt[3] + self.nrow * PX * self.gt[5],
                                                           self.gt[0] + self.ncol * PX * self.gt[1], self.gt[3])
        planted = {"%s_%d_%d" % (p, c, r) for p in ("l7", "r2p") for c, r in PLANTED}
        daily = self.q("SELECT sample_id, distance FROM daily_change(%s, %%s, 'l7tiny', 2.0, %%s) "
                       "ORDER BY distance DESC" % aoi, (DAY2, SENSOR))
        self.assertEqual(len(daily), 84)
        self.assertEqual({s for s, _ in daily[:8]}, planted, daily[:10])
        cut = (daily[7][1] + daily[8][1]) / 2
        yearly = self.q("SELECT sample_id, days_compared, days_changed FROM yearly_change(%s, 2019, 'l7tiny', %%s, %%s)"
                        % aoi, (cut, SENSOR))
        self.assertEqual(len(yearly), 84)
        self.assertEqual({r[1] for r in yearly}, {1})
        self.assertEqual({s for s, _, n in yearly if n == 1}, planted)
        # The heatmap of the own grid: one 1425 m pixel (50 px x 28.5 m) per tile; band 5 the decision.
        w, h, pw, ph, ulx, uly, changed = self.q(
            "SELECT ST_Width(r), ST_Height(r), ST_PixelWidth(r), ST_PixelHeight(r), ST_UpperLeftX(r), ST_UpperLeftY(r), "
            "ST_DumpValues(r, 5) FROM yearly_heatmap(%s, 2019, 'l7tiny', %%s, %%s) r" % aoi, (cut, SENSOR))[0]
        self.assertEqual((w, h, ulx, uly), (6, 7, self.gt[0], self.gt[3]))
        self.assertAlmostEqual(pw, PX * self.gt[1], places=6)
        self.assertAlmostEqual(ph, PX * -self.gt[5], places=6)
        self.assertEqual({(c, r) for r in range(7) for c in range(6) if changed[r][c] == 1}, PLANTED)
        self.assertEqual(sum(v == 0 for row in changed for v in row), 42 - len(PLANTED))
        # The QGIS view covers every registered sensor: the scene's rows carry its name,
        # the same days changed as yearly_change, and the key of its code.
        self.conn.execute("SET rai4eo.default_model = 'l7tiny'")
        self.conn.execute("SELECT set_config('rai4eo.change_threshold', %s, false)", (repr(cut),))
        view = self.q("SELECT v.sample_id, v.days_changed, v.id = (s.code::bigint * 549755813888 + v.patch_id) * 10000 + v.year "
                      "FROM rai4eo.patch_change v JOIN rai4eo.sensor s ON s.name = v.sensor "
                      "WHERE v.sensor = %s AND v.year = 2019", (SENSOR,))
        self.assertEqual(sorted(view), sorted((s, n, True) for s, _, n in yearly))
        self.assertEqual(self.q("SELECT count(*) FILTER (WHERE sensor <> %s), count(*) - count(DISTINCT id) "
                                "FROM rai4eo.patch_change", (SENSOR,)), [(0, 0)])
        self.conn.execute("RESET rai4eo.change_threshold")
        self.conn.execute("RESET rai4eo.default_model")
        # Both loads of a tile give the same distance.
        d = dict(daily)
        for c in range(self.ncol):
            for r in range(self.nrow):
                self.assertAlmostEqual(d["l7_%d_%d" % (c, r)], d["r2p_%d_%d" % (c, r)], places=6)

    def test_own_id_clash(self):
        # Two own ids with the same 33-bit hash (cx78024_0_0 and cx92703_0_0): the second is
        # refused with 23505 naming the first, by the insert view and by tools/load.
        a, b = "cx78024_0_0", "cx92703_0_0"
        self.assertEqual(L.own_patch_id(a), L.own_patch_id(b))
        self.q("INSERT INTO rai4eo.patch_input (sample_id, geom) VALUES (%s, ST_MakeEnvelope(0, 0, 1, 1, 31985)) "
               "RETURNING patch_id", (a,))
        with self.assertRaises(psycopg.errors.UniqueViolation) as e:
            self.q("INSERT INTO rai4eo.patch_input (sample_id, geom) VALUES (%s, ST_MakeEnvelope(0, 0, 1, 1, 31985)) "
                   "RETURNING patch_id", (b,))
        self.assertIn('has the same patch_id %d as the stored "%s"' % (L.own_patch_id(a), a), str(e.exception))
        # tools/load: a one-tile scene whose tile id is b
        path = os.path.join(self.tmp, "one.tif")
        out = gdal.GetDriverByName("GTiff").Create(path, PX, PX, 6, gdal.GDT_Byte)
        out.SetGeoTransform(self.gt)
        out.SetProjection(self.wkt)
        for k in range(6):
            out.GetRasterBand(k + 1).WriteArray(self.scene[k, :PX, :PX])
        out = None
        r = subprocess.run([sys.executable, LOAD, "--scene", path, "--sensor", SENSOR, "--date", DAY1.isoformat(),
                            "--patch-size", str(PX), "--prefix", "cx92703", "--quiet"],
                           capture_output=True, text=True, env=self.env())
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("patch id %s has the same patch_id %d as the stored %s" % (b, L.own_patch_id(a), a),
                      r.stdout + r.stderr)
        self.assertEqual(self.q("SELECT sample_id FROM rai4eo.patch WHERE sample_id LIKE 'cx%%'"), [(a,)])
        self.conn.execute("DELETE FROM rai4eo.patch WHERE sample_id = %s", (a,))


if __name__ == "__main__":
    unittest.main()
