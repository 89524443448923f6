// The run configuration: every knob of docs/algorithm.md is a key here, read from a YAML file and
// overridden on the command line as key=value.
//
// Keys are "section.name" (sampling.temperature). A YAML file gives them as nested mappings:
//   sampling:
//     temperature: 0.9
// and the command line as sampling.temperature=0.9. One table (config_keys.c) lists every key with
// its type, default, allowed range or names, and help line; parsing, checking, the resolved
// config.yaml of a run directory and `gemc STAGE --help` all come from that table.
//
// Errors name the file and line (or "command line: KEY=VALUE"), the key, what is wrong and,
// for an unknown key, the closest known one ("did you mean sampling.top_k?"); a bare leaf name
// that belongs to one section ("k") is pointed at its full key (sampling.k).
#ifndef GEMC_CONFIG_H
#define GEMC_CONFIG_H

#include <stdint.h>
#include <stdio.h>

typedef enum { ENTROPY_RAW, ENTROPY_SAMPLING } EntropySource;
typedef enum { SPAN_MARKER, SPAN_FRACTION, SPAN_WINDOW } FinalSpan;
typedef enum { REWARD_IDENTITY, REWARD_SOFTMAX } RewardMapping;
typedef enum { ADV_NONE, ADV_STD } AdvNorm;
typedef enum { LOGP_SUM, LOGP_MEAN } LogpAgg;
typedef enum { LOSS_SEQ_SUM, LOSS_TOKEN_MEAN, LOSS_CONSTANT } LossAgg;
// Which groups the loss is normalised over: every group of the batch (TRL, verl), or only the
// ones that were not skipped.
typedef enum { GROUP_NORM_BATCH, GROUP_NORM_ACTIVE } GroupNorm;
typedef enum {
    REWARD_GEM,
    REWARD_ANSWER,
    REWARD_MAJORITY,
    REWARD_SELF_CERTAINTY,
    REWARD_ENTROPY,
    REWARD_RANDOM
} RewardSource;
typedef enum { LR_CONSTANT, LR_COSINE, LR_LINEAR } LrSchedule;
typedef enum { DPO_PAIRS_DATA, DPO_PAIRS_ENTROPY } DpoPairSource;
typedef enum { DTYPE_NAME_BF16, DTYPE_NAME_F32, DTYPE_NAME_F16 } SaveDtype;
typedef enum { RESUME_AUTO, RESUME_NONE } ResumeMode;
typedef enum { COLLECTIVES_AUTO, COLLECTIVES_MPI, COLLECTIVES_NCCL } CollectivesChoice;
typedef enum { DEVICE_AUTO, DEVICE_CPU, DEVICE_CUDA } DeviceChoice;

typedef struct {
    char **items; // malloc'd strings
    int n;
} StrList;

// docs/algorithm.md section 1 (and the generation of eval and `gemc generate`).
typedef struct {
    int k;              // candidates per prompt (default 4)
    float temperature;  // 1.0; 0 = greedy
    float top_p;        // 1.0 = off
    int top_k;          // 0 = off
    int max_new_tokens; // 256
} SamplingConfig;

// Sections 2-3.
typedef struct {
    EntropySource entropy_source; // raw
    FinalSpan final_span;         // marker
    char *answer_marker;          // "Final Answer:"
    float final_split;            // 0.75
    int final_window;             // 3
    float top_m;                  // 0.1 (< 1: fraction of the CoT span, >= 1: a count)
    float lambda_fork;            // 1.0
    float lambda_final;           // 1.0: S = -lambda_final * final + lambda_fork * fork
} ScoreConfig;

// Section 4.
typedef struct {
    int drop_truncated; // false
    float trim_bottom;  // 0.0
    int pairs;          // false: also emit (best, worst) pairs
    int skip_zero_adv;  // true: a group whose advantages are all 0 takes no part (nor counts in G)
} FilterConfig;

// What a candidate's reward is (docs/algorithm.md section 10).
typedef struct {
    RewardSource source; // gem: Eq. 1's S
    float entropy_span;  // entropy: the share of the candidate's last tokens it reads (1/3)
} RewardConfig;

// Section 5.
typedef struct {
    RewardMapping reward_mapping; // identity
    float reward_temperature;     // 1.0
    AdvNorm adv_norm;             // none
    LogpAgg logp_agg;             // sum
    float clip_eps;               // 0.2
    float kl_coef;                // 0.0
    LossAgg loss_agg;             // seq_sum: Eq. 2's 1/(G k_g) weights
    float loss_constant;          // constant: the normaliser C; 0 = sampling.max_new_tokens
    GroupNorm group_norm;         // batch: G counts every group of the batch
} SegaConfig;

// AdamW's constants, shared by sft, train and dpo (each stage has its own lr, schedule and
// clipping: StageConfig).
typedef struct {
    float beta1, beta2, eps; // 0.9, 0.999, 1e-8
    float weight_decay;      // 0.0
    int micro_batch_tokens;  // tokens per forward/backward; gradients are accumulated (8192)
    int shared_prefix;       // a prompt computed once for the sequences that share it (true)
    int max_nonfinite_steps; // updates skipped in a row for a NaN/Inf before the stage stops (5)
} OptimConfig;

typedef struct {
    uint64_t seed;       // 1
    int log_every;       // console line every N steps (1)
    int save_every;      // checkpoint every N steps, 0 = only the final model (0)
    SaveDtype dtype;     // dtype of saved checkpoints (bf16)
    int progress;        // progress bars on stderr: 1 always, 0 never, -1 when it is a terminal
    ResumeMode resume;   // auto: continue from the newest complete checkpoint of the run dir
    DeviceChoice device; // auto: the GPU when there is one (gpu.h), else the CPU
} RunConfig;

