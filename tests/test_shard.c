// HDF5 shards (src/run/shard.c): a bit-exact round trip, the atomic write (nothing left behind, not
// even when the disk fills), a reader that turns every kind of damage into one error line, the
// layout as h5dump shows it, `gemc inspect`, and groups_to_shard's one-to-one packing.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>

#include "base/common.h"
#include "config/config.h"
#include "base/rng.h"
#include "run/shard.h"
#include "stages/stage.h"
#include "tests.h"
#include "text/tokenizer.h"

#define GEMC "./gemc"

// ---- a hand-built shard ----------------------------------------------------------------------

// G groups of k candidates with every field distinct: candidate row 1 has no tokens (an empty
// candidate), the last one of each group is invalid, finish reasons alternate. Each candidate's
// text is "cand C: Final Answer: N". Group g's prompt is 3 + g letters, or with prompt given,
// <|im_start|> (258) and the bytes of prompt with its second one replaced by the digit g.
static void make_shard(Shard *s, int G, int k, int tokens_per_cand, uint64_t seed,
                       const char *prompt) {
    Rng rng;
    rng_seed(&rng, seed);
    const long N = (long)G * k;
    long P = 0, T = 0;
    for (int g = 0; g < G; g++) P += prompt ? (long)strlen(prompt) + 1 : 3 + g;
    for (long c = 0; c < N; c++) T += c == 1 ? 0 : tokens_per_cand + c % 3;
    StrBuf text = {0};
    long *toff = malloc(sizeof(long) * (N + 1));
    toff[0] = 0;
    for (long c = 0; c < N; c++) {
        char line[64];
        snprintf(line, sizeof line, "cand %ld: Final Answer: %ld", c, 40 + c);
        strbuf_puts(&text, line);
        toff[c + 1] = (long)text.len;
    }
    shard_alloc(s, G, k, P, T, (long)text.len);
    s->step = 12;
    s->policy_version = 11;
    s->generator_rank = 1;
    s->seed = 0xfedcba9876543210ull;
    s->config_hash = 0x0123456789abcdefull;
    s->tokenizer_hash = 0xdeadbeefcafef00dull;
    snprintf(s->model, sizeof s->model, "runs/demo/sft/final");
    s->created = 1700000000.25;
    if (text.len) memcpy(s->text, text.p, text.len);
    free(text.p);
    long p = 0, t = 0;
    for (int g = 0; g < G; g++) {
        s->group_id[g] = 11L * 64 + g;
        s->prompt_index[g] = 7 * g + 3;
        s->prompt_offsets[g] = p;
        if (prompt) {
            s->prompt_tokens[p++] = 258;
            for (int i = 0; prompt[i]; i++)
                s->prompt_tokens[p++] = i == 1 ? '0' + g % 10 : (unsigned char)prompt[i];
        } else {
            for (int i = 0; i < 3 + g; i++) s->prompt_tokens[p++] = 'a' + (g + i) % 26;
        }
        s->skipped[g] = g % 2;
        s->n_valid[g] = k - 1;
        for (int i = 0; i < k; i++) {
            const long c = (long)g * k + i;
            s->group_index[c] = g;
            s->candidate_index[c] = i;
            s->valid[c] = i < k - 1;
            s->rank_in_group[c] = s->valid[c] ? (i + g) % (k - 1) : -1;
            s->score[c] = rng_uniform(&rng) - 0.5f;
            s->fork_entropy[c] = rng_uniform(&rng);
            s->final_entropy[c] = rng_uniform(&rng);
            s->reward[c] = s->valid[c] ? s->score[c] : 0;
            s->advantage[c] = s->valid[c] ? rng_uniform(&rng) - 0.5f : 0;
            s->finish_reason[c] = c % 2;
            s->token_offsets[c] = t;
            s->text_offsets[c] = toff[c];
            const long n = c == 1 ? 0 : tokens_per_cand + c % 3;
            for (long j = 0; j < n; j++, t++) {
                s->token_id[t] = (int)(rng_u64(&rng) % 256);
                s->logp_raw[t] = -rng_uniform(&rng) * 5;
                s->logp_sample[t] = -rng_uniform(&rng) * 5;
                s->logp_old[t] = -rng_uniform(&rng) * 5;
                s->entropy[t] = rng_uniform(&rng) * 3;
            }
        }
    }
    s->prompt_offsets[G] = p;
    s->token_offsets[N] = t;
    s->text_offsets[N] = toff[N];
    free(toff);
}

