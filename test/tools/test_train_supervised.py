"""Tests of tools/train supervised and tools/train byol.

The split, subset and metric tests need nothing.  The others need a PostgreSQL server
named by the PG* variables (as for psql) with rai4eo installed: they create their own
database (train_sup_test_<pid>) with CREATE EXTENSION rai4eo CASCADE, load a tiny
synthetic corpus (tools/synth --grid 2 --date-step 24 --no-s2, tools/load) and drop the
database afterwards.  Training runs use a tiny ViT or ResNet on one CPU thread, so runs
are deterministic.  The parity references are built from the exported files with
vit_reference / resnet_reference and a hand-written head, not with the trainer's modules.

Run: /usr/bin/python3 -m unittest discover -s test/tools -p test_train_supervised.py -v
"""

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "lib"))

import numpy as np                                           # noqa: E402
import torch                                                 # noqa: E402

from rai4eo_tools import resnet_reference as RN              # noqa: E402
from rai4eo_tools import safetensors_io                      # noqa: E402
from rai4eo_tools import train_supervised as S               # noqa: E402
from rai4eo_tools import vit_reference as R                  # noqa: E402

SYNTH = os.path.join(ROOT, "tools", "synth")
LOAD = os.path.join(ROOT, "tools", "load")
TRAIN = os.path.join(ROOT, "tools", "train")
COMMON = ["--batch-size", "4", "--stats-images", "64", "--threads", "1", "--seed", "3", "--buffer-mb", "12"]
TINY_VIT = ["--arch", "vit", "--embed-dim", "32", "--depth", "2", "--num-heads", "2", "--patch-size", "8"] + COMMON
TINY_RESNET = ["--arch", "resnet18", "--width", "8", "--layers", "1,1,1,1"] + COMMON
TINY_BYOL = ["--width", "8", "--layers", "1,1,1,1", "--crop-size", "48", "--proj-dim", "16",
             "--proj-hidden-dim", "32"] + COMMON
COS_MIN = 0.99999
REL_MAX = 1e-4
CLASS7 = ["artificial", "agricultural", "forest", "shrub", "bare", "wetlands", "water"]


def blake_value(pid):
    """The documented split hash, recomputed: blake2b-64 (big-endian) of the decimal id / 2^64."""
    return int(hashlib.blake2b(str(pid).encode(), digest_size=8).hexdigest(), 16) / 2 ** 64


# ---- no database -----------------------------------------------------------------------

class SplitTest(unittest.TestCase):

    def test_split_by_hash(self):
        pids = np.arange(1000, 3000, 7, dtype=np.int64)
        train, val = S.split_patches(pids, 0.2)
        want_val = [p for p in pids if blake_value(p) < 0.2]
        self.assertEqual(val.tolist(), want_val)
        self.assertEqual(sorted(train.tolist() + val.tolist()), pids.tolist())
        self.assertTrue(0.12 < len(val) / len(pids) < 0.28, len(val))
        # A patch's side depends on its id alone, not on the other patches.
        t2, v2 = S.split_patches(pids[::3], 0.2)
        self.assertEqual(v2.tolist(), [p for p in want_val if p in set(pids[::3].tolist())])
        self.assertEqual(len(S.split_patches(pids, 0.0)[1]), 0)

    def test_label_fraction_subsets(self):
        train = np.random.default_rng(9).permutation(np.arange(5000, 6000, dtype=np.int64))
        subsets = {}
        for f, n in ((0.01, 10), (0.1, 100), (0.5, 500), (1.0, 1000)):
            s = S.label_subset(train, f, seed=4)
            self.assertEqual(len(s), n)
            self.assertEqual(len(set(s.tolist())), n)
            self.assertTrue(set(s.tolist()) <= set(train.tolist()))
            self.assertEqual(s.tolist(), sorted(s.tolist()))
            # deterministic, whatever the order the ids come in
            self.assertEqual(S.label_subset(train[::-1], f, seed=4).tolist(), s.tolist())
            subsets[f] = set(s.tolist())
        # nested under one seed; another seed picks another subset
        self.assertTrue(subsets[0.01] <= subsets[0.1] <= subsets[0.5] <= subsets[1.0])
        self.assertNotEqual(set(S.label_subset(train, 0.1, seed=5).tolist()), subsets[0.1])
        # small sets: round(n * f), at least one patch
        self.assertEqual([S.subset_size(n, 0.01) for n in (0, 1, 3, 149, 150, 250)], [0, 1, 1, 1, 2, 3])
        self.assertEqual(S.subset_size(3, 0.5), 2)

    def test_class_metrics(self):
        m = S.class_metrics(tp=3, fp=1, fn=2, tn=10)
        self.assertEqual((m["precision"], m["recall"], m["support"], m["predicted"]), (0.75, 0.6, 5, 4))
        self.assertAlmostEqual(m["f1"], 2 * 0.75 * 0.6 / 1.35)
        m = S.class_metrics(tp=0, fp=0, fn=4, tn=3)
        self.assertEqual((m["precision"], m["recall"], m["f1"]), (None, 0.0, 0.0))
        m = S.class_metrics(tp=0, fp=0, fn=0, tn=3)
        self.assertEqual((m["precision"], m["recall"], m["f1"]), (None, None, None))


