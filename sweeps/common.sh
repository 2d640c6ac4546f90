# Shared by the sweep scripts, sourced after they set STEPS and OUT: strict mode, the repository
# root as working folder, the shortened run (SHORT: one epoch of STEPS steps, dev metrics only,
# no WiSE-FT), and
#
#   row NAME FLAGS...   run multitask_classifier.py with $SHORT FLAGS into $OUT/NAME, log in
#                       $OUT/NAME.log; a row whose folder already has summary.json is skipped, so
#                       an interrupted sweep continues where it stopped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
SHORT="--epochs 1 --steps_per_epoch $STEPS --no_predictions --wise_alphas"

row() {
    local name=$1; shift
    if [ -f "$OUT/$name/summary.json" ]; then echo "== $name: done, skipped"; return; fi
    echo "== $name: $*"
    rm -rf "${OUT:?}/$name"
    $PY multitask_classifier.py $SHORT --out_dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 \
        || { echo "   failed, see $OUT/$name.log"; tail -3 "$OUT/$name.log"; }
}
mkdir -p "$OUT"
