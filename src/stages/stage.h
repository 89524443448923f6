// The stages of docs/algorithm.md section 6 on one process: sft, train (GEM), dpo, eval, generate.
// Each stage reads a resolved GemConfig, writes a run directory (config.yaml, metrics.jsonl,
// checkpoints in Hugging Face format) and prints one console line per step.
//
// What the stages share lives here: the policy (model, tokenizer, chat template, stop ids), the
// micro-batched forward/backward over (prompt, response) sequences, the learning-rate schedule,
// checkpoints, the metrics log and the console.
#ifndef GEMC_STAGE_H
#define GEMC_STAGE_H

#include <signal.h>
#include <stdio.h>

#include "text/chat_template.h"
#include "config/config.h"
#include "text/data.h"
#include "gem/gem.h"
#include "model/model.h"
#include "base/rng.h"
#include "run/shard.h"
#include "base/strbuf.h"
#include "run/tb_events.h"
#include "text/tokenizer.h"

typedef struct RunDir RunDir;
typedef struct Metrics Metrics;

int stage_sft(const GemConfig *c);
int stage_train(const GemConfig *c);
int stage_dpo(const GemConfig *c);
int stage_eval(const GemConfig *c);
int stage_generate(const GemConfig *c);

// ---- the policy ------------------------------------------------------------------------------

typedef struct {
    char *dir; // the model folder it was loaded from
    Model model;
    Tokenizer *tok;
    ChatTemplate tmpl;
    int eos_id;      // what closes a response in the data (the end-of-turn token)
    int stop_ids[8]; // generation stops at any of these: end of turn and config.json's EOS ids
    int n_stop;
} Policy;

// Loads DIR (weights, tokenizer, chat template per model.chat_template). Returns 0 or -1.
int policy_load(Policy *p, const char *dir, const GemConfig *c);
// Moves m to the device run.device names (auto: a GPU when gemc has CUDA and sees one): this
// process's node-local rank modulo the devices it sees. 0, or -1 with the error recorded
// (run.device=cuda without a device).
int model_place(Model *m, const GemConfig *c);
void policy_free(Policy *p);
// Loads a JSONL file of `kind` and tokenizes it through the policy's template. Returns 0 or -1.
int policy_load_data(const Policy *p, const GemConfig *c, const char *path, DataKind kind,
                     Dataset *ds);
// The text of ids (lossy UTF-8), appended to out.
void policy_decode_text(const Policy *p, const int *ids, int n, StrBuf *out);
// The final answer a sampled candidate gives (gem_candidate_answer), malloc'd, or NULL without
// the marker.
char *policy_candidate_answer(const Policy *p, const char *marker, const Candidate *cd);

// ---- sequences and the micro-batched forward/backward -----------------------------------------

// One (prompt, response) sequence; the loss reads the log-probs of the response tokens only.
typedef struct {
    const int *prompt;
    int P;
    const int *resp;
    int R;
} SeqRef;

// Called after the forward of each micro-batch with the response log-probs of sequences
// [s0, s0 + ns) (laid out back to back, seq s at resp_off[s] - resp_off[s0]); fills dlogp in
// the same layout and returns the micro-batch's part of the loss.
typedef double (*LossGradFn)(void *ctx, int s0, int ns, const float *logp, float *dlogp);

// Forward (and, with fn, backward accumulating into m->grads) over the sequences in
// micro-batches of at most max_tokens tokens; a unit of `unit` consecutive sequences (a DPO
// pair) is never split (the token count of a micro-batch is that of its sequences packed whole,
// shared prefixes or not, so the split does not depend on share). share: consecutive sequences
// with the same prompt compute it once (optim.shared_prefix, PackedBatch.prefix; the same
// log-probs, the gradients within rounding). logp_out [sum R] receives the response log-probs
// of every sequence, in order (may be NULL). Returns the summed loss (0 without fn).
double seq_forward_backward(Model *m, const SeqRef *seqs, int n, int unit, int max_tokens,
                            int share, float *logp_out, LossGradFn fn, void *ctx);
