#include "base/json_file.h"

#include <stdlib.h>

#include "base/common.h"
#include "base/strbuf.h"

int json_write_file(const char *path, cJSON *root) {
    char *text = cJSON_Print(root);
    if (!text) gemc_fatal("out of memory");
    cJSON_Delete(root);
    // cJSON indents with tabs; Hugging Face's files use two spaces. A raw tab can only be
    // layout here, since cJSON escapes the tabs inside strings.
    StrBuf b = {0};
    for (const char *c = text; *c; c++) {
        if (*c != '\t')
            strbuf_put(&b, c, 1);
        else
            strbuf_puts(&b, c > text && c[-1] == ':' ? " " : "  ");
    }
    strbuf_puts(&b, "\n");
    cJSON_free(text);
    int rc = write_file_atomic(path, b.p, b.len);
    free(b.p);
    return rc;
}

cJSON *json_parse(const char *text, const char *path) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (root) return root;
    int line = 1, col = 1;
    const char *stop = end ? end : text;
    for (const char *p = text; *p && p < stop; p++) {
        if (*p == '\n')
            line++, col = 1;
        else
            col++;
    }
    gemc_set_error("%s: not valid JSON (syntax error at line %d, column %d)", path, line, col);
    return NULL;
}
