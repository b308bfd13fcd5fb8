"""Replacing a model while other sessions compute with it (issue 16).

rai4eo_load_model(..., replace => true) takes the model's lock in exclusive mode;
every transaction that runs the model holds it in share mode until it ends.  So:

  - a replace during CALL rai4eo_refresh_embeddings leaves no embedding computed with
    the old weights (before the lock, 32, 32 and 8 of 64 were stale in three trials),
  - a replace waits for an open transaction that has used the model, and that
    transaction keeps seeing the weights it started with,
  - the next transaction of a session sees the new weights, through a PL/pgSQL wrapper too.

The server comes from the PG* variables; the test creates and drops its own database.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "lib"))

import numpy as np                                           # noqa: E402
import psycopg                                               # noqa: E402

from rai4eo_tools import safetensors_io                      # noqa: E402
from rai4eo_tools import vit_reference as ref                # noqa: E402

SYNTH = os.path.join(ROOT, "tools", "synth")
LOAD = os.path.join(ROOT, "tools", "load")
CONFIG = '{"bands": [1, 2, 3, 4], "num_heads": 2, "scale": 0.0001}'


def weights(seed):
    state = ref.random_vit_state(embed_dim=32, depth=2, patch_size=20, in_chans=4, img_size=200, seed=seed)
    return safetensors_io.serialize(state)


class ReplaceTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        admin = psycopg.connect("", autocommit=True)
        cls.db = "rai4eo_replace_test_%d" % os.getpid()
        admin.execute('DROP DATABASE IF EXISTS "%s"' % cls.db)
        admin.execute('CREATE DATABASE "%s"' % cls.db)
        admin.close()
        cls.dsn = "dbname=%s" % cls.db
        cls.conn = psycopg.connect(cls.dsn, autocommit=True)
        cls.conn.execute("CREATE EXTENSION rai4eo CASCADE")
        cls.tmp = tempfile.mkdtemp(prefix="rai4eo-replace-")
        corpus = os.path.join(cls.tmp, "corpus")
        for cmd in ([sys.executable, SYNTH, "--out", corpus, "--grid", "2", "--date-step", "24",
                     "--quiet", "--jobs", "1"],
                    [sys.executable, LOAD, "--dsn", cls.dsn, "--quiet", corpus]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("%s failed: %s%s" % (os.path.basename(cmd[1]), r.stdout, r.stderr))
        cls.w = [weights(5), weights(6), weights(7)]

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        with psycopg.connect("", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.conn.execute("SELECT rai4eo_drop_model('tiny', if_exists => true)")
        self.load(self.conn, 0)

    def load(self, conn, k, replace=False):
        conn.execute("SELECT rai4eo_load_model('tiny', %s::bytea, %s::jsonb, replace => %s)",
                     (self.w[k], CONFIG, replace))

    def count(self):
        return self.conn.execute("SELECT count(*) FROM rai4eo.embedding").fetchone()[0]

    def stale(self):
        """Stored embeddings that differ from what the stored weights compute now."""
        rows = self.conn.execute(
            "SELECT e.emb::real[], rai4eo_embed(i.rast, 'tiny')::real[] FROM rai4eo.embedding e "
            "JOIN rai4eo.image i USING (image_id) WHERE e.model = 'tiny'").fetchall()
        bad = sum(1 for s, now in rows
                  if not np.allclose(s, now, rtol=1e-4, atol=1e-4 * np.abs(now).max()))
        return bad, len(rows)

    def test_replace_during_refresh_leaves_no_stale_embedding(self):
        errors = []

        def run():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as c:
                    c.execute("CALL rai4eo_refresh_embeddings('tiny', 'PF-SR', 2, NULL)")
            except psycopg.Error as e:        # reported below
                errors.append(e)

        t = threading.Thread(target=run)
        t.start()
        deadline = time.time() + 60
        while self.count() < 6 and time.time() < deadline:
            time.sleep(0.01)
        self.assertGreaterEqual(self.count(), 6, "the refresh did not start")
        with psycopg.connect(self.dsn, autocommit=True) as c:
            self.load(c, 1, replace=True)
            time.sleep(0.05)
            self.load(c, 2, replace=True)
        t.join(300)
        self.assertEqual(errors, [])
        # The last replace may have come after the refresh finished and deleted everything: a second
        # refresh embeds what is missing with the current weights, and leaves any stale row in place.
        with psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute("CALL rai4eo_refresh_embeddings('tiny', 'PF-SR', 2, NULL)")
        bad, n = self.stale()
        self.assertGreater(n, 0)
        self.assertEqual(bad, 0, "%d of %d embeddings come from replaced weights" % (bad, n))

    def test_replace_waits_for_a_transaction_using_the_model(self):
        reader = psycopg.connect(self.dsn)            # not autocommit: one open transaction
        rast = "(SELECT rast FROM rai4eo.image WHERE sensor = 'PF-SR' ORDER BY image_id LIMIT 1)"
        before = reader.execute("SELECT rai4eo_embed(%s, 'tiny')::real[]" % rast).fetchone()[0]
        done = threading.Event()

        def replace():
            with psycopg.connect(self.dsn, autocommit=True) as c:
                self.load(c, 1, replace=True)
            done.set()

        t = threading.Thread(target=replace)
        t.start()
        self.assertFalse(done.wait(1.5), "the replace did not wait for the open transaction")
        # the open transaction still computes with the weights it started with
        again = reader.execute("SELECT rai4eo_embed(%s, 'tiny')::real[]" % rast).fetchone()[0]
        self.assertEqual(again, before)
        reader.commit()
        self.assertTrue(done.wait(60))
        t.join()
        after = reader.execute("SELECT rai4eo_embed(%s, 'tiny')::real[]" % rast).fetchone()[0]
        self.assertNotEqual(after, before)
        reader.rollback()
        reader.close()

    def test_wrapper_sees_a_replace_committed_elsewhere(self):
        c = psycopg.connect(self.dsn, autocommit=True)
        c.execute("CREATE FUNCTION pg_temp.wrap(r raster) RETURNS embedding LANGUAGE plpgsql AS "
                  "$$ BEGIN RETURN rai4eo_embed(r, 'tiny'); END $$")
        q = ("SELECT pg_temp.wrap(rast)::real[] FROM rai4eo.image WHERE sensor = 'PF-SR' "
             "ORDER BY image_id LIMIT 1")
        first = c.execute(q).fetchone()[0]
        with psycopg.connect(self.dsn, autocommit=True) as other:
            self.load(other, 1, replace=True)
        second = c.execute(q).fetchone()[0]
        self.assertNotEqual(first, second)
        # and a replace by this very session, back to the first weights
        self.load(c, 0, replace=True)
        self.assertEqual(c.execute(q).fetchone()[0], first)
        c.close()


if __name__ == "__main__":
    unittest.main()