// What a run directory gets besides metrics.jsonl.
typedef struct {
    int tensorboard;   // TensorBoard event files in RUN_DIR/tb (true)
    float peak_tflops; // one device's peak, for the MFU figure; 0 = unknown, no MFU (0)
} LogConfig;

// The distributed pipeline of `mpirun -np N gemc train` (docs/design.md, "Ranks and data flow").
typedef struct {
    int generators;                // ranks that sample, score and write shards (1)
    int learners;                  // ranks that run the SEGA update (1)
    int tp;                        // tensor-parallel width of a learner group (1)
    int max_staleness;             // policy versions generators may run ahead (0: on-policy)
    float timeout;                 // seconds any rank waits for another before giving up (600)
    CollectivesChoice collectives; // auto: NCCL for GPU ranks on distinct GPUs, else MPI
    int bucket_mb;                 // weight broadcast bucket size in MiB (64)
} PipelineConfig;

typedef struct {
    char *chat_template; // "auto" (from tokenizer_config.json) | plain | chatml | llama3
    char *system_prompt; // "" = none
    char *ref;           // frozen reference model folder; "" = the stage's starting model
} ModelSectionConfig;

typedef struct {
    char *model; // starting model folder (Hugging Face format)
    char *dir;   // run directory
    char *data;  // pairs JSONL (sft, dpo) or prompts JSONL (train)
    int steps;
    int batch_size;         // pairs per step (sft, dpo) or prompts per step (train)
    float lr;               // peak learning rate
    int warmup_steps;       // linear warmup from 0 to lr (train: 10, else 0)
    LrSchedule schedule;    // after the warmup (constant)
    float min_lr_ratio;     // cosine/linear decay floor, as a fraction of lr (0.0)
    float grad_clip;        // global gradient-norm clip, 0 = off (1.0)
    float stop_on_collapse; // train: stop when probe accuracy falls this many points below its best
} StageConfig;

typedef struct {
    StageConfig sft;
    StageConfig train;
    StageConfig dpo;
    DpoPairSource dpo_pairs; // dpo.pairs: data | entropy (entropy: dpo.data holds prompts)
    float dpo_beta;          // dpo.beta (0.1)
    struct {
        StrList models;  // eval.models: "LABEL=DIR" or "DIR"
        char *dir;       // where results.json and results.md go
        char *pairs;     // preference pairs JSONL ("" = skip)
        char *prompts;   // prompts with answers JSONL ("" = skip)
        float beta;      // implicit reward scale (1.0)
        int use_ref;     // reward relative to model.ref (false)
        int length_norm; // divide l(a|q) by the response length (false)
        int majority_k;  // 1 = greedy; > 1 = majority vote of k samples
        int signal_k;    // > 0: how well Eq. 1 ranks k sampled candidates by correctness
        int pass_k;      // > 0: pass@1, pass@k and majority@k of k samples a prompt
        int max_prompts; // 0 = all
        int max_pairs;   // 0 = all
        int every;       // sft, train, dpo: evaluate the policy every N steps (0 = never)
        int every_max;   // at most this many prompts and pairs in those evaluations (0 = all)
        char *probe;     // train: prompts with answers for the signal check ("" = none)
    } eval;
    struct {
        char *model;
        char *prompts; // prompts JSONL
        char *out;     // candidates JSONL written here
        int max_prompts;
    } generate;
    RunConfig run;
    LogConfig log;
    ModelSectionConfig model;
    SamplingConfig sampling;
    ScoreConfig score;
    FilterConfig filter;
    RewardConfig reward;
    SegaConfig sega;
    OptimConfig optim;
    PipelineConfig pipeline;
    char *source; // the YAML file it was read from
} GemConfig;

// Every key at its default.
void config_defaults(GemConfig *c);
// Reads a YAML file over the current values. Returns 0, or -1 with one error line recorded
// ("FILE:LINE: KEY: what is wrong", HINT or "did you mean" where one helps).
int config_load_yaml(GemConfig *c, const char *path);
// Applies one "key=value" (the value parsed as a YAML scalar or flow sequence). Returns 0, or
// -1 with the error recorded ("command line: ...").
int config_override(GemConfig *c, const char *assignment);
// Cross-key checks (e.g. top_p in (0, 1], sampling.k >= 2 for train). Returns 0 or -1.
int config_check(const GemConfig *c, const char *stage);
// The whole resolved configuration as YAML, every key, in table order.
void config_write_yaml(const GemConfig *c, FILE *f);
// Atomic config.yaml in dir.
int config_save(const GemConfig *c, const char *dir);
// The keys of the sections a stage reads, with defaults and help, for `gemc STAGE --help`.
void config_print_help(const char *stage, FILE *f);
// FNV-1a 64 of the resolved YAML (provenance of shards and checkpoints).
uint64_t config_hash(const GemConfig *c);
// FNV-1a 64 of the keys that decide what a shard holds (seed, model, sampling, score, filter,
// sega, the train model, data and batch size, pipeline.generators): a resumed run with another
// train.steps or log_every still reads its shards; one with another temperature does not.
uint64_t config_shard_hash(const GemConfig *c);
void config_free(GemConfig *c);

// The names of an enum-valued key's values, for messages and metrics ("identity", ...).
const char *entropy_source_name(EntropySource e);
const char *final_span_name(FinalSpan s);
const char *reward_source_name(RewardSource r);

#endif
