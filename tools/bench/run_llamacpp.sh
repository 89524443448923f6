#!/bin/sh
# CPU decode of gemc beside llama.cpp's F32 CPU decode on the same model shape, against the
# machine's STREAM triad (tools/bench/README.md, "Decode beside llama.cpp"). `make
# bench-llamacpp LLAMA_CPP_DIR=...` runs it.
#
#   tools/bench/run_llamacpp.sh LLAMA_CPP_DIR
#
# LLAMA_CPP_DIR is a llama.cpp source tree built with cmake (build/bin/llama-batched-bench and
# gguf-py/ in it); nothing is downloaded. Without it, or with a directory that is not such a
# tree, the script prints one line saying it skipped and exits 0. It writes a GGUF of
# tools/bench/qwen2.5-0.5b-4layers.json's shape (Qwen2, F32, random weights, no tokenizer) with
# that tree's gguf-py (needs numpy: apt install python3-numpy), measures the roofline
# (bench_cpu_train --roofline, as run_sample.sh), then runs 3 rounds, each of gemc
# (build/bench_sample: 1 prompt x 1, 2 x 4 and 8 x 4 candidates, so 1, 8 and 32 decode rows,
# 128-token prompts, 32 new tokens, 3 timed runs) and then llama-batched-bench (-npp 128 -ntg 32
# -npl 1,8,32, CPU only), and prints one Markdown table of the medians over the rounds: decode
# tokens/s, prompt tokens/s, and at 1 row the bandwidth each reaches as a % of the triad.
# About 7 minutes on a 2-core machine.
# Environment:
#   BENCH_BIN            the gemc benchmark binary (default build/bench_sample; built if missing)
#   BENCH_ROOFLINE_BIN   the binary whose --roofline gives the triad (default
#                        build/bench_cpu_train; built if missing)
#   BENCH_BW             a STREAM triad in GB/s to use instead of measuring the roofline
#   BENCH_GGUF           where the GGUF goes (default build/bench-qwen2.5-0.5b-4layers-f32.gguf;
#                        kept, and written again when missing or older than the config)
#   BENCH_ROUNDS         rounds of the two programs (default 3)
#   BENCH_LOG_DIR        where every run's full output goes (default build/bench-logs)
#   OMP_NUM_THREADS      threads for gemc's OpenMP and llama.cpp's -t/-tb (default: all CPUs)
#   OMP_WAIT_POLICY      passed to both as set (unset by default)
# Prints one Markdown table. A benchmark, not a test: nothing here asserts a time.
set -eu