#define SAME_ARRAY(a, b, field, n)                                                                 \
    (memcmp((a)->field, (b)->field, sizeof *(a)->field * (size_t)(n)) == 0)

// Every field bit for bit.
static int shards_equal(const Shard *a, const Shard *b) {
    if (a->format_version != b->format_version || a->step != b->step ||
        a->policy_version != b->policy_version || a->generator_rank != b->generator_rank ||
        a->seed != b->seed || a->config_hash != b->config_hash ||
        a->tokenizer_hash != b->tokenizer_hash || strcmp(a->model, b->model) != 0 ||
        memcmp(&a->created, &b->created, sizeof a->created) != 0 || a->k != b->k ||
        a->n_groups != b->n_groups)
        return 0;
    const long G = a->n_groups, N = shard_n_cands(a);
    if (!SAME_ARRAY(a, b, prompt_offsets, G + 1) || !SAME_ARRAY(a, b, token_offsets, N + 1) ||
        !SAME_ARRAY(a, b, text_offsets, N + 1))
        return 0;
    const long P = a->prompt_offsets[G], T = a->token_offsets[N], B = a->text_offsets[N];
    return SAME_ARRAY(a, b, group_id, G) && SAME_ARRAY(a, b, prompt_index, G) &&
           SAME_ARRAY(a, b, prompt_tokens, P) && SAME_ARRAY(a, b, skipped, G) &&
           SAME_ARRAY(a, b, n_valid, G) && SAME_ARRAY(a, b, group_index, N) &&
           SAME_ARRAY(a, b, candidate_index, N) && SAME_ARRAY(a, b, rank_in_group, N) &&
           SAME_ARRAY(a, b, score, N) && SAME_ARRAY(a, b, fork_entropy, N) &&
           SAME_ARRAY(a, b, final_entropy, N) && SAME_ARRAY(a, b, reward, N) &&
           SAME_ARRAY(a, b, advantage, N) && SAME_ARRAY(a, b, valid, N) &&
           SAME_ARRAY(a, b, finish_reason, N) && SAME_ARRAY(a, b, text, B) &&
           SAME_ARRAY(a, b, token_id, T) && SAME_ARRAY(a, b, logp_raw, T) &&
           SAME_ARRAY(a, b, logp_sample, T) && SAME_ARRAY(a, b, logp_old, T) &&
           SAME_ARRAY(a, b, entropy, T);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// A valid shard written to DIR/NAME; returns the malloc'd path.
static char *write_valid(const char *dir, const char *name, uint64_t seed) {
    Shard s;
    make_shard(&s, 2, 4, 5, seed, NULL);
    char *path = path_join(dir, name);
    CU_ASSERT_EQUAL_FATAL(shard_write(path, &s), 0);
    shard_free(&s);
    return path;
}

// Asserts that reading path fails with one line naming the file and holding needle.
static void expect_read_error(const char *path, const char *needle) {
    Shard s;
    memset(&s, 0x5a, sizeof s); // the reader must zero it even on failure
    int rc = shard_read(path, &s, 0);
    CU_ASSERT_EQUAL(rc, -1);
    const char *e = gemc_error();
    int ok = strstr(e, path) == e && strstr(e, needle) && !strchr(e, '\n');
    CU_ASSERT(ok);
    if (!ok) fprintf(stderr, "\n  %s: expected an error with '%s', got: %s\n", path, needle, e);
    CU_ASSERT_PTR_NULL(s.group_id);
    CU_ASSERT_EQUAL(s.n_groups, 0);
    if (rc == 0) shard_free(&s);
}

// ---- round trip and the atomic write ---------------------------------------------------------

static void test_round_trip(void) {
    char *dir = test_tmpdir();
    Shard a, b;
    make_shard(&a, 3, 4, 6, 1, NULL);
    CU_ASSERT_EQUAL(a.token_offsets[1], a.token_offsets[2]); // an empty candidate is in there
    char *path = shard_path(dir, 12, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(path, "/step_000012.gen_1.h5"));
    CU_ASSERT_EQUAL_FATAL(shard_write(path, &a), 0);
    CU_ASSERT_EQUAL_FATAL(shard_read(path, &b, a.config_hash), 0);
    CU_ASSERT(shards_equal(&a, &b));
    CU_ASSERT_EQUAL(b.format_version, SHARD_FORMAT_VERSION);
    CU_ASSERT_EQUAL(shard_n_tokens(&b), shard_n_tokens(&a));
    shard_free(&b);
    CU_ASSERT_PTR_NULL(b.token_id); // shard_free leaves it zeroed
    // write-once files: PATH and nothing else (no PATH.tmp)
    CU_ASSERT_EQUAL(test_count_dir_entries(dir), 1);
    shard_free(&a);

    // a shard of no groups, and one whose candidates all have no tokens and no text
    make_shard(&a, 0, 4, 0, 2, NULL);
    char *empty = shard_path(dir, 1, 0);
    CU_ASSERT_EQUAL_FATAL(shard_write(empty, &a), 0);
    CU_ASSERT_EQUAL_FATAL(shard_read(empty, &b, 0), 0);
    CU_ASSERT(shards_equal(&a, &b));
    CU_ASSERT_EQUAL(b.n_groups, 0);
    CU_ASSERT_EQUAL(shard_n_tokens(&b), 0);
    shard_free(&a), shard_free(&b);
    shard_alloc(&a, 1, 2, 0, 0, 0);
    a.n_valid[0] = 0, a.skipped[0] = 1;
    a.rank_in_group[0] = a.rank_in_group[1] = -1;
    a.group_index[1] = 0, a.candidate_index[1] = 1;
    CU_ASSERT_EQUAL_FATAL(shard_write(empty, &a), 0); // replaces the older file
    CU_ASSERT_EQUAL_FATAL(shard_read(empty, &b, 0), 0);
    CU_ASSERT(shards_equal(&a, &b));
    shard_free(&a), shard_free(&b);
    CU_ASSERT_EQUAL(test_count_dir_entries(dir), 2);

    // the writer refuses what the reader would refuse, and leaves nothing behind
    make_shard(&a, 2, 3, 4, 3, NULL);
    a.token_offsets[2] = a.token_offsets[3] + 1;
    char *bad = shard_path(dir, 2, 0);
    CU_ASSERT_EQUAL(shard_write(bad, &a), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "token_offsets"));
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), bad));
    CU_ASSERT_EQUAL(test_count_dir_entries(dir), 2);
    shard_free(&a);
    free(bad), free(empty), free(path), free(dir);
}

