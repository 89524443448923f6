#!/bin/sh
# `make demo`: the embedded default, end to end on the CPU (configs/demo.yaml).
# 1. task: arithmetic word problems, byte-level tokenizer and tiny model config (data/arith)
# 2. init: a random tiny Llama with that tokenizer
# 3. sft:  supervised fine-tuning on the chosen answers
# 4. train: GEM from the SFT model, label-free (entropy-scored candidates, SEGA)
# 5. dpo:  the DPO baseline from the same SFT model, same number of steps and prompts per step
# 6. eval: held-out task accuracy and preference accuracy after SFT, GEM and DPO
# 7. plot: GEM against DPO on one sheet (runs/demo/gem_vs_dpo.png)
# Every stage ends with its summary table (gemc report RUN_DIR prints it again) and logs its
# metrics for TensorBoard too: tensorboard --logdir runs/demo.
# Extra key=value arguments go to every stage (e.g. `make demo ARGS="run.seed=2"`).
set -eu
config=${DEMO_CONFIG:-configs/demo.yaml}
task=${TASK_DIR:-data/arith}
make_task=${MAKE_TASK:-build/make_task}
t0=$(date +%s)
stamp() { echo "   ($(($(date +%s) - t0)) s so far)"; }

echo "== 1. the embedded task (seed 1) in $task"
"$make_task" --seed 1 --out "$task"

echo
echo "== 2. a random tiny model with the task's tokenizer"
./gemc init --config "$task/config.json" --tokenizer "$task" --out runs/demo/init --seed 1 \
    --dtype f32
./gemc check-data --data "$task/train_pairs.jsonl" --kind pairs --model runs/demo/init

echo
echo "== 3. SFT"
./gemc sft "$config" eval.every=100 "$@"
stamp
echo
echo "== 4. GEM (label-free)"
./gemc train "$config" "$@"
stamp
echo
echo "== 5. DPO baseline"
./gemc dpo "$config" "$@"
stamp
echo
echo "== 6. evaluation on the held-out split"
./gemc eval "$config" "$@"
stamp
echo
echo "== 7. GEM against DPO"
./gemc plot runs/demo/gem runs/demo/dpo --out runs/demo/gem_vs_dpo.png
echo "the curves of both runs: runs/demo/gem_vs_dpo.png (tensorboard --logdir runs/demo shows them too)"
