# Shared by the sweep scripts, sourced after they set OUT (and STEPS, for shortened rows). Settings,
# all optional, from the environment:
#
#   SEEDS="1 2"   seeds of every row (a row is one configuration; each seed is one run)
#   ROWS="a b"    run only these rows (default: all)
#   EXTRA="..."   flags added to every run (the tests point runs at a tiny model and data)
#   RESULTS=dir   where tables go (default results/)
#   DRY_RUN=1     print each run's command line instead of running it
#   PY=...        the Python to run (default .venv/bin/python)
#
#   run NAME FLAGS...   multitask_classifier.py FLAGS into $OUT/NAME, log in $OUT/NAME.log;
#                       a run whose folder already has summary.json is skipped, so an
#                       interrupted sweep continues where it stopped
#   row NAME FLAGS...   shortened runs (SHORT: one epoch of STEPS steps, dev metrics only, no
#                       WiSE-FT), one per seed of SEEDS, named NAME-sSEED
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-1 2}
RESULTS=${RESULTS:-results}
SHORT="--epochs 1 --steps_per_epoch ${STEPS:-0} --no_predictions"

selected() { [ -z "${ROWS:-}" ] || [[ " $ROWS " == *" $1 "* ]]; }

run() {
    local name=$1; shift
    if [ -n "${DRY_RUN:-}" ]; then echo "$name: $* ${EXTRA:-}"; return; fi
    if [ -f "$OUT/$name/summary.json" ]; then echo "== $name: done, skipped"; return; fi
    echo "== $name: $*"
    rm -rf "${OUT:?}/$name"
    # shellcheck disable=SC2086  # EXTRA is a list of flags
    $PY multitask_classifier.py --out_dir "$OUT/$name" "$@" ${EXTRA:-} > "$OUT/$name.log" 2>&1 \
        || { echo "   failed, see $OUT/$name.log"; tail -3 "$OUT/$name.log"; }
}
row() {
    local name=$1; shift
    selected "$name" || return 0
    for seed in $SEEDS; do
        run "$name-s$seed" $SHORT --seed "$seed" "$@"
    done
}
mkdir -p "$OUT" "$RESULTS"
