# scripts/lib.sh — shared by scripts/demo.sh and scripts/test.sh (sourced, not run).
#
# r4_install_deps   install the Debian packages the project needs (only the missing ones)
# r4_build_install  build the extension and install it into the PostgreSQL that pg_config names,
#                   and build the dashboard's front end (r4_build_dashboard)
# r4_start_cluster  use the server named by PG* variables, or start a throwaway one:
#                   initdb in a temporary directory, Unix socket only (no TCP), stopped on exit
# r4_psql           psql with ON_ERROR_STOP against the chosen server

set -euo pipefail

R4_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
R4_PG_MAJOR=15
R4_PYTHON=/usr/bin/python3

# Debian 12 packages; later features add theirs here.
R4_PACKAGES=(
	make gcc clang libclang-rt-14-dev
	postgresql-15 postgresql-server-dev-15 postgresql-15-postgis-3 postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl
	libopenblas-dev zlib1g-dev
	gdal-bin python3 python3-numpy python3-gdal python3-torch python3-psycopg
)
# What only the test suite needs: the review dashboard's browser test (tools/dashboard) and
# the GIS client tests (GeoPandas, QGIS), the real-scene test (raster2pgsql from postgis, the
# Landsat 7 crop L7_ETMs.tif of r-cran-stars); scripts/test.sh passes them to r4_install_deps.
R4_TEST_PACKAGES=(
	chromium chromium-driver python3-selenium python3-pil python3-geopandas python3-qgis
	postgis r-cran-stars
)

r4_log() { printf '\n== %s\n' "$*" >&2; }

# Run a command as root: directly when we are root, else through sudo.
r4_as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

