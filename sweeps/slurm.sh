#!/usr/bin/env bash
# Submit a sweep to a SLURM cluster: its runs as one job array, one run per array task, and a
# table job that starts once the whole array has ended (--dependency=afterany) and runs the sweep
# script again: every finished run is skipped and the table is built (for ensemble.sh, after the
# ensemble's --eval_only predictions). A run that failed in the array is not finished, so the
# table job tries it once more, before the table; give it the time for that in SBATCH_ARGS.
#
#   SBATCH_ARGS="--gres=gpu:1 --time=01:00:00 --partition=gpu" bash sweeps/slurm.sh ablation
#   SEEDS="1 2 3" STEPS=600 bash sweeps/slurm.sh tuning
#   bash sweeps/slurm.sh path/to/sweep.sh
#
# SWEEP is ablation, tuning, ensemble or the path of a sweep script. The sweep's settings (SEEDS,
# ROWS, STEPS, EXTRA, OUT, RESULTS, PY: sweeps/common.sh) are read here and written into the job
# scripts, so the jobs run the sweep that was listed; SBATCH_ARGS go to sbatch for both jobs (one
# array task trains one run: ask for one GPU). Runs already finished are left out of the array, so
# submitting again after failures trains only what is missing. $OUT/slurm/ gets the list of runs
# (runs.txt: line i+1 is array task i, `NAME: FLAGS` as DRY_RUN=1 prints it), the two job scripts
# and SLURM's output; each run logs to $OUT/NAME.log, as in a local sweep.
set -euo pipefail
[ $# = 1 ] || { echo "usage: bash sweeps/slurm.sh ablation|tuning|ensemble|SCRIPT" >&2; exit 2; }
case $1 in
    ablation | tuning | ensemble) script=$(dirname "$0")/$1.sh ;;
    *) script=$1 ;;
esac
[ -f "$script" ] || { echo "$script: no such sweep script" >&2; exit 2; }
grep -q "common.sh" "$script" || { echo "$script: not a sweep script (it does not source common.sh)" >&2; exit 2; }
script=$(cd "$(dirname "$script")" && pwd)/$(basename "$script")
command -v sbatch > /dev/null || { echo "sbatch not found: submit from a SLURM login node" >&2; exit 2; }
cd "$(dirname "$0")/.."  # where the sweep scripts resolve OUT, RESULTS and PY
root=$(pwd)

out=$(DRY_RUN=out bash "$script")
runs=$(DRY_RUN=1 bash "$script")
mkdir -p "$out/slurm"
out=$(cd "$out" && pwd)
dir=$out/slurm
while IFS= read -r line; do
    [ -z "$line" ] || [ -f "$out/${line%%: *}/summary.json" ] || echo "$line"
done <<< "$runs" > "$dir/runs.txt"
n=$(wc -l < "$dir/runs.txt")

settings() {  # the named settings as they are here: a job may not see this shell's environment
    local v
    for v in "$@"; do
        [ -z "${!v+set}" ] || printf 'export %s=%q\n' "$v" "${!v}"
    done
    printf 'export OUT=%q\n' "$out"
}
{
    echo "#!/usr/bin/env bash"
    echo "# Array task i of \`bash sweeps/slurm.sh $1\`: the run on line i+1 of runs.txt, through"
    echo "# sweeps/common.sh's run (skipped if finished, logged to \$OUT/NAME.log)."
    echo "set -euo pipefail"
    settings RESULTS PY
    echo "export EXTRA= JOBS=1  # the listed flags hold EXTRA already; one run per task"
    printf 'LIST=%q\nsource %q\n' "$dir/runs.txt" "$root/sweeps/common.sh"
    cat << 'EOF'
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$LIST")
name=${line%%: *}
read -r -a flags <<< "${line#*: }"
run "$name" "${flags[@]}"
[ -f "$OUT/$name/summary.json" ]  # a failed run fails its task, for sacct to show
EOF
} > "$dir/task.sh"
{
    echo "#!/usr/bin/env bash"
    echo "# The table of \`bash sweeps/slurm.sh $1\`: the sweep again, its finished runs skipped."
    settings SEEDS ROWS STEPS EXTRA RESULTS PY
    printf 'exec bash %q\n' "$script"
} > "$dir/table.sh"

job_name=(--job-name "mtbert-$(basename "$script" .sh)")
after=""
if (( n > 0 )); then
    # shellcheck disable=SC2086  # SBATCH_ARGS is a list of options
    reply=$(sbatch "${job_name[@]}" --array=0-$((n - 1)) --output "$dir/%A_%a.out" ${SBATCH_ARGS:-} \
        "$dir/task.sh")
    echo "$reply"
    job=$(sed -n 's/^Submitted batch job \([0-9]*\).*/\1/p' <<< "$reply")
    [ -n "$job" ] || { echo "sbatch: no job id in its reply" >&2; exit 1; }
    after=--dependency=afterany:$job
    echo "array job $job: $((n)) runs (list: $dir/runs.txt)"
else
    echo "every run is finished: only the table job is submitted"
fi
# shellcheck disable=SC2086  # SBATCH_ARGS is a list of options
sbatch "${job_name[@]}" $after --output "$dir/table-%j.out" ${SBATCH_ARGS:-} "$dir/table.sh"
