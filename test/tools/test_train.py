"""Tests of tools/train dino: temporal pairing, training, checkpoints, resume, export, parity.

The pairing tests need nothing.  The others need a PostgreSQL server named by the PG*
variables (as for psql) with rai4eo installed: they create their own database
(train_test_<pid>) with CREATE EXTENSION rai4eo CASCADE, load a tiny synthetic corpus
(tools/synth --grid 2 --date-step 24, tools/load) and drop the database afterwards.
Training runs use a tiny ViT on one CPU thread, so runs are deterministic.

Run: /usr/bin/python3 -m unittest discover -s test/tools -p test_train.py -v
"""

import glob
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

from rai4eo_tools import safetensors_io                      # noqa: E402
from rai4eo_tools import train_common as T                   # noqa: E402
from rai4eo_tools import vit_reference as R                  # noqa: E402

SYNTH = os.path.join(ROOT, "tools", "synth")
LOAD = os.path.join(ROOT, "tools", "load")
TRAIN = os.path.join(ROOT, "tools", "train")
GRID, STEP = 2, 24
N_PF = 2 * len(range(0, 73, STEP))                 # PF images per patch
TINY = ["--embed-dim", "32", "--depth", "2", "--num-heads", "2", "--patch-size", "8",
        "--global-size", "32", "--local-size", "16", "--local-crops", "2", "--batch-size", "4",
        "--out-dim", "64", "--head-hidden-dim", "64", "--bottleneck-dim", "32",
        "--stats-images", "64", "--threads", "1", "--seed", "3", "--buffer-mb", "12"]
COS_MIN = 0.99999
REL_MAX = 1e-4


# ---- temporal pairing (no database) ----------------------------------------------------