// Offsets of each sequence's response in the packed log-prob array: off[0] = 0, off[s+1] =
// off[s] + seqs[s].R. off has n + 1 entries.
void seq_resp_offsets(const SeqRef *seqs, int n, long *off);

// The order a stage visits a dataset in: a permutation drawn from the seed, redrawn each epoch.
typedef struct {
    int n, pos, epoch;
    int *perm;
    Rng rng;
} DataOrder;
void order_init(DataOrder *o, int n, uint64_t seed);
int order_next(DataOrder *o);
// Draws and drops n entries: where a run resumed after n / batch_size steps continues.
void order_skip(DataOrder *o, long n);
void order_free(DataOrder *o);

// ---- sampled groups (train, dpo with entropy pairs, generate) ---------------------------------

// G prompts, k candidates each, scored by Eq. 1 and ranked.
typedef struct {
    int G, k;
    int *idx;               // [G] dataset index of each group's prompt
    Candidate *cands;       // [G * k], group g's candidates at g * k
    CandidateScore *scores; // [G * k]
    GroupRanking *rank;     // [G]
    int *correct;           // [G * k] 1/0: the final answer is / is not the prompt's; -1: no answer
    double t_sample, t_score; // seconds
    long new_tokens;          // tokens generated
    int step;                 // the step that sampled them (the random source's key)
} GroupBatch;

// Samples sampling.k candidates for each prompt ds->rec[idx[g]] with the policy (stream keys
// from step and idx, so a prompt seen again in a later epoch draws new candidates), scores them
// (Eq. 1), computes reward.source's value and ranks them. Where a prompt has an answer, each
// candidate's correctness is recorded for the metrics (only reward.source answer trains on it).
// Returns 0 or -1.
int groups_sample(GroupBatch *gb, Policy *p, const GemConfig *c, const Dataset *ds, const int *idx,
                  int G, int step, RunDir *r);
void groups_free(GroupBatch *gb);
// A prompts file whose prompts all need an answer for reward.source (answer): an error naming
// the file and the first line without one. 0 when every prompt has one or the source needs none.
int groups_check_labels(const GemConfig *c, const Dataset *ds);
// Adds the section 8 group metrics (reward, score, advantage, entropies, lengths, truncation,
// skipped groups, the share of correct candidates where prompts have answers) to m, and returns the
// mean reward, fork and final entropies and that share (NAN without answers) for the console.
// Every out pointer may be NULL.
void groups_metrics(const GroupBatch *gb, Metrics *m, double *reward_mean, double *fork_mean,
                    double *final_mean, double *correct_share);

// Packs gb as the shard of (step, policy_version, generator_rank): group g gets group_ids[g], its
// prompt's ids and dataset index, and every candidate its tokens, sampling and raw log-probs, the
// entropies Eq. 1 read (score.entropy_source), scores, ranks, rewards, advantages and decoded
// text. Provenance attributes come from c, p and the run (config_shard_hash). Returns 0 or -1.
int groups_to_shard(const GroupBatch *gb, const Policy *p, const GemConfig *c, const Dataset *ds,
                    const long *group_ids, long step, long policy_version, int generator_rank,
                    Shard *s);
// The inverse of groups_to_shard: the groups of a step's n shards as one GroupBatch (what
// sega_accumulate and groups_metrics read), group g's prompt pointing into its shard
// (prompts[g], prompt_lens[g]) and its id in group_ids[g]. Free with groups_free.
void groups_from_shards(const Shard *sh, int n, GroupBatch *gb, const int **prompts,
                        int *prompt_lens, long *group_ids);