static void test_config_hash_mismatch(void) {
    char *dir = test_tmpdir();
    char *path = write_valid(dir, "s.h5", 4);
    Shard s;
    CU_ASSERT_EQUAL(shard_read(path, &s, 0x0123456789abcdefull), 0);
    shard_free(&s);
    CU_ASSERT_EQUAL(shard_read(path, &s, 0x1111111111111111ull), -1);
    const char *e = gemc_error();
    CU_ASSERT(strstr(e, path) == e);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "shard was written by another configuration"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "config hash 0123456789abcdef, this run 1111111111111111"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "HINT"));
    CU_ASSERT_PTR_NULL(s.group_id);
    free(path), free(dir);
}

// ---- damaged files ---------------------------------------------------------------------------

static void test_truncated_and_garbage(void) {
    char *dir = test_tmpdir();
    char *path = write_valid(dir, "s.h5", 5);
    size_t n;
    char *bytes = read_text_file(path, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    char *half = path_join(dir, "half.h5");
    test_write_file(half, bytes, n / 2);
    expect_read_error(half, "not a readable HDF5 shard (truncated or corrupt?)");
    // cut just short of the end: the superblock is whole, the data is not
    char *most = path_join(dir, "most.h5");
    test_write_file(most, bytes, n - 16);
    expect_read_error(most, ": ");
    free(bytes);

    Rng rng;
    rng_seed(&rng, 6);
    char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)rng_u64(&rng);
    char *garbage = path_join(dir, "garbage.h5");
    test_write_file(garbage, junk, sizeof junk);
    expect_read_error(garbage, "not a readable HDF5 shard");
    test_write_file(garbage, "", 0);
    expect_read_error(garbage, "not a readable HDF5 shard");
    char *missing = path_join(dir, "missing.h5");
    expect_read_error(missing, "No such file or directory");
    expect_read_error(dir, "not a regular file");
    free(missing), free(garbage), free(most), free(half), free(path), free(dir);
}