usage="usage: tools/bench/run_llamacpp.sh LLAMA_CPP_DIR, a tree built with cmake"
if [ $# -eq 0 ] || [ -z "$1" ]; then
    echo "run_llamacpp.sh: skipped: no llama.cpp tree given ($usage)"
    exit 0
fi
LC=$(cd "$1" 2>/dev/null && pwd) || LC=$1
LB=$LC/build/bin/llama-batched-bench
if [ ! -x "$LB" ] || [ ! -f "$LC/gguf-py/gguf/__init__.py" ]; then
    echo "run_llamacpp.sh: skipped: $1 has no build/bin/llama-batched-bench or no gguf-py/ ($usage: cmake -B build && cmake --build build --target llama-batched-bench)"
    exit 0
fi
cd "$(dirname "$0")/../.."

. tools/bench/bench_lib.sh

if ! $PY -c 'import numpy' 2>/dev/null; then
    echo "run_llamacpp.sh: $PY has no numpy, which gguf-py needs to write the GGUF (HINT: apt install python3-numpy)"
    exit 1
fi

CFG=tools/bench/qwen2.5-0.5b-4layers.json
BIN=${BENCH_BIN:-build/bench_sample}
ROOF=${BENCH_ROOFLINE_BIN:-build/bench_cpu_train}
GGUF=${BENCH_GGUF:-build/bench-qwen2.5-0.5b-4layers-f32.gguf}
ROUNDS=${BENCH_ROUNDS:-3}
POLICY=${OMP_WAIT_POLICY:-default}
PP=128
TG=32
SPECS="1:1 2:4 8:4" # PROMPTS:K for 1, 8 and 32 decode rows

[ -x "$BIN" ] || make --no-print-directory "$BIN"
mkdir -p "$LOGS"

# The GGUF: the config's Qwen2 shape in F32, matrices ~ N(0, 0.02) (fixed seed), norms 1, no
# tokenizer (tokenizer.ggml.model "none" with qwen2.vocab_size: llama.cpp then makes dummy
# tokens, enough for llama-batched-bench's random token ids).
if [ ! -f "$GGUF" ] || [ -n "$(find "$CFG" -newer "$GGUF")" ]; then
    echo "writing $GGUF..." >&2
    PYTHONPATH="$LC/gguf-py" $PY - "$CFG" "$GGUF.tmp" >"$LOGS/llamacpp-gguf.log" 2>&1 <<'EOF' || {
import json, sys
import numpy as np
import gguf

c = json.load(open(sys.argv[1]))
C, F, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
Hq, Hkv = c["num_attention_heads"], c["num_key_value_heads"]
D = c.get("head_dim", C // Hq)
assert c.get("tie_word_embeddings", False), "the GGUF writer here ties the head"
rng = np.random.default_rng(0)


def rand(*shape):
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)


w = gguf.GGUFWriter(sys.argv[2], gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN2])
w.add_block_count(L)
w.add_context_length(c["max_position_embeddings"])
w.add_embedding_length(C)
w.add_feed_forward_length(F)
w.add_head_count(Hq)
w.add_head_count_kv(Hkv)
w.add_key_length(D)
w.add_value_length(D)
w.add_rope_freq_base(float(c["rope_theta"]))
w.add_layer_norm_rms_eps(float(c["rms_norm_eps"]))
w.add_file_type(gguf.LlamaFileType.ALL_F32)
w.add_vocab_size(V)
w.add_tokenizer_model("none")
T, N = gguf.MODEL_TENSOR, gguf.TENSOR_NAMES
w.add_tensor(N[T.TOKEN_EMBD] + ".weight", rand(V, C))  # tied: also the head
w.add_tensor(N[T.OUTPUT_NORM] + ".weight", np.ones(C, np.float32))
for i in range(L):
    def name(t, kind="weight"):
        return N[t].format(bid=i) + "." + kind
    w.add_tensor(name(T.ATTN_NORM), np.ones(C, np.float32))
    for t, rows in ((T.ATTN_Q, Hq * D), (T.ATTN_K, Hkv * D), (T.ATTN_V, Hkv * D)):
        w.add_tensor(name(t), rand(rows, C))  # numpy [out, in] is ggml's ne = {in, out}
        w.add_tensor(name(t, "bias"), rand(rows))
    w.add_tensor(name(T.ATTN_OUT), rand(C, Hq * D))
    w.add_tensor(name(T.FFN_NORM), np.ones(C, np.float32))
    w.add_tensor(name(T.FFN_GATE), rand(F, C))
    w.add_tensor(name(T.FFN_UP), rand(F, C))
    w.add_tensor(name(T.FFN_DOWN), rand(C, F))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
EOF
        echo "failed: writing $GGUF with $LC/gguf-py (see $LOGS/llamacpp-gguf.log)" >&2
        tail -5 "$LOGS/llamacpp-gguf.log" >&2
        rm -f "$GGUF.tmp"
        exit 1
    }
    mv "$GGUF.tmp" "$GGUF"
fi

