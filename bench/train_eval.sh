#!/bin/sh
# One training experiment, end to end: synth -> load -> train -> refresh -> evaluate.
#   bench/train_eval.sh REGION SEED TAG [tools/train dino options...]
# (a PostgreSQL server named by PG* variables with rai4eo installed)
#
# The corpus is `tools/synth --region REGION --seed SEED --grid 10 --date-step 4
# --change-share 0.2` in $R4_EVAL_DIR (default /tmp/r4-train-eval), loaded once into the
# database r4eval_REGION_SEED (both kept between runs, so only the first run of a corpus
# pays for them).  The random-weights baseline (tools/train dino --steps 0, the same
# architecture options) is registered once per architecture; the trained model is
# registered as TAG, trained with --holdout $HOLDOUT (default 0.5) and the options given,
# and tools/evaluate scores TAG, the random network and the raw pixels on the held-out
# patches.  Prints one line per model (its best score by cross-validated F1) and appends
# it to $R4_EVAL_DIR/log.txt; the full report goes to $R4_EVAL_DIR/TAG.REGION.SEED.txt.
# Environment: THREADS (default 1) torch threads for training, HOLDOUT, GRID (10),
# DATE_STEP (4), CHANGE_SHARE (0.2); FROM=CHECKPOINT re-exports a finished run's checkpoint
# with the options given (--avgpool, --n-last-blocks, --export-backbone) instead of training.
set -eu
region=$1 seed=$2 tag=$3
shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${R4_EVAL_DIR:-/tmp/r4-train-eval}
threads=${THREADS:-1}
holdout=${HOLDOUT:-0.5}
grid=${GRID:-10}
corpus=$dir/$region-$seed-g$grid
db=r4eval_${region}_${seed}_g$grid
mkdir -p "$dir"
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
py=/usr/bin/python3

if [ ! -f "$corpus/truth/changes.csv" ]; then
	$py "$here/tools/synth" --out "$corpus" --region "$region" --seed "$seed" --grid "$grid" \
		--date-step "${DATE_STEP:-4}" --change-share "${CHANGE_SHARE:-0.2}" --no-s2 --quiet --jobs 1 --force
fi
if [ "$(psql -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 0 ]; then
	createdb "$db"
	psql -d "$db" -q -c "CREATE EXTENSION rai4eo CASCADE"
	$py "$here/tools/load" --dsn "dbname=$db" --quiet "$corpus"
fi

# The architecture options decide which random baseline is comparable.
archargs=$(printf '%s\n' "$@" | awk '/^--(embed-dim|depth|num-heads|patch-size|mlp-ratio|global-size|input|n-last-blocks|readout|readout-grid)$/ {print; getline; print} /^--avgpool$/ {print}' | tr '\n' ' ')
# Without --readout-grid both resolve the same grid from the images (tools/train dino's
# default); "grid:auto" keeps baselines registered before that default apart.
random=rand_$(printf '%s grid:auto' "$archargs" | cksum | cut -d' ' -f1)
if [ "$(psql -d "$db" -Atc "SELECT count(*) FROM rai4eo.model WHERE name = '$random'")" = 0 ]; then
	# shellcheck disable=SC2086
	$py "$here/tools/train" dino --dsn "dbname=$db" --steps 0 --threads "$threads" --quiet \
		--register "$random" $archargs >/dev/null
	psql -d "$db" -q -c "CALL rai4eo_refresh_embeddings('$random', 'PF-SR', 32)" 2>/dev/null
fi

t0=$(date +%s)
if [ -n "${FROM:-}" ]; then
	set -- --checkpoint "$FROM" --resume "$@"
	cp "$dir/$(basename "$FROM" .pt).$region.$seed.train" "$dir/$tag.$region.$seed.train" 2>/dev/null || :
else
	: >"$dir/$tag.$region.$seed.train"
fi
$py "$here/tools/train" dino --dsn "dbname=$db" --threads "$threads" --holdout "$holdout" \
	--register "$tag" --log-every 25 "$@" >>"$dir/$tag.$region.$seed.train" 2>&1 ||
	{ tail -5 "$dir/$tag.$region.$seed.train"; exit 1; }
t1=$(date +%s)
psql -d "$db" -q -c "DELETE FROM rai4eo.embedding WHERE model = '$tag'"
psql -d "$db" -q -c "CALL rai4eo_refresh_embeddings('$tag', 'PF-SR', 32)" 2>/dev/null
t2=$(date +%s)
$py "$here/tools/evaluate" --dsn "dbname=$db" "$corpus" "$tag" "$random" --holdout "$holdout" \
	--json "$dir/$tag.$region.$seed.json" >"$dir/$tag.$region.$seed.txt"
steps=$(grep -o 'steps 0\.\.[0-9]*' "$dir/$tag.$region.$seed.train" | tail -1 | cut -d. -f3)
$py - "$dir/$tag.$region.$seed.json" "$tag" "$random" "$region/$seed" "$steps" $((t1 - t0)) $((t2 - t1)) "$*" <<'PY' | tee -a "$dir/log.txt"
import json, math, sys
path, tag, rnd, corpus, steps, ttrain, tembed, flags = sys.argv[1:]
r = json.load(open(path))
def best(scores):
    k = max(scores, key=lambda s: (scores[s]["f1_cv"], scores[s]["auc"]))
    return k, scores[k]
out = []
for name, label in ((tag, "trained"), (rnd, "random"), ("pixels", "pixels")):
    k, s = best(r["models"][name])
    auc = max(v["auc"] for v in r["models"][name].values())
    on = r["models"][name]["changepoint"].get("onset_within_15d", float("nan"))
    out.append("%s %.3f/%.3f(%s, maxAUC %.3f, onset15 %.2f)" % (label, s["auc"], s["f1_cv"], k, auc, on))
print("%s %s n=%d steps=%s train=%ss embed=%ss | %s | %s" % (tag, corpus, r["patches"], steps, ttrain, tembed,
      " ; ".join(out), flags))
PY
