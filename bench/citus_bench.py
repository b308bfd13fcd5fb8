#!/usr/bin/python3
"""Embed and refresh speed of a Citus cluster (coordinator + 2 workers) against one node.

Needs Citus installed in the PostgreSQL that pg_config (or PG_CONFIG) names.  Starts its own
three servers (test/citus/cluster.py, ports R4_CITUS_PORT .. +2), loads one synthetic corpus
into the distributed database and into a plain database on the coordinator, stores the same
random ViT in both and times, in the same run:

  embed    SELECT count(rai4eo_embed(rast, m)) FROM rai4eo.image   (per-row inference)
  refresh  CALL rai4eo_refresh_embeddings(m, NULL, batch)          (batched, committed)

and prints images/s and the ratio cluster / one node.  All three servers share this machine's
cores: the ratio is bounded by what the machine has to spare, not by Citus.

  bench/citus_bench.py [--grid 4] [--date-step 12] [--batch 16] [--runs 3]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "citus"))
sys.path.insert(0, os.path.join(ROOT, "tools", "lib"))

import psycopg                                               # noqa: E402

import cluster                                               # noqa: E402
from rai4eo_tools import safetensors_io                      # noqa: E402
from rai4eo_tools import vit_reference as ref                # noqa: E402


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("%s failed: %s%s" % (cmd[1], r.stdout, r.stderr))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", type=int, default=4)
    ap.add_argument("--date-step", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    if not cluster.installed():
        sys.exit("citus_bench: Citus is not installed in the PostgreSQL pg_config names")
    c = cluster.Cluster()
    corpus = tempfile.mkdtemp(prefix="rai4eo-citus-bench.")
    c.start()
    try:
        for node in cluster.NODES:
            with psycopg.connect(c.dsn(node), autocommit=True) as x:
                x.execute("CREATE EXTENSION IF NOT EXISTS citus")
        dist = psycopg.connect(c.dsn(), autocommit=True)
        dist.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (c.ports["coordinator"],))
        for w in ("worker1", "worker2"):
            dist.execute("SELECT citus_add_node('127.0.0.1', %s)", (c.ports[w],))
        dist.execute("CREATE EXTENSION rai4eo CASCADE")
        dist.execute("SELECT * FROM rai4eo_distribute(8)")
        dist.execute("DROP DATABASE IF EXISTS single")
        dist.execute("CREATE DATABASE single")
        single = psycopg.connect(c.dsn(dbname="single"), autocommit=True)
        single.execute("CREATE EXTENSION rai4eo CASCADE")
        run([sys.executable, os.path.join(ROOT, "tools", "synth"), "--out", corpus, "--grid", str(a.grid),
             "--date-step", str(a.date_step), "--quiet", "--jobs", "1"])
        state = ref.random_vit_state(embed_dim=96, depth=4, patch_size=20, in_chans=4, img_size=200, seed=1)
        for conn, db in ((dist, "postgres"), (single, "single")):
            run([sys.executable, os.path.join(ROOT, "tools", "load"), "--dsn", c.dsn(dbname=db), "--quiet", corpus])
            conn.execute("SELECT rai4eo_load_model('b', %s::bytea, %s::jsonb)",
                         (safetensors_io.serialize(state), '{"bands": [1, 2, 3, 4], "num_heads": 3, "scale": 0.0001}'))
        n = single.execute("SELECT count(*) FROM rai4eo.image WHERE sensor = 'PF-SR'").fetchone()[0]
        print("citus_bench: %d PF-SR images, ViT d=96 depth 4 patch 20, %d runs (median), load on this machine: %s"
              % (n, a.runs, os.getloadavg()))

        def timed(conn, sql):
            t = []
            for _ in range(a.runs):
                t0 = time.perf_counter()
                conn.execute(sql)
                t.append(time.perf_counter() - t0)
            return statistics.median(t)

        embed = "SELECT count(rai4eo_embed(rast, 'b')) FROM rai4eo.image WHERE sensor = 'PF-SR'"
        e1, e2 = timed(single, embed), timed(dist, embed)

        def refresh(conn):
            t = []
            for _ in range(a.runs):
                conn.execute("DELETE FROM rai4eo.embedding")
                t0 = time.perf_counter()
                conn.execute("CALL rai4eo_refresh_embeddings('b', 'PF-SR', %d)" % a.batch)
                t.append(time.perf_counter() - t0)
            return statistics.median(t)
        r1, r2 = refresh(single), refresh(dist)
        print("  embed    one node %7.1f img/s   2 workers %7.1f img/s   ratio %.2fx" % (n / e1, n / e2, e1 / e2))
        print("  refresh  one node %7.1f img/s   2 workers %7.1f img/s   ratio %.2fx" % (n / r1, n / r2, r1 / r2))
        dist.close()
        single.close()
    finally:
        c.stop()
        shutil.rmtree(corpus, ignore_errors=True)


if __name__ == "__main__":
    main()
