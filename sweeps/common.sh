# Shared by the sweep scripts, sourced after they set OUT (and STEPS, for shortened rows): strict
# mode, the repository root as working folder, the shortened run (SHORT: one epoch of STEPS steps,
# dev metrics only, no WiSE-FT), and
#
#   run NAME FLAGS...   run multitask_classifier.py FLAGS into $OUT/NAME, log in $OUT/NAME.log;
#                       a run whose folder already has summary.json is skipped, so an
#                       interrupted sweep continues where it stopped
#   row NAME FLAGS...   the same, shortened: run NAME $SHORT FLAGS
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
SHORT="--epochs 1 --steps_per_epoch ${STEPS:-0} --no_predictions --wise_alphas"

run() {
    local name=$1; shift
    if [ -f "$OUT/$name/summary.json" ]; then echo "== $name: done, skipped"; return; fi
    echo "== $name: $*"
    rm -rf "${OUT:?}/$name"
    $PY multitask_classifier.py --out_dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 \
        || { echo "   failed, see $OUT/$name.log"; tail -3 "$OUT/$name.log"; }
}
row() {
    local name=$1; shift
    run "$name" $SHORT "$@"
}
mkdir -p "$OUT"
