// Shared plumbing: error reporting, checked allocation, atomic file writes.
//
// Library code never exits on bad input. It records one error line with
// gemc_set_error() and returns -1; the command line prints that line and exits
// with status 1. Tests read the same line with gemc_error().
#ifndef GEMC_COMMON_H
#define GEMC_COMMON_H

// C++ sources (src/model/cuda/) include this header too
#if defined(__cplusplus) && !defined(_Noreturn)
#define _Noreturn [[noreturn]]
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define GEMC_VERSION "0.1.0"

// Records the current error (one line, no trailing newline). Later calls overwrite it.
void gemc_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// The last recorded error line ("" when none).
const char *gemc_error(void);
// Prints "gemc: error: MSG" to stderr and exits with status 1.
_Noreturn void gemc_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prints the recorded error as gemc_fatal does and exits with status 1.
_Noreturn void gemc_fatal_last(void);

// Allocation that cannot fail silently: out of memory is fatal, with the file and line.
void *gemc_malloc_check(size_t n, const char *file, int line);
void *gemc_calloc_check(size_t n, size_t size, const char *file, int line);
#define mallocCheck(n)    gemc_malloc_check((n), __FILE__, __LINE__)
#define callocCheck(n, s) gemc_calloc_check((n), (s), __FILE__, __LINE__)

// Reads a whole file into a NUL-terminated buffer. Returns NULL and sets the error on failure.
char *read_text_file(const char *path, size_t *len_out);

// Atomic output: data goes to "PATH.tmp.PID", is fsynced, renamed over PATH, and the
// directory is fsynced. A reader never sees a half-written PATH; on failure the
// temporary file is removed.
typedef struct {
    FILE *f;
    char *path;     // final name
    char *tmp_path; // where the bytes go until commit
} AtomicFile;
int atomic_open(AtomicFile *af, const char *path);
int atomic_write(AtomicFile *af, const void *data, size_t n);
int atomic_commit(AtomicFile *af); // fsync + rename + fsync(dir); frees af
void atomic_abort(AtomicFile *af); // removes the temporary file; frees af
int write_file_atomic(const char *path, const void *data, size_t n);
// fsync of the directory holding path, so a rename into it survives a crash. Returns 0 or -1.
int fsync_parent_dir(const char *path);
// Creates DIR and its missing parents (mkdir -p). Returns -1 and sets the error when it cannot.
int ensure_dir(const char *dir);

// 1 when path names an existing file or directory.
int path_exists(const char *path);
// rm -r of a folder gemc wrote that holds plain files only (a checkpoint, its temporary copy).
void remove_dir_files(const char *dir);

// "DIR/NAME" in a malloc'd buffer.
char *path_join(const char *dir, const char *name);

// Wall-clock seconds (monotonic).
double now_seconds(void);
// Seconds since the Unix epoch (timestamps in logs; TensorBoard's wall_time).
double epoch_seconds(void);
// FNV-1a 64 of n bytes (hash tables, provenance hashes).
uint64_t fnv1a64(const void *data, size_t n);

#endif
