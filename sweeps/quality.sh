#!/usr/bin/env bash
# Rebuild results/quality.md: candidates for a better default, each a FULL main job (no flag
# shortens it) at every seed of SEEDS, against the default of the time (BASE below) at the same
# seeds: Δ overall with a 95% CI over the dev examples and the seeds (compare.py). A candidate
# becomes the default only when its CI excludes 0. About 15 min per run on 2 cores (21 with
# R-Drop; JOBS=2: two at a time, one core each, about twice as long).
#
#   JOBS=2 bash sweeps/quality.sh
#   SEEDS="11711 1 2" ROWS="default label-smoothing" bash sweeps/quality.sh
#   JOBS=2 EXTRA="--threads 1" bash sweeps/quality.sh   # two runs at once on 2 cores
#
# Finished runs are skipped on a re-run (sweeps/common.sh).
OUT=${OUT:-runs/quality}
SEEDS=${SEEDS:-11711 1}
source "$(dirname "$0")/common.sh"

# Every row was measured against the default of its time, which had R-Drop off; this table made
# R-Drop at weight 3 the default. BASE keeps that old default under every row, so that a re-run
# measures what the table shows (a row's own flags come after it and win). The rows before
# fast-dropout drew torch's dropout masks, those before attention-groups attended on one grid
# per batch, and every row before pair-orders-predict predicted PARA from one pair order: BASE
# keeps all three, so that a re-run repeats them. (And no in-domain MLM: the default, said
# outright.)
BASE=${BASE:---rdrop 0 --no-fast_dropout --no-attention_groups --pair_orders one --mlm_epochs 0}

TRAINED=()  # the rows that train (the first two tables); `rescore` rows only score saved models
full() {  # full NAME FLAGS...: the main job with BASE and FLAGS at every seed, named NAME-sSEED
    local name=$1; shift
    TRAINED+=("$name")
    selected "$name" || return 0
    for seed in $SEEDS; do
        # shellcheck disable=SC2086  # BASE is a list of flags
        run "$name-s$seed" --seed "$seed" --no_predictions $BASE "$@"
    done
}

full default                                 # the reference: the default before this table
full label-smoothing  --label_smoothing 0.1  # SST-5: most errors are off by one class
full pair-orders      --pair_orders both     # PARA pairs in both orders; predictions average them
full ema              --ema 0.998            # evaluate an average of the weights (~ last 500 steps)
full attn-dropout-0   --attention_dropout 0  # CPU SDPA's fused kernel needs attention dropout 0
full epochs-4         --epochs 4             # more steps: 3,848 instead of 2,405 (~ +60% time)
full head-lr-1e-4     --head_lr 1e-4         # heads at the encoder's lr instead of 10x it
full para-cosine      --para_cosine          # PARA logit += w·cos of the bi-encoded sentences
full sst-ordinal      --sst_ordinal 1        # SST-5: + ordinal log loss (far classes cost more)
full rdrop            --rdrop 1              # SST-5: R-Drop, two dropout passes pulled together
full dropout-0.2      --hidden_dropout_prob 0.2  # more dropout: is R-Drop's gain plain regularisation?
full annealed         --sampling annealed    # task sampling from proportional to even over the run
full rdrop-3          --rdrop 3              # R-Drop with 3x the weight on the two passes' KL: the default now
full msd-4            --msd 4                # SST-5: multi-sample dropout, 4 draws of the head's dropout

