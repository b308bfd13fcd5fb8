#!/usr/bin/python3
"""The product's change decision on a corpus's held-out patches, measured against its truth.

bench/train_eval.sh measures features with tools/evaluate (numpy, its own scores); this measures
what a user gets: rai4eo_calibrate in SQL on the patches tools/train --holdout kept out of
training (split value below --holdout, tools/evaluate's truth rules: a change counts from
--min-fraction of the patch, patches with only smaller ones are left out), every method with its
cross-validated F1, then yearly_change with the stored decision: the ROC AUC of its score and the
share of detected changes whose onset lies within 15 days of the truth's.

  bench/sql_decision.py CORPUS MODEL... [--pixels] [--pixel-tiles 4] [--readout NAME=MODEL:G ...]

--pixels adds the raw-pixel baseline as an external model `pixels` (per-band mean and std of
each image, standardised over the corpus: tools/evaluate's baseline), --pixel-tiles N the same
per tile of an N x N cut (`pixels_tiles`, 8 N^2 values for 4 bands); --readout stores MODEL's
weights again as NAME with config readout_grid G (a readout is configuration: the same trained
weights) and embeds them with CALL rai4eo_refresh_embeddings.  Each model gets 8 k-means states
(rai4eo_cluster) so the cluster method competes.  Decisions are stored in the models'
configuration (use a database made for measuring, as bench/train_eval.sh's r4eval_*).
Connects like psql (PG* variables) or with --dsn.
"""
import argparse
import datetime as dt
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "tools", "lib"))

import numpy as np                                          # noqa: E402
import psycopg                                              # noqa: E402

from rai4eo_tools import evaluate as E                      # noqa: E402

YEAR = 2019


def pixel_model(conn, name, tiles):
    """An external model of per-band (per-tile) mean and std, standardised over the corpus."""
    nb, w, h = conn.execute("SELECT ST_NumBands(rast), ST_Width(rast), ST_Height(rast) FROM rai4eo.image "
                            "WHERE sensor = 'PF-SR' LIMIT 1").fetchone()
    dims = 2 * nb * tiles * tiles
    conn.execute("SELECT rai4eo_create_external_model(%s, %s, %s, replace => true)",
                 (name, dims, '{"description": "per-band mean and std of %d x %d tiles, standardised"}'
                  % (tiles, tiles)))
    conn.execute("DELETE FROM rai4eo.embedding WHERE model = %s", (name,))
    conn.execute("CREATE TEMP TABLE r4_pix ON COMMIT DROP AS "
                 "SELECT i.image_id, i.patch_id, array_agg(q.x ORDER BY t.n, b, q.w) AS v "
                 "FROM rai4eo.image i, LATERAL ST_Tile(i.rast, %s, %s) WITH ORDINALITY t(r, n), "
                 "generate_series(1, %s) b, LATERAL (SELECT (ST_SummaryStats(t.r, b)).*) s, "
                 "LATERAL (VALUES (1, s.mean), (2, s.stddev)) q(w, x) "
                 "WHERE i.sensor = 'PF-SR' GROUP BY 1, 2", (-(-w // tiles), -(-h // tiles), nb))
    conn.execute("CREATE TEMP TABLE r4_pix_st ON COMMIT DROP AS SELECT i, avg(f.v[i]) AS mu, "
                 "coalesce(nullif(stddev_pop(f.v[i]), 0), 1) AS sd FROM r4_pix f, generate_series(1, %s) i GROUP BY i",
                 (dims,))
    conn.execute("INSERT INTO rai4eo.embedding (image_id, patch_id, model, emb) SELECT f.image_id, f.patch_id, %s, "
                 "(SELECT array_agg((f.v[st.i] - st.mu) / st.sd ORDER BY st.i) FROM r4_pix_st st)::real[]::embedding "
                 "FROM r4_pix f", (name,))


def main(argv=None):
    p = argparse.ArgumentParser(prog="sql_decision", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("corpus")
    p.add_argument("models", nargs="*")
    p.add_argument("--dsn", default="")
    p.add_argument("--holdout", type=float, default=0.5)
    p.add_argument("--min-fraction", type=float, default=0.05)
    p.add_argument("--pixels", action="store_true")
    p.add_argument("--pixel-tiles", type=int, default=0)
    p.add_argument("--readout", action="append", default=[], metavar="NAME=MODEL:G")
    a = p.parse_args(argv)
    conn = psycopg.connect(a.dsn, autocommit=True)
    models = list(a.models)
    for spec in a.readout:
        name, rest = spec.split("=", 1)
        src, g = rest.rsplit(":", 1)
        conn.execute("SELECT rai4eo_load_model(%s, (SELECT weights FROM rai4eo.model WHERE name = %s), %s, replace => true)",
                     (name, src, '{"readout_grid": %d}' % int(g)))
        conn.execute("CALL rai4eo_refresh_embeddings(%s, 'PF-SR', 32)", (name,))
        models.append(name)
    with conn.transaction():
        if a.pixels:
            pixel_model(conn, "pixels", 1)
    with conn.transaction():
        if a.pixel_tiles:
            pixel_model(conn, "pixels_tiles", a.pixel_tiles)
    models += (["pixels"] if a.pixels else []) + (["pixels_tiles"] if a.pixel_tiles else [])

    truth = E.read_truth(a.corpus, a.min_fraction)
    none = (False, None, 0.0, 0)
    lab = [(pid, truth.get(sid, none)[0], truth.get(sid, none)[3])
           for pid, sid in conn.execute("SELECT patch_id, sample_id FROM rai4eo.patch").fetchall()
           if truth.get(sid, none)[0] is not None and E.split_value(pid) < a.holdout]
    conn.execute("CREATE TEMP TABLE heldout_truth (patch_id bigint PRIMARY KEY, changed boolean, onset date)")
    with conn.cursor() as c:
        c.executemany("INSERT INTO heldout_truth VALUES (%s, %s, %s)",
                      [(pid, ch, E.EPOCH + dt.timedelta(days=int(o)) if ch else None) for pid, ch, o in lab])
    print("%s: %d held-out labelled patches, %d changed" % (a.corpus, len(lab), sum(ch for _, ch, _ in lab)))
    for m in models:
        conn.execute("SELECT count(*) FROM rai4eo_cluster(%s, 8)", (m,))
        res = conn.execute("SELECT method, cv_f1, chosen FROM rai4eo_calibrate(%s, %s, 'pg_temp.heldout_truth')",
                           (m, YEAR)).fetchall()
        y = conn.execute("SELECT t.changed, y.score, y.changed, y.onset, t.onset FROM yearly_change("
                         "(SELECT ST_Envelope(ST_Collect(geom)) FROM rai4eo.patch), %s, %s) y "
                         "JOIN heldout_truth t USING (patch_id)", (YEAR, m)).fetchall()
        labels = np.array([r[0] for r in y], bool)
        scores = np.array([r[1] if r[1] is not None else -np.inf for r in y])
        errs = [abs((r[3] - r[4]).days) for r in y if r[0] and r[2] and r[3] is not None]
        chosen = next(r for r in res if r[2])
        print("  %-16s chosen %s: cv F1 %.2f, AUC %.3f, onset within 15 d %s | %s" % (
            m, chosen[0], chosen[1], E.roc_auc(scores, labels),
            "%.2f of %d" % (sum(e <= 15 for e in errs) / len(errs), len(errs)) if errs else "-",
            "  ".join("%s %.2f" % (r[0], r[1]) for r in res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
