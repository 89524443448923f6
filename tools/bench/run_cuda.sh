#!/bin/sh
# GPU throughput of gemc, training (bench_cuda_train) and sampling (bench_cuda_sample), next to
# PyTorch + transformers on the same shapes in the same invocation, against the card's roofline
# (tools/bench/README.md, "CUDA benchmarks"). `make bench-cuda` runs it.
#
#   tools/bench/run_cuda.sh
#
# Runs, one after the other on GPU 0: gemc's training step, the PyTorch one, gemc's sampling,
# the PyTorch one; then prints one Markdown table (the machine above it: nvidia-smi's name,
# driver and CUDA version) with gemc's figure, PyTorch's, their ratio and the two roofs of each
# benchmark. With no NVIDIA GPU it prints one line saying so and exits 0; where the Python
# has no torch/transformers (or torch sees no GPU) it says so in one line and reports gemc's
# figures alone. The targets are printed for reference; nothing here asserts a time. Exits 1
# when a benchmark failed (after the table).
# Environment:
#   BENCH_TRAIN_BIN     gemc's training benchmark (default build/bench_cuda_train; built if missing)
#   BENCH_SAMPLE_BIN    gemc's sampling benchmark (default build/bench_cuda_sample; built if missing)
#   BENCH_CONFIG        the model's config.json (default tools/bench/qwen2.5-0.5b.json)
#   BENCH_TRAIN         BATCH:SEQ:STEPS:WARMUP (default 4:1024:10:3)
#   BENCH_SAMPLE        PROMPTS:K:PROMPT_LEN:NEW_TOKENS:RUNS (default 32:8:128:256:3)
#   BENCH_PEAK_TFLOPS   the card's bf16 dense peak TFLOP/s, instead of the table below
#   BENCH_PEAK_GBS      its HBM bandwidth in GB/s, instead of the table below
#   BENCH_PYTHON        the peers' Python (default python3 from PATH)
#   BENCH_LOG_DIR       where every run's full output goes (default build/bench-logs)
#   BENCH_OUT           also write the report (everything on stdout) to this file
set -eu
cd "$(dirname "$0")/../.."
. tools/bench/bench_lib.sh # result(), LOGS and the host CPU's description

TBIN=${BENCH_TRAIN_BIN:-build/bench_cuda_train}
SBIN=${BENCH_SAMPLE_BIN:-build/bench_cuda_sample}
CFG=${BENCH_CONFIG:-tools/bench/qwen2.5-0.5b.json}
PY=${BENCH_PYTHON:-python3}
OUT=${BENCH_OUT:-}

# say LINE...: the report, on stdout and into BENCH_OUT
[ -z "$OUT" ] || : >"$OUT"
say() {
    printf '%s\n' "$*"
    [ -z "$OUT" ] || printf '%s\n' "$*" >>"$OUT"
}

if ! command -v nvidia-smi >/dev/null 2>&1; then
    say "no NVIDIA GPU here (nvidia-smi not found): CUDA benchmarks skipped"
    exit 0
fi
# nvidia-smi without a working driver prints its complaint on stdout and fails
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null) ||
    gpu=""
gpu=$(echo "$gpu" | head -1)
if [ -z "$gpu" ] || [ "$gpu" = "${gpu#*,}" ]; then
    say "no NVIDIA GPU here (nvidia-smi lists no device): CUDA benchmarks skipped"
    exit 0
