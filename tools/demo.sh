#!/bin/sh
# `make demo`: the embedded default, end to end on the CPU (configs/demo.yaml).
# 1. task: arithmetic word problems, byte-level tokenizer and tiny model config (data/arith)
# 2. init: a random tiny Llama with that tokenizer
# 3. sft:  supervised fine-tuning on the chosen answers
# 4. train: GEM from the SFT model, label-free (entropy-scored candidates, SEGA)
# 5. train with reward.source=answer: the learner check (the true reward, which needs labels),
#    with make learner-check's settings
# 6. train with reward.source=entropy: the label-free source that did best in make ablation
# 7. eval: held-out task accuracy and preference accuracy after SFT and each of the three
# 8. plot: the three runs on one sheet (runs/demo/runs.png)
# (DPO, the labelled baseline, is in make ablation: ./gemc dpo configs/demo.yaml runs it.)
# Every stage ends with its summary table (gemc report RUN_DIR prints it again) and logs its
# metrics for TensorBoard too: tensorboard --logdir runs/demo.
# Extra key=value arguments go to every stage (e.g. `make demo ARGS="run.seed=2"`).
set -eu
config=${DEMO_CONFIG:-configs/demo.yaml}
task=${TASK_DIR:-data/arith}
make_task=${MAKE_TASK:-build/make_task}
# the learner check's settings (tools/learner_check.sh, README "The learner check") on the demo's
# 60 steps
LEARNER_CHECK="sampling.k=8 train.lr=1e-4 train.schedule=constant"
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
./gemc sft "$config" eval.every=300 "$@"
stamp
echo
echo "== 4. GEM (label-free)"
./gemc train "$config" "$@"
stamp
echo
echo "== 5. the learner check: the same SEGA update on the true reward (reward.source=answer)"
./gemc train "$config" reward.source=answer train.dir=runs/demo/answer $LEARNER_CHECK "$@"
stamp
echo
echo "== 6. the best label-free baseline of make ablation: RENT (reward.source=entropy)"
./gemc train "$config" reward.source=entropy train.dir=runs/demo/entropy "$@"
stamp
echo
echo "== 7. evaluation on the held-out split"
# the first 200 of the 500 held-out problems keep the demo within 6 minutes (make learner-check
# evaluates all 500)
./gemc eval "$config" eval.max_prompts=200 "$@"
stamp
echo
echo "== 8. the runs side by side"
./gemc plot runs/demo/gem runs/demo/answer runs/demo/entropy --out runs/demo/runs.png
echo "the curves of the three runs: runs/demo/runs.png (tensorboard --logdir runs/demo shows them too)"
