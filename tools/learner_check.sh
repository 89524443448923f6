#!/bin/sh
# `make learner-check`: does the SEGA learner improve a model when it is given the right signal?
# On each seed, from the default task (make_task's defaults: README, "The learner check"):
#   sft       SFT from a random init (configs/demo.yaml's sft section; the init is the same for
#             every seed, as in make ablation and the demo: run.seed moves the data order and the
#             samples)
#   answer    RL from it with the true reward (reward.source=answer: the RLVR / GRPO baseline)
#   random    the same budget with reward.source=random, the control: the group's answer
#             rewards in a seeded random order (a learner that gains as much from it proves
#             nothing)
#   sft_more  SFT continued for the same number of steps, on the labelled pairs: the ceiling a
#             labelled method reaches on this budget
# Every model is evaluated on the held-out problems (data/arith/test_prompts.jsonl, 500 with the
# defaults): greedy accuracy, and pass@1, pass@K and majority@K of K samples at the training
# temperature (eval.pass_k). Writes OUT/results.md (a table with 95% intervals: Wilson per model,
# t over the seeds for the mean change against SFT), OUT/results.json (a list `runs` of
# {seed, model, greedy, pass1, pass_k, majority_k, k, n}) and OUT/curves.png (the first seed's
# RL runs, gemc plot).
#
#   sh tools/learner_check.sh [SEEDS]   default "1 2 3"; OUT=DIR moves runs/learner-check
# ARGS="key=value ..." goes to every stage; TASK_ARGS="--knob N ..." to make_task (another
# task, e.g. TASK_ARGS="--max-value 12 --max-start 9 --max-operand 5" for the earlier one).
# TABLE_ONLY=1 redraws the table from the runs in OUT. About 6 minutes a seed on 2 cores.
set -eu
seeds=${1:-"1 2 3"}
out=${OUT:-runs/learner-check}
task=${TASK_DIR:-$out/task}
make_task=${MAKE_TASK:-build/make_task}
gemc=${GEMC:-./gemc}
args=${ARGS:-}
task_args=${TASK_ARGS:-}
K=${PASS_K:-8}
# the RL budget (README, "The learner check": how it was chosen)
rl_steps=${RL_STEPS:-100}
rl="train.steps=$rl_steps sampling.k=8 train.lr=${RL_LR:-1e-4} train.schedule=constant
    train.warmup_steps=10"
base="configs/demo.yaml eval.signal_k=0 eval.pairs= run.progress=false
      eval.prompts=$task/test_prompts.jsonl"
t0=$(date +%s)
stamp() { echo "   ($(($(date +%s) - t0)) s so far)"; }

mkdir -p "$out"
[ "${TABLE_ONLY:-0}" = 1 ] && seeds_to_run="" || seeds_to_run=$seeds
if [ -n "$seeds_to_run" ]; then
    "$make_task" --seed 1 --test 500 --out "$task" $task_args >/dev/null
fi
for s in $seeds_to_run; do
    d=$out/s$s
    "$gemc" init --config "$task/config.json" --tokenizer "$task" --out "$d/init" --seed 1 \
        --dtype f32 >/dev/null
    echo "== seed $s: sft"
    "$gemc" sft $base run.seed=$s sft.model=$d/init sft.dir=$d/sft \
        sft.data=$task/train_pairs.jsonl eval.every=0 $args >"$d/sft.log" 2>&1 ||
        { echo "sft failed: see $d/sft.log"; exit 1; }
    stamp
    for source in answer random; do
        echo "== seed $s: RL with reward.source=$source"
        "$gemc" train $base $rl run.seed=$s train.model=$d/sft/final train.dir=$d/$source \
            train.data=$task/train_prompts.jsonl reward.source=$source eval.every=25 \
            eval.every_max=100 $args >"$d/$source.log" 2>&1 ||
            { echo "$source failed: see $d/$source.log"; exit 1; }
        stamp
    done
    echo "== seed $s: sft_more (SFT continued for $rl_steps steps)"
    "$gemc" sft $base run.seed=$s sft.model=$d/sft/final sft.dir=$d/sft_more \
        sft.data=$task/train_pairs.jsonl sft.steps=$rl_steps sft.lr=${SFT_MORE_LR:-3e-4} \
        sft.schedule=constant sft.warmup_steps=0 eval.every=0 $args >"$d/sft_more.log" 2>&1 ||
        { echo "sft_more failed: see $d/sft_more.log"; exit 1; }
    echo "== seed $s: eval (greedy, pass@$K)"
    "$gemc" eval $base run.seed=$s eval.pass_k=$K eval.dir=$d/eval \
        "eval.models=[sft=$d/sft/final,answer=$d/answer/final,random=$d/random/final,sft_more=$d/sft_more/final]" \
        $args >"$d/eval.log" 2>&1 || { echo "eval failed: see $d/eval.log"; exit 1; }
    stamp
