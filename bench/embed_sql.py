#!/usr/bin/python3
"""rai4eo_embed inside PostgreSQL against the engine alone, in one run.

Stores a ViT-S/16 4-band model (random weights, F32, DINO shapes) with
rai4eo_load_model, puts 64 PF-like 200 x 200 x 4 uint16 rasters in a table and
measures, in one backend:
  - SELECT count(rai4eo_embed(rast, m)) FROM t          (one forward per row)
  - SELECT rai4eo_embed(array_agg(rast), m) FROM t      (batched, 16 per forward)
as images/s (median of --runs), against build/bench/vit_bench's engine-only
images/s for the same shapes (batch 1 and 16) measured in the same run;
first-call latency (model load: a fresh backend's first call minus its second);
and the backend's peak RSS (VmHWM) with the model loaded, against the weights'
size.  The server must run on this machine (RSS is read from /proc) with the
same OPENBLAS_CORETYPE / OPENBLAS_NUM_THREADS=1 as this process (scripts/lib.sh
sets both).  Connects with PG* variables; creates and drops its own database.

    /usr/bin/python3 bench/embed_sql.py [--runs 5] [--images 64]
"""

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "lib"))
from rai4eo_tools import safetensors_io  # noqa: E402
from rai4eo_tools import vit_reference as ref  # noqa: E402


def raster_wkb(px):
    C, H, W = px.shape
    out = struct.pack("<BHHddddddiHH", 1, 0, C, 3.0, -3.0, 500000.0, 4400000.0, 0, 0, 32629, W, H)
    for c in range(C):
        out += struct.pack("<BH", 6 | 0x40, 0) + px[c].astype("<u2").tobytes()
    return out


def engine_alone(runs):
    """images/s of the core engine for 200x200 batch 1 and 16 (bench/vit_bench.c)."""
    subprocess.run(["make", "-s", "-C", str(ROOT), "bench"], check=True, stdout=subprocess.DEVNULL)
    out = {}
    for b in (1, 16):
        r = subprocess.run([str(ROOT / "build" / "bench" / "vit_bench"), "--json", "--runs", str(runs),
                            "--case", "200", "200", str(b)], check=True, capture_output=True, text=True)
        out[b] = next(json.loads(line) for line in r.stdout.splitlines() if "engine_img_s" in line)
    return out


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError("no " + key)


