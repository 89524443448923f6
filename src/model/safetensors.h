// safetensors files: memory-mapped reading with full validation, and atomic writing.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data block; offsets are relative to the data block.
#ifndef GEMC_SAFETENSORS_H
#define GEMC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "model/dtype.h"

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    DType dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    const uint8_t *data; // points into the mapping
    size_t nbytes;
} StTensor;

typedef struct {
    char *path;
    uint8_t *map; // whole file, read-only mapping
    size_t size;
    StTensor *tensors;
    int n;
} StFile;

// Maps and validates one file: size, header length, JSON, dtypes, shapes, offsets inside the
// data block and not overlapping. Returns 0, or -1 with one error line naming the file.
int st_open(StFile *f, const char *path);
void st_close(StFile *f);
const StTensor *st_find(const StFile *f, const char *name);

// All tensors of a model directory: DIR/model.safetensors, or the shards listed by
// DIR/model.safetensors.index.json ("weight_map": name -> file).
typedef struct {
    StFile *files;
    int nfiles;
} StCollection;

int st_collection_open_dir(StCollection *c, const char *dir);
void st_collection_close(StCollection *c);
// The tensor called `name`, or NULL. *file_out (optional) gets the path of its file.
const StTensor *st_collection_find(const StCollection *c, const char *name, const char **file_out);

// Converts a float tensor (F32, BF16, F16) to fp32. Returns -1 for another dtype.
int st_tensor_to_f32(const StTensor *t, float *out);

// One tensor to write: fp32 values, converted to the file's dtype on the way out.
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;
} StWriteTensor;

// Writes the tensors (in the order given) as one safetensors file in `dtype` (F32, BF16 or
// F16), with __metadata__ {"format": "pt"}, atomically (temp file, fsync, rename).
int st_write(const char *path, const StWriteTensor *tensors, int n, DType dtype);

#endif
