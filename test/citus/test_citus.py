"""rai4eo on Citus: a coordinator and two workers against one node, same data, same model.

Needs Citus installed in the PostgreSQL that pg_config names (scripts/test.sh runs this suite
only then and reports it as skipped otherwise).  The suite starts its own three servers
(test/citus/cluster.py, ports R4_CITUS_PORT .. +2, default 55431), loads one synthetic corpus
into database "postgres" on the cluster (distributed with rai4eo_distribute(8)) and into a
plain database "single" on the coordinator (no citus extension there), stores the same tiny
ViT in both, and compares.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "lib"))

import psycopg                                               # noqa: E402

import cluster                                               # noqa: E402
from rai4eo_tools import safetensors_io                      # noqa: E402
from rai4eo_tools import vit_reference as ref                # noqa: E402

SYNTH = os.path.join(ROOT, "tools", "synth")
LOAD = os.path.join(ROOT, "tools", "load")
AOI = "(SELECT ST_Envelope(ST_Collect(geom)) FROM rai4eo.patch)"
THR = 0.01


def setUpModule():
    global C, CORPUS
    if not cluster.installed():
        raise RuntimeError("test/citus needs Citus installed in the PostgreSQL pg_config names "
                           "(scripts/test.sh skips this suite when it is not)")
    C = cluster.Cluster()
    C.start()
    try:
        for node in cluster.NODES:
            with psycopg.connect(C.dsn(node), autocommit=True) as c:
                c.execute("CREATE EXTENSION IF NOT EXISTS citus")
        with psycopg.connect(C.dsn(), autocommit=True) as c:
            c.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (C.ports["coordinator"],))
            for w in ("worker1", "worker2"):
                c.execute("SELECT citus_add_node('127.0.0.1', %s)", (C.ports[w],))
            c.execute("CREATE EXTENSION rai4eo CASCADE")
            c.execute("DROP DATABASE IF EXISTS single")
            c.execute("CREATE DATABASE single")
        with psycopg.connect(C.dsn(dbname="single"), autocommit=True) as c:
            c.execute("CREATE EXTENSION rai4eo CASCADE")
        CORPUS = tempfile.mkdtemp(prefix="rai4eo-citus-corpus.")
        run([sys.executable, SYNTH, "--out", CORPUS, "--grid", "2", "--date-step", "24", "--quiet", "--jobs", "1"])
    except Exception:
        C.stop()
        raise


def tearDownModule():
    C.stop()
    shutil.rmtree(CORPUS, ignore_errors=True)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed: %s%s" % (os.path.basename(cmd[1]), r.stdout, r.stderr))


def tiny_vit():
    state = ref.random_vit_state(embed_dim=32, depth=2, patch_size=20, in_chans=4, img_size=200, seed=5)
    return safetensors_io.serialize(state)


class CitusTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dist = psycopg.connect(C.dsn(), autocommit=True)
        cls.single = psycopg.connect(C.dsn(dbname="single"), autocommit=True)
        cls.distributed = cls.dist.execute("SELECT table_name::text, kind FROM rai4eo_distribute(8)").fetchall()
        for conn, db in ((cls.dist, "postgres"), (cls.single, "single")):
            run([sys.executable, LOAD, "--dsn", C.dsn(dbname=db), "--quiet", CORPUS])
            conn.execute("SELECT rai4eo_load_model('tiny', %s::bytea, %s::jsonb)",
                         (tiny_vit(), '{"bands": [1, 2, 3, 4], "num_heads": 2, "scale": 0.0001}'))

    @classmethod
    def tearDownClass(cls):
        cls.dist.close()
        cls.single.close()

    def both(self, sql, *params):
        """The rows of one query on the cluster and on the single node."""
        return (self.dist.execute(sql, params).fetchall(), self.single.execute(sql, params).fetchall())

    def assertSame(self, sql, *params):
        d, s = self.both(sql, *params)
        self.assertTrue(s, "the single-node query returned nothing: the comparison would prove nothing")
        self.assertEqual(d, s)

    def refreshed(self):
        """Both databases with every image embedded by the refresh."""
        for conn in (self.dist, self.single):
            conn.execute("CALL rai4eo_refresh_embeddings('tiny', NULL, 8)")

    def same_embeddings(self):
        """The single node's embeddings, bit for bit, in the cluster too (batches of other
        sizes round differently in the last float32 bit, which could flip a threshold)."""
        self.single.execute("CALL rai4eo_refresh_embeddings('tiny', NULL, 8)")
        rows = self.single.execute("SELECT image_id, patch_id, model, emb::text FROM rai4eo.embedding").fetchall()
        self.dist.execute("DELETE FROM rai4eo.embedding")
        with self.dist.cursor() as cur:
            with cur.copy("COPY rai4eo.embedding (image_id, patch_id, model, emb) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)

    # ---- schema -------------------------------------------------------------------------

    def test_distribute(self):
        self.assertEqual(sorted(self.distributed), [
            ("rai4eo.clc_class", "reference"), ("rai4eo.embedding", "distributed by patch_id"),
            ("rai4eo.image", "distributed by patch_id"), ("rai4eo.model", "reference"),
            ("rai4eo.patch", "distributed by patch_id"), ("rai4eo.patch_clc", "distributed by patch_id"),
            ("rai4eo.review", "distributed by patch_id"), ("rai4eo.sensor", "reference"),
            ("rai4eo.state", "reference")])
        # idempotent, and every foreign key is back
        again = self.dist.execute("SELECT table_name::text, kind FROM rai4eo_distribute()").fetchall()
        self.assertEqual(sorted(again), sorted(self.distributed))
        fks = self.dist.execute("SELECT conname FROM pg_constraint WHERE contype = 'f' "
                                "AND connamespace = 'rai4eo'::regnamespace AND conrelid::regclass::text "
                                "NOT LIKE '%\\_1%' ORDER BY 1").fetchall()
        self.assertEqual([r[0] for r in fks], ["embedding_image_fkey", "embedding_model_fkey", "image_patch_id_fkey",
                                               "image_sensor_fkey",
                                               "patch_clc_code_fkey", "patch_clc_patch_id_fkey", "review_patch_id_fkey",
                                               "state_model_fkey"])
        colocated = self.dist.execute("SELECT count(DISTINCT colocationid) FROM pg_dist_partition "
                                      "WHERE logicalrelid::text IN ('rai4eo.patch', 'rai4eo.patch_clc', "
                                      "'rai4eo.image', 'rai4eo.embedding')").fetchone()[0]
        self.assertEqual(colocated, 1)

    def test_corpus_and_labels_match(self):
        self.assertSame("SELECT patch_id, sample_id, ST_AsEWKB(geom) FROM rai4eo.patch ORDER BY 1")
        self.assertSame("SELECT image_id, patch_id, sensor, acquired, md5(ST_AsBinary(rast)) FROM rai4eo.image ORDER BY 1")
        self.assertSame("SELECT patch_id, artificial, forest, water, dominant FROM rai4eo.patch_class7 ORDER BY 1")
        self.assertEqual(self.dist.execute("SELECT count(*) FROM rai4eo.clc_class").fetchone()[0], 44)

    def test_insert_views_on_citus(self):
        sid = "29N_23E-183N_30_30"
        pid = self.dist.execute("INSERT INTO rai4eo.patch_input (sample_id, geom) "
                                "VALUES (%s, ST_MakeEnvelope(0, 0, 600, 600, 32629)) RETURNING patch_id",
                                (sid,)).fetchone()[0]
        self.assertEqual(pid, self.dist.execute("SELECT rai4eo.patch_id_of(%s)", (sid,)).fetchone()[0])
        iid = self.dist.execute("INSERT INTO rai4eo.image_input (sample_id, sensor, acquired, rast) "
                                "VALUES (%s, 'PF-SR', '2019-01-03', ST_MakeEmptyRaster(1, 1, 0, 0, 1)) "
                                "RETURNING image_id", (sid,)).fetchone()[0]
        self.assertEqual(iid, self.dist.execute("SELECT rai4eo.image_id_of(%s, 'PF-SR', '2019-01-03')",
                                                (pid,)).fetchone()[0])
        with self.assertRaises(psycopg.errors.CheckViolation):
            self.dist.execute("INSERT INTO rai4eo.image_input (patch_id, sample_id, sensor, acquired, rast) "
                              "VALUES (1, %s, 'PF-SR', '2019-01-03', ST_MakeEmptyRaster(1, 1, 0, 0, 1))", (sid,))
        self.dist.execute("DELETE FROM rai4eo.patch WHERE patch_id = %s", (pid,))
        self.assertEqual(self.dist.execute("SELECT count(*) FROM rai4eo.image WHERE patch_id = %s",
                                           (pid,)).fetchone()[0], 0)

    # ---- inference on the workers -------------------------------------------------------

    def test_embed_runs_on_the_workers(self):
        plan = "\n".join(r[0] for r in self.dist.execute(
            "EXPLAIN (COSTS OFF) SELECT rai4eo_embed(rast, 'tiny') FROM rai4eo.image").fetchall())
        self.assertIn("Custom Scan (Citus Adaptive)", plan)
        self.assertIn("Task Count: 8", plan)
        self.assertRegex(plan, r"port=%d|port=%d" % (C.ports["worker1"], C.ports["worker2"]))
        self.assertSame("SELECT image_id, rai4eo_embed(rast, 'tiny')::text FROM rai4eo.image ORDER BY 1")

    def test_refresh_embeds_on_the_workers(self):
        for conn in (self.dist, self.single):
            conn.execute("DELETE FROM rai4eo.embedding")
        self.dist.execute("CALL rai4eo_refresh_embeddings('tiny', NULL, 4, 6)")
        self.assertEqual(self.dist.execute("SELECT count(*) FROM rai4eo.embedding").fetchone()[0], 6)
        self.refreshed()
        d, s = self.both("SELECT image_id, patch_id, model, emb::real[] FROM rai4eo.embedding ORDER BY 1")
        self.assertEqual([r[:3] for r in d], [r[:3] for r in s])
        # the same engine on the same pixels; batches of other sizes differ in float32 rounding only
        for (_, _, _, a), (_, _, _, b) in zip(d, s):
            self.assertLessEqual(max(abs(x - y) for x, y in zip(a, b)), 1e-5 * max(1.0, max(map(abs, b))))
        n = self.dist.execute("SELECT count(*) FROM rai4eo.image").fetchone()[0]
        self.assertEqual(self.dist.execute("SELECT count(*) FROM rai4eo.embedding").fetchone()[0], n)
        # the rows are in the shards on both workers
        per_node = dict(self.dist.execute(
            "SELECT nodeport, sum(result::bigint) FROM run_command_on_placements('rai4eo.embedding', "
            "'SELECT count(*) FROM %s') GROUP BY 1").fetchall())
        self.assertEqual(sorted(per_node), [C.ports["worker1"], C.ports["worker2"]])
        self.assertEqual(sum(per_node.values()), n)
        self.assertTrue(all(v > 0 for v in per_node.values()), per_node)

    def test_refresh_reports_a_bad_image(self):
        self.dist.execute("INSERT INTO rai4eo.image_input (patch_id, sensor, acquired, rast) "
                          "SELECT min(patch_id), 'PF-SR', '2019-12-30', "
                          "ST_AddBand(ST_MakeEmptyRaster(200, 200, 0, 0, 1), '16BUI'::text, 0) FROM rai4eo.patch")
        warnings = []
        self.dist.add_notice_handler(lambda d: warnings.append(d.message_primary)
                                     if d.severity_nonlocalized == "WARNING" else None)
        try:
            self.dist.execute("CALL rai4eo_refresh_embeddings('tiny', 'PF-SR', 8)")
        finally:
            self.dist.execute("DELETE FROM rai4eo.image WHERE acquired = '2019-12-30'")
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("skipped", warnings[0])

    # ---- change products against one node -----------------------------------------------

    def test_yearly_change(self):
        self.same_embeddings()
        self.assertSame("SELECT patch_id, sample_id, ST_AsEWKB(geom), days_compared, days_changed, change_rate, "
                        "mean_distance, score, changed, onset FROM yearly_change(%s, 2019, 'tiny', %s) ORDER BY 1"
                        % (AOI, THR))
        # every patch compared something: the comparison covers real pairs, not NULLs
        d, _ = self.both("SELECT count(*), count(*) FILTER (WHERE days_compared > 0 AND score IS NOT NULL) "
                         "FROM yearly_change(%s, 2019, 'tiny', %s)" % (AOI, THR))
        self.assertEqual(d[0][0], d[0][1])
        self.assertGreater(d[0][0], 0)

    def test_scores(self):
        self.same_embeddings()
        self.assertSame("SELECT * FROM rai4eo.patch_scores(%s, NULL, 2019, 'tiny', 'PF-SR', 2, %s, %s, 2, true, "
                        "NULL) ORDER BY 1" % (AOI, THR, THR))
        # k-means states (rai4eo.state is a reference table) and the cluster score
        try:
            self.assertSame("SELECT state, members, centre::text FROM rai4eo_cluster('tiny', 2, sample_size => 100)")
            self.assertSame("SELECT patch_id, cluster, cluster_onset FROM rai4eo.patch_scores(%s, NULL, 2019, 'tiny', "
                            "'PF-SR', 2, %s, %s, 1, false, rai4eo.model_states('tiny')) ORDER BY 1" % (AOI, THR, THR))
        finally:
            for conn in (self.dist, self.single):
                conn.execute("DELETE FROM rai4eo.state")

    def test_daily_change(self):
        self.same_embeddings()
        self.assertSame("SELECT patch_id, sample_id, distance, changed FROM daily_change(%s, '2019-05-03', 'tiny', %s) "
                        "ORDER BY 1" % (AOI, THR))
        d, _ = self.both("SELECT count(distance) FROM daily_change(%s, '2019-05-03', 'tiny', %s)" % (AOI, THR))
        self.assertGreater(d[0][0], 0)
        self.assertSame("SELECT acquired, prior_acquired, distance FROM rai4eo.daily_distances("
                        "(SELECT min(patch_id) FROM rai4eo.patch), 'tiny', 'PF-SR', '2018-01-01', '2019-12-31') "
                        "ORDER BY 1")

    def test_heatmaps(self):
        self.same_embeddings()
        for sql in ("yearly_heatmap(%s, 2019, 'tiny', %s)" % (AOI, THR),
                    "daily_heatmap(%s, '2019-05-03', 'tiny', %s)" % (AOI, THR)):
            d, s = self.both("SELECT ST_NumBands(h), ST_Width(h), ST_Height(h), md5(ST_AsBinary(h)), "
                             "md5(heatmap_png(h, 1, 0, 1, 'heat', 2, true)), "
                             "(ST_SummaryStats(h, 1)).count FROM %s h" % sql)
            self.assertIsNotNone(s[0][0], sql)
            self.assertGreater(s[0][5], 0, sql)
            self.assertEqual(d, s, sql)

    def test_calibration(self):
        self.same_embeddings()
        for conn in (self.dist, self.single):
            conn.execute("CREATE TABLE IF NOT EXISTS truth AS "
                         "SELECT patch_id, patch_id % 2 = 0 AS changed FROM rai4eo.patch")
        self.assertSame("SELECT * FROM rai4eo_calibrate_threshold('tiny', 2019, 'truth', "
                        "candidates => 5, store => false)")
        self.assertSame("SELECT * FROM rai4eo_calibrate('tiny', 2019, 'truth', folds => 2, candidates => 3, "
                        "store => false)")
        # stored into the reference table, the decision drives yearly_change the same way
        try:
            self.assertSame("SELECT * FROM rai4eo_calibrate_threshold('tiny', 2019, 'truth', candidates => 5)")
            self.assertSame("SELECT * FROM rai4eo_calibrate('tiny', 2019, 'truth', folds => 2, candidates => 3)")
            self.assertSame("SELECT config - 'sha256' FROM rai4eo.model WHERE name = 'tiny'")
            self.assertSame("SELECT patch_id, score, changed, onset FROM yearly_change(%s, 2019, 'tiny') ORDER BY 1"
                            % AOI)
        finally:
            for conn in (self.dist, self.single):
                conn.execute("UPDATE rai4eo.model SET config = config - 'change_decision' - 'change_scores' "
                             "- 'change_threshold' WHERE name = 'tiny'")

    def test_ensemble(self):
        self.same_embeddings()
        self.assertSame("SELECT * FROM ensemble_yearly_change(%s, 2019, ARRAY['tiny', 'tiny'], ARRAY[2, 1]::float8[], "
                        "thresholds => ARRAY[%s, 1]::float8[]) ORDER BY 1" % (AOI, THR))
        d, s = self.both("SELECT md5(ST_AsBinary(ensemble_yearly_heatmap(%s, 2019, ARRAY['tiny', 'tiny'], "
                         "thresholds => ARRAY[%s, %s]::float8[])))" % (AOI, THR, THR))
        self.assertIsNotNone(s[0][0])
        self.assertEqual(d, s)
        for conn in (self.dist, self.single):
            conn.execute("CREATE TABLE IF NOT EXISTS truth AS "
                         "SELECT patch_id, patch_id % 2 = 0 AS changed FROM rai4eo.patch")
        self.assertSame("SELECT * FROM rai4eo_calibrate_ensemble(ARRAY['tiny', 'tiny'], 2019, 'truth', "
                        "thresholds => ARRAY[%s, %s]::float8[])" % (THR, THR))

    def test_review(self):
        self.same_embeddings()
        pid = self.single.execute("SELECT min(patch_id) FROM rai4eo.patch").fetchone()[0]
        for conn in (self.dist, self.single):
            conn.execute("SET rai4eo.change_threshold = '%s'" % THR)
            conn.execute("DELETE FROM rai4eo.review")
            conn.execute("SELECT rai4eo_review(%s, 2019, 'accept', 'tiny', 'ana')", (pid,))
        self.assertSame("SELECT patch_id, year, changed FROM rai4eo.review_truth ORDER BY 1")
        self.assertSame("SELECT patch_id, sample_id, score, changed, onset, change_rate, days_compared, verdict, reviewer "
                        "FROM rai4eo_review_candidates(%s, 2019, 'tiny', tolerance => 2) c ORDER BY 1" % AOI)
        d, s = self.both("SELECT count(verdict) FROM rai4eo_review_candidates(%s, 2019, 'tiny')" % AOI)
        self.assertEqual(d, s)
        self.assertEqual(s[0][0], 1)
        # the vector tile over the first patch (zoom 12)
        z, x, y = self.single.execute(
            "SELECT 12, floor((ST_X(c) + 180) / 360 * 4096)::int, "
            "floor((1 - ln(tan(radians(ST_Y(c))) + 1 / cos(radians(ST_Y(c)))) / pi()) / 2 * 4096)::int "
            "FROM (SELECT ST_Transform(ST_Centroid(geom), 4326) AS c FROM rai4eo.patch ORDER BY patch_id LIMIT 1) p"
        ).fetchone()
        d, s = self.both("SELECT length(t), md5(t) FROM rai4eo_change_tile(%s, %s, %s, 2019, 'tiny') t", z, x, y)
        self.assertGreater(s[0][0], 0)
        self.assertEqual(d, s)
        for conn in (self.dist, self.single):
            conn.execute("RESET rai4eo.change_threshold")

    def test_qgis_view(self):
        self.same_embeddings()
        for conn in (self.dist, self.single):
            conn.execute("SET rai4eo.default_model = 'tiny'")
            conn.execute("SET rai4eo.change_threshold = '%s'" % THR)
        try:
            self.assertSame("SELECT * FROM rai4eo.patch_change ORDER BY id")
            # QGIS's bounding-box filter
            self.assertSame("SELECT id, score FROM rai4eo.patch_change WHERE year = 2019 AND geom && "
                            "(SELECT ST_Expand(geom, -1) FROM rai4eo.patch ORDER BY patch_id LIMIT 1) ORDER BY id")
        finally:
            for conn in (self.dist, self.single):
                conn.execute("RESET rai4eo.default_model")
                conn.execute("RESET rai4eo.change_threshold")


if __name__ == "__main__":
    unittest.main()
