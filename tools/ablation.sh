#!/bin/sh
# `make ablation`: every reward source and GEM ablation on the embedded task, the same budget
# each (configs/demo.yaml's: 60 steps of 16 prompts, lr 5e-5), on several seeds, from the same
# SFT model per seed. Writes runs/ablation/results.md (held-out task accuracy of each run
# with its 95% Wilson interval, each variant's mean over the seeds with a 95% t interval, and
# each SFT model's pass@K and the AUROC of every source on its samples) and
# runs/ablation/curves.png (the in-training accuracy curves of the first seed). Runs whose final
# model exists are kept, so a stopped ablation goes on where it was.
#
#   sh tools/ablation.sh [SEEDS]      default "1 2 3"; OUT=DIR moves runs/ablation
# Extra settings for every run: ARGS="key=value ..."; make_task's knobs: TASK_ARGS="--knob N ...".
# The earlier task: TASK_ARGS="--max-value 12 --max-start 9 --max-operand 5 --test 200"
# ARGS="sft.steps=600" OUT=runs/ablation_earlier. PASS_K (8) and SIGNAL_PROMPTS (128) size
# the SFT model's check. TABLE_ONLY=1 redraws the table and the
# plot from the runs already in OUT. About 11 minutes a seed on 2 cores (README, "The ablation").
set -eu
seeds=${1:-"1 2 3"}
out=${OUT:-runs/ablation}
task=${TASK_DIR:-data/arith}
make_task=${MAKE_TASK:-build/make_task}
args=${ARGS:-}
task_args=${TASK_ARGS:-} # make_task's knobs: another task
K=${PASS_K:-8}                       # the SFT model's pass@K, and the signal check's group size
signal_prompts=${SIGNAL_PROMPTS:-128} # prompts of the signal check
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
    # a run whose final model exists is kept, so an interrupted ablation goes on where it stopped
    if [ ! -f "$d/sft/final/config.json" ]; then
        echo "== seed $s: sft ($(($(date +%s) - t0)) s so far)"
        ./gemc sft $base run.seed=$s sft.model=$d/init sft.dir=$d/sft run.progress=false \
            eval.every=0 $args >"$d/sft.log"
    fi
    models="sft=$d/sft/final"
    echo "$variants" | while IFS='|' read -r name stage settings; do
        [ -f "$d/$name/final/config.json" ] && continue
        echo "== seed $s: $name ($(($(date +%s) - t0)) s so far)"
        ./gemc "$stage" $base run.seed=$s "$stage.model=$d/sft/final" "$stage.dir=$d/$name" \
            run.progress=false $settings $args >"$d/$name.log" 2>&1 ||
            { echo "$name failed: see $d/$name.log"; tail -3 "$d/$name.log"; exit 1; }
    done
    for name in $(echo "$variants" | cut -d'|' -f1); do models="$models,$name=$d/$name/final"; done
    if [ ! -f "$d/eval/results.md" ]; then
        ./gemc eval $base run.seed=$s "eval.models=[$models]" eval.dir=$d/eval eval.pairs= \
            run.progress=false $args >"$d/eval.log"
    fi
    # The SFT model's headroom and signal: pass@K at temperature 1, and how well each source
    # ranks what the SFT model samples. One step of train with SIGNAL_PROMPTS prompts x K draws
    # its shard from the SFT model (the update comes after it), and `gemc rescore` reads every
    # source's AUROC within groups from that shard and its answer labels.
    if [ ! -f "$d/signal.json" ]; then
        echo "== seed $s: the SFT model's pass@$K and signal check ($(($(date +%s) - t0)) s so far)"
        ./gemc eval $base run.seed=$s "eval.models=[sft=$d/sft/final]" eval.pass_k=$K \
            eval.dir=$d/eval_sft eval.pairs= run.progress=false $args >"$d/eval_sft.log"
        ./gemc train $base run.seed=$s train.model=$d/sft/final train.dir=$d/signal \
            train.steps=1 train.batch_size=$signal_prompts sampling.k=$K reward.source=answer \
            eval.every=0 run.progress=false $args >"$d/signal.log" 2>&1 ||
            { echo "signal failed: see $d/signal.log"; exit 1; }
        ./gemc rescore $d/signal --json >"$d/signal.json.tmp" && mv "$d/signal.json.tmp" "$d/signal.json"
    fi
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
    # each seed's SFT model: greedy, pass@1 and pass@K at temperature 1 (500 held-out problems),
    # and the AUROC within groups of each source on the SFT model's own samples
    echo
    echo "Each seed's SFT model: headroom (pass@$K at temperature 1) and the signal check, the"
    echo "AUROC within groups of each source on $signal_prompts training prompts x $K samples of the SFT model"
    echo "(0.5 = no better than a coin; the answer reward is 1 by definition):"
    echo
    echo "| seed | greedy | pass@1 | pass@$K | groups with right and wrong | gem | majority | self_certainty | entropy |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for s in $seeds; do
        j=$out/s$s/eval_sft/results.json sig=$out/s$s/signal.json
        [ -f "$j" ] && [ -f "$sig" ] || continue
        mixed=$(awk 'match($0, /"mixed_groups": [0-9]+/) { print substr($0, RSTART + 16, RLENGTH - 16); exit }' "$sig")
        printf '| %s | %.1f%% | %.1f%% | %.1f%% | %s of %s |' "$s" \
            "$(echo "$(field_of sft task_accuracy "$j")" | awk '{print 100 * $1}')" \
            "$(echo "$(field_of sft pass1 "$j")" | awk '{print 100 * $1}')" \
            "$(echo "$(field_of sft pass_k "$j")" | awk '{print 100 * $1}')" "$mixed" "$signal_prompts"
        for src in gem majority self_certainty entropy; do
            # null: no group with both a right and a wrong candidate
            auroc_of $src "$sig" | awk '{ if ($1 == "null") printf " - |"; else printf " %.3f |", $1 }'
        done
        echo
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
