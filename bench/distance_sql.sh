#!/usr/bin/env bash
# bench/distance_sql.sh — SELECT sum(cosine_change(a, b)) over ROWS rows against the
# same scan with sum(0) (the floor), median of RUNS runs, in the server named by PG*
# variables (or a throwaway one).  Usage: bench/distance_sql.sh [ROWS] [DIMS] [RUNS]
source "$(dirname "$0")/../scripts/lib.sh"
ROWS=${1:-1000000}
DIMS=${2:-384}
RUNS=${3:-5}
r4_start_cluster
r4_create_db rai4eo_bench >/dev/null 2>&1 || r4_create_db rai4eo_bench
r4_log "building $ROWS rows of $DIMS-d pairs"
# 1000 distinct random vectors, copied into every row (each row stores its own values).
r4_psql -d rai4eo_bench <<SQL
SET max_parallel_workers_per_gather = 0;
CREATE TABLE v AS SELECT i, (SELECT array_agg(random() - 0.5) FROM generate_series(1, $DIMS) WHERE i >= 0)::real[]::embedding AS e
	FROM generate_series(0, 999) i;
CREATE TABLE pairs AS SELECT g AS id, a.e AS a, b.e AS b FROM generate_series(1, $ROWS) g
	JOIN v a ON a.i = g % 1000 JOIN v b ON b.i = (g * 7 + 3) % 1000;
-- The same rows kept inline: two 384-d embeddings (3 KB) pass the 2 KB TOAST threshold.
CREATE TABLE pairs_inline (id int, a embedding, b embedding) WITH (toast_tuple_target = 8160);
INSERT INTO pairs_inline SELECT * FROM pairs;
VACUUM ANALYZE pairs, pairs_inline;
SQL
timeit() { r4_query_median_ms rai4eo_bench "$RUNS" "$1"; }
for t in pairs pairs_inline; do
	r4_psql -d rai4eo_bench -c "SELECT sum(cosine_change(a, b)) FROM $t" >/dev/null  # warm the cache
	floor=$(timeit "SELECT sum(0) FROM $t")
	detoast=$(timeit "SELECT sum(embedding_dims(a) + embedding_dims(b)) FROM $t")
	full=$(timeit "SELECT sum(cosine_change(a, b)) FROM $t")
	echo "table $t ($ROWS rows, $DIMS-d, median of $RUNS, one backend):"
	printf '  %-58s %10.1f ms\n' "SELECT sum(0) (scan floor)" "$floor" \
		"SELECT sum(embedding_dims(a) + embedding_dims(b)) (detoast)" "$detoast" \
		"SELECT sum(cosine_change(a, b))" "$full"
	"$R4_PYTHON" -c "f=$floor; d=$detoast; c=$full; r=$ROWS; print(f'  ratio {c/f:.2f}x the floor; {(c-d)*1e6/r:.0f} ns per cosine_change beyond detoasting, {(d-f)*1e6/r:.0f} ns per row to detoast both')"
done