class PairingTest(unittest.TestCase):

    def check_pick(self, days, anchor, window, idx, fell_back):
        """The contract of pick_in_window for one draw."""
        lo, hi = window
        d = np.abs(np.asarray(days) - days[anchor])
        inside = [j for j in range(len(days)) if j != anchor and lo <= d[j] <= hi]
        if inside:
            self.assertFalse(fell_back)
            self.assertIn(idx, inside)
        else:
            self.assertTrue(fell_back)
            others = [j for j in range(len(days)) if j != anchor]
            if not others:
                self.assertEqual(idx, anchor)
                return
            self.assertNotEqual(idx, anchor)
            gap = [max(lo - d[j], d[j] - hi, 0) for j in others]
            self.assertEqual(max(lo - d[idx], d[idx] - hi, 0), min(gap))

    def test_windows_on_a_fixed_date_list(self):
        days = [0, 5, 10, 20, 40, 45, 70, 100, 200]
        rng = np.random.default_rng(0)
        # Anchor day 40: global partners (30..60 days away) are days 0, 5, 10, 70, 100;
        # local ones (15..30 days away) are days 10, 20, 70.
        got_g, got_l = set(), set()
        for _ in range(300):
            g, fb = T.pick_in_window(days, 4, (30, 60), rng)
            self.assertFalse(fb)
            got_g.add(days[g])
            j, fb = T.pick_in_window(days, 4, (15, 30), rng)
            self.assertFalse(fb)
            got_l.add(days[j])
        self.assertEqual(got_g, {0, 5, 10, 70, 100})
        self.assertEqual(got_l, {10, 20, 70})
        # Day 200 has nothing within 30..60 days: the fallback is the nearest, day 100
        # (100 days away, 40 past the window), and it is counted.
        for _ in range(20):
            g, fb = T.pick_in_window(days, 8, (30, 60), rng)
            self.assertTrue(fb)
            self.assertEqual(days[g], 100)
        # A lone image pairs with itself, as a counted fallback.
        self.assertEqual(T.pick_in_window([7], 0, (30, 60), rng), (0, True))

    def test_fallback_is_the_image_nearest_the_window(self):
        rng = np.random.default_rng(1)
        days = [0, 100, 105, 190]        # from 100: 40, 25 and 30 days short of or past 30..60
        seen = {days[T.pick_in_window(days, 1, (30, 60), rng)[0]] for _ in range(50)}
        self.assertEqual(seen, {105})
        days = [0, 100, 200]             # from 100: both 40 days past the window: a tie
        seen = {days[T.pick_in_window(days, 1, (30, 60), rng)[0]] for _ in range(60)}
        self.assertEqual(seen, {0, 200})

    def test_random_date_lists(self):
        rng = np.random.default_rng(2)
        for trial in range(200):
            n = int(rng.integers(1, 12))
            days = np.sort(rng.choice(400, size=n, replace=False))
            anchor = int(rng.integers(n))
            for window in ((30, 60), (15, 30), (0, 0)):
                idx, fb = T.pick_in_window(days, anchor, window, rng)
                self.check_pick(days, anchor, window, idx, fb)

    def test_temporal_views_count_fallbacks(self):
        days = [0, 20, 40, 60, 300]
        rng = np.random.default_rng(3)
        # Anchor 20: global partners 60 (40 days away); local 0 and 40 (20 days away).
        for _ in range(50):
            g, loc, gfb, lfb = T.temporal_views(days, 1, 5, (30, 60), (15, 30), rng)
            self.assertEqual(g[0], 1)
            self.assertEqual(days[g[1]], 60)
            self.assertEqual(len(loc), 5)
            self.assertTrue(all(days[j] in (0, 40) for j in loc))
            self.assertEqual((gfb, lfb), (0, 0))
        # Anchor 300 has no neighbour in either window: 1 global and 5 local fallbacks.
        g, loc, gfb, lfb = T.temporal_views(days, 4, 5, (30, 60), (15, 30), rng)
        self.assertEqual((gfb, lfb), (1, 5))
        self.assertEqual(days[g[1]], 60)
        self.assertEqual([days[j] for j in loc], [60] * 5)

    def test_crop_boxes_and_schedules(self):
        rng = np.random.default_rng(4)
        for _ in range(500):
            top, left, h, w = T.random_resized_box(200, 200, (0.05, 0.4), (3 / 4, 4 / 3), rng)
            self.assertTrue(0 <= top and top + h <= 200 and 0 <= left and left + w <= 200)
            self.assertTrue(0.04 * 40000 <= h * w <= 0.41 * 40000)
        s = T.cosine_schedule(1.0, 0.1, 20, warmup_steps=5)
        self.assertEqual(len(s), 20)
        self.assertAlmostEqual(s[0], 0.0)
        self.assertAlmostEqual(s[5], 1.0)
        self.assertTrue(np.all(np.diff(s[5:]) <= 0))
        self.assertGreater(s[-1], 0.1)
        self.assertLess(s[-1], 0.11)

    def test_shared_geometry_keeps_views_aligned(self):
        # Two dates through one crop_geometry: the same box, flips and turns, so pixel
        # (i, j) of one view and of the other come from the same ground.
        rng = np.random.default_rng(5)
        a = torch.arange(2 * 40 * 40, dtype=torch.float32).reshape(2, 40, 40)
        b = a * 2 + 1
        for _ in range(50):
            geo = T.crop_geometry(40, 40, (0.4, 1.0), rng, flips=True, rot90=True)
            va = T.make_crop(a, 16, (0.4, 1.0), rng, True, True, geometry=geo)
            vb = T.make_crop(b, 16, (0.4, 1.0), rng, True, True, geometry=geo)
            self.assertTrue(torch.allclose(vb, va * 2 + 1, atol=1e-3))
        # without it the views are drawn independently
        va = T.make_crop(a, 16, (0.4, 1.0), np.random.default_rng(1))
        vb = T.make_crop(b, 16, (0.4, 1.0), np.random.default_rng(2))
        self.assertFalse(torch.allclose(vb, va * 2 + 1, atol=1e-3))

    def test_dense_loss_matches_positions(self):
        from rai4eo_tools import train_dino as D
        torch.manual_seed(0)
        t = torch.randn(4, 9, 16) * 3                    # 2 anchors x 2 views, 9 tokens, 16 prototypes
        loss = D.DenseLoss(16, 0.1, 0.9)
        got = loss(t.clone(), t, 0.04)
        # spelled out: view 0's teacher at token j against view 1's student at token j
        q = torch.softmax(t / 0.04, -1)
        ls = torch.log_softmax(t / 0.1, -1)
        want = ((-(q[:2] * ls[2:]).sum(-1)).mean() + (-(q[2:] * ls[:2]).sum(-1)).mean()) / 2
        self.assertAlmostEqual(float(got), float(want), places=5)
        self.assertTrue(torch.allclose(loss.center, 0.1 * t.mean((0, 1), keepdim=True)))
        # a student whose token positions are shuffled scores worse than the aligned one
        s = torch.cat([t[2:], t[:2]])                    # each view's student = the other view's teacher
        fresh = D.DenseLoss(16, 0.1, 0.9)
        aligned = float(fresh(s, t, 0.04))
        fresh = D.DenseLoss(16, 0.1, 0.9)
        shuffled = float(fresh(s[:, torch.randperm(9)], t, 0.04))
        self.assertLess(aligned, shuffled)

    def test_teacher_momentum_from_the_run_length(self):
        from types import SimpleNamespace
        from rai4eo_tools import train_dino as D
        a = SimpleNamespace(momentum_teacher=None, teacher_horizon=0.1)
        self.assertAlmostEqual(D.teacher_momentum(a, 200), 0.95)        # horizon 20 steps
        self.assertAlmostEqual(D.teacher_momentum(a, 1000), 0.99)
        self.assertAlmostEqual(D.teacher_momentum(a, 10 ** 6), 0.996)   # DINO's, the cap
        self.assertAlmostEqual(D.teacher_momentum(a, 5), 0.0)           # horizon of one step
        a.teacher_horizon = 0.5
        self.assertAlmostEqual(D.teacher_momentum(a, 200), 0.99)
        a.momentum_teacher = 0.9                                        # given: used as is
        self.assertEqual(D.teacher_momentum(a, 10 ** 6), 0.9)

    def test_step_budget_times_a_tenth_of_the_budget(self):
        from unittest import mock
        clock = [100.0]
        with mock.patch.object(T.time, "monotonic", lambda: clock[0]):
            b = T.StepBudget(10)                  # 600 s
            got = []
            for step in range(1, 80):
                # step 1 fills the buffer (20 s); steps 2-5 take 0.5 s, later ones 1 s
                clock[0] += 20.0 if step == 1 else (0.5 if step <= 5 else 1.0)
                r = b.after_step(step)
                if r is not None:
                    got.append((step, r))
        # provisional after the probe: 5 + (600 - 22) / 0.5; final once 60 s have passed
        # (step 43: 20 + 2 + 38 s), at the mean rate of steps 2..43 (40 s / 42 steps)
        self.assertEqual(got[0], (5, 5 + int(578 / 0.5)))
        self.assertEqual(got[1][0], 43)
        self.assertEqual(got[1][1], 43 + int(540 / (40.0 / 42)))
        self.assertEqual(len(got), 2)
        self.assertTrue(b.final)

    def test_auto_readout_grid(self):
        from rai4eo_tools import train_dino as D
        self.assertEqual(D.auto_readout_grid(200, 200, 16, "native", 96), 4)   # Planet Fusion: 12 tokens
        self.assertEqual(D.auto_readout_grid(60, 60, 16, "native", 96), 1)     # Sentinel-2: 3 tokens
        self.assertEqual(D.auto_readout_grid(60, 60, 8, "native", 96), 2)      # 7 tokens
        self.assertEqual(D.auto_readout_grid(200, 120, 16, "native", 96), 2)   # the shorter side: 7
        self.assertEqual(D.auto_readout_grid(200, 200, 16, "resize", 96), 2)   # resized to 96: 6 tokens
        self.assertEqual(D.auto_readout_grid(2000, 2000, 16, "native", 96), 4)  # at most 4
        self.assertEqual(D.auto_readout_grid(16, 16, 16, "native", 96), 1)     # at least 1