// Rewrites element i of a dataset (an existing file, through the HDF5 API) with v.
static void poke(const char *path, const char *dset, hid_t mtype, size_t esize, long i,
                 const void *v) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    CU_ASSERT_FATAL(d >= 0);
    hid_t sp = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    CU_ASSERT_FATAL(n > i);
    char *buf = malloc(esize * (size_t)n);
    CU_ASSERT(H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    memcpy(buf + esize * (size_t)i, v, esize);
    CU_ASSERT(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    free(buf);
    H5Sclose(sp);
    H5Dclose(d);
    CU_ASSERT(H5Fclose(f) >= 0);
}

static void poke_i64(const char *p, const char *d, long i, int64_t v) {
    poke(p, d, H5T_NATIVE_INT64, 8, i, &v);
}
static void poke_i32(const char *p, const char *d, long i, int32_t v) {
    poke(p, d, H5T_NATIVE_INT32, 4, i, &v);
}
static void poke_u8(const char *p, const char *d, long i, uint8_t v) {
    poke(p, d, H5T_NATIVE_UINT8, 1, i, &v);
}

// Replaces a dataset with one of another type or length.
static void replace_dataset(const char *path, const char *dset, hid_t ftype, hsize_t n) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    CU_ASSERT(H5Ldelete(f, dset, H5P_DEFAULT) >= 0);
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, dset, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT(d >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    CU_ASSERT(H5Fclose(f) >= 0);
}

static void set_root_attr_int(const char *path, const char *name, int v) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_FATAL(f >= 0);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    CU_ASSERT(a >= 0 && H5Awrite(a, H5T_NATIVE_INT, &v) >= 0);
    H5Aclose(a);
    CU_ASSERT(H5Fclose(f) >= 0);
}

static void test_damaged_content(void) {
    char *dir = test_tmpdir();
    // (2 groups of 4 candidates: token_offsets has 9 rows)
    char *p = write_valid(dir, "a.h5", 7);
    poke_i64(p, "/candidates/token_offsets", 3, 1); // below row 2: not monotone
    expect_read_error(p, "/candidates/token_offsets is not monotone");
    free(p);
    p = write_valid(dir, "b.h5", 7);
    poke_i64(p, "/candidates/token_offsets", 8, 100000); // past the packed tokens
    expect_read_error(p, "token_offsets ends at 100000");
    free(p);
    p = write_valid(dir, "c.h5", 7);
    poke_i64(p, "/groups/prompt_offsets", 0, 1);
    expect_read_error(p, "/groups/prompt_offsets[0] is 1, not 0");
    free(p);
    p = write_valid(dir, "d.h5", 7);
    poke_i32(p, "/candidates/group_index", 5, 7);
    expect_read_error(p, "/candidates/group_index[5] = 7");
    free(p);
    p = write_valid(dir, "e.h5", 7);
    poke_i32(p, "/candidates/candidate_index", 2, 4);
    expect_read_error(p, "/candidates/candidate_index[2] = 4");
    free(p);
    p = write_valid(dir, "f.h5", 7);
    poke_i32(p, "/candidates/rank_in_group", 0, 4);
    expect_read_error(p, "rank_in_group[0] = 4 is outside [-1, k = 4)");
    free(p);
    p = write_valid(dir, "g.h5", 7);
    poke_u8(p, "/candidates/finish_reason", 3, 2);
    expect_read_error(p, "finish_reason[3] = 2");
    free(p);
    p = write_valid(dir, "h.h5", 7);
    poke_i32(p, "/tokens/token_id", 4, -3);
    expect_read_error(p, "/tokens/token_id[4] = -3 is negative");
    free(p);
    p = write_valid(dir, "i.h5", 7);
    replace_dataset(p, "/tokens/entropy", H5T_IEEE_F32LE, 3);
    expect_read_error(p, "/tokens/entropy has 3 rows, expected");
    free(p);
    p = write_valid(dir, "j.h5", 7);
    replace_dataset(p, "/candidates/score", H5T_STD_I32LE, 8);
    expect_read_error(p, "/candidates/score has elements of class");
    free(p);
    p = write_valid(dir, "k.h5", 7);
    set_root_attr_int(p, "format_version", SHARD_FORMAT_VERSION + 1);
    expect_read_error(p, "newer gemc");
    free(p);
    // an HDF5 file that is not a shard
    p = path_join(dir, "other.h5");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CU_ASSERT(f >= 0 && H5Fclose(f) >= 0);
    expect_read_error(p, "not a gemc shard");
    free(p);
    free(dir);
}

