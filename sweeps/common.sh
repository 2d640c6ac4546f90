# Shared by the sweep scripts (sourced from the repository root, after PY, OUT and SHORT are set).
#
#   row NAME FLAGS...   run multitask_classifier.py with $SHORT FLAGS into $OUT/NAME, log in
#                       $OUT/NAME.log; a row whose folder already has summary.json is skipped, so
#                       an interrupted sweep continues where it stopped.
row() {
    local name=$1; shift
    if [ -f "$OUT/$name/summary.json" ]; then echo "== $name: done, skipped"; return; fi
    echo "== $name: $*"
    rm -rf "${OUT:?}/$name"
    $PY multitask_classifier.py $SHORT --out_dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 \
        || { echo "   failed, see $OUT/$name.log"; tail -3 "$OUT/$name.log"; }
}
mkdir -p "$OUT"
