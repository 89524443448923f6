#!/bin/sh
# CPU training throughput, gemc next to PyTorch on the same shapes, plus the machine's roofline
# (tools/bench/README.md). `make bench-cpu` runs it.
#
#   tools/bench/run_cpu.sh [CONFIG:BATCH:SEQ[:STEPS[:WARMUP[:RUNS]]] ...]
#
# Without arguments: configs/models/tiny-llama.json at 8 x 256 (10 timed steps after 2 warm-up
# steps, 3 runs) and tools/bench/qwen2.5-0.5b-4layers.json at 1 x 512 (3 after 1, 1 run):
# about 4 minutes on a 2-core machine. Each configuration runs gemc (build/bench_cpu_train) and
# PyTorch (bench_cpu_train_torch.py) RUNS times, alternating, once per OpenMP wait policy in
# BENCH_WAIT_POLICIES (default "default passive": libgomp's default, which spins, and
# OMP_WAIT_POLICY=passive; the README says why both). The table shows the median run.
# Environment:
#   BENCH_BIN            the gemc benchmark binary (default build/bench_cpu_train; built if missing)
#   BENCH_LOG_DIR        where every run's full output goes (default build/bench-logs)
#   BENCH_WAIT_POLICIES  e.g. "passive" for one policy only
#   OMP_NUM_THREADS      threads for gemc's OpenMP and for torch (default: all CPUs); OpenBLAS
#                        keeps its own default (all CPUs) unless OPENBLAS_NUM_THREADS is set
# Prints one Markdown table. A benchmark, not a test: nothing here asserts a time.
set -eu
cd "$(dirname "$0")/../.."
. tools/bench/bench_lib.sh

BIN=${BENCH_BIN:-build/bench_cpu_train}

