#include "run/metric_keys.h"

#include <string.h>

#define VALUE(k, tag, name, best)                                                                  \
    { k, tag, METRIC_VALUE, name, best }
#define TIME(k, tag, name)                                                                         \
    { k, tag, METRIC_TIME, name, 0 }
#define TEXT(k)                                                                                    \
    { k, NULL, METRIC_TEXT, NULL, 0 }

const MetricKey METRIC_KEYS[] = {
    // the run report's rows, in its order
    VALUE("loss", "train/loss", "loss", -1),
    VALUE("grad_norm", "train/grad_norm", "grad norm", 0),
    VALUE("reward_mean", "reward/mean", "reward mean", +1),
    VALUE("correct", "reward/correct_share", "share correct", +1),
    VALUE("score_mean", "score/mean", "score S mean", 0),
    VALUE("adv_std", "reward/advantage_std", "advantage std", 0),
    VALUE("fork_entropy", "entropy/fork", "fork entropy", 0),
    VALUE("final_entropy", "entropy/final", "final entropy", 0),
    VALUE("len_mean", "candidates/length_mean", "candidate length", 0),
    VALUE("truncated", "candidates/truncated_share", "truncated share", -1),
    VALUE("groups_skipped", "candidates/groups_skipped", "groups skipped", -1),
    VALUE("version_lag", "pipeline/version_lag", "policy lag", 0),
    VALUE("reward_margin", "dpo/reward_margin", "dpo reward margin", +1),
    VALUE("reward_accuracy", "dpo/reward_accuracy", "dpo pair accuracy", +1),
    VALUE("eval_task_accuracy", "eval/task_accuracy", "eval task accuracy", +1),
    VALUE("eval_pref_accuracy", "eval/pref_accuracy", "eval pref accuracy", +1),
    VALUE("probe_accuracy", "probe/accuracy", "probe accuracy", +1),
    VALUE("probe_auroc", "probe/auroc", "probe AUROC", +1),
    VALUE("train_tok_s", "speed/train_tok_s", "train tokens/s", 0),
    VALUE("sample_tok_s", "speed/sample_tok_s", "sample tokens/s", 0),
    VALUE("mfu", "speed/mfu", "MFU", 0),
    // the phases of a step, in the report's time breakdown
    TIME("time_sample", "time/sample", "sample"),
    TIME("time_score", "time/score", "score"),
    TIME("time_train", "time/train", "train"),
    TIME("time_wait_shards", "time/wait_shards", "wait for shards"),
    TIME("time_eval", "time/eval", "evaluation"),
    // the update
    VALUE("grad_norm_clipped", "train/grad_norm_clipped", NULL, 0),
    VALUE("clipped", "train/clipped", NULL, 0),
    VALUE("lr", "train/lr", NULL, 0),
    VALUE("updated", "train/updated", NULL, 0),
    VALUE("tokens", "train/tokens", NULL, 0),
    VALUE("response_tokens", "train/response_tokens", NULL, 0),
    VALUE("candidates_trained", "train/candidates_trained", NULL, 0),
    VALUE("pairs", "train/pairs", NULL, 0),
    VALUE("epoch", "train/epoch", NULL, 0),
    // the sampled groups (groups_metrics)
    VALUE("reward_std", "reward/std", NULL, 0),
    VALUE("score_std", "score/std", NULL, 0),
    VALUE("len_max", "candidates/length_max", NULL, 0),
    VALUE("groups", "candidates/groups", NULL, 0),
    VALUE("groups_zero_adv", "candidates/groups_zero_advantage", NULL, 0),
    VALUE("sampled_tokens", "candidates/sampled_tokens", NULL, 0),
    VALUE("policy_version", "pipeline/policy_version", NULL, 0),
    TEXT("group_ids"),
    // `gemc eval`'s rows (one per model, under its label) and the in-training probe
    TEXT("label"),
    TEXT("model"),
    VALUE("task_accuracy", "eval/task_accuracy", NULL, 0),
    VALUE("pref_accuracy", "eval/pref_accuracy", NULL, 0),
    VALUE("pass1", "eval/pass1", NULL, 0),
    VALUE("pass_k", "eval/pass_k", NULL, 0),
    VALUE("majority_k", "eval/majority_k", NULL, 0),
    VALUE("probe_top_correct", "probe/top_correct", NULL, 0),
    VALUE("probe_mean_correct", "probe/mean_correct", NULL, 0),
    VALUE("probe_bottom_correct", "probe/bottom_correct", NULL, 0),
    VALUE("probe_best_accuracy", "probe/best_accuracy", NULL, 0),
    VALUE("probe_best_step", "probe/best_step", NULL, 0),
};
const int N_METRIC_KEYS = (int)(sizeof METRIC_KEYS / sizeof METRIC_KEYS[0]);

const MetricKey *metric_key(const char *key) {
    for (int i = 0; i < N_METRIC_KEYS; i++)
        if (!strcmp(METRIC_KEYS[i].key, key)) return &METRIC_KEYS[i];
    return NULL;
}
