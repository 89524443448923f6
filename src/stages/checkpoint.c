// Training-state checkpoints: the optimizer files, trainer_state.json and the DONE protocol.
#include "stages/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"
#include "base/json_file.h"

char *ckpt_path(const char *run_dir, long step, int tmp) {
    char name[64];
    snprintf(name, sizeof name, "checkpoints/step_%06ld%s", step, tmp ? ".tmp" : "");
    return path_join(run_dir, name);
}

int ckpt_find_latest(const char *run_dir, long *step) {
    char *dir = path_join(run_dir, "checkpoints");
    DIR *d = opendir(dir);
    free(dir);
    if (!d) return 0;
    long best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "step_", 5) != 0) continue;
        long s = strtol(e->d_name + 5, &end, 10);
        if (*end || s < 0 || s <= best) continue; // "step_000010.tmp" and others are skipped
        char *ck = ckpt_path(run_dir, s, 0), *done = path_join(ck, "DONE");
        if (path_exists(done)) best = s;
        free(ck), free(done);
    }
    closedir(d);
    if (best < 0) return 0;
    *step = best;
    return 1;
}

// ---- optimizer_tpR.bin: a 64-byte header, params, m, v (fp32, little-endian), a checksum
//   int32 magic 'GOPT', version, tp_rank, tp_size; int64 total, adam_t; 24 bytes zero

#define OPT_MAGIC 0x54504f47 // "GOPT"

static char *opt_path(const char *dir, int tp_rank) {
    char name[64];
    snprintf(name, sizeof name, "optimizer_tp%d.bin", tp_rank);
    return path_join(dir, name);
}

int ckpt_write_optimizer(const char *dir, int tp_rank, int tp_size, const Model *m) {
    const size_t total = m->layout.total;
    int32_t h32[4] = {OPT_MAGIC, OPTIMIZER_FORMAT_VERSION, tp_rank, tp_size};
    int64_t h64[2] = {(int64_t)total, m->adam_t};
    char header[64] = {0};
    memcpy(header, h32, sizeof h32);
    memcpy(header + 16, h64, sizeof h64);
    float *zeros = m->adam_m ? NULL : callocCheck(total ? total : 1, sizeof(float));
    const float *parts[3] = {m->params, m->adam_m ? m->adam_m : zeros,
                             m->adam_v ? m->adam_v : zeros};
    // the checksum covers the header and every byte of the three arrays, in order
    uint64_t sum = fnv1a64(header, sizeof header);
    for (int i = 0; i < 3; i++) sum ^= fnv1a64(parts[i], total * sizeof(float)) + (uint64_t)i;
    char *path = opt_path(dir, tp_rank);
    AtomicFile af;
    int rc = atomic_open(&af, path);
    if (rc == 0) {
        rc = atomic_write(&af, header, sizeof header);
        for (int i = 0; i < 3 && rc == 0; i++)
            rc = atomic_write(&af, parts[i], total * sizeof(float));
        if (rc == 0) rc = atomic_write(&af, &sum, sizeof sum);
        rc = rc == 0 ? atomic_commit(&af) : (atomic_abort(&af), -1);
    }
    free(zeros);
    free(path);
    return rc;
}