// The SEGA loss of one step (Eq. 2) over the groups g = offset, offset + stride, ... of gb (a
// data-parallel learner's share; stride 1 and offset 0 for all), its gradient accumulated into
// m->grads. Group g's prompt is prompts[g][0 .. prompt_lens[g]). Every weight is
// sega_batch_weights' (sega.loss_agg, sega.group_norm), computed over the whole batch, so the
// shares of all learners add up to the whole batch's loss and gradient. Log-probs are the
// policy's at sampling.temperature, the distribution the candidates were drawn from (top-k and
// top-p stay out: docs/algorithm.md section 5). A candidate sampled by weights older than
// `version` takes the PPO-clipped off-policy term against the sampler's logp_old, the same
// temperature's log-probs, so equal weights give a ratio of 1.
// ref: the frozen reference for the KL term (kl_coef > 0), or NULL. Returns the loss; *n_seqs
// and *n_tokens count the sequences and tokens of the share.
double sega_accumulate(Model *m, Model *ref, const GemConfig *c, const GroupBatch *gb,
                       const int *const *prompts, const int *prompt_lens, int stride, int offset,
                       long version, int *n_seqs, long *n_tokens);

// One GEM update after sampling, the same in `gemc train` and on the pipeline's learners.
typedef struct {
    double loss;    // the SEGA loss of the whole batch (every data-parallel share)
    long trained;   // candidates trained, over the whole batch
    long tokens;    // their tokens, prompt and response
    float norm, lr; // gradient norm before clipping; the step's learning rate
    int updated;    // 1 when the optimizer stepped (finite loss and gradient)
    int skipped;    // groups skipped (fewer than 2 valid candidates, or equal rewards)
    double t_train; // seconds of the update
    double reward, fork, final, correct; // means for the console (gem_step_metrics fills them)
} GemStep;
// The pipeline's collectives between the backward and the optimizer step: sum the gradients and
// sums[3] = {loss, candidates, tokens} over the data-parallel learners. NULL in one process.
typedef void (*GemReduceFn)(void *ctx, double sums[3]);
// sega_accumulate over this learner's share of gb, reduce, then one optimizer step at step's
// learning rate (stage_lr over train.steps) when anything was trained. Fills *st.
void gem_step_update(Model *m, Model *ref, const GemConfig *c, const GroupBatch *gb,
                     const int *const *prompts, const int *prompt_lens, int stride, int offset,
                     long version, long step, GemReduceFn reduce, void *reduce_ctx, GemStep *st);
// The step's metrics: the update's, groups_metrics', the policy version and its lag, speed;
// t_wait >= 0 adds the pipeline's time_wait_shards. Devices and n_params give the MFU.
void gem_step_metrics(Metrics *m, const GemConfig *c, const GroupBatch *gb, GemStep *st,
                      long policy_version, long version_lag, long n_params, int devices,
                      double t_wait);
// The console fields of a step ("loss ... | reward ... | H fork ... final ... | skipped N") into
// buf; returns their length, as snprintf does.
int gem_step_fields(const GemStep *st, char *buf, size_t n);
// What follows a step, by the same rules in both loops: a checkpoint every run.save_every steps
// and at any stop; a stop at SIGTERM (stop_requested, before the last step), at a probe collapse
// (train.stop_on_collapse) or when the NaN guard gives up; final/ and the report after the last
// step when nothing stopped the run.
typedef struct {
    int save;      // write this step's training-state checkpoint
    int stop;      // leave the loop after this step
    int final;     // the last step, reached: write final/
    int sigterm;   // the stop is SIGTERM's
    int collapsed; // the stop is train.stop_on_collapse's
} GemStepEnd;
GemStepEnd gem_step_end(const GemConfig *c, long step, int stop_requested, int gave_up,
                        int collapsed);

// ---- optimisation ----------------------------------------------------------------------------

// The learning rate of `step` (1-based) of the stage's steps: linear warmup over its
// warmup_steps, then constant, cosine or linear decay to lr * min_lr_ratio.
float stage_lr(const StageConfig *s, int step);
// Clips, steps AdamW with the scheduled lr and zeroes the gradients. A step whose loss or gradient
// norm is not finite makes no update: the weights, the AdamW moments and its step count stay as
// they were and *updated is 0. Returns the grad norm.
// grad_clip is the stage's (0 = off).
float stage_optimizer_step(Model *m, const OptimConfig *o, float grad_clip, float lr, double loss,
                           int *updated);
