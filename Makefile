# rai4eo — PGXS build, plus the core's unit tests, fuzzers and benchmarks.
#
#   make && make install        build and install the extension
#   make installcheck           pg_regress against a running server (PG* variables)
#   make unit                   core unit tests under AddressSanitizer + UBSan
#   make fuzz FUZZ_SECONDS=60   every libFuzzer target for a bounded time
#   make bench                  build the C benchmarks in bench/

EXTENSION = rai4eo
EXTVERSION = 0.3.0

MODULE_big = rai4eo
CORE_SRCS = $(sort $(wildcard src/core/*.c))
PG_SRCS = $(sort $(wildcard src/pg/*.c))
OBJS = $(CORE_SRCS:.c=.o) $(PG_SRCS:.c=.o)

# The install script is assembled from focused fragments, in name order.
# State fragments (schemas, the type, tables) run once, at install; later
# changes to them go through upgrade scripts.  Every other fragment is code
# (functions, procedures, views, comments, grants) and is re-run by the
# upgrade into this version, with CREATE turned into CREATE OR REPLACE, so an
# upgrade cannot forget a changed routine (docs/upgrades.md).
SQL_FRAGMENTS = $(sort $(wildcard sql/src/*.sql))
STATE_FRAGMENTS = $(addprefix sql/src/,00_schema.sql 10_embedding.sql 30_model.sql 40_corpus.sql 43_review.sql 51_day_series_type.sql)
CODE_FRAGMENTS = $(filter-out $(STATE_FRAGMENTS),$(SQL_FRAGMENTS))
# sql/upgrade/FROM--$(EXTVERSION).sql: the hand-written part of the upgrade into this version.
UPGRADE_SRCS = $(wildcard sql/upgrade/*--$(EXTVERSION).sql)
UPGRADE_SCRIPTS = $(patsubst sql/upgrade/%.sql,sql/$(EXTENSION)--%.sql,$(UPGRADE_SRCS))
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql $(UPGRADE_SCRIPTS)
# Upgrades between earlier versions, frozen as they were released.
DATA = $(wildcard sql/frozen/$(EXTENSION)--*--*.sql)

TESTS = $(sort $(wildcard test/sql/*.sql))
REGRESS = $(patsubst test/sql/%.sql,%,$(TESTS))
REGRESS_OPTS = --inputdir=test --outputdir=test/out --load-extension=postgis \
	--load-extension=postgis_raster --load-extension=$(EXTENSION)

PG_CPPFLAGS = -Iinclude -Isrc/pg
PG_CFLAGS = -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK = -lopenblas -lz -lm

EXTRA_CLEAN = $(DATA_built) test/out build

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS builds without dependency tracking: rebuild every object when a header changes
# (a struct that grew under stale objects smashes the stack at run time).
$(OBJS): $(wildcard include/rai4eo/*.h src/pg/*.h)

# -O2's very-cheap vectoriser skips loops of unknown length; the composites' month sums
# (element-wise, so vectorising them changes no result) are a tenth of a score query.
src/core/change_score.o: CFLAGS += -fvect-cost-model=dynamic

# PostgreSQL's own headers trip -Wsign-compare (ARR_DATA_PTR); the core keeps it.
$(PG_SRCS:.c=.o): CFLAGS += -Wno-sign-compare

sql/$(EXTENSION)--$(EXTVERSION).sql: $(SQL_FRAGMENTS)
	@mkdir -p $(dir $@)
	{ printf '%s\n' '-- rai4eo $(EXTVERSION) install script, generated from sql/src/*.sql: edit those.' \
	  '\echo Use "CREATE EXTENSION $(EXTENSION) CASCADE" to load this file. \quit'; \
	  for f in $(SQL_FRAGMENTS); do echo; echo "-- ---- $$f"; cat $$f; done; } > $@

# The upgrade: its hand-written part, then every code fragment made re-runnable.
$(UPGRADE_SCRIPTS): sql/$(EXTENSION)--%.sql: sql/upgrade/%.sql $(CODE_FRAGMENTS)
	@mkdir -p $(dir $@)
	{ printf '%s\n' '-- rai4eo upgrade $*, generated from sql/upgrade/$*.sql and the code fragments of sql/src.' \
	  '\echo Use "ALTER EXTENSION $(EXTENSION) UPDATE" to load this file. \quit' \
	  'SET LOCAL check_function_bodies = off;'; \
	  echo; echo "-- ---- $<"; cat $<; \
	  for f in $(CODE_FRAGMENTS); do echo; echo "-- ---- $$f"; \
	    sed -E 's/^CREATE (FUNCTION|PROCEDURE|VIEW|TRIGGER|AGGREGATE) /CREATE OR REPLACE \1 /' $$f; done; } > $@

# ---- core unit tests (no PostgreSQL) under sanitizers ------------------------
SAN_CC ?= cc
SAN_FLAGS = -std=gnu11 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -Wall -Wextra -Werror -Iinclude
UNIT_SRCS = $(sort $(wildcard test/unit/test_*.c))
UNIT_BINS = $(patsubst test/unit/%.c,build/unit/%,$(UNIT_SRCS))

build/unit/%: test/unit/%.c $(CORE_SRCS) $(wildcard include/rai4eo/*.h) test/unit/unit.h
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_FLAGS) -o $@ $(CORE_SRCS) $< -lopenblas -lz -lm

.PHONY: unit fuzz fuzz-build bench
unit: $(UNIT_BINS)
	@status=0; for t in $(UNIT_BINS); do \
	  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $$t || status=1; done; exit $$status

# ---- libFuzzer targets -------------------------------------------------------
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SRCS = $(sort $(wildcard test/fuzz/fuzz_*.c))
FUZZ_BINS = $(patsubst test/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
SEED_SRCS = $(sort $(wildcard test/fuzz/seeds_*.c))
SEED_BINS = $(patsubst test/fuzz/%.c,build/fuzz/%,$(SEED_SRCS))

build/fuzz/fuzz_%: test/fuzz/fuzz_%.c $(CORE_SRCS) $(wildcard include/rai4eo/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-Iinclude -o $@ $(CORE_SRCS) $< -lopenblas -lz -lm

build/fuzz/seeds_%: test/fuzz/seeds_%.c $(CORE_SRCS) $(wildcard include/rai4eo/*.h)
	@mkdir -p $(dir $@)
	$(SAN_CC) -std=gnu11 -g -O1 -Wall -Wextra -Werror -Iinclude -o $@ $(CORE_SRCS) $< -lopenblas -lz -lm

fuzz-build: $(FUZZ_BINS) $(SEED_BINS)

# Each seeds_X program writes seeds for the fuzz_X* targets into its directory
# (seeds_safetensors also writes JSON seeds into a second one).
SEED_EXTRA_safetensors = build/fuzz/corpus/json
fuzz: fuzz-build
	@status=0; rm -rf build/fuzz/corpus; mkdir -p build/fuzz/corpus/json; \
	$(foreach s,$(SEED_BINS),mkdir -p build/fuzz/corpus/$(s:build/fuzz/seeds_%=%); \
	  $(s) build/fuzz/corpus/$(s:build/fuzz/seeds_%=%) $(SEED_EXTRA_$(s:build/fuzz/seeds_%=%)) >/dev/null || status=1;) \
	for f in $(FUZZ_BINS); do n=$${f##*/fuzz_}; \
	  seeddir=; for d in build/fuzz/corpus/*; do case "$$n" in $${d##*/}*) seeddir=$$d;; esac; done; \
	  mkdir -p build/fuzz/work/$$n; \
	  echo "fuzzing $$n for $(FUZZ_SECONDS)s (seeds: $${seeddir:-none})"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=build/fuzz/$$n- \
	     build/fuzz/work/$$n $$seeddir > build/fuzz/$$n.log 2>&1 \
	     && echo "fuzz $$n: clean ($$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' build/fuzz/$$n.log | grep -o '[0-9]*$$') runs)" \
	     || { echo "fuzz $$n: FAILED"; tail -40 build/fuzz/$$n.log; status=1; }; \
	done; exit $$status

# ---- benchmarks --------------------------------------------------------------
BENCH_SRCS = $(sort $(wildcard bench/*_bench.c))
BENCH_BINS = $(patsubst bench/%.c,build/bench/%,$(BENCH_SRCS))
build/bench/%: bench/%.c $(CORE_SRCS) $(wildcard include/rai4eo/*.h)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Iinclude -o $@ $(CORE_SRCS) $< -lopenblas -lz -lm
bench: $(BENCH_BINS)
