#!/usr/bin/env bash
# scripts/demo.sh — the main job, end to end: installs what is missing, builds and
# installs rai4eo, starts a throwaway PostgreSQL (or uses the one named by PG*
# variables), creates a database with the extension and runs the guided tour.
source "$(dirname "$0")/lib.sh"
cd "$R4_ROOT"

r4_install_deps
r4_build_install
r4_start_cluster
DB=${R4_DEMO_DB:-rai4eo_demo}
r4_log "creating database $DB with CREATE EXTENSION rai4eo CASCADE"
r4_create_db "$DB" 2>&1 | grep -v '^NOTICE' || true
r4_log "guided SQL tour of the embedding type"
psql -X -e -v ON_ERROR_STOP=1 -d "$DB" -f examples/embedding_tour.sql