// Logs a step's gradient norm before clipping (grad_norm), after (grad_norm_clipped: what AdamW
// was given) and whether the stage's grad_clip cut it (clipped, 0/1).
void metrics_grad_norm(Metrics *m, float grad_clip, float norm);
// Model FLOPs utilisation of a step that trained `tokens` tokens of a model of n_params in
// `seconds` on `devices` devices of log.peak_tflops each: 6 FLOPs per parameter per token
// (forward and backward) over the peak. NAN when log.peak_tflops is 0 (unknown).
double stage_mfu(const GemConfig *c, long n_params, double tokens, double seconds, int devices);

// The numeric guard of sft, train and dpo: updates skipped in a row for a NaN or Inf.
typedef struct {
    int in_a_row;              // the current run of skipped updates (steps without one between)
    int first_step, last_step; // where it began and ended
    long total;                // skipped updates of this process
    double loss;               // the last skipped step's loss and grad norm, for the message
    float norm;
    int quiet; // no stderr line (the learners other than the root)
} NonFiniteGuard;
// Counts a step in g (a skipped update is logged on stderr). Returns 1 when it makes
// optim.max_nonfinite_steps skipped in a row: the stage saves a checkpoint and stops, with
// nonfinite_guard_stop() as its return value.
int nonfinite_guard_step(NonFiniteGuard *g, const OptimConfig *o, const char *stage, int step,
                         int updated, double loss, float norm);
// Records the error of a stage the guard stopped, naming the checkpoint of `step` it saved in
// run_dir (save_rc: how that save went; its own error stands when it failed). Returns -1.
int nonfinite_guard_stop(const NonFiniteGuard *g, const char *stage, const char *run_dir, long step,
                         int save_rc);

// ---- preemption

// Set by SIGTERM once stage_catch_sigterm() ran (Slurm sends it before a preemption's kill):
// `gemc train` checkpoints at the next step boundary and exits cleanly.
extern volatile sig_atomic_t stage_stop_requested;
void stage_catch_sigterm(void);

// ---- run directory, checkpoints, metrics, console --------------------------------------------

struct RunDir {
    char *dir;
    FILE *metrics; // metrics.jsonl, one object per step, flushed line by line
    TbWriter tb;   // RUN_DIR/tb/events.out.tfevents.* (log.tensorboard), the same metrics
    const GemConfig *cfg;
    const char *stage;
    double t_start;
    int progress; // progress bars on stderr
};

// Creates the run directory, writes config.yaml (the resolved config) and opens metrics.jsonl.
int rundir_open(RunDir *r, const char *dir, const GemConfig *c, const char *stage);
// The same for a run resumed from step resume_step (>= 0): metrics.jsonl keeps its lines of
// steps <= resume_step and is appended to.
int rundir_open_at(RunDir *r, const char *dir, const GemConfig *c, const char *stage,
                   long resume_step);
void rundir_close(RunDir *r);
// Saves the policy as DIR/checkpoints/step_NNNNNN (or DIR/final when step < 0) in run.dtype
// with the starting model's tokenizer files, replacing an older copy only once the new one is
// complete. Returns 0 or -1.
int rundir_save(RunDir *r, const Policy *p, int step);
// The DType of run.dtype.
DType save_dtype(SaveDtype d);

// A metrics line being built: {"step": N, "stage": "...", key: value, ..., "wall_time": T}, T
// the Unix time of metrics_end.
struct Metrics {
    StrBuf buf;
};
void metrics_begin(Metrics *m, const char *stage, int step);
void metrics_num(Metrics *m, const char *key, double v); // NaN/inf are written as null
void metrics_int(Metrics *m, const char *key, long v);
void metrics_str(Metrics *m, const char *key, const char *v);
void metrics_raw(Metrics *m, const char *key, const char *json); // json written as given
// Appends the line to metrics.jsonl (when r is non-NULL) and frees the buffer.
void metrics_end(Metrics *m, RunDir *r);

