"""Tests of tools/convert_checkpoint.py (no database needed).

Checkpoints are made here with PyTorch in each layout the converter accepts
(DINO training checkpoint, DINO backbone file with DDP/DINO prefixes and
wrappers, timm and TorchGeo/Lightning state dicts, a pickled nn.Module,
safetensors), converted, and checked: tensors equal to the source (exactly
for F32, within one rounding for F16/BF16), heads dropped, prefixes
stripped, metadata written as model_config.h reads it.  The converted files
are then run through the C engine (test/parity/model_cli.c, built like
test/parity/test_vit_parity.py builds it, or $R4_MODEL_CLI) and compared with
the PyTorch reference (tools/lib/rai4eo_tools/vit_reference.py): max abs
difference <= 1e-4 x max |ref| per image.

Run: /usr/bin/python3 -m unittest discover -s test/tools -p 'test_convert*.py' -v
"""

import argparse
import contextlib
import importlib.util
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "lib"))

import numpy as np                                           # noqa: E402
import torch                                                 # noqa: E402
import torch.nn as nn                                        # noqa: E402

from rai4eo_tools import checkpoint as ck                    # noqa: E402
from rai4eo_tools import resnet_reference as rref            # noqa: E402
from rai4eo_tools import safetensors_io                      # noqa: E402
from rai4eo_tools import vit_reference as ref                # noqa: E402

CONVERTER = os.path.join(ROOT, "tools", "convert_checkpoint.py")
# every core source, as `make unit` links them: the core's files depend on each other
CORE_SOURCES = sorted(f for f in os.listdir(os.path.join(ROOT, "src", "core")) if f.endswith(".c"))
REL_MAX = 1e-4

_spec = importlib.util.spec_from_file_location("convert_checkpoint", CONVERTER)
conv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conv)


def build_cli(workdir):
    """Compile test/parity/model_cli.c (the engine API, any architecture), or use $R4_MODEL_CLI."""
    prebuilt = os.environ.get("R4_MODEL_CLI")
    if prebuilt:
        return prebuilt
    exe = os.path.join(workdir, "model_cli")
    cmd = [os.environ.get("CC", "cc"), "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror",
           "-I", os.path.join(ROOT, "include")]
    cmd += [os.path.join(ROOT, "src", "core", s) for s in CORE_SOURCES]
    cmd += [os.path.join(ROOT, "test", "parity", "model_cli.c"), "-lopenblas", "-lz", "-lm", "-o", exe]
    subprocess.run(cmd, check=True)
    return exe


class DinoHead(nn.Module):
    """DINO's projection head (mlp with GELU, weight-normed last layer), small."""

    def __init__(self, dim, hidden=48, bottleneck=16, out_dim=100):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                 nn.GELU(), nn.Linear(hidden, bottleneck))
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))


class MultiCropWrapper(nn.Module):
    """DINO's wrapper: backbone.* and head.* keys."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head


class FakeDDP(nn.Module):
    """What DistributedDataParallel adds to the keys: module.*"""

    def __init__(self, module):
        super().__init__()
        self.module = module


class Evil:
    """A pickled object whose unpickling would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def small_state(seed, embed_dim=64, depth=2, patch_size=8, in_chans=4, img_size=32):
    return ref.random_vit_state(embed_dim=embed_dim, depth=depth, patch_size=patch_size,
                                in_chans=in_chans, img_size=img_size, seed=seed)