fi
name=$(echo "$gpu" | cut -d, -f1 | sed 's/^ *//; s/ *$//')
driver=$(echo "$gpu" | cut -d, -f2 | sed 's/^ *//; s/ *$//')
gmem=$(echo "$gpu" | cut -d, -f3 | sed 's/^ *//; s/ *$//')
cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1)
NVCC=$(command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
nvccv=""
[ -z "$NVCC" ] || nvccv=$("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')

# The card's bf16 dense tensor peak (TFLOP/s, without sparsity) and HBM bandwidth (GB/s), from
# NVIDIA's data sheets, by the name nvidia-smi gives; BENCH_PEAK_TFLOPS / BENCH_PEAK_GBS override.
card="" peak="" gbs=""
case "$name" in
*GH200*) ;; # its HBM differs between versions: give BENCH_PEAK_TFLOPS and BENCH_PEAK_GBS
*H200*NVL*) card="H200 NVL" peak=835 gbs=4800 ;;
*H200*) card="H200 SXM" peak=989.4 gbs=4800 ;;
*H100*NVL*) card="H100 NVL" peak=835 gbs=3900 ;;
*H100*PCIe*) card="H100 PCIe" peak=756 gbs=2000 ;;
*H100*) card="H100 SXM" peak=989.4 gbs=3350 ;;
esac
psrc="$card, by the name nvidia-smi gives" bsrc=$psrc
[ -z "${BENCH_PEAK_TFLOPS:-}" ] || peak=$BENCH_PEAK_TFLOPS psrc="BENCH_PEAK_TFLOPS"
[ -z "${BENCH_PEAK_GBS:-}" ] || gbs=$BENCH_PEAK_GBS bsrc="BENCH_PEAK_GBS"
peak_args=""
[ -z "$peak" ] || peak_args="--peak-tflops $peak"
[ -z "$gbs" ] || peak_args="${peak_args:+$peak_args }--peak-gbs $gbs"

IFS=: read -r tb tt ts tw <<EOF
${BENCH_TRAIN:-4:1024:10:3}
EOF
IFS=: read -r sb sk sp sn sr <<EOF
${BENCH_SAMPLE:-32:8:128:256:3}
EOF

[ -x "$TBIN" ] || make --no-print-directory "$TBIN"
[ -x "$SBIN" ] || make --no-print-directory "$SBIN"
mkdir -p "$LOGS"

# The peers need torch with CUDA and transformers in $PY.
peer_why=""
pyinfo=""
if ! command -v "$PY" >/dev/null 2>&1; then
    peer_why="$PY not found"