int ckpt_read_optimizer(const char *dir, int tp_rank, int tp_size, Model *m) {
    const size_t total = m->layout.total;
    char *path = opt_path(dir, tp_rank);
    FILE *f = fopen(path, "rb");
    int rc = -1;
    float *buf = NULL;
    if (!f) {
        gemc_set_error("%s: cannot open (%s)", path, strerror(errno));
        goto out;
    }
    char header[64];
    int32_t h32[4];
    int64_t h64[2];
    if (fread(header, 1, sizeof header, f) != sizeof header) goto short_file;
    memcpy(h32, header, sizeof h32);
    memcpy(h64, header + 16, sizeof h64);
    if (h32[0] != OPT_MAGIC) {
        gemc_set_error("%s: not a gemc optimizer state file", path);
        goto out;
    }
    if (h32[1] != OPTIMIZER_FORMAT_VERSION) {
        gemc_set_error("%s: optimizer format version %d, this gemc reads %d (HINT: resume with "
                       "the gemc that wrote it)",
                       path, h32[1], OPTIMIZER_FORMAT_VERSION);
        goto out;
    }
    if (h32[2] != tp_rank || h32[3] != tp_size || h64[0] != (int64_t)total) {
        gemc_set_error("%s: holds tensor-parallel partition %d of %d with %lld values, this run "
                       "needs partition %d of %d with %zu (HINT: resume with the pipeline.tp the "
                       "run started with)",
                       path, h32[2], h32[3], (long long)h64[0], tp_rank, tp_size, total);
        goto out;
    }
    buf = mallocCheck(3 * (total ? total : 1) * sizeof(float));
    uint64_t sum = fnv1a64(header, sizeof header), want;
    for (int i = 0; i < 3; i++) {
        float *p = buf + (size_t)i * total;
        if (fread(p, sizeof(float), total, f) != total) goto short_file;
        sum ^= fnv1a64(p, total * sizeof(float)) + (uint64_t)i;
    }
    if (fread(&want, sizeof want, 1, f) != 1) goto short_file;
    if (want != sum) {
        gemc_set_error("%s: checksum mismatch (the file is corrupt) (HINT: delete this "
                       "checkpoint folder to resume from the one before)",
                       path);
        goto out;
    }
    if (!m->adam_m) {
        m->adam_m = mallocCheck((total ? total : 1) * sizeof(float));
        m->adam_v = mallocCheck((total ? total : 1) * sizeof(float));
    }
    memcpy(m->params, buf, total * sizeof(float));
    memcpy(m->adam_m, buf + total, total * sizeof(float));
    memcpy(m->adam_v, buf + 2 * total, total * sizeof(float));
    m->adam_t = h64[1];
    rc = 0;
    goto out;
short_file:
    gemc_set_error("%s: truncated (HINT: delete this checkpoint folder to resume from the one "
                   "before)",
                   path);
out:
    if (f) fclose(f);
    free(buf);
    free(path);
    return rc;
}

// ---- trainer_state.json

int ckpt_write_state(const char *dir, const TrainState *s) {
    cJSON *o = cJSON_CreateObject();
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)s->config_hash);
    cJSON_AddNumberToObject(o, "format_version", TRAIN_STATE_VERSION);
    cJSON_AddNumberToObject(o, "step", (double)s->step);
    cJSON_AddNumberToObject(o, "policy_version", (double)s->policy_version);
    cJSON_AddNumberToObject(o, "shard_cursor", (double)s->shard_cursor);
    cJSON_AddNumberToObject(o, "generators", s->generators);
    cJSON_AddNumberToObject(o, "learners", s->learners);
    cJSON_AddNumberToObject(o, "tp", s->tp);
    cJSON_AddNumberToObject(o, "max_staleness", s->max_staleness);
    cJSON_AddStringToObject(o, "config_hash", hash);
    char *path = path_join(dir, "trainer_state.json");
    int rc = json_write_file(path, o);
    free(path);
    return rc;
}

static int get_long(const cJSON *o, const char *key, const char *path, long *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0) {
        gemc_set_error("%s: \"%s\" is missing or not a non-negative number", path, key);
        return -1;
    }
    *out = (long)v->valuedouble;
    return 0;
}

int ckpt_read_state(const char *dir, TrainState *s) {
    memset(s, 0, sizeof *s);
    char *path = path_join(dir, "trainer_state.json");
    char *text = read_text_file(path, NULL);
    cJSON *o = text ? json_parse(text, path) : NULL;
    int rc = o ? 0 : -1;
    long v[8] = {0};
    static const char *keys[] = {
        "format_version", "step", "policy_version", "shard_cursor", "generators",
        "learners",       "tp",   "max_staleness"};
    for (int i = 0; i < 8 && rc == 0; i++) rc = get_long(o, keys[i], path, &v[i]);
    if (rc == 0 && v[0] != TRAIN_STATE_VERSION) {
        gemc_set_error("%s: format_version %ld, this gemc reads %d", path, v[0],
                       TRAIN_STATE_VERSION);
        rc = -1;
    }
    const cJSON *h = o ? cJSON_GetObjectItemCaseSensitive(o, "config_hash") : NULL;
    if (rc == 0 && (!cJSON_IsString(h) || strlen(h->valuestring) != 16)) {
        gemc_set_error("%s: \"config_hash\" is missing or not 16 hex digits", path);
        rc = -1;
    }
    if (rc == 0) {
        s->format_version = (int)v[0];
        s->step = v[1], s->policy_version = v[2], s->shard_cursor = v[3];
        s->generators = (int)v[4], s->learners = (int)v[5], s->tp = (int)v[6];
        s->max_staleness = (int)v[7];
        s->config_hash = strtoull(h->valuestring, NULL, 16);
    }
    cJSON_Delete(o);
    free(text);
    free(path);
    return rc;
}

