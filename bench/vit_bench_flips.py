#!/usr/bin/python3
"""Do bf16 embeddings flip change decisions?  fp32 against bf16 on a synthetic corpus.

Makes a corpus (tools/synth, --grid patches a side), loads it (tools/load)
into a database of its own, stores one ViT-S/16 4-band model (random weights,
seed 21, the test fixture's) twice, as vit_fp32 and vit_bf16, embeds every
image with CALL rai4eo_refresh_embeddings under rai4eo.precision 'fp32' and
'bf16' respectively, and compares: the embeddings (cosine), daily_change's
decisions for every acquisition day, and yearly_change's decisions for the
last year, both models at the same thresholds (near the 25th, 50th and 75th
percentiles of the fp32 daily distances, halfway between two of them: the
decisions most sensitive to a small change of distance).  Prints the counts and every flipped decision.

    /usr/bin/python3 bench/vit_bench_flips.py [--grid 4] [--date-step 6]

Needs the PG* variables of a server with the extension and a CPU with
avx512_bf16.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "lib"))
from rai4eo_tools import safetensors_io  # noqa: E402
from rai4eo_tools import vit_reference as ref  # noqa: E402

META = {"arch": "vit", "num_heads": "6", "bands": "[3,2,1,4]", "scale": "0.0001",
        "mean": "[0.05,0.07,0.09,0.25]", "std": "[0.03,0.035,0.05,0.1]"}
AOI = "(SELECT ST_Envelope(ST_Collect(geom)) FROM rai4eo.patch)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=4)
    ap.add_argument("--date-step", type=int, default=6)
    args = ap.parse_args()
    db = "rai4eo_flips_%d" % os.getpid()
    with psycopg.connect("", autocommit=True) as admin:
        admin.execute('CREATE DATABASE "%s"' % db)
    try:
        with tempfile.TemporaryDirectory() as tmp, psycopg.connect("dbname=" + db, autocommit=True) as c:
            c.execute("CREATE EXTENSION rai4eo CASCADE")
            corpus = os.path.join(tmp, "corpus")
            subprocess.run([sys.executable, str(ROOT / "tools" / "synth"), "--out", corpus, "--grid",
                            str(args.grid), "--date-step", str(args.date_step), "--no-s2", "--quiet",
                            "--jobs", "1"], check=True)
            subprocess.run([sys.executable, str(ROOT / "tools" / "load"), "--dsn", "dbname=" + db,
                            "--quiet", corpus], check=True)
            state = ref.random_vit_state(embed_dim=384, depth=12, patch_size=16, in_chans=4,
                                         img_size=224, seed=21)
            blob = safetensors_io.serialize(state, META)
            for name, prec in (("vit_fp32", "fp32"), ("vit_bf16", "bf16")):
                c.execute("SELECT rai4eo_load_model(%s, %s, '{}'::jsonb)", (name, blob))
                c.execute("SET rai4eo.precision = %s" % psycopg.sql.quote(prec))
                c.execute("SET client_min_messages = warning")
                c.execute("CALL rai4eo_refresh_embeddings(%s, batch_size => 16)", (name,))
            c.execute("RESET rai4eo.precision")
            rows = c.execute("""SELECT a.emb::real[], b.emb::real[]
                                FROM rai4eo.embedding a JOIN rai4eo.embedding b USING (image_id)
                                WHERE a.model = 'vit_fp32' AND b.model = 'vit_bf16'""").fetchall()
            a = np.array([r[0] for r in rows], dtype=np.float64)
            b = np.array([r[1] for r in rows], dtype=np.float64)
            cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            print(f"{len(rows)} images embedded by both: cosine bf16 vs fp32 min {cos.min():.6f}, "
                  f"median {np.median(cos):.6f}")
            days = [r[0] for r in c.execute(
                "SELECT DISTINCT acquired FROM rai4eo.image ORDER BY 1").fetchall()]
            year = max(d.year for d in days)
            dist = {}
            for m in ("vit_fp32", "vit_bf16"):
                for d in days:
                    for pid, dd in c.execute(f"SELECT patch_id, distance FROM daily_change({AOI}, %s, %s, 1.0)",
                                             (d, m)).fetchall():
                        if dd is not None:
                            dist[(m, pid, d)] = dd
            d32 = np.array([v for (m, _, _), v in dist.items() if m == "vit_fp32"])
            diffs = [abs(dist[("vit_bf16", p, d)] - v) for (m, p, d), v in dist.items()
                     if m == "vit_fp32" and ("vit_bf16", p, d) in dist]
            print(f"{len(d32)} daily distances: fp32 median {np.median(d32):.5f}, "
                  f"max |bf16 - fp32| {max(diffs):.2e}")
            for q in (25, 50, 75):
                # halfway between two fp32 distances, so no fp32 distance sits on the threshold
                srt = np.sort(d32)
                i = min(max(int(len(srt) * q / 100), 1), len(srt) - 1)
                thr = float((srt[i - 1] + srt[i]) / 2)
                flips = [(p, d, v, dist[("vit_bf16", p, d)]) for (m, p, d), v in dist.items()
                         if m == "vit_fp32" and (v > thr) != (dist[("vit_bf16", p, d)] > thr)]
                yearly = {}
                for m in ("vit_fp32", "vit_bf16"):
                    yearly[m] = dict(c.execute(f"SELECT patch_id, changed FROM yearly_change({AOI}, %s, %s, %s)",
                                               (year, m, thr)).fetchall())
                yflips = [p for p in yearly["vit_fp32"] if yearly["vit_fp32"][p] != yearly["vit_bf16"].get(p)]
                print(f"threshold {thr:.5f} (p{q}): daily decisions flipped {len(flips)} of {len(d32)}; "
                      f"yearly {year} decisions flipped {len(yflips)} of {len(yearly['vit_fp32'])}")
                for p, d, v, w in flips:
                    print(f"   daily flip: patch {p} {d}: fp32 {v:.6f} bf16 {w:.6f}")
                for p in yflips:
                    print(f"   yearly flip: patch {p}")
    finally:
        with psycopg.connect("", autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)


if __name__ == "__main__":
    main()