// The console line of a step: "STAGE step 12/300 | FIELDS | 12.3k tok/s | ETA 1m05s", with the
// ETA from the mean time per step so far (t_loop: when the first step began).
void stage_print_step(const char *stage, int step, int steps, const char *fields, double tok_s,
                      double t_loop);
// Progress bar on stderr (when enabled): "\r  LABEL [#####-----] done/total", cleared at the end.
void progress_bar(void *run_dir, long done, long total);
void progress_set_label(const char *label);
void progress_done(RunDir *r);

// ---- evaluation during training (stage_eval.c)

// eval.every: the files it evaluates on exist (checked before a training stage starts, so a
// missing one is not found only at the first evaluation). 0, or -1 with the error set.
int stage_eval_check_files(const GemConfig *c);
// eval.every: is step one of the steps a training stage evaluates at (every N, and the last)?
int stage_eval_due(const GemConfig *c, long step, long steps);
// The evaluation of eval.every: task accuracy on the first eval.every_max prompts of
// eval.prompts, preference accuracy on as many pairs of eval.pairs, as the step's
// eval_task_accuracy and eval_pref_accuracy (and time_eval), plus a console line. 0 or -1.
int stage_eval_in_training(const GemConfig *c, Policy *p, RunDir *r, Metrics *m, long step);

// The signal check of eval.probe (train): how well reward.source separates right from wrong
// candidates on held-out prompts with answers, and their greedy accuracy, every eval.every steps.
typedef struct {
    Dataset ds;     // eval.probe, loaded once
    int *idx, n;    // the prompts evaluated: the first eval.every_max (all when 0); n = 0: no probe
    double last;    // probe_accuracy of the latest evaluation (NAN before the first)
    double best;    // the best probe_accuracy so far (NAN before the first) and its step
    long best_step; // (the first evaluation that reached it)
} ProbeState;

// Loads eval.probe through the policy's template; every prompt it evaluates must have an answer
// (else an error naming FILE:LINE). resume_step > 0: the best probe accuracy of steps <=
// resume_step is recomputed from RUN_DIR/metrics.jsonl. With eval.probe "" it loads nothing.
// 0, or -1 with the error set (and nothing to free).
int stage_probe_open(ProbeState *pr, const GemConfig *c, const Policy *p, const char *run_dir,
                     long resume_step);
void stage_probe_close(ProbeState *pr);
// The console line of a stop (gem_step_end): how to resume after SIGTERM, or how far the probe
// accuracy fell (pr) at a collapse. Nothing otherwise.
void gem_step_end_print(const GemStepEnd *e, const GemConfig *c, const ProbeState *pr, long step);
// stage_eval_in_training, and the probe's evaluation when pr holds one: probe_accuracy,
// probe_auroc, probe_top_correct, probe_mean_correct, probe_bottom_correct and
// probe_best_accuracy / probe_best_step in m, on the same console line. *collapsed (may be
// NULL) is set when train.stop_on_collapse is on and probe_accuracy fell more than that many
// points below the best of the earlier evaluations (stage_probe_collapsed). 0 or -1.
int stage_eval_in_training_probe(const GemConfig *c, Policy *p, RunDir *r, Metrics *m, long step,
                                 ProbeState *pr, int *collapsed);
// Is accuracy `current` (a share, 0..1) more than `points` percentage points (0.10 = 10 points)
// below `best`? 0 when points <= 0 (off) or either accuracy is not finite. A drop of exactly
// `points` is not one (the comparison allows for the rounding of shares like 0.5 - 0.4).
int stage_probe_collapsed(double best, double current, double points);

#endif
