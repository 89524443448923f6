#!/bin/sh
# `make learner-check`: does the SEGA learner improve a model when it is given the right signal?
# On each seed: SFT as configs/demo.yaml but over a 1000-step schedule, keeping a checkpoint every
# 100 steps; the start is the first checkpoint that answers at least 40% of 200 training
# problems (middling, with answers that mostly follow its own working: README, "Does gemc make a
# model better?"; the held-out problems play no part in the choice). From it, the same budget for
# the true reward (reward.source=answer, the RLVR/GRPO baseline) and for GEM (label-free): 200
# steps of 16 prompts x k=8, lr 1e-4 after 10 warmup steps, constant. Every run measures greedy
# accuracy on the 200 held-out problems every 50 steps. Writes OUT/results.md: each model's
# held-out accuracy with its 95% Wilson interval, the mean change against the start with a 95% t
# interval, and the training reward curve (share right over the first and last 20 steps).
# The 1000-step SFT model (the rest of the SFT schedule) is the supervised reference.
#
#   sh tools/learner_check.sh [SEEDS]   default "1 2 3"; OUT=DIR moves runs/learner_check
# Extra settings for every run: ARGS="key=value ...". SOURCES="answer" runs only the true reward.
# TABLE_ONLY=1 redraws the table. A seed's SFT model and its choice of start are reused when OUT
# already holds them (delete OUT to start over).
# About 10 minutes a seed on 2 cores.
set -eu
seeds=${1:-"1 2 3"}
out=${OUT:-runs/learner_check}
task=${TASK_DIR:-data/arith}
make_task=${MAKE_TASK:-build/make_task}
args=${ARGS:-}
sources=${SOURCES:-"answer gem"}
base="configs/demo.yaml eval.signal_k=0 eval.pairs= run.progress=false"
budget="train.steps=200 sampling.k=8 train.lr=1e-4 optim.schedule=constant eval.every=50
        eval.every_max=200"
t0=$(date +%s)

"$make_task" --seed 1 --out "$task" >/dev/null
mkdir -p "$out"
[ "${TABLE_ONLY:-0}" = 1 ] && seeds_to_run="" || seeds_to_run=$seeds
for s in $seeds_to_run; do
    d=$out/s$s
    if [ ! -f "$d/init/config.json" ]; then
        ./gemc init --config "$task/config.json" --tokenizer "$task" --out "$d/init" --seed 1 \
            --dtype f32 >/dev/null
    fi
    if [ ! -f "$d/sft/final/config.json" ]; then
        echo "== seed $s: sft ($(($(date +%s) - t0)) s so far)"
        ./gemc sft $base run.seed=$s sft.model=$d/init sft.dir=$d/sft sft.steps=1000 \
            run.save_every=100 eval.every=0 $args >"$d/sft.log"
    fi
    # the start: the first checkpoint at 40% or more on the first 200 training problems
    head -n 200 "$task/train_prompts.jsonl" >"$out/train_200.jsonl"
    models=$(ls -d "$d"/sft/checkpoints/step_* | awk '{printf "%s%s=%s", (NR > 1 ? "," : ""),
        substr($0, length($0) - 3), $0}')
    if [ ! -f "$d/sft_choice/results.md" ]; then
        ./gemc eval $base run.seed=$s "eval.models=[$models]" \
            eval.prompts="$out/train_200.jsonl" eval.dir=$d/sft_choice $args >"$d/sft_choice.log"
    fi
    step=$(awk -F'|' 'NR > 2 { v = $3; sub("%.*", "", v); if (v + 0 >= 40) { print $2; exit } }' \
        "$d/sft_choice/results.md" | tr -d ' ')
    [ -n "$step" ] || { echo "seed $s: no SFT checkpoint reaches 40% ($d/sft_choice)"; exit 1; }
    start=$d/sft/checkpoints/step_00$step
    echo "== seed $s: the start is SFT step $(echo "$step" | sed 's/^0*//')"
    models="start=$start"
    for source in $sources; do
        echo "== seed $s: $source ($(($(date +%s) - t0)) s so far)"
        ./gemc train $base $budget run.seed=$s train.model=$start train.dir=$d/$source \
            reward.source=$source $args >"$d/$source.log" 2>&1 ||
            { echo "$source failed: see $d/$source.log"; tail -3 "$d/$source.log"; exit 1; }
        models="$models,$source=$d/$source/final"
    done
    ./gemc eval $base run.seed=$s "eval.models=[$models,sft_1000=$d/sft/final]" eval.dir=$d/eval \
        $args >"$d/eval.log"
done

. tools/table_lib.sh
# correct_share RUN FIRST|LAST: the mean share right over a run's first or last 20 steps
correct_share() {
    awk -v which="$2" 'match($0, /"correct": [0-9.e-]+/) {
        v[n++] = substr($0, RSTART + 11, RLENGTH - 11) } END {
        a = which == "first" ? 0 : n - 20; if (a < 0) a = 0; b = a + 20; if (b > n) b = n;
        for (i = a; i < b; i++) s += v[i]; printf "%.2f", s / (b - a) }' "$1/metrics.jsonl"
}
{
    echo "| model | $(for s in $seeds; do printf 'seed %s | ' "$s"; done)change against the start, points [95%] |"
    echo "|---|$(for s in $seeds; do printf -- '---|'; done)---|"
    for name in start $sources sft_1000; do
        row="| $name |" diffs=""
        for s in $seeds; do
            cell=$(cell_of "$name" "$out/s$s/eval/results.md")
            row="$row$cell|"
            diffs="$diffs $(echo "$(num_of "$cell") $(num_of "$(cell_of start "$out/s$s/eval/results.md")")" |
                awk '{print $1 - $2}')"
        done
        if [ "$name" = start ]; then change="-"; else change=$(t_mean "$diffs" -100 100); fi
        echo "$row $change |"
    done
    echo
    echo "Training reward curve (share of right candidates, first 20 steps -> last 20 steps):"
    echo
    for name in $sources; do
        printf -- '- %s:' "$name"
        for s in $seeds; do
            printf ' seed %s %s -> %s;' "$s" "$(correct_share "$out/s$s/$name" first)" \
                "$(correct_share "$out/s$s/$name" last)"
        done
        echo
    done
} >"$out/results.md"
echo
cat "$out/results.md"
echo "held-out task accuracy, 200 prompts; the table: $out/results.md"
echo "($(($(date +%s) - t0)) s)"
