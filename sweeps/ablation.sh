#!/usr/bin/env bash
# Rebuild results/ablation.md: the seed paper's extensions and this project's choices, each row
# one change from the default, at CPU scale and at several seeds. Every run is shortened the same
# way (SHORT in common.sh): one epoch of STEPS optimizer steps on the full training data, dev
# evaluation, no test predictions. The table gives each row's Δ overall against the default with
# a 95% CI over the dev examples and the seeds (compare.py); `*` marks rows whose CI excludes 0.
#
#   JOBS=2 bash sweeps/ablation.sh                   # all rows, seeds 1 and 2: about 2.5 h on 2 cores
#   SEEDS="1 2 3" STEPS=600 bash sweeps/ablation.sh  # tighter and longer
#   ROWS="default fgsm" bash sweeps/ablation.sh      # some rows only
#   JOBS=4 bash sweeps/ablation.sh                   # 4 runs at once, one per GPU (sweeps/common.sh)
#
# Finished runs are skipped on a re-run, so an interrupted sweep continues where it stopped.
STEPS=${STEPS:-250}
OUT=${OUT:-runs/ablation}
source "$(dirname "$0")/common.sh"

row default                                 # the no-flag main job's configuration, shortened
# The seed paper's choices, against this project's defaults.
row bi-para         --para_head concat      # PARA on two separately encoded sentences
row sts-fixed       --sts_scale fixed       # the seed's 2.5·(1 + cos) STS score
row pooler          --pooling pooler        # BERT's pooler output instead of mean pooling
row round-robin     --sampling round_robin
row fgsm            --fgsm --fgsm_eps 1e-3
row mnrl            --mnrl
row pcgrad          --pcgrad                # global updates: a batch of every task per step
row pal             --pal
# This project's other options.
row smart           --smart
row cross-sts       --sts_head cross
row annealed        --sampling annealed
row lr-2e-5         --lr 2e-5
row frozen-encoder  --option pretrain       # the starter's linear probe: only the heads train

wait  # for runs still going (JOBS>1)
[ -n "${DRY_RUN:-}" ] || $PY sweeps/collect.py "$OUT" "$RESULTS/ablation.md" --steps "$STEPS" \
    --reference default --plot "$RESULTS/ablation.png"