done

. tools/table_lib.sh
# correct_share RUN FIRST|LAST: the mean share right over a run's first or last 20 steps
correct_share() {
    awk -v which="$2" 'match($0, /"correct": [0-9.e-]+/) {
        v[n++] = substr($0, RSTART + 11, RLENGTH - 11) } END {
        a = which == "first" ? 0 : n - 20; if (a < 0) a = 0; b = a + 20; if (b > n) b = n;
        for (i = a; i < b; i++) s += v[i]; printf "%.3f", (b > a ? s / (b - a) : 0) }' "$1/metrics.jsonl"
}
models="sft answer random sft_more"
{
    echo "| model | $(for s in $seeds; do printf 'seed %s greedy | ' "$s"; done)change against SFT, points [95%] | pass@1, mean | pass@$K, mean |"
    echo "|---|$(for s in $seeds; do printf -- '---|'; done)---|---|---|"
    for name in $models; do
        row="| $name |" diffs="" p1="" pk=""
        for s in $seeds; do
            f=$out/s$s/eval/results.md
            cell=$(cell_of "$name" "$f")
            row="$row$cell|"
            diffs="$diffs $(echo "$(num_of "$cell") $(num_of "$(cell_of sft "$f")")" | awk '{print $1 - $2}')"
            p1="$p1 $(field_of "$name" pass1 "$out/s$s/eval/results.json")"
            pk="$pk $(field_of "$name" pass_k "$out/s$s/eval/results.json")"
        done
        if [ "$name" = sft ]; then change="-"; else change=$(t_mean "$diffs" -100 100); fi
        echo "$row $change | $(echo "$p1" | awk '{for (i = 1; i <= NF; i++) s += $i; printf "%.1f%%", (NF ? 100 * s / NF : 0)}') | $(echo "$pk" | awk '{for (i = 1; i <= NF; i++) s += $i; printf "%.1f%%", (NF ? 100 * s / NF : 0)}') |"
    done
    echo
    echo "Training reward (share of right samples), first 20 steps -> last 20 steps:"
    echo
    for name in answer random; do
        printf -- '- %s:' "$name"
        for s in $seeds; do
            a=$(correct_share "$out/s$s/$name" first) b=$(correct_share "$out/s$s/$name" last)
            printf ' seed %s %s -> %s (x%s);' "$s" "$a" "$b" "$(echo "$a $b" | awk '{printf "%.2f", ($1 > 0 ? $2 / $1 : 0)}')"
        done
        echo
    done
} >"$out/results.md"
{
    echo "{"
    echo "  \"k\": $K,"
    echo "  \"runs\": ["
    first=1
    for s in $seeds; do
        j=$out/s$s/eval/results.json
        for name in $models; do
            [ $first = 1 ] || echo ","
            first=0
            printf '    {"seed": %s, "model": "%s", "greedy": %s, "pass1": %s, "pass_k": %s, "majority_k": %s, "k": %s, "n": %s}' \
                "$s" "$name" "$(field_of "$name" task_accuracy "$j")" "$(field_of "$name" pass1 "$j")" \
                "$(field_of "$name" pass_k "$j")" "$(field_of "$name" majority_k_accuracy "$j")" "$K" \
                "$(field_of "$name" task_n "$j")"
        done
    done
    echo
    echo "  ]"
    echo "}"
} >"$out/results.json"
first=$(echo "$seeds" | awk '{print $1}')
"$gemc" plot "$out/s$first/answer" "$out/s$first/random" --out "$out/curves.png" >/dev/null 2>&1 ||
    echo "(no curves.png: gemc plot needs gnuplot)"
echo
cat "$out/results.md"
echo "held-out greedy accuracy and pass@$K; the table: $out/results.md, the runs: $out/results.json"
echo "($(($(date +%s) - t0)) s)"
