#!/usr/bin/env bash
# scripts/test.sh — the whole test suite: installs what is missing, builds, installs,
# starts a throwaway PostgreSQL (or uses the one named by PG* variables) and runs
# pg_regress, pgTAP, the core's unit tests under ASan+UBSan, the fuzzers and the
# Python tests (tools, PyTorch parity) and, when Citus is installed in that PostgreSQL,
# the Citus suite (test/citus, its own coordinator + 2 workers).  Exits non-zero if
# anything failed; a skipped test is counted as skipped, never as passed, and a build
# or install failure stops the run with a failure.
#
#   FUZZ_SECONDS=60   time per fuzz target (0 skips fuzzing)
source "$(dirname "$0")/lib.sh"
cd "$R4_ROOT"

r4_install_deps "${R4_TEST_PACKAGES[@]}"
r4_build_install
r4_start_cluster

passed=0
failed=0
skipped=0
steps_failed=()

# Run one step, keep its output, and add what it counted to the totals.
step() {
	local name=$1 counter=$2
	shift 2
	local log="build/test-$name.log" p f rc=0
	mkdir -p build
	r4_log "test step: $name"
	"$@" 2>&1 | tee "$log" || rc=$?
	read -r p f s < <("$counter" "$log")
	s=${s:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
	[ "$rc" -eq 0 ] && [ "$f" -eq 0 ] || steps_failed+=("$name")
	printf '%s: %d passed, %d failed, %d skipped\n' "$name" "$p" "$f" "$s" >&2
}

# Each counter prints "passed failed [skipped]" for one step's log (never fails itself).
count_regress() {
	awk '/\.\.\. ok|^ok / {p++} /\.\.\. FAILED|^not ok / {f++} END {print p+0, f+0}' "$1"
}
count_prove() {
	awk 'match($0, /Tests=[0-9]+/) {t += substr($0, RSTART + 6, RLENGTH - 6)}
		match($0, /Failed [0-9]+\/[0-9]+ subtests/) {split(substr($0, RSTART + 7), a, "/"); f += a[1]}
		END {print t - f, f + 0}' "$1"
}
count_unit() {
	awk '/[0-9]+ passed, [0-9]+ failed/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
		END { print p+0, f+0 }' "$1"
}
count_fuzz() {
	awk '/^fuzz .*: clean/ {p++} /^fuzz .*: FAILED/ {f++} END {print p+0, f+0}' "$1"
}
# unittest's summary: "Ran N tests" then "OK (skipped=S)" or "FAILED (failures=F, errors=E,
# skipped=S, expected failures=X, unexpected successes=U)".  Skips are not passes; an
# unexpected success is a failure (the test said it should fail).  A whole module that
# cannot be imported is an error, and unittest counts it so.
count_pyunit() {
	awk '/^Ran [0-9]+ test/ {r += $2}
		/^(OK|FAILED)/ {
			if (match($0, /\(failures=[0-9]+/)) f += substr($0, RSTART + 10, RLENGTH - 10)
			if (match($0, /errors=[0-9]+/)) f += substr($0, RSTART + 7, RLENGTH - 7)
			if (match($0, /unexpected successes=[0-9]+/)) f += substr($0, RSTART + 21, RLENGTH - 21)
			if (match($0, /[( ]skipped=[0-9]+/)) s += substr($0, RSTART + 9, RLENGTH - 9)
			if (match($0, /expected failures=[0-9]+/) && substr($0, RSTART - 11, 11) != "unexpected ") x += substr($0, RSTART + 18, RLENGTH - 18)
		}
		END {print r - f - s - x, f + x, s + 0}' "$1"
}
# The Citus suite when Citus is missing: every test it holds, skipped (never passed).
count_citus_skipped() {
	awk '/^citus: SKIPPED [0-9]+ tests/ {s += $3} END {print 0, 0, s + 0}' "$1"
}

run_regress() {
	mkdir -p test/out
	make -s installcheck PG_CONFIG="$(command -v pg_config)" || { cat test/out/regression.diffs 2>/dev/null | head -200; return 1; }
}

run_pgtap() {
	local files=(test/pgtap/*.sql)
	[ -e "${files[0]}" ] || { echo "no pgTAP tests"; return 0; }
	r4_create_db rai4eo_tap
	r4_psql -d rai4eo_tap -c "CREATE EXTENSION pgtap"
	pg_prove -d rai4eo_tap --ext .sql "${files[@]}"
}

run_python() {
	local dirs=() d
	for d in test/tools test/parity test/security; do [ -d "$d" ] && dirs+=("$d"); done
	local rc=0
	# every directory runs even when an earlier one failed: each failure is counted
	for d in "${dirs[@]}"; do
		R4_ROOT="$R4_ROOT" "$R4_PYTHON" -m unittest discover -s "$d" -p 'test_*.py' -v || rc=1
	done
	return $rc
}

# test/citus starts its own Citus cluster, so it runs only where Citus is installed in
# the PostgreSQL that pg_config names; elsewhere its tests are reported as skipped.
citus_installed() {
	local pkglib share
	pkglib=$(pg_config --pkglibdir) share=$(pg_config --sharedir)
	[ -f "$pkglib/citus.so" ] && [ -f "$share/extension/citus.control" ]
}
run_citus() {
	R4_ROOT="$R4_ROOT" PG_CONFIG="$(command -v pg_config)" "$R4_PYTHON" -m unittest discover -s test/citus -p 'test_*.py' -v
}
skip_citus() {
	local n
	n=$(cd test/citus && "$R4_PYTHON" -c 'import unittest; print(unittest.defaultTestLoader.discover(".", "test_*.py").countTestCases())')
	echo "citus: SKIPPED $n tests: Citus is not installed in $(pg_config --bindir)/.. (test/citus needs it)"
}

step regress count_regress run_regress
step pgtap count_prove run_pgtap
step unit count_unit make -s unit
if [ "${FUZZ_SECONDS:-60}" -gt 0 ]; then
	step fuzz count_fuzz make -s fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
fi
step python count_pyunit run_python
if citus_installed; then
	step citus count_pyunit run_citus
else
	step citus count_citus_skipped skip_citus
fi

echo
if [ ${#steps_failed[@]} -gt 0 ]; then
	echo "failed steps: ${steps_failed[*]}"
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ ${#steps_failed[@]} -eq 0 ]
