#!/bin/sh
# The temporal classifier against the mono-temporal one on the same split, and the
# from -> to transitions of the planted changes, on a synthetic corpus.
#   [INPUT_MODEL=dino_pf] bench/temporal_eval.sh CORPUS_DIR [STEPS [TRAIN OPTIONS...]]
# (a loaded database named by PG* variables)
# CORPUS_DIR is the tools/synth output loaded with tools/load (its truth/changes.csv is read).
# Inputs are a raw-pixel embedding computed here in SQL (per-band mean and std of reflectance,
# an external model "px8"), so nothing but the database is needed; INPUT_MODEL names any
# stored model with embeddings instead.  The change decision is that model's, calibrated on
# the truth here.
set -eu
corpus=$1
steps=${2:-300}
shift; [ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")/.." && pwd)
input=${INPUT_MODEL:-px8}
psql -v ON_ERROR_STOP=1 -q <<SQL
SELECT rai4eo_create_external_model('px8', 8, replace => true) WHERE '$input' = 'px8';
INSERT INTO rai4eo.embedding (image_id, patch_id, model, emb)
SELECT i.image_id, i.patch_id, 'px8', ARRAY(SELECT v FROM generate_series(1, 4) b,
	LATERAL ST_SummaryStats(i.rast, b, true) s, LATERAL unnest(ARRAY[s.mean * 1e-4, s.stddev * 1e-4]) v)::embedding
FROM rai4eo.image i WHERE i.sensor = 'PF-SR' AND '$input' = 'px8'
ON CONFLICT DO NOTHING;
DROP TABLE IF EXISTS public.temporal_truth;
CREATE TABLE public.temporal_truth (sample_id text, day date, kind text, fraction float8);
\copy public.temporal_truth FROM '$corpus/truth/changes.csv' CSV HEADER
DROP TABLE IF EXISTS public.temporal_changed;
CREATE TABLE public.temporal_changed AS
SELECT p.patch_id, coalesce(bool_or(t.fraction >= 0.05), false) AS changed,
	   (array_agg(t.kind ORDER BY t.fraction DESC))[1] AS kind
FROM rai4eo.patch p LEFT JOIN public.temporal_truth t USING (sample_id) GROUP BY 1;
SELECT method, cv_f1, fit_f1 FROM rai4eo_calibrate('$input', 2019, 'public.temporal_changed') WHERE chosen;
SQL
"$here/tools/train" temporal --input-model "$input" --baseline --steps "$steps" --report temporal_eval.json \
	--register clc7_lstm --quiet "$@"
/usr/bin/python3 - <<'PY'
import json
r = json.load(open("temporal_eval.json"))
for label, x in (("temporal", r), ("mono-temporal", r["mono_temporal"])):
    print("%-14s micro F1 %.3f  macro F1 %.3f  per class: %s" % (label, x["micro"]["f1"], x["macro"]["f1"],
          ", ".join("%s %s" % (m["class"], "-" if m["f1"] is None else "%.3f" % m["f1"]) for m in x["per_class"])))
PY
for rule in top shift; do
echo "transitions of the truly changed patches decided changed, rule $rule:"
psql -v ON_ERROR_STOP=1 -v rule=$rule <<'SQL'
\pset footer off
WITH t AS (
	SELECT c.kind, x.from_class, x.to_class,
		   x.from_class = split_part(e.pair, '->', 1) AS from_ok,
		   x.from_class || '->' || x.to_class = e.pair AS matches
	FROM class_transitions((SELECT ST_SetSRID(ST_Extent(geom)::geometry, min(ST_SRID(geom))) FROM rai4eo.patch),
						   2019, 'clc7_lstm', rule => :'rule') x
	JOIN public.temporal_changed c USING (patch_id)
	CROSS JOIN LATERAL (SELECT CASE c.kind
			WHEN 'forest_to_shrub' THEN 'forest->shrub' WHEN 'agriculture_to_construction' THEN 'agricultural->artificial'
			WHEN 'water_to_bare' THEN 'water->bare' WHEN 'bare_to_water' THEN 'bare->water' END AS pair) e
	WHERE c.changed)
SELECT coalesce(kind, 'all') AS kind, count(*) AS changed_and_found, count(*) FILTER (WHERE from_ok) AS from_matches,
	   count(*) FILTER (WHERE matches) AS pair_matches, round(avg(matches::int), 3) AS share,
	   string_agg(DISTINCT from_class || '->' || to_class, ', ') AS pairs_seen
FROM t GROUP BY ROLLUP (kind) ORDER BY kind NULLS LAST;
SQL
done
