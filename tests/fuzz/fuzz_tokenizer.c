// libFuzzer harness: a tokenizer.json put into a model folder and loaded by tokenizer_load on
// the folder (as `--tokenizer DIR` and every stage do). What loads is then used: a fixed text
// with special-token look-alikes, digits and non-ASCII is encoded with and without the
// post-processor, and the ids decoded back, so that tables the loader built are also read.
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "text/tokenizer.h"

static const char TEXT[] = "Hello, world! 12345 <|im_start|>user\n caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5"
                           "\xbd  \t\n<|end_of_text|> Final Answer: -42.5<|eot_id|>";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    free(fuzz_write("tokenizer.json", data, size));
    Tokenizer *t = tokenizer_load(fuzz_dir());
    if (t) {
        IntVec ids = {0};
        StrBuf out = {0};
        for (int special = 0; special < 2; special++) {
            ids.n = 0;
            if (tokenizer_encode(t, TEXT, strlen(TEXT), special, &ids) == 0) {
                out.len = 0;
                tokenizer_decode(t, ids.v, ids.n, special, &out);
            }
        }
        int n = tokenizer_vocab_size(t);
        int probe[4] = {0, n / 2, n - 1, n};
        out.len = 0;
        tokenizer_decode(t, probe, 4, 0, &out); // n is out of range: an error, not a crash
        for (int i = 0; i < 3; i++) tokenizer_is_special(t, probe[i]);
        tokenizer_token_id(t, "<|im_end|>");
        intvec_free(&ids);
        free(out.p);
        tokenizer_free(t);
    }
    return 0;
}
