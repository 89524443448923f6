#!/bin/sh
# The determinism tests under every kernel family this CPU can run (make test runs it):
#   - every OpenBLAS kernel family (OPENBLAS_CORETYPE) the CPU can execute, and
#   - every kernel family of gemc's own GEMM (GEMC_ISA: avx2, and avx512 where the CPU has it).
# The tests: gemc's GEMM against its definition, the golden hashes (tests/test_golden.c), a
# sequence alone = the same sequence packed, packing and thread independence of the model's
# log-probs and gradients, micro-batches, and the sampler's determinism and shared prefill.
# A property that held only for the kernel the machine happens to pick fails here.
#
#   tools/test_kernel_families.sh [TEST_BINARY]     (default build/test_gemc)
set -eu
BIN=${1:-build/test_gemc}
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { case " $flags " in *" $1 "*) return 0 ;; esac; return 1; }

# OpenBLAS 0.3.21's families, each with the instructions its kernels use
cores="Prescott Nehalem"
has avx && cores="$cores Sandybridge"
has avx2 && has fma && cores="$cores Haswell Zen"
has avx512f && has avx512bw && has avx512vl && has avx512dq && cores="$cores SkylakeX"
has avx512_bf16 && cores="$cores Cooperlake"
isas=""
has avx2 && has fma && isas="avx2"
has avx512f && isas="$isas avx512"

run() { # LABEL ENV...: the determinism tests with ENV set
    label=$1
    shift
    log=$(mktemp)
    if env "$@" OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" "$BIN" gemm golden \
        "parity:a sequence alone" "model_grad:packing independence" \
        "model_grad:determinism and thread count" "model_grad:a shared prefix" \
        "stages:micro-batches" \
        "sampler:determinism" "sampler:shared prefill" >"$log" 2>&1; then
        echo "kernel families: $label: passed"
        rm -f "$log"
    else
        cat "$log"
        rm -f "$log"
        echo "kernel families: $label: FAILED" >&2
        exit 1
    fi
}

for c in $cores; do run "OPENBLAS_CORETYPE=$c" OPENBLAS_CORETYPE="$c"; done
for i in $isas; do run "GEMC_ISA=$i" GEMC_ISA="$i"; done
echo "kernel families: every determinism test passed under OPENBLAS_CORETYPE in {$cores}" \
    "and GEMC_ISA in {$isas}"
