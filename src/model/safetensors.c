// safetensors reading (mmap + validation) and atomic writing.
#include "model/safetensors.h"
#include "base/strbuf.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"

// A header longer than this is not a real safetensors header (the Rust library caps it at
// 100 MB too); refusing it keeps a corrupt length from making us parse gigabytes.
#define ST_MAX_HEADER ((uint64_t)100000000)
// Largest integer a JSON number (a double) holds exactly.
#define ST_MAX_JSON_INT 9007199254740992.0

static uint64_t read_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

// Byte range of a tensor inside the data block, for the overlap check.
typedef struct {
    size_t begin, end;
    const char *name;
} Range;

static int cmp_range(const void *a, const void *b) {
    const Range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static void free_tensors(StTensor *t, int n) {
    if (!t) return;
    for (int i = 0; i < n; i++) free(t[i].name);
    free(t);
}

// "[2, 3]" for messages.
static void format_shape(char *buf, size_t n, const int64_t *shape, int ndim) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

// A JSON number that is a non-negative integer a double holds exactly.
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0) || d > ST_MAX_JSON_INT || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

// Validates one header entry into *t. `data_size` is the size of the data block.
static int parse_entry(const char *path, const cJSON *e, size_t data_size, const uint8_t *data,
                       StTensor *t) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) {
        gemc_set_error("%s: header entry '%s' is not an object", path, name);
        return -1;
    }
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!jd || !js || !jo) {
        gemc_set_error("%s: tensor '%s' has no '%s' in the header (HINT: not a valid safetensors "
                       "file)",
                       path, name,
                       !jd   ? "dtype"
                       : !js ? "shape"
                             : "data_offsets");
        return -1;
    }
    if (!cJSON_IsString(jd)) {
        gemc_set_error("%s: tensor '%s': 'dtype' must be a string", path, name);
        return -1;
    }
    t->dtype = dtype_from_name(jd->valuestring);
    if (t->dtype == DT_INVALID) {
        gemc_set_error("%s: tensor '%s' has unknown dtype '%s' (the safetensors format defines "
                       "F32, BF16, F16, F64, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, "
                       "F8_E4M3, F8_E5M2)",
                       path, name, jd->valuestring);
        return -1;
    }
    if (!cJSON_IsArray(js)) {
        gemc_set_error("%s: tensor '%s': 'shape' must be an array of integers", path, name);
        return -1;
    }
    int ndim = cJSON_GetArraySize(js);
    if (ndim > ST_MAX_DIMS) {
        gemc_set_error("%s: tensor '%s' has %d dimensions; at most %d are supported", path, name,
                       ndim, ST_MAX_DIMS);
        return -1;
    }
    t->ndim = ndim;
    size_t numel = 1;
    int overflow = 0;
    for (int i = 0; i < ndim; i++) {
        const cJSON *d = cJSON_GetArrayItem(js, i);
        uint64_t v;
        if (!json_uint(d, &v)) {
            gemc_set_error("%s: tensor '%s': shape entry %d is not a non-negative integer", path,
                           name, i);
            return -1;
        }
        t->shape[i] = (int64_t)v;
        if (v != 0 && numel > SIZE_MAX / v)
            overflow = 1;
        else
            numel *= (size_t)v;
    }
    size_t esize = dtype_size(t->dtype);
    if (!overflow && numel > SIZE_MAX / esize) overflow = 1;
    char shape_str[256];
    format_shape(shape_str, sizeof shape_str, t->shape, ndim);
    if (overflow) {
        gemc_set_error("%s: tensor '%s': shape %s is too large (element count overflows)", path,
                       name, shape_str);
        return -1;
    }
    t->numel = numel;
    t->nbytes = numel * esize;
    uint64_t begin, end;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 ||
        !json_uint(cJSON_GetArrayItem(jo, 0), &begin) ||
        !json_uint(cJSON_GetArrayItem(jo, 1), &end)) {
        gemc_set_error("%s: tensor '%s': 'data_offsets' must be two non-negative integers "
                       "[begin, end]",
                       path, name);
        return -1;
    }
    if (begin > end) {
        gemc_set_error("%s: tensor '%s': data_offsets [%llu, %llu] begin after their end", path,
                       name, (unsigned long long)begin, (unsigned long long)end);
        return -1;
    }
    if (end > data_size) {
        gemc_set_error("%s: tensor '%s': data_offsets [%llu, %llu] go beyond the end of the data "
                       "block (%zu bytes) (HINT: the file is truncated; download or copy it "
                       "again)",
                       path, name, (unsigned long long)begin, (unsigned long long)end, data_size);
        return -1;
    }
    if (end - begin != t->nbytes) {
        gemc_set_error("%s: tensor '%s': data_offsets [%llu, %llu] span %llu bytes but dtype %s "
                       "shape %s needs %zu bytes",
                       path, name, (unsigned long long)begin, (unsigned long long)end,
                       (unsigned long long)(end - begin), dtype_name(t->dtype), shape_str,
                       t->nbytes);
        return -1;
    }
    t->data = data + begin;
    return 0;
}

