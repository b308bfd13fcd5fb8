#!/usr/bin/env bash
# bench/change_sql.sh — yearly_heatmap over N patches x 146 Planet Fusion dates (2018-2019,
# every 5 days) of 384-d embeddings generated in SQL, against the floor: a plain
# SELECT sum(cosine_change(a, b)) over the same 2019-vs-2018 pairs stored side by side.
# Median of RUNS runs, one backend, serial plans, in the server named by PG* variables
# (or a throwaway one).  Usage: bench/change_sql.sh [N ...] (default 1000); RUNS=5 runs;
# EXPLAIN=1 also prints the plan of the pairing query (rai4eo.patch_change_stats, inlined).
# Also every change score of sql/src/56_score.sql through rai4eo.patch_scores: rate +
# persistence + change point + step (one pass over the pairs), + the composites (annual, seasonal,
# zscore: one more range scan per patch), + the cluster score (8 k-means states), and
# yearly_change with a stored persistence decision, each against the same floor.
# Measured on 2 shared cores: N=1000 takes about 1 min, N=10000 about 3 min (2.4 GB of embeddings).
source "$(dirname "$0")/../scripts/lib.sh"
RUNS=${RUNS:-5}
DB=${R4_BENCH_DB:-rai4eo_bench_change}
[ $# -gt 0 ] || set -- 1000
r4_start_cluster

for N in "$@"; do
	r4_create_db "$DB" >/dev/null 2>&1 || r4_create_db "$DB"
	r4_log "generating $N patches x 146 dates of 384-d embeddings"
	# session_replication_role = replica turns the foreign-key triggers off: the change
	# functions read rai4eo.embedding alone, so the bench stores no image rows.
	r4_psql -d "$DB" <<SQL
SET session_replication_role = replica;
INSERT INTO rai4eo.model (name, arch, config, weights, sha256)
VALUES ('bench', 'vit', '{"change_threshold": 0.3}', '\x00', sha256('\x00'));
-- A square block of patches in UTM zone 29 (ids and footprints as tools/synth lays them out).
INSERT INTO rai4eo.patch (patch_id, sample_id, geom)
SELECT rai4eo.patch_id_of(s), s, ST_MakeEnvelope(gx * 600, gy * 600, gx * 600 + 600, gy * 600 + 600, 32629)
FROM (SELECT 1000 + i % side AS gx, 7000 + i / side AS gy
	  FROM (SELECT ceil(sqrt($N))::int AS side) c, generate_series(0, $N - 1) i) g,
	 format('29N_%sE-%sN_%s_%s', gx / 40, gy / 40, lpad((gx % 40)::text, 2, '0'), lpad((gy % 40)::text, 2, '0')) s;
-- 1000 distinct random vectors, each embedding row its own copy, stored in image_id
-- order as rai4eo_refresh_embeddings writes them.
CREATE TEMP TABLE v AS SELECT i, (SELECT array_agg(random() - 0.5) FROM generate_series(1, 384) WHERE i >= 0)::real[]::embedding AS e
	FROM generate_series(0, 999) i;
INSERT INTO rai4eo.embedding (image_id, patch_id, model, emb)
SELECT rai4eo.image_id_of(p.patch_id, 'PF-SR', date '2018-01-03' + 5 * k), p.patch_id, 'bench', v.e
FROM rai4eo.patch p, generate_series(0, 145) k, v
WHERE v.i = (p.patch_id * 31 + k * 17) % 1000
ORDER BY 1;
-- The floor: the same pairs (2019 dates are 2018 dates + 365 days) side by side, inline.
CREATE TABLE pairs (a embedding, b embedding) WITH (toast_tuple_target = 8160);
INSERT INTO pairs
SELECT c.emb, q.emb FROM rai4eo.embedding c JOIN rai4eo.embedding q ON q.image_id = c.image_id - 365 AND q.model = c.model
WHERE rai4eo.image_acquired(c.image_id) >= date '2019-01-01';
VACUUM ANALYZE rai4eo.patch, rai4eo.embedding, pairs;
SQL
	aoi="(SELECT ST_Envelope(ST_Collect(geom)) FROM rai4eo.patch)"
	npairs=$(r4_psql -d "$DB" -At -c "SELECT count(*) FROM pairs")
	r4_psql -d "$DB" -c "SELECT sum(cosine_change(a, b)) FROM pairs" -c "SELECT ST_Width(yearly_heatmap($aoi, 2019, 'bench')) " >/dev/null  # warm
	if [ -n "${EXPLAIN:-}" ]; then
		r4_psql -d "$DB" -c "SET max_parallel_workers_per_gather = 0" -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)
			SELECT * FROM rai4eo.patch_change_stats($aoi, NULL, '2019-01-01', '2019-12-31', 'bench', 0.3, 'PF-SR', 2)"
	fi
	# JIT off for the floor too: the change functions run with jit = off (see sql/src/54_change.sql).
	export PGOPTIONS="${PGOPTIONS:-} -c jit=off"
	floor=$(r4_query_median_ms "$DB" "$RUNS" "SELECT sum(cosine_change(a, b)) FROM pairs")
	rows=$(r4_query_median_ms "$DB" "$RUNS" "SELECT count(*) FROM yearly_change($aoi, 2019, 'bench')")
	heat=$(r4_query_median_ms "$DB" "$RUNS" "SELECT yearly_heatmap($aoi, 2019, 'bench')")
	r4_psql -d "$DB" -q -c "SELECT count(*) FROM rai4eo_cluster('bench', 8, sample_size => 5000, iterations => 5)" >/dev/null
	ps="SELECT count(*) FROM rai4eo.patch_scores($aoi, NULL, 2019, 'bench', 'PF-SR', 2, 0.3, 0.3, 3"
	series=$(r4_query_median_ms "$DB" "$RUNS" "$ps, false, NULL)")
	comp=$(r4_query_median_ms "$DB" "$RUNS" "$ps, true, NULL)")
	clus=$(r4_query_median_ms "$DB" "$RUNS" "$ps, false, rai4eo.model_states('bench'))")
	r4_psql -d "$DB" -q -c "UPDATE rai4eo.model SET config = config || '{\"change_decision\": {\"method\": \"persistence\", \"threshold\": 0.3, \"k\": 3, \"cut\": 0.1}}' WHERE name = 'bench'"
	dec=$(r4_query_median_ms "$DB" "$RUNS" "SELECT count(*) FILTER (WHERE changed) FROM yearly_change($aoi, 2019, 'bench')")
	r4_psql -d "$DB" -q -c "UPDATE rai4eo.model SET config = config - 'change_decision' WHERE name = 'bench'"
	"$R4_PYTHON" - "$N" "$npairs" "$floor" "$rows" "$heat" "$RUNS" "$series" "$comp" "$clus" "$dec" <<'PY'
