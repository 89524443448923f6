// Tokenizer files travel with the model folder, as in a Hugging Face checkpoint.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "text/tokenizer.h"

static const char *const COMPANIONS[] = {"tokenizer_config.json", "special_tokens_map.json"};

static int copy_file(const char *from, const char *to) {
    size_t len;
    char *data = read_text_file(from, &len);
    if (!data) return -1;
    int rc = write_file_atomic(to, data, len);
    free(data);
    return rc;
}

int tokenizer_copy_files(const char *src, const char *dst_dir, int model_vocab_size) {
    Tokenizer *t = tokenizer_load(src);
    if (!t) return -1;
    int n = tokenizer_vocab_size(t);
    char *file = strdup(tokenizer_path(t));
    tokenizer_free(t);
    if (n > model_vocab_size) {
        gemc_set_error("%s: the tokenizer has ids up to %d but the model's vocab_size is %d "
                       "(HINT: use the model's own tokenizer, or a config with vocab_size >= %d)",
                       file, n - 1, model_vocab_size, n);
        free(file);
        return -1;
    }
    char *slash = strrchr(file, '/');
    char *dir = slash ? strndup(file, (size_t)(slash - file)) : strdup(".");
    char *dst = path_join(dst_dir, "tokenizer.json");
    int rc = ensure_dir(dst_dir) ? -1 : copy_file(file, dst);
    free(dst);
    for (size_t i = 0; !rc && i < sizeof COMPANIONS / sizeof COMPANIONS[0]; i++) {
        char *from = path_join(dir, COMPANIONS[i]);
        if (access(from, F_OK) == 0) {
            char *to = path_join(dst_dir, COMPANIONS[i]);
            rc = copy_file(from, to);
            free(to);
        }
        free(from);
    }
    free(dir);
    free(file);
    return rc;
}
