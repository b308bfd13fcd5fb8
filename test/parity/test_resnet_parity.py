"""PyTorch parity of the C ResNet engine, through the engine API and inside PostgreSQL.

Builds test/parity/model_cli.c against the core (or uses $R4_MODEL_CLI),
writes torchvision-layout ResNets with random weights and non-trivial
BatchNorm statistics (rai4eo_tools.resnet_reference.random_resnet_state),
runs the engine and the PyTorch reference (tools/lib/rai4eo_tools/
resnet_reference.py) on the same input and checks the design's contract per
image: cosine similarity >= 0.99999 and max |c - ref| <= 1e-4 * max |ref|.
Negative controls (a wrong BatchNorm epsilon, the ResNet v1 stride
placement) must fail that contract.

The SQL case stores a small ResNet with rai4eo_load_model on the server
named by the PG* variables (in its own database, dropped afterwards) and
compares rai4eo_embed with the reference; without a reachable server it
fails (scripts/test.sh always provides one).

Run: /usr/bin/python3 -m unittest discover -s test/parity -p "test_resnet_parity.py" -v
Single-threaded on both sides (torch.set_num_threads(1), OPENBLAS_NUM_THREADS=1).
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "lib"))

from rai4eo_tools import resnet_reference as ref  # noqa: E402
from rai4eo_tools import safetensors_io  # noqa: E402
from rai4eo_tools.vit_reference import preprocess  # noqa: E402

# every core source, as `make unit` links them: the core's files depend on each other
CORE_SOURCES = sorted(p.name for p in (ROOT / "src" / "core").glob("*.c"))
COS_MIN = 0.99999
REL_MAX = 1e-4
FIGURES = []  # (label, min cosine, max abs diff / max |ref|) for the summary

PF_META = {"arch": "resnet", "bands": "[3,2,1,4]", "scale": "0.0001",
           "mean": "[0.05,0.07,0.09,0.25]", "std": "[0.03,0.035,0.05,0.1]"}
PF_NORM = dict(scale=1e-4, mean=[0.05, 0.07, 0.09, 0.25], std=[0.03, 0.035, 0.05, 0.1])


def build_cli(workdir: Path) -> str:
    """Compile model_cli with the core sources it needs."""
    prebuilt = os.environ.get("R4_MODEL_CLI")
    if prebuilt:
        return prebuilt
    exe = workdir / "model_cli"
    cmd = [os.environ.get("CC", "cc"), "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror",
           "-I", str(ROOT / "include")]
    cmd += [str(ROOT / "src" / "core" / s) for s in CORE_SOURCES]
    cmd += [str(ROOT / "test" / "parity" / "model_cli.c"), "-lopenblas", "-lz", "-lm", "-o", str(exe)]
    subprocess.run(cmd, check=True)
    return str(exe)


def raw_planes(B, C, H, W, seed):
    """Reflectance-like raw values around 500..3000 (scale 1e-4 makes them 0.05..0.3)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(B, C, 1, 1, generator=g) * 1500 + 500
    return (base + torch.randn(B, C, H, W, generator=g) * 400).round()


def contract(got, want):
    """(min cosine, max over images of max|diff| / max|ref|)."""
    want = np.asarray(want, dtype=np.float64).reshape(got.shape[0], -1)
    got = np.asarray(got, dtype=np.float64)
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    rel = np.abs(got - want).max(1) / np.abs(want).max(1)
    return float(cos.min()), float(rel.max())


class ResNetParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        cls.tmp = Path(tempfile.mkdtemp(prefix="r4_resnet_parity_"))
        cls.cli = build_cli(cls.tmp)
        cls.env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        cls.models = {}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers -----------------------------------------------------------

    def model(self, key, arch, in_chans, dtype="F32", metadata=None, **kw):
        """Write a random model once per key; return (path, state as stored, reference module)."""
        if key in self.models:
            return self.models[key]
        state = ref.random_resnet_state(arch, in_chans=in_chans, **kw)
        if dtype == "F16":
            state = {k: (v if k.endswith("num_batches_tracked") else v.half()) for k, v in state.items()}
        elif dtype == "BF16":
            state = {k: (v if k.endswith("num_batches_tracked") else v.bfloat16()) for k, v in state.items()}
        path = self.tmp / f"{key}.safetensors"
        safetensors_io.save_file(state, str(path), metadata or {})
        # the reference runs on exactly the (rounded) weights the engine reads
        module = ref.resnet_from_state_dict(state)
        self.models[key] = (path, state, module)
        return self.models[key]

    def run_cli(self, model_path, x, config=None, mask=None, preprocess_input=False,
                singles=False, interrupt=None, expect_fail=False):
        """Run model_cli on x [B, C, H, W]; return (output rows, stdout + stderr)."""
        B, C, H, W = x.shape
        inp = self.tmp / "input.f32"
        out = self.tmp / "output.f32"
        np.ascontiguousarray(x.numpy(), dtype=np.float32).tofile(inp)
        args = [self.cli]
        if config is not None:
            cfg = self.tmp / "config.json"
            cfg.write_text(json.dumps(config))
            args += ["--config", str(cfg)]
        if mask is not None:
            mpath = self.tmp / "mask.u8"
            np.ascontiguousarray(mask.numpy(), dtype=np.uint8).tofile(mpath)
            args += ["--mask", str(mpath)]
        if preprocess_input:
            args.append("--preprocess")
        if singles:
            args.append("--singles")
        if interrupt is not None:
            args += ["--interrupt-after", str(interrupt)]
        args += [str(model_path), str(inp), str(B), str(C), str(H), str(W), str(out)]
        r = subprocess.run(args, capture_output=True, text=True, env=self.env)
        if expect_fail:
            self.assertNotEqual(r.returncode, 0, r.stdout)
            return None, r.stderr
        self.assertEqual(r.returncode, 0, r.stderr)
        return np.fromfile(out, dtype=np.float32).reshape(B, -1), r.stdout + r.stderr

    def assert_parity(self, got, want, label):
        """Check the cosine and max-abs contract per image and record the figures."""
        self.assertTrue(np.all(np.isfinite(got)), label)
        self.assertEqual(got.shape, tuple(np.asarray(want).reshape(got.shape[0], -1).shape), label)
        cos, rel = contract(got, want)
        FIGURES.append((label, cos, rel))
        self.assertGreaterEqual(cos, COS_MIN, f"{label}: cosine {cos}")
        self.assertLessEqual(rel, REL_MAX, f"{label}: max abs diff ratio {rel}")

    def assert_fails_contract(self, got, other, label):
        """A negative control: a plausible wrong variant must fail the contract, clearly."""
        cos, rel = contract(got, other)
        FIGURES.append((f"negative control: {label}", cos, rel))
        self.assertGreater(rel, 10 * REL_MAX, f"{label}: the test cannot tell the variants apart")

    def rn50_4band(self):
        # ResNet-50, 4 bands (PF BGRN), with the band and normalisation metadata a trainer writes
        return self.model("rn50_4band", "resnet50", 4, metadata=PF_META, seed=11)

    # -- tests ----------------------------------------------------------------

    def test_resnet50_4band_native_200(self):
        path, state, model = self.rn50_4band()
        x = raw_planes(2, 4, 200, 200, seed=1)
        mask = torch.zeros(2, 4, 200, 200, dtype=torch.uint8)
        mask[0, :, :17, :] = 1          # a nodata strip in every band
        mask[1, 2, 50:90, 120:160] = 1  # a hole in one band
        got, log = self.run_cli(path, x, mask=mask, preprocess_input=True)
        self.assertIn("out_dim=2048", log)
        fc = sum(v.numel() for k, v in state.items() if k.startswith("fc."))
        self.assertIn(f"params={ref.param_count(state) + fc} ", log)
        self.assertIn("params=23511168 ", log)  # the fact sheet's 23,508,032 + 64 x 7 x 7
        cfg = json.loads(log.split("config=", 1)[1].splitlines()[0])
        self.assertEqual((cfg["arch"], cfg["block"], cfg["layers"], cfg["width"], cfg["in_chans"]),
                         ("resnet", "bottleneck", [3, 4, 6, 3], 64, 4))
        self.assertEqual(cfg["bands"], [3, 2, 1, 4])
        self.assertNotIn("n_last_blocks", cfg)
        xin = preprocess(x, mask, **PF_NORM)
        with torch.no_grad():
            want = model.features(xin)
        self.assertEqual(tuple(want.shape), (2, 2048))
        self.assert_parity(got, want, "ResNet-50 4-band 200x200 native (preprocess+mask)")

        # negative controls: the engine with a wrong BatchNorm epsilon (Keras' 1e-3), and
        # the reference with ResNet v1's stride on the first 1x1 conv, must both fail
        wrong_eps, _ = self.run_cli(path, x, config={"bn_eps": 1e-3}, mask=mask, preprocess_input=True)
        self.assert_fails_contract(wrong_eps, want, "engine with bn_eps 1e-3")
        v1 = ref.resnet_from_state_dict(state, stride_on_1x1=True)
        with torch.no_grad():
            other = v1.features(xin)
        self.assert_fails_contract(got, other, "ResNet v1 stride placement")

    def test_resnet50_resize_224(self):
        path, _, model = self.rn50_4band()
        x = raw_planes(2, 4, 200, 200, seed=2)
        mask = torch.zeros(2, 4, 200, 200, dtype=torch.uint8)
        mask[1, :, 150:, 30:70] = 1
        got, log = self.run_cli(path, x, config={"input": "resize"}, mask=mask, preprocess_input=True)
        self.assertIn('"input":"resize"', log)
        self.assertIn('"img_size":224', log)
        xin = preprocess(x, mask, **PF_NORM, resize_to=224)
        with torch.no_grad():
            want = model.features(xin)
        self.assert_parity(got, want, "ResNet-50 4-band 200->224 resize")

    def test_resnet18_12band_60(self):
        # a Sentinel-2 patch: 60x60x12, with fc.* in the file like a torchvision checkpoint: the
        # features stay layer4's pooled output, fc becomes the model's classification head
        path, state, model = self.model("rn18_12band", "resnet18", 12, num_classes=10, seed=12)
        self.assertIn("fc.weight", state)
        x = torch.randn(2, 12, 60, 60)
        got, log = self.run_cli(path, x)
        self.assertIn("out_dim=512", log)
        fc = sum(v.numel() for k, v in state.items() if k.startswith("fc."))
        self.assertIn(f"params={ref.param_count(state) + fc} ", log)
        with torch.no_grad():
            want = model.features(x)
        self.assert_parity(got, want, "ResNet-18 12-band 60x60 native")
        wrong_eps, _ = self.run_cli(path, x, config={"bn_eps": 1e-3})
        self.assert_fails_contract(wrong_eps, want, "ResNet-18 with bn_eps 1e-3")

    def test_half_precision_weights(self):
        path, _, model = self.model("rn50_f16", "resnet50", 4, dtype="F16", seed=13)
        x = torch.randn(1, 4, 200, 200)
        got, _ = self.run_cli(path, x)
        with torch.no_grad():
            want = model.features(x)
        self.assert_parity(got, want, "ResNet-50 F16 weights 200x200")
        path, _, model = self.model("rn18_bf16", "resnet18", 4, dtype="BF16", seed=14)
        x = torch.randn(2, 4, 96, 80)
        got, _ = self.run_cli(path, x)
        with torch.no_grad():
            want = model.features(x)
        self.assert_parity(got, want, "ResNet-18 BF16 weights 96x80")

    def test_batch_equals_singles(self):
        path, _, model = self.model("rn18_4band", "resnet18", 4, seed=15)
        x = torch.randn(3, 4, 75, 64)
        batch, _ = self.run_cli(path, x)
        singles, _ = self.run_cli(path, x, singles=True)
        self.assertLessEqual(np.abs(batch - singles).max(), 1e-6 * np.abs(singles).max())
        with torch.no_grad():
            want = model.features(x)
        self.assert_parity(batch, want, "ResNet-18 batch B=3 75x64")
        self.assert_parity(singles, want, "ResNet-18 singles 75x64")

    def test_odd_sizes(self):
        # the smallest input (1x1 after layer4), odd and non-square sizes
        path, _, model = self.model("rn18_4band", "resnet18", 4, seed=15)
        for (H, W) in [(32, 32), (33, 47), (121, 65)]:
            x = torch.randn(1, 4, H, W)
            got, _ = self.run_cli(path, x)
            with torch.no_grad():
                want = model.features(x)
            self.assert_parity(got, want, f"ResNet-18 {H}x{W}")

    def test_interrupt_leaves_model_usable(self):
        path, _, model = self.model("rn18_4band", "resnet18", 4, seed=15)
        x = torch.randn(1, 4, 64, 72)
        got, log = self.run_cli(path, x, interrupt=3)  # checks: stem, layer1.0, layer1.1, layer2.0
        self.assertIn("interrupted before block layer2.0", log)
        with torch.no_grad():
            want = model.features(x)
        self.assert_parity(got, want, "forward after an interrupted one")

    def test_errors(self):
        path, _, _ = self.model("rn18_4band", "resnet18", 4, seed=15)
        _, err = self.run_cli(path, torch.randn(1, 4, 31, 200), expect_fail=True)
        self.assertIn("smaller than the 32 x 32 a ResNet needs", err)
        _, err = self.run_cli(path, torch.randn(1, 4, 32, 32), config={"n_last_blocks": 1},
                              expect_fail=True)
        self.assertIn('"n_last_blocks" in the configuration applies to ViT models only', err)
        _, err = self.run_cli(path, torch.randn(1, 4, 32, 32), config={"arch": "resnet50"},
                              expect_fail=True)
        self.assertIn('"arch" in the configuration is "resnet50"', err)


