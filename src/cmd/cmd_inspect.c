// gemc inspect: a shard (shard.h) for a human reader: its provenance, then each group's prompt
// and candidates best first, with the numbers Eq. 1 and SEGA gave them and their decoded text.
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/cli.h"
#include "cmd/commands.h"
#include "base/common.h"
#include "model/sampler.h"
#include "run/shard.h"
#include "base/strbuf.h"
#include "text/tokenizer.h"
#include "base/utf8.h"

#define TEXT_LIMIT 200 // bytes of text shown per line without --full

// Appends s[0..n) as one quoted line: valid UTF-8 (invalid bytes become U+FFFD), control
// characters, quotes and backslashes escaped, cut after `limit` bytes (0: never) at a character
// boundary with a note of what was left out.
static void put_escaped(StrBuf *out, const char *s, size_t n, size_t limit) {
    StrBuf clean = {0};
    utf8_append_lossy(&clean, s ? s : "", s ? n : 0);
    size_t len = clean.len, cut = len;
    if (limit && len > limit) {
        cut = limit;
        while (cut > 0 && ((unsigned char)clean.p[cut] & 0xC0) == 0x80) cut--;
    }
    strbuf_puts(out, "\"");
    for (size_t i = 0; i < cut; i++) {
        unsigned char ch = (unsigned char)clean.p[i];
        char esc[8];
        if (ch == '\n')
            strbuf_puts(out, "\\n");
        else if (ch == '\t')
            strbuf_puts(out, "\\t");
        else if (ch == '\r')
            strbuf_puts(out, "\\r");
        else if (ch == '"' || ch == '\\') {
            esc[0] = '\\', esc[1] = (char)ch;
            strbuf_put(out, esc, 2);
        } else if (ch < 0x20 || ch == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", ch);
            strbuf_puts(out, esc);
        } else {
            strbuf_put(out, (const char *)&ch, 1);
        }
    }
    strbuf_puts(out, "\"");
    if (cut < len) {
        char more[64];
        snprintf(more, sizeof more, "... (+%zu bytes, --full shows all)", len - cut);
        strbuf_puts(out, more);
    }
    free(clean.p);
}

// The text of ids with the tokenizer (special tokens shown), or the ids themselves without one.
static void put_ids_text(StrBuf *out, const Tokenizer *tok, const int32_t *ids, long n,
                         size_t limit) {
    if (tok) {
        StrBuf bytes = {0};
        if (tokenizer_decode(tok, ids, (int)n, 0, &bytes) == 0) {
            put_escaped(out, bytes.p, bytes.len, limit);
            free(bytes.p);
            return;
        }
        free(bytes.p); // an id outside the vocabulary: fall back to the ids
    }
    StrBuf list = {0};
    char num[16];
    for (long i = 0; i < n; i++) {
        int k = snprintf(num, sizeof num, i ? ",%d" : "%d", ids[i]);
        strbuf_put(&list, num, (size_t)k);
    }
    strbuf_puts(out, "ids ");
    if (limit && list.len > limit) {
        strbuf_put(out, list.p, limit);
        char more[64];
        snprintf(more, sizeof more, "... (%ld ids, --full shows all)", n);
        strbuf_puts(out, more);
    } else {
        strbuf_put(out, list.p ? list.p : "", list.len);
    }
    free(list.p);
}

