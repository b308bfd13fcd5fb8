#!/usr/bin/python3
"""Load rate of tools/load, in-db and out-db, against PostGIS's own paths for the same files.

Generates a corpus (default 100 patches, 8 Planet Fusion dates and 12 Sentinel-2 months
each: 2,000 images), creates a scratch database with rai4eo, and times:

  ours in-db    tools/load --in-db   (GDAL reads on the client, WKB rasters over the wire)
  peer in-db    the GeoTIFF bytes sent as they are, decoded by ST_FromGDALRaster on the server
                (into a table stored like rai4eo.image: raster column STORAGE EXTERNAL)
  ours out-db   tools/load --out-db  (header-only rasters pointing at the files)
  peer out-db   ST_AddBand(ST_MakeEmptyRaster(...), path, bands): PostGIS opens each file

Rates are images/s and MB/s of GeoTIFF files processed; ratio = ours / peer (above 1:
ours is faster).  The server comes from PG* variables or --dsn; it must run on this
machine (out-db paths and ST_FromGDALRaster need GDAL drivers, a superuser setting).
RAI4EO_TEST_SETUP_SQL may name an SQL file to use instead of CREATE EXTENSION rai4eo.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "lib"))

import psycopg                                               # noqa: E402
from osgeo import gdal                                       # noqa: E402

from rai4eo_tools import corpus_layout as L                  # noqa: E402

gdal.UseExceptions()


def corpus_files(root):
    samples, _ = L.find_samples(root)
    out = []
    for sid in samples:
        for sensor in L.SENSORS:
            d = L.image_dir(root, sid, sensor)
            if os.path.isdir(d):
                out += [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".tif")]
    return out


def run_loader(dsn, mode, root):
    t = time.monotonic()
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "load"), "--dsn", dsn, "--quiet", mode, root],
                       capture_output=True, text=True)
    el = time.monotonic() - t
    if r.returncode != 0:
        raise SystemExit("load %s failed (%d): %s%s" % (mode, r.returncode, r.stdout, r.stderr))
    return el


def peer_in_db(conn, files, batch=50):
    conn.execute("DROP TABLE IF EXISTS bench_peer")
    conn.execute("CREATE TABLE bench_peer (id int PRIMARY KEY, rast raster NOT NULL)")
    conn.execute("ALTER TABLE bench_peer ALTER COLUMN rast SET STORAGE EXTERNAL")   # as rai4eo.image
    conn.commit()
    t = time.monotonic()
    with conn.cursor() as cur:
        for k in range(0, len(files), batch):
            rows = []
            for i, p in enumerate(files[k:k + batch], k):
                with open(p, "rb") as f:
                    rows.append((i, f.read()))
            cur.executemany("INSERT INTO bench_peer VALUES (%s, ST_FromGDALRaster(%b))", rows)
            conn.commit()
    return time.monotonic() - t


def peer_out_db(conn, files, batch=50):
    conn.execute("DROP TABLE IF EXISTS bench_peer")
    conn.execute("CREATE TABLE bench_peer (id int PRIMARY KEY, rast raster NOT NULL)")
    conn.commit()
    t = time.monotonic()
    with conn.cursor() as cur:
        for k in range(0, len(files), batch):
            rows = []
            for i, p in enumerate(files[k:k + batch], k):
                ds = gdal.Open(p)
                gt = ds.GetGeoTransform()
                srid = int(ds.GetSpatialRef().GetAuthorityCode(None))
                rows.append((i, ds.RasterXSize, ds.RasterYSize, gt[0], gt[3], gt[1], gt[5], srid,
                             os.path.abspath(p), list(range(1, ds.RasterCount + 1))))
            cur.executemany("INSERT INTO bench_peer VALUES (%s, ST_AddBand(ST_MakeEmptyRaster(%s, %s, %s, %s, %s, %s, "
                            "0, 0, %s), %s::text, %s::int[]))", rows)
            conn.commit()
    return time.monotonic() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--dsn", default="", help="server to use (default: PG* variables)")
    p.add_argument("--grid", type=int, default=10, help="corpus of N x N patches (default 10)")
    p.add_argument("--date-step", type=int, default=24, help="Planet Fusion date step (default 24: 8 dates)")
    p.add_argument("--corpus", help="use this corpus instead of generating one")
    p.add_argument("--keep", action="store_true", help="keep the scratch database and corpus")
    a = p.parse_args()

    tmp = tempfile.mkdtemp(prefix="rai4eo-bench-")
    os.chmod(tmp, 0o755)
    root = a.corpus
    if root is None:
        root = os.path.join(tmp, "corpus")
        t = time.monotonic()
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "synth"), "--out", root, "--grid", str(a.grid),
                        "--date-step", str(a.date_step), "--s2-years", "2018", "--quiet"], check=True)
        print("generated %s in %.1f s" % (root, time.monotonic() - t))
    root = os.path.abspath(root)
    files = corpus_files(root)
    mb = sum(os.path.getsize(f) for f in files) / 1e6
    raw = 0
    for f in files:
        ds = gdal.Open(f)
        raw += ds.RasterCount * ds.RasterXSize * ds.RasterYSize * 2
    print("corpus: %d images, %.1f MB of GeoTIFF, %.1f MB of pixels" % (len(files), mb, raw / 1e6))

    db = "rai4eo_bench_%d" % os.getpid()
    with psycopg.connect(a.dsn, autocommit=True) as admin:
        admin.execute('CREATE DATABASE "%s"' % db)
    dsn = (a.dsn + " " if a.dsn else "") + "dbname=" + db
    try:
        conn = psycopg.connect(dsn)
        setup = os.environ.get("RAI4EO_TEST_SETUP_SQL")
        if setup:
            with open(setup) as f:
                conn.execute(f.read())
        else:
            conn.execute("CREATE EXTENSION rai4eo CASCADE")
        conn.execute("SELECT postgis_raster_lib_version()")
        conn.execute("SET postgis.gdal_enabled_drivers = 'GTiff'")
        conn.execute("SET synchronous_commit = off")
        conn.commit()

        results = []
        for mode, peer in (("--in-db", peer_in_db), ("--out-db", peer_out_db)):
            conn.execute("TRUNCATE rai4eo.patch CASCADE")
            conn.commit()
            ours = run_loader(dsn, mode, root)
            n = conn.execute("SELECT count(*) FROM rai4eo.image").fetchone()[0]
            if n != len(files):
                raise SystemExit("loaded %d images of %d" % (n, len(files)))
            size = conn.execute("SELECT pg_total_relation_size('rai4eo.image')").fetchone()[0]
            theirs = peer(conn, files)
            results.append((mode[2:], ours, theirs, size))
            conn.execute("DROP TABLE bench_peer")
            conn.commit()
        conn.close()
    finally:
        if not a.keep:
            with psycopg.connect(a.dsn, autocommit=True) as admin:
                admin.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print("%-7s %9s %9s %9s %9s %11s %8s  %s" % ("mode", "ours s", "img/s", "MB/s", "peer s", "peer img/s", "ratio", "rai4eo.image size"))
    for mode, ours, theirs, size in results:
        print("%-7s %9.2f %9.1f %9.1f %9.2f %11.1f %8.2f  %.1f MB"
              % (mode, ours, len(files) / ours, mb / ours, theirs, len(files) / theirs, theirs / ours, size / 1e6))
    print("\nMB/s counts GeoTIFF bytes; ratio = peer time / our time (> 1: ours faster);")
    print("our times include starting the loader (Python, GDAL, connection).")


if __name__ == "__main__":
    main()
