"""PyTorch parity of rai4eo_embed inside PostgreSQL: the issue's contract end to end.

For each case a model with random weights (non-trivial LayerNorm gains and
biases, rai4eo_tools.vit_reference.random_vit_state) is stored with
rai4eo_load_model, rasters are built as PostGIS rasters (16BUI with nodata,
through ST_RastFromWKB), and rai4eo_embed's output is compared per raster with
the PyTorch reference run on the same pixels, preprocessed the same way:
cosine similarity >= 0.99999 and max |got - ref| <= 1e-4 * max |ref|.

Needs a server named by PG* variables with the extension installed; creates
and drops its own database.  Run:
  /usr/bin/python3 -m unittest discover -s test/parity -p test_sql_parity.py -v
"""

import os
import struct
import sys
import unittest
from pathlib import Path

import numpy as np
import psycopg
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "lib"))

from rai4eo_tools import safetensors_io  # noqa: E402
from rai4eo_tools import vit_reference as ref  # noqa: E402

COS_MIN = 0.99999
REL_MAX = 1e-4
FIGURES = []
NODATA = 0


def raster_wkb(px: np.ndarray, pixel_size: float) -> bytes:
    """A PostGIS WKB raster of uint16 bands px[C][H][W] with nodata 0 (UTM 29N)."""
    C, H, W = px.shape
    out = struct.pack("<BHHddddddiHH", 1, 0, C, pixel_size, -pixel_size,
                      500000.0, 4400000.0, 0.0, 0.0, 32629, W, H)
    for c in range(C):
        out += struct.pack("<BH", 6 | 0x40, NODATA) + px[c].astype("<u2").tobytes()
    return out


