#!/bin/sh
# Runs the libFuzzer harnesses of tests/fuzz (make fuzz; see tests/fuzz/README.md), FUZZ_JOBS at
# a time, each for FUZZ_SECONDS on a working corpus build/fuzz/corpus/NAME seeded from
# tests/fuzz/corpus/NAME and tests/fuzz/regressions/NAME; then replays each final corpus through
# the coverage build (build/fuzz/cov_NAME) and writes tests/fuzz/RESULTS.md from the records of
# every harness run so far (build/fuzz/results/NAME.row).
#   sh tools/fuzz_run.sh NAME...        (the binaries must be built: make fuzz does it)
#   sh tools/fuzz_run.sh --table        (rewrites RESULTS.md from the recorded rows only)
set -eu

OUT=${FUZZ_OUT:-build/fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-600}
JOBS=${FUZZ_JOBS:-2}
PROFDATA=${LLVM_PROFDATA:-llvm-profdata-14}
COV=${LLVM_COV:-llvm-cov-14}

# the parser sources whose coverage a harness is judged by
sources_of() {
    case $1 in
    safetensors) echo src/model/safetensors.c ;;
    model_config) echo src/model/model_config.c ;;
    tokenizer) echo src/text/tokenizer_load.c src/text/tokenizer.c src/text/tokenizer_bpe.c ;;
    config_yaml) echo src/config/config_yaml.c src/config/config.c src/config/config_keys.c ;;
    data) echo src/text/data.c ;;
    shard) echo src/run/shard.c ;;
    metrics) echo src/run/metrics_log.c ;;
    tb_events) echo src/run/tb_events.c ;;
    *) echo "fuzz_run.sh: unknown harness '$1'" >&2; exit 2 ;;
    esac
}
# longest input: above every seed, small enough that an input stays quick to run
max_len_of() {
    case $1 in
    tokenizer | shard) echo 65536 ;;
    *) echo 16384 ;;
    esac
}

run_one() {
    name=$1
    srcs=$(sources_of "$name")
    corpus=$OUT/corpus/$name
    crashes=$OUT/crashes/$name
    log=$OUT/logs/$name.log
    mkdir -p "$corpus" "$crashes" "$OUT/logs" "$OUT/results" "$OUT/cov"
    cp -n tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
    if [ -d tests/fuzz/regressions/"$name" ]; then
        cp -n tests/fuzz/regressions/"$name"/* "$corpus"/ 2>/dev/null || true
    fi
    before=$(ls "$crashes" | wc -l)
    start=$(date +%s)
    # -timeout: an input that runs 10 s is a hang; -rss_limit_mb also caps single mallocs, so an
    # absurd size that reaches malloc is a finding
    # libhdf5 mallocs sizes read from a damaged file; a huge one must come back NULL (as in
    # production, where libhdf5 then fails cleanly) instead of stopping ASan. gemc's own
    # allocations abort on NULL (mallocCheck), so this hides nothing of gemc's.
    asan=
    [ "$name" = shard ] && asan=allocator_may_return_null=1
    rc=0
    ASAN_OPTIONS=$asan LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp:print_suppressions=0 "$OUT/fuzz_$name" "$corpus" -max_total_time="$SECONDS_EACH" -max_len="$(max_len_of "$name")" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$crashes/" >"$log" 2>&1 || rc=$?
    end=$(date +%s)
    after=$(ls "$crashes" | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    covft=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\).*/\1 \/ \2/p')
    files=$(ls "$corpus" | wc -l)
    # coverage of the parser's own files from the final corpus
    prof=$OUT/cov/$name
    rm -f "$prof".profraw "$prof".profdata
    LLVM_PROFILE_FILE="$prof.profraw" "$OUT/cov_$name" "$corpus" >/dev/null 2>&1 || true
    lines=n/a
    branches=n/a
    if [ -f "$prof.profraw" ]; then
        "$PROFDATA" merge -sparse -o "$prof.profdata" "$prof.profraw"
        # shellcheck disable=SC2086
        "$COV" report "$OUT/cov_$name" -instr-profile="$prof.profdata" $srcs >"$prof.txt"
        # TOTAL: regions missed cover, functions missed cover, lines missed cover, branches ...
        lines=$(awk '/^TOTAL/ {print $10 " of " $8}' "$prof.txt")
        branches=$(awk '/^TOTAL/ {print $13 " of " $11}' "$prof.txt")
    fi
    status="$((after - before)) new"
    [ "$rc" -eq 0 ] || status="$status (fuzzer exit $rc)"
    cpu=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -1)
    cpu="$cpu, $(nproc) cores"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" \
        "$(date -u +%Y-%m-%d)" "$cpu" "$((end - start))" "${execs:-?}" "${eps:-?}" \
        "${covft:-?}" "$files" "$status" "$lines" "$branches" "$srcs" >"$OUT/results/$name.row"
    echo "fuzz $name: $((end - start)) s, ${execs:-?} execs, crashes: $status, lines $lines, branches $branches"
    [ "$rc" -eq 0 ]
}

if [ "${1:-}" = --one ]; then
    run_one "$2"
    exit $?
fi
[ $# -gt 0 ] || set -- safetensors model_config tokenizer config_yaml data shard metrics tb_events

fail=0
if [ "${1:-}" = --table ]; then
    shift # only rewrite RESULTS.md from the recorded rows
else
    printf '%s\n' "$@" | xargs -P "$JOBS" -n 1 sh "$0" --one || fail=1
fi

{
    echo "# Fuzzing results"
    echo
    echo "Written by tools/fuzz_run.sh (make fuzz); see README.md in this folder. Each row is the"
    echo "latest run of that harness. Coverage is of the parser's own files, replaying the final"
    echo "corpus through the clang -fprofile-instr-generate build (llvm-cov report): lines and"
    echo "branches covered of the total."
    echo
    echo "Command: \`make fuzz FUZZ_SECONDS=$SECONDS_EACH FUZZ_JOBS=$JOBS\` (the harnesses may come"
    echo "from separate runs with FUZZ_TARGETS=...; each row has its own date and seconds)."
    echo
    echo "| harness | date | machine | seconds | executions | exec/s | cov / ft | corpus files | crashes | lines | branches | files measured |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    for n in safetensors model_config tokenizer config_yaml data shard metrics tb_events; do
        [ -f "$OUT/results/$n.row" ] && cat "$OUT/results/$n.row"
    done
    echo
    echo "Corpus sizes are of build/fuzz/corpus/NAME (seeds + what libFuzzer kept); crashes counts"
    echo "files libFuzzer wrote to build/fuzz/crashes/NAME during the run."
} >tests/fuzz/RESULTS.md
exit $fail