class AnonPeak(threading.Thread):
    """Samples a process's private memory (RssAnon) every millisecond; Linux keeps
    no peak of it, and VmHWM also counts the shared buffers the backend touched."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, status_kib(self.pid, "RssAnon"))
            time.sleep(0.001)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--images", type=int, default=64)
    args = ap.parse_args()

    db = "rai4eo_bench_embed_%d" % os.getpid()
    with psycopg.connect("", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{db}"')
        admin.execute(f'CREATE DATABASE "{db}"')
    try:
        with psycopg.connect(f"dbname={db}", autocommit=True) as c:
            c.execute("CREATE EXTENSION rai4eo CASCADE")
            state = ref.random_vit_state(embed_dim=384, depth=12, patch_size=16, in_chans=4, img_size=224)
            blob = safetensors_io.serialize(state, {"scale": "0.0001", "mean": "0.1", "std": "0.05"})
            c.execute("SELECT rai4eo_load_model('vits16', %s)", (blob,))
            rng = np.random.default_rng(0)
            c.execute("CREATE TABLE t (id int PRIMARY KEY, rast raster)")
            with c.cursor() as cur:
                for i in range(args.images):
                    px = rng.integers(300, 4000, size=(4, 200, 200)).astype(np.uint16)
                    cur.execute("INSERT INTO t VALUES (%s, ST_RastFromWKB(%s))", (i, raster_wkb(px)))
            c.execute("VACUUM ANALYZE t")
            # the same rasters as one patch's images, for the refresh procedure
            c.execute("INSERT INTO rai4eo.patch (patch_id, sample_id, geom) VALUES (rai4eo.patch_id_of('29N_23E-183N_10_10'), "
                      "'29N_23E-183N_10_10', ST_MakeEnvelope(558000, 4398000, 558600, 4398600, 32629))")
            c.execute("INSERT INTO rai4eo.image (image_id, patch_id, sensor, acquired, rast) "
                      "SELECT rai4eo.image_id_of(p, 'PF-SR', d), p, 'PF-SR', d, rast FROM t, "
                      "LATERAL (SELECT rai4eo.patch_id_of('29N_23E-183N_10_10') AS p, "
                      "DATE '2018-01-03' + 5 * id AS d) x")

        # first-call latency: a fresh backend's first call minus its second
        loads = []
        for _ in range(3):
            with psycopg.connect(f"dbname={db}", autocommit=True) as c:
                c.execute("SELECT 1")
                t0 = time.perf_counter()
                c.execute("SELECT rai4eo_embed(rast, 'vits16') FROM t WHERE id = 0").fetchone()
                first = time.perf_counter() - t0
                t0 = time.perf_counter()
                c.execute("SELECT rai4eo_embed(rast, 'vits16') FROM t WHERE id = 0").fetchone()
                loads.append(first - (time.perf_counter() - t0))

        with psycopg.connect(f"dbname={db}", autocommit=True) as c:
            pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
            sampler = AnonPeak(pid)
            sampler.start()
            c.execute("SELECT count(rai4eo_embed(rast, 'vits16')) FROM t").fetchone()  # load + warm-up
            single, batched = [], []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                c.execute("SELECT count(rai4eo_embed(rast, 'vits16')) FROM t").fetchone()
                single.append(args.images / (time.perf_counter() - t0))
                t0 = time.perf_counter()
                c.execute("SELECT cardinality(rai4eo_embed(array_agg(rast ORDER BY id), 'vits16')) FROM t").fetchone()
                batched.append(args.images / (time.perf_counter() - t0))
            refresh = []
            for _ in range(args.runs):
                c.execute("DELETE FROM rai4eo.embedding")
                t0 = time.perf_counter()
                c.execute("CALL rai4eo_refresh_embeddings('vits16', 'PF-SR', 16)")
                refresh.append(args.images / (time.perf_counter() - t0))
            sampler.stop.set()
            sampler.join()
            hwm = status_kib(pid, "VmHWM") * 1024
            anon = sampler.peak * 1024
            weights = c.execute("SELECT size_bytes FROM rai4eo.models WHERE name = 'vits16'").fetchone()[0]

        eng = engine_alone(args.runs)
        s, b = statistics.median(single), statistics.median(batched)
        e1, e16 = eng[1]["engine_img_s"], eng[16]["engine_img_s"]
        print(f"ViT-S/16 4-band 200x200 native, {args.images} images, medians of {args.runs} runs")
        print(f"  OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(auto)')}")
        print(f"  SELECT rai4eo_embed(rast) per row : {s:7.2f} img/s   engine alone b1 : {e1:7.2f} img/s   in-db/engine {s / e1:5.1%}")
        print(f"  rai4eo_embed(array_agg(rast))     : {b:7.2f} img/s   engine alone b16: {e16:7.2f} img/s   in-db/engine {b / e16:5.1%}")
        r = statistics.median(refresh)
        print(f"  CALL rai4eo_refresh_embeddings    : {r:7.2f} img/s   engine alone b16: {e16:7.2f} img/s   in-db/engine {r / e16:5.1%}")
        print(f"  first-call latency (model load)   : {statistics.median(loads) * 1000:7.0f} ms (median of 3 fresh backends)")
        print(f"  backend peak private RSS (RssAnon): {anon / 2**20:7.1f} MiB = {anon / weights:.2f} x weights ({weights / 2**20:.1f} MiB)")
        print(f"  backend VmHWM (incl. shared bufs) : {hwm / 2**20:7.1f} MiB = {hwm / weights:.2f} x weights")
    finally:
        with psycopg.connect("", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