elif ! pyinfo=$("$PY" -c 'import torch, transformers
print(torch.__version__, torch.version.cuda, transformers.__version__, int(torch.cuda.is_available()))' 2>/dev/null); then
    if "$PY" -c 'import torch' >/dev/null 2>&1; then
        peer_why="$PY has torch but no transformers"
    else
        peer_why="$PY has no torch"
    fi
elif [ "${pyinfo##* }" != 1 ]; then
    peer_why="torch ${pyinfo%% *} in $PY sees no CUDA device"
fi

failed=0
# try LOG CMD...: runs CMD with all its output in LOG; on failure says so with the log's end
try() {
    log=$1
    shift
    echo "  $*" >&2
    "$@" >"$log" 2>&1 && return 0
    echo "failed: $* (see $log)" >&2
    tail -5 "$log" >&2
    failed=1
    return 1
}

targs="--config $CFG --batch $tb --seq $tt --steps $ts --warmup $tw${peak_args:+ $peak_args}"
sargs="--config $CFG --prompts $sb --k $sk --prompt-len $sp --new-tokens $sn --runs $sr${peak_args:+ $peak_args}"
ptargs="--config $CFG --batch $tb --seq $tt --steps $ts --warmup $tw${peak:+ --peak-tflops $peak}"
psargs="--config $CFG --prompts $sb --k $sk --prompt-len $sp --new-tokens $sn --runs $sr${peak:+ --peak-tflops $peak}"
gt="$LOGS/cuda-train-gemc.log" pt="$LOGS/cuda-train-torch.log"
gs="$LOGS/cuda-sample-gemc.log" ps="$LOGS/cuda-sample-torch.log"
rm -f "$gt" "$pt" "$gs" "$ps"
echo "[1] training, batch $tb x $tt" >&2
# shellcheck disable=SC2086
try "$gt" "$TBIN" $targs || true
if [ -z "$peer_why" ]; then
    # shellcheck disable=SC2086
    try "$pt" "$PY" tools/bench/bench_cuda_train_torch.py $ptargs || true
fi
echo "[2] sampling, $sb prompts of $sp x $sk x $sn new" >&2
# shellcheck disable=SC2086
try "$gs" "$SBIN" $sargs || true
if [ -z "$peer_why" ]; then
    # shellcheck disable=SC2086
    try "$ps" "$PY" tools/bench/bench_cuda_sample_torch.py $psargs || true
fi

# val KEY LOG: the RESULT value, or empty when the log or the line is missing
val() {
    if [ -f "$2" ]; then result "$1" "$2"; fi
}
# why LOG: what the table shows for a figure that is missing
why() {
    if [ ! -f "$1" ] && [ -n "$peer_why" ]; then
        echo "skipped"
    elif [ ! -f "$1" ]; then
        echo "not run"
    elif grep -q 'skipped:' "$1"; then
        echo "skipped"
    else
        echo "failed"
    fi
}

say ""
say "machine: $name ($gmem), driver $driver, CUDA $cuda (driver)${nvccv:+, nvcc $nvccv}; host: $model, $ncpu CPUs"
if [ -n "$pyinfo" ]; then
    read -r tv tcu trv _ <<EOF
$pyinfo
EOF
    say "PyTorch: torch $tv (CUDA $tcu), transformers $trv, $PY"
fi
[ -z "$peer_why" ] || say "PyTorch peers skipped: $peer_why"
if [ -n "$peak" ] && [ -n "$gbs" ]; then
    if [ "$psrc" = "$bsrc" ]; then
        say "peak assumed: $peak TFLOP/s bf16 dense, $gbs GB/s HBM ($psrc)"
    else
        say "peak assumed: $peak TFLOP/s bf16 dense ($psrc), $gbs GB/s HBM ($bsrc)"
    fi
elif [ -n "$peak" ]; then
    say "peak assumed: $peak TFLOP/s bf16 dense ($psrc); HBM bandwidth unknown for '$name' (no bandwidth roof): set BENCH_PEAK_GBS"
elif [ -n "$gbs" ]; then
    say "peak assumed: $gbs GB/s HBM ($bsrc); bf16 peak unknown for '$name' (no MFU, no compute roof): set BENCH_PEAK_TFLOPS"
else
    say "peak: unknown for '$name' (no MFU and no roofline): set BENCH_PEAK_TFLOPS and BENCH_PEAK_GBS"
fi
for f in "$gt" "$gs"; do
    if [ -f "$f" ] && grep -q 'skipped:' "$f"; then say "$(grep -m1 'skipped:' "$f")"; fi
done
params=$(val params "$gt")
say "model: $CFG, random weights${params:+, $params parameters}"
say ""
say "| # | benchmark | gemc | PyTorch | gemc / PyTorch | roofline: compute / bandwidth bound | % of the binding roof: gemc / PyTorch | target (reference) |"
say "|---|---|---:|---:|---:|---|---:|---|"

# The rows: awk gets the figures as -v variables (numbers, or empty when missing: ok() tells),
# the reasons for missing ones as gmiss / pmiss, and prints one table row.
AWK_LIB='
function ok(x) { return x != "" && x !~ /nan|inf/ }
function fig(x, fmt, miss) { return ok(x) ? sprintf(fmt, x) : miss }
function ratio(a, b) { return ok(a) && ok(b) && b > 0 ? sprintf("%.2f", a / b) : "-" }
function roof(c, m, bound) {
    return ok(c) && ok(m) ? sprintf("%.0f / %.0f tokens/s (%s)", c, m, bound) : "-"
}
function binding(c, m) { return ok(c) && ok(m) ? (c + 0 < m + 0 ? c : m) : "" }
function pct(a, r) { return ok(a) && ok(r) && r > 0 ? sprintf("%.1f%%", 100 * a / r) : "-" }
'
# row GEMC_LOG PEER_LOG GEMC_KEY PROGRAM: runs PROGRAM with g, p (GEMC_KEY of each log), gm, pm
# (their MFU), c, m, b (gemc's roofs and which binds), gmiss, pmiss
row() {
    line=$(awk -v g="$(val "$3" "$1")" -v p="$(val "$3" "$2")" \
        -v gm="$(val mfu "$1")" -v pm="$(val mfu "$2")" \
        -v c="$(val roof_compute_tokens_per_s "$1")" -v m="$(val roof_mem_tokens_per_s "$1")" \
        -v b="$(val roof_bound "$1")" -v gmiss="$(why "$1")" -v pmiss="$(why "$2")" \
        "$AWK_LIB BEGIN { $4 }" </dev/null)
    say "$line"
}
row "$gt" "$pt" tokens_per_s '
    gc = ok(g) ? sprintf("%.0f tokens/s", g) (ok(gm) ? sprintf(" (MFU %.1f%%)", 100 * gm) : "") : gmiss
    pc = ok(p) ? sprintf("%.0f tokens/s", p) (ok(pm) ? sprintf(" (MFU %.1f%%)", 100 * pm) : "") : pmiss
    t = ok(g) && ok(p) ? (g + 0 >= 2.5 * p ? "met" : "not met") : "-"
    r = binding(c, m)
    printf "| 1 | training, batch '"$tb x $tt"', AdamW | %s | %s | %s | %s | %s / %s | >= 2.5x PyTorch: %s |",
        gc, pc, ratio(g, p), roof(c, m, b), pct(g, r), pct(p, r), t'
row "$gs" "$ps" tokens_per_s '
    t = ok(g) ? (g + 0 >= 150000 ? "met" : "not met") : "-"
    r = binding(c, m)
    printf "| 2 | sampling with entropies, '"$sb prompts x k $sk x $sn new (prompt $sp)"' | %s | %s | %s | %s | %s / %s | >= 150000 tokens/s: %s |",
        fig(g, "%.0f tokens/s", gmiss), fig(p, "%.0f tokens/s", pmiss), ratio(g, p), roof(c, m, b),
        pct(g, r), pct(p, r), t'
row "$gs" "$ps" tokens_per_s_noent '
    r = binding(c, m)
    printf "| 3 | sampling without entropies, same shape | %s | %s | %s | %s | %s / %s | - |",
        fig(g, "%.0f tokens/s", gmiss), fig(p, "%.0f tokens/s", pmiss), ratio(g, p), roof(c, m, b),
        pct(g, r), pct(p, r)'
row "$gs" "$ps" entropy_overhead '
    t = ok(g) ? (g + 0 <= 0.02 ? "met" : "not met") : "-"
    printf "| 4 | entropy overhead (t_with - t_without) / t_without | %s | %s | - | - | - | <= 2%%: %s |",
        ok(g) ? sprintf("%+.2f%%", 100 * g) : gmiss, ok(p) ? sprintf("%+.2f%%", 100 * p) : pmiss, t'
say ""
say "$(awk -v a="$(val fwd_ms "$gt")" -v b="$(val bwd_ms "$gt")" -v c="$(val opt_ms "$gt")" \
    -v d="$(val fwd_ms "$pt")" -v e="$(val bwd_ms "$pt")" -v f="$(val opt_ms "$pt")" "$AWK_LIB"'
    BEGIN { printf "ms per training step, forward / backward / optimizer: gemc %s, PyTorch %s\n",
        ok(a) ? sprintf("%.2f / %.2f / %.2f", a, b, c) : "-", ok(d) ? sprintf("%.2f / %.2f / %.2f", d, e, f) : "-" }')"
say "$(awk -v a="$(val prefill_ms "$gs")" -v b="$(val step_ms "$gs")" -v c="$(val step_ms_noent "$gs")" \
    -v d="$(val prefill_ms "$ps")" -v e="$(val step_ms "$ps")" -v f="$(val step_ms_noent "$ps")" \
    -v mode="$(val entropy_mode "$ps")" "$AWK_LIB"'
    BEGIN { printf "sampling, ms prefill / ms per decode step with / without entropies: gemc %s, PyTorch %s%s\n",
        ok(a) ? sprintf("%.1f / %.3f / %.3f", a, b, c) : "-", ok(d) ? sprintf("%.1f / %.3f / %.3f", d, e, f) : "-",
        mode == "processor" ? " (PyTorch entropies from a LogitsProcessor: output_scores ran out of memory)" : "" }')"
say ""
say "tokens/s: training B*T / mean step time; sampling B*k*new / the median run's time, prefill"
say "included. MFU = model FLOPs (6 x (non-embedding params + V*C) per token + 12*L*T^2/2*Hq*D per"
say "sequence) / time / the peak. Roofline: compute = peak / FLOPs per token; bandwidth = HBM"
say "bandwidth / lower-bound bytes per token (training: 42 B per parameter + bf16 activations"
say "written and read once; sampling: every bf16 weight once per decode step plus the KV cache"
say "read); the binding roof is the smaller. Commands (full logs in $LOGS/):"
say ""
say "1. \`$TBIN $targs\`"
[ -n "$peer_why" ] || say "   and \`$PY tools/bench/bench_cuda_train_torch.py $ptargs\`"
say "2. \`$SBIN $sargs\`"
[ -n "$peer_why" ] || say "   and \`$PY tools/bench/bench_cuda_sample_torch.py $psargs\`"
exit $failed
