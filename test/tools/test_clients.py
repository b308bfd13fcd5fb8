"""GIS clients on rai4eo's outputs, as analysts run them: GeoPandas, GDAL and QGIS.

On the small synthetic AOI of test/lib/r4_review_fixture.py (4 x 4 patches, pixel_mean calibrated):
- GeoPandas: gpd.read_postgis on yearly_change(...) gives a GeoDataFrame equal to the SQL rows
  (CRS EPSG:32629, the patch footprints, score / changed / onset);
- GDAL: gdal_translate "PG:... table=heat column=rast mode=2" of a heatmap table writes a GeoTIFF
  whose grid, CRS, nodata and every pixel equal the raster in the database;
- QGIS (python3-qgis, offscreen): the rai4eo.patch_change view as a PostGIS layer with a filter,
  an SQL layer on yearly_change (DB Manager's "load as new layer"), the heatmap table through the
  PostGIS raster provider, and the verdict table rai4eo.review.

Needs a server named by PG* variables; creates and drops its own database.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import warnings

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))

import numpy as np                                           # noqa: E402
import psycopg                                               # noqa: E402

import r4_review_fixture as fixture                          # noqa: E402

AOI = "ST_MakeEnvelope(-8.33, 39.72, -8.28, 39.76, 4326)"


class ClientsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rai4eo-clients-")
        cls.db = "rai4eo_clients_test_%d" % os.getpid()
        fixture.make(cls.db, cls.tmp)
        cls.conn = psycopg.connect("dbname=" + cls.db, autocommit=True)
        cls.conn.execute("CREATE TABLE public.heat AS SELECT 1 AS rid, yearly_heatmap(%s, %s, %%s) AS rast" % (AOI, fixture.YEAR),
                         (fixture.MODEL,))
        # What a site sets so that the QGIS view (default model) works for every connection.
        cls.conn.execute('ALTER DATABASE "%s" SET rai4eo.default_model = %s' % (cls.db, "'" + fixture.MODEL + "'"))
        cls.conn.execute("SELECT set_config('rai4eo.default_model', %s, false)", (fixture.MODEL,))
        cls.conn.execute("SELECT rai4eo_review(min(patch_id), %s, 'accept', %s, reviewer => 'ana') FROM rai4eo.patch",
                         (fixture.YEAR, fixture.MODEL))

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        with psycopg.connect("dbname=postgres", autocommit=True) as a:
            a.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def sql_rows(self):
        return self.conn.execute(
            "SELECT patch_id, sample_id, ST_AsBinary(geom), days_compared, change_rate, score, changed, onset "
            "FROM yearly_change(%s, %s, %%s) ORDER BY patch_id" % (AOI, fixture.YEAR), (fixture.MODEL,)).fetchall()

    # ---- GeoPandas ----------------------------------------------------------------------

    def test_geopandas_read_postgis(self):
        import geopandas as gpd
        from shapely import wkb
        with psycopg.connect("dbname=" + self.db) as c, warnings.catch_warnings():
            # pandas asks for SQLAlchemy; a DB-API connection works and is what Debian ships.
            warnings.simplefilter("ignore", UserWarning)
            df = gpd.read_postgis("SELECT * FROM yearly_change(%s, %s, %%(m)s)" % (AOI, fixture.YEAR), c,
                                  geom_col="geom", params={"m": fixture.MODEL})
        rows = self.sql_rows()
        self.assertEqual(len(rows), 16)
        self.assertIsInstance(df, gpd.GeoDataFrame)
        self.assertEqual(df.crs.to_epsg(), 32629)
        self.assertEqual(list(df.columns), ["patch_id", "sample_id", "geom", "days_compared", "days_changed", "change_rate",
                                            "mean_distance", "score", "changed", "onset"])
        df = df.sort_values("patch_id").reset_index(drop=True)
        self.assertEqual(df["patch_id"].tolist(), [r[0] for r in rows])
        self.assertEqual(df["sample_id"].tolist(), [r[1] for r in rows])
        for g, r in zip(df.geometry, rows):
            self.assertTrue(g.equals(wkb.loads(bytes(r[2]))))
            self.assertAlmostEqual(g.area, 360000.0, places=3)
        self.assertEqual(df["days_compared"].tolist(), [r[3] for r in rows])
        np.testing.assert_array_equal(df["change_rate"].to_numpy(), np.array([r[4] for r in rows], dtype=float))
        np.testing.assert_array_equal(df["score"].to_numpy(), np.array([r[5] for r in rows], dtype=float))
        self.assertEqual(df["changed"].tolist(), [r[6] for r in rows])
        self.assertGreater(int(df["changed"].sum()), 0)
        self.assertEqual([None if v is None or v != v else v for v in df["onset"].tolist()], [r[7] for r in rows])
        # Spatial work in GeoPandas on the result: the changed area in km2.
        km2 = df.loc[df["changed"]].geometry.area.sum() / 1e6
        self.assertAlmostEqual(km2, 0.36 * sum(1 for r in rows if r[6]), places=6)

    # ---- GDAL -----------------------------------------------------------------------------

    def test_gdal_translate_heatmap_table(self):
        from osgeo import gdal, osr
        gdal.UseExceptions()
        out = os.path.join(self.tmp, "heat.tif")
        src = "PG:dbname=%s schema=public table=heat column=rast mode=2" % self.db
        r = subprocess.run(["gdal_translate", "-q", "-of", "GTiff", src, out], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        ds = gdal.Open(out)
        w, h, nb, ulx, uly, sx, sy, srid = self.conn.execute(
            "SELECT ST_Width(rast), ST_Height(rast), ST_NumBands(rast), ST_UpperLeftX(rast), ST_UpperLeftY(rast), "
            "ST_ScaleX(rast), ST_ScaleY(rast), ST_SRID(rast) FROM public.heat").fetchone()
        self.assertEqual((ds.RasterXSize, ds.RasterYSize, ds.RasterCount), (w, h, nb))
        self.assertEqual((w, h, nb), (4, 4, 6))
        self.assertEqual(ds.GetGeoTransform(), (ulx, sx, 0.0, uly, 0.0, sy))
        srs = osr.SpatialReference(wkt=ds.GetProjection())
        srs.AutoIdentifyEPSG()
        self.assertEqual(srs.GetAuthorityCode(None), str(srid))
        for b in range(1, nb + 1):
            band = ds.GetRasterBand(b)
            self.assertEqual(band.GetNoDataValue(), -9999.0)
            self.assertEqual(gdal.GetDataTypeName(band.DataType), "Float32")
            got = band.ReadAsArray()
            want = np.array(self.conn.execute("SELECT ST_DumpValues(rast, %s, false) FROM public.heat", (b,)).fetchone()[0],
                            dtype=np.float32)
            np.testing.assert_array_equal(got, want)
        # Band 1 is the change rate the rows give, patch by patch.
        rates = {round(r[4], 6) for r in self.sql_rows()}
        self.assertEqual({round(float(v), 6) for v in ds.GetRasterBand(1).ReadAsArray().ravel()}, rates)

    # ---- QGIS -----------------------------------------------------------------------------

    def test_qgis_layers(self):
        # QGIS runs in a child process: QgsApplication wants to own the process (Qt, exit hooks).
        script = os.path.join(self.tmp, "qgis_layers.py")
        with open(script, "w") as f:
            f.write(QGIS_SCRIPT)
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=self.tmp, R4_DB=self.db,
                   R4_MODEL=fixture.MODEL, R4_YEAR=str(fixture.YEAR), R4_AOI=AOI)
        r = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr[-3000:])
        got = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        rows = self.sql_rows()
        view = self.conn.execute("SELECT count(*), sum(days_changed) FROM rai4eo.patch_change WHERE year = %s",
                                 (fixture.YEAR,)).fetchone()
        self.assertEqual(got["view_valid"], "True")
        self.assertEqual(int(got["view_count"]), view[0])
        self.assertEqual(int(got["view_days_changed"]), view[1])
        self.assertEqual(got["view_crs"], "EPSG:32629")
        self.assertEqual(got["view_geometry"], "Polygon")
        self.assertEqual(got["sql_valid"], "True")
        self.assertEqual(int(got["sql_count"]), len(rows))
        self.assertEqual(got["sql_fields"], "patch_id,sample_id,days_compared,days_changed,change_rate,mean_distance,"
                                            "score,changed,onset")
        self.assertEqual(int(got["sql_changed"]), sum(1 for r in rows if r[6]))
        self.assertEqual(got["sql_max_score"], repr(max(r[5] for r in rows)))
        self.assertEqual(got["raster_valid"], "True")
        self.assertEqual(got["raster_size"], "4x4x6")
        self.assertEqual(got["raster_crs"], "EPSG:32629")
        self.assertEqual(got["review_count"], "1")
        self.assertEqual(got["review_verdict"], "accept")


QGIS_SCRIPT = r'''
import os
from qgis.core import QgsApplication, QgsDataSourceUri, QgsRasterLayer, QgsVectorLayer, QgsWkbTypes

QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()


def uri(schema, table, geom, where="", key="", srid=None):
    u = QgsDataSourceUri()
    # libpq's own defaults (PG* variables) fill what is left empty, as for psql.
    u.setConnection(os.environ.get("PGHOST", ""), os.environ.get("PGPORT", ""), os.environ["R4_DB"],
                    os.environ.get("PGUSER", ""), "")
    u.setDataSource(schema, table, geom, where, key)
    if srid:
        # The geometry columns have no SRID typmod (patches of several UTM zones): QGIS
        # cannot tell the CRS from the catalog and asks for it; the URI gives it.
        u.setSrid(srid)
    return u


db, model, year, aoi = os.environ["R4_DB"], os.environ["R4_MODEL"], os.environ["R4_YEAR"], os.environ["R4_AOI"]
# 1. the QGIS view, filtered to a year, keyed by id
v = QgsVectorLayer(uri("rai4eo", "patch_change", "geom", "year = %s" % year, "id", "32629").uri(False), "change", "postgres")
print("view_valid=%s" % v.isValid())
print("view_count=%d" % v.featureCount())
print("view_days_changed=%d" % sum(f["days_changed"] for f in v.getFeatures()))
print("view_crs=%s" % v.crs().authid())
print("view_geometry=%s" % QgsWkbTypes.displayString(QgsWkbTypes.flatType(v.wkbType())))
# 2. an SQL layer, as DB Manager's "load as new layer" makes it
sql = "(SELECT * FROM yearly_change(%s, %s, '%s'))" % (aoi, year, model)
s = QgsVectorLayer(uri("", sql, "geom", "", "patch_id", "32629").uri(False), "yearly", "postgres")
print("sql_valid=%s" % s.isValid())
print("sql_fields=%s" % ",".join(s.fields().names()))
feats = list(s.getFeatures())
print("sql_count=%d" % len(feats))
print("sql_changed=%d" % sum(1 for f in feats if f["changed"]))
print("sql_max_score=%r" % max(f["score"] for f in feats))
# 3. the heatmap table through the PostGIS raster provider
r = QgsRasterLayer(uri("public", "heat", "rast").uri(False), "heat", "postgresraster")
print("raster_valid=%s" % r.isValid())
print("raster_size=%dx%dx%d" % (r.width(), r.height(), r.bandCount()))
print("raster_crs=%s" % r.crs().authid())
# 4. the verdicts, a table without geometry
t = QgsVectorLayer(uri("rai4eo", "review", None, "", "").uri(False), "review", "postgres")
print("review_count=%d" % t.featureCount())
print("review_verdict=%s" % next(t.getFeatures())["verdict"])
app.exitQgis()
'''


if __name__ == "__main__":
    unittest.main()
