"""rai4eo.precision: bf16 embeddings against fp32 ones, through SQL (issue 16).

On a CPU with avx512_bf16: for the fixture ViTs (ViT-S/16 4-band 200 x 200
native with n_last_blocks 4, ViT-S/16 avgpool, ViT-S/8 12-band Sentinel-2
60 x 60, a batch), rai4eo_embed with rai4eo.precision = 'bf16' gives
embeddings with cosine >= 0.999 to the same server's fp32 ones; going back
to 'fp32' gives the fp32 embeddings bit for bit (the cache rebuilds the
engine).  On a CPU without it, SET refuses 'bf16' with 0A000 and a hint.
Unknown values are 22023 everywhere.

Needs a server named by PG* variables with the extension installed; creates
and drops its own database.  Run:
  /usr/bin/python3 -m unittest discover -s test/parity -p test_precision.py -v
"""

import sys
import unittest
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_sql_parity import SqlCase, reflectance  # noqa: E402
from rai4eo_tools import vit_reference as ref  # noqa: E402

COS_MIN = 0.999
FIGURES = []


def cpu_has_bf16() -> bool:
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    return all(f" {x}" in flags for x in ("avx512f", "avx512bw", "avx512vl", "avx512_bf16"))


class Precision(SqlCase):

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        if FIGURES:
            print("\nbf16 vs fp32 (case: min cosine, max|diff|/max|fp32|):", file=sys.stderr)
            for label, cos, rel in FIGURES:
                print(f"  {label}: {cos:.6f}, {rel:.2e}", file=sys.stderr)

    def setUp(self):
        self.conn.execute("RESET rai4eo.precision")

    def test_default_and_bad_values(self):
        self.assertEqual(self.conn.execute("SHOW rai4eo.precision").fetchone()[0], "fp32")
        for bad in ("fp16", "BF17", ""):
            with self.assertRaises(psycopg.errors.InvalidParameterValue) as cm:
                self.conn.execute("SET rai4eo.precision = %s" % psycopg.sql.quote(bad))
            self.assertIn("rai4eo.precision", str(cm.exception))

    @unittest.skipIf(cpu_has_bf16(), "this CPU has avx512_bf16: the refusal cannot happen here")
    def test_refused_without_avx512_bf16(self):
        with self.assertRaises(psycopg.errors.FeatureNotSupported) as cm:
            self.conn.execute("SET rai4eo.precision = 'bf16'")
        self.assertIn("avx512_bf16", str(cm.exception))
        self.assertIn("fp32", cm.exception.diag.message_hint)

    def compare(self, name, rasters, label, batched=False):
        fp32 = self.embed_sql(name, rasters, batched)
        self.conn.execute("SET rai4eo.precision = 'bf16'")
        self.assertEqual(self.conn.execute("SHOW rai4eo.precision").fetchone()[0], "bf16")
        bf16 = self.embed_sql(name, rasters, batched)
        self.conn.execute("SET rai4eo.precision = 'fp32'")
        again = self.embed_sql(name, rasters, batched)
        self.assertTrue(np.array_equal(fp32, again), f"{label}: fp32 after bf16 is not fp32")
        self.assertTrue(np.all(np.isfinite(bf16)), label)
        self.assertFalse(np.array_equal(fp32, bf16), f"{label}: bf16 gave the fp32 bits (not in effect?)")
        cos = (fp32 * bf16).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))
        rel = np.abs(fp32 - bf16).max(1) / np.abs(fp32).max(1)
        FIGURES.append((label, float(cos.min()), float(rel.max())))
        self.assertGreaterEqual(cos.min(), COS_MIN, f"{label}: cosine {cos.min()}")

    @unittest.skipUnless(cpu_has_bf16(), "bf16 needs avx512_bf16 (test_refused_without_avx512_bf16 runs instead)")
    def test_vits16_200_n_last_blocks_4(self):
        self.store("p_s16_n4", self.vits16(), dict(self.PF_META, n_last_blocks="4"))
        self.compare("p_s16_n4", self.pf_rasters(3, seed=1), "ViT-S/16 4-band 200 native n_last_blocks=4")

    @unittest.skipUnless(cpu_has_bf16(), "bf16 needs avx512_bf16")
    def test_vits16_avgpool_batched(self):
        self.store("p_s16_avg", self.vits16(), dict(self.PF_META, avgpool="true"))
        rasters = self.pf_rasters(4, seed=7) + [(reflectance(4, 160, 176, 99), 3.0)]
        self.compare("p_s16_avg", rasters, "ViT-S/16 avgpool, batched, one 176x160", batched=True)

    @unittest.skipUnless(cpu_has_bf16(), "bf16 needs avx512_bf16")
    def test_vits8_sentinel2_60(self):
        state = ref.random_vit_state(embed_dim=384, depth=12, patch_size=8, in_chans=12,
                                     img_size=224, seed=5)
        self.store("p_s8_s2", state, {"scale": "0.0001", "mean": "0.1", "std": "0.05"})
        rasters = [(reflectance(12, 60, 60, 30 + i, nodata_rows=3 * i), 10.0) for i in range(3)]
        self.compare("p_s8_s2", rasters, "ViT-S/8 12-band S2 60x60 native")


if __name__ == "__main__":
    unittest.main()