import sys
n, pairs = int(sys.argv[1]), int(sys.argv[2])
floor, rows, heat = map(float, sys.argv[3:6])
series, comp, clus, dec = map(float, sys.argv[7:11])
print(f"{n} patches x 146 dates, {pairs} pairs in 2019, 384-d, median of {sys.argv[6]} runs, one backend:")
print(f"  SELECT sum(cosine_change(a, b)) FROM pairs (floor)   {floor / 1000:8.3f} s  ({floor * 1e3 / pairs:6.2f} us/pair)")
print(f"  yearly_change(aoi, 2019) rows                        {rows / 1000:8.3f} s  ({rows * 1e3 / pairs:6.2f} us/pair, {rows / floor:.2f}x the floor)")
print(f"  yearly_heatmap(aoi, 2019)                            {heat / 1000:8.3f} s  ({heat * 1e3 / pairs:6.2f} us/pair, {heat / floor:.2f}x the floor)")
for name, t in (("scores: rate, persistence, change point, step", series), ("scores: + annual, seasonal, zscore", comp),
                ("scores: + cluster (8 states)", clus), ("yearly_change, persistence decision", dec)):
    print(f"  {name:<53}{t / 1000:8.3f} s  ({t * 1e3 / pairs:6.2f} us/pair, {t / floor:.2f}x the floor)")
PY
done
