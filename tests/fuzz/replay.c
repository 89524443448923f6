// Replays inputs through a harness without libFuzzer: every file named on the command line, and
// every file in every folder named (sorted, so runs are repeatable), goes to
// LLVMFuzzerTestOneInput once. This lets the harnesses build with gcc and with SAN=1, and makes
// the seed corpus and the regressions a test (`make fuzz-replay`). A crash is the failure; an
// input that cannot be read is one too.
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            buf = realloc(buf, cap);
            if (!buf) abort();
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        fprintf(stderr, "%s: read error\n", path);
        free(buf);
        return -1;
    }
    // an exact-size copy, so that ASan sees a read past the input's end as libFuzzer would
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) abort();
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// Returns the number of inputs run, or -1.
static long run_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) return run_file(path) == 0 ? 1 : -1;
    DIR *dir = opendir(path);
    if (!dir) {
        perror(path);
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (e->d_name[0] == '.') continue; // ., .. and hidden files (.gitkeep)
        names = realloc(names, sizeof *names * (n + 1));
        if (!names) abort();
        names[n++] = path_join(path, e->d_name);
    }
    closedir(dir);
    if (n) qsort(names, n, sizeof *names, by_name);
    long total = 0;
    for (size_t i = 0; i < n; i++) {
        long r = total < 0 ? -1 : run_path(names[i]);
        total = r < 0 ? -1 : total + r;
        free(names[i]);
    }
    free(names);
    return total;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    long total = 0;
    for (int i = 1; i < argc; i++) {
        long r = run_path(argv[i]);
        if (r < 0) return 1;
        total += r;
    }
    printf("%s: %ld inputs replayed\n", argv[0], total);
    return 0;
}
