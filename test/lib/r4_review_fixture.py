"""A small change-detection database for the dashboard and client tests.

tools/synth writes an AOI of GRID x GRID patches (central Portugal, UTM 29N) with changes planted
in 2019; tools/load loads it; an external model "pixel_mean" (per-band mean reflectance, the
demo's raw-pixel baseline) embeds every PF-SR image in SQL, so no training is needed; the model is
calibrated (rai4eo_calibrate) on the planted truth, so yearly_change has score, changed and onset.

The server comes from the PG* variables; make() creates (or recreates) the database.
"""

import csv
import os
import subprocess
import sys

import psycopg

ROOT = os.environ.get("R4_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = "pixel_mean"
YEAR = 2019


def make(db, workdir, grid=4, date_step=24, seed=1):
    """Create database db with the corpus; returns a dict with the planted truth {sample_id: changed}."""
    corpus = os.path.join(workdir, "corpus")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "synth"), "--out", corpus, "--grid", str(grid),
                    "--date-step", str(date_step), "--seed", str(seed), "--no-s2", "--jobs", "1", "--quiet",
                    "--force"], check=True)
    with psycopg.connect("dbname=postgres", autocommit=True) as a:
        a.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)
        a.execute('CREATE DATABASE "%s"' % db)
    with psycopg.connect("dbname=" + db, autocommit=True) as c:
        c.execute("CREATE EXTENSION rai4eo CASCADE")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "load"), "--dsn", "dbname=" + db, "--quiet", corpus],
                   check=True, stdout=subprocess.DEVNULL)
    planted = {}
    with open(os.path.join(corpus, "truth", "changes.csv")) as f:
        for row in csv.DictReader(f):
            planted[row["sample_id"]] = max(planted.get(row["sample_id"], 0.0), float(row["changed_fraction"]))
    with psycopg.connect("dbname=" + db, autocommit=True) as c:
        c.execute("SELECT rai4eo_create_external_model(%s, 4, '{\"description\": \"per-band mean reflectance\"}')",
                  (MODEL,))
        c.execute("""
            INSERT INTO rai4eo.embedding (image_id, patch_id, model, emb)
            SELECT image_id, patch_id, %s,
                   ARRAY[(ST_SummaryStats(rast, 1, true)).mean, (ST_SummaryStats(rast, 2, true)).mean,
                         (ST_SummaryStats(rast, 3, true)).mean, (ST_SummaryStats(rast, 4, true)).mean]::embedding
            FROM rai4eo.image WHERE sensor = 'PF-SR'""", (MODEL,))
        # A patch counts as changed when a planted change covers at least 5 % of it.
        c.execute("CREATE TABLE public.planted (patch_id bigint PRIMARY KEY, sample_id text, changed boolean)")
        truth = {}
        for pid, sid in c.execute("SELECT patch_id, sample_id FROM rai4eo.patch ORDER BY patch_id").fetchall():
            truth[sid] = planted.get(sid, 0.0) >= 0.05
            c.execute("INSERT INTO public.planted VALUES (%s, %s, %s)", (pid, sid, truth[sid]))
        c.execute("SELECT count(*) FROM rai4eo_calibrate(%s, %s, 'public.planted', folds => 2)", (MODEL, YEAR))
    return truth