static void print_provenance(const char *path, const Shard *s) {
    char when[64] = "?";
    // (a NaN or huge time cannot become a time_t)
    time_t secs = s->created >= 0 && s->created < 1e12 ? (time_t)s->created : 0;
    struct tm tm;
    if (secs && gmtime_r(&secs, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    printf("shard           %s\n", path);
    printf("format_version  %d\n", s->format_version);
    printf("step            %ld\n", s->step);
    printf("policy_version  %ld\n", s->policy_version);
    printf("generator_rank  %d\n", s->generator_rank);
    printf("seed            %llu\n", (unsigned long long)s->seed);
    printf("config_hash     %016llx\n", (unsigned long long)s->config_hash);
    printf("tokenizer_hash  %016llx\n", (unsigned long long)s->tokenizer_hash);
    printf("model           %s\n", s->model);
    printf("created         %s (%.3f)\n", when, s->created);
    printf("k               %d\n", s->k);
    printf("reward_source   %s\n", s->reward_source[0] ? s->reward_source : "?");
    printf("groups          %d (rows 0..%d), %ld candidates, %ld tokens\n", s->n_groups,
           s->n_groups - 1, shard_n_cands(s), shard_n_tokens(s));
}

// Candidate rows of group g in the order a reader wants: valid ones by rank, then the invalid
// ones by index.
static void rank_order(const Shard *s, int g, int *order) {
    const int k = s->k;
    for (int i = 0; i < k; i++) order[i] = i;
    const int32_t *rank = s->rank_in_group + (long)g * k;
    for (int i = 1; i < k; i++) { // insertion sort: k is small
        int x = order[i], j = i;
        for (; j > 0; j--) {
            int y = order[j - 1];
            long kx = rank[x] < 0 ? k + x : rank[x], ky = rank[y] < 0 ? k + y : rank[y];
            if (ky <= kx) break;
            order[j] = y;
        }
        order[j] = x;
    }
}

static void print_group(const Shard *s, int g, const Tokenizer *tok, int tokens, int full) {
    const size_t limit = full ? 0 : TEXT_LIMIT;
    const int k = s->k;
    const long p0 = s->prompt_offsets[g], np = s->prompt_offsets[g + 1] - p0;
    StrBuf line = {0};
    printf("\ngroup %d: group_id %lld, prompt_index %d, skipped %u, n_valid %d\n", g,
           (long long)s->group_id[g], s->prompt_index[g], s->skipped[g], s->n_valid[g]);
    put_ids_text(&line, tok, s->prompt_tokens + p0, np, limit);
    printf("  prompt (%ld tokens): %s\n", np, line.p ? line.p : "");
    printf("  %4s %5s %9s %9s %9s %9s %9s %10s %7s %5s %6s %5s %7s  %s\n", "rank", "cand", "value",
           "score", "fork", "final", "reward", "advantage", "correct", "valid", "finish", "len",
           "version", "text");
    int *order = mallocCheck(sizeof(int) * (size_t)k);
    rank_order(s, g, order);
    for (int j = 0; j < k; j++) {
        const long c = (long)g * k + order[j];
        const long t0 = s->token_offsets[c], nt = s->token_offsets[c + 1] - t0;
        const long x0 = s->text_offsets[c], nx = s->text_offsets[c + 1] - x0;
        line.len = 0;
        put_escaped(&line, s->text + x0, (size_t)nx, limit);
        char rank[16], correct[16];
        if (s->rank_in_group[c] < 0)
            snprintf(rank, sizeof rank, "-");
        else
            snprintf(rank, sizeof rank, "%d", s->rank_in_group[c]);
        if (s->correct[c] < 0) // the prompt had no answer
            snprintf(correct, sizeof correct, "-");
        else
            snprintf(correct, sizeof correct, "%d", s->correct[c]);
        printf("  %4s %5d %9.4f %9.4f %9.4f %9.4f %9.4f %10.4f %7s %5u %6s %5ld %7ld  %s\n", rank,
               s->candidate_index[c], s->value[c], s->score[c], s->fork_entropy[c],
               s->final_entropy[c], s->reward[c], s->advantage[c], correct, s->valid[c],
               finish_reason_name(s->finish_reason[c] ? FINISH_LENGTH : FINISH_EOS), nt,
               s->policy_version, line.p ? line.p : "");
        if (!tokens) continue;
        printf("        %5s %8s %12s %12s %12s %10s%s\n", "pos", "id", "logp_sample", "logp_old",
               "logp_raw", "entropy", tok ? "  token" : "");
        for (long t = t0; t < t0 + nt; t++) {
            line.len = 0;
            if (tok) {
                StrBuf piece = {0};
                if (tokenizer_decode(tok, s->token_id + t, 1, 0, &piece) == 0) {
                    strbuf_puts(&line, "  ");
                    put_escaped(&line, piece.p, piece.len, 0);
                }
                free(piece.p);
            }
            printf("        %5ld %8d %12.6f %12.6f %12.6f %10.6f%s\n", t - t0, s->token_id[t],
                   s->logp_sample[t], s->logp_old[t], s->logp_raw[t], s->entropy[t],
                   line.p ? line.p : "");
        }
    }
    free(order);
    free(line.p);
}

int cmd_inspect(int argc, char **argv) {
    const char *model_dir = NULL;
    int group = INT_MIN, tokens = 0, full = 0;
    const CliOpt opts[] = {
        {"group", OPT_INT, &group, "I", "show only group row I (0-based)", 0},
        {"tokens", OPT_FLAG, &tokens, NULL,
         "add each candidate's tokens: id, logp_sample, logp_old, logp_raw, entropy", 0},
        {"model", OPT_STR, &model_dir, "DIR",
         "decode prompts with DIR's tokenizer (default: the shard's model attribute)", 0},
        {"full", OPT_FLAG, &full, NULL, "show whole texts (default: cut after 200 bytes)", 0},
        {0},
    };
    const CliCommand cmd = {
        "inspect",
        "gemc inspect PATH.h5 [--group I] [--tokens] [--model DIR] [--full]\n\n"
        "Prints an HDF5 shard that a generator rank wrote (RUN/shards/step_N.gen_R.h5): its\n"
        "provenance (step, policy version, seed, config and tokenizer hashes, model, reward\n"
        "source), then for each group its prompt and its candidates best first (invalid ones\n"
        "last): rank, candidate index, value (what the group was ranked by: S, or the reward\n"
        "source's reward), score S, fork and final entropies, reward, advantage, correct (1/0\n"
        "when the prompt had an answer, else -), valid flag, finish reason, length in tokens,\n"
        "policy version and decoded text. The shard is checked as a learner reads it: a\n"
        "damaged file is an error that says what is wrong.",
        "examples:\n"
        "  gemc inspect runs/demo/gem/shards/step_000003.gen_0.h5 --group 1\n"
        "  gemc inspect SHARD.h5 --group 0 --tokens --model runs/demo/sft/final\n"
        "h5dump -H SHARD.h5 (or h5ls -r) shows the raw layout; src/run/shard.h documents it.",
        opts,
        NULL,
    };

    const char *path = NULL;
    int n_pos = 0;
    int rc = cli_parse_with_paths(&cmd, argc, argv, "the shard file", &path, 1, &n_pos);
    if (rc) return rc > 0 ? 0 : cmd_fail();

    Shard s;
    if (shard_read(path, &s, 0) != 0) return cmd_fail();
    if (group != INT_MIN && (group < 0 || group >= s.n_groups)) {
        if (s.n_groups == 0)
            gemc_set_error("%s: --group %d is out of range (the shard holds no groups)", path,
                           group);
        else
            gemc_set_error("%s: --group %d is out of range (the shard holds groups 0..%d)", path,
                           group, s.n_groups - 1);
        shard_free(&s);
        return cmd_fail();
    }

    // the tokenizer only makes the prompts readable: without one, ids and a note
    const char *tok_src = model_dir ? model_dir : s.model;
    Tokenizer *tok = tok_src[0] ? tokenizer_load(tok_src) : NULL;
    print_provenance(path, &s);
    if (!tok)
        printf("note: no tokenizer (%s); prompts are shown as ids (HINT: --model DIR)\n",
               tok_src[0] ? gemc_error() : "the shard names no model");
    else if (tokenizer_hash(tok) != s.tokenizer_hash)
        printf("note: %s is not the tokenizer that wrote the shard (hash %016llx); decoded "
               "prompts may be wrong\n",
               tokenizer_path(tok), (unsigned long long)tokenizer_hash(tok));
    for (int g = 0; g < s.n_groups; g++)
        if (group == INT_MIN || g == group) print_group(&s, g, tok, tokens, full);
    if (tok) tokenizer_free(tok);
    shard_free(&s);
    return 0;
}