# ---- training against a database ----------------------------------------------------

class TrainTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        import psycopg
        try:
            admin = psycopg.connect("", autocommit=True)
        except psycopg.Error as e:
            raise RuntimeError("test_train needs a PostgreSQL server named by PG* variables: %s" % e)
        cls.db = "train_test_%d" % os.getpid()
        admin.execute('DROP DATABASE IF EXISTS "%s"' % cls.db)
        admin.execute('CREATE DATABASE "%s"' % cls.db)
        admin.close()
        cls.dsn = "dbname=%s" % cls.db
        cls.conn = psycopg.connect(cls.dsn, autocommit=True)
        cls.conn.execute("CREATE EXTENSION rai4eo CASCADE")
        cls.tmp = tempfile.mkdtemp(prefix="rai4eo-train-")
        corpus = os.path.join(cls.tmp, "corpus")
        for cmd in ([SYNTH, "--out", corpus, "--grid", str(GRID), "--date-step", str(STEP),
                     "--quiet", "--jobs", "1"],
                    [LOAD, "--dsn", cls.dsn, "--quiet", corpus]):
            r = subprocess.run([sys.executable] + cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("%s failed: %s" % (os.path.basename(cmd[0]), r.stderr))
        cls.full = None
        cls.pixels = None

    @classmethod
    def tearDownClass(cls):
        import psycopg
        cls.conn.close()
        with psycopg.connect("", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- helpers ---------------------------------------------------------------------

    def train(self, *args, expect=0):
        r = subprocess.run([sys.executable, TRAIN, "dino", "--dsn", self.dsn] + [str(a) for a in args],
                           capture_output=True, text=True)
        if expect is not None:
            self.assertEqual(r.returncode, expect, "train %s -> %d\n%s%s" % (args, r.returncode, r.stdout, r.stderr))
        return r

    def path(self, name):
        return os.path.join(self.tmp, name)

    def has_function(self, name):
        return self.conn.execute("SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = %s)", (name,)).fetchone()[0]

    def pf_pixels(self):
        """(image_id, raw [C, H, W] float64 with NaN for nodata) of every PF image, read
        with plain psycopg (text arrays): independent of db_images' binary decoder."""
        if TrainTest.pixels is None:
            TrainTest.pixels = self._pf_pixels()
        return TrainTest.pixels

    def _pf_pixels(self):
        rows = self.conn.execute("SELECT image_id, rai4eo_raster_values(rast, '{1,2,3,4}') FROM rai4eo.image "
                                 "WHERE sensor = 'PF-SR' ORDER BY image_id").fetchall()
        out = []
        for iid, vals in rows:
            a = np.array([[[np.nan if v is None else v for v in row] for row in band] for band in vals],
                         dtype=np.float64)
            out.append((iid, a))
        return out

    def full_run(self):
        """An uninterrupted 6-step run with checkpoint and export (shared by several tests)."""
        if TrainTest.full is None:
            ck, ex = self.path("full.pt"), self.path("full.safetensors")
            r = self.train(*TINY, "--steps", 6, "--log-every", 1, "--checkpoint", ck, "--export", ex,
                           "--name", "tiny_dino")
            TrainTest.full = (r, ck, ex)
        return TrainTest.full

    # ---- tests -----------------------------------------------------------------------

    def test_train_loss_checkpoint_and_export(self):
        r, ck, ex = self.full_run()
        losses = [float(m) for m in re.findall(r"step \d+/6  loss (\S+)", r.stderr)]
        self.assertEqual(len(losses), 6, r.stderr)
        self.assertTrue(all(math.isfinite(v) for v in losses), losses)
        self.assertRegex(r.stderr, r"step 6/6 .* img/s  ETA 0:00:00")
        state = torch.load(ck)
        self.assertEqual(state["step"], 6)
        self.assertEqual(state["method"], "dino")
        # With 120-day gaps (and one 5-day pair at the turn of the year) no image lies
        # in either window: every view is a counted fallback.
        self.assertEqual(state["counters"]["anchors"], 6 * 4)
        self.assertEqual(state["counters"]["global_fallbacks"], 24)
        self.assertEqual(state["counters"]["local_fallbacks"], 48)
        self.assertIn("global 24 of 24 anchors (100.0%), local 48 of 48 crops (100.0%)", r.stdout)

        tensors, meta = safetensors_io.load_file(ex, "torch")
        teacher = {k[len("backbone."):]: v for k, v in state["teacher"].items() if k.startswith("backbone.")}
        ref_keys = set(R.VisionTransformer(img_size=32, patch_size=8, in_chans=4, embed_dim=32, depth=2,
                                           num_heads=2).state_dict())
        self.assertEqual(set(tensors), ref_keys)                 # DINO names, no head
        self.assertEqual(set(teacher), ref_keys)
        for k in ref_keys:
            self.assertEqual(tensors[k].dtype, torch.float32)
            self.assertTrue(torch.equal(tensors[k], teacher[k]), k)
        # The teacher, not the student, was exported (they differ after training).
        student = {k[len("backbone."):]: v for k, v in state["student"].items() if k.startswith("backbone.")}
        self.assertFalse(all(torch.equal(student[k], teacher[k]) for k in ref_keys))

        self.assertEqual(meta["arch"], "vit")
        self.assertEqual(json.loads(meta["bands"]), [1, 2, 3, 4])
        self.assertEqual(float(meta["scale"]), 1e-4)
        self.assertEqual(meta["input"], "native")
        self.assertEqual(json.loads(meta["img_size"]), 32)
        self.assertEqual(json.loads(meta["n_last_blocks"]), 1)
        # dino's default recipe: token_stats of 4 x 4 regions (200 px at patch 8: 25 tokens a side)
        self.assertEqual((meta["readout"], meta["readout_grid"]), ("token_stats", "4"))
        self.assertEqual(json.loads(meta["avgpool"]), False)
        self.assertEqual(meta["backbone"], "teacher")
        self.assertEqual(json.loads(meta["num_heads"]), 2)
        self.assertEqual(json.loads(meta["ln_eps"]), 1e-6)
        self.assertEqual(meta["name"], "tiny_dino")
        self.assertEqual(json.loads(meta["mean"]), state["normalisation"]["mean"])
        self.assertEqual(json.loads(meta["std"]), state["normalisation"]["std"])
        # --stats-images exceeds the corpus, so the statistics cover every PF image:
        # recompute them independently.
        px = np.stack([a for _, a in self.pf_pixels()]) * 1e-4
        vals = px.transpose(1, 0, 2, 3).reshape(4, -1)
        mean = [float(np.nanmean(v)) for v in vals]
        std = [float(np.nanstd(v, ddof=1)) for v in vals]
        np.testing.assert_allclose(json.loads(meta["mean"]), mean, rtol=1e-9)
        np.testing.assert_allclose(json.loads(meta["std"]), std, rtol=1e-9)

    def test_resume_continues_exactly(self):
        _, full_ck, _ = self.full_run()
        ck = self.path("part.pt")
        r = self.train(*TINY, "--steps", 6, "--until", 3, "--checkpoint", ck, "--log-every", 1)
        self.assertRegex(r.stderr, r"step 3/3 ")
        self.assertEqual(torch.load(ck)["step"], 3)
        # Another --embed-dim on resume is ignored with a note: the run is the checkpoint's.
        r = self.train("--checkpoint", ck, "--resume", "--threads", 1, "--log-every", 1, "--embed-dim", 64)
        self.assertIn("--embed-dim 64 ignored", r.stderr)
        self.assertNotRegex(r.stderr, r"step [123]/6 ")
        self.assertRegex(r.stderr, r"step 4/6 ")
        a, b = torch.load(full_ck), torch.load(ck)
        self.assertEqual(b["step"], 6)
        for part in ("student", "teacher"):
            self.assertEqual(set(a[part]), set(b[part]))
            for k in a[part]:
                self.assertTrue(torch.equal(a[part][k], b[part][k]), "%s %s differs after resume" % (part, k))
        self.assertTrue(torch.equal(a["dino_loss"]["center"], b["dino_loss"]["center"]))
        self.assertEqual(a["counters"], b["counters"])
        self.assertEqual(a["sampler"], b["sampler"])

    def test_dense_run_resumes_exactly(self):
        # --dense: the per-token loss trains (its centre moves) and is checkpointed, so a
        # resumed run equals an uninterrupted one.
        full, part = self.path("dense_full.pt"), self.path("dense_part.pt")
        r = self.train(*TINY, "--steps", 4, "--dense", 1, "--checkpoint", full, "--log-every", 1)
        losses = [float(v) for v in re.findall(r"loss (\S+)", r.stderr)]
        self.assertEqual(len(losses), 4, r.stderr)
        self.assertTrue(all(math.isfinite(v) for v in losses))
        self.assertRegex(r.stderr, r"step 4/4  loss \S+  dense \S+  lr ")
        self.train(*TINY, "--steps", 4, "--until", 2, "--dense", 1, "--checkpoint", part)
        old = torch.load(part)
        del old["args"]["dense"]
        torch.save(old, self.path("dense_old.pt"))
        self.train("--checkpoint", part, "--resume", "--threads", 1)
        a, b = torch.load(full), torch.load(part)
        self.assertGreater(float(a["dino_loss"]["dense_center"].abs().sum()), 0)
        self.assertTrue(torch.equal(a["dino_loss"]["dense_center"], b["dino_loss"]["dense_center"]))
        for k in a["teacher"]:
            self.assertTrue(torch.equal(a["teacher"][k], b["teacher"][k]), k)
        self.assertEqual(a["args"]["dense"], 1.0)
        # A checkpoint from before --dense resumes without the per-token loss it never had.
        r = self.train("--checkpoint", self.path("dense_old.pt"), "--resume", "--threads", 1, "--log-every", 1)
        self.assertRegex(r.stderr, r"step 4/4  loss \S+  lr ")

    def test_steps_zero_exports_the_initialisation(self):
        ex = self.path("random.safetensors")
        self.train(*TINY, "--steps", 0, "--export", ex)
        tensors, meta = safetensors_io.load_file(ex, "torch")
        self.assertEqual(meta["name"], "random")
        self.assertEqual(meta["steps"], "0")
        # The same architecture and seed trained for 6 steps started from these weights;
        # they are DINO's initialisation: unit LayerNorm gains, zero linear biases.
        self.assertTrue(torch.equal(tensors["norm.weight"], torch.ones(32)))
        self.assertTrue(torch.equal(tensors["blocks.0.attn.qkv.bias"], torch.zeros(96)))
        self.assertLess(float(tensors["blocks.1.mlp.fc1.weight"].std()), 0.03)
        _, _, full_ex = self.full_run()
        trained, _ = safetensors_io.load_file(full_ex, "torch")
        self.assertEqual(set(trained), set(tensors))
        self.assertFalse(torch.equal(trained["blocks.0.attn.qkv.weight"], tensors["blocks.0.attn.qkv.weight"]))
        # Seeded: the same command gives the same weights.
        ex2 = self.path("random2.safetensors")
        self.train(*TINY, "--steps", 0, "--export", ex2, "--readout", "token_stats", "--readout-grid", 2)
        again, meta2 = safetensors_io.load_file(ex2, "torch")
        for k in tensors:
            self.assertTrue(torch.equal(tensors[k], again[k]), k)
        # The readout is written to the metadata, with the cls keys it excludes at rest.
        self.assertEqual((meta2["readout"], meta2["readout_grid"], meta2["avgpool"], meta2["n_last_blocks"]),
                         ("token_stats", "2", "false", "1"))
        self.assertEqual(meta.get("readout_grid"), "4" if meta["readout"] == "token_stats" else None)   # the default grid: 25 tokens a side
        self.assertEqual((meta["avgpool"], meta["n_last_blocks"]),
                         ("true" if meta["readout"] == "cls" else "false", "1"))

    def test_s2_twelve_bands(self):
        ex = self.path("s2.safetensors")
        r = self.train(*TINY, "--sensor", "S2-SR", "--global-size", 24, "--local-size", 16,
                       "--steps", 2, "--export", ex)
        tensors, meta = safetensors_io.load_file(ex, "torch")
        self.assertEqual(tuple(tensors["patch_embed.proj.weight"].shape), (32, 12, 8, 8))
        self.assertEqual(json.loads(meta["bands"]), list(range(1, 13)))
        self.assertEqual(len(json.loads(meta["mean"])), 12)
        self.assertEqual(meta["sensor"], "S2-SR")
        self.assertIn("steps 0..2", r.stdout)

    def test_usage_errors(self):
        r = self.train(*TINY, "--steps", 1, "--bands", "1,5", expect=2)
        self.assertIn("PF-SR images have 4 bands", r.stderr)
        for extra in (["--avgpool"], ["--n-last-blocks", "2"]):
            r = self.train(*TINY, "--steps", 0, "--readout", "token_stats", *extra, expect=2)
            self.assertIn("give --readout cls with them", r.stderr)
        for extra in (["--readout", "cls", "--readout-grid", "2"], ["--readout-grid", "9"]):
            r = self.train(*TINY, "--steps", 0, *extra, expect=2)
            self.assertIn("--readout-grid takes 1..8 and needs --readout token_stats", r.stderr)
        r = self.train(*TINY, "--steps", 0, "--dense", "-1", expect=2)
        self.assertIn("--dense must be >= 0", r.stderr)
        r = self.train("--resume", "--checkpoint", self.path("missing.pt"), expect=2)
        self.assertIn("no checkpoint", r.stderr)

    def test_binary_real_array_decoding(self):
        from rai4eo_tools import db_images
        conn = db_images.connect(self.dsn)
        try:
            for sql, want in (("SELECT ARRAY[[[1.5, -2], [3, 4]]]::real[]", [[[1.5, -2], [3, 4]]]),
                              ("SELECT ARRAY[[1, NULL, 3], [NULL, 5, 6]]::real[]", [[1, np.nan, 3], [np.nan, 5, 6]]),
                              ("SELECT ARRAY['NaN', 'Infinity', 1e-30]::real[]", [np.nan, np.inf, 1e-30])):
                got = conn.execute(sql, binary=True).fetchone()[0]
                self.assertEqual(got.dtype, np.float32)
                np.testing.assert_array_equal(got, np.array(want, dtype=np.float32))
            # The loader's own query (NULL -> NaN on the server) agrees with the text path.
            iid, want = self.pf_pixels()[0]
            got = conn.execute("SELECT array_replace(rai4eo_raster_values(rast, '{1,2,3,4}'), NULL, 'NaN'::real) "
                               "FROM rai4eo.image WHERE image_id = %s", (iid,), binary=True).fetchone()[0]
            np.testing.assert_array_equal(got, want.astype(np.float32))
        finally:
            conn.close()

    def teacher_features(self, ck, meta, pixels):
        """The checkpoint's teacher backbone on the images, preprocessed as the database does."""
        state = torch.load(ck)
        teacher = {k[len("backbone."):]: v for k, v in state["teacher"].items() if k.startswith("backbone.")}
        model = R.vit_from_state_dict(teacher, num_heads=int(meta["num_heads"]))
        raw = torch.from_numpy(np.stack([a for _, a in pixels]))
        x = R.preprocess(raw, torch.isnan(raw), float(meta["scale"]), json.loads(meta["mean"]),
                         json.loads(meta["std"]))
        with torch.no_grad():
            return model.features(x, int(meta["n_last_blocks"]), json.loads(meta["avgpool"]),
                                  meta.get("readout", "cls"), int(meta.get("readout_grid", 1))).double().numpy()

    def check_close(self, got, ref):
        for g, r in zip(got, ref):
            cos = float(np.dot(g, r) / (np.linalg.norm(g) * np.linalg.norm(r)))
            self.assertGreaterEqual(cos, COS_MIN)
            self.assertLessEqual(float(np.abs(g - r).max()), REL_MAX * float(np.abs(r).max()))

    def test_parity_with_rai4eo_embed(self):
        if not self.has_function("rai4eo_embed") or not self.has_function("rai4eo_load_model"):
            self.fail("rai4eo_embed/rai4eo_load_model are not installed in this build of rai4eo")
        _, ck, _ = self.full_run()
        # Re-export the finished run with another feature recipe (an option of the export,
        # not of the run): CLS tokens of both blocks plus the mean patch token.
        ex = self.path("registered.safetensors")
        r = self.train("--checkpoint", ck, "--resume", "--threads", 1, "--register", "tiny_dino_db",
                       "--export", ex, "--readout", "cls", "--n-last-blocks", 2, "--avgpool")
        self.assertIn("registered model tiny_dino_db", r.stdout)
        self.assertNotIn("ignored", r.stderr)
        _, meta = safetensors_io.load_file(ex, "torch")
        self.assertEqual((meta["n_last_blocks"], meta["avgpool"]), ("2", "true"))
        norm = torch.load(ck)["normalisation"]
        self.assertEqual((json.loads(meta["mean"]), json.loads(meta["std"])), (norm["mean"], norm["std"]))
        dims = self.conn.execute("SELECT embedding_dims(rai4eo_embed(rast, 'tiny_dino_db')) FROM rai4eo.image "
                                 "WHERE sensor = 'PF-SR' LIMIT 1").fetchone()[0]
        self.assertEqual(dims, 3 * 32)
        pixels = self.pf_pixels()
        ref = self.teacher_features(ck, meta, pixels)
        rows = self.conn.execute("SELECT image_id, rai4eo_embed(rast, 'tiny_dino_db')::real[] FROM rai4eo.image "
                                 "WHERE sensor = 'PF-SR' ORDER BY image_id").fetchall()
        self.assertEqual([i for i, _ in rows], [i for i, _ in pixels])
        self.check_close(np.array([e for _, e in rows], dtype=np.float64), ref)

    def test_export_runs_in_the_core_engine(self):
        """The exported file through the C engine (test/parity/model_cli.c: metadata resolved
        by the core, preprocessing from the metadata, native input) equals the teacher."""
        cli = os.environ.get("R4_MODEL_CLI")
        if not cli:
            cc = shutil.which(os.environ.get("CC", "cc"))
            if cc is None:
                self.fail("no C compiler to build test/parity/model_cli.c")
            cli = self.path("model_cli")
            srcs = sorted(glob.glob(os.path.join(ROOT, "src", "core", "*.c")))
            b = subprocess.run([cc, "-std=gnu11", "-O1", "-I", os.path.join(ROOT, "include")] + srcs
                               + [os.path.join(ROOT, "test", "parity", "model_cli.c"), "-lopenblas", "-lz", "-lm", "-o", cli],
                               capture_output=True, text=True)
            if b.returncode != 0:
                self.fail("cannot build model_cli: %s" % b.stderr[-500:])
        _, ck, ex = self.full_run()
        _, meta = safetensors_io.load_file(ex, "torch")
        pixels = self.pf_pixels()[:6]
        raw = np.stack([a for _, a in pixels]).astype(np.float32)
        raw.tofile(self.path("in.f32"))
        np.isnan(raw).astype(np.uint8).tofile(self.path("mask.u8"))
        r = subprocess.run([cli, "--preprocess", "--mask", self.path("mask.u8"), ex, self.path("in.f32"),
                            str(len(raw)), "4", "200", "200", self.path("out.f32")],
                           capture_output=True, text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
        self.assertEqual(r.returncode, 0, r.stderr)
        got = np.fromfile(self.path("out.f32"), np.float32).reshape(len(raw), -1).astype(np.float64)
        self.check_close(got, self.teacher_features(ck, meta, pixels))


# ---- learning: a short run must learn something a random network does not know ------------

LEARN_GRID, LEARN_STEP = 4, 6
# The CLS recipe: the invariance below moves with what the run learns there.  The default
# token_stats readout of this tiny ViT keeps places apart as well with random weights
# (0.21 against 0.21 trained, measured), so at this size it would measure noise; its gain
# shows on demo-size corpora (README "Measuring features").
LEARN_MODEL = ["--embed-dim", "64", "--depth", "2", "--num-heads", "2", "--patch-size", "8",
               "--global-size", "48", "--local-size", "24", "--local-crops", "2", "--batch-size", "16",
               "--out-dim", "128", "--head-hidden-dim", "128", "--bottleneck-dim", "64",
               "--threads", "2", "--seed", "0", "--holdout", "0.5", "--readout", "cls", "--avgpool"]
LEARN_RECIPE = ["--steps", "100", "--log-every", "1", "--lr", "1e-3"]      # momentum from the run length


class LearningTest(unittest.TestCase):
    """A short DINO run on a small corpus lowers its loss (the KL part) and gives features
    that, on patches it never trained on, keep a place recognisable across weeks better than
    the same network with its random initial weights.  The default teacher momentum (its
    EMA horizon a tenth of the run: 0.9 for 100 steps, so the exported teacher follows the
    student within the run) and a tiny ViT."""

    @classmethod
    def setUpClass(cls):
        import psycopg
        try:
            admin = psycopg.connect("", autocommit=True)
        except psycopg.Error as e:
            raise RuntimeError("test_train needs a PostgreSQL server named by PG* variables: %s" % e)
        cls.db = "train_learn_%d" % os.getpid()
        admin.execute('DROP DATABASE IF EXISTS "%s"' % cls.db)
        admin.execute('CREATE DATABASE "%s"' % cls.db)
        admin.close()
        cls.dsn = "dbname=%s" % cls.db
        cls.conn = psycopg.connect(cls.dsn, autocommit=True)
        cls.conn.execute("CREATE EXTENSION rai4eo CASCADE")
        cls.tmp = tempfile.mkdtemp(prefix="rai4eo-learn-")
        cls.corpus = os.path.join(cls.tmp, "corpus")
        for cmd in ([SYNTH, "--out", cls.corpus, "--grid", str(LEARN_GRID), "--date-step", str(LEARN_STEP),
                     "--change-share", "0.5", "--seed", "7", "--no-s2", "--quiet", "--jobs", "2"],
                    [LOAD, "--dsn", cls.dsn, "--quiet", cls.corpus]):
            r = subprocess.run([sys.executable] + cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("%s failed: %s" % (os.path.basename(cmd[0]), r.stderr))

    @classmethod
    def tearDownClass(cls):
        import psycopg
        cls.conn.close()
        with psycopg.connect("", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def train(self, name, *args):
        r = subprocess.run([sys.executable, TRAIN, "dino", "--dsn", self.dsn, "--register", name]
                           + LEARN_MODEL + [str(a) for a in args], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.conn.execute("CALL rai4eo_refresh_embeddings(%s, 'PF-SR', 32)", (name,))
        return r

    def invariance(self, model):
        """On the held-out patches: the mean cosine distance between images of the same patch
        30-60 days apart over the mean distance between images of different patches at most
        15 days apart -- below 1 when a place stays recognisable while the season moves on."""
        from rai4eo_tools import evaluate as E
        rows = self.conn.execute("SELECT i.patch_id, i.acquired - DATE '2000-01-01', e.emb::real[] "
                                 "FROM rai4eo.embedding e JOIN rai4eo.image i USING (image_id) "
                                 "WHERE e.model = %s ORDER BY i.image_id", (model,)).fetchall()
        rows = [r for r in rows if E.split_value(r[0]) < 0.5]
        pid = np.array([r[0] for r in rows])
        day = np.array([r[1] for r in rows])
        x = np.array([r[2] for r in rows], np.float64)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        dist = 1.0 - x @ x.T
        lag = np.abs(day[:, None] - day[None, :])
        same = pid[:, None] == pid[None, :]
        return float(dist[same & (lag >= 30) & (lag <= 60)].mean() / dist[~same & (lag <= 15)].mean())

    def test_short_run_learns(self):
        from rai4eo_tools import evaluate as E
        self.train("learn_random", "--steps", "0")
        r = self.train("learn_dino", *LEARN_RECIPE)
        # DINO's loss is the cross-entropy H(t, s) = H(t) + KL(t || s): the teacher's entropy
        # H(t) moves with centring and sharpening, the student learns the KL part.  The
        # default recipe adds the per-token loss (--dense 1), printed as its own part.
        rows = re.findall(r"step \d+/\d+  loss (\S+)  dense (\S+) .*H\(t\) (\S+)", r.stderr)
        kl = [float(a) - float(d) - float(b) for a, d, b in rows]
        self.assertGreaterEqual(len(kl), 40, r.stderr)
        first, last = np.mean(kl[:10]), np.mean(kl[-10:])
        inv = {m: self.invariance(m) for m in ("learn_random", "learn_dino")}
        held = sum(1 for p in self.conn.execute("SELECT patch_id FROM rai4eo.patch").fetchall()
                   if E.split_value(p[0]) < 0.5)
        msg = "KL %.3f -> %.3f, invariance %s" % (first, last, inv)
        self.assertLess(last, 0.8 * first, msg)
        self.assertGreaterEqual(held, 5)
        # Learning shows on places the run never saw: images of a patch weeks apart are
        # closer to each other, relative to other patches, than with the random weights.
        # (Change AUC needs more held-out patches than a test can afford: tools/evaluate
        # measures it on demo-size corpora, see README "Measuring features".)
        self.assertLess(inv["learn_dino"], 0.9 * inv["learn_random"], msg)


if __name__ == "__main__":
    unittest.main()