# Rows on today's default (R-Drop at weight 3): their Δ is against rdrop-3, not the old default.
# Like rdrop-3 they keep BASE's torch dropout masks, so a row differs from its reference by its
# own flags only; fast-dropout's row measures the masks themselves, attention-groups' the two
# speed changes together (both draw other masks from the same distribution).
TODAY_REF=rdrop-3  # the row that is today's default
VERSUS=()
today() {  # today NAME FLAGS...: `full` with R-Drop on (FLAGS come after it and win), vs TODAY_REF
    local name=$1; shift
    VERSUS+=("$name=$TODAY_REF")
    full "$name" --rdrop 3 "$@"
}
today pcgrad          --pcgrad               # PCGrad, global updates: +0.017 [0.007, 0.027] at 250 steps
today rdrop-5         --rdrop 5              # R-Drop's weight: does the step from 1 to 3 go on?
today global          --update global        # PCGrad's global updates without its projection
today warmup-0        --warmup_ratio 0       # no warm-up: does the 10% linear warm-up earn its steps?
today llrd            --lr 2e-4 --layer_decay 0.8  # layer-wise lr: top layer 2e-4, each one down x0.8
today batch-16        --batch_size 16        # twice the steps on half the batch, same examples
today embeddings      --no-freeze_embeddings # train the word embeddings as well
today lr-5e-5         --lr 5e-5              # half the encoder's peak lr (tuned at 600 steps only)
today dropout-0.05    --hidden_dropout_prob 0.05  # less dropout: 0.2 cost 0.006; does 0.05 gain?
today head-lr-3e-3    --head_lr 3e-3         # the heads' lr the other way from 1e-4 (-0.005, unresolved)
today proportional    --sampling proportional  # steps from STS (flat after epoch 1) to PARA (still climbing)
today epochs-3        --epochs 3             # 2,886 steps instead of 2,405: what the 25 min budget has room for
today fast-dropout    --fast_dropout         # dropout.py's cheaper CPU masks: other draws, same distribution
today attention-groups --fast_dropout --attention_groups  # and attention on groups of similar length

# Rows on a later default, speed flags and all: in the second table their Δ is against NOW_REF
# (the default they were measured on) at the same seeds; in the first, against rdrop-3.
NOW_REF=attention-groups
NOW_FLAGS="--fast_dropout --attention_groups"
NOW_VERSUS=()
now() {  # now NAME FLAGS...: `today` with NOW_FLAGS, compared with NOW_REF
    local name=$1; shift
    NOW_VERSUS+=("$name=$NOW_REF")
    # shellcheck disable=SC2086  # NOW_FLAGS is a list of flags
    today "$name" $NOW_FLAGS "$@"
}
now pair-orders-predict --pair_orders predict  # PARA: the mean of both orders at prediction only: the default now
NOW_REF=pair-orders-predict  # rows on the default now (results/quality-predict.md made it so)
NOW_FLAGS="$NOW_FLAGS --pair_orders predict"
now swa-0.5           --swa 0.5              # the mean of the weights over the last half of the steps (SWA)
now pal               --pal                  # the seed paper's PALs: per task, a small attention beside every layer

# Rows on the default now measured on a later machine, against the default's runs there (seeds
# 11711, 1, 2, 3, 4 and 5): results/quality-later.md. (The earlier machine's runs behind
# quality-now.md are gone; collect.py keeps that table rather than rebuild it without them.)
LATER=()  # NAME=NOW_REF pairs
later() {  # later NAME FLAGS...: `today` with NOW_FLAGS, in quality-later.md against NOW_REF
    local name=$1; shift
    LATER+=("$name=$NOW_REF")
    # shellcheck disable=SC2086  # NOW_FLAGS is a list of flags
    today "$name" $NOW_FLAGS "$@"
}
later cross-sts       --sts_head cross       # STS cross-encoded like PARA ([CLS] s1 [SEP] s2 [SEP]), not the cosine
later proportional-now --sampling proportional  # +0.0015 [-0.0020, 0.0052] on the rdrop-3 default: on today's
later rdrop-all       --rdrop_tasks sst para sts  # R-Drop on every task: onednn.py's faster steps, spent
later epochs-3.5      --epochs 3.5           # 3,367 steps instead of 2,405: the ~10 min onednn.py freed, spent on steps
later branches-2      --branches 2           # fork at 60% into 2 branches, keep their mean weights (3,367 steps)
later branches-2-at-0.4 --branches 2 --branch_at 0.4  # the fork at 40%: branches apart for longer (3,848 steps)
later smart-sst       --smart --smart_tasks sst --smart_wt 3  # SST: SMART (its passes on the clean pass's masks), weighted as R-Drop
later sts-cosent      --sts_cosent 0.05      # STS: + CoSENT's ranking of the cosines; at 0.05 its encoder gradient is about MSE's

