#!/bin/sh
# `make demo`: the embedded default, end to end on the CPU.
# 1. task: the arithmetic word problems, byte-level tokenizer and tiny model config (data/arith)
# 2. init: a random tiny Llama with that tokenizer, saved as a Hugging Face folder
# 3. check-data: the SFT pairs through the chat template and tokenizer, as training reads them
# 4. tokenize one worked answer, score it, overfit it with AdamW, score it again
set -eu
out=${DEMO_DIR:-runs/demo}
task=${TASK_DIR:-data/arith}
make_task=${MAKE_TASK:-build/make_task}

echo "== 1. the embedded task (seed 1) in $task"
"$make_task" --seed 1 --out "$task"
echo "first SFT pair:"
head -1 "$task/train_pairs.jsonl"

echo
echo "== 2. a random tiny model with the task's tokenizer"
./gemc init --config "$task/config.json" --tokenizer "$task" --out "$out/init" --seed 1 --dtype f32

echo
echo "== 3. the SFT pairs as the model will see them"
./gemc check-data --data "$task/train_pairs.jsonl" --kind pairs --model "$out/init" --show 1

text=$(printf 'Mia starts with 7 apples.\n7 + 5 = 12\n12 - 3 = 9\nFinal Answer: 9<|end_of_text|>')
ids=$(./gemc tokenize --tokenizer "$out/init" --text "$text" --add-special)
echo
echo "== 4. score a worked answer ($(echo "$ids" | tr ',' '\n' | wc -l) tokens: $(echo "$ids" | cut -c1-40)...)"
echo "p	next	logprob	entropy"
./gemc score --model "$out/init" --ids "$ids" | tee "$out/score-before.tsv" | head -5
echo "..."
./gemc overfit --model "$out/init" --ids "$ids" --steps 30 --lr 3e-3 --out "$out/overfit" --dtype f32 |
    tail -2
./gemc score --model "$out/overfit" --ids "$ids" >"$out/score-after.tsv"

mean() { awk -F'\t' '{ s += $3; n++ } END { printf "%.4f", s / n }' "$1"; }
echo
echo "mean log-prob of the next token: $(mean "$out/score-before.tsv") before, $(mean "$out/score-after.tsv") after"
echo "the ids decode back to:"
./gemc detokenize --tokenizer "$out/overfit" --ids "$ids"
echo "models in $out/init and $out/overfit (load them with transformers' AutoModelForCausalLM"
echo "and AutoTokenizer)"