def reflectance(C, H, W, seed, nodata_rows=0):
    """Reflectance-like uint16 planes (x 10000), with a strip of nodata on top."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(500, 2500, size=(C, 1, 1))
    px = np.clip(np.round(base + rng.normal(0, 400, size=(C, H, W))), 1, 10000).astype(np.uint16)
    px[:, :nodata_rows, :] = NODATA
    return px


class SqlCase(unittest.TestCase):
    """A database of its own, model storage and the parity check; no tests."""
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        try:
            admin = psycopg.connect("", autocommit=True)
        except psycopg.Error as e:
            raise RuntimeError("test_sql_parity needs a PostgreSQL server named by PG* variables: %s" % e)
        cls.db = "rai4eo_parity_%d" % os.getpid()
        admin.execute('DROP DATABASE IF EXISTS "%s"' % cls.db)
        admin.execute('CREATE DATABASE "%s"' % cls.db)
        admin.close()
        cls.conn = psycopg.connect("dbname=%s" % cls.db, autocommit=True)
        cls.conn.execute("CREATE EXTENSION rai4eo CASCADE")
        cls.modules = {}

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        with psycopg.connect("", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)
        if FIGURES:
            print("\nSQL parity figures (case: 1 - min cosine, max|diff|/max|ref|):", file=sys.stderr)
            for label, cos, rel in FIGURES:
                print(f"  {label}: {1 - cos:.1e}, {rel:.2e}", file=sys.stderr)

    # -- helpers -----------------------------------------------------------

    def store(self, name, state, metadata, config=None, dtype=None):
        """Serialise state (optionally as F16/BF16) and store it as model name."""
        if dtype == "F16":
            state = {k: v.half() for k, v in state.items()}
        elif dtype == "BF16":
            state = {k: v.bfloat16() for k, v in state.items()}
        blob = safetensors_io.serialize(state, metadata)
        self.conn.execute("SELECT rai4eo_load_model(%s, %s, %s::jsonb, replace => true)",
                          (name, blob, psycopg.types.json.Jsonb(config or {})))
        heads = int(metadata.get("num_heads", state["cls_token"].shape[-1] // 64))
        # the reference runs on exactly the (rounded) weights the database got
        return ref.vit_from_state_dict({k: v.float() for k, v in state.items()}, num_heads=heads)

    def embed_sql(self, name, rasters, batched=False):
        """rai4eo_embed on each raster (or once on the array) -> [N, D] float64."""
        wkbs = [raster_wkb(px, ps) for px, ps in rasters]
        if batched:
            # a NULL in the middle must come back as NULL without shifting the others
            wkbs.insert(1, None)
            rows = self.conn.execute(
                "SELECT e::real[] FROM unnest(rai4eo_embed("
                "  (SELECT array_agg(ST_RastFromWKB(w) ORDER BY i) FROM unnest(%s::bytea[]) WITH ORDINALITY AS t(w, i)),"
                "  %s)) WITH ORDINALITY AS u(e, j) ORDER BY j", (wkbs, name)).fetchall()
            self.assertEqual(len(rows), len(wkbs))
            self.assertIsNone(rows[1][0])
            del rows[1]
            return np.array([r[0] for r in rows], dtype=np.float64)
        return np.array([self.conn.execute("SELECT rai4eo_embed(ST_RastFromWKB(%s), %s)::real[]",
                                           (w, name)).fetchone()[0] for w in wkbs], dtype=np.float64)

    def reference(self, module, rasters, bands, scale, mean, std, resize_to=None,
                  n_last_blocks=1, avgpool=False):
        """The PyTorch features of each raster, preprocessed like the database does."""
        out = []
        for px, _ in rasters:
            sel = px[[b - 1 for b in bands]].astype(np.float32)
            x = torch.from_numpy(sel)[None]
            mask = torch.from_numpy(px[[b - 1 for b in bands]] == NODATA)[None]
            x = ref.preprocess(x, mask, scale, mean, std, resize_to=resize_to)
            with torch.no_grad():
                out.append(module.features(x, n_last_blocks, avgpool)[0].double().numpy())
        return np.stack(out)

    def assert_parity(self, got, want, label):
        self.assertEqual(got.shape, want.shape, label)
        self.assertTrue(np.all(np.isfinite(got)), label)
        cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
        rel = np.abs(got - want).max(1) / np.abs(want).max(1)
        FIGURES.append((label, float(cos.min()), float(rel.max())))
        self.assertGreaterEqual(cos.min(), COS_MIN, f"{label}: cosine {cos.min()}")
        self.assertLessEqual(rel.max(), REL_MAX, f"{label}: max abs diff ratio {rel.max()}")

    PF_META = {"arch": "vit", "bands": "[3,2,1,4]", "scale": "0.0001",
               "mean": "[0.05,0.07,0.09,0.25]", "std": "[0.03,0.035,0.05,0.1]"}
    PF_NORM = dict(bands=[3, 2, 1, 4], scale=1e-4, mean=[0.05, 0.07, 0.09, 0.25],
                   std=[0.03, 0.035, 0.05, 0.1])

    def vits16(self):
        return ref.random_vit_state(embed_dim=384, depth=12, patch_size=16, in_chans=4,
                                    img_size=224, seed=21)

    def pf_rasters(self, n, seed):
        return [(reflectance(4, 200, 200, seed + i, nodata_rows=13 * (i % 2)), 3.0) for i in range(n)]


class SqlParity(SqlCase):
    """The issue's cases."""


    def test_vits16_4band_200_native_n_last_blocks_4(self):
        module = self.store("s16_n4", self.vits16(), dict(self.PF_META, n_last_blocks="4"))
        rasters = self.pf_rasters(2, seed=1)
        got = self.embed_sql("s16_n4", rasters)
        self.assertEqual(got.shape, (2, 4 * 384))
        self.assert_parity(got, self.reference(module, rasters, n_last_blocks=4, **self.PF_NORM),
                           "ViT-S/16 4-band 200 native n_last_blocks=4")

    def test_vits16_resize_224(self):
        module = self.store("s16_resize", self.vits16(), self.PF_META, config={"input": "resize"})
        rasters = self.pf_rasters(2, seed=3)
        got = self.embed_sql("s16_resize", rasters)
        self.assert_parity(got, self.reference(module, rasters, resize_to=224, **self.PF_NORM),
                           "ViT-S/16 resize 200->224")

    def test_patch8_sentinel2_12band_60(self):
        state = ref.random_vit_state(embed_dim=384, depth=12, patch_size=8, in_chans=12,
                                     img_size=224, seed=5)
        meta = {"scale": "0.0001", "mean": "0.1", "std": "0.05"}
        module = self.store("s8_s2", state, meta)
        rasters = [(reflectance(12, 60, 60, 30 + i, nodata_rows=3 * i), 10.0) for i in range(2)]
        got = self.embed_sql("s8_s2", rasters)
        self.assert_parity(got, self.reference(module, rasters, list(range(1, 13)), 1e-4,
                                               [0.1] * 12, [0.05] * 12),
                           "ViT-S/8 12-band S2 60x60 native")

    def test_vitb16_f16(self):
        state = ref.random_vit_state(embed_dim=768, depth=12, patch_size=16, in_chans=4,
                                     img_size=224, seed=7)
        module = self.store("b16_f16", state, self.PF_META, dtype="F16")
        rasters = self.pf_rasters(1, seed=5)
        got = self.embed_sql("b16_f16", rasters)
        self.assertEqual(got.shape, (1, 768))
        self.assert_parity(got, self.reference(module, rasters, **self.PF_NORM),
                           "ViT-B/16 F16 weights 200 native")

    def test_vits16_bf16_avgpool(self):
        module = self.store("s16_bf16", self.vits16(), dict(self.PF_META, avgpool="true"), dtype="BF16")
        rasters = self.pf_rasters(2, seed=7)
        got = self.embed_sql("s16_bf16", rasters)
        self.assertEqual(got.shape, (2, 2 * 384))
        self.assert_parity(got, self.reference(module, rasters, avgpool=True, **self.PF_NORM),
                           "ViT-S/16 BF16 weights avgpool")

    def test_batched_equals_single(self):
        module = self.store("s16_batch", self.vits16(), self.PF_META)
        rasters = self.pf_rasters(5, seed=11) + [(reflectance(4, 160, 176, 99), 3.0)]
        single = self.embed_sql("s16_batch", rasters)
        batched = self.embed_sql("s16_batch", rasters, batched=True)
        self.assert_parity(batched, self.reference(module, rasters, **self.PF_NORM),
                           "ViT-S/16 batched (5 x 200x200 + 1 x 176x160)")
        rel = np.abs(batched - single).max() / np.abs(single).max()
        FIGURES.append(("batched vs single calls", 1.0, float(rel)))
        self.assertLessEqual(rel, 1e-5, "batched and single calls differ by more than rounding")

    def test_model_input_equals_reference_preprocessing(self):
        self.store("s16_input", self.vits16(), self.PF_META, config={"input": "resize"})
        px, ps = self.pf_rasters(2, seed=13)[1]
        got = np.array(self.conn.execute("SELECT rai4eo_model_input(ST_RastFromWKB(%s), 's16_input')",
                                          (raster_wkb(px, ps),)).fetchone()[0], dtype=np.float32)
        sel = [b - 1 for b in self.PF_NORM["bands"]]
        want = ref.preprocess(torch.from_numpy(px[sel].astype(np.float32))[None],
                              torch.from_numpy(px[sel] == NODATA)[None], 1e-4,
                              self.PF_NORM["mean"], self.PF_NORM["std"], resize_to=224)[0].numpy()
        self.assertEqual(got.shape, (4, 224, 224))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


