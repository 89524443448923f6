#!/bin/sh
# `make ablation`: every reward source and GEM ablation on the embedded task, the same budget
# each (configs/demo.yaml's: 60 steps of 16 prompts, lr 5e-5), on several seeds, from the same
# SFT model per seed. Writes runs/ablation/results.md (held-out task accuracy of each run
# with its 95% Wilson interval, and each variant's mean over the seeds with a 95% t interval)
# and runs/ablation/curves.png (the in-training accuracy curves of the first seed).
#
#   sh tools/ablation.sh [SEEDS]      default "1 2 3"; OUT=DIR moves runs/ablation
# Extra settings for every run: ARGS="key=value ..."; make_task's knobs: TASK_ARGS="--knob N ...".
# The earlier task: TASK_ARGS="--max-value 12 --max-start 9 --max-operand 5 --test 200"
# ARGS="sft.steps=600" OUT=runs/ablation_earlier. TABLE_ONLY=1 redraws the table and the
# plot from the runs already in OUT. About 22 minutes on 2 cores (README, "The ablation").
set -eu
seeds=${1:-"1 2 3"}
out=${OUT:-runs/ablation}
task=${TASK_DIR:-data/arith}
make_task=${MAKE_TASK:-build/make_task}
args=${ARGS:-}
task_args=${TASK_ARGS:-} # make_task's knobs: another task
# every run reads the demo's config; the in-training curves (curves.png) are 64 held-out problems
# every 10 steps, the final evaluation all of them
base="configs/demo.yaml eval.every=10 eval.every_max=64 eval.signal_k=0"
t0=$(date +%s)

# name | stage | settings
variants='gem|train|
gem_no_fork|train|score.lambda_fork=0
gem_no_final|train|score.lambda_final=0
gem_pairs_dpo|dpo|dpo.pairs=entropy dpo.data=data/arith/train_prompts.jsonl
dpo|dpo|
answer|train|reward.source=answer
majority|train|reward.source=majority
self_certainty|train|reward.source=self_certainty
entropy|train|reward.source=entropy'

"$make_task" --seed 1 --out "$task" $task_args >/dev/null
mkdir -p "$out"
# TABLE_ONLY=1: only the table and the plot, from runs already made
[ "${TABLE_ONLY:-0}" = 1 ] && seeds_to_run="" || seeds_to_run=$seeds
for s in $seeds_to_run; do
    d=$out/s$s
    if [ ! -f "$d/init/config.json" ]; then
        ./gemc init --config "$task/config.json" --tokenizer "$task" --out "$d/init" --seed 1 \
            --dtype f32 >/dev/null
    fi
    echo "== seed $s: sft ($(($(date +%s) - t0)) s so far)"
    ./gemc sft $base run.seed=$s sft.model=$d/init sft.dir=$d/sft run.progress=false \
        eval.every=0 $args >"$d/sft.log"
    models="sft=$d/sft/final"
    echo "$variants" | while IFS='|' read -r name stage settings; do
        echo "== seed $s: $name ($(($(date +%s) - t0)) s so far)"
        ./gemc "$stage" $base run.seed=$s "$stage.model=$d/sft/final" "$stage.dir=$d/$name" \
            run.progress=false $settings $args >"$d/$name.log" 2>&1 ||
            { echo "$name failed: see $d/$name.log"; tail -3 "$d/$name.log"; exit 1; }
    done
    for name in $(echo "$variants" | cut -d'|' -f1); do models="$models,$name=$d/$name/final"; done
    ./gemc eval $base run.seed=$s "eval.models=[$models]" eval.dir=$d/eval eval.pairs= \
        run.progress=false $args >"$d/eval.log"
done

. tools/table_lib.sh
# the table: one row per variant, one column per seed, then the mean over the seeds and the
# mean change against the same seed's SFT model, each with a 95% t interval
{
    echo "| variant | $(for s in $seeds; do printf 'seed %s | ' "$s"; done)mean | change against SFT, points [95%] |"
    echo "|---|$(for s in $seeds; do printf -- '---|'; done)---|---|"
    for name in sft $(echo "$variants" | cut -d'|' -f1); do
        row="| $name |"
        accs="" diffs=""
        for s in $seeds; do
            cell=$(cell_of "$name" "$out/s$s/eval/results.md")
            base=$(num_of "$(cell_of sft "$out/s$s/eval/results.md")")
            row="$row$cell|"
            accs="$accs $(num_of "$cell")"
            diffs="$diffs $(echo "$(num_of "$cell") $base" | awk '{print $1 - $2}')"
        done
        mean=$(echo "$accs" | awk '{for (i = 1; i <= NF; i++) s += $i; printf "%.1f%%", s / NF}')
        if [ "$name" = sft ]; then change="-"; else change=$(t_mean "$diffs" -100 100); fi
        echo "$row $mean | $change |"
    done
} >"$out/results.md"
first=$(echo "$seeds" | awk '{print $1}')
runs=""
for name in $(echo "$variants" | cut -d'|' -f1); do runs="$runs $out/s$first/$name"; done
./gemc plot $runs --out "$out/curves.png" >/dev/null 2>&1 ||
    echo "(no plot: gemc plot needs gnuplot)"
echo
cat "$out/results.md"
echo "held-out task accuracy, $(sed -n "s/.*task accuracy (n=\([0-9]*\)).*/\1/p" "$out/s$first/eval/results.md" |
    head -1) prompts; the table: $out/results.md; curves: $out/curves.png"
echo "($(($(date +%s) - t0)) s)"