class ConverterTestBase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        cls.tmp = tempfile.mkdtemp(prefix="r4_convert_")
        cls.env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        cls.counter = 0

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def path(self, name):
        type(self).counter += 1
        return os.path.join(self.tmp, f"{type(self).counter:03d}_{name}")

    def save(self, obj, name):
        p = self.path(name)
        torch.save(obj, p)
        return p

    def convert(self, *args):
        """Run the converter in this process; return (exit status, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = conv.main([str(a) for a in args])
        return rc, out.getvalue(), err.getvalue()

    def convert_ok(self, src, *args):
        dst = self.path("out.safetensors")
        rc, out, err = self.convert(src, dst, *args)
        self.assertEqual(rc, 0, out + err)
        self.assertNotIn("Traceback", err)
        tensors, meta = safetensors_io.load_file(dst, "torch")
        return dst, tensors, meta, out, err

    def convert_fails(self, *args, message):
        rc, out, err = self.convert(*args)
        self.assertEqual(rc, 2, out + err)
        self.assertIn("convert_checkpoint: error: ", err)
        self.assertIn(message, err)
        self.assertNotIn("Traceback", err)
        return err

    def assert_same_tensors(self, got, want):
        self.assertEqual(sorted(got), sorted(want))
        for k, v in want.items():
            self.assertEqual(got[k].dtype, v.dtype, k)
            self.assertTrue(torch.equal(got[k], v), k)


class ConvertLayouts(ConverterTestBase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cli = build_cli(cls.tmp)

    def run_cli(self, model_path, x, preprocess=False, expect_fail=False):
        """Run the C engine on x [B, C, H, W]; return (features, stdout + stderr)."""
        B, C, H, W = x.shape
        inp, outp = self.path("in.f32"), self.path("out.f32")
        np.ascontiguousarray(x.numpy(), dtype=np.float32).tofile(inp)
        args = [self.cli] + (["--preprocess"] if preprocess else [])
        args += [model_path, inp, str(B), str(C), str(H), str(W), outp]
        r = subprocess.run(args, capture_output=True, text=True, env=self.env)
        if expect_fail:
            self.assertNotEqual(r.returncode, 0, r.stdout)
            return None, r.stderr
        self.assertEqual(r.returncode, 0, r.stderr)
        return np.fromfile(outp, dtype=np.float32).reshape(B, -1), r.stdout + r.stderr

    def assert_parity(self, got, want, label):
        want = np.asarray(want, dtype=np.float64).reshape(got.shape[0], -1)
        got = np.asarray(got, dtype=np.float64)
        self.assertEqual(got.shape, want.shape, label)
        self.assertTrue(np.all(np.isfinite(got)), label)
        rel = np.abs(got - want).max(1) / np.abs(want).max(1)
        self.assertLessEqual(rel.max(), REL_MAX, f"{label}: max abs diff ratio {rel.max()}")
        return rel.max()

    def engine_matches(self, path, state, x, n_last_blocks=1, avgpool=False, num_heads=None,
                       label=""):
        """Run the converted file and the reference built from state on x; compare."""
        got, log = self.run_cli(path, x)
        model = ref.vit_from_state_dict(state, num_heads=num_heads)
        with torch.no_grad():
            want = model.features(x, n_last_blocks, avgpool)
        self.assert_parity(got, want, label)
        return got, log

    @staticmethod
    def summary_params(out):
        return int(out.split(" params ")[1].split()[0])

    # -- DINO training checkpoints ------------------------------------------------------

    def dino_training_checkpoint(self):
        teacher_state = small_state(1)
        student_state = small_state(2)
        torch.manual_seed(0)
        teacher = MultiCropWrapper(ref.vit_from_state_dict(teacher_state), DinoHead(64))
        student = FakeDDP(MultiCropWrapper(ref.vit_from_state_dict(student_state), DinoHead(64)))
        opt = torch.optim.AdamW(student.parameters(), lr=1e-3)  # its weight decay moves the student
        for p in student.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        ckpt = {"student": student.state_dict(), "teacher": teacher.state_dict(),
                "optimizer": opt.state_dict(), "epoch": 7,
                "args": argparse.Namespace(arch="vit_small", patch_size=8, out_dim=100, lr=5e-4),
                "dino_loss": {"center": torch.randn(1, 100)},
                "fp16_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                "growth_interval": 2000, "_growth_tracker": 3}}
        self.assertIn("head.last_layer.weight_g", ckpt["teacher"])
        self.assertIn("module.backbone.blocks.1.mlp.fc2.bias", ckpt["student"])
        student_state = {k[len("module.backbone."):]: v for k, v in ckpt["student"].items()
                         if k.startswith("module.backbone.")}
        return self.save(ckpt, "checkpoint.pth"), teacher_state, student_state

    def test_dino_training_checkpoint(self):
        src, teacher_state, student_state = self.dino_training_checkpoint()
        x = torch.randn(2, 4, 40, 48)

        dst, tensors, meta, out, _ = self.convert_ok(src)
        self.assert_same_tensors(tensors, teacher_state)
        self.assertEqual(meta["arch"], "vit")
        self.assertIn("DINO training checkpoint, teacher", out)
        self.assertIn("prefix 'backbone.' stripped", out)
        self.assertIn("head.last_layer.weight_g", out)  # reported as dropped
        _, log = self.engine_matches(dst, teacher_state, x, label="DINO teacher")
        self.assertIn(f"params={self.summary_params(out)} ", log)

        _, tensors, _, out, _ = self.convert_ok(src, "--which", "student")
        self.assert_same_tensors(tensors, student_state)
        self.assertIn("prefix 'module.backbone.' stripped", out)
        self.assertFalse(torch.equal(tensors["blocks.0.attn.qkv.weight"],
                                     teacher_state["blocks.0.attn.qkv.weight"]))

        # --key reaches the same network explicitly
        _, tensors, _, _, _ = self.convert_ok(src, "--key", "teacher")
        self.assert_same_tensors(tensors, teacher_state)

    # -- DINO backbone files ------------------------------------------------------------

    def test_dino_backbone_layouts(self):
        state = small_state(3)
        layouts = {
            "plain": state,
            "DDP under state_dict": {"state_dict": {"module." + k: v for k, v in state.items()}},
            "backbone. under model": {"model": {"backbone." + k: v for k, v in state.items()},
                                      "epoch": 3},
            "module.backbone. under model": {"model": {"module.backbone." + k: v for k, v in state.items()}},
            "pickled nn.Module": ref.vit_from_state_dict(state),
        }
        for label, obj in layouts.items():
            with self.subTest(layout=label):
                dst, tensors, _, out, _ = self.convert_ok(self.save(obj, "backbone.pth"))
                self.assert_same_tensors(tensors, state)
                self.assertIn("dropped:  nothing", out)
        self.assertIn("pickled nn.Module", out)
        # torch.save's pre-1.6 format
        legacy = self.path("legacy.pth")
        torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, legacy,
                   _use_new_zipfile_serialization=False)
        with open(legacy, "rb") as f:
            self.assertNotEqual(f.read(4), b"PK\x03\x04")
        _, tensors, _, _, _ = self.convert_ok(legacy)
        self.assert_same_tensors(tensors, state)
        self.engine_matches(dst, state, torch.randn(1, 4, 32, 32), label="DINO backbone")

    def test_reader_matches_torch_load(self):
        # views with offsets and strides, shared storages, every dtype a checkpoint holds
        base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
        obj = {"slice": base[2:5], "t": base.t(), "col": base[:, 3], "scalar": torch.tensor(2.5),
               "half": torch.randn(3, 4).half(), "bf16": torch.randn(5).bfloat16(),
               "f64": torch.randn(2, 2, dtype=torch.float64), "i64": torch.tensor([1, -2]),
               "bool": torch.tensor([True, False]), "u8": torch.arange(4, dtype=torch.uint8),
               "empty": torch.zeros(0, 3), "param": nn.Parameter(torch.randn(2)),
               "nested": [{"x": base[1]}, (torch.ones(1), 3)], "plain": {"a": 1, "b": "c", "d": None}}
        for legacy in (False, True):
            p = self.path("views.pth")
            torch.save(obj, p, _use_new_zipfile_serialization=not legacy)
            want = torch.load(p)
            got = ck.load_torch(p)

            def same(a, b, where):
                if isinstance(a, torch.Tensor):
                    self.assertIsInstance(b, torch.Tensor, where)
                    self.assertEqual((a.dtype, a.shape), (b.dtype, b.shape), where)
                    self.assertTrue(torch.equal(a.detach(), b), where)
                elif isinstance(a, dict):
                    self.assertEqual(list(a), list(b), where)
                    for k in a:
                        same(a[k], b[k], f"{where}.{k}")
                elif isinstance(a, (list, tuple)):
                    self.assertEqual(len(a), len(b), where)
                    for i, (x, y) in enumerate(zip(a, b)):
                        same(x, y, f"{where}[{i}]")
                else:
                    self.assertEqual(a, b, where)

            with self.subTest(legacy=legacy):
                same(want, got, "")

    def test_source_dtypes(self):
        state = small_state(16)
        for src_dtype, opt, want in ((torch.bfloat16, "keep", torch.bfloat16),
                                     (torch.float16, "keep", torch.float16),
                                     (torch.float64, "keep", torch.float32),
                                     (torch.bfloat16, "f32", torch.float32)):
            with self.subTest(source=str(src_dtype), dtype=opt):
                src = self.save({k: v.to(src_dtype) for k, v in state.items()}, "typed.pth")
                _, tensors, _, _, _ = self.convert_ok(src, "--dtype", opt)
                for k, v in state.items():
                    self.assertEqual(tensors[k].dtype, want, k)
                    # exact when nothing narrower than the source is asked for
                    expect = v.to(src_dtype).to(want)
                    self.assertTrue(torch.equal(tensors[k], expect), k)

    # -- timm and TorchGeo --------------------------------------------------------------

    def test_keep_head_makes_a_classifier(self):
        state = small_state(5, embed_dim=192, depth=2, patch_size=16, in_chans=4, img_size=64)
        head = {"head.weight": torch.randn(3, 192), "head.bias": torch.randn(3)}
        dino_proj = {"head.mlp.0.weight": torch.randn(8, 192), "head.last_layer.weight_v": torch.randn(16, 8)}
        src = self.save({**state, **head, **dino_proj}, "classifier.pth")
        dst, tensors, meta, out, _ = self.convert_ok(src, "--keep-head", "--classes", "forest,water,urban",
                                                   "--multilabel", "--num-heads", "3")
        self.assert_same_tensors(tensors, {**state, **head})      # the DINO projection head still goes
        self.assertEqual(json.loads(meta["classes"]), ["forest", "water", "urban"])
        self.assertEqual(meta["multilabel"], "true")
        # the engine sees the head: its configuration lists the classes
        _, log = self.run_cli(dst, torch.randn(1, 4, 64, 64))
        self.assertIn('"classes":["forest","water","urban"],"multilabel":true', log)
        # classes without a head to describe
        self.convert_fails(self.save(state, "backbone.pth"), self.path("x.safetensors"), "--classes", "a,b",
                           message="--keep-head")

    def test_timm_and_torchgeo(self):
        state = small_state(4, embed_dim=192, depth=3, patch_size=16, in_chans=12, img_size=64)
        head = {"head.weight": torch.randn(10, 192), "head.bias": torch.randn(10)}
        timm_src = self.save({**state, **head}, "timm.pth")
        _, tensors, _, out, _ = self.convert_ok(timm_src)
        self.assert_same_tensors(tensors, state)
        self.assertIn("2 classifier/projection head (head.weight, head.bias)", out)

        lightning = {
            "state_dict": {**{"model." + k: v for k, v in state.items()},
                           **{"model." + k: v for k, v in head.items()}},
            "hyper_parameters": {"model": "vit_small_patch16_224", "in_channels": 12, "lr": 1e-3},
            "epoch": 9, "global_step": 1234, "pytorch-lightning_version": "1.9.4",
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]}],
            "lr_schedulers": [],
        }
        bands = ",".join(str(b) for b in range(1, 13))
        dst, tensors, meta, out, _ = self.convert_ok(
            self.save(lightning, "torchgeo.ckpt"), "--bands", bands, "--scale", "0.0001",
            "--input", "resize", "--img-size", "64", "--name", "s2-vits16")
        self.assert_same_tensors(tensors, state)
        self.assertIn("state dict under 'state_dict', prefix 'model.' stripped", out)
        self.assertEqual(meta["bands"], "[" + bands + "]")
        self.assertEqual(meta["scale"], "0.0001")
        self.assertEqual(meta["input"], "resize")
        self.assertEqual(meta["img_size"], "64")
        self.assertEqual(meta["name"], "s2-vits16")
        want_params = sum(v.numel() for v in state.values())
        self.assertEqual(self.summary_params(out), want_params)
        _, log = self.engine_matches(dst, state, torch.randn(2, 12, 64, 64), num_heads=3,
                                     label="TorchGeo 12-band")
        cfg = json.loads(log.split("config=", 1)[1].splitlines()[0])
        self.assertEqual(cfg["bands"], list(range(1, 13)))
        self.assertEqual(cfg["input"], "resize")
        self.assertEqual(cfg["img_size"], 64)
        self.assertAlmostEqual(cfg["scale"], 1e-4)
        self.assertEqual(cfg["num_heads"], 3)
        self.assertIn(f"params={want_params} ", log)

    def test_unsupported_variant_is_kept_and_named(self):
        state = small_state(5, embed_dim=64, depth=2, patch_size=16, in_chans=4, img_size=32)
        variant = dict(state)
        variant["fc_norm.weight"] = variant.pop("norm.weight")
        variant["fc_norm.bias"] = variant.pop("norm.bias")
        variant["norm_pre.weight"] = torch.ones(64)
        variant["norm_pre.bias"] = torch.zeros(64)
        variant["reg_token"] = torch.zeros(1, 4, 64)
        for b in range(2):
            variant[f"blocks.{b}.ls1.gamma"] = torch.full((64,), 0.1)
            variant[f"blocks.{b}.ls2.gamma"] = torch.full((64,), 0.1)
        variant["head.weight"] = torch.randn(5, 64)
        variant["head.bias"] = torch.randn(5)
        dst, tensors, _, out, err = self.convert_ok(self.save(variant, "variant.pth"))
        for name in ("fc_norm", "norm_pre", "reg_token", "blocks.*.ls1.gamma (2)", "blocks.*.ls2.gamma (2)"):
            self.assertIn(name, err)
        self.assertIn("does not implement", err)
        self.assertIn("lacks 2 tensors the engine requires: norm.weight, norm.bias", err)
        self.assertNotIn("head.weight", tensors)
        self.assertIn("blocks.1.ls2.gamma", tensors)
        self.assertTrue(torch.equal(tensors["fc_norm.weight"], state["norm.weight"]))
        # with norm present the engine names the first variant tensor it meets
        variant["norm.weight"], variant["norm.bias"] = state["norm.weight"], state["norm.bias"]
        dst, _, _, _, err = self.convert_ok(self.save(variant, "variant2.pth"))
        self.assertNotIn("lacks", err)
        _, msg = self.run_cli(dst, torch.randn(1, 4, 32, 32), expect_fail=True)
        self.assertIn("belongs to a ViT variant the engine does not implement", msg)

    # -- safetensors input --------------------------------------------------------------

    def test_safetensors_rewrite(self):
        state = small_state(6)
        src = self.path("in.safetensors")
        safetensors_io.save_file(state, src, {"bands": "[1,2,3,4]", "name": "old", "custom": "x"})
        dst, tensors, meta, out, _ = self.convert_ok(src, "--name", "new", "--mean", "0.5",
                                                     "--meta", "source=unit test")
        self.assert_same_tensors(tensors, state)
        self.assertEqual(meta["name"], "new")
        self.assertEqual(meta["bands"], "[1,2,3,4]")
        self.assertEqual(meta["custom"], "x")
        self.assertEqual(meta["mean"], "0.5")
        self.assertEqual(meta["source"], "unit test")
        self.assertIn("safetensors file", out)
        # in place, with --force
        rc, out, err = self.convert(dst, dst, "--force", "--std", "2")
        self.assertEqual(rc, 0, err)
        tensors, meta = safetensors_io.load_file(dst, "torch")
        self.assert_same_tensors(tensors, state)
        self.assertEqual((meta["name"], meta["std"]), ("new", "2"))

    # -- dtypes -------------------------------------------------------------------------

    def test_half_precision(self):
        state = small_state(7, embed_dim=128, depth=2, patch_size=8, in_chans=4, img_size=32)
        state["pos_embed"][0, 1, :4] = torch.tensor([3e-6, -7e-8, 1e-3, 40000.0])  # subnormal/large in F16
        state["blocks.0.norm1.num_batches_tracked"] = torch.tensor(5)  # an I64 buffer: dropped
        src = self.save(state, "half.pth")
        del state["blocks.0.norm1.num_batches_tracked"]
        x = torch.randn(2, 4, 40, 40)
        for opt, dtype, rel, tiny in (("f16", torch.float16, 2.0 ** -11, 2.0 ** -25),
                                      ("bf16", torch.bfloat16, 2.0 ** -8, 0.0)):
            with self.subTest(dtype=opt):
                dst, tensors, _, out, _ = self.convert_ok(src, "--dtype", opt)
                self.assertIn("1 num_batches_tracked", out)
                self.assertEqual(sorted(tensors), sorted(state))
                inexact = 0
                for k, v in state.items():
                    got = tensors[k]
                    self.assertEqual(got.dtype, dtype, k)
                    diff = (got.double() - v.double()).abs()
                    bound = v.double().abs() * rel + tiny
                    self.assertTrue(bool((diff <= bound).all()), f"{k}: {float((diff - bound).max())}")
                    inexact += int((diff > 0).sum())
                self.assertGreater(inexact, 0)
                rounded = {k: v.float() for k, v in tensors.items()}
                self.engine_matches(dst, rounded, x, label=f"{opt} weights")
        # F16 overflow is refused, not turned into infinities
        state["pos_embed"][0, 1, 0] = 1e6
        self.convert_fails(self.save(state, "big.pth"), self.path("big.safetensors"), "--dtype", "f16",
                           message="does not fit F16")

    # -- the metadata the engine must honour --------------------------------------------

    def test_feature_recipe_and_preprocessing_metadata(self):
        state = small_state(8, embed_dim=128, depth=4, patch_size=16, in_chans=4, img_size=64)
        src = self.save({"state_dict": {"backbone." + k: v for k, v in state.items()}}, "recipe.pth")
        mean, std = [0.05, 0.07, 0.09, 0.25], [0.03, 0.035, 0.05, 0.1]
        dst, _, meta, _, _ = self.convert_ok(
            src, "--n-last-blocks", "4", "--avgpool", "--bands", "4,3,2,1", "--scale", "1e-4",
            "--mean", ",".join(map(str, mean)), "--std", ",".join(map(str, std)))
        self.assertEqual(meta["n_last_blocks"], "4")
        self.assertEqual(meta["avgpool"], "true")
        self.assertEqual(meta["bands"], "[4,3,2,1]")
        self.assertEqual(meta["std"], "[0.03,0.035,0.05,0.1]")
        g = torch.Generator().manual_seed(3)
        raw = (torch.rand(2, 4, 1, 1, generator=g) * 1500 + 500
               + torch.randn(2, 4, 48, 56, generator=g) * 400).round()
        got, log = self.run_cli(dst, raw, preprocess=True)
        self.assertIn("out_dim=640", log)  # 128 x (4 + 1)
        self.assertIn('"bands":[4,3,2,1]', log)
        self.assertIn('"n_last_blocks":4', log)
        self.assertIn('"avgpool":true', log)
        xin = ref.preprocess(raw, None, 1e-4, mean, std)
        model = ref.vit_from_state_dict(state)
        with torch.no_grad():
            want = model.features(xin, 4, True)
            plain = model.features(raw.float(), 4, True)
        self.assert_parity(got, want, "n_last_blocks 4 + avgpool + normalisation")
        # the normalisation really was applied
        self.assertGreater(np.abs(got - plain.numpy()).max(), 10 * REL_MAX * np.abs(plain.numpy()).max())

        # num_heads from the metadata: 4 heads of 32 instead of the default 2 of 64
        dst, _, meta, _, _ = self.convert_ok(src, "--num-heads", "4", "--ln-eps", "1e-5")
        self.assertEqual((meta["num_heads"], meta["ln_eps"]), ("4", "1e-05"))
        x = torch.randn(1, 4, 64, 64)
        got, _ = self.run_cli(dst, x)
        model4 = ref.vit_from_state_dict(state, num_heads=4, eps=1e-5)
        with torch.no_grad():
            want = model4.features(x)
            default = model.features(x)
        self.assert_parity(got, want, "num_heads 4, ln_eps 1e-5")
        self.assertGreater(np.abs(got - default.numpy()).max(), 10 * REL_MAX * np.abs(default.numpy()).max())


class ConvertErrors(ConverterTestBase):
    def test_no_vit_keys(self):
        resnet = {"conv1.weight": torch.randn(8, 3, 7, 7), "bn1.weight": torch.ones(8),
                  "bn1.num_batches_tracked": torch.tensor(0), "fc.weight": torch.randn(10, 8)}
        self.convert_fails(self.save(resnet, "resnet.pth"), self.path("o.safetensors"),
                           message="no ViT weights found")
        self.convert_fails(self.save({"epoch": 3, "lr": [0.1]}, "noweights.pth"),
                           self.path("o.safetensors"), message="no ViT weights found")
        self.convert_fails(self.save(torch.randn(3), "tensor.pth"), self.path("o.safetensors"),
                           message="no ViT weights found")

    def test_output_exists(self):
        src = self.save(small_state(9), "s.pth")
        dst = self.path("exists.safetensors")
        with open(dst, "wb") as f:
            f.write(b"keep me")
        self.convert_fails(src, dst, message="exists; use --force")
        with open(dst, "rb") as f:
            self.assertEqual(f.read(), b"keep me")
        rc, _, err = self.convert(src, dst, "--force", "-q")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(sorted(safetensors_io.load_file(dst)[0]), sorted(small_state(9)))
        self.convert_fails(src, self.tmp, message="is a directory")
        self.convert_fails(src, os.path.join(self.tmp, "nodir", "x.safetensors"), message="does not exist")

    def test_unreadable_input(self):
        out = self.path("o.safetensors")
        self.convert_fails(self.path("missing.pth"), out, message="no such file")
        self.convert_fails(self.tmp, out, message="is a directory")
        garbage = self.path("garbage.pth")
        with open(garbage, "wb") as f:
            f.write(b"this is not a checkpoint\x00\x01\x02" * 10)
        self.convert_fails(garbage, out, message="cannot read")
        empty = self.path("empty.pth")
        open(empty, "wb").close()
        self.convert_fails(empty, out, message="cannot read")
        good = self.save(small_state(10), "good.pth")
        with open(good, "rb") as f:
            data = f.read()
        for label, cut in (("truncated", data[:len(data) // 2]), ("header only", data[:200])):
            bad = self.path(label.replace(" ", "_") + ".pth")
            with open(bad, "wb") as f:
                f.write(cut)
            with self.subTest(label):
                self.convert_fails(bad, out, message="cannot read")
        # a broken safetensors file (header promises more data than there is)
        st = self.path("short.safetensors")
        full = safetensors_io.serialize(small_state(10))
        with open(st, "wb") as f:
            f.write(full[:-10])
        self.convert_fails(st, out, message="cannot read")
        self.assertFalse(os.path.exists(out))

    def test_torchscript_is_refused(self):
        scripted = torch.jit.trace(nn.Linear(4, 2), torch.randn(1, 4))
        p = self.path("scripted.pt")
        scripted.save(p)
        self.convert_fails(p, self.path("o.safetensors"), message="TorchScript archive")

    def test_ambiguous_inputs(self):
        a, b = small_state(11), small_state(12)
        two = self.save({"state_dict": a, "model": b}, "two.pth")
        err = self.convert_fails(two, self.path("o.safetensors"), message="holds 2 ViTs")
        self.assertIn("'state_dict'", err)
        self.assertIn("--key", err)
        _, tensors, _, _, _ = self.convert_ok(two, "--key", "model")
        self.assert_same_tensors(tensors, b)
        self.convert_fails(two, self.path("o.safetensors"), "--key", "nothere", message="no such container")

        # one state dict, two networks (solo-learn style backbone / momentum_backbone)
        both = {**{"backbone." + k: v for k, v in a.items()},
                **{"momentum_backbone." + k: v for k, v in b.items()}}
        src = self.save({"state_dict": both}, "momentum.ckpt")
        err = self.convert_fails(src, self.path("o.safetensors"), message="holds 2 ViTs")
        self.assertIn("--prefix", err)
        _, tensors, _, out, _ = self.convert_ok(src, "--prefix", "momentum_backbone")
        self.assert_same_tensors(tensors, b)
        self.assertIn("outside the backbone", out)
        # nested roots: the outer ViT does not swallow the inner one
        nested = {**a, **{"ema." + k: v for k, v in b.items()}}
        _, tensors, _, _, _ = self.convert_ok(self.save(nested, "nested.pth"), "--prefix", "")
        self.assert_same_tensors(tensors, a)
        self.convert_fails(src, self.path("o.safetensors"), "--prefix", "nope.", message="no tensor")

    def test_bad_options(self):
        src = self.save(small_state(13), "s.pth")
        out = self.path("o.safetensors")
        cases = [
            (["--bands", "1,2,3"], "lists 3 bands but the model has 4"),
            (["--bands", "0,1,2,3"], "integers from 1"),
            (["--mean", "1,2"], "has 2 values"),
            (["--std", "1,0,1,1"], "greater than zero"),
            (["--scale", "abc"], "not a number"),
            (["--n-last-blocks", "3"], "outside 1..2"),
            (["--num-heads", "3"], "does not divide embed_dim 64"),
            (["--img-size", "4"], "outside 8..65535"),
            (["--which", "student"], "--which applies to DINO training checkpoints"),
            (["--meta", "novalue"], "expected KEY=VALUE"),
        ]
        for extra, message in cases:
            with self.subTest(extra=extra):
                self.convert_fails(src, out, *extra, message=message)
        self.assertFalse(os.path.exists(out))
        rc, _, err = self.convert(src, out, "--dtype", "f64")
        self.assertEqual(rc, 2)
        self.assertIn("invalid choice", err)

    def test_pickled_code_is_not_run(self):
        marker = self.path("pwned")
        state = small_state(14)
        src = self.save({"state_dict": state, "args": Evil(marker), "extra": [Evil(marker)]}, "evil.pth")
        with open(src, "rb") as f:
            self.assertIn(b"system", f.read())  # the payload is really in the file
        _, tensors, _, _, _ = self.convert_ok(src)
        self.assertFalse(os.path.exists(marker))
        self.assert_same_tensors(tensors, state)
        # a plain pickle (not torch.save) works the same way
        plain = self.path("plain.pkl")
        with open(plain, "wb") as f:
            pickle.dump({"model": state, "cb": Evil(marker)}, f)
        self.convert_fails(plain, self.path("o.safetensors"), message="cannot read")
        self.assertFalse(os.path.exists(marker))
        # negative control: an unrestricted torch.load does run the payload
        torch.load(src)
        self.assertTrue(os.path.exists(marker))

    def test_command_line(self):
        self.assertTrue(os.access(CONVERTER, os.X_OK))
        with open(CONVERTER) as f:
            self.assertEqual(f.readline().strip(), "#!/usr/bin/python3")
        r = subprocess.run([CONVERTER, "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        for opt in ("--which", "--bands", "--n-last-blocks", "--avgpool", "--dtype", "--force"):
            self.assertIn(opt, r.stdout)
        garbage = self.path("garbage.bin")
        with open(garbage, "wb") as f:
            f.write(b"PK\x03\x04" + bytes(range(256)))  # a zip signature, then junk
        r = subprocess.run([CONVERTER, garbage, self.path("o.safetensors")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("convert_checkpoint: error: cannot read", r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        src = self.save(small_state(15), "cli.pth")
        dst = self.path("cli.safetensors")
        r = subprocess.run([CONVERTER, src, dst, "--n-last-blocks", "2"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("wrote:", r.stdout)
        self.assertEqual(safetensors_io.load_file(dst)[1]["n_last_blocks"], "2")


def small_resnet(seed, arch="resnet50", in_chans=4, width=8, layers=(1, 1, 1, 1), num_classes=0):
    """A small torchvision-layout ResNet state (BN statistics included)."""
    return rref.random_resnet_state(arch, in_chans=in_chans, width=width, layers=list(layers),
                                    num_classes=num_classes, seed=seed)


def positional(state):
    """The same ResNet as nn.Sequential(*list(resnet.children())[:-1]) numbers it (no fc)."""
    names = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    out = {}
    for k, v in state.items():
        head, _, rest = k.partition(".")
        if head in names:
            out[names[head] + "." + rest] = v
    return out


def prefixed(prefix, state):
    return {prefix + k: v for k, v in state.items()}


def mlp_head(prefix, dims=(2048, 64, 16), bn=True):
    """A projector / predictor MLP (Linear, BN1d, ReLU, Linear) as BYOL code bases name it."""
    out = {prefix + "0.weight": torch.randn(dims[1], dims[0]), prefix + "0.bias": torch.randn(dims[1]),
           prefix + "3.weight": torch.randn(dims[2], dims[1]), prefix + "3.bias": torch.randn(dims[2])}
    if bn:
        out.update({prefix + "1.weight": torch.ones(dims[1]), prefix + "1.bias": torch.zeros(dims[1]),
                    prefix + "1.running_mean": torch.zeros(dims[1]),
                    prefix + "1.running_var": torch.ones(dims[1]),
                    prefix + "1.num_batches_tracked": torch.tensor(7)})
    return out


class ConvertResNet(ConverterTestBase):
    """torchvision, BYOL and DINO ResNet checkpoints, checked through the engine."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cli = build_cli(cls.tmp)

    def run_cli(self, model_path, x, config=None, expect_fail=False):
        """Run the engine on x [B, C, H, W]; return (features, stdout + stderr)."""
        B, C, H, W = x.shape
        inp, outp = self.path("in.f32"), self.path("out.f32")
        np.ascontiguousarray(x.numpy(), dtype=np.float32).tofile(inp)
        args = [self.cli]
        if config is not None:
            cpath = self.path("config.json")
            with open(cpath, "w") as f:
                json.dump(config, f)
            args += ["--config", cpath]
        args += [model_path, inp, str(B), str(C), str(H), str(W), outp]
        r = subprocess.run(args, capture_output=True, text=True, env=self.env)
        if expect_fail:
            self.assertNotEqual(r.returncode, 0, r.stdout)
            return None, r.stderr
        self.assertEqual(r.returncode, 0, r.stderr)
        return np.fromfile(outp, dtype=np.float32).reshape(B, -1), r.stdout + r.stderr

    def engine_matches(self, path, state, x=None, eps=1e-5, config=None, label=""):
        """Run the converted file and the reference built from state; compare within the contract."""
        if x is None:
            x = torch.randn(2, state["conv1.weight"].shape[1], 64, 56)
        got, log = self.run_cli(path, x, config)
        model = rref.resnet_from_state_dict(state, eps=eps)
        with torch.no_grad():
            want = model.features(x).double().numpy()
        rel = np.abs(got - want).max(1) / np.abs(want).max(1)
        self.assertLessEqual(rel.max(), REL_MAX, f"{label}: max abs diff ratio {rel.max()}")
        return got, log

    @staticmethod
    def summary_params(out):
        return int(out.split(" params ")[1].split()[0])

    def assert_backbone(self, tensors, state):
        """The converted tensors are the backbone of state, exactly, without fc or BN counters."""
        want = {k: v for k, v in state.items()
                if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
        self.assert_same_tensors(tensors, want)

    # -- torchvision ------------------------------------------------------------------

    def test_torchvision_state_dict(self):
        state = small_resnet(1, "resnet18", in_chans=4, width=8, layers=(2, 2, 2, 2), num_classes=10)
        src = self.save(state, "resnet18.pth")
        dst, tensors, meta, out, _ = self.convert_ok(src, "--bands", "3,2,1,4")
        self.assert_backbone(tensors, state)
        self.assertEqual(meta["arch"], "resnet")
        self.assertEqual(meta["bands"], "[3,2,1,4]")
        self.assertIn("ResNet-18 (BasicBlock, layers [2, 2, 2, 2]), width 8, in_chans 4, out_dim 64", out)
        self.assertIn("2 classifier (fc) (fc.weight, fc.bias)", out)
        self.assertIn("num_batches_tracked", out)
        _, log = self.engine_matches(dst, state, label="torchvision ResNet-18 layout")
        self.assertIn(f"params={rref.param_count(state)} ", log)
        self.assertEqual(self.summary_params(out), rref.param_count(state))
        cfg = json.loads(log.split("config=", 1)[1].splitlines()[0])
        self.assertEqual((cfg["arch"], cfg["bands"], cfg["layers"]), ("resnet", [3, 2, 1, 4], [2, 2, 2, 2]))

        # --bn-eps travels in the metadata and the engine uses it
        dst, _, meta, _, _ = self.convert_ok(src, "--bn-eps", "1e-3", "--dtype", "f16")
        self.assertEqual(meta["bn_eps"], "0.001")
        rounded = {k: (v if k.endswith("num_batches_tracked") else v.half().float()) for k, v in state.items()}
        self.engine_matches(dst, rounded, eps=1e-3, label="bn_eps 1e-3, F16")

        # ViT-only options are refused for a ResNet, and the ResNet one for a ViT
        for extra, message in ((["--n-last-blocks", "2"], "--n-last-blocks applies to ViT models only"),
                               (["--avgpool"], "--avgpool applies to ViT models only"),
                               (["--img-size", "16"], "outside 32..65535"),
                               (["--bands", "1,2,3"], "lists 3 bands but the model has 4")):
            with self.subTest(extra=extra):
                self.convert_fails(src, self.path("o.safetensors"), *extra, message=message)
        self.convert_fails(self.save(small_state(30), "vit.pth"), self.path("o.safetensors"),
                           "--bn-eps", "1e-5", message="--bn-eps applies to ResNet models only")

    # -- BYOL ---------------------------------------------------------------------------

    def byol_states(self):
        online = small_resnet(2)
        target = small_resnet(3)
        return online, target

    def test_byol_layouts(self):
        online, target = self.byol_states()
        pos_on, pos_tg = positional(online), positional(target)
        layouts = {
            # lucidrains/byol-pytorch: the learner holds the online encoder twice
            "lucidrains learner": {
                **prefixed("net.", online), **prefixed("online_encoder.net.", online),
                **mlp_head("online_encoder.projector.net."), **mlp_head("online_predictor.net."),
                **prefixed("target_encoder.net.", target), **mlp_head("target_encoder.projector.net.")},
            # yaox12/BYOL-PyTorch: positional encoders under DDP's module., in 'model'
            "yaox12": {"model": {**prefixed("module.online_network.encoder.", pos_on),
                                 **mlp_head("module.online_network.projetion.l"),
                                 **prefixed("module.target_network.encoder.", pos_tg),
                                 **mlp_head("module.predictor.predictor.l")},
                       "optimizer": {"state": {}, "param_groups": []}, "epoch": 40},
            # sthalles/PyTorch-BYOL: one container per network
            "sthalles": {"online_network_state_dict": {**prefixed("encoder.", pos_on),
                                                       **mlp_head("projetion.net.")},
                         "target_network_state_dict": {**prefixed("encoder.", pos_tg),
                                                       **mlp_head("projetion.net.")},
                         "optimizer_state_dict": {"state": {}, "param_groups": []}},
            # solo-learn: Lightning, fc replaced by Identity
            "solo-learn": {"state_dict": {
                **prefixed("backbone.", {k: v for k, v in online.items() if not k.startswith("fc.")}),
                **prefixed("momentum_backbone.", {k: v for k, v in target.items() if not k.startswith("fc.")}),
                **mlp_head("projector."), **mlp_head("momentum_projector."), **mlp_head("predictor."),
                "classifier.weight": torch.randn(10, 2048), "classifier.bias": torch.randn(10)},
                "epoch": 99, "global_step": 1000},
            # TorchGeo BYOLTask: timm backbone inside BackboneWrapper
            "torchgeo": {"state_dict": {
                **prefixed("model.backbone.model.", online), **prefixed("model.target.model.", target),
                **mlp_head("model.backbone._projector.mlp."), **mlp_head("model.predictor.mlp.")},
                "hyper_parameters": {"model": "resnet50", "in_channels": 4}},
        }
        x = torch.randn(2, 4, 64, 48)
        for label, obj in layouts.items():
            with self.subTest(layout=label):
                src = self.save(obj, "byol.pth")
                dst, tensors, meta, out, err = self.convert_ok(src)
                self.assert_backbone(tensors, online)
                self.assertIn("online network", out)
                self.assertIn("dropped", out)
                self.assertEqual(meta["arch"], "resnet")
                self.assertNotIn("Traceback", err)
                self.engine_matches(dst, online, x, label=f"BYOL {label} online")
                if label == "lucidrains learner":
                    self.assertIn("identical copies ignored", out)
                if label in ("yaox12", "sthalles"):
                    self.assertIn("positional encoder keys mapped to torchvision names", out)
                # the target network only when asked for
                dst, tensors, _, out, _ = self.convert_ok(src, "--which", "target")
                self.assert_backbone(tensors, target)
                self.assertIn("target network", out)
                self.engine_matches(dst, target, x, label=f"BYOL {label} target")
                _, tensors, _, _, _ = self.convert_ok(src, "--which", "online")
                self.assert_backbone(tensors, online)

        # plain lucidrains advice: torch.save(resnet.state_dict()), fc included
        _, tensors, _, _, _ = self.convert_ok(self.save(online, "plain.pt"))
        self.assert_backbone(tensors, online)
        # --which target with no target network is an error, so is teacher on a BYOL file
        self.convert_fails(self.save(online, "plain.pt"), self.path("o.safetensors"), "--which", "target",
                           message="the checkpoint has no target network")
        self.convert_fails(self.save(layouts["sthalles"], "s.pth"), self.path("o.safetensors"),
                           "--which", "teacher", message="--which applies to DINO training checkpoints")

    # -- DINO ResNet-50 -----------------------------------------------------------------

    def test_dino_resnet50(self):
        teacher, student = small_resnet(4, num_classes=0), small_resnet(5, num_classes=0)
        head = mlp_head("module.head.mlp.", dims=(2048, 64, 16), bn=False)
        head["module.head.last_layer.weight_g"] = torch.ones(100, 1)
        head["module.head.last_layer.weight_v"] = torch.randn(100, 16)
        ckpt = {"student": {**prefixed("module.backbone.", student), **head},
                "teacher": {**prefixed("module.backbone.", teacher), **head},  # DDP: BN in the model
                "optimizer": {"state": {}, "param_groups": []}, "epoch": 3,
                "args": argparse.Namespace(arch="resnet50", out_dim=100),
                "dino_loss": {"center": torch.randn(1, 100)}}
        src = self.save(ckpt, "dino_rn50.pth")
        dst, tensors, _, out, _ = self.convert_ok(src)
        self.assert_backbone(tensors, teacher)
        self.assertIn("DINO training checkpoint, teacher, prefix 'module.backbone.' stripped", out)
        self.assertIn("module.head.last_layer.weight_g", out)
        self.engine_matches(dst, teacher, label="DINO RN50 teacher")
        _, tensors, _, _, _ = self.convert_ok(src, "--which", "student")
        self.assert_backbone(tensors, student)
        self.convert_fails(src, self.path("o.safetensors"), "--which", "online",
                           message="--which online applies to BYOL-style checkpoints")
        # the released backbone (hubconf dino_resnet50): torchvision keys, no fc
        dst, tensors, _, out, _ = self.convert_ok(self.save(teacher, "dino_resnet50_pretrain.pth"))
        self.assert_backbone(tensors, teacher)
        self.assertIn("dropped:  17 num_batches_tracked", out)  # 1 + 4 x 3 + 4 downsample BNs

    # -- what cannot be converted as it is ------------------------------------------------

    def test_variants_and_ambiguity(self):
        state = small_resnet(6, "resnet18", in_chans=3, width=8)
        # an SE block: kept, named, and refused by the engine
        se = dict(state)
        se["layer2.0.se.fc1.weight"] = torch.randn(2, 16, 1, 1)
        dst, tensors, _, _, err = self.convert_ok(self.save(se, "se.pth"))
        self.assertIn("ResNet variants the engine does not implement: layer2.*.se.fc1.weight", err)
        _, msg = self.run_cli(dst, torch.randn(1, 3, 64, 64), expect_fail=True)
        self.assertIn("\"layer2.0.se.fc1.weight\" belongs to a ResNet variant", msg)
        # a timm deep stem
        deep = {k: v for k, v in state.items() if not k.startswith(("conv1.", "bn1."))}
        deep.update({"conv1.0.weight": torch.randn(4, 3, 3, 3), "conv1.1.weight": torch.ones(4)})
        self.convert_fails(self.save(deep, "deep.pth"), self.path("o.safetensors"), message="deep stem")
        # a missing tensor is warned about, and the engine names it
        broken = {k: v for k, v in state.items() if k != "layer3.0.downsample.0.weight"}
        dst, _, _, _, err = self.convert_ok(self.save(broken, "broken.pth"))
        self.assertIn("the ResNet lacks 1 tensor the engine requires: layer3.*.downsample.*.weight", err)
        _, msg = self.run_cli(dst, torch.randn(1, 3, 64, 64), expect_fail=True)
        self.assertIn("layer3.0.downsample.0.weight", msg)
        # a ViT and a ResNet in one checkpoint: --arch picks
        vit = small_state(31)
        both = self.save({"vit": vit, "cnn": state}, "both.pth")
        self.convert_fails(both, self.path("o.safetensors"), message="holds 2 models")
        _, tensors, meta, _, _ = self.convert_ok(both, "--arch", "resnet")
        self.assert_backbone(tensors, state)
        self.assertEqual(meta["arch"], "resnet")
        _, tensors, meta, _, _ = self.convert_ok(both, "--arch", "vit")
        self.assert_same_tensors(tensors, vit)
        self.assertEqual(meta["arch"], "vit")
        self.convert_fails(self.save(vit, "v.pth"), self.path("o.safetensors"), "--arch", "resnet",
                           message="no ResNet weights found")
        # two different online ResNets (no target marker) stay ambiguous
        other = small_resnet(7, "resnet18", in_chans=3, width=8)
        two = self.save({"state_dict": {**prefixed("a.", state), **prefixed("b.", other)}}, "two.pth")
        self.convert_fails(two, self.path("o.safetensors"), message="holds 2 ResNets")
        _, tensors, _, _, _ = self.convert_ok(two, "--prefix", "b")
        self.assert_backbone(tensors, other)
        # safetensors input keeps its metadata, ViT-only keys are dropped for a ResNet
        st_in = self.path("in.safetensors")
        safetensors_io.save_file({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
                                 st_in, {"bands": "[1,2,3]", "n_last_blocks": "4", "arch": "vit"})
        dst, _, meta, out, _ = self.convert_ok(st_in)
        self.assertEqual((meta["arch"], meta["bands"]), ("resnet", "[1,2,3]"))
        self.assertNotIn("n_last_blocks", meta)
        self.assertIn("safetensors file", out)
        self.engine_matches(dst, state, torch.randn(1, 3, 40, 40), label="safetensors rewrite")


if __name__ == "__main__":
    unittest.main()