if __name__ == "__main__":
    unittest.main()


class SqlClassifyParity(SqlCase):
    """rai4eo_classify and output = probabilities against the same head in PyTorch."""

    def head_state(self, in_dim, classes, seed, mlp=False):
        g = torch.Generator().manual_seed(seed)
        if not mlp:
            return {"head.weight": torch.randn(classes, in_dim, generator=g) / in_dim ** 0.5,
                    "head.bias": torch.randn(classes, generator=g) * 0.3}
        return {"head.0.weight": torch.randn(64, in_dim, generator=g) / in_dim ** 0.5,
                "head.0.bias": torch.randn(64, generator=g) * 0.3,
                "head.2.weight": torch.randn(classes, 64, generator=g) / 8.0,
                "head.2.bias": torch.randn(classes, generator=g) * 0.3}

    @staticmethod
    def apply_head(state, feats, multilabel):
        x = torch.from_numpy(feats).float()
        if "head.weight" in state:
            z = x @ state["head.weight"].T + state["head.bias"]
        else:
            h = torch.relu(x @ state["head.0.weight"].T + state["head.0.bias"])
            z = h @ state["head.2.weight"].T + state["head.2.bias"]
        return (torch.sigmoid(z) if multilabel else torch.softmax(z, dim=1)).double().numpy()

    def test_vit_linear_head_softmax(self):
        backbone = ref.random_vit_state(embed_dim=192, depth=4, patch_size=16, in_chans=4, img_size=224, seed=31)
        head = self.head_state(192, 7, seed=1)
        classes = ["artificial", "agricultural", "forest", "shrub", "bare", "wetlands", "water"]
        module = self.store("cls7", dict(backbone, **head), dict(self.PF_META, num_heads="3"),
                            config={"classes": classes})
        rasters = self.pf_rasters(3, seed=41)
        feats = self.reference(module, rasters, **self.PF_NORM)
        want = self.apply_head(head, feats, multilabel=False)
        got = np.array([self.conn.execute("SELECT rai4eo_classify(ST_RastFromWKB(%s), 'cls7')",
                                          (raster_wkb(px, ps),)).fetchone()[0] for px, ps in rasters])
        self.assert_parity(got, want, "ViT + linear head, softmax probabilities")
        np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
        rows = self.conn.execute("SELECT class_index, class, probability FROM rai4eo_classify_labels("
                                 "ST_RastFromWKB(%s), 'cls7')", (raster_wkb(*rasters[0]),)).fetchall()
        self.assertEqual([r[1] for r in rows], classes)
        self.assertEqual([r[0] for r in rows], list(range(1, 8)))
        np.testing.assert_allclose([r[2] for r in rows], got[0], rtol=0, atol=1e-7)
        # the embedding stays the features unless output = probabilities
        emb = self.embed_sql("cls7", rasters[:1])
        self.assertEqual(emb.shape, (1, 192))

    def test_vit_mlp_head_multilabel_as_embedding(self):
        backbone = ref.random_vit_state(embed_dim=192, depth=4, patch_size=16, in_chans=4, img_size=224, seed=33)
        head = self.head_state(192, 5, seed=2, mlp=True)
        module = self.store("ml5", dict(backbone, **head), dict(self.PF_META, num_heads="3"),
                            config={"multilabel": True, "output": "probabilities", "classes": [311, 312, 313, 324, 512]})
        rasters = self.pf_rasters(3, seed=43)
        want = self.apply_head(head, self.reference(module, rasters, **self.PF_NORM), multilabel=True)
        got = self.embed_sql("ml5", rasters)
        self.assert_parity(got, want, "ViT + MLP head, multilabel, output = probabilities (rai4eo_embed)")
        batched = self.embed_sql("ml5", rasters, batched=True)
        self.assert_parity(batched, want, "ViT + MLP head, batched")
        arr = self.conn.execute("SELECT rai4eo_classify(array_agg(ST_RastFromWKB(w)), 'ml5')::text "
                                "FROM unnest(%s::bytea[]) w", ([raster_wkb(px, ps) for px, ps in rasters],)).fetchone()[0]
        self.assertTrue(arr.startswith("{"))
        self.assertEqual(self.conn.execute("SELECT classes, output_dims FROM rai4eo.models WHERE name = 'ml5'").fetchone(),
                         (5, 5))
