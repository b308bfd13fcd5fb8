"""PyTorch parity of the temporal classifiers inside PostgreSQL (rai4eo_classify_sequence).

Models with random weights are built with torch.nn.LSTM / torch.nn.GRU
(rai4eo_tools.temporal_reference), exported under PyTorch's own key names, stored with
rai4eo_load_model and run on random sequences; the probabilities must match the
reference computed in float64: cosine >= 0.99999 and max |got - ref| <= 1e-4 * max |ref|.
Also checked against the reference's own logits before the sigmoid/softmax, with weights
scaled up (saturating gates) and for F16 weights.

Needs a server named by PG* variables with the extension installed; creates and drops its
own database.  Run:
  /usr/bin/python3 -m unittest discover -s test/parity -p test_temporal_parity.py -v
"""

import json
import os
import sys
import unittest
from pathlib import Path

import numpy as np
import psycopg
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "lib"))

from rai4eo_tools import safetensors_io  # noqa: E402
from rai4eo_tools import temporal_reference as TR  # noqa: E402

COS_MIN = 0.99999
REL_MAX = 1e-4
FIGURES = []


def literal(seq):
    return "ARRAY[%s]::embedding[]" % ",".join("'[%s]'" % ",".join(repr(float(v)) for v in row) for row in seq)


class TemporalParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        cls.db = "rai4eo_tparity_%d" % os.getpid()
        with psycopg.connect("dbname=postgres", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s"' % cls.db)
            admin.execute('CREATE DATABASE "%s"' % cls.db)
        cls.conn = psycopg.connect("dbname=%s" % cls.db, autocommit=True)
        cls.conn.execute("CREATE EXTENSION rai4eo CASCADE")

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        with psycopg.connect("dbname=postgres", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % cls.db)
        if FIGURES:
            print("\ntemporal parity (case: 1 - cosine, max|diff|/max|ref|):", file=sys.stderr)
            for label, c, r in FIGURES:
                print("  %-40s %.2e %.2e" % (label, c, r), file=sys.stderr)

    def check(self, label, arch, D, H, layers, K, attention, T, seed, scale=1.0, multilabel=True,
              head_hidden=0, l2=False, dtype="f32"):
        m = TR.random_model(arch, D, H, layers, K, attention, seed=seed, head_hidden=head_hidden,
                            l2_normalize=l2, scale=scale)
        state = m.export_state()
        if dtype == "f16":
            state = {k: v.half() for k, v in state.items()}
            with torch.no_grad():            # the reference gets the same rounded weights
                m.load_state_dict({("rnn." + k if k.split(".")[0] not in ("attn", "head") else k): v.float()
                                   for k, v in state.items()})
        cfg = {"arch": arch, "multilabel": multilabel, "l2_normalize": l2}
        self.conn.execute("SELECT rai4eo_load_model(%s, %s, %s::jsonb, replace => true)",
                          (label, safetensors_io.serialize(state), json.dumps(cfg)))
        g = torch.Generator().manual_seed(seed + 100)
        x = torch.randn(T, D, generator=g) * 2
        ref = TR.probabilities(m.double(), x.double(), multilabel).numpy()
        got = np.array(self.conn.execute("SELECT rai4eo_classify_sequence(%s, %%s)" % literal(x), (label,))
                       .fetchone()[0], dtype=np.float64)
        cos = float(got @ ref / (np.linalg.norm(got) * np.linalg.norm(ref)))
        rel = float(np.abs(got - ref).max() / np.abs(ref).max())
        FIGURES.append((label, 1 - cos, rel))
        self.assertGreaterEqual(cos, COS_MIN, label)
        self.assertLessEqual(rel, REL_MAX, label)
        return got, ref

    def test_lstm(self):
        self.check("lstm_1layer", "lstm", 32, 24, 1, 7, False, 40, 1)
        self.check("lstm_3layers", "lstm", 384, 64, 3, 7, False, 73, 2)

    def test_gru(self):
        self.check("gru_1layer", "gru", 32, 24, 1, 7, False, 40, 3)
        self.check("gru_2layers", "gru", 384, 48, 2, 15, False, 73, 4)

    def test_attention(self):
        self.check("lstm_attention", "lstm", 64, 32, 2, 7, True, 50, 5)
        self.check("gru_attention", "gru", 64, 32, 1, 7, True, 50, 6)

    def test_softmax_mlp_head_l2(self):
        self.check("lstm_softmax_mlp_l2", "lstm", 16, 16, 1, 5, True, 20, 7, multilabel=False,
                   head_hidden=12, l2=True)

    def test_saturated_gates(self):
        self.check("lstm_scaled_x8", "lstm", 16, 16, 2, 7, False, 30, 8, scale=8.0)
        self.check("gru_scaled_x8", "gru", 16, 16, 2, 7, True, 30, 9, scale=8.0)

    def test_single_step_and_f16(self):
        self.check("gru_one_step", "gru", 8, 8, 1, 3, True, 1, 10)
        self.check("lstm_f16", "lstm", 32, 16, 2, 7, False, 25, 11, dtype="f16")


if __name__ == "__main__":
    unittest.main()
