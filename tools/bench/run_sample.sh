#!/bin/sh
# CPU sampling throughput, gemc's sampler_generate next to a PyTorch KV-cache twin on the same
# shapes, against the machine's roofline (tools/bench/README.md). `make bench-sample` runs it.
#
#   tools/bench/run_sample.sh [CONFIG:PROMPTS:K:NEW:PROMPT_LEN[:RUNS] ...]
#
# Without arguments: configs/models/tiny-llama.json with 16 prompts of 120 tokens x 4
# candidates x 64 new tokens (5 timed runs) and tools/bench/qwen2.5-0.5b-4layers.json with 2
# prompts of 128 tokens x 4 x 32 new (3 timed runs): about 2 minutes on a 2-core machine. The
# roofline first (bench_cpu_train --roofline, as run_cpu.sh), then for each configuration gemc
# (build/bench_sample) and PyTorch (bench_sample_torch.py), once per OpenMP wait policy in
# BENCH_WAIT_POLICIES (default "default passive", as run_cpu.sh). Each program makes one
# warm-up and RUNS timed runs and reports their median.
# Environment:
#   BENCH_BIN            the gemc benchmark binary (default build/bench_sample; built if missing)
#   BENCH_ROOFLINE_BIN   the binary whose --roofline gives the sgemm peak (default
#                        build/bench_cpu_train; built if missing)
#   BENCH_PEAK           an sgemm peak in GFLOP/s to use instead of measuring the roofline
#   BENCH_LOG_DIR        where every run's full output goes (default build/bench-logs)
#   BENCH_WAIT_POLICIES  e.g. "passive" for one policy only
#   OMP_NUM_THREADS      threads for gemc's OpenMP and for torch (default: all CPUs); OpenBLAS
#                        keeps its own default (all CPUs) unless OPENBLAS_NUM_THREADS is set
# Prints one Markdown table. A benchmark, not a test: nothing here asserts a time.
set -eu
cd "$(dirname "$0")/../.."
. tools/bench/bench_lib.sh

BIN=${BENCH_BIN:-build/bench_sample}
ROOF=${BENCH_ROOFLINE_BIN:-build/bench_cpu_train}

if [ $# -eq 0 ]; then
    set -- configs/models/tiny-llama.json:16:4:64:120:5 \
        tools/bench/qwen2.5-0.5b-4layers.json:2:4:32:128:3
fi

[ -x "$BIN" ] || make --no-print-directory "$BIN"
mkdir -p "$LOGS"

if [ -n "${BENCH_PEAK:-}" ]; then
    peak=$BENCH_PEAK
    roofline="roofline: not measured, BENCH_PEAK=$peak GFLOP/s"
else
    roofline_run "$LOGS/sample-roofline.log" default
    roofline=$(awk -v a="$peak" -v b="$bw" 'BEGIN{printf "roofline: sgemm 4096^3 %.1f GFLOP/s (best of 3), STREAM triad %.1f GB/s (best of 10), ridge %.1f FLOP/byte", a, b, a / b}')
fi

rows=""
cmds=""
n=0
for spec in "$@"; do
    IFS=: read -r cfg b k t p reps <<EOF
$spec
EOF
    reps=${reps:-3}
    name=$(basename "$cfg" .json)
    for policy in $POLICIES; do
        n=$((n + 1))
        args="--config $cfg --prompts $b --prompt-len $p --k $k --new $t --runs $reps --peak $peak"
        echo "[$n] $name, $b prompts of $p x $k x $t new, OMP_WAIT_POLICY=$policy" >&2
        glog="$LOGS/sample-$n-$name-$policy-gemc.log"
        tlog="$LOGS/sample-$n-$name-$policy-torch.log"
        # shellcheck disable=SC2086
        run "$glog" "$policy" "$BIN" $args
        # shellcheck disable=SC2086
        run "$tlog" "$policy" $PY tools/bench/bench_sample_torch.py $args --threads "$THREADS"
        row=$(awk -v n="$n" -v name="$name" -v b="$b" -v k="$k" -v t="$t" -v p="$p" -v pol="$policy" \
            -v reps="$reps" -v g="$(result tokens_per_s "$glog")" -v q="$(result tokens_per_s "$tlog")" \
            -v g0="$(result min_tokens_per_s "$glog")" -v g1="$(result max_tokens_per_s "$glog")" \
            -v q0="$(result min_tokens_per_s "$tlog")" -v q1="$(result max_tokens_per_s "$tlog")" \
            -v gf="$(result gflops "$glog")" -v gp="$(result pct_peak "$glog")" \
            -v qf="$(result gflops "$tlog")" -v qp="$(result pct_peak "$tlog")" \
            -v gpre="$(result prefill_ms "$glog")" -v gst="$(result step_ms "$glog")" \
            -v qpre="$(result prefill_ms "$tlog")" -v qst="$(result step_ms "$tlog")" \
            'BEGIN{printf "| %d | %s | %d x %d x %d (prompt %d) | %s | %d | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.2f | %.1f / %.1f%% | %.1f / %.1f%% | %.1f / %.2f | %.1f / %.2f |",
                n, name, b, k, t, p, pol, reps, g, g0, g1, q, q0, q1, g / q, gf, gp, qf, qp, gpre, gst, qpre, qst}')
        rows="$rows$row
"
        pol_env=""
        [ "$policy" = default ] || pol_env="OMP_WAIT_POLICY=$policy "
        cmds="$cmds$n. \`${pol_env}OMP_NUM_THREADS=$THREADS $BIN $args\`
   and \`${pol_env}$PY tools/bench/bench_sample_torch.py $args --threads $THREADS\`
"
    done
done

echo
echo "machine: $model, $((sockets * cores)) cores ($tpc thread(s) per core, $ncpu CPUs)," \
    "$THREADS threads used (OpenMP and torch; OpenBLAS ${OPENBLAS_NUM_THREADS:-its default, all CPUs}); torch $torchv"
echo "$roofline"
gemc_build "$glog"
echo
echo "| # | model | prompts x k x new | OMP_WAIT_POLICY | runs | gemc tokens/s | PyTorch tokens/s |" \
    "gemc / PyTorch | gemc GFLOP/s / % of peak | PyTorch GFLOP/s / % of peak |" \
    "gemc ms prefill / decode step | PyTorch ms prefill / decode step |"
echo "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s' "$rows"
echo
echo "tokens/s = generated tokens (prompts x k x new) / the median run's time, prefill included;"
echo "(min-max) over the runs. % of peak = achieved model GFLOP/s / the sgemm peak above."
echo "Commands (full logs in $LOGS/):"
echo
printf '%s' "$cmds"
