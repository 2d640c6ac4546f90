# Shared by the sweep scripts, sourced after they set OUT (and STEPS, for shortened rows). Settings,
# all optional, from the environment:
#
#   SEEDS="1 2"   seeds of every row (a row is one configuration; each seed is one run)
#   ROWS="a b"    run only these rows (default: all)
#   EXTRA="..."   flags added to every run (the tests point runs at a tiny model and data)
#   RESULTS=dir   where tables go (default results/)
#   DRY_RUN=1     print each run's command line instead of running it
#   PY=...        the Python to run (default .venv/bin/python)
#   JOBS=4        up to 4 runs at once, each on its own GPU where there are GPUs (default 1: one
#                 after the other); the table is built once all have ended
#   DRY_RUN=out   print the sweep's run folder OUT and stop (sweeps/slurm.sh needs it)
#   REPLACE=1     let a rebuilt table drop rows (or seeds) of the table already in RESULTS; by
#                 default collect.py keeps that table when this machine lacks some of its runs
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
    if (( JOBS > 1 )); then in_slot train "$name" "$@"; else train "$name" "$@"; fi
}
train() {  # a failed run is reported and the sweep goes on
    local name=$1; shift
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

# JOBS>1: a pool of JOBS slots, each running one run at a time in the background. Slot k trains on
# the (k mod G)-th of the G visible GPUs: CUDA_VISIBLE_DEVICES' list where it is set (a SLURM
# allocation, or GPUs the user chose; nvidia-smi would list the node's others too), else those of
# nvidia-smi -L; with none, the runs share the CPU cores. The sweep scripts `wait` for the pool
# before their table.
JOBS=${JOBS:-1}
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "JOBS=$JOBS: not a whole number of runs" >&2; exit 2; }
slot_pid=()
gpus=()
in_slot() {  # "$@" in the background in a free slot, once one is free
    local k
    while :; do
        for ((k = 0; k < JOBS; k++)); do
            if [ -z "${slot_pid[k]:-}" ] || ! kill -0 "${slot_pid[k]}" 2> /dev/null; then
                ( (( ${#gpus[@]} == 0 )) || export CUDA_VISIBLE_DEVICES=${gpus[k % ${#gpus[@]}]}; "$@" ) &
                slot_pid[k]=$!
                return
            fi
        done
        wait -n 2> /dev/null || sleep 1  # until a run ends (bash < 4.3 has no wait -n: poll)
    done
}
stop_runs() {  # background runs ignore Ctrl-C: end them (and their Python) with the sweep
    local p
    for p in $(jobs -pr); do kill_tree "$p"; done
    exit 130
}
kill_tree() { local c; for c in $(pgrep -P "$1"); do kill_tree "$c"; done; kill "$1" 2> /dev/null || true; }
if (( JOBS > 1 )) && [ -z "${DRY_RUN:-}" ]; then
    if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
        IFS=, read -r -a gpus <<< "$CUDA_VISIBLE_DEVICES"
    elif command -v nvidia-smi > /dev/null; then
        # shellcheck disable=SC2207  # GPU indices, one word each
        gpus=($(nvidia-smi -L 2> /dev/null | sed -n 's/^GPU \([0-9]*\):.*/\1/p'))
    fi
    if (( ${#gpus[@]} == 0 )); then
        cores=$(env -u OMP_NUM_THREADS nproc 2> /dev/null || getconf _NPROCESSORS_ONLN)  # nproc obeys it
        # torch takes every core by default: N runs each taking them all would only slow each other
        export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( cores > JOBS ? cores / JOBS : 1 ))}
        (( cores >= 2 * JOBS )) \
            || echo "warning: no GPU visible: the JOBS=$JOBS runs share $cores CPU cores" >&2
    fi
    trap stop_runs INT TERM
fi
[ "${DRY_RUN:-}" != out ] || { echo "$OUT"; exit 0; }
mkdir -p "$OUT" "$RESULTS"
