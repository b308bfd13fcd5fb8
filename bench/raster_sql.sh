#!/usr/bin/env bash
# bench/raster_sql.sh — rai4eo_raster_values against PostGIS's ST_DumpValues on the same
# rasters, in one run: a Planet Fusion patch (200 x 200 x 4, 16BUI) and a Sentinel-2 patch
# (60 x 60 x 12, 16BUI), N copies of each, median of RUNS.  Usage: bench/raster_sql.sh [N] [RUNS]
source "$(dirname "$0")/../scripts/lib.sh"
N=${1:-200}
RUNS=${2:-5}
r4_start_cluster
r4_create_db rai4eo_bench_raster >/dev/null 2>&1 || r4_create_db rai4eo_bench_raster
r4_psql -d rai4eo_bench_raster <<SQL
CREATE FUNCTION mk(w int, h int, nb int, seed int) RETURNS raster LANGUAGE plpgsql AS \$\$
DECLARE r raster := ST_MakeEmptyRaster(w, h, 500000, 4400000, 600.0 / w, -600.0 / h, 0, 0, 32629);
BEGIN
	FOR b IN 1..nb LOOP
		r := ST_AddBand(r, '16BUI'::text, 0::float8, 0::float8);
		r := ST_SetValues(r, b, 1, 1, (SELECT array_agg(rv ORDER BY y) FROM (SELECT y, array_agg(((x * 7 + y * 13 + b * 101 + seed) % 9000 + 100)::float8 ORDER BY x) rv
			FROM generate_series(1, h) y, generate_series(1, w) x GROUP BY y) s));
	END LOOP;
	RETURN r;
END \$\$;
CREATE TABLE pf AS SELECT i, mk(200, 200, 4, i) AS r FROM generate_series(1, 8) i;
CREATE TABLE s2 AS SELECT i, mk(60, 60, 12, i) AS r FROM generate_series(1, 8) i;
-- N rows per table, 8 distinct rasters, each row its own copy
CREATE TABLE pf_n AS SELECT g, r FROM generate_series(1, $N) g JOIN pf ON pf.i = 1 + g % 8;
CREATE TABLE s2_n AS SELECT g, r FROM generate_series(1, $N) g JOIN s2 ON s2.i = 1 + g % 8;
VACUUM ANALYZE pf_n, s2_n;
SQL
timeit() { r4_query_median_ms rai4eo_bench_raster "$RUNS" "$1"; }
for t in pf_n s2_n; do
	nb=$([ "$t" = pf_n ] && echo 4 || echo 12)
	floor=$(timeit "SELECT count(ST_NumBands(r)) FROM $t")
	ours=$(timeit "SELECT count(rai4eo_raster_values(r)) FROM $t")
	theirs=$(timeit "SELECT count(v) FROM $t, LATERAL ST_DumpValues(r, NULL::int[], true) v")
	"$R4_PYTHON" - "$t" "$N" "$floor" "$ours" "$theirs" <<'PY'
import sys
t, n, floor, ours, theirs = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:])
print(f"{t}: {n} rasters, median of runs: scan+header floor {floor:.1f} ms; "
      f"rai4eo_raster_values {ours:.1f} ms ({ours / n:.3f} ms/raster); "
      f"ST_DumpValues {theirs:.1f} ms ({theirs / n:.3f} ms/raster); "
      f"ST_DumpValues / rai4eo_raster_values = {theirs / ours:.1f}x")
PY
done