# Each task trained alone with the default's settings (2.5 passes over its own data, its own
# steps): does sharing the encoder cost a task anything? results/quality-single-task.md: at each
# seed the three runs joined into one entry, against the default's multitask models.
alone() {  # alone TASK: `today` with NOW_FLAGS on TASK's training data only
    # shellcheck disable=SC2086  # NOW_FLAGS is a list of flags
    today "$1-alone" $NOW_FLAGS --tasks "$1"
}
alone sst
alone para
alone sts

# In-domain MLM: the encoder first trained to predict masked words of the three training files
# (pretrain_mlm.py, ~8 min on 2 cores, once per sweep folder: every seed fine-tunes from the same
# encoder), then the default fine-tuned from it (--mlm_epochs 1 is the same encoder and fine-tuning,
# bit for bit). Its CI excluded 0 at seeds 11711 and 1; over four seeds on one machine it is +0.0003
# [-0.0042, 0.0047], so it is not the default (README, Quality candidates). MLM_EXTRA: flags for pretrain_mlm.py (the tests
# give it a tiny model and a few steps).
MLM_DIR=$OUT/mlm-minilm
mlm_encoder() {
    selected mlm || return 0
    # shellcheck disable=SC2086  # MLM_EXTRA is a list of flags
    if [ -n "${DRY_RUN:-}" ]; then echo "(first: $PY pretrain_mlm.py $MLM_DIR ${MLM_EXTRA:-})" >&2; return; fi
    [ -f "$MLM_DIR/model.safetensors" ] && return
    echo "== mlm encoder: pretrain_mlm.py $MLM_DIR ${MLM_EXTRA:-}"
    $PY pretrain_mlm.py "$MLM_DIR" --overwrite ${MLM_EXTRA:-} > "$MLM_DIR.log" 2>&1 \
        || { echo "   failed, see $MLM_DIR.log"; tail -3 "$MLM_DIR.log"; }
}
mlm_encoder
now mlm               --bert_model "$MLM_DIR"  # the default, fine-tuned from the in-domain MLM encoder

# Rows that change prediction only: every saved model of a row scored again with FLAGS (no
# training; --eval_only --scores_out), so that each is paired with its reference on the very same
# weights and the CI holds no training noise at all. Their table is results/quality-predict.md;
# its wall column is the scored models' training time. A few minutes per row on 2 cores. The
# pooled table results/quality-predict-pooled.md holds them all: one order against both.
RESCORED=()
ONE_ORDER=()  # for the pooled table: the NAME=REF pairs whose REF predicted from one order (the
              # others the other way round: REF from both, NAME from one)