def tearDownModule():
    if FIGURES:
        print("\nResNet parity figures (label: 1 - min cosine, max|diff|/max|ref|):", file=sys.stderr)
        for label, cos, rel in FIGURES:
            print(f"  {label}: {1 - cos:.1e}, {rel:.2e}", file=sys.stderr)


def raster_wkb(px: np.ndarray, pixel_size: float, nodata: int = 0) -> bytes:
    """A PostGIS WKB raster of uint16 bands px[C][H][W] with a nodata value (UTM 29N)."""
    C, H, W = px.shape
    out = struct.pack("<BHHddddddiHH", 1, 0, C, pixel_size, -pixel_size,
                      500000.0, 4400000.0, 0.0, 0.0, 32629, W, H)
    for c in range(C):
        out += struct.pack("<BH", 6 | 0x40, nodata) + px[c].astype("<u2").tobytes()
    return out


class ResNetSql(unittest.TestCase):
    """rai4eo_load_model + rai4eo_embed of a ResNet against the reference."""

    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        try:
            import psycopg
        except ImportError:
            raise RuntimeError("python3-psycopg is not installed (scripts/lib.sh installs it)")
        cls.psycopg = psycopg
        try:
            admin = psycopg.connect("", autocommit=True, connect_timeout=5)
        except psycopg.Error as e:
            raise RuntimeError(f"no PostgreSQL server reachable through the PG* variables: {e}")
        cls.db = "resnet_parity_%d" % os.getpid()
        admin.execute('DROP DATABASE IF EXISTS "%s"' % cls.db)
        admin.execute('CREATE DATABASE "%s"' % cls.db)
        admin.close()
        cls.conn = psycopg.connect("dbname=%s" % cls.db, autocommit=True)
        cls.conn.execute("CREATE EXTENSION rai4eo CASCADE")

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        with cls.psycopg.connect("", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)

    def test_load_and_embed(self):
        psycopg = self.psycopg
        # a small torchvision-layout ResNet-18 (width 16) with 4 bands and PF metadata
        state = ref.random_resnet_state("resnet18", in_chans=4, width=16, num_classes=5, seed=21)
        blob = safetensors_io.serialize(state, PF_META)
        self.conn.execute("SELECT rai4eo_load_model(%s, %s, %s::jsonb, replace => true)",
                          ("rn18_pf", blob, psycopg.types.json.Jsonb({"change_threshold": 0.1})))
        arch, params, bands, dims = self.conn.execute(
            "SELECT arch, parameters, input_bands, output_dims FROM rai4eo.models WHERE name = 'rn18_pf'"
        ).fetchone()
        fc = sum(v.numel() for k, v in state.items() if k.startswith("fc."))    # fc is the classification head
        self.assertEqual((arch, params, bands, dims), ("resnet", ref.param_count(state) + fc, [3, 2, 1, 4], 128))
        model = ref.resnet_from_state_dict(state)

        rng = np.random.default_rng(5)
        rasters = []
        for i, (H, W) in enumerate([(200, 200), (60, 60), (47, 90)]):
            base = rng.uniform(500, 2500, size=(4, 1, 1))
            px = np.clip(np.round(base + rng.normal(0, 400, size=(4, H, W))), 1, 10000).astype(np.uint16)
            px[:, :7 * i, :] = 0  # nodata rows
            rasters.append(px)
        wkbs = [raster_wkb(px, 3.0) for px in rasters]

        def reference(px):
            sel = torch.from_numpy(px[[2, 1, 0, 3]].astype(np.float32))[None]
            mask = torch.from_numpy(px[[2, 1, 0, 3]] == 0)[None]
            with torch.no_grad():
                return model.features(preprocess(sel, mask, **PF_NORM))[0].double().numpy()

        want = np.stack([reference(px) for px in rasters])
        got = np.array([self.conn.execute("SELECT rai4eo_embed(ST_RastFromWKB(%s), 'rn18_pf')::real[]",
                                          (w,)).fetchone()[0] for w in wkbs], dtype=np.float64)
        cos, rel = contract(got, want)
        FIGURES.append(("SQL rai4eo_embed ResNet-18/16 4-band (200, 60, 47x90)", cos, rel))
        self.assertGreaterEqual(cos, COS_MIN)
        self.assertLessEqual(rel, REL_MAX)

        rows = self.conn.execute(
            "SELECT e::real[] FROM unnest(rai4eo_embed("
            "  (SELECT array_agg(ST_RastFromWKB(w) ORDER BY i) FROM unnest(%s::bytea[]) WITH ORDINALITY AS t(w, i)),"
            "  'rn18_pf')) WITH ORDINALITY AS u(e, j) ORDER BY j", (wkbs,)).fetchall()
        batched = np.array([r[0] for r in rows], dtype=np.float64)
        cos, rel = contract(batched, want)
        FIGURES.append(("SQL batched rai4eo_embed ResNet-18/16", cos, rel))
        self.assertGreaterEqual(cos, COS_MIN)
        self.assertLessEqual(rel, REL_MAX)

        # below the minimum input size the database says so
        small = raster_wkb(rasters[1][:, :20, :20], 3.0)
        with self.assertRaises(psycopg.Error) as cm:
            self.conn.execute("SELECT rai4eo_embed(ST_RastFromWKB(%s), 'rn18_pf')", (small,))
        self.assertIn("smaller than", str(cm.exception))
        # ViT-only keys are refused at load time
        with self.assertRaises(psycopg.Error) as cm:
            self.conn.execute("SELECT rai4eo_load_model('rn18_bad', %s, '{\"avgpool\": true}')", (blob,))
        self.assertIn("applies to ViT models only", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