// ---- write failures --------------------------------------------------------------------------

// A write that fails half way (here: past RLIMIT_FSIZE, as a full disk would) leaves neither the
// shard nor its .tmp, and says which file. In a child, so the limit stays there.
static void test_write_failure_leaves_nothing(void) {
    char *dir = test_tmpdir();
    char *path = path_join(dir, "big.h5");
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fds[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        signal(SIGXFSZ, SIG_IGN); // write() returns EFBIG instead of killing us
        struct rlimit rl = {4096, 4096};
        setrlimit(RLIMIT_FSIZE, &rl);
        Shard s;
        make_shard(&s, 4, 8, 20000, 8, NULL); // ~2.6 MB of tokens
        int rc = shard_write(path, &s);
        const char *e = gemc_error();
        ssize_t w = write(fds[1], e, strlen(e));
        (void)w;
        shard_free(&s);
        free(path), free(dir);
        // the library shuts down cleanly after the failure (HDF5 1.10 crashes here when a
        // write fails inside it), as a generator rank that exits with the error does
        H5close();
        _exit(rc == -1 ? 0 : 1); // not exit(): the parent's atexit would remove its tmpdirs
    }
    close(fds[1]);
    char err[2048] = {0};
    size_t got = 0;
    ssize_t r;
    while ((r = read(fds[0], err + got, sizeof err - 1 - got)) > 0) got += (size_t)r;
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT(strstr(err, path) == err);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot write shard ("));
    CU_ASSERT_PTR_NULL(strchr(err, '\n'));
    CU_ASSERT(!file_exists(path));
    CU_ASSERT(!file_exists(tmp));
    CU_ASSERT_EQUAL(test_count_dir_entries(dir), 0);
    if (!strstr(err, "cannot write shard")) fprintf(stderr, "\n  got: %s\n", err);

    // a directory that does not exist: the cause, from errno
    char *nowhere = path_join(dir, "no/such/dir/s.h5");
    Shard s;
    make_shard(&s, 1, 2, 3, 9, NULL);
    CU_ASSERT_EQUAL(shard_write(nowhere, &s), -1);
    CU_ASSERT(strstr(gemc_error(), nowhere) == gemc_error());
    CU_ASSERT_PTR_NOT_NULL(strstr(gemc_error(), "No such file or directory"));
    shard_free(&s);
    free(nowhere), free(path), free(dir);
}

// ---- what h5dump shows -----------------------------------------------------------------------

static void test_h5dump_shows_layout(void) {
    char *out, *err;
    if (test_run("command -v h5dump", &out, &err) != 0) {
        fprintf(stderr, "\n  h5dump not installed (apt-get install hdf5-tools): skipped ");
        free(out), free(err);
        return;
    }
    free(out), free(err);
    char *dir = test_tmpdir();
    char *path = write_valid(dir, "s.h5", 10);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "h5dump -H '%s'", path);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    const char *names[] = {"group_id",
                           "prompt_offsets",
                           "rank_in_group",
                           "advantage",
                           "token_offsets",
                           "text_offsets",
                           "logp_sample",
                           "logp_raw",
                           "entropy",
                           "logp_old",
                           "format_version",
                           "policy_version",
                           "finish_reason_names",
                           "description",
                           "config_hash_hex"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        CU_ASSERT_PTR_NOT_NULL(strstr(out, names[i]));
        if (!strstr(out, names[i])) fprintf(stderr, "\n  h5dump -H lacks %s", names[i]);
    }
    free(out), free(err);
    // the attributes read as text, not numbers
    snprintf(cmd, sizeof cmd, "h5dump -a /candidates/finish_reason/finish_reason_names '%s'", path);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"eos,length\""));
    free(out), free(err);
    snprintf(cmd, sizeof cmd, "h5dump -a /model '%s'", path);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"runs/demo/sft/final\""));
    free(out), free(err);
    free(path), free(dir);
}

// ---- gemc inspect ----------------------------------------------------------------------------