if [ $# -eq 0 ]; then
    set -- configs/models/tiny-llama.json:8:256:10:2:3 \
        tools/bench/qwen2.5-0.5b-4layers.json:1:512:3:1:1
fi

[ -x "$BIN" ] || make --no-print-directory "$BIN"
mkdir -p "$LOGS"

# median LOG...: the log whose tokens/s is the median of those runs (the upper middle one for an
# even count), then "min-max" of their tokens/s on a second line
median() {
    for f in "$@"; do echo "$(result tokens_per_s "$f") $f"; done | sort -n | awk '
        { v[NR] = $1; f[NR] = $2 }
        END { printf "%s\n%.0f-%.0f\n", f[int(NR / 2) + 1], v[1], v[NR] }'
}


echo "roofline..." >&2
run "$LOGS/roofline.log" default "$BIN" --roofline
peak=$(result peak_gflops "$LOGS/roofline.log")
bw=$(result bw_gbs "$LOGS/roofline.log")
blas=$(sed -n 's/^roofline: \(OpenBLAS [^ ]*\).*(core \([^)]*\)).*/\1, \2 kernels/p' "$LOGS/roofline.log")

rows=""
cmds=""
n=0
for spec in "$@"; do
    IFS=: read -r cfg b t s w reps <<EOF
$spec
EOF
    s=${s:-3}
    w=${w:-1}
    reps=${reps:-1}
    name=$(basename "$cfg" .json)
    for policy in $POLICIES; do
        n=$((n + 1))
        args="--config $cfg --batch $b --seq $t --steps $s --warmup $w --peak $peak"
        glogs=""
        tlogs=""
        r=1
        while [ "$r" -le "$reps" ]; do
            echo "[$n] $name, batch $b x $t, OMP_WAIT_POLICY=$policy, run $r/$reps" >&2
            glog="$LOGS/$n-$name-$policy-gemc-$r.log"
            tlog="$LOGS/$n-$name-$policy-torch-$r.log"
            # shellcheck disable=SC2086
            run "$glog" "$policy" "$BIN" $args
            # shellcheck disable=SC2086
            run "$tlog" "$policy" $PY tools/bench/bench_cpu_train_torch.py $args --threads "$THREADS"
            glogs="$glogs $glog"
            tlogs="$tlogs $tlog"
            r=$((r + 1))
        done
        # shellcheck disable=SC2086
        gmed=$(median $glogs)
        # shellcheck disable=SC2086
        tmed=$(median $tlogs)
        glog=$(echo "$gmed" | sed -n 1p)
        tlog=$(echo "$tmed" | sed -n 1p)
        g=$(result tokens_per_s "$glog")
        p=$(result tokens_per_s "$tlog")
        impl=$(result impl "$tlog")
        if [ "$reps" -gt 1 ]; then
            gcell=$(awk -v g="$g" -v r="$(echo "$gmed" | sed -n 2p)" 'BEGIN{printf "%.0f (%s)", g, r}')
            pcell=$(awk -v p="$p" -v r="$(echo "$tmed" | sed -n 2p)" -v i="$impl" \
                'BEGIN{printf "%.0f (%s) %s", p, r, i}')
        else
            gcell=$(awk -v g="$g" 'BEGIN{printf "%.0f", g}')
            pcell=$(awk -v p="$p" -v i="$impl" 'BEGIN{printf "%.0f %s", p, i}')
        fi
        row=$(awk -v n="$n" -v name="$name" -v b="$b" -v t="$t" -v pol="$policy" -v reps="$reps" \
            -v gc="$gcell" -v pc="$pcell" -v g="$g" -v p="$p" \
            -v gf="$(result gflops "$glog")" -v gm="$(result mfu "$glog")" \
            -v pf="$(result gflops "$tlog")" -v pm="$(result mfu "$tlog")" \
            -v g1="$(result fwd_ms "$glog")" -v g2="$(result bwd_ms "$glog")" -v g3="$(result opt_ms "$glog")" \
            -v p1="$(result fwd_ms "$tlog")" -v p2="$(result bwd_ms "$tlog")" -v p3="$(result opt_ms "$tlog")" \
            'BEGIN{printf "| %d | %s | %d x %d | %s | %d | %s | %s | %.2f | %.1f / %.1f%% | %.1f / %.1f%% | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f |",
                n, name, b, t, pol, reps, gc, pc, g / p, gf, 100 * gm, pf, 100 * pm, g1, g2, g3, p1, p2, p3}')
        rows="$rows$row
"
        pol_env=""
        [ "$policy" = default ] || pol_env="OMP_WAIT_POLICY=$policy "
        cmds="$cmds$n. \`${pol_env}OMP_NUM_THREADS=$THREADS $BIN $args\`
   and \`${pol_env}$PY tools/bench/bench_cpu_train_torch.py $args --threads $THREADS\`
"
    done
done

echo
echo "machine: $model, $((sockets * cores)) cores ($tpc thread(s) per core, $ncpu CPUs)," \
    "$THREADS threads used (OpenMP and torch; OpenBLAS ${OPENBLAS_NUM_THREADS:-its default, all CPUs})"
# which OpenBLAS build each one loads (gemc: the OpenMP build, by rpath; torch: the system default)
gemc_blas=$(ldd "$BIN" 2>/dev/null | awk '/libopenblas/ {print $3}')
torch_lib=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))' 2>/dev/null || true)
torch_blas=$(ldd "$torch_lib" 2>/dev/null | awk '/libopenblas/ {print $3}')
torch_blas=$(readlink -f "$torch_blas" 2>/dev/null || echo "$torch_blas")
echo "BLAS: $blas; gemc loads $gemc_blas (float64 tests only), torch $torchv loads $torch_blas"
gemc_build "$glog"
awk -v a="$peak" -v b="$bw" 'BEGIN{printf "roofline: sgemm 4096^3 %.1f GFLOP/s (best of 3), STREAM triad %.1f GB/s (best of 10), ridge %.1f FLOP/byte\n", a, b, a / b}'
echo
echo "| # | model | batch x seq | OMP_WAIT_POLICY | runs | gemc tokens/s | PyTorch tokens/s |" \
    "gemc / PyTorch | gemc GFLOP/s / MFU | PyTorch GFLOP/s / MFU | gemc ms fwd / bwd / opt |" \
    "PyTorch ms fwd / bwd / opt |"
echo "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s' "$rows"
echo
echo "With several runs: the median run's figures, and (min-max) tokens/s over the runs."
echo "MFU = achieved model GFLOP/s / the sgemm peak above. Commands (full logs in $LOGS/):"
echo
printf '%s' "$cmds"