// Validates the parsed header and fills f->tensors (sorted by name).
static int parse_header(StFile *f, const cJSON *root, size_t data_off) {
    const char *path = f->path;
    if (!cJSON_IsObject(root)) {
        gemc_set_error("%s: header is not a JSON object (HINT: not a safetensors file)", path);
        return -1;
    }
    size_t data_size = f->size - data_off;
    const uint8_t *data = f->map + data_off;
    int count = 0;
    for (const cJSON *e = root->child; e; e = e->next) count++;
    StTensor *ts = callocCheck((size_t)count + 1, sizeof(StTensor));
    int n = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) {
                gemc_set_error("%s: '__metadata__' must be an object of strings", path);
                free_tensors(ts, n);
                return -1;
            }
            for (const cJSON *m = e->child; m; m = m->next) {
                if (!cJSON_IsString(m)) {
                    gemc_set_error("%s: '__metadata__' entry '%s' is not a string", path,
                                   m->string);
                    free_tensors(ts, n);
                    return -1;
                }
            }
            continue;
        }
        StTensor *t = &ts[n];
        if (parse_entry(path, e, data_size, data, t) != 0) {
            free_tensors(ts, n);
            return -1;
        }
        t->name = strdup(e->string);
        if (!t->name) gemc_fatal("out of memory");
        n++;
    }
    qsort(ts, (size_t)n, sizeof *ts, cmp_tensor_name);
    for (int i = 1; i < n; i++) {
        if (strcmp(ts[i - 1].name, ts[i].name) == 0) {
            gemc_set_error("%s: tensor '%s' appears twice in the header", path, ts[i].name);
            free_tensors(ts, n);
            return -1;
        }
    }
    // overlap check: sort the byte ranges; an empty range overlaps nothing
    Range *r = mallocCheck(sizeof(Range) * ((size_t)n + 1));
    int nr = 0;
    for (int i = 0; i < n; i++) {
        if (ts[i].nbytes == 0) continue;
        size_t b = (size_t)(ts[i].data - data);
        r[nr++] = (Range){b, b + ts[i].nbytes, ts[i].name};
    }
    qsort(r, (size_t)nr, sizeof *r, cmp_range);
    for (int i = 1; i < nr; i++) {
        if (r[i].begin < r[i - 1].end) {
            gemc_set_error("%s: tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap in the data "
                           "block (HINT: the file is corrupt)",
                           path, r[i - 1].name, r[i - 1].begin, r[i - 1].end, r[i].name, r[i].begin,
                           r[i].end);
            free(r);
            free_tensors(ts, n);
            return -1;
        }
    }
    free(r);
    f->tensors = ts;
    f->n = n;
    return 0;
}

