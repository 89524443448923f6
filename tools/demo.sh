#!/bin/sh
# `make demo`: the embedded tiny model, end to end on the CPU.
# 1. init: a random tiny Llama (configs/models/tiny-llama.json), saved as a Hugging Face folder
# 2. score: per-position log-probs and entropies of a byte-level sentence
# 3. overfit: AdamW on that sentence, then the same score again
set -eu
out=${DEMO_DIR:-runs/demo}
text="Final Answer: 42"
# byte-level ids: each byte is its own token, after the BOS token (256)
ids="256,$(printf '%s' "$text" | od -An -tu1 -v | tr -s ' \n' ',' | sed 's/^,//; s/,$//')"

echo "== 1. a random tiny model"
./gemc init --config configs/models/tiny-llama.json --out "$out/init" --seed 1 --dtype f32

echo
echo "== 2. score '$text' (ids $ids)"
echo "p	next	logprob	entropy"
./gemc score --model "$out/init" --ids "$ids" | tee "$out/score-before.tsv" | head -5
echo "..."

echo
echo "== 3. overfit the sentence with AdamW"
./gemc overfit --model "$out/init" --ids "$ids" --steps 30 --lr 3e-3 --out "$out/overfit" --dtype f32
./gemc score --model "$out/overfit" --ids "$ids" > "$out/score-after.tsv"

mean() { awk -F'\t' '{ s += $3; n++ } END { printf "%.4f", s / n }' "$1"; }
echo
echo "mean log-prob of the next token: $(mean "$out/score-before.tsv") before, $(mean "$out/score-after.tsv") after"
echo "models in $out/init and $out/overfit (load them with transformers' AutoModelForCausalLM)"