// ---- the commit

char *ckpt_begin(const char *run_dir, long step) {
    char *tmp = ckpt_path(run_dir, step, 1);
    remove_dir_files(tmp);
    if (ensure_dir(tmp) != 0) {
        free(tmp);
        return NULL;
    }
    return tmp;
}

int ckpt_commit(const char *run_dir, long step) {
    char *tmp = ckpt_path(run_dir, step, 1), *dst = ckpt_path(run_dir, step, 0);
    int rc = -1;
    remove_dir_files(dst); // an incomplete copy (no DONE) from a run that was killed
    if (rename(tmp, dst) != 0) {
        gemc_set_error("%s: cannot rename %s into place (%s)", dst, tmp, strerror(errno));
        goto out;
    }
    if (fsync_parent_dir(dst) != 0) {
        gemc_set_error("%s: cannot fsync its directory", dst);
        goto out;
    }
    char *done = path_join(dst, "DONE");
    rc = write_file_atomic(done, "complete\n", 9);
    free(done);
out:
    free(tmp), free(dst);
    return rc;
}

// ---- where a run starts

static int dir_has_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n > 0;
}

int ckpt_resume_point(const GemConfig *c, int tp, int generators, int max_staleness, long *start) {
    *start = 0;
    char *ck = path_join(c->train.dir, "checkpoints"), *sh = path_join(c->train.dir, "shards");
    int used = dir_has_entries(ck) || dir_has_entries(sh), rc = 0;
    free(ck), free(sh);
    if (c->run.resume == RESUME_NONE) {
        if (used) {
            gemc_set_error("%s already holds a run (checkpoints/ or shards/) and run.resume is "
                           "none (HINT: run.resume=auto continues it; or choose another "
                           "train.dir)",
                           c->train.dir);
            rc = -1;
        }
        return rc;
    }
    long s;
    if (!ckpt_find_latest(c->train.dir, &s)) return 0;
    char *dir = ckpt_path(c->train.dir, s, 0);
    TrainState st;
    if (ckpt_read_state(dir, &st) != 0) {
        rc = -1;
    } else if (st.config_hash != config_shard_hash(c)) {
        gemc_set_error("%s was written by another configuration (a key that decides the sampled "
                       "groups differs) (HINT: resume with the config of %s/config.yaml, or "
                       "choose another train.dir)",
                       dir, c->train.dir);
        rc = -1;
    } else if (st.tp != tp || st.max_staleness != max_staleness ||
               (max_staleness > 0 && st.generators != generators)) {
        // the optimizer files are per tp partition; with staleness the shards of the next steps
        // were written by that many generators
        gemc_set_error("%s was written with pipeline.tp=%d max_staleness=%d generators=%d, this "
                       "run has %d, %d, %d (HINT: resume with the same pipeline keys)",
                       dir, st.tp, st.max_staleness, st.generators, tp, max_staleness, generators);
        rc = -1;
    } else if (st.step > c->train.steps) {
        gemc_set_error("%s is at step %ld, past train.steps = %d (HINT: raise train.steps to "
                       "train further)",
                       dir, st.step, c->train.steps);
        rc = -1;
    } else {
        *start = st.step;
    }
    free(dir);
    return rc;
}

int ckpt_save_whole(const char *run_dir, long step, const Model *m, const char *tokenizer_dir,
                    DType dtype, const TrainState *st) {
    model_sync_host(m);
    char *tmp = ckpt_begin(run_dir, step);
    if (!tmp) return -1;
    int rc = model_save_folder(m, tmp, dtype, tokenizer_dir, 0);
    if (rc == 0) rc = ckpt_write_optimizer(tmp, 0, 1, m);
    if (rc == 0) rc = ckpt_write_state(tmp, st);
    if (rc == 0) rc = ckpt_commit(run_dir, step);
    free(tmp);
    return rc;
}