int st_open(StFile *f, const char *path) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        gemc_set_error("%s: cannot open: %s%s", path, strerror(err),
                       err == ENOENT ? " (HINT: check the path; a Hugging Face model folder "
                                       "holds *.safetensors files)"
                                     : "");
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        gemc_set_error("%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        gemc_set_error("%s: not a regular file", path);
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        gemc_set_error("%s: truncated safetensors file: %zu bytes, but the header length alone "
                       "takes 8 (HINT: the download or copy is incomplete)",
                       path, size);
        close(fd);
        return -1;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_err = errno;
    close(fd); // the mapping keeps the file alive
    if (map == MAP_FAILED) {
        gemc_set_error("%s: cannot map: %s", path, strerror(map_err));
        return -1;
    }
    f->path = strdup(path);
    if (!f->path) gemc_fatal("out of memory");
    f->map = map;
    f->size = size;

    uint64_t hlen = read_le64(f->map);
    if (hlen > ST_MAX_HEADER) {
        gemc_set_error("%s: header length %llu is absurd (more than %llu bytes) (HINT: not a "
                       "safetensors file, or it is corrupt)",
                       path, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
        st_close(f);
        return -1;
    }
    if (hlen > size - 8) {
        gemc_set_error("%s: header length %llu goes beyond the end of the file (%zu bytes) "
                       "(HINT: the file is truncated, or not a safetensors file)",
                       path, (unsigned long long)hlen, size);
        st_close(f);
        return -1;
    }
    const char *hdr = (const char *)f->map + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (root) {
        // the rest of the header may only be padding
        for (const char *p = end; p < hdr + hlen; p++) {
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != 0) {
                cJSON_Delete(root);
                root = NULL;
                end = p;
                break;
            }
        }
    }
    if (!root) {
        long at = end ? (long)(end - hdr) : -1;
        if (at < 0) {
            const char *ep = cJSON_GetErrorPtr();
            at = (ep && ep >= hdr && ep <= hdr + hlen) ? (long)(ep - hdr) : 0;
        }
        gemc_set_error("%s: header is not valid JSON (error near byte %ld of %llu) (HINT: not a "
                       "safetensors file, or it is corrupt)",
                       path, at, (unsigned long long)hlen);
        st_close(f);
        return -1;
    }
    int rc = parse_header(f, root, 8 + (size_t)hlen);
    cJSON_Delete(root);
    if (rc != 0) {
        st_close(f);
        return -1;
    }
    return 0;
}