# fp32 bytes of the weights one decode step reads per token: every matrix of the L layers
# (q, k, v, o and the three MLP ones) and the V x C head; norms and biases left out.
bytes=$($PY -c 'import json, sys
c = json.load(open(sys.argv[1]))
C, F, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
Hq, Hkv = c["num_attention_heads"], c["num_key_value_heads"]
D = c.get("head_dim", C // Hq)
print(4 * (L * (2 * C * Hq * D + 2 * C * Hkv * D + 3 * C * F) + V * C))' "$CFG")

if [ -n "${BENCH_BW:-}" ]; then
    bw=$BENCH_BW
    roofline="roofline: not measured, BENCH_BW=$bw GB/s"
else
    roofline_run "$LOGS/llamacpp-roofline.log" "$POLICY"
    roofline=$(awk -v a="$peak" -v b="$bw" 'BEGIN{printf "roofline: sgemm 4096^3 %.1f GFLOP/s (best of 3), STREAM triad %.1f GB/s (best of 10)", a, b}')
fi

# per-round figures, one line each: "PROGRAM ROWS DECODE_TOK_S PREFILL_TOK_S"
figs="$LOGS/llamacpp-figures.txt"
: >"$figs"
lbargs="-m $GGUF -c $(((PP + TG) * 32)) -npp $PP -ntg $TG -npl 1,8,32 -t $THREADS -tb $THREADS -dev none -ctk f32 -ctv f32 --output-format jsonl"
r=0
while [ "$r" -lt "$ROUNDS" ]; do
    r=$((r + 1))
    for spec in $SPECS; do
        b=${spec%:*} k=${spec#*:}
        rows=$((b * k))
        echo "[round $r/$ROUNDS] gemc, $rows rows" >&2
        log="$LOGS/llamacpp-r$r-gemc-$rows.log"
        run "$log" "$POLICY" "$BIN" --config "$CFG" --prompt-len $PP --new $TG --runs 3 --prompts "$b" --k "$k"
        awk -v n="$rows" -v b="$b" -v p=$PP -v st="$(result step_ms "$log")" -v pre="$(result prefill_ms "$log")" \
            'BEGIN{printf "gemc %d %.4f %.4f\n", n, n * 1000 / st, b * p * 1000 / pre}' >>"$figs"
    done
    echo "[round $r/$ROUNDS] llama.cpp, 1, 8 and 32 rows" >&2
    log="$LOGS/llamacpp-r$r-llama.log"
    # shellcheck disable=SC2086
    run "$log" "$POLICY" "$LB" $lbargs
    for rows in 1 8 32; do
        line=$(grep "\"pl\": $rows," "$log" || true)
        if [ -z "$line" ]; then
            echo "failed: no $rows-row result in $log" >&2
            exit 1
        fi
        printf '%s\n' "$line" | awk -v n="$rows" '{
            for (i = 1; i <= NF; i++) { k = $i; gsub(/[{}",:]/, "", k); v = $(i + 1); gsub(/[},]/, "", v); f[k] = v }
            printf "llama %d %.4f %.4f\n", n, f["speed_tg"], f["speed_pp"] }' >>"$figs"
    done
done

# med PROGRAM ROWS FIELD: the median over the rounds of FIELD (3 decode, 4 prefill), then the
# minimum and the maximum
med() {
    awk -v p="$1" -v n="$2" -v f="$3" '$1 == p && $2 == n {print $f}' "$figs" | sort -g |
        awk '{v[NR] = $1} END{print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1], v[NR]}'
}

lver=$("$LB" --version 2>&1 | sed -n 's/^version: *//p' | head -1)
echo
echo "machine: $model, $((sockets * cores)) cores ($tpc thread(s) per core, $ncpu CPUs)," \
    "$THREADS threads used (gemc OpenMP; llama.cpp -t/-tb), OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}"
echo "$roofline"
gemc_build "$LOGS/llamacpp-r$ROUNDS-gemc-1.log"
echo "llama.cpp: $LC, version ${lver:-?}: llama-batched-bench on the CPU (-dev none), F32 weights and KV cache (as gemc), flash attention its default (auto)"
echo
echo "| decode rows (gemc prompts x k) | gemc decode tokens/s | llama.cpp decode tokens/s | gemc / llama.cpp |" \
    "gemc prompt tokens/s | llama.cpp prompt tokens/s | GB/s at 1 row, % of triad: gemc / llama.cpp |"
echo "|---|---:|---:|---:|---:|---:|---|"
for spec in $SPECS; do
    b=${spec%:*} k=${spec#*:}
    rows=$((b * k))
    awk -v n="$rows" -v b="$b" -v k="$k" -v by="$bytes" -v bw="$bw" -v gd="$(med gemc "$rows" 3)" \
        -v ld="$(med llama "$rows" 3)" -v gp="$(med gemc "$rows" 4)" -v lp="$(med llama "$rows" 4)" 'BEGIN{
        split(gd, g, " "); split(ld, l, " "); split(gp, G, " "); split(lp, P, " ");
        cell = "";
        if (n == 1) cell = sprintf("%.1f (%.0f%%) / %.1f (%.0f%%)", g[1] * by / 1e9, 100 * g[1] * by / 1e9 / bw,
                                   l[1] * by / 1e9, 100 * l[1] * by / 1e9 / bw);
        printf "| %d (%d x %d) | %.1f (%.1f-%.1f) | %.1f (%.1f-%.1f) | %.2f | %.0f | %.0f | %s |\n",
            n, b, k, g[1], g[2], g[3], l[1], l[2], l[3], g[1] / l[1], G[1], P[1], cell }'
done
echo
awk -v by="$bytes" -v r="$ROUNDS" 'BEGIN{printf "Medians of %d rounds, (min-max) over them. Decode tokens/s: gemc rows x 1000 / step_ms (the median of its 3 runs; the draws included), llama.cpp S_TG. Prompt tokens/s (128-token prompts): gemc prompts x 128 / prefill_ms, llama.cpp S_PP (rows x 128 tokens, a prompt per row). GB/s at 1 row: decode tokens/s x %.1f MB, the fp32 weights a decode step reads (L x (2*C*Hq*D + 2*C*Hkv*D + 3*C*I) + V*C floats).\n", r, by / 1e6}'
echo "Commands (full logs in $LOGS/llamacpp-*.log):"
echo
for spec in $SPECS; do
    echo "- \`OMP_NUM_THREADS=$THREADS $BIN --config $CFG --prompt-len $PP --new $TG --runs 3 --prompts ${spec%:*} --k ${spec#*:}\`"
done
echo "- \`$LB $lbargs\`"
