# shellcheck shell=sh disable=SC2034  # sourced; the variables are read by the scripts
# Shell pieces shared by the CPU benchmark scripts (run_cpu.sh, run_sample.sh), sourced from the
# repository root: the Python that has torch, RESULT-line parsing, running a command under an
# OpenMP wait policy, and the machine's description.

# where the logs go, the OpenMP wait policies to run, and the thread count (see the scripts' headers)
LOGS=${BENCH_LOG_DIR:-build/bench-logs}
POLICIES=${BENCH_WAIT_POLICIES:-default passive}
THREADS=${OMP_NUM_THREADS:-$(nproc)}
export OMP_NUM_THREADS="$THREADS"

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3 # Debian's torch; the script re-execs otherwise

# result KEY LOG: the value of KEY on the last RESULT line of LOG
result() {
    awk -v k="$1" '/^RESULT /{for(i=2;i<=NF;i++){n=index($i,"=");if(substr($i,1,n-1)==k)v=substr($i,n+1)}}
        END{print v}' "$2"
}

# run LOG POLICY CMD...: runs CMD under the OpenMP wait policy, all output to LOG
run() {
    log=$1 policy=$2
    shift 2
    echo "  $*" >&2
    if [ "$policy" = default ]; then
        (unset OMP_WAIT_POLICY && "$@") >"$log" 2>&1 && return 0
    else
        OMP_WAIT_POLICY=$policy "$@" >"$log" 2>&1 && return 0
    fi
    echo "failed: $* (see $log)" >&2
    tail -5 "$log" >&2
    exit 1
}

# roofline_run LOG POLICY: measures the roofline with $ROOF (built if missing) into LOG; sets
# peak (sgemm GFLOP/s) and bw (STREAM triad GB/s)
roofline_run() {
    [ -x "$ROOF" ] || make --no-print-directory "$ROOF"
    echo "roofline..." >&2
    run "$1" "$2" "$ROOF" --roofline
    peak=$(result peak_gflops "$1")
    bw=$(result bw_gbs "$1")
}

# machine: the CPU model, its topology and torch's version, for the tables' headers
model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
sockets=$(lscpu | sed -n 's/^Socket(s): *//p' | head -1)
cores=$(lscpu | sed -n 's/^Core(s) per socket: *//p' | head -1)
tpc=$(lscpu | sed -n 's/^Thread(s) per core: *//p' | head -1)
ncpu=$(nproc)
torchv=$($PY -c 'import torch; print(torch.__version__)' 2>/dev/null || echo "?")

# gemc_build LOG: "gemc build -march=..., GEMM kernels ..." from ./gemc env and a RESULT line
gemc_build() {
    arch=$(./gemc env 2>/dev/null | sed -n 's/^build: *//p')
    echo "gemc: build ${arch:-?}, GEMM kernels $(result isa "$1") (GEMC_ISA=${GEMC_ISA:-unset: the widest the CPU has}); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
}