void st_close(StFile *f) {
    if (!f) return;
    free_tensors(f->tensors, f->n);
    if (f->map) munmap(f->map, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const StTensor *st_find(const StFile *f, const char *name) {
    if (!f->tensors || f->n == 0) return NULL;
    StTensor key;
    key.name = (char *)name;
    return bsearch(&key, f->tensors, (size_t)f->n, sizeof(StTensor), cmp_tensor_name);
}

// ---------------------------------------------------------------------------------------------
// Collections

static int collection_add(StCollection *c, const char *path) {
    c->files = realloc(c->files, sizeof(StFile) * (size_t)(c->nfiles + 1));
    if (!c->files) gemc_fatal("out of memory");
    if (st_open(&c->files[c->nfiles], path) != 0) return -1;
    c->nfiles++;
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Opens every weight file of an index.json once, and checks the index against the files.
static int open_indexed(StCollection *c, const char *dir, const char *index_path) {
    char *text = read_text_file(index_path, NULL);
    if (!text) return -1;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        gemc_set_error("%s: not valid JSON (error near byte %ld)", index_path,
                       end ? (long)(end - text) : 0L);
        free(text);
        return -1;
    }
    free(text);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        gemc_set_error("%s: no \"weight_map\" object (HINT: a checkpoint split over several files "
                       "has an index that maps "
                       "each tensor name to its file)",
                       index_path);
        cJSON_Delete(root);
        return -1;
    }
    int n = 0;
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0]) {
            gemc_set_error("%s: weight_map entry '%s' is not a file name", index_path, e->string);
            cJSON_Delete(root);
            return -1;
        }
        // a weight file is a file of the model folder: a path could make gemc read anywhere
        if (strchr(e->valuestring, '/') || strchr(e->valuestring, '\\') ||
            e->valuestring[0] == '.') {
            gemc_set_error(
                "%s: weight_map entry '%s' names '%s', which is not a file of the "
                "model folder (HINT: weight files are named by plain file names next to the "
                "index)",
                index_path, e->string, e->valuestring);
            cJSON_Delete(root);
            return -1;
        }
        n++;
    }
    if (n == 0) {
        gemc_set_error("%s: weight_map is empty", index_path);
        cJSON_Delete(root);
        return -1;
    }
    // distinct weight-file names, in sorted order
    const char **files_named = mallocCheck(sizeof(char *) * (size_t)n);
    int k = 0;
    for (const cJSON *e = wm->child; e; e = e->next) files_named[k++] = e->valuestring;
    qsort(files_named, (size_t)n, sizeof *files_named, cmp_str_ptr);
    int ns = 0;
    for (int i = 0; i < n; i++)
        if (ns == 0 || strcmp(files_named[ns - 1], files_named[i]) != 0)
            files_named[ns++] = files_named[i];
    int rc = 0;
    for (int i = 0; i < ns && rc == 0; i++) {
        char *p = path_join(dir, files_named[i]);
        if (collection_add(c, p) != 0) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", gemc_error());
            gemc_set_error("%s (weight file listed in %s)", msg, index_path);
            rc = -1;
        }
        free(p);
    }
    // every tensor the index lists must be in its file
    for (const cJSON *e = wm->child; e && rc == 0; e = e->next) {
        const char **hit =
            bsearch(&e->valuestring, files_named, (size_t)ns, sizeof *files_named, cmp_str_ptr);
        const StFile *sf = &c->files[hit - files_named];
        if (!st_find(sf, e->string)) {
            gemc_set_error("%s: tensor '%s' is listed in %s but that file does not hold it "
                           "(HINT: the index and the files_named come from different checkpoints)",
                           sf->path, e->string, index_path);
            rc = -1;
        }
    }
    free(files_named);
    cJSON_Delete(root);
    return rc;
}

int st_collection_open_dir(StCollection *c, const char *dir) {
    memset(c, 0, sizeof *c);
    char *index_path = path_join(dir, "model.safetensors.index.json");
    char *single_path = path_join(dir, "model.safetensors");
    int rc;
    if (path_exists(index_path)) {
        rc = open_indexed(c, dir, index_path);
    } else if (path_exists(single_path)) {
        rc = collection_add(c, single_path);
    } else {
        struct stat st;
        if (stat(dir, &st) != 0)
            gemc_set_error("%s: no such directory (HINT: pass a Hugging Face model folder)", dir);
        else
            gemc_set_error("%s: neither model.safetensors nor model.safetensors.index.json found "
                           "(HINT: the folder must be a Hugging Face model folder with "
                           "config.json and safetensors weights)",
                           dir);
        rc = -1;
    }
    if (rc == 0) {
        // a tensor in two files_named would be ambiguous
        for (int i = 1; i < c->nfiles && rc == 0; i++) {
            for (int t = 0; t < c->files[i].n && rc == 0; t++) {
                const char *name = c->files[i].tensors[t].name;
                for (int j = 0; j < i; j++) {
                    if (st_find(&c->files[j], name)) {
                        gemc_set_error("%s: tensor '%s' is in both %s and %s", dir, name,
                                       c->files[j].path, c->files[i].path);
                        rc = -1;
                        break;
                    }
                }
            }
        }
    }
    free(index_path);
    free(single_path);
    if (rc != 0) st_collection_close(c);
    return rc;
}

void st_collection_close(StCollection *c) {
    if (!c) return;
    for (int i = 0; i < c->nfiles; i++) st_close(&c->files[i]);
    free(c->files);
    memset(c, 0, sizeof *c);
}

const StTensor *st_collection_find(const StCollection *c, const char *name, const char **file_out) {
    for (int i = 0; i < c->nfiles; i++) {
        const StTensor *t = st_find(&c->files[i], name);
        if (t) {
            if (file_out) *file_out = c->files[i].path;
            return t;
        }
    }
    return NULL;
}