// A shard whose model attribute is a folder holding the byte-level tokenizer, its prompts
// "<|im_start|>Q0: what is 2+3?" and "<|im_start|>Q1: what is 2+3?".
static char *inspect_fixture(const char *dir) {
    char *model = path_join(dir, "model");
    CU_ASSERT_EQUAL_FATAL(ensure_dir(model), 0);
    CU_ASSERT_EQUAL_FATAL(tokenizer_write_bytelevel(model, 512), 0);
    Shard s;
    make_shard(&s, 2, 3, 4, 11, "Q0: what is 2+3?");
    snprintf(s.model, sizeof s.model, "%s", model);
    char *path = path_join(dir, "step_000012.gen_1.h5");
    CU_ASSERT_EQUAL_FATAL(shard_write(path, &s), 0);
    shard_free(&s);
    free(model);
    return path;
}

static void test_inspect_command(void) {
    char *dir = test_tmpdir();
    char *path = inspect_fixture(dir);
    char cmd[4400], *out, *err;
    snprintf(cmd, sizeof cmd, GEMC " inspect %s", path);
    int rc = test_run(cmd, &out, &err);
    if (rc) fprintf(stderr, "\n  %s: status %d: %s", cmd, rc, err);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(err, "");
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "step            12"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "config_hash     0123456789abcdef"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "advantage"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "group 1: group_id 705, prompt_index 10"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"<|im_start|>Q0: what is 2+3?\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"<|im_start|>Q1: what is 2+3?\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"cand 4: Final Answer: 44\""));
    // best first, the invalid one last: group 1 ranks candidate 4 (row 4) above candidate 3
    const char *c3 = strstr(out, "cand 3:"), *c4 = strstr(out, "cand 4:"),
               *c5 = strstr(out, "cand 5:");
    CU_ASSERT(c3 && c4 && c5 && c4 < c3 && c3 < c5);
    free(out), free(err);

    // one group, with tokens
    snprintf(cmd, sizeof cmd, GEMC " inspect --tokens %s --group 1", path);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NULL(strstr(out, "group 0:"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "group 1:"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "logp_sample"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "entropy"));
    free(out), free(err);

    // without a tokenizer: ids and a note, not a failure
    snprintf(cmd, sizeof cmd, GEMC " inspect %s --model %s/nowhere", path, dir);
    CU_ASSERT_EQUAL(test_run(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "note: no tokenizer"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "ids 258,81,48,58"));
    free(out), free(err);

    snprintf(cmd, sizeof cmd, GEMC " inspect %s --group 2", path);
    test_expect_cli_error(cmd, "--group 2 is out of range", "groups 0..1");
    snprintf(cmd, sizeof cmd, GEMC " inspect %s/missing.h5", dir);
    test_expect_cli_error(cmd, "missing.h5: cannot open shard", "No such file");
    char *corrupt = path_join(dir, "corrupt.h5");
    test_write_file(corrupt, "not hdf5 at all\n", 16);
    snprintf(cmd, sizeof cmd, GEMC " inspect %s", corrupt);
    test_expect_cli_error(cmd, "corrupt.h5: not a readable HDF5 shard", NULL);
    snprintf(cmd, sizeof cmd, GEMC " inspect %s --grop 1", path);
    test_expect_cli_error(cmd, "--grop", "--group");
    test_expect_cli_error(GEMC " inspect", "missing the shard file", NULL);
    CU_ASSERT_EQUAL(test_run(GEMC " inspect --help", &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--tokens"));
    free(out), free(err);
    free(corrupt), free(path), free(dir);
}

// ---- groups_to_shard -------------------------------------------------------------------------

static void fill_candidate(Candidate *cd, const char *text, FinishReason finish, int salt) {
    const int n = (int)strlen(text);
    cd->n = n;
    cd->ids = malloc(sizeof(int) * (size_t)(n + 1));
    cd->logp_sample = malloc(sizeof(float) * (size_t)(n + 1));
    cd->logp_raw = malloc(sizeof(float) * (size_t)(n + 1));
    cd->logp_old = malloc(sizeof(float) * (size_t)(n + 1));
    cd->entropy_raw = malloc(sizeof(float) * (size_t)(n + 1));
    cd->entropy_sample = malloc(sizeof(float) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) {
        cd->ids[i] = (unsigned char)text[i];
        cd->logp_sample[i] = -0.01f * (float)(i + salt);
        cd->logp_raw[i] = -0.02f * (float)(i + salt);
        cd->logp_old[i] = -0.015f * (float)(i + salt);
        cd->entropy_raw[i] = 0.1f * (float)(i + salt);
        cd->entropy_sample[i] = 0.3f * (float)(i + salt);
    }
    cd->finish = finish;
    cd->policy_version = 6;
}

static void test_groups_to_shard(void) {
    GemConfig c;
    config_defaults(&c);
    CU_ASSERT_EQUAL_FATAL(config_override(&c, "train.model=runs/x/sft/final"), 0);
    CU_ASSERT_EQUAL_FATAL(config_override(&c, "score.entropy_source=sampling"), 0);
    Policy p;
    memset(&p, 0, sizeof p);
    p.tok = test_byte_tokenizer();
    Dataset ds = {0};
    ds.n = 3;
    ds.rec = calloc(3, sizeof(DataRecord));
    for (int r = 0; r < 3; r++)
        for (int i = 0; i <= r + 1; i++) intvec_push(&ds.rec[r].prompt_ids, 100 + 10 * r + i);

    enum { G = 2, K = 3 };
    const char *texts[G * K] = {
        "Final Answer: 5", "", "so 2+3=5\nFinal Answer: 5", "Final Answer: 6", "caf\xc3\xa9", "x"};
    GroupBatch gb = {0};
    gb.G = G, gb.k = K;
    gb.idx = malloc(sizeof(int) * G);
    gb.idx[0] = 2, gb.idx[1] = 0;
    gb.cands = calloc(G * K, sizeof(Candidate));
    gb.scores = calloc(G * K, sizeof(CandidateScore));
    gb.rank = calloc(G, sizeof(GroupRanking));
    for (int i = 0; i < G * K; i++) {
        fill_candidate(&gb.cands[i], texts[i], i == 5 ? FINISH_LENGTH : FINISH_EOS, i);
        gb.scores[i] = (CandidateScore){
            .score = 0.5f - 0.25f * (float)i, .fork = 1.0f + (float)i, .final = 0.125f * (float)i};
    }
    for (int g = 0; g < G; g++) {
        GroupRanking *rk = &gb.rank[g];
        group_ranking_alloc(rk, K);
        for (int i = 0; i < K; i++) {
            const int row = g * K + i;
            rk->valid[i] = gb.cands[row].n > 0;
            rk->rank[i] = rk->valid[i] ? (K - 1 - i) % K : -1;
            rk->reward[i] = 0.1f * (float)(row + 1);
            rk->advantage[i] = 0.2f * (float)row - 0.3f;
        }
        rk->n_valid = g == 0 ? 2 : 3;
        rk->skipped = g;
    }
    const long ids[G] = {70, 71};
    Shard s;
    CU_ASSERT_EQUAL_FATAL(groups_to_shard(&gb, &p, &c, &ds, ids, 36, 35, 1, &s), 0);
    CU_ASSERT_EQUAL(s.step, 36);
    CU_ASSERT_EQUAL(s.policy_version, 35);
    CU_ASSERT_EQUAL(s.generator_rank, 1);
    CU_ASSERT_EQUAL(s.seed, c.run.seed);
    CU_ASSERT_EQUAL(s.config_hash, config_shard_hash(&c));
    CU_ASSERT_EQUAL(s.tokenizer_hash, tokenizer_hash(p.tok));
    CU_ASSERT_STRING_EQUAL(s.model, "runs/x/sft/final");
    CU_ASSERT(s.created > 1.6e9);
    CU_ASSERT_EQUAL(s.k, K);
    CU_ASSERT_EQUAL_FATAL(s.n_groups, G);
    for (int g = 0; g < G; g++) {
        const IntVec *pr = &ds.rec[gb.idx[g]].prompt_ids;
        CU_ASSERT_EQUAL(s.group_id[g], ids[g]);
        CU_ASSERT_EQUAL(s.prompt_index[g], gb.idx[g]);
        CU_ASSERT_EQUAL_FATAL(s.prompt_offsets[g + 1] - s.prompt_offsets[g], pr->n);
        CU_ASSERT_EQUAL(
            memcmp(s.prompt_tokens + s.prompt_offsets[g], pr->v, sizeof(int) * (size_t)pr->n), 0);
        CU_ASSERT_EQUAL(s.skipped[g], g);
        CU_ASSERT_EQUAL(s.n_valid[g], gb.rank[g].n_valid);
        for (int i = 0; i < K; i++) {
            const int row = g * K + i;
            const Candidate *cd = &gb.cands[row];
            CU_ASSERT_EQUAL(s.group_index[row], g);
            CU_ASSERT_EQUAL(s.candidate_index[row], i);
            CU_ASSERT_EQUAL(s.rank_in_group[row], gb.rank[g].rank[i]);
            CU_ASSERT_EQUAL(s.score[row], gb.scores[row].score);
            CU_ASSERT_EQUAL(s.fork_entropy[row], gb.scores[row].fork);
            CU_ASSERT_EQUAL(s.final_entropy[row], gb.scores[row].final);
            CU_ASSERT_EQUAL(s.reward[row], gb.rank[g].reward[i]);
            CU_ASSERT_EQUAL(s.advantage[row], gb.rank[g].advantage[i]);
            CU_ASSERT_EQUAL(s.valid[row], gb.rank[g].valid[i]);
            CU_ASSERT_EQUAL(s.finish_reason[row], row == 5);
            const long t0 = s.token_offsets[row];
            CU_ASSERT_EQUAL_FATAL(s.token_offsets[row + 1] - t0, cd->n);
            const size_t n = (size_t)cd->n;
            CU_ASSERT_EQUAL(memcmp(s.token_id + t0, cd->ids, sizeof(int) * n), 0);
            CU_ASSERT_EQUAL(memcmp(s.logp_raw + t0, cd->logp_raw, sizeof(float) * n), 0);
            CU_ASSERT_EQUAL(memcmp(s.logp_sample + t0, cd->logp_sample, sizeof(float) * n), 0);
            CU_ASSERT_EQUAL(memcmp(s.logp_old + t0, cd->logp_old, sizeof(float) * n), 0);
            // score.entropy_source=sampling: the sampling entropies, what Eq. 1 read
            CU_ASSERT_EQUAL(memcmp(s.entropy + t0, cd->entropy_sample, sizeof(float) * n), 0);
            // the byte-level tokenizer decodes a candidate to its own bytes
            const long x0 = s.text_offsets[row], nx = s.text_offsets[row + 1] - x0;
            CU_ASSERT_EQUAL(nx, (long)strlen(texts[row]));
            CU_ASSERT(nx == (long)strlen(texts[row]) && memcmp(s.text + x0, texts[row], n) == 0);
        }
    }
    // and it survives the file
    char *dir = test_tmpdir();
    char *path = shard_path(dir, 36, 1);
    Shard back;
    CU_ASSERT_EQUAL_FATAL(shard_write(path, &s), 0);
    CU_ASSERT_EQUAL_FATAL(shard_read(path, &back, config_shard_hash(&c)), 0);
    CU_ASSERT(shards_equal(&s, &back));
    shard_free(&back);
    shard_free(&s);

    // raw entropies when Eq. 1 read those (and another configuration hash)
    const uint64_t sampling_hash = config_shard_hash(&c);
    CU_ASSERT_EQUAL_FATAL(config_override(&c, "score.entropy_source=raw"), 0);
    CU_ASSERT_EQUAL_FATAL(groups_to_shard(&gb, &p, &c, &ds, ids, 36, 35, 1, &s), 0);
    CU_ASSERT_EQUAL(memcmp(s.entropy, gb.cands[0].entropy_raw, sizeof(float) * 15), 0);
    CU_ASSERT_NOT_EQUAL(s.config_hash, sampling_hash);
    shard_free(&s);

    free(path), free(dir);
    groups_free(&gb);
    dataset_free(&ds);
    tokenizer_free(p.tok);
    config_free(&c);
}

void register_shard_tests(void) {
    static const TestCase tests[] = {
        {"round trip is bit-exact (empty candidates, 0 groups); no .tmp left", test_round_trip},
        {"a shard of another configuration is refused with both hashes", test_config_hash_mismatch},
        {"truncated, empty, random and missing files are one error line",
         test_truncated_and_garbage},
        {"damaged offsets, indices, ranks, ids, types, lengths, versions are refused",
         test_damaged_content},
        {"a write past the file-size limit leaves neither PATH nor PATH.tmp",
         test_write_failure_leaves_nothing},
        {"h5dump -H shows the datasets and readable attributes", test_h5dump_shows_layout},
        {"gemc inspect: provenance, ranked candidates, tokens, errors", test_inspect_command},
        {"groups_to_shard maps a GroupBatch one to one", test_groups_to_shard},
        {NULL, NULL},
    };
    add_suite("shard", tests);
}
