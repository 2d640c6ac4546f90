#!/usr/bin/env bash
# The main job trained with several seeds, then predicted as one ensemble (each task's scores
# averaged: SST class probabilities, PARA probability, STS score). Each member is a full default
# run (about 24 min on a 2-core CPU); the ensemble writes the six prediction files and the table
# results/ensemble.md.
#
#   bash sweeps/ensemble.sh                  # seeds 11711 (the default's), 1 and 2
#   SEEDS="11711 1 2 3" bash sweeps/ensemble.sh
#
# Finished members are skipped on a re-run (sweeps/common.sh).
OUT=${OUT:-runs/ensemble}
SEEDS=${SEEDS:-11711 1 2}
source "$(dirname "$0")/common.sh"

members=()
for seed in $SEEDS; do
    run "seed-$seed" --seed "$seed" --no_predictions
    members+=("$OUT/seed-$seed")
done
wait  # for members still training (JOBS>1)
[ -z "${DRY_RUN:-}" ] || exit 0
# shellcheck disable=SC2086  # EXTRA is a list of flags
$PY multitask_classifier.py --eval_only --checkpoint "${members[@]}" ${EXTRA:-} 2>&1 | tee "$OUT/ensemble.log"
$PY sweeps/collect.py "$OUT" "$RESULTS/ensemble.md" --ensemble "$OUT/ensemble.log" --script sweeps/ensemble.sh
