// Training-state checkpoints of `gemc train` (docs/design.md, "Restart"): everything a run needs to
// continue bit-exactly from a step boundary.
//
//   RUN/checkpoints/step_000010/
//     config.json, model.safetensors, tokenizer files   the policy, a Hugging Face folder
//     optimizer_tp0.bin ... optimizer_tp{tp-1}.bin      fp32 master weights, AdamW m and v, per
//                                                       tensor-parallel partition (versioned binary)
//     trainer_state.json                                step, policy version, shard cursor, the
//                                                       pipeline shape and the config hashes
//     DONE                                              written last: the checkpoint is complete
//
// The folder is written as step_000010.tmp and renamed into place before DONE is created, so a
// checkpoint without DONE (a kill mid-write) is never resumed from. There is no RNG state to save:
// every sampled token's stream is keyed by (run.seed, step, prompt, candidate) and the data order
// by (run.seed, epoch), so the step alone fixes them.
#ifndef GEMC_CHECKPOINT_H
#define GEMC_CHECKPOINT_H

#include <stdint.h>

#include "config/config.h"
#include "model/dtype.h"
#include "model/model.h"

#define TRAIN_STATE_VERSION      1
#define OPTIMIZER_FORMAT_VERSION 1

typedef struct {
    int format_version;
    long step;           // optimizer steps taken (the next step is step + 1)
    long policy_version; // of the saved weights (== step for GEM)
    long shard_cursor;   // shards of steps <= shard_cursor have been consumed
    int generators, learners, tp, max_staleness;
    uint64_t config_hash; // config_shard_hash of the run
} TrainState;

// "RUN/checkpoints/step_000010" (tmp: with ".tmp" appended). malloc'd.
char *ckpt_path(const char *run_dir, long step, int tmp);

// The newest complete checkpoint (one with DONE) of run_dir: 1 with *step set, 0 when there is
// none.
int ckpt_find_latest(const char *run_dir, long *step);

// The optimizer state of one tensor-parallel partition: m->params (fp32 master), adam_m, adam_v and
// adam_t, as DIR/optimizer_tpR.bin (atomic). Returns 0 or -1.
int ckpt_write_optimizer(const char *dir, int tp_rank, int tp_size, const Model *m);
// Reads it back into m (same layout; the moments are allocated when missing). Checks the magic,
// version, shard and sizes and a checksum. Returns 0, or -1 with one error naming the file.
int ckpt_read_optimizer(const char *dir, int tp_rank, int tp_size, Model *m);

int ckpt_write_state(const char *dir, const TrainState *s);
int ckpt_read_state(const char *dir, TrainState *s);

// Creates an empty RUN/checkpoints/step_N.tmp (removing a stale one). Returns its path
// (malloc'd), or NULL with the error recorded.
char *ckpt_begin(const char *run_dir, long step);

// Renames DIR.tmp to DIR (replacing an older DIR), fsyncs the parent, then writes DIR/DONE.
int ckpt_commit(const char *run_dir, long step);

// Where `gemc train` starts in c->train.dir: *start = the newest complete checkpoint's step
// (run.resume: auto), or 0 for a fresh run. Refuses (-1 with the error) a checkpoint of another
// configuration (config_shard_hash), tensor-parallel width or pipeline shape, one past
// train.steps, and with run.resume: none a folder that already holds checkpoints or shards.
// tp, generators and max_staleness are the run's own (1, 0, 0 on one process).
int ckpt_resume_point(const GemConfig *c, int tp, int generators, int max_staleness, long *start);

// The checkpoint of a whole (not tensor-parallel) model at `step`: the HF folder in dtype with
// the tokenizer files of tokenizer_dir, optimizer_tp0.bin and trainer_state.json, then DONE.
int ckpt_save_whole(const char *run_dir, long step, const Model *m, const char *tokenizer_dir,
                    DType dtype, const TrainState *st);

#endif
