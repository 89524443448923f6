#include "base/common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char g_error[1024];

void gemc_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
    // one line, always
    for (char *p = g_error; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

const char *gemc_error(void) {
    return g_error;
}

_Noreturn void gemc_fatal(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "gemc: error: %s\n", buf);
    exit(1);
}

_Noreturn void gemc_fatal_last(void) {
    gemc_fatal("%s", g_error[0] ? g_error : "unknown error");
}

void *gemc_malloc_check(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) gemc_fatal("out of memory allocating %zu bytes at %s:%d", n, file, line);
    return p;
}

void *gemc_calloc_check(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) gemc_fatal("out of memory allocating %zu x %zu bytes at %s:%d", n, size, file, line);
    return p;
}

char *read_text_file(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        gemc_set_error("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = mallocCheck(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) gemc_fatal("out of memory reading %s", path);
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        gemc_set_error("%s: read error", path);
        return NULL;
    }
    buf[len] = 0;
    if (len_out) *len_out = len;
    return buf;
}

char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = mallocCheck(a + b + 2);
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

int fsync_parent_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy) gemc_fatal("out of memory");
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    int rc = 0;
    if (fd >= 0) {
        // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
        if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) rc = -1;
        close(fd);
    }
    free(copy);
    return rc;
}

static void atomic_free(AtomicFile *af) {
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    af->f = NULL;
}

int atomic_open(AtomicFile *af, const char *path) {
    af->path = strdup(path);
    size_t n = strlen(path) + 32;
    af->tmp_path = mallocCheck(n);
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        gemc_set_error("%s: cannot create: %s", af->tmp_path, strerror(errno));
        atomic_free(af);
        return -1;
    }
    return 0;
}

int atomic_write(AtomicFile *af, const void *data, size_t n) {
    if (n == 0) return 0;
    if (fwrite(data, 1, n, af->f) != n) {
        gemc_set_error("%s: write failed: %s (HINT: is the disk full?)", af->tmp_path,
                       strerror(errno));
        return -1;
    }
    return 0;
}

int atomic_commit(AtomicFile *af) {
    int ok = fflush(af->f) == 0 && fsync(fileno(af->f)) == 0;
    int saved = errno;
    if (fclose(af->f) != 0) ok = 0, saved = errno;
    af->f = NULL;
    if (!ok) {
        gemc_set_error("%s: write failed: %s (HINT: is the disk full?)", af->tmp_path,
                       strerror(saved));
        unlink(af->tmp_path);
        atomic_free(af);
        return -1;
    }
    if (rename(af->tmp_path, af->path) != 0) {
        gemc_set_error("%s: cannot rename into place: %s", af->path, strerror(errno));
        unlink(af->tmp_path);
        atomic_free(af);
        return -1;
    }
    int rc = fsync_parent_dir(af->path);
    if (rc != 0) gemc_set_error("%s: cannot fsync its directory", af->path);
    atomic_free(af);
    return rc;
}

void atomic_abort(AtomicFile *af) {
    if (af->f) fclose(af->f);
    if (af->tmp_path) unlink(af->tmp_path);
    atomic_free(af);
}

int write_file_atomic(const char *path, const void *data, size_t n) {
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    if (atomic_write(&af, data, n) != 0) {
        atomic_abort(&af);
        return -1;
    }
    return atomic_commit(&af);
}

static int make_one_dir(const char *dir) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return 0;
        gemc_set_error("%s: exists and is not a directory", dir);
        return -1;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        gemc_set_error("%s: cannot create directory: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

int ensure_dir(const char *dir) {
    // like mkdir -p: each missing parent first
    char *path = strdup(dir);
    if (!path) gemc_fatal("out of memory");
    int rc = 0;
    for (char *p = path + 1; *p && rc == 0; p++) {
        if (*p != '/') continue;
        *p = 0;
        rc = make_one_dir(path);
        *p = '/';
    }
    if (rc == 0) rc = make_one_dir(path);
    free(path);
    return rc;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double epoch_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t fnv1a64(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

int path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

void remove_dir_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            char *f = path_join(dir, e->d_name);
            unlink(f);
            free(f);
        }
    closedir(d);
    rmdir(dir);
}
