#!/usr/bin/env bash
# scripts/demo.sh — the main job, end to end: installs what is missing, builds and
# installs rai4eo, starts a throwaway PostgreSQL (or uses the one named by PG*
# variables), creates a database with the extension and runs tools/demo: a synthetic
# AOI corpus with planted 2019 changes, loaded, a DINO ViT trained on it from the
# database, every image embedded in the database, thresholds calibrated, the 2019
# heatmap and the report written to R4_DEMO_OUT (default ./demo-out).
#
#   scripts/demo.sh [tools/demo options, e.g. --train-minutes 10 --grid 12]
source "$(dirname "$0")/lib.sh"
cd "$R4_ROOT"

r4_install_deps
r4_build_install
r4_start_cluster
DB=${R4_DEMO_DB:-rai4eo_demo}
OUT=${R4_DEMO_OUT:-$R4_ROOT/demo-out}
r4_log "creating database $DB with CREATE EXTENSION rai4eo CASCADE"
r4_create_db "$DB" 2>&1 | grep -v '^NOTICE' || true
mkdir -p "$OUT"
r4_log "running the pipeline (tools/demo), output in $OUT"
"$R4_PYTHON" tools/demo --dsn "dbname=$DB" --out "$OUT" --corpus "$OUT/corpus" "$@"
r4_log "done: $OUT/report.md, heatmap_2019.tif, heatmap_2019.png, patch_change_2019.csv"
