"""PyTorch parity of the C ViT engine and input preprocessing.

Builds test/parity/model_cli.c against the core (or uses $R4_MODEL_CLI), writes
models with random weights (non-trivial LayerNorm gains and biases, see
rai4eo_tools.vit_reference.random_vit_state), runs the engine and the
PyTorch reference (tools/lib/rai4eo_tools/vit_reference.py) on the same
input and checks the design's contract per image: cosine similarity
>= 0.99999 and max |c - ref| <= 1e-4 * max |ref|.

Run: /usr/bin/python3 -m unittest discover -s test/parity -p "test_vit_parity.py"
(or python3 test/parity/test_vit_parity.py; "-m unittest test/parity/..." clashes with
the standard library's "test" package).
Single-threaded on both sides (torch.set_num_threads(1), OPENBLAS_NUM_THREADS=1).
"""

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "lib"))

from rai4eo_tools import safetensors_io  # noqa: E402
from rai4eo_tools import vit_reference as ref  # noqa: E402

# every core source, as `make unit` links them: the core's files depend on each other
CORE_SOURCES = sorted(p.name for p in (ROOT / "src" / "core").glob("*.c"))
COS_MIN = 0.99999
REL_MAX = 1e-4
FIGURES = []  # (label, min cosine, max abs diff / max |ref|) for the summary


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


def features_with_interp(model, x, interp, n_last_blocks=1, avgpool=False):
    """The reference features with interpolate_pos_encoding swapped for a wrong variant."""
    saved = model.interpolate_pos_encoding
    model.interpolate_pos_encoding = lambda tokens, w, h: interp(model, tokens, w, h)
    try:
        with torch.no_grad():
            return model.features(x, n_last_blocks, avgpool)
    finally:
        model.interpolate_pos_encoding = saved


def interp_size_variant(model, tokens, w, h):
    """Resample positions with size= (timm/DINOv2 style), not DINO v1's +0.1 scale factor."""
    N = model.pos_embed.shape[1] - 1
    side = int(math.sqrt(N))
    P = model.patch_embed.patch_size
    gh, gw = w // P, h // P
    if gh * gw == N and w == h:
        return model.pos_embed
    D = tokens.shape[-1]
    grid = model.pos_embed[:, 1:].reshape(1, side, side, D).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
    return torch.cat((model.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, D)), dim=1)


def interp_grid_only_variant(model, tokens, w, h):
    """Skip the interpolation whenever the grid matches, ignoring DINO's w == h condition."""
    if tokens.shape[1] == model.pos_embed.shape[1]:
        return model.pos_embed
    return type(model).interpolate_pos_encoding(model, tokens, w, h)


class ViTParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        cls.tmp = Path(tempfile.mkdtemp(prefix="r4_vit_parity_"))
        cls.cli = build_cli(cls.tmp)
        cls.env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        cls.models = {}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if FIGURES:
            print("\nparity figures (label: 1 - min cosine, max|diff|/max|ref|):", file=sys.stderr)
            for label, cos, rel in FIGURES:
                print(f"  {label}: {1 - cos:.1e}, {rel:.2e}", file=sys.stderr)

    # -- helpers -----------------------------------------------------------

    def model(self, key, dtype="F32", metadata=None, **shape):
        """Write a random model once per key; return (path, reference module)."""
        if key in self.models:
            return self.models[key]
        state = ref.random_vit_state(**shape)
        if dtype == "F16":
            state = {k: v.half() for k, v in state.items()}
        elif dtype == "BF16":
            state = {k: v.bfloat16() for k, v in state.items()}
        path = self.tmp / f"{key}.safetensors"
        safetensors_io.save_file(state, str(path), metadata or {})
        heads = shape.get("embed_dim", 384) // 64
        if metadata and "num_heads" in metadata:
            heads = int(metadata["num_heads"])
        module = ref.vit_from_state_dict(state, num_heads=heads)
        self.models[key] = (path, module)
        return self.models[key]

    def run_cli(self, model_path, x, config=None, mask=None, preprocess=False,
                preprocess_only=False, singles=False, interrupt=None, expect_fail=False,
                no_simd=False):
        """Run model_cli on x [B, C, H, W]; return (output rows, stdout or stderr)."""
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
        if preprocess:
            args.append("--preprocess")
        if preprocess_only:
            args.append("--preprocess-only")
        if singles:
            args.append("--singles")
        if interrupt is not None:
            args += ["--interrupt-after", str(interrupt)]
        if no_simd:
            args.append("--no-simd")
        args += [str(model_path), str(inp), str(B), str(C), str(H), str(W), str(out)]
        r = subprocess.run(args, capture_output=True, text=True, env=self.env)
        if expect_fail:
            self.assertNotEqual(r.returncode, 0, r.stdout)
            return None, r.stderr
        self.assertEqual(r.returncode, 0, r.stderr)
        return np.fromfile(out, dtype=np.float32).reshape(B, -1), r.stdout + r.stderr

    def assert_parity(self, got, want, label):
        """Check cosine and max-abs contract per image and record the figures."""
        want = np.asarray(want, dtype=np.float64).reshape(got.shape[0], -1)
        got = np.asarray(got, dtype=np.float64)
        self.assertEqual(got.shape, want.shape, label)
        self.assertTrue(np.all(np.isfinite(got)), label)
        cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
        rel = np.abs(got - want).max(1) / np.abs(want).max(1)
        FIGURES.append((label, float(cos.min()), float(rel.max())))
        self.assertGreaterEqual(cos.min(), COS_MIN, f"{label}: cosine {cos.min()}")
        self.assertLessEqual(rel.max(), REL_MAX, f"{label}: max abs diff ratio {rel.max()}")
        return rel.max()

    def assert_differs(self, got, other, label):
        """A negative control: a plausible wrong variant must fail the contract."""
        other = np.asarray(other, dtype=np.float64).reshape(got.shape[0], -1)
        rel = np.abs(got - other).max(1) / np.abs(other).max(1)
        self.assertGreater(rel.max(), 10 * REL_MAX, f"{label}: the test cannot tell the variants apart")

    def vits16(self):
        # ViT-S/16, 4 bands (PF BGRN), with the band and normalisation metadata a trainer writes
        meta = {"arch": "vit", "bands": "[3,2,1,4]", "scale": "0.0001",
                "mean": "[0.05,0.07,0.09,0.25]", "std": "[0.03,0.035,0.05,0.1]"}
        return self.model("vits16_4band", metadata=meta, embed_dim=384, depth=12,
                          patch_size=16, in_chans=4, img_size=224, seed=11)

    @staticmethod
    def raw_planes(B, C, H, W, seed):
        g = torch.Generator().manual_seed(seed)
        # reflectance-like values around 500..3000 (scale 1e-4 makes them 0.05..0.3)
        base = torch.rand(B, C, 1, 1, generator=g) * 1500 + 500
        return (base + torch.randn(B, C, H, W, generator=g) * 400).round()

    # -- tests ----------------------------------------------------------------

    def test_vits16_4band_native_200_n4(self):
        path, model = self.vits16()
        x = self.raw_planes(2, 4, 200, 200, seed=1)
        mask = torch.zeros(2, 4, 200, 200, dtype=torch.uint8)
        mask[0, :, :17, :] = 1          # a nodata strip in every band
        mask[1, 2, 50:90, 120:160] = 1  # a hole in one band
        got, log = self.run_cli(path, x, config={"n_last_blocks": 4}, mask=mask, preprocess=True)
        self.assertIn('"bands":[3,2,1,4]', log)
        self.assertIn('"n_last_blocks":4', log)
        self.assertIn("out_dim=1536", log)
        self.assertIn("params=21763968", log)  # the fact sheet's 4-band ViT-S/16 count
        xin = ref.preprocess(x, mask, 1e-4, [0.05, 0.07, 0.09, 0.25], [0.03, 0.035, 0.05, 0.1])
        with torch.no_grad():
            want = model.features(xin, 4, False)
        self.assertEqual(tuple(want.shape), (2, 1536))
        self.assert_parity(got, want, "ViT-S/16 4-band 200x200 native n=4 (preprocess+mask)")
        # 200 px is a 12x12 grid: the position embedding is interpolated, and
        # resampling with size= instead of DINO's +0.1 scale factor must not pass
        other = features_with_interp(model, xin, interp_size_variant, 4)
        self.assert_differs(got, other, "size= interpolation")

    def test_vits16_resize_224(self):
        path, model = self.vits16()
        x = self.raw_planes(2, 4, 200, 200, seed=2)
        mask = torch.zeros(2, 4, 200, 200, dtype=torch.uint8)
        mask[1, :, 150:, 30:70] = 1
        config = {"input": "resize"}
        got, log = self.run_cli(path, x, config=config, mask=mask, preprocess=True)
        self.assertIn('"input":"resize"', log)
        xin = ref.preprocess(x, mask, 1e-4, [0.05, 0.07, 0.09, 0.25],
                             [0.03, 0.035, 0.05, 0.1], resize_to=224)
        with torch.no_grad():
            want = model.features(xin)
        self.assert_parity(got, want, "ViT-S/16 4-band 200->224 resize")

    def test_preprocess_resize_matches_interpolate(self):
        path, _ = self.vits16()
        mean, std = [0.05, 0.07, 0.09, 0.25], [0.03, 0.035, 0.05, 0.1]
        for (H, W) in [(200, 200), (300, 260), (60, 60), (224, 224)]:
            x = self.raw_planes(1, 4, H, W, seed=H + W)
            mask = (torch.rand(1, 4, H, W, generator=torch.Generator().manual_seed(5)) < 0.05).to(torch.uint8)
            got, _ = self.run_cli(path, x, config={"input": "resize"}, mask=mask,
                                  preprocess_only=True)
            want = ref.preprocess(x, mask, 1e-4, mean, std, resize_to=224).numpy()
            diff = np.abs(got.reshape(want.shape) - want).max()
            self.assertLessEqual(diff, 1e-6 * np.abs(want).max(), f"resize {H}x{W}: {diff}")
            FIGURES.append((f"preprocess resize {H}x{W}->224 (max diff {diff:.2e})", 1.0,
                            float(diff / np.abs(want).max())))
        # native mode keeps the size and only normalises
        x = self.raw_planes(1, 4, 37, 53, seed=9)
        x[0, 1, 3, 4] = float("nan")
        got, _ = self.run_cli(path, x, preprocess_only=True)
        want = ref.preprocess(x, None, 1e-4, mean, std).numpy()
        self.assertEqual(got.size, want.size)
        self.assertEqual(got.reshape(want.shape)[0, 1, 3, 4], 0.0)
        self.assertLessEqual(np.abs(got.reshape(want.shape) - want).max(), 1e-6 * np.abs(want).max())

    def test_vits8_12band_60(self):
        # ViT-S/8 on a Sentinel-2 patch: 60x60x12, trained at 224 (28x28 grid) -> 7x7 grid
        path, model = self.model("vits8_12band", embed_dim=384, depth=12, patch_size=8,
                                 in_chans=12, img_size=224, seed=12)
        x = torch.randn(2, 12, 60, 60)
        got, log = self.run_cli(path, x, config={"avgpool": True})
        with torch.no_grad():
            want = model.features(x, 1, True)
        self.assert_parity(got, want, "ViT-S/8 12-band 60x60 native avgpool")
        other = features_with_interp(model, x, interp_size_variant, 1, True)
        self.assert_differs(got, other, "size= interpolation (S/8)")

    def test_vitb16_shapes(self):
        # ViT-B/16 width (768, 12 heads) with 2 blocks to keep the suite short
        path, model = self.model("vitb16_d2", embed_dim=768, depth=2, patch_size=16,
                                 in_chans=3, img_size=224, seed=13)
        for (H, W, label) in [(224, 224, "training grid, square: no interpolation"),
                              (224, 230, "training grid, H != W: interpolated"),
                              (240, 208, "15x13 grid"),
                              (16, 40, "1x2 grid")]:
            x = torch.randn(1, 3, H, W)
            got, _ = self.run_cli(path, x, config={"n_last_blocks": 2})
            with torch.no_grad():
                want = model.features(x, 2, False)
            self.assert_parity(got, want, f"ViT-B/16 d2 {H}x{W} ({label})")
            if (H, W) == (224, 230):
                other = features_with_interp(model, x, interp_grid_only_variant, 2)
                self.assert_differs(got, other, "early return without the w == h test")

    def test_half_precision_weights(self):
        for dtype in ("F16", "BF16"):
            path, model = self.model(f"vits16_{dtype}", dtype=dtype, embed_dim=384, depth=4,
                                     patch_size=16, in_chans=4, img_size=224, seed=14)
            x = torch.randn(2, 4, 200, 180)
            got, _ = self.run_cli(path, x, config={"n_last_blocks": 2})
            with torch.no_grad():
                want = model.features(x, 2, False)
            self.assert_parity(got, want, f"ViT-S/16 d4 {dtype} weights 200x180")

    def test_avgpool_layouts(self):
        path, model = self.model("vits16_d4", embed_dim=384, depth=4, patch_size=16,
                                 in_chans=4, img_size=224, seed=15)
        x = torch.randn(2, 4, 200, 200)
        got1, log = self.run_cli(path, x, config={"avgpool": True})
        self.assertIn("out_dim=768", log)
        with torch.no_grad():
            want1 = model.features(x, 1, True)
            inter = model.get_intermediate_layers(x, 1)[-1]
        self.assert_parity(got1, want1, "avgpool n=1 (interleaved)")
        # the interleaving is real: even entries are the CLS token, odd ones the patch mean
        self.assert_parity(got1[:, 0::2], inter[:, 0], "avgpool n=1 even entries = CLS")
        self.assert_parity(got1[:, 1::2], inter[:, 1:].mean(1), "avgpool n=1 odd entries = mean")
        got3, log = self.run_cli(path, x, config={"avgpool": True, "n_last_blocks": 3})
        self.assertIn("out_dim=1536", log)
        with torch.no_grad():
            want3 = model.features(x, 3, True)
        self.assert_parity(got3, want3, "avgpool n=3 ([cls x3, avg])")

    def test_token_stats_readout(self):
        path, model = self.model("vits16_d4", embed_dim=384, depth=4, patch_size=16,
                                 in_chans=4, img_size=224, seed=15)
        x = torch.randn(2, 4, 200, 176)
        got, log = self.run_cli(path, x, config={"readout": "token_stats"})
        self.assertIn("out_dim=768", log)
        with torch.no_grad():
            want = model.features(x, readout="token_stats")
            blocks = model.prepare_tokens(x)
            for blk in model.blocks:
                blocks = blk(blocks)
            normed = model.norm(blocks)[:, 1:].mean(1).numpy()
        self.assert_parity(got, want, "token_stats 200x176")
        # spelled out: the first half is the mean, the second the spread, both before the norm
        self.assert_parity(got[:, :384], blocks[:, 1:].mean(1), "token_stats first half = mean")
        self.assert_parity(got[:, 384:], blocks[:, 1:].std(1, unbiased=False), "token_stats second half = std")
        self.assertGreater(float(np.abs(got[:, :384] - normed).max()), 0.1, "the mean is taken before the norm")

    def test_token_stats_grid(self):
        path, model = self.model("vits16_d4", embed_dim=384, depth=4, patch_size=16,
                                 in_chans=4, img_size=224, seed=16)
        x = torch.randn(2, 4, 200, 176)          # a 12 x 11 token grid: uneven regions of 3
        got, log = self.run_cli(path, x, config={"readout": "token_stats", "readout_grid": 3})
        self.assertIn("out_dim=6912", log)
        with torch.no_grad():
            want = model.features(x, readout="token_stats", readout_grid=3)
            t = model.prepare_tokens(x)
            for blk in model.blocks:
                t = blk(t)
            grid = t[:, 1:].reshape(2, 12, 11, 384)
        self.assert_parity(got, want, "token_stats grid 3, 200x176")
        # spelled out: region (1, 2) is rows 4..7, columns 7..10, its mean then its std
        r = grid[:, 4:8, 7:11].reshape(2, -1, 384)
        k = (1 * 3 + 2) * 768
        self.assert_parity(got[:, k:k + 384], r.mean(1), "region (1, 2) mean")
        self.assert_parity(got[:, k + 384:k + 768], r.std(1, unbiased=False), "region (1, 2) std")
        # a grid of 1 is the plain readout
        got1, _ = self.run_cli(path, x, config={"readout": "token_stats", "readout_grid": 1})
        with torch.no_grad():
            self.assert_parity(got1, model.features(x, readout="token_stats"), "grid 1 = token_stats")
        # a token grid with fewer rows than regions is refused before any block runs
        _, err = self.run_cli(path, torch.randn(1, 4, 48, 176), expect_fail=True,
                              config={"readout": "token_stats", "readout_grid": 4})
        self.assertIn("a 11 x 3 token grid is smaller than readout_grid 4", err)

    def test_batch_equals_singles(self):
        path, model = self.model("vits16_d4", embed_dim=384, depth=4, patch_size=16,
                                 in_chans=4, img_size=224, seed=15)
        x = torch.randn(3, 4, 200, 200)
        batch, _ = self.run_cli(path, x, config={"n_last_blocks": 2})
        singles, _ = self.run_cli(path, x, config={"n_last_blocks": 2}, singles=True)
        self.assertLessEqual(np.abs(batch - singles).max(), 1e-6 * np.abs(singles).max())
        with torch.no_grad():
            want = model.features(x, 2, False)
        self.assert_parity(batch, want, "batch B=3")

    def test_baseline_kernels(self):
        # the non-AVX2 build of GELU and softmax, which other CPUs run
        path, model = self.model("vits16_d4", embed_dim=384, depth=4, patch_size=16,
                                 in_chans=4, img_size=224, seed=15)
        x = torch.randn(2, 4, 200, 200)
        got, _ = self.run_cli(path, x, config={"n_last_blocks": 2}, no_simd=True)
        with torch.no_grad():
            want = model.features(x, 2, False)
        self.assert_parity(got, want, "baseline GELU/softmax kernels")

    def test_interrupt_leaves_model_usable(self):
        path, model = self.model("vits16_d4", embed_dim=384, depth=4, patch_size=16,
                                 in_chans=4, img_size=224, seed=15)
        x = torch.randn(1, 4, 120, 136)
        got, log = self.run_cli(path, x, interrupt=2)
        self.assertIn("interrupted before block 2", log)
        with torch.no_grad():
            want = model.features(x)
        self.assert_parity(got, want, "forward after an interrupted one")

    def test_safetensors_writer_layout(self):
        # byte-exact against the reference writer's own test vectors (safetensors tensor.rs tests)
        data = safetensors_io.serialize({"attn.0": np.arange(6, dtype=np.float32).reshape(1, 2, 3)})
        want = (b"@\x00\x00\x00\x00\x00\x00\x00"
                b'{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}'
                + np.arange(6, dtype="<f4").tobytes())
        self.assertEqual(data, want)
        self.assertEqual(safetensors_io.serialize({}, {"framework": "pt"}),
                         b"(\x00\x00\x00\x00\x00\x00\x00" b'{"__metadata__":{"framework":"pt"}}     ')
        # dtype-descending order, 8-byte aligned data, round trip incl. BF16 and scalars
        tensors = {"w": torch.randn(3, 5).bfloat16(), "h": torch.randn(7).half(),
                   "n": torch.tensor(3), "f": torch.randn(2, 2)}
        data = safetensors_io.serialize(tensors, {"bands": "[1,2]"})
        n = int.from_bytes(data[:8], "little")
        self.assertEqual(n % 8, 0)
        header = json.loads(data[8:8 + n])
        self.assertEqual(list(header), ["__metadata__", "n", "f", "w", "h"])
        back, meta = safetensors_io.deserialize(data, "torch")
        self.assertEqual(meta, {"bands": "[1,2]"})
        for k, v in tensors.items():
            self.assertTrue(torch.equal(back[k], v), k)

    def test_errors(self):
        path, _ = self.model("vits16_d4", embed_dim=384, depth=4, patch_size=16,
                             in_chans=4, img_size=224, seed=15)
        _, err = self.run_cli(path, torch.randn(1, 4, 15, 200), expect_fail=True)
        self.assertIn("smaller than the 16 x 16 patch", err)
        _, err = self.run_cli(path, torch.randn(1, 4, 32, 32), config={"n_last_block": 2},
                              expect_fail=True)
        self.assertIn('unknown configuration key "n_last_block"', err)
        _, err = self.run_cli(path, torch.randn(1, 4, 32, 32), config={"n_last_blocks": 5},
                              expect_fail=True)
        self.assertIn("outside 1..4", err)


if __name__ == "__main__":
    unittest.main()
