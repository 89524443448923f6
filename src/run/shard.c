// HDF5 shards (shard.h): one table of datasets drives the writer, the reader and the checks, so
// a dataset cannot be written without being read back and checked the same way. The writer
// builds the file in memory and writes its bytes itself (build_image says why); the reader uses
// the serial HDF5 API on the file and trusts no size or offset it has not checked.
#include "run/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "base/common.h"

// ---- the layout ------------------------------------------------------------------------------

typedef enum { T_I32, T_I64, T_U8, T_F32 } ElemType;

// How many rows a dataset has, in terms of the shard's sizes.
typedef enum { N_GROUPS, N_GROUPS_1, N_PROMPT, N_CANDS, N_CANDS_1, N_TOKENS, N_TEXT } RowCount;

typedef struct {
    const char *name;
    ElemType type;
    RowCount rows;
    size_t field; // offsetof the array's pointer in Shard
    const char *description;
} DsetDef;

#define F(x) offsetof(Shard, x)
static const DsetDef DSETS[] = {
    {"/groups/group_id", T_I64, N_GROUPS, F(group_id),
     "unique id of the prompt group over the run: (step - 1) * batch_size + j"},
    {"/groups/prompt_index", T_I32, N_GROUPS, F(prompt_index),
     "index of the group's prompt in train.data"},
    {"/groups/prompt_offsets", T_I64, N_GROUPS_1, F(prompt_offsets),
     "[G + 1]: group g's prompt is prompt_tokens[off[g] .. off[g+1])"},
    {"/groups/prompt_tokens", T_I32, N_PROMPT, F(prompt_tokens),
     "packed prompt token ids, chat template applied"},
    {"/groups/skipped", T_U8, N_GROUPS, F(skipped),
     "1 when the group takes no part in the update (too few valid candidates, or no spread)"},
    {"/groups/n_valid", T_I32, N_GROUPS, F(n_valid),
     "number of the group's candidates that take part in the update"},
    {"/groups/zero_adv", T_U8, N_GROUPS, F(zero_adv),
     "1 when skipped because every advantage was 0 (equal rewards, filter.skip_zero_adv)"},
    {"/candidates/group_index", T_I32, N_CANDS, F(group_index),
     "row of the candidate's group in /groups (candidate rows of group g start at g * k)"},
    {"/candidates/candidate_index", T_I32, N_CANDS, F(candidate_index),
     "0 .. k-1 within the group"},
    {"/candidates/rank_in_group", T_I32, N_CANDS, F(rank_in_group),
     "0 = best by score; -1 when invalid"},
    {"/candidates/score", T_F32, N_CANDS, F(score), "S = -final + lambda_fork * fork (Eq. 1)"},
    {"/candidates/value", T_F32, N_CANDS, F(value),
     "what the group was ranked by: S, or the reward of the root attribute reward_source"},
    {"/candidates/correct", T_I32, N_CANDS, F(correct),
     "1 when the final answer equals the prompt's answer, 0 when not, -1 when it has none"},
    {"/candidates/fork_entropy", T_F32, N_CANDS, F(fork_entropy),
     "mean of the top-m chain-of-thought token entropies, nats"},
    {"/candidates/final_entropy", T_F32, N_CANDS, F(final_entropy),
     "mean token entropy of the final-answer span, nats"},
    {"/candidates/reward", T_F32, N_CANDS, F(reward), "r_i (0 when invalid)"},
    {"/candidates/advantage", T_F32, N_CANDS, F(advantage),
     "A_i, the SEGA weight of the candidate (0 when invalid)"},
    {"/candidates/valid", T_U8, N_CANDS, F(valid), "1 when the candidate takes part"},
    {"/candidates/finish_reason", T_U8, N_CANDS, F(finish_reason),
     "why generation stopped: 0 = eos, 1 = length"},
    {"/candidates/token_offsets", T_I64, N_CANDS_1, F(token_offsets),
     "[G * k + 1]: candidate c's tokens are /tokens/*[off[c] .. off[c+1])"},
    {"/candidates/text_offsets", T_I64, N_CANDS_1, F(text_offsets),
     "[G * k + 1]: candidate c's decoded text is text[off[c] .. off[c+1])"},
    {"/candidates/text", T_U8, N_TEXT, F(text),
     "packed UTF-8 of every candidate's decoded tokens, for inspection only"},
    {"/tokens/token_id", T_I32, N_TOKENS, F(token_id), "generated token id"},
    {"/tokens/logp_raw", T_F32, N_TOKENS, F(logp_raw),
     "ln p(token) under the model's unscaled distribution"},
    {"/tokens/logp_sample", T_F32, N_TOKENS, F(logp_sample),
     "ln q(token) under the sampling distribution: temperature, then top-k and top-p"},
    {"/tokens/logp_old", T_F32, N_TOKENS, F(logp_old),
     "ln p_T(token), softmax(z / T) at the sampling temperature with nothing cut: the "
     "off-policy ratio's denominator"},
    {"/tokens/entropy", T_F32, N_TOKENS, F(entropy),
     "token entropy that Eq. 1 read (score.entropy_source), nats"},
    {"/tokens/self_certainty", T_F32, N_TOKENS, F(self_certainty),
     "KL(uniform || p) of the model's unscaled distribution at the token, nats"},
};
#undef F
#define N_DSETS ((int)(sizeof DSETS / sizeof DSETS[0]))