scored() {  # scored NAME ROW FLAGS...: ROW's saved models scored with FLAGS, as NAME-sSEED
    local name=$1 ref=$2 folder seed; shift 2
    selected "$name" || return 0
    for folder in "$OUT/$ref"-s*/; do
        [ -f "$folder/summary.json" ] || continue  # (no match: the pattern itself, skipped)
        seed=${folder%/}; seed=${seed##*-s}
        run "$name-s$seed" --eval_only --checkpoint "${folder%/}" --scores_out "$OUT/$name-s$seed" --no_predictions "$@"
    done
}
rescore() {  # rescore NAME REF FLAGS...: REF's saved models scored with FLAGS, as NAME-sSEED
    RESCORED+=("$1=$2")
    if [[ " $* " == *" --pair_orders predict "* ]]; then ONE_ORDER+=("$1=$2"); fi
    scored "$@"
}
rescore rdrop-3-predict rdrop-3 --pair_orders predict  # the pair-orders-predict row's change, on 11 models
rescore fast-dropout-predict fast-dropout --pair_orders predict
rescore attention-groups-predict attention-groups --pair_orders predict
rescore pair-orders-one pair-orders-predict --pair_orders one  # the same change on today's models, undone

# int8 inference (--int8, quantize.py) changes no weight either: each saved model of the default
# now scored with the encoder's linear layers in int8, as ROW-int8-sSEED, paired seed by seed with
# its own fp32 scores. Table: results/quality-int8.md.
INT8=()  # ROW-int8=ROW pairs
in_int8() {  # in_int8 ROW: ROW's models scored in int8
    INT8+=("$1-int8=$1")
    scored "$1-int8" "$1" --int8
}
in_int8 pair-orders-predict

# Monte Carlo dropout (--mc_dropout K) changes no weight either: each saved model of the default
# now scored as the mean of K passes with dropout on, as ROW-mcK-sSEED, paired seed by seed with
# its own one-pass scores. K passes cost K evaluations. Table: results/quality-mc-dropout.md.
MC=()  # ROW-mcK=ROW pairs
with_mc() {  # with_mc ROW K: ROW's models scored as the mean of K passes with dropout on
    MC+=("$1-mc$2=$1")
    scored "$1-mc$2" "$1" --mc_dropout "$2"
}
with_mc pair-orders-predict 8

# A weight average changes no training step: each saved model of an averaging row scored from its
# raw weights at the last step (--raw_weights), as ROW-raw-sSEED, is that very training without
# the average. Δ = the row minus those, in results/quality-swa.md: at the same seeds, so it is the
# mean of the seeds' differences, and its CI carries the spread of those differences (compare.py's
# paired CI; tables built before it added the pooled seed noise, treating the seeds as unpaired).
AVERAGED=()  # ROW=ROW-raw pairs
unaveraged() {  # unaveraged ROW: ROW's models from their raw weights
    AVERAGED+=("$1=$1-raw")
    scored "$1-raw" "$1" --raw_weights
}
unaveraged swa-0.5

# Rows that train otherwise, at their last step, against the default's own training at the same
# seeds at its last step: swa-0.5-raw (--swa changes no training step, so its raw weights are the
# default's: bit for bit at seed 11711). For a machine that holds swa-0.5's runs but not the
# default's at those seeds. Table: results/quality-last-step.md.
LAST_STEP=()  # ROW-raw=swa-0.5-raw pairs
at_last_step() {  # at_last_step ROW: ROW's models from their raw weights, against swa-0.5-raw
    LAST_STEP+=("$1-raw=swa-0.5-raw")
    scored "$1-raw" "$1" --raw_weights
}
at_last_step pal
at_last_step mlm

# Knowledge distillation (distill.py): the ensemble of the default's models at TEACHER_SEEDS (the
# NOW_REF row's runs; an ensemble of three scores about 0.772, one model about 0.766) scores the
# training sets once into $OUT/teacher.npz, and the distill row trains the default towards the mix
# of each label with that score. Against NOW_REF at the same seeds, whose models taught it (a
# student at seed 1 learns from the seed-1 model among others). Table: results/quality-distill.md.
TEACHER=$OUT/teacher.npz
TEACHER_SEEDS=${TEACHER_SEEDS:-11711 1 2}
DISTILL=()  # ROW=NOW_REF pairs
teacher() {  # teacher: write $TEACHER from NOW_REF's models at TEACHER_SEEDS, once
    local seed m members=()
    for seed in $TEACHER_SEEDS; do members+=("$OUT/$NOW_REF-s$seed"); done
    if [ -n "${DRY_RUN:-}" ]; then echo "(first: the teacher $TEACHER from ${members[*]})" >&2; return; fi
    [ -f "$TEACHER" ] && return
    for m in "${members[@]}"; do
        [ -f "$m/summary.json" ] || { echo "   the teacher needs $m: SEEDS=\"$TEACHER_SEEDS\" ROWS=$NOW_REF first"; return 1; }
    done
    # common.sh's runner, as every run (with EXTRA: the training files the students train on), in
    # the foreground even with JOBS > 1, since the students need the file; it writes no run folder
    train teacher --eval_only --checkpoint "${members[@]}" --teacher_out "$TEACHER" --no_predictions
    [ -f "$TEACHER" ]
}
distill() {  # distill NAME FLAGS...: NOW_REF's recipe trained on the teacher's soft targets
    local name=$1; shift
    selected "$name" || return 0
    teacher || return 0
    DISTILL+=("$name=$NOW_REF")
    # shellcheck disable=SC2086  # NOW_FLAGS is a list of flags
    today "$name" $NOW_FLAGS --distill "$TEACHER" "$@"
}
distill distill-0.5   --distill_wt 0.5       # each target half label, half the ensemble's score

wait  # for runs still going (JOBS>1)
[ -z "${DRY_RUN:-}" ] || exit 0
has_runs() { compgen -G "$OUT/$1-s*/summary.json" > /dev/null; }
# The whole table needs the old default's runs. A machine that holds only the runs of rows on
# today's default (a fresh one that ran ROWS="rdrop-3 ...") rebuilds only the second table.
if has_runs default; then
    $PY sweeps/collect.py "$OUT" "$RESULTS/quality.md" --steps full --reference default \
        --only "${TRAINED[@]}" --versus "${VERSUS[@]}" --script sweeps/quality.sh
fi
# The rows on today's default alone, against today's default itself at their seeds.
if has_runs "$TODAY_REF"; then
    $PY sweeps/collect.py "$OUT" "$RESULTS/quality-today.md" --steps full --reference "$TODAY_REF" \
        --only "$TODAY_REF" "${VERSUS[@]%%=*}" --versus "${NOW_VERSUS[@]}" --script sweeps/quality.sh
fi
# The rows on the default now alone, against it at their seeds (a machine that holds no rdrop-3 runs).
latest=()  # those of its rows that have runs
for pair in "${NOW_VERSUS[@]}"; do
    if [ "${pair#*=}" = "$NOW_REF" ] && has_runs "${pair%%=*}"; then latest+=("${pair%%=*}"); fi
done
if has_runs "$NOW_REF" && ! has_runs "$TODAY_REF" && (( ${#latest[@]} )); then
    $PY sweeps/collect.py "$OUT" "$RESULTS/quality-now.md" --steps full --reference "$NOW_REF" \
        --only "$NOW_REF" "${latest[@]}" --script sweeps/quality.sh
fi
paired_table() {  # paired_table FILE NOTE ROW=REF...: the pairs with runs on both sides (left in
                  # `present`), each row against its REF; fails when no pair has runs
    local file=$1 note=$2 pair; shift 2
    present=()
    for pair in "$@"; do if has_runs "${pair%%=*}" && has_runs "${pair#*=}"; then present+=("$pair"); fi; done
    (( ${#present[@]} )) || return 1
    local refs=("${present[@]#*=}")
    $PY sweeps/collect.py "$OUT" "$RESULTS/$file" --steps full --reference "${refs[0]}" \
        --only "${refs[@]}" "${present[@]%%=*}" --versus "${present[@]}" --script sweeps/quality.sh --note "$note"
}
paired_table quality-later.md "Every row here ran on one machine, after the rows of quality-now.md." "${LATER[@]}" || true
# The single-task rows: at each seed where all three ran, the three runs joined into one entry
# (sweeps/specialists.py: each task's dev scores from the run trained on it alone, wall times
# summed), against the default's runs at all their seeds (the two train differently: unpaired).
single_table() {
    local f seed ref=() joined=()
    has_runs "$NOW_REF" || return 0
    for f in "$OUT"/sst-alone-s*/summary.json; do
        [ -f "$f" ] || continue  # (no match: the pattern itself)
        seed=${f%/summary.json}; seed=${seed##*-s}
        [ -f "$OUT/para-alone-s$seed/summary.json" ] && [ -f "$OUT/sts-alone-s$seed/summary.json" ] || continue
        $PY sweeps/specialists.py "$OUT/specialists-s$seed" sst="$OUT/sst-alone-s$seed" \
            para="$OUT/para-alone-s$seed" sts="$OUT/sts-alone-s$seed"
        joined+=("specialists=$OUT/specialists-s$seed")
    done
    (( ${#joined[@]} )) || return 0
    for f in "$OUT/$NOW_REF"-s*/summary.json; do ref+=("multitask=${f%/summary.json}"); done
    $PY compare.py "${ref[@]}" "${joined[@]}" --out "$OUT/single-task.md" > /dev/null
    {
        echo "One multitask model (the default, $NOW_REF) against three single-task models: at each seed, the sst-alone, para-alone and sts-alone runs (the default's command with \`--tasks TASK\`: 2.5 passes over that task's training data alone, so each has its own steps) joined into one entry by sweeps/specialists.py, each task scored by the model trained on it alone. Wall: the three runs' minutes summed. Rebuilt by \`bash sweeps/quality.sh\`."
        echo
        cat "$OUT/single-task.md"
    } > "$RESULTS/quality-single-task.md"
}
single_table
paired_table quality-int8.md "An -int8 row trains nothing: it is each saved model of its reference row scored again with --int8 (--eval_only --scores_out): the same weights, the encoder's linear layers computed in int8, so its wall minutes are the reference's." "${INT8[@]}" || true
paired_table quality-mc-dropout.md "An -mc row trains nothing: it is each saved model of its reference row scored again as the mean of K passes with dropout on (--eval_only --mc_dropout K --scores_out), so its wall minutes are the reference's." "${MC[@]}" || true
paired_table quality-distill.md "A distill row trains the default on soft targets: each training label mixed with the score of an ensemble of the reference row's models at seeds $TEACHER_SEEDS (distill.py); its wall minutes leave out the teacher's training and scoring." "${DISTILL[@]}" || true
paired_table quality-swa.md "A -raw row trains nothing: it is each saved model of the averaging row below it scored from the weights training moved, at its last step (--eval_only --raw_weights --scores_out), so it is the same run without the average, and its wall minutes are that run's." "${AVERAGED[@]}" || true
paired_table quality-last-step.md "A -raw row trains nothing: it is each saved model of its row scored from its weights at the last step (--eval_only --raw_weights --scores_out); swa-0.5-raw, the reference, is the default's training (an --swa run's raw weights), so every row is compared with the default at its last step, and its wall minutes are its row's." "${LAST_STEP[@]}" || true
# The prediction-time rows that have runs, each against the row whose models it scored.
if paired_table quality-predict.md "A rescore row trains nothing: it is each saved model of its reference row (the weights of that run's best evaluation) scored again with the row's --pair_orders (--eval_only --scores_out), so its wall minutes are the reference's." "${RESCORED[@]}"; then
    # And pooled (every rescore row above is the same change, one pair order or the mean of both
    # at prediction, on models of the same recipe up to dropout draws): every saved model
    # predicted both ways, paired model by model on the same dev examples (compare.py's NAME=RUN).
    one=() both=()
    pool() {  # pool ONE_ROW BOTH_ROW: the runs of each row into its group
        local f
        for f in "$OUT/$1"-s*/summary.json; do one+=("one-order=${f%/summary.json}"); done
        for f in "$OUT/$2"-s*/summary.json; do both+=("both-orders=${f%/summary.json}"); done
    }
    for pair in "${present[@]}"; do
        if [[ " ${ONE_ORDER[*]} " == *" $pair "* ]]; then pool "${pair#*=}" "${pair%%=*}"; else pool "${pair%%=*}" "${pair#*=}"; fi
    done
    $PY compare.py "${one[@]}" "${both[@]}" --out "$RESULTS/quality-predict-pooled.md" > /dev/null
fi
