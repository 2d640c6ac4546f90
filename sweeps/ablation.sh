#!/usr/bin/env bash
# Rebuild results/ablation.md: the seed paper's ablation rows plus this project's extensions,
# at CPU scale. Every run is shortened the same way (SHORT below): one epoch of STEPS optimizer
# steps on the full training data, dev evaluation, no test predictions, no WiSE-FT (except the
# default-wise row, which adds it to the default configuration).
#
#   bash sweeps/ablation.sh            # all rows, then the table
#   STEPS=600 bash sweeps/ablation.sh  # longer rows, a less noisy table
#
# Finished rows are skipped on a re-run (sweeps/common.sh), so an interrupted sweep continues
# where it stopped.
STEPS=${STEPS:-120}
OUT=${OUT:-runs/ablation}
source "$(dirname "$0")/common.sh"

# The seed's rows. Its heads: bi-encoded PARA and the fixed 2.5·(1 + cos) STS score (SEED below);
# its baseline: round-robin sampling, pooler output, STS regressed on [u; v].
SEED="--para_head concat --sts_scale fixed"
row single-sst        --tasks sst
row single-para       --tasks para
row single-sts        --tasks sts
row rr-pooler         $SEED --sampling round_robin --pooling pooler --sts_head concat
row rr-pooler-cos     $SEED --sampling round_robin --pooling pooler
row rr-mean           $SEED --sampling round_robin --pooling mean
row sqrt-fgsm-mnrl    $SEED --sampling sqrt --fgsm --mnrl
row sqrt-fgsm-mnrl-pal $SEED --sampling sqrt --fgsm --mnrl --pal
# Beyond the seed, each row one change from the default.
row pcgrad            --sampling round_robin --pcgrad
row annealed          --sampling annealed
row smart             --smart
row fgsm              --fgsm                    # the seed's ε = 1e-5
row fgsm-1e-3         --fgsm --fgsm_eps 1e-3
row fgsm-1e-2         --fgsm --fgsm_eps 1e-2
row bi-para           --para_head concat
row cross-sts         --sts_head cross
row sts-fixed         --sts_scale fixed
row lr-2e-5           --lr 2e-5
row layer-decay       --layer_decay 0.8
row freeze-2          --freeze_layers 2
row default           # the no-flag main job's configuration (without WiSE-FT)
row default-wise      --wise_alphas 0.5 0.7 0.85

$PY sweeps/collect.py "$OUT" results/ablation.md --steps "$STEPS"
