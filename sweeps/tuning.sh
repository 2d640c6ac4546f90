#!/usr/bin/env bash
# Rebuild results/tuning.md: the runs that chose the default configuration. Each is one epoch
# of STEPS (default 600) optimizer steps, so that learning rates and heads are compared after
# they have had time to matter; dev metrics, at each seed of SEEDS, Δ against lr1e-4-crosspara
# (the default's learning rate and PARA head) with its 95% CI.
#
#   bash sweeps/tuning.sh
#
# Finished runs are skipped on a re-run (sweeps/common.sh).
STEPS=${STEPS:-600}
OUT=${OUT:-runs/explore}
source "$(dirname "$0")/common.sh"

BI="--para_head concat"  # the bi-encoded PARA head, the default when these rows were first run
row lr1e-4-crosspara  --lr 1e-4 --para_head cross
row base600           $BI --lr 2e-5
row lr5e-5            $BI --lr 5e-5
row lr1e-4            $BI --lr 1e-4
row lr2e-4            $BI --lr 2e-4
row crosspara         --lr 2e-5 --para_head cross
row mnrl              $BI --lr 2e-5 --mnrl
row lr1e-4-sym        $BI --lr 1e-4 --para_symmetric
row lr2e-4-ld08       $BI --lr 2e-4 --layer_decay 0.8
row lr1e-4-fz2        $BI --lr 1e-4 --freeze_layers 2

wait  # for runs still going (JOBS>1)
[ -n "${DRY_RUN:-}" ] || $PY sweeps/collect.py "$OUT" "$RESULTS/tuning.md" --steps "$STEPS" \
    --script sweeps/tuning.sh --reference lr1e-4-crosspara