r4_install_deps() {
	local missing=() p want=("${R4_PACKAGES[@]}" "$@")
	for p in "${want[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		r4_log "Debian packages: all ${#want[@]} present"
		return
	fi
	r4_log "installing Debian packages: ${missing[*]}"
	r4_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	r4_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---- the review dashboard's front end (tools/dashboard_app) -------------------------
# MapLibre GL comes from the npm registry at build time, at the version package-lock.json
# pins, and is vendored into tools/dashboard_app/vendor/ (git-ignored): the page loads
# nothing from the network at run time.  npm is Debian's unless one is already installed.
r4_install_dashboard_deps() {
	command -v npm >/dev/null && return
	r4_log "installing Debian packages: nodejs npm (the dashboard's front-end build)"
	r4_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
}

r4_build_dashboard() {
	r4_install_dashboard_deps
	r4_log "building the dashboard front end (npm ci, vendoring MapLibre GL)"
	"$R4_ROOT/tools/dashboard_app/build.sh"
}

r4_build_install() {
	# PG_CONFIG names another installation (a private copy, a source build).
	local pgc=${PG_CONFIG:-/usr/lib/postgresql/$R4_PG_MAJOR/bin/pg_config}
	[ -x "$pgc" ] || pgc=pg_config
	r4_log "building rai4eo"
	make -C "$R4_ROOT" -s PG_CONFIG="$pgc"
	r4_log "installing rai4eo into $("$pgc" --sharedir)"
	r4_as_root make -C "$R4_ROOT" -s PG_CONFIG="$pgc" install
	export PATH="$("$pgc" --bindir):$PATH"
	# Only tools/dashboard needs it (its test builds it again and fails if it cannot):
	# a machine without the npm registry still builds, tests and demos the rest.
	r4_build_dashboard || r4_log "warning: the dashboard front end was not built (npm registry unreachable?)"
}

r4_stop_cluster() {
	if [ -n "${R4_CLUSTER_DIR:-}" ] && [ -d "$R4_CLUSTER_DIR/data" ]; then
		r4_as_cluster_owner pg_ctl -D "$R4_CLUSTER_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
		rm -rf "$R4_CLUSTER_DIR"
	fi
}

# OpenBLAS 0.3.21 (Debian 12) does not know CPUs newer than it and falls back
# to its slowest (Prescott) kernels on them, 6x slower here.  Name the kernel
# family from the CPU flags unless the user already chose one.
r4_openblas_coretype() {
	[ -n "${OPENBLAS_CORETYPE:-}" ] && { echo "$OPENBLAS_CORETYPE"; return; }
	local flags
	flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
	if [[ $flags == *avx512f* && $flags == *avx512bw* && $flags == *avx512vl* && $flags == *avx512dq* ]]; then
		echo SkylakeX
	elif [[ $flags == *avx2* && $flags == *fma* ]]; then
		echo Haswell
	fi
}
R4_OPENBLAS_CORETYPE=$(r4_openblas_coretype)
if [ -n "$R4_OPENBLAS_CORETYPE" ]; then export OPENBLAS_CORETYPE=$R4_OPENBLAS_CORETYPE; fi

# The server refuses to run as root: when we are root it runs as user postgres.
# BLAS runs one thread per backend (rai4eo.blas_threads raises it per session).
r4_as_cluster_owner() {
	local env=(OPENBLAS_NUM_THREADS=1)
	[ -n "${OPENBLAS_CORETYPE:-}" ] && env+=(OPENBLAS_CORETYPE="$OPENBLAS_CORETYPE")
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- env PATH="$PATH" "${env[@]}" "$@"
	else
		env "${env[@]}" "$@"
	fi
}

r4_start_cluster() {
	if [ -n "${PGHOST:-}${PGPORT:-}${PGDATABASE:-}${PGSERVICE:-}" ]; then
		r4_log "using the server named by PG* variables (host=${PGHOST:-default} port=${PGPORT:-default})"
		return
	fi
	local port=${R4_PORT:-54329}
	R4_CLUSTER_DIR=$(mktemp -d /tmp/rai4eo-pg.XXXXXX)
	chmod 755 "$R4_CLUSTER_DIR"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$R4_CLUSTER_DIR"
	trap r4_stop_cluster EXIT
	r4_log "starting a throwaway PostgreSQL $R4_PG_MAJOR in $R4_CLUSTER_DIR (Unix socket only)"
	r4_as_cluster_owner initdb -D "$R4_CLUSTER_DIR/data" -U postgres -A trust -E UTF8 \
		--locale=C.UTF-8 --no-sync >"$R4_CLUSTER_DIR/initdb.log" 2>&1 \
		|| { cat "$R4_CLUSTER_DIR/initdb.log" >&2; return 1; }
	# No TCP at all: listen_addresses is empty, the socket lives in our directory.
	r4_as_cluster_owner pg_ctl -D "$R4_CLUSTER_DIR/data" -w -l "$R4_CLUSTER_DIR/server.log" \
		-o "-c listen_addresses='' -k $R4_CLUSTER_DIR -p $port -c fsync=off -c synchronous_commit=off \
			-c full_page_writes=off -c max_worker_processes=8 -c max_parallel_workers_per_gather=2" \
		start >/dev/null || { cat "$R4_CLUSTER_DIR/server.log" >&2; return 1; }
	export PGHOST=$R4_CLUSTER_DIR PGPORT=$port PGUSER=postgres PGDATABASE=postgres
}

r4_psql() {
	psql -X -q -v ON_ERROR_STOP=1 "$@"
}

# Create (or recreate) a database with rai4eo installed.
r4_create_db() {
	local db=$1
	r4_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
	r4_psql -d "$db" -c "CREATE EXTENSION rai4eo CASCADE"
}

# Print the median execution time in ms of a query over n runs (one backend, serial plans).
r4_query_median_ms() {
	local db=$1 n=$2 q=$3 t=()
	for _ in $(seq "$n"); do
		t+=("$(r4_psql -d "$db" -At -c "SET max_parallel_workers_per_gather = 0" \
			-c "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) $q" \
			| "$R4_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[0]["Execution Time"])')")
	done
	printf '%s\n' "${t[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
