#!/usr/bin/env bash
# Rebuild results/ablation.md: the seed paper's ablation rows plus this project's extensions,
# at CPU scale. Every run is shortened the same way (SHORT below): one epoch of STEPS optimizer
# steps on the full training data, dev evaluation, no test predictions, no WiSE-FT (except the
# default-wise row, which adds it to the default configuration).
#
#   bash sweeps/ablation.sh            # all rows, then the table
#   STEPS=100 bash sweeps/ablation.sh  # a quicker, noisier table
#
# Finished rows are skipped on a re-run (their run folder has summary.json), so an interrupted
# sweep continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-200}
OUT=${OUT:-runs/ablation}
SHORT="--epochs 1 --steps_per_epoch $STEPS --no_predictions --wise_alphas"

row() {  # row NAME FLAGS...
    local name=$1; shift
    if [ -f "$OUT/$name/summary.json" ]; then echo "== $name: done, skipped"; return; fi
    echo "== $name: $*"
    rm -rf "$OUT/$name"
    $PY multitask_classifier.py $SHORT --out_dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1 \
        || { echo "   failed, see $OUT/$name.log"; tail -3 "$OUT/$name.log"; }
}
mkdir -p "$OUT"

# The seed's rows (its baseline: round-robin sampling, pooler output, STS regressed on [u;v]).
row single-sst        --tasks sst
row single-para       --tasks para
row single-sts        --tasks sts
row rr-pooler         --sampling round_robin --pooling pooler --sts_head concat
row rr-pooler-cos     --sampling round_robin --pooling pooler
row rr-mean           --sampling round_robin --pooling mean
row sqrt-fgsm-mnrl    --sampling sqrt --fgsm --mnrl
row sqrt-fgsm-mnrl-pal --sampling sqrt --fgsm --mnrl --pal
# Beyond the seed.
row pcgrad            --sampling round_robin --pcgrad
row annealed          --sampling annealed
row cross             --para_head cross --sts_head cross
row smart             --smart
row default           # the no-flag main job's configuration (without WiSE-FT)
row default-wise      --wise_alphas 0.5 0.7 0.85
# STS head started from a least-squares fit (linear probe first): alone, and with all tasks.
row single-sts-fit    --tasks sts --sts_scale fit
row fit               --sts_scale fit

$PY sweeps/collect.py "$OUT" results/ablation.md --steps "$STEPS"