int st_tensor_to_f32(const StTensor *t, float *out) {
    if (!dtype_is_float_weight(t->dtype)) {
        gemc_set_error("tensor '%s' has dtype %s; only F32, BF16 and F16 can be read as floats",
                       t->name ? t->name : "?", dtype_name(t->dtype));
        return -1;
    }
    dtype_to_f32(t->dtype, t->data, out, t->numel);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Writing

int st_write(const char *path, const StWriteTensor *tensors, int n, DType dtype) {
    if (!dtype_is_float_weight(dtype)) {
        gemc_set_error("%s: cannot write dtype %s; only F32, BF16 and F16 are supported", path,
                       dtype_name(dtype));
        return -1;
    }
    if (n < 0) n = 0;
    size_t esize = dtype_size(dtype);
    size_t *numel = mallocCheck(sizeof(size_t) * ((size_t)n + 1));
    for (int i = 0; i < n; i++) {
        const StWriteTensor *t = &tensors[i];
        if (!t->name || t->ndim < 0 || t->ndim > ST_MAX_DIMS) {
            gemc_set_error("%s: tensor %d ('%s') has %d dimensions; 0 to %d are supported", path, i,
                           t->name ? t->name : "?", t->ndim, ST_MAX_DIMS);
            free(numel);
            return -1;
        }
        size_t ne = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 ||
                (t->shape[d] != 0 && ne > SIZE_MAX / esize / (size_t)t->shape[d])) {
                gemc_set_error("%s: tensor '%s' has an invalid shape", path, t->name);
                free(numel);
                return -1;
            }
            ne *= (size_t)t->shape[d];
        }
        if (ne > 0 && !t->data) {
            gemc_set_error("%s: tensor '%s' has no data", path, t->name);
            free(numel);
            return -1;
        }
        numel[i] = ne;
    }
    // duplicate names would make a file no reader accepts
    const char **names = mallocCheck(sizeof(char *) * ((size_t)n + 1));
    for (int i = 0; i < n; i++) names[i] = tensors[i].name;
    qsort(names, (size_t)n, sizeof *names, cmp_str_ptr);
    for (int i = 1; i < n; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) {
            gemc_set_error("%s: tensor name '%s' given twice", path, names[i]);
            free(names);
            free(numel);
            return -1;
        }
    }
    free(names);

    StrBuf h = {0};
    strbuf_puts(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const StWriteTensor *t = &tensors[i];
        char tmp[64];
        strbuf_puts(&h, ",");
        strbuf_json_string(&h, t->name);
        strbuf_puts(&h, ":{\"dtype\":\"");
        strbuf_puts(&h, dtype_name(dtype));
        strbuf_puts(&h, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(tmp, sizeof tmp, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            strbuf_puts(&h, tmp);
        }
        uint64_t nb = (uint64_t)numel[i] * esize;
        snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + nb));
        strbuf_puts(&h, tmp);
        off += nb;
    }
    strbuf_puts(&h, "}");
    while (h.len % 8 != 0) strbuf_put(&h, " ", 1);

    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    AtomicFile af;
    if (atomic_open(&af, path) != 0) {
        free(h.p);
        free(numel);
        return -1;
    }
    int rc = atomic_write(&af, lenbuf, 8);
    if (rc == 0) rc = atomic_write(&af, h.p, h.len);
    free(h.p);
    enum { CHUNK = 1 << 16 };
    uint8_t *cbuf = mallocCheck(CHUNK * esize);
    for (int i = 0; i < n && rc == 0; i++) {
        const float *src = tensors[i].data;
        for (size_t done = 0; done < numel[i] && rc == 0; done += CHUNK) {
            size_t k = numel[i] - done < CHUNK ? numel[i] - done : CHUNK;
            dtype_from_f32(dtype, src + done, cbuf, k);
            rc = atomic_write(&af, cbuf, k * esize);
        }
    }
    free(cbuf);
    free(numel);
    if (rc != 0) {
        atomic_abort(&af);
        return -1;
    }
    return atomic_commit(&af);
}
