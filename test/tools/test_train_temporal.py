"""Tests of tools/train temporal.

The window and export-name tests need nothing.  The others need a PostgreSQL server named by
the PG* variables with rai4eo installed: they create their own database
(train_temporal_test_<pid>) with 12 patches labelled forest or water in rai4eo.patch_clc and
an external 3-d model "ext" whose hand-made embeddings of a 2018 image every 20 days point one
way for forest and another for water (plus noise), train on one CPU thread, and drop the
database afterwards.  The parity reference is built from the exported file with
temporal_reference, not with the trainer's objects.

Run: /usr/bin/python3 -m unittest discover -s test/tools -p test_train_temporal.py -v
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "lib"))

import numpy as np                                           # noqa: E402
import psycopg                                               # noqa: E402
import torch                                                 # noqa: E402

from rai4eo_tools import safetensors_io                      # noqa: E402
from rai4eo_tools import temporal_reference as TR            # noqa: E402
from rai4eo_tools import train_temporal as TT                # noqa: E402

TRAIN = os.path.join(ROOT, "tools", "train")
COMMON = ["--input-model", "ext", "--threads", "1", "--hidden", "8", "--batch-size", "4", "--quiet",
          "--val-fraction", "0.3"]


class NoDatabase(unittest.TestCase):
    def test_window(self):
        rng = np.random.default_rng(0)
        seq = np.arange(20, dtype=np.float32)[:, None]
        for _ in range(200):
            w = TT.window(seq, 0.3, rng)
            self.assertGreaterEqual(len(w), 6)
            self.assertTrue(np.all(np.diff(w[:, 0]) == 1))       # contiguous
        self.assertEqual(len(TT.window(seq, 1.0, rng)), 20)

    def test_export_names(self):
        m = TR.TemporalClassifier("gru", 5, 4, 2, 3, attention=True)
        self.assertEqual(sorted(m.export_state()), [
            "attn.bias", "attn.weight", "bias_hh_l0", "bias_hh_l1", "bias_ih_l0", "bias_ih_l1", "head.bias",
            "head.weight", "weight_hh_l0", "weight_hh_l1", "weight_ih_l0", "weight_ih_l1"])
        self.assertEqual(tuple(m.export_state()["weight_ih_l0"].shape), (12, 5))


class WithDatabase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.db = "train_temporal_test_%d" % os.getpid()
        with psycopg.connect("dbname=postgres", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)
            admin.execute('CREATE DATABASE "%s"' % cls.db)
        cls.conn = psycopg.connect("dbname=%s" % cls.db, autocommit=True)
        c = cls.conn
        c.execute("CREATE EXTENSION rai4eo CASCADE")
        c.execute("SELECT rai4eo_create_external_model('ext', 3)")
        c.execute("""INSERT INTO rai4eo.patch (patch_id, sample_id, geom)
            SELECT rai4eo.patch_id_of(s), s, ST_MakeEnvelope(240000 + k * 600, 480600, 240600 + k * 600, 481200, 32629)
            FROM generate_series(1, 12) k, LATERAL (SELECT format('29N_10E-20N_%s_01', lpad(k::text, 2, '0')) AS s) q""")
        c.execute("""INSERT INTO rai4eo.patch_clc (patch_id, code, fraction)
            SELECT patch_id, CASE WHEN (patch_id >> 6) % 2 = 0 THEN 311 ELSE 512 END, 1 FROM rai4eo.patch""")
        c.execute("""INSERT INTO rai4eo.image (image_id, patch_id, sensor, acquired, rast)
            SELECT rai4eo.image_id_of(p.patch_id, 'PF-SR', d), p.patch_id, 'PF-SR', d,
                   ST_AddBand(ST_MakeEmptyRaster(1, 1, 0, 0, 1, -1, 0, 0, 32629), '16BUI'::text, 0)
            FROM rai4eo.patch p, generate_series(0, 17) k, LATERAL (SELECT date '2018-01-10' + 20 * k AS d) x""")
        rng = np.random.default_rng(5)
        rows = c.execute("SELECT image_id, patch_id FROM rai4eo.image ORDER BY image_id").fetchall()
        with c.cursor() as cur:
            for iid, pid in rows:
                base = np.array([1, 0, 0.3]) if (pid >> 6) % 2 == 0 else np.array([0, 1, -0.3])
                e = base + rng.normal(0, 0.25, 3)
                cur.execute("INSERT INTO rai4eo.embedding (image_id, patch_id, model, emb) "
                            "VALUES (%s, %s, 'ext', %s::embedding)", (iid, pid, "[%s]" % ",".join(repr(float(v)) for v in e)))
        cls.tmp = tempfile.mkdtemp()

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        with psycopg.connect("dbname=postgres", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)

    def train(self, *args):
        env = dict(os.environ, PGDATABASE=self.db)
        return subprocess.run([TRAIN, "temporal"] + COMMON + list(args), env=env, capture_output=True, text=True)

    def test_train_register_parity_report(self):
        out = os.path.join(self.tmp, "t.safetensors")
        rep = os.path.join(self.tmp, "t.json")
        r = self.train("--steps", "150", "--arch", "lstm", "--attention", "--baseline", "--export", out,
                       "--report", rep, "--register", "tlstm")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(rep) as f:
            report = json.load(f)
        self.assertEqual([m["class"] for m in report["per_class"]],
                         ["artificial", "agricultural", "forest", "shrub", "bare", "wetlands", "water"])
        self.assertIn("f1", report["micro"])
        self.assertIn("mono_temporal", report)
        self.assertGreater(report["val_sequences"], 0)
        # the separable toy task is learnt: forest and water F1 of the temporal model are 1
        per = {m["class"]: m for m in report["per_class"]}
        self.assertEqual(per["forest"]["f1"], 1.0)
        self.assertEqual(per["water"]["f1"], 1.0)
        cfg = self.conn.execute("SELECT arch, config FROM rai4eo.model WHERE name = 'tlstm'").fetchone()
        self.assertEqual(cfg[0], "lstm")
        self.assertEqual(cfg[1]["input_model"], "ext")
        self.assertTrue(cfg[1]["attention"])
        # rai4eo_classify_series equals the exported model run in PyTorch on the same sequence
        tensors, meta = safetensors_io.load_file(out, framework="torch")
        m = TR.TemporalClassifier("lstm", 3, 8, 1, 7, attention=True, l2_normalize=meta["l2_normalize"] == "true")
        m.load_state_dict({(k if k.split(".")[0] in ("attn", "head") else "rnn." + k): v for k, v in tensors.items()})
        m = m.double().eval()
        pid = self.conn.execute("SELECT min(patch_id) FROM rai4eo.patch").fetchone()[0]
        seq = self.conn.execute("SELECT e.emb::text FROM rai4eo.embedding e WHERE e.patch_id = %s "
                                "ORDER BY e.image_id", (pid,)).fetchall()
        x = torch.tensor([json.loads(s[0]) for s in seq], dtype=torch.float64)
        ref = TR.probabilities(m, x).numpy()
        got = np.array(self.conn.execute("SELECT rai4eo_classify_series(%s, 'tlstm', '2018-01-01', '2018-12-31')",
                                         (pid,)).fetchone()[0], dtype=np.float64)
        cos = got @ ref / np.linalg.norm(got) / np.linalg.norm(ref)
        self.assertGreaterEqual(cos, 0.99999)
        self.assertLessEqual(np.abs(got - ref).max(), 1e-4 * np.abs(ref).max())

    def test_resume_is_exact(self):
        whole = os.path.join(self.tmp, "whole.safetensors")
        part = os.path.join(self.tmp, "part.safetensors")
        ck = os.path.join(self.tmp, "run.pt")
        r = self.train("--steps", "20", "--arch", "gru", "--export", whole)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.train("--steps", "20", "--arch", "gru", "--until", "8", "--checkpoint", ck)
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = os.path.join(self.tmp, "resumed.json")
        r = self.train("--steps", "20", "--arch", "gru", "--checkpoint", ck, "--resume", "--export", part,
                       "--report", rep)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(rep) as f:
            self.assertEqual(json.load(f)["steps"], 20)      # the report of the resumed run is written
        a, _ = safetensors_io.load_file(whole)
        b, _ = safetensors_io.load_file(part)
        self.assertEqual(sorted(a), sorted(b))
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)

    def test_no_embeddings(self):
        r = subprocess.run([TRAIN, "temporal", "--input-model", "nosuch", "--threads", "1", "--quiet"],
                           env=dict(os.environ, PGDATABASE=self.db), capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no embeddings", r.stderr)


if __name__ == "__main__":
    unittest.main()
