// libFuzzer harness: a JSONL data file through dataset_load as both kinds a stage reads (pairs,
// in either the prompt/chosen/rejected or the medical question/answer_pos/answer_neg form, and
// prompts), with the default line limit and a small one, and every file that loads through
// dataset_tokenize with the embedded byte-level tokenizer and one of the chat templates.
#include <stdlib.h>

#include "text/chat_template.h"
#include "text/data.h"
#include "fuzz_util.h"

static Tokenizer *tok;

static Tokenizer *byte_tokenizer(void) {
    if (!tok) {
        char *dir = path_join(fuzz_dir(), "tok");
        if (ensure_dir(dir) != 0 || tokenizer_write_bytelevel(dir, 128) != 0 ||
            !(tok = tokenizer_load(dir)))
            abort();
        free(dir);
    }
    return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *path = fuzz_write("data.jsonl", data, size);
    for (int kind = 0; kind < 2; kind++) {
        for (int small = 0; small < 2; small++) {
            Dataset ds;
            if (dataset_load(&ds, path, kind ? DATA_PROMPTS : DATA_PAIRS, small ? 64 : 0) != 0)
                continue;
            // the input picks the template and the context, so all of them are reached
            const ChatTemplate tmpl = (ChatTemplate)(size % 3);
            const char *system = size % 2 ? "Be brief." : NULL;
            dataset_tokenize(&ds, byte_tokenizer(), tmpl, system, 257, 16 + (int)(size % 200));
            dataset_free(&ds);
        }
    }
    free(path);
    return 0;
}