static const struct {
    const char *name, *description;
} GROUPS[] = {
    {"/groups", "one row per prompt group"},
    {"/candidates", "one row per candidate, G * k rows, group g's at g * k"},
    {"/tokens", "one row per generated token, packed; see /candidates/token_offsets"},
};

static size_t elem_size(ElemType t) {
    return t == T_I64 ? 8 : t == T_U8 ? 1 : 4;
}
static const char *elem_name(ElemType t) {
    static const char *names[] = {"int32", "int64", "uint8", "float32"};
    return names[t];
}
// The HDF5 type ids are not constants (they need the library initialised), hence functions.
static hid_t file_type(ElemType t) {
    switch (t) {
    case T_I32:
        return H5T_STD_I32LE;
    case T_I64:
        return H5T_STD_I64LE;
    case T_U8:
        return H5T_STD_U8LE;
    case T_F32:
        return H5T_IEEE_F32LE;
    }
    return -1;
}
static hid_t mem_type(ElemType t) {
    switch (t) {
    case T_I32:
        return H5T_NATIVE_INT32;
    case T_I64:
        return H5T_NATIVE_INT64;
    case T_U8:
        return H5T_NATIVE_UINT8;
    case T_F32:
        return H5T_NATIVE_FLOAT;
    }
    return -1;
}

// The array of a dataset inside a Shard. All object pointers share one representation, so
// memcpy of the field is the portable way to reach it through the table without an aliasing cast.
static void *field_get(const Shard *s, const DsetDef *d) {
    void *p;
    memcpy(&p, (const char *)s + d->field, sizeof p);
    return p;
}

static long rows_of(RowCount r, long G, long N, long P, long T, long B) {
    switch (r) {
    case N_GROUPS:
        return G;
    case N_GROUPS_1:
        return G + 1;
    case N_PROMPT:
        return P;
    case N_CANDS:
        return N;
    case N_CANDS_1:
        return N + 1;
    case N_TOKENS:
        return T;
    case N_TEXT:
        return B;
    }
    return 0;
}

// ---- alloc / free / path ---------------------------------------------------------------------

void shard_alloc(Shard *s, int n_groups, int k, long n_prompt_tokens, long n_tokens,
                 long text_bytes) {
    memset(s, 0, sizeof *s);
    s->format_version = SHARD_FORMAT_VERSION;
    s->n_groups = n_groups;
    s->k = k;
    const size_t G = (size_t)n_groups, N = (size_t)n_groups * (size_t)k;
    const size_t P = (size_t)n_prompt_tokens, T = (size_t)n_tokens, B = (size_t)text_bytes;
    // + 1 everywhere: a shard of 0 groups or 0 tokens still gets real (non-NULL) arrays
    s->group_id = callocCheck(G + 1, sizeof(int64_t));
    s->prompt_index = callocCheck(G + 1, sizeof(int32_t));
    s->prompt_offsets = callocCheck(G + 1, sizeof(int64_t));
    s->prompt_tokens = callocCheck(P + 1, sizeof(int32_t));
    s->skipped = callocCheck(G + 1, 1);
    s->n_valid = callocCheck(G + 1, sizeof(int32_t));
    s->zero_adv = callocCheck(G + 1, 1);
    s->group_index = callocCheck(N + 1, sizeof(int32_t));
    s->candidate_index = callocCheck(N + 1, sizeof(int32_t));
    s->rank_in_group = callocCheck(N + 1, sizeof(int32_t));
    s->score = callocCheck(N + 1, sizeof(float));
    s->value = callocCheck(N + 1, sizeof(float));
    s->correct = callocCheck(N + 1, sizeof(int32_t));
    s->fork_entropy = callocCheck(N + 1, sizeof(float));
    s->final_entropy = callocCheck(N + 1, sizeof(float));
    s->reward = callocCheck(N + 1, sizeof(float));
    s->advantage = callocCheck(N + 1, sizeof(float));
    s->valid = callocCheck(N + 1, 1);
    s->finish_reason = callocCheck(N + 1, 1);
    s->token_offsets = callocCheck(N + 1, sizeof(int64_t));
    s->text_offsets = callocCheck(N + 1, sizeof(int64_t));
    s->text = callocCheck(B + 1, 1);
    s->token_id = callocCheck(T + 1, sizeof(int32_t));
    s->logp_raw = callocCheck(T + 1, sizeof(float));
    s->logp_sample = callocCheck(T + 1, sizeof(float));
    s->logp_old = callocCheck(T + 1, sizeof(float));
    s->entropy = callocCheck(T + 1, sizeof(float));
    s->self_certainty = callocCheck(T + 1, sizeof(float));
}

