#include "json_file.h"

#include <stdlib.h>

#include "common.h"
#include "strbuf.h"

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
