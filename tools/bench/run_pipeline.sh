#!/bin/sh
# GEM training wall time on the embedded default: one process next to the MPI pipeline
# (tools/bench/README.md, "The pipeline"). `make bench-pipeline` runs it.
#
#   tools/bench/run_pipeline.sh [STEPS]     (default 8)
#
# The embedded task and a random tiny model (build/bench-pipeline), then STEPS GEM steps of
# configs/demo.yaml (16 prompts x k = 4, up to 96 new tokens) three ways:
#   1. ./gemc train, one process with all the threads;
#   2. mpirun -np 2: one generator and one learner, max_staleness 0 (on-policy: they alternate);
#   3. mpirun -np 2 with max_staleness 1: the generator samples step t+1 while the learner
#      trains on step t.
# The ranks get THREADS / 2 OpenMP threads each. Prints one Markdown table of wall seconds and
# the learners' tokens/s. A benchmark, not a test: nothing here asserts a time. There is no
# peer figure: PyTorch + transformers has no distributed GEM to compare with.
set -eu
cd "$(dirname "$0")/../.."
. tools/bench/bench_lib.sh

STEPS=${1:-8}
DIR=build/bench-pipeline
MAKE_TASK=${MAKE_TASK:-build/make_task}
mkdir -p "$LOGS"
rm -rf "$DIR"
"$MAKE_TASK" --seed 1 --out "$DIR/task" >/dev/null
./gemc init --config "$DIR/task/config.json" --tokenizer "$DIR/task" --out "$DIR/init" --seed 1 \
    --dtype f32 >/dev/null
per_rank=$((THREADS / 2 > 0 ? THREADS / 2 : 1))
common="configs/demo.yaml train.model=$DIR/init train.data=$DIR/task/train_prompts.jsonl \
train.steps=$STEPS run.progress=false eval.every=0"
mpirun="mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=$per_rank -np 2"

# timed NAME CMD...: wall seconds of CMD (its output in $LOGS/pipeline-NAME.log)
timed() {
    name=$1
    shift
    t0=$(date +%s.%N)
    run "$LOGS/pipeline-$name.log" default "$@"
    awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.1f", a - b}'
}
# mean train_tok_s of a run's metrics.jsonl
train_tok_s() {
    awk -F'"train_tok_s": ' 'NF > 1 {split($2, a, ","); s += a[1]; n++} END {printf "%.0f", s / n}' \
        "$1/metrics.jsonl"
}

# shellcheck disable=SC2086
t1=$(timed single ./gemc train $common train.dir=$DIR/single)
# shellcheck disable=SC2086
t2=$(timed np2-s0 $mpirun ./gemc train $common train.dir=$DIR/np2-s0)
# shellcheck disable=SC2086
t3=$(timed np2-s1 $mpirun ./gemc train $common train.dir=$DIR/np2-s1 pipeline.max_staleness=1)

echo
echo "GEM on the embedded default, $STEPS steps of 16 prompts x k = 4 (configs/demo.yaml)"
echo "machine: $model, $THREADS threads"
echo
echo "| run | ranks x threads | wall s | s/step | learner tok/s |"
echo "|---|---|---|---|---|"
# row NAME RANKSxTHREADS SECONDS RUN_DIR
row() {
    awk -v n="$1" -v r="$2" -v t="$3" -v s="$STEPS" -v k="$(train_tok_s "$4")" \
        'BEGIN {printf "| %s | %s | %.1f | %.2f | %s |\n", n, r, t, t / s, k}'
}
row "one process" "1 x $THREADS" "$t1" $DIR/single
row "pipeline, max_staleness 0" "2 x $per_rank" "$t2" $DIR/np2-s0
row "pipeline, max_staleness 1" "2 x $per_rank" "$t3" $DIR/np2-s1