void shard_free(Shard *s) {
    for (int i = 0; i < N_DSETS; i++) free(field_get(s, &DSETS[i]));
    memset(s, 0, sizeof *s);
}

char *shard_path(const char *dir, long step, int generator_rank) {
    char name[64];
    snprintf(name, sizeof name, "step_%06ld.gen_%d.h5", step, generator_rank);
    return path_join(dir, name);
}

// ---- consistency (shared by writer and reader) -----------------------------------------------

static int whyf(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int whyf(char *why, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return -1;
}

// off[0 .. n] must start at 0, never decrease and end at total (when total >= 0).
static int check_offsets(const char *name, const int64_t *off, long n, long total, char *why,
                         size_t wn) {
    if (off[0] != 0) return whyf(why, wn, "%s[0] is %lld, not 0", name, (long long)off[0]);
    for (long i = 0; i < n; i++)
        if (off[i + 1] < off[i])
            return whyf(why, wn, "%s is not monotone (row %ld: %lld after %lld)", name, i + 1,
                        (long long)off[i + 1], (long long)off[i]);
    if (total >= 0 && off[n] != total)
        return whyf(why, wn, "%s ends at %lld, but the packed data holds %ld rows", name,
                    (long long)off[n], total);
    return 0;
}

// Every cross-reference of a shard. P, T, B: the packed lengths the offsets must end at (-1: the
// offsets define them, as when writing). Returns 0, or -1 with the reason in why.
static int shard_check(const Shard *s, long P, long T, long B, char *why, size_t wn) {
    const int k = s->k, G = s->n_groups;
    if (k < 1) return whyf(why, wn, "k = %d candidates per group (must be >= 1)", k);
    if (G < 0) return whyf(why, wn, "n_groups = %d", G);
    const long N = shard_n_cands(s);
    if (check_offsets("/groups/prompt_offsets", s->prompt_offsets, G, P, why, wn) ||
        check_offsets("/candidates/token_offsets", s->token_offsets, N, T, why, wn) ||
        check_offsets("/candidates/text_offsets", s->text_offsets, N, B, why, wn))
        return -1;
    for (int g = 0; g < G; g++) {
        if (s->prompt_index[g] < 0)
            return whyf(why, wn, "/groups/prompt_index[%d] = %d is negative", g,
                        s->prompt_index[g]);
        if (s->skipped[g] > 1)
            return whyf(why, wn, "/groups/skipped[%d] = %u (must be 0 or 1)", g, s->skipped[g]);
        if (s->zero_adv[g] > s->skipped[g])
            return whyf(why, wn, "/groups/zero_adv[%d] = %u, but the group is %s", g,
                        s->zero_adv[g], s->skipped[g] ? "skipped" : "not skipped");
        if (s->n_valid[g] < 0 || s->n_valid[g] > k)
            return whyf(why, wn, "/groups/n_valid[%d] = %d is outside [0, k = %d]", g,
                        s->n_valid[g], k);
    }
    for (long i = 0; i < s->prompt_offsets[G]; i++)
        if (s->prompt_tokens[i] < 0)
            return whyf(why, wn, "/groups/prompt_tokens[%ld] = %d is negative", i,
                        s->prompt_tokens[i]);
    // the layout fixes each row's group and index: the learner reads candidate i of group g
    // at row g * k + i
    for (long c = 0; c < N; c++) {
        if (s->group_index[c] != c / k)
            return whyf(why, wn,
                        "/candidates/group_index[%ld] = %d, but row %ld belongs to group %ld", c,
                        s->group_index[c], c, c / k);
        if (s->candidate_index[c] != c % k)
            return whyf(why, wn,
                        "/candidates/candidate_index[%ld] = %d, but row %ld is candidate %ld "
                        "of its group (k = %d)",
                        c, s->candidate_index[c], c, c % k, k);
        if (s->rank_in_group[c] < -1 || s->rank_in_group[c] >= k)
            return whyf(why, wn, "/candidates/rank_in_group[%ld] = %d is outside [-1, k = %d)", c,
                        s->rank_in_group[c], k);
        if (s->valid[c] > 1)
            return whyf(why, wn, "/candidates/valid[%ld] = %u (must be 0 or 1)", c, s->valid[c]);
        if (s->correct[c] < -1 || s->correct[c] > 1)
            return whyf(why, wn, "/candidates/correct[%ld] = %d (must be -1, 0 or 1)", c,
                        s->correct[c]);
        if (s->finish_reason[c] > 1)
            return whyf(why, wn,
                        "/candidates/finish_reason[%ld] = %u (must be 0 = eos or 1 = length)", c,
                        s->finish_reason[c]);
    }
    for (long t = 0; t < s->token_offsets[N]; t++)
        if (s->token_id[t] < 0)
            return whyf(why, wn, "/tokens/token_id[%ld] = %d is negative", t, s->token_id[t]);
    return 0;
}

// ---- HDF5 error text -------------------------------------------------------------------------

typedef struct {
    char *buf;
    size_t n;
    int have_errno_text;
} CauseCtx;

// HDF5's own error stack says what failed; its innermost entry for a failed system call carries
// "errno = 28, error message = 'No space left on device'", which is the part a user needs.
static herr_t cause_walk(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    CauseCtx *c = data;
    const char *d = e->desc ? e->desc : "";
    const char *m = strstr(d, "error message = '");
    if (m && !c->have_errno_text) {
        m += strlen("error message = '");
        const char *end = strchr(m, '\'');
        snprintf(c->buf, c->n, "%.*s", end ? (int)(end - m) : (int)strlen(m), m);
        c->have_errno_text = 1;
    } else if (!c->buf[0] && d[0]) {
        snprintf(c->buf, c->n, "%s", d);
    }
    return 0;
}

// The cause of the HDF5 call that just failed: its error stack, else errno (saved by the caller
// right after the failure, since cleanup calls may change it).
static void h5_cause(char *buf, size_t n, int saved_errno) {
    buf[0] = 0;
    CauseCtx c = {buf, n, 0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, cause_walk, &c);
    H5Eclear2(H5E_DEFAULT);
    if (!buf[0]) snprintf(buf, n, "%s", saved_errno ? strerror(saved_errno) : "HDF5 error");
}

// HDF5 prints its error stack to stderr on every failure unless told not to; our callers report
// one line of their own instead.
static void h5_quiet(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

// ---- writer ----------------------------------------------------------------------------------

// A failed HDF5 call of the writer: records its cause and jumps to cleanup.
#define W_CHECK(cond, what)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            int e_ = errno;                                                                        \
            char c_[256];                                                                          \
            h5_cause(c_, sizeof c_, e_);                                                           \
            snprintf(why, wn, "%s: %s", (what), c_);                                               \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

static herr_t attr_write(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp < 0 ? -1 : H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, mtype, v);
    if (a >= 0 && H5Aclose(a) < 0) rc = -1;
    if (sp >= 0) H5Sclose(sp);
    return sp < 0 || a < 0 ? -1 : rc;
}

// A fixed-length, NUL-terminated UTF-8 string attribute: h5dump prints it as "text".
static herr_t attr_string(hid_t loc, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    herr_t rc = H5Tset_size(t, strlen(v) + 1);
    if (rc >= 0) rc = H5Tset_strpad(t, H5T_STR_NULLTERM);
    if (rc >= 0) rc = H5Tset_cset(t, H5T_CSET_UTF8);
    if (rc >= 0) rc = attr_write(loc, name, t, t, v);
    H5Tclose(t);
    return rc;
}

static herr_t dset_write(hid_t f, const DsetDef *d, const void *data, long n) {
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    if (sp < 0) return -1;
    hid_t ds =
        H5Dcreate2(f, d->name, file_type(d->type), sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : 0;
    if (rc >= 0 && n > 0) rc = H5Dwrite(ds, mem_type(d->type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (rc >= 0) rc = attr_string(ds, "description", d->description);
    if (rc >= 0 && d->field == offsetof(Shard, finish_reason))
        rc = attr_string(ds, "finish_reason_names", "eos,length");
    if (ds >= 0 && H5Dclose(ds) < 0) rc = -1;
    H5Sclose(sp);
    return rc;
}

static herr_t write_attrs(hid_t f, const Shard *s) {
    const int version = SHARD_FORMAT_VERSION, gen = s->generator_rank, k = s->k;
    const int64_t step = s->step, pv = s->policy_version;
    char hex[2][17], when[64];
    snprintf(hex[0], sizeof hex[0], "%016llx", (unsigned long long)s->config_hash);
    snprintf(hex[1], sizeof hex[1], "%016llx", (unsigned long long)s->tokenizer_hash);
    // (a NaN or huge time cannot become a time_t)
    time_t secs = s->created >= 0 && s->created < 1e12 ? (time_t)s->created : 0;
    struct tm tm;
    if (secs && gmtime_r(&secs, &tm))
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    else
        snprintf(when, sizeof when, "?");
    herr_t rc = 0;
    if (rc >= 0) rc = attr_write(f, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT, &version);
    if (rc >= 0) rc = attr_write(f, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, &step);
    if (rc >= 0) rc = attr_write(f, "policy_version", H5T_STD_I64LE, H5T_NATIVE_INT64, &pv);
    if (rc >= 0) rc = attr_write(f, "generator_rank", H5T_STD_I32LE, H5T_NATIVE_INT, &gen);
    if (rc >= 0) rc = attr_write(f, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &s->seed);
    if (rc >= 0)
        rc = attr_write(f, "config_hash", H5T_STD_U64LE, H5T_NATIVE_UINT64, &s->config_hash);
    if (rc >= 0) rc = attr_string(f, "config_hash_hex", hex[0]);
    if (rc >= 0)
        rc = attr_write(f, "tokenizer_hash", H5T_STD_U64LE, H5T_NATIVE_UINT64, &s->tokenizer_hash);
    if (rc >= 0) rc = attr_string(f, "tokenizer_hash_hex", hex[1]);
    if (rc >= 0) rc = attr_string(f, "model", s->model);
    if (rc >= 0) rc = attr_string(f, "reward_source", s->reward_source);
    if (rc >= 0) rc = attr_write(f, "created", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &s->created);
    if (rc >= 0) rc = attr_string(f, "created_utc", when);
    if (rc >= 0) rc = attr_write(f, "k", H5T_STD_I32LE, H5T_NATIVE_INT, &k);
    if (rc >= 0)
        rc = attr_string(f, "description",
                         "gemc shard: the ranked candidate groups one generator rank sampled for "
                         "one training step (layout: src/run/shard.h)");
    return rc;
}

// The shard as an HDF5 file image in memory (the core driver, no backing store). HDF5 never
// touches the disk: a write that fails half way inside HDF5 1.10 leaves a file object that
// crashes the library at exit, so the bytes go to disk with plain write(2), where a full disk is
// just an errno. Returns 0 with *image malloc'd, or -1 with the cause in why.
static int build_image(const Shard *s, const char *name, void **image, size_t *size, char *why,
                       size_t wn) {
    hid_t f = -1, fapl = -1;
    *image = NULL;
    W_CHECK((fapl = H5Pcreate(H5P_FILE_ACCESS)) >= 0, "H5Pcreate");
    W_CHECK(H5Pset_fapl_core(fapl, 1 << 20, 0) >= 0, "H5Pset_fapl_core");
    W_CHECK((f = H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) >= 0, "create");
    W_CHECK(write_attrs(f, s) >= 0, "attributes");
    for (size_t i = 0; i < sizeof GROUPS / sizeof GROUPS[0]; i++) {
        hid_t g = H5Gcreate2(f, GROUPS[i].name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        W_CHECK(g >= 0, GROUPS[i].name);
        herr_t rc = attr_string(g, "description", GROUPS[i].description);
        if (H5Gclose(g) < 0) rc = -1;
        W_CHECK(rc >= 0, GROUPS[i].name);
    }
    const long G = s->n_groups, N = shard_n_cands(s);
    const long P = s->prompt_offsets[G], T = s->token_offsets[N], B = s->text_offsets[N];
    for (int i = 0; i < N_DSETS; i++) {
        const DsetDef *d = &DSETS[i];
        W_CHECK(dset_write(f, d, field_get(s, d), rows_of(d->rows, G, N, P, T, B)) >= 0, d->name);
    }
    W_CHECK(H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0, "flush");
    ssize_t n = H5Fget_file_image(f, NULL, 0);
    W_CHECK(n > 0, "file image size");
    *image = mallocCheck((size_t)n);
    W_CHECK(H5Fget_file_image(f, *image, (size_t)n) == n, "file image");
    *size = (size_t)n;
    herr_t closed = H5Fclose(f);
    f = -1;
    W_CHECK(closed >= 0, "close");
    H5Pclose(fapl);
    return 0;
fail:
    if (f >= 0) H5Fclose(f);
    if (fapl >= 0) H5Pclose(fapl);
    H5Eclear2(H5E_DEFAULT);
    free(*image);
    *image = NULL;
    return -1;
}

// data[0..n) into a new file at path, fsync'd. Returns 0, or -1 with the cause in why and the
// file removed.
static int write_synced(const char *path, const void *data, size_t n, char *why, size_t wn) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return whyf(why, wn, "create %s: %s", path, strerror(errno));
    const char *p = data;
    size_t done = 0;
    int rc = 0;
    while (done < n && rc == 0) {
        ssize_t w = write(fd, p + done, n - done);
        if (w > 0)
            done += (size_t)w;
        else if (w < 0 && errno == EINTR)
            continue;
        else
            rc = whyf(why, wn, "write: %s", w < 0 ? strerror(errno) : "no progress");
    }
    if (rc == 0 && fsync(fd) != 0) rc = whyf(why, wn, "fsync: %s", strerror(errno));
    // close reports the deferred errors of some filesystems (NFS: a full disk shows here)
    if (close(fd) != 0 && rc == 0) rc = whyf(why, wn, "close: %s", strerror(errno));
    if (rc != 0) unlink(path);
    return rc;
}

int shard_write(const char *path, const Shard *s) {
    h5_quiet();
    char why[400];
    // never write what the reader would refuse
    if (shard_check(s, -1, -1, -1, why, sizeof why) != 0) {
        gemc_set_error("%s: cannot write shard (inconsistent content: %s)", path, why);
        return -1;
    }
    size_t plen = strlen(path);
    char *tmp = mallocCheck(plen + 5);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    void *image;
    size_t size = 0;
    int rc = build_image(s, tmp, &image, &size, why, sizeof why);
    if (rc == 0) {
        rc = write_synced(tmp, image, size, why, sizeof why);
        free(image);
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = whyf(why, sizeof why, "rename from %s: %s", tmp, strerror(errno));
        unlink(tmp);
    }
    if (rc == 0 && fsync_parent_dir(path) != 0) {
        // the rename may not survive a crash: a reader must not rely on it
        rc = whyf(why, sizeof why, "fsync of its directory: %s", strerror(errno));
        unlink(path);
    }
    if (rc != 0)
        gemc_set_error("%s: cannot write shard (%s) (HINT: check that the directory exists and "
                       "its free space, quota and file-size limit)",
                       path, why);
    free(tmp);
    return rc;
}

// ---- reader ----------------------------------------------------------------------------------

typedef struct {
    hid_t f;
    hsize_t file_size;
    char why[400];
} Reader;

static int rfail(Reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rfail(Reader *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    H5Eclear2(H5E_DEFAULT);
    return -1;
}

// A scalar numeric root attribute, converted by HDF5 to the native type mtype.
static int attr_read(Reader *r, const char *name, H5T_class_t cls, hid_t mtype, void *out) {
    if (H5Aexists(r->f, name) <= 0) return rfail(r, "no '%s' attribute", name);
    hid_t a = H5Aopen(r->f, name, H5P_DEFAULT);
    hid_t t = a < 0 ? -1 : H5Aget_type(a);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    int rc = 0;
    if (a < 0 || t < 0 || sp < 0)
        rc = rfail(r, "cannot open the '%s' attribute", name);
    else if (H5Tget_class(t) != cls || H5Sget_simple_extent_npoints(sp) != 1)
        rc = rfail(r, "the '%s' attribute is not a single %s", name,
                   cls == H5T_FLOAT ? "number" : "integer");
    else if (H5Aread(a, mtype, out) < 0)
        rc = rfail(r, "cannot read the '%s' attribute", name);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
}

// A fixed-length string root attribute into out[n] (cut to fit, NUL-terminated).
static int attr_read_string(Reader *r, const char *name, char *out, size_t n) {
    if (H5Aexists(r->f, name) <= 0) return rfail(r, "no '%s' attribute", name);
    hid_t a = H5Aopen(r->f, name, H5P_DEFAULT);
    hid_t t = a < 0 ? -1 : H5Aget_type(a);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    int rc = 0;
    if (a < 0 || t < 0 || sp < 0) {
        rc = rfail(r, "cannot open the '%s' attribute", name);
    } else if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) != 0 ||
               H5Sget_simple_extent_npoints(sp) != 1) {
        // one string only: H5Aread writes every element, and buf holds one
        rc = rfail(r, "the '%s' attribute is not a single fixed-length string", name);
    } else {
        size_t size = H5Tget_size(t);
        if (size == 0 || size > r->file_size) {
            rc = rfail(r, "the '%s' attribute has a bad size (%zu)", name, size);
        } else {
            char *buf = callocCheck(size + 1, 1);
            if (H5Aread(a, t, buf) < 0)
                rc = rfail(r, "cannot read the '%s' attribute", name);
            else
                snprintf(out, n, "%s", buf);
            free(buf);
        }
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
}

// Opens a dataset and checks its element type and that it is one-dimensional and no larger than
// the file (so a corrupt size never becomes a huge allocation). Returns its length or -1.
static long dset_probe(Reader *r, const DsetDef *d) {
    // H5Lexists fails (< 0) when a parent group is missing: the same answer, "no such dataset"
    if (H5Lexists(r->f, d->name, H5P_DEFAULT) <= 0)
        return rfail(r, "no dataset %s (not a gemc shard, or a damaged one)", d->name);
    hid_t ds = H5Dopen2(r->f, d->name, H5P_DEFAULT);
    if (ds < 0) return rfail(r, "cannot open dataset %s", d->name);
    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    long n = -1;
    if (t < 0 || sp < 0) {
        rfail(r, "cannot read the type and shape of %s", d->name);
    } else {
        const H5T_class_t want = d->type == T_F32 ? H5T_FLOAT : H5T_INTEGER;
        const H5T_class_t cls = H5Tget_class(t);
        const size_t size = H5Tget_size(t);
        const int is_signed = cls == H5T_INTEGER && H5Tget_sign(t) == H5T_SGN_2;
        hsize_t dims[1] = {0};
        if (cls != want || size != elem_size(d->type) ||
            (cls == H5T_INTEGER && is_signed != (d->type != T_U8))) {
            rfail(r, "%s has elements of class %d and %zu bytes, expected %s", d->name, (int)cls,
                  size, elem_name(d->type));
        } else if (H5Sget_simple_extent_ndims(sp) != 1 ||
                   H5Sget_simple_extent_dims(sp, dims, NULL) != 1) {
            rfail(r, "%s is not one-dimensional", d->name);
        } else if (dims[0] > r->file_size / elem_size(d->type)) {
            rfail(r, "%s claims %llu rows, more than the file's %llu bytes can hold", d->name,
                  (unsigned long long)dims[0], (unsigned long long)r->file_size);
        } else {
            n = (long)dims[0];
        }
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    H5Dclose(ds);
    return n;
}

static int dset_read(Reader *r, const DsetDef *d, void *out, long n) {
    if (n == 0) return 0;
    hid_t ds = H5Dopen2(r->f, d->name, H5P_DEFAULT);
    int rc = 0;
    if (ds < 0 || H5Dread(ds, mem_type(d->type), H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        rc = rfail(r, "cannot read %s (truncated or corrupt?)", d->name);
    if (ds >= 0) H5Dclose(ds);
    return rc;
}

static long dset_index(size_t field) {
    for (int i = 0; i < N_DSETS; i++)
        if (DSETS[i].field == field) return i;
    return -1;
}

// Everything after the file is open. Returns 0, or -1 with r->why set (and s possibly
// half-filled; the caller frees it).
static int read_all(Reader *r, Shard *s, uint64_t expect_config_hash) {
    int version;
    if (attr_read(r, "format_version", H5T_INTEGER, H5T_NATIVE_INT, &version) != 0) {
        char inner[sizeof r->why];
        snprintf(inner, sizeof inner, "%s", r->why);
        return rfail(r, "not a gemc shard (%s)", inner);
    }
    if (version > SHARD_FORMAT_VERSION)
        return rfail(r,
                     "shard format version %d is newer than this gemc reads (%d) (HINT: read it "
                     "with a newer gemc)",
                     version, SHARD_FORMAT_VERSION);
    if (version != SHARD_FORMAT_VERSION)
        return rfail(
            r,
            "shard format version %d is older than this gemc reads (%d) (HINT: a run "
            "directory's shards belong to the gemc that wrote them; start a new train.dir)",
            version, SHARD_FORMAT_VERSION);
    uint64_t cfg_hash;
    if (attr_read(r, "config_hash", H5T_INTEGER, H5T_NATIVE_UINT64, &cfg_hash) != 0) return -1;
    if (expect_config_hash != 0 && cfg_hash != expect_config_hash)
        return rfail(r,
                     "shard was written by another configuration (config hash %016llx, this run "
                     "%016llx) (HINT: a run directory's shards belong to its sampling, score, "
                     "filter and sega settings; resume with those, or start a new train.dir)",
                     (unsigned long long)cfg_hash, (unsigned long long)expect_config_hash);

    Shard h = {0}; // provenance, copied into s once the arrays are allocated
    h.format_version = version;
    h.config_hash = cfg_hash;
    int64_t step, pv, k;
    int64_t gen;
    if (attr_read(r, "step", H5T_INTEGER, H5T_NATIVE_INT64, &step) ||
        attr_read(r, "policy_version", H5T_INTEGER, H5T_NATIVE_INT64, &pv) ||
        attr_read(r, "generator_rank", H5T_INTEGER, H5T_NATIVE_INT64, &gen) ||
        attr_read(r, "seed", H5T_INTEGER, H5T_NATIVE_UINT64, &h.seed) ||
        attr_read(r, "tokenizer_hash", H5T_INTEGER, H5T_NATIVE_UINT64, &h.tokenizer_hash) ||
        attr_read_string(r, "model", h.model, sizeof h.model) ||
        attr_read_string(r, "reward_source", h.reward_source, sizeof h.reward_source) ||
        attr_read(r, "created", H5T_FLOAT, H5T_NATIVE_DOUBLE, &h.created) ||
        attr_read(r, "k", H5T_INTEGER, H5T_NATIVE_INT64, &k))
        return -1;
    if (k < 1 || k > 1 << 20) return rfail(r, "k = %lld candidates per group", (long long)k);
    if (gen < 0 || gen > 1 << 30) return rfail(r, "generator_rank = %lld", (long long)gen);
    h.step = (long)step, h.policy_version = (long)pv, h.generator_rank = (int)gen, h.k = (int)k;

    // every dataset's length, then the sizes they imply, checked before anything is allocated
    long len[N_DSETS];
    for (int i = 0; i < N_DSETS; i++)
        if ((len[i] = dset_probe(r, &DSETS[i])) < 0) return -1;
    const long G = len[dset_index(offsetof(Shard, group_id))];
    const long P = len[dset_index(offsetof(Shard, prompt_tokens))];
    const long T = len[dset_index(offsetof(Shard, token_id))];
    const long B = len[dset_index(offsetof(Shard, text))];
    if (G > (1L << 31) - 1) return rfail(r, "%ld groups", G);
    const long N = G * k;
    for (int i = 0; i < N_DSETS; i++) {
        long want = rows_of(DSETS[i].rows, G, N, P, T, B);
        if (len[i] != want)
            return rfail(r, "%s has %ld rows, expected %ld (%ld groups of k = %lld)", DSETS[i].name,
                         len[i], want, G, (long long)k);
    }
    shard_alloc(s, (int)G, (int)k, P, T, B);
    for (int i = 0; i < N_DSETS; i++)
        if (dset_read(r, &DSETS[i], field_get(s, &DSETS[i]), len[i]) != 0) return -1;
    s->format_version = h.format_version;
    s->step = h.step;
    s->policy_version = h.policy_version;
    s->generator_rank = h.generator_rank;
    s->seed = h.seed;
    s->config_hash = h.config_hash;
    s->tokenizer_hash = h.tokenizer_hash;
    memcpy(s->model, h.model, sizeof s->model);
    memcpy(s->reward_source, h.reward_source, sizeof s->reward_source);
    s->created = h.created;

    char why[sizeof r->why];
    if (shard_check(s, P, T, B, why, sizeof why) != 0) return rfail(r, "damaged shard: %s", why);
    return 0;
}

int shard_read(const char *path, Shard *s, uint64_t expect_config_hash) {
    h5_quiet();
    memset(s, 0, sizeof *s);
    // the system's reason first (a missing file, no permission): HDF5 would only say "cannot open"
    struct stat st;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0) {
        gemc_set_error("%s: cannot open shard (%s)", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        gemc_set_error("%s: cannot open shard (not a regular file)", path);
        return -1;
    }
    Reader r = {.f = -1};
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    r.f = fapl < 0 ? -1 : H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (r.f < 0) {
        H5Eclear2(H5E_DEFAULT);
        gemc_set_error("%s: not a readable HDF5 shard (truncated or corrupt?)", path);
        return -1;
    }
    int rc = H5Fget_filesize(r.f, &r.file_size) < 0 ? rfail(&r, "cannot get the file size") : 0;
    if (rc == 0) rc = read_all(&r, s, expect_config_hash);
    H5Fclose(r.f);
    H5Eclear2(H5E_DEFAULT);
    if (rc != 0) {
        shard_free(s);
        gemc_set_error("%s: %s", path, r.why);
        return -1;
    }
    return 0;
}