# ---- against a database ---------------------------------------------------------------

class TrainSupervisedTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        import psycopg
        try:
            admin = psycopg.connect("", autocommit=True)
        except psycopg.Error as e:
            raise RuntimeError("test_train_supervised needs a PostgreSQL server named by PG* variables: %s" % e)
        cls.db = "train_sup_test_%d" % os.getpid()
        admin.execute('DROP DATABASE IF EXISTS "%s"' % cls.db)
        admin.execute('CREATE DATABASE "%s"' % cls.db)
        admin.close()
        cls.dsn = "dbname=%s" % cls.db
        cls.conn = psycopg.connect(cls.dsn, autocommit=True)
        cls.conn.execute("CREATE EXTENSION rai4eo CASCADE")
        cls.tmp = tempfile.mkdtemp(prefix="rai4eo-train-sup-")
        corpus = os.path.join(cls.tmp, "corpus")
        for cmd in ([SYNTH, "--out", corpus, "--grid", "2", "--date-step", "24", "--no-s2", "--quiet", "--jobs", "1"],
                    [LOAD, "--dsn", cls.dsn, "--quiet", corpus]):
            r = subprocess.run([sys.executable] + cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("%s failed: %s" % (os.path.basename(cmd[0]), r.stderr))
        # A validation share that puts exactly two of the four patches on each side.
        pids = [r[0] for r in cls.conn.execute("SELECT patch_id FROM rai4eo.patch ORDER BY 1")]
        v = sorted(blake_value(p) for p in pids)
        cls.val_fraction = (v[1] + v[2]) / 2
        cls.val_pids = sorted(p for p in pids if blake_value(p) < cls.val_fraction)
        cls.train_pids = sorted(p for p in pids if blake_value(p) >= cls.val_fraction)
        cls.runs = {}
        cls.pixels = None

    @classmethod
    def tearDownClass(cls):
        import psycopg
        cls.conn.close()
        with psycopg.connect("", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers ---------------------------------------------------------------------

    def train(self, method, *args, expect=0):
        r = subprocess.run([sys.executable, TRAIN, method, "--dsn", self.dsn] + [str(a) for a in args],
                           capture_output=True, text=True)
        if expect is not None:
            self.assertEqual(r.returncode, expect, "train %s %s -> %d\n%s%s"
                             % (method, args, r.returncode, r.stdout, r.stderr))
        return r

    def path(self, name):
        return os.path.join(self.tmp, name)

    def has_function(self, name):
        return self.conn.execute("SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = %s)", (name,)).fetchone()[0]

    def run_once(self, key, method, *args):
        """A training run shared by several tests (keyed), with checkpoint, export and report."""
        if key not in TrainSupervisedTest.runs:
            ck, ex, rep = self.path(key + ".pt"), self.path(key + ".safetensors"), self.path(key + ".json")
            extra = ["--report", rep] if method == "supervised" else []
            r = self.train(method, *args, "--checkpoint", ck, "--export", ex, "--log-every", 1, *extra)
            TrainSupervisedTest.runs[key] = (r, ck, ex, rep)
        return TrainSupervisedTest.runs[key]

    def vit_run(self):
        return self.run_once("vit", "supervised", *TINY_VIT, "--steps", 4, "--val-fraction", self.val_fraction,
                             "--register", "sup_vit", "--register-probabilities", "sup_vit_prob")

    def resnet_run(self):
        return self.run_once("resnet", "supervised", *TINY_RESNET, "--steps", 3, "--val-fraction", self.val_fraction,
                             "--head", "mlp", "--head-hidden-dim", 16, "--classes", "level2",
                             "--register", "sup_rn")

    def byol_run(self):
        return self.run_once("byol", "byol", *TINY_BYOL, "--steps", 4, "--register", "byol_rn")

    def pf_pixels(self):
        """(image_id, raw [C, H, W] float64 with NaN for nodata) of every PF image, read with
        plain psycopg text arrays (independent of the trainer's binary decoder)."""
        if TrainSupervisedTest.pixels is None:
            rows = self.conn.execute("SELECT image_id, rai4eo_raster_values(rast, '{1,2,3,4}') FROM rai4eo.image "
                                     "WHERE sensor = 'PF-SR' ORDER BY image_id").fetchall()
            TrainSupervisedTest.pixels = [
                (iid, np.array([[[np.nan if v is None else v for v in row] for row in band] for band in vals],
                               dtype=np.float64)) for iid, vals in rows]
        return TrainSupervisedTest.pixels

    def model_input(self, meta, pixels):
        raw = torch.from_numpy(np.stack([a for _, a in pixels]))
        return R.preprocess(raw, torch.isnan(raw), float(meta["scale"]), json.loads(meta["mean"]),
                            json.loads(meta["std"]))

    def check_close(self, got, ref):
        self.assertEqual(got.shape, ref.shape)
        for g, r in zip(got, ref):
            cos = float(np.dot(g, r) / (np.linalg.norm(g) * np.linalg.norm(r)))
            self.assertGreaterEqual(cos, COS_MIN)
            self.assertLessEqual(float(np.abs(g - r).max()), REL_MAX * float(np.abs(r).max()))

    def losses(self, r, total):
        vals = [float(m) for m in re.findall(r"step \d+/%d  loss (\S+)" % total, r.stderr)]
        self.assertTrue(vals, r.stderr)
        self.assertTrue(all(math.isfinite(v) for v in vals), vals)
        return vals

    def independent_labels(self, kind, min_fraction):
        """pid -> 0/1 list, from raw patch_clc rows (level2) or the patch_class7 view (class7)."""
        if kind == "class7":
            rows = self.conn.execute("SELECT patch_id, " + ", ".join(CLASS7) + " FROM rai4eo.patch_class7").fetchall()
            return {r[0]: [1.0 if v >= min_fraction else 0.0 for v in r[1:]] for r in rows}
        codes = sorted({r[0] for r in self.conn.execute("SELECT code / 10 FROM rai4eo.clc_class")})
        frac = {}
        for pid, code, f in self.conn.execute("SELECT patch_id, code, fraction::float8 FROM rai4eo.patch_clc"):
            frac.setdefault(pid, {}).setdefault(code // 10, 0.0)
            frac[pid][code // 10] += f
        return {pid: [1.0 if d.get(c, 0.0) >= min_fraction else 0.0 for c in codes] for pid, d in frac.items()}

    # ---- labels --------------------------------------------------------------------------

    def test_labels_equal_an_independent_computation(self):
        from rai4eo_tools import db_images
        conn = db_images.connect(self.dsn)
        try:
            pids = S.labelled_patches(conn, "PF-SR", [2018])
            want = [r[0] for r in self.conn.execute(
                "SELECT DISTINCT patch_id FROM rai4eo.image i WHERE sensor = 'PF-SR' AND acquired < '2019-01-01' "
                "AND patch_id IN (SELECT patch_id FROM rai4eo.patch_clc) ORDER BY 1")]
            self.assertEqual(pids.tolist(), want)
            self.assertEqual(len(pids), 4)
            self.assertEqual(len(S.labelled_patches(conn, "S2-SR", None)), 0)
            for kind, mf in (("class7", 0.1), ("class7", 0.05), ("level2", 0.1), ("level2", 0.0001)):
                classes, names = S.class_list(conn, kind)
                got = S.patch_labels(conn, pids, kind, classes, mf)
                ref = self.independent_labels(kind, mf)
                for p in pids.tolist():
                    self.assertEqual(got[p].tolist(), ref[p], (kind, mf, p))
                if kind == "class7":
                    self.assertEqual(classes, CLASS7)
                else:
                    self.assertEqual(classes, [11, 12, 13, 14, 21, 22, 23, 24, 31, 32, 33, 41, 42, 51, 52])
                    self.assertEqual(names[0], "Urban fabric")
            # The thresholds matter on this corpus: some class7 labels flip between 0.05 and 0.1.
            a = self.independent_labels("class7", 0.1)
            b = self.independent_labels("class7", 0.05)
            self.assertNotEqual(a, b)
        finally:
            conn.close()

    # ---- supervised ViT -----------------------------------------------------------------------

    def test_vit_trains_and_reports(self):
        r, ck, ex, rep_path = self.vit_run()
        self.assertEqual(len(self.losses(r, 4)), 4)
        state = torch.load(ck)
        self.assertEqual((state["method"], state["step"]), ("supervised", 4))
        self.assertEqual(state["split"]["val"], self.val_pids)
        self.assertEqual(state["split"]["train"], self.train_pids)
        self.assertEqual(state["split"]["used"], self.train_pids)
        with open(rep_path) as f:
            rep = json.load(f)
        self.assertEqual([m["name"] for m in rep["per_class"]], CLASS7)
        self.assertEqual(rep["step"], 4)
        # 4 images of 2018 per validation patch; support = positives x images, recomputed.
        self.assertEqual(rep["val_images"], 4 * len(self.val_pids))
        ref = self.independent_labels("class7", 0.1)
        for k, m in enumerate(rep["per_class"]):
            self.assertEqual(m["support"], 4 * sum(ref[p][k] for p in self.val_pids))
            self.assertEqual(m["tp"] + m["fp"] + m["fn"] + m["tn"], rep["val_images"])
            for key in ("precision", "recall", "f1"):
                self.assertTrue(m[key] is None or 0 <= m[key] <= 1, m)
            self.assertEqual(m["recall"] is None, m["support"] == 0)
        self.assertTrue(any(m["recall"] is not None for m in rep["per_class"]))
        self.assertIn("micro average", r.stdout)

    def test_vit_export_matches_rai4eo_classify(self):
        if not self.has_function("rai4eo_classify"):
            self.fail("rai4eo_classify is not installed in this build of rai4eo")
        r, ck, ex, _ = self.vit_run()
        self.assertIn("registered model sup_vit:", r.stdout)
        tensors, meta = safetensors_io.load_file(ex, "torch")
        self.assertEqual(json.loads(meta["classes"]), CLASS7)
        self.assertEqual((meta["multilabel"], meta["arch"], meta["input"]), ("true", "vit", "native"))
        # The file holds the checkpoint's model (backbone keys with DINO names, head.*) and
        # the normalisation it was trained with.
        state = torch.load(ck)
        model = state["model"]
        self.assertEqual(json.loads(meta["mean"]), state["normalisation"]["mean"])
        self.assertEqual(json.loads(meta["std"]), state["normalisation"]["std"])
        self.assertEqual(json.loads(meta["bands"]), [1, 2, 3, 4])
        want = {k[len("backbone."):]: v for k, v in model.items() if k.startswith("backbone.")}
        want.update({k: v for k, v in model.items() if k.startswith("head.")})
        self.assertEqual(set(tensors), set(want))
        for k in want:
            self.assertTrue(torch.equal(tensors[k], want[k]), k)
        # Reference: vit_reference on the file's backbone, the linear head by hand, sigmoid.
        vit = R.vit_from_state_dict({k: v for k, v in tensors.items() if not k.startswith("head.")},
                                    num_heads=int(meta["num_heads"]))
        pixels = self.pf_pixels()
        with torch.no_grad():
            f = vit.features(self.model_input(meta, pixels), int(meta["n_last_blocks"]), json.loads(meta["avgpool"]))
            ref = torch.sigmoid(f.double() @ tensors["head.weight"].double().T + tensors["head.bias"].double()).numpy()
        rows = self.conn.execute("SELECT image_id, rai4eo_classify(rast, 'sup_vit'), "
                                 "rai4eo_embed(rast, 'sup_vit_prob')::real[] FROM rai4eo.image "
                                 "WHERE sensor = 'PF-SR' ORDER BY image_id").fetchall()
        self.assertEqual([row[0] for row in rows], [i for i, _ in pixels])
        got = np.array([row[1] for row in rows], dtype=np.float64)
        self.check_close(got, ref)
        # The probabilities model embeds images as the classifier's probabilities.
        emb = np.array([row[2] for row in rows], dtype=np.float64)
        np.testing.assert_allclose(emb, got, rtol=0, atol=1e-6)
        cfg = self.conn.execute("SELECT config FROM rai4eo.model WHERE name = 'sup_vit_prob'").fetchone()[0]
        self.assertEqual((cfg["output"], cfg["classes"], cfg["multilabel"]), ("probabilities", CLASS7, True))

    def test_resume_continues_exactly(self):
        _, full_ck, _, _ = self.vit_run()
        ck = self.path("vit_part.pt")
        self.train("supervised", *TINY_VIT, "--steps", 4, "--until", 2, "--val-fraction", self.val_fraction,
                   "--checkpoint", ck)
        self.assertEqual(torch.load(ck)["step"], 2)
        r = self.train("supervised", "--checkpoint", ck, "--resume", "--threads", 1, "--log-every", 1,
                       "--embed-dim", 64, "--val-fraction", 0.9)
        self.assertIn("--embed-dim 64 ignored", r.stderr)
        self.assertIn("--val-fraction 0.9 ignored", r.stderr)
        self.assertRegex(r.stderr, r"step 3/4 ")
        self.assertNotRegex(r.stderr, r"step [12]/4 ")
        a, b = torch.load(full_ck), torch.load(ck)
        self.assertEqual(b["step"], 4)
        self.assertEqual(set(a["model"]), set(b["model"]))
        for k in a["model"]:
            self.assertTrue(torch.equal(a["model"][k], b["model"][k]), "%s differs after resume" % k)
        self.assertEqual(a["sampler"], b["sampler"])

    def test_label_fraction_and_usage_errors(self):
        ck = self.path("frac.pt")
        self.train("supervised", *TINY_VIT, "--steps", 0, "--val-fraction", self.val_fraction,
                   "--label-fraction", 0.5, "--checkpoint", ck)
        split = torch.load(ck)["split"]
        self.assertEqual(split["train"], self.train_pids)
        # round(2 x 0.5) = 1 patch: the first of the seeded permutation (seed 3) of the sorted ids
        want = np.sort(np.random.default_rng([3, 3]).permutation(np.array(self.train_pids))[:1]).tolist()
        self.assertEqual(split["used"], want)
        r = self.train("supervised", *TINY_VIT, "--steps", 1, "--bands", "1,5", expect=2)
        self.assertIn("PF-SR images have 4 bands", r.stderr)
        r = self.train("supervised", *TINY_VIT, "--steps", 1, "--years", "2017", expect=2)
        self.assertIn("no patch has both a CLC label", r.stderr)
        r = self.train("supervised", *TINY_VIT, "--label-fraction", 0, expect=2)
        self.assertIn("--label-fraction", r.stderr)

    # ---- supervised ResNet, MLP head, level 2 ----------------------------------------------------

    def test_resnet_mlp_head_matches_rai4eo_classify(self):
        r, ck, ex, rep_path = self.resnet_run()
        self.assertEqual(len(self.losses(r, 3)), 3)
        tensors, meta = safetensors_io.load_file(ex, "torch")
        self.assertEqual(meta["arch"], "resnet")
        self.assertNotIn("num_heads", meta)
        self.assertEqual(json.loads(meta["classes"]), [11, 12, 13, 14, 21, 22, 23, 24, 31, 32, 33, 41, 42, 51, 52])
        self.assertEqual({k for k in tensors if k.startswith("head.")},
                         {"head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"})
        self.assertFalse(any(k.endswith("num_batches_tracked") or k.startswith("fc.") for k in tensors))
        with open(rep_path) as f:
            rep = json.load(f)
        self.assertEqual(len(rep["per_class"]), 15)
        for m in rep["per_class"]:
            for key in ("precision", "recall"):
                self.assertTrue(m[key] is None or 0 <= m[key] <= 1, m)
        if not self.has_function("rai4eo_classify"):
            self.fail("rai4eo_classify is not installed in this build of rai4eo")
        net = RN.resnet_from_state_dict({k: v for k, v in tensors.items() if not k.startswith("head.")})
        pixels = self.pf_pixels()
        with torch.no_grad():
            f = net.features(self.model_input(meta, pixels)).double()
            h = torch.relu(f @ tensors["head.0.weight"].double().T + tensors["head.0.bias"].double())
            ref = torch.sigmoid(h @ tensors["head.2.weight"].double().T + tensors["head.2.bias"].double()).numpy()
        rows = self.conn.execute("SELECT rai4eo_classify(rast, 'sup_rn') FROM rai4eo.image "
                                 "WHERE sensor = 'PF-SR' ORDER BY image_id").fetchall()
        self.check_close(np.array([row[0] for row in rows], dtype=np.float64), ref)
        labels = self.conn.execute("SELECT array_agg(class ORDER BY class_index) FROM rai4eo_classify_labels("
                                   "(SELECT rast FROM rai4eo.image LIMIT 1), 'sup_rn')").fetchone()[0]
        self.assertEqual(labels[:3], ["11", "12", "13"])

    # ---- BYOL -------------------------------------------------------------------------------------

    def test_byol_trains_exports_and_matches_rai4eo_embed(self):
        r, ck, ex, _ = self.byol_run()
        losses = self.losses(r, 4)
        self.assertEqual(len(losses), 4)
        self.assertTrue(all(0 <= v <= 8 for v in losses), losses)
        state = torch.load(ck)
        self.assertEqual((state["method"], state["step"]), ("byol", 4))
        self.assertEqual(state["counters"]["anchors"], 16)
        tensors, meta = safetensors_io.load_file(ex, "torch")
        ref_keys = {k for k in RN.ResNet("basic", [1, 1, 1, 1], 4, 8).state_dict()
                    if not k.endswith("num_batches_tracked")}
        self.assertEqual(set(tensors), ref_keys)                          # torchvision names, no fc
        online = {k[len("encoder."):]: v for k, v in state["online"].items() if k.startswith("encoder.")}
        target = {k[len("encoder."):]: v for k, v in state["target"].items() if k.startswith("encoder.")}
        for k in ref_keys:
            self.assertTrue(torch.equal(tensors[k], online[k]), k)
        # the online encoder was exported; the EMA target lags behind it
        self.assertFalse(torch.equal(online["conv1.weight"], target["conv1.weight"]))
        self.assertEqual((meta["arch"], meta["img_size"], meta["input"]), ("resnet", "48", "native"))
        self.assertEqual(json.loads(meta["mean"]), state["normalisation"]["mean"])
        if not self.has_function("rai4eo_embed"):
            self.fail("rai4eo_embed is not installed in this build of rai4eo")
        self.assertIn("registered model byol_rn", r.stdout)
        net = RN.resnet_from_state_dict(tensors)
        pixels = self.pf_pixels()
        with torch.no_grad():
            ref = net.features(self.model_input(meta, pixels)).double().numpy()
        rows = self.conn.execute("SELECT rai4eo_embed(rast, 'byol_rn')::real[] FROM rai4eo.image "
                                 "WHERE sensor = 'PF-SR' ORDER BY image_id").fetchall()
        self.check_close(np.array([row[0] for row in rows], dtype=np.float64), ref)

    def test_byol_resume_continues_exactly(self):
        _, full_ck, _, _ = self.byol_run()
        ck = self.path("byol_part.pt")
        self.train("byol", *TINY_BYOL, "--steps", 4, "--until", 2, "--checkpoint", ck)
        r = self.train("byol", "--checkpoint", ck, "--resume", "--threads", 1, "--log-every", 1)
        self.assertRegex(r.stderr, r"step 3/4 ")
        a, b = torch.load(full_ck), torch.load(ck)
        self.assertEqual(b["step"], 4)
        for part in ("online", "target"):
            self.assertEqual(set(a[part]), set(b[part]))
            for k in a[part]:
                self.assertTrue(torch.equal(a[part][k], b[part][k]), "%s %s differs after resume" % (part, k))
        self.assertEqual(a["counters"], b["counters"])
        self.assertEqual(a["sampler"], b["sampler"])

    def test_supervised_from_byol_init_frozen(self):
        """--init from the registered BYOL model with a frozen backbone: the export's backbone
        is BYOL's encoder bit for bit, with BYOL's preprocessing; only the head trained."""
        if not self.has_function("rai4eo_load_model"):
            self.fail("rai4eo_load_model is not installed in this build of rai4eo")
        _, _, byol_ex, _ = self.byol_run()
        ex = self.path("probe.safetensors")
        r = self.train("supervised", *COMMON, "--init", "byol_rn", "--freeze-backbone", "--steps", 2,
                       "--val-fraction", self.val_fraction, "--log-every", 1, "--export", ex)
        self.assertIn("initialising the backbone from model byol_rn", r.stderr)
        self.losses(r, 2)
        got, meta = safetensors_io.load_file(ex, "torch")
        byol, bmeta = safetensors_io.load_file(byol_ex, "torch")
        for k in byol:
            self.assertTrue(torch.equal(got[k], byol[k]), k)
        self.assertEqual(set(got) - set(byol), {"head.weight", "head.bias"})
        self.assertEqual((meta["mean"], meta["std"]), (bmeta["mean"], bmeta["std"]))
        self.assertEqual(tuple(got["head.weight"].shape), (7, 64))


if __name__ == "__main__":
    unittest.main()
