// Shared plumbing of the fuzz harnesses: gemc's loaders take paths, so each input is written to a
// file in a private per-process folder (under $TMPDIR or /tmp) that is removed at exit.
#ifndef GEMC_FUZZ_UTIL_H
#define GEMC_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir_buf[4096];

static void fuzz_dir_remove(void) {
    if (fuzz_dir_buf[0]) remove_dir_files(fuzz_dir_buf);
}

// The private folder, made on first use. A harness that cannot make it has nothing to test.
static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_buf[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(fuzz_dir_buf, sizeof fuzz_dir_buf, "%s/gemc-fuzz-XXXXXX",
                 tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(fuzz_dir_buf)) {
            perror(fuzz_dir_buf);
            abort();
        }
        atexit(fuzz_dir_remove);
    }
    return fuzz_dir_buf;
}

// Writes data[0..size) to NAME in the private folder and returns its malloc'd path.
static inline char *fuzz_write(const char *name, const uint8_t *data, size_t size) {
    char *path = path_join(fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

#endif
