"""End to end: rai4eo_refresh_embeddings and the change functions on a tiny synthetic corpus.

tools/synth writes a 2 x 2 patch corpus (every 24th Planet Fusion date of 2018 and 2019,
so each 2019 date has its partner 365 days earlier, plus Sentinel-2), tools/load loads
it, a tiny random ViT is stored with rai4eo_load_model, and then:

  - the refresh is resumable (max_images, then the rest; a cancelled run keeps its
    committed batches and a re-run finishes without embedding anything twice),
  - two sessions refreshing at once embed every image exactly once between them,
  - an image that cannot be embedded is reported with a WARNING and skipped, once per run,
  - yearly_change, yearly_heatmap, daily_heatmap and heatmap_png agree with a numpy
    computation over the stored embeddings.

The server comes from the PG* variables; the test creates and drops its own database
(rai4eo_refresh_test_<pid>).  A build without rai4eo_embed fails it (never a skip).
"""

import datetime as dt
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import zlib

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "lib"))

import numpy as np                                           # noqa: E402
import psycopg                                               # noqa: E402

from rai4eo_tools import corpus_layout as L                  # noqa: E402
from rai4eo_tools import safetensors_io                      # noqa: E402
from rai4eo_tools import vit_reference as ref                # noqa: E402

SYNTH = os.path.join(ROOT, "tools", "synth")
LOAD = os.path.join(ROOT, "tools", "load")
GRID, STEP = 2, 24
N_PF = 2 * len(range(0, 73, STEP))               # per patch: 4 dates a year
N_S2 = 24                                        # per patch: monthly, 2018 and 2019
N_IMAGES = GRID * GRID * (N_PF + N_S2)
EPOCH = dt.date(2000, 1, 1)


class Notices:
    """Collect the server's messages of one connection as (severity, message, detail)."""

    def __init__(self, conn):
        self.items = []
        conn.add_notice_handler(lambda d: self.items.append((d.severity_nonlocalized, d.message_primary,
                                                             d.message_detail)))

    def messages(self, severity):
        return [m for s, m, _ in self.items if s == severity]

    def embedded(self):
        """The count in the refresh's closing NOTICE."""
        done = [m for m in self.messages("NOTICE") if ": finished: " in m]
        assert len(done) == 1, self.items
        return int(done[0].split(": finished: ")[1].split(" embedded")[0])


class RefreshTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        try:
            admin = psycopg.connect("", autocommit=True)
        except psycopg.Error as e:
            raise RuntimeError("test_refresh needs a PostgreSQL server named by PG* variables: %s" % e)
        cls.db = "rai4eo_refresh_test_%d" % os.getpid()
        admin.execute('DROP DATABASE IF EXISTS "%s"' % cls.db)
        admin.execute('CREATE DATABASE "%s"' % cls.db)
        admin.close()
        cls.dsn = "dbname=%s" % cls.db
        cls.conn = psycopg.connect(cls.dsn, autocommit=True)
        cls.conn.execute("CREATE EXTENSION rai4eo CASCADE")
        if cls.conn.execute("SELECT to_regprocedure('rai4eo_embed(raster[], text)')").fetchone()[0] is None:
            cls.tearDownClass()
            raise RuntimeError("rai4eo_embed(raster[], text) is not installed: nothing can be embedded")
        cls.tmp = tempfile.mkdtemp(prefix="rai4eo-refresh-")
        corpus = os.path.join(cls.tmp, "corpus")
        for cmd in ([sys.executable, SYNTH, "--out", corpus, "--grid", str(GRID), "--date-step", str(STEP),
                     "--quiet", "--jobs", "1"],
                    [sys.executable, LOAD, "--dsn", cls.dsn, "--quiet", corpus]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("%s failed: %s%s" % (os.path.basename(cmd[1]), r.stdout, r.stderr))
        # A tiny ViT: 20 px patches, so a 200 x 200 PF image is a 10 x 10 grid (S2: 3 x 3).
        state = ref.random_vit_state(embed_dim=32, depth=2, patch_size=20, in_chans=4, img_size=200, seed=5)
        cls.conn.execute("SELECT rai4eo_load_model('tiny', %s::bytea, %s::jsonb)",
                         (safetensors_io.serialize(state),
                          '{"bands": [1, 2, 3, 4], "num_heads": 2, "scale": 0.0001}'))
        cls.samples = [L.SampleId.from_grid(29, True, 23 * 40 + 10 + c, 183 * 40 + 10 + rw)
                       for rw in range(GRID) for c in range(GRID)]

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        with psycopg.connect("", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.conn.execute("DELETE FROM rai4eo.embedding")
        self.conn.execute("DELETE FROM rai4eo.image WHERE ST_NumBands(rast) = 1")

    # ---- helpers ----------------------------------------------------------------------

    def q(self, sql, *params):
        return self.conn.execute(sql, params).fetchall()

    def count(self, where="true"):
        return self.q("SELECT count(*) FROM rai4eo.embedding WHERE " + where)[0][0]

    def refresh(self, *args, conn=None):
        """CALL the refresh on a new (or the given) connection; its Notices."""
        own = conn is None
        conn = conn or psycopg.connect(self.dsn, autocommit=True)
        notices = Notices(conn)
        try:
            conn.execute("CALL rai4eo_refresh_embeddings(%s, %s, %s, %s)", args)
        finally:
            if own:
                conn.close()
        return notices

    def aoi(self):
        return "(SELECT ST_Envelope(ST_Collect(geom)) FROM rai4eo.patch)"

    # ---- the refresh --------------------------------------------------------------------

    def test_resumable_with_max_images(self):
        n = self.refresh("tiny", "PF-SR", 4, 10)
        self.assertEqual(n.embedded(), 10)
        self.assertEqual(self.count(), 10)
        progress = [m for m in n.messages("NOTICE") if "images/s" in m]
        self.assertTrue(progress, n.items)
        self.assertRegex(progress[0], r"^rai4eo_refresh_embeddings\(tiny\): 4/10 images \(40\.0 %\), "
                                      r"[0-9.]+ images/s, ETA [0-9:]+$")
        # the rest of PF-SR, then S2-SR, then nothing
        self.assertEqual(self.refresh("tiny", "PF-SR", 4, None).embedded(), GRID * GRID * N_PF - 10)
        self.assertEqual(self.count("rai4eo.image_sensor_code(image_id) = 1"), 0)
        self.assertEqual(self.refresh("tiny", None, 8, None).embedded(), GRID * GRID * N_S2)
        self.assertEqual(self.refresh("tiny", None, 8, None).embedded(), 0)
        self.assertEqual(self.count(), N_IMAGES)
        # batched and single forward passes agree with what was stored
        got = self.q("SELECT e.emb::real[], rai4eo_embed(i.rast, 'tiny')::real[] FROM rai4eo.embedding e "
                     "JOIN rai4eo.image i USING (image_id) ORDER BY image_id LIMIT 6")
        for stored, single in got:
            np.testing.assert_allclose(stored, single, rtol=1e-5, atol=1e-5 * np.abs(single).max())

    def test_cancelled_run_keeps_its_batches(self):
        conn = psycopg.connect(self.dsn, autocommit=True)
        pid = conn.info.backend_pid
        errors = []

        def run():
            try:
                self.refresh("tiny", None, 2, None, conn=conn)
            except psycopg.errors.QueryCanceled as e:
                errors.append(e)

        t = threading.Thread(target=run)
        t.start()
        deadline = time.time() + 60
        while self.count() < 6 and time.time() < deadline:
            time.sleep(0.02)
        self.conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
        t.join(60)
        conn.close()
        self.assertEqual(len(errors), 1, "the refresh finished before it could be cancelled")
        kept = self.count()
        self.assertGreaterEqual(kept, 6)
        self.assertLess(kept, N_IMAGES)
        self.assertEqual(self.refresh("tiny", None, 2, None).embedded(), N_IMAGES - kept)
        self.assertEqual(self.count(), N_IMAGES)

    def test_two_sessions_share_the_work(self):
        results = {}

        def run(name):
            results[name] = self.refresh("tiny", None, 2, None)

        first = threading.Thread(target=run, args=("first",))
        first.start()
        # the second starts once the first has committed a batch, while it still has work
        deadline = time.time() + 60
        while self.count() < 2 and time.time() < deadline:
            time.sleep(0.01)
        second = threading.Thread(target=run, args=("second",))
        second.start()
        first.join(120)
        second.join(120)
        a, b = results["first"].embedded(), results["second"].embedded()
        self.assertEqual(a + b, N_IMAGES, "each image is embedded exactly once")
        self.assertGreater(a, 0)
        self.assertGreater(b, 0)
        self.assertEqual(self.count(), N_IMAGES)
        self.assertEqual(results["first"].messages("WARNING") + results["second"].messages("WARNING"), [])

    def test_bad_raster_is_reported_and_skipped(self):
        # A one-band image where the model needs bands 1-4, amid good images of a batch.
        pid = self.samples[0].patch_id()
        day = dt.date(2018, 3, 3)
        bad = self.q("INSERT INTO rai4eo.image (image_id, patch_id, sensor, acquired, rast) "
                     "SELECT rai4eo.image_id_of(%s, 'PF-SR', %s), %s, 'PF-SR', %s, "
                     "ST_AddBand(ST_MakeEmptyRaster(200, 200, 0, 0, 3, -3, 0, 0, 32629), '16BUI'::text, 100) "
                     "RETURNING image_id", pid, day, pid, day)[0][0]
        n = self.refresh("tiny", "PF-SR", 4, None)
        warnings = [(m, d) for s, m, d in n.items if s == "WARNING"]
        self.assertEqual(len(warnings), 1, n.items)
        self.assertIn("image %d skipped: " % bad, warnings[0][0])
        self.assertIn("%s, PF-SR, acquired 2018-03-03" % self.samples[0], warnings[0][1])
        self.assertEqual(n.embedded(), GRID * GRID * N_PF)
        self.assertEqual(self.count("image_id = %d" % bad), 0)
        # tried again by the next run, once
        n = self.refresh("tiny", "PF-SR", 4, None)
        self.assertEqual(n.embedded(), 0)
        self.assertEqual(len(n.messages("WARNING")), 1)

    def test_needs_autocommit_and_valid_arguments(self):
        with psycopg.connect(self.dsn) as conn:                       # a transaction block
            with self.assertRaises(psycopg.errors.InvalidTransactionTermination):
                conn.execute("CALL rai4eo_refresh_embeddings('tiny')")
        for args, err in ((("tiny", "S1", 4, None), psycopg.errors.InvalidParameterValue),
                          (("tiny", None, 0, None), psycopg.errors.InvalidParameterValue),
                          (("tiny", None, 4, -1), psycopg.errors.InvalidParameterValue),
                          (("nope", None, 4, None), psycopg.errors.UndefinedObject)):
            with self.assertRaises(err, msg=args):
                self.refresh(*args)
        self.assertEqual(self.count(), 0)

    # ---- change maps against numpy ------------------------------------------------------

    def embeddings(self):
        """{(patch_id, date): float64 vector} of the PF-SR embeddings."""
        rows = self.q("SELECT image_id, emb::real[] FROM rai4eo.embedding WHERE model = 'tiny' AND rai4eo.image_sensor_code(image_id) = 0")
        return {(L.image_patch_id(i), L.image_acquired(i)): np.array(e, np.float64) for i, e in rows}

    def test_yearly_and_daily_maps(self):
        self.refresh("tiny", "PF-SR", 8, None)
        emb = self.embeddings()
        dist = {}
        for (pid, d), e in emb.items():
            prior = emb.get((pid, d - dt.timedelta(days=365)))
            if d.year == 2019 and prior is not None:
                dist[(pid, d)] = 1 - e @ prior / (np.linalg.norm(e) * np.linalg.norm(prior))
        self.assertEqual(len(dist), GRID * GRID * N_PF // 2)
        # a threshold between two observed distances, so rounding cannot flip a day
        s = sorted(dist.values())
        thr = (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2

        rows = self.q("SELECT patch_id, days_compared, days_changed, change_rate, mean_distance "
                      "FROM yearly_change(%s, 2019, 'tiny', %s)" % (self.aoi(), "%s"), thr)
        self.assertEqual(len(rows), GRID * GRID)
        want = {}
        for pid, n, k, rate, mean in rows:
            ds = [v for (p, _), v in dist.items() if p == pid]
            want[pid] = (sum(v > thr for v in ds) / len(ds), float(np.mean(ds)), len(ds))
            self.assertEqual((n, k), (len(ds), sum(v > thr for v in ds)))
            self.assertAlmostEqual(rate, want[pid][0], places=12)
            self.assertAlmostEqual(mean, want[pid][1], delta=1e-6)

        meta = self.q("SELECT (m).upperleftx, (m).upperlefty, (m).width, (m).height, (m).scalex, (m).scaley, "
                      "(m).srid, (m).numbands FROM (SELECT ST_MetaData(yearly_heatmap(%s, 2019, 'tiny', %s)) m) s"
                      % (self.aoi(), "%s"), thr)[0]
        x0 = min(sid.bounds()[0] for sid in self.samples)
        y1 = max(sid.bounds()[3] for sid in self.samples)
        # bands 1-3 the counts, 4-6 the decision (score, changed, onset day of year)
        self.assertEqual(meta, (x0, y1, GRID, GRID, 600.0, -600.0, 32629, 6))
        changed = dict(self.q("SELECT patch_id, changed FROM yearly_change(%s, 2019, 'tiny', %s)"
                              % (self.aoi(), "%s"), thr))
        vals = self.q("SELECT ST_DumpValues(yearly_heatmap(%s, 2019, 'tiny', %s), 5)" % (self.aoi(), "%s"), thr)[0][0]
        for sid in self.samples:
            x, y = sid.gx - min(s.gx for s in self.samples), max(s.gy for s in self.samples) - sid.gy
            self.assertEqual(vals[y][x], float(changed[sid.patch_id()]))
        for band, col in ((1, 0), (2, 1), (3, 2)):
            vals = self.q("SELECT ST_DumpValues(yearly_heatmap(%s, 2019, 'tiny', %s), %s)" % (self.aoi(), "%s", "%s"),
                          thr, band)[0][0]
            for sid in self.samples:
                x, y = sid.gx - min(s.gx for s in self.samples), max(s.gy for s in self.samples) - sid.gy
                self.assertAlmostEqual(vals[y][x], want[sid.patch_id()][col], delta=1e-6 * max(1, want[sid.patch_id()][col]))

        # daily: the first 2019 date, band 1 = changed, band 2 = the distance
        d0 = min(d for _, d in dist)
        day = self.q("SELECT ST_DumpValues(r, 1), ST_DumpValues(r, 2) FROM (SELECT daily_heatmap(%s, %s, 'tiny', %s) r) s"
                     % (self.aoi(), "%s", "%s"), d0, thr)[0]
        for sid in self.samples:
            x, y = sid.gx - min(s.gx for s in self.samples), max(s.gy for s in self.samples) - sid.gy
            v = dist[(sid.patch_id(), d0)]
            self.assertEqual(day[0][y][x], float(v > thr))
            self.assertAlmostEqual(day[1][y][x], v, delta=1e-6)

        # the PNG decodes (zlib checks Adler-32, we check every CRC) to the palette indices
        png = bytes(self.q("SELECT heatmap_png(yearly_heatmap(%s, 2019, 'tiny', %s), scale => 3)"
                           % (self.aoi(), "%s"), thr)[0][0])
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        pos, chunks = 8, {}
        while pos < len(png):
            size, kind = struct.unpack(">I4s", png[pos:pos + 8])
            data = png[pos + 8:pos + 8 + size]
            self.assertEqual(struct.unpack(">I", png[pos + 8 + size:pos + 12 + size])[0], zlib.crc32(kind + data))
            chunks[kind] = chunks.get(kind, b"") + data
            pos += 12 + size
        w, h = struct.unpack(">II", chunks[b"IHDR"][:8])
        self.assertEqual((w, h), (3 * GRID, 3 * GRID))
        raw = zlib.decompress(chunks[b"IDAT"])
        for sid in self.samples:
            x, y = sid.gx - min(s.gx for s in self.samples), max(s.gy for s in self.samples) - sid.gy
            idx = 1 + int(np.rint(254 * np.float32(want[sid.patch_id()][0])))
            for yy in range(3 * y, 3 * y + 3):
                self.assertEqual(raw[yy * (w + 1)], 0)
                self.assertEqual(list(raw[yy * (w + 1) + 1 + 3 * x:yy * (w + 1) + 4 + 3 * x]), [idx] * 3)


if __name__ == "__main__":
    unittest.main()
