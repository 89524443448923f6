// libFuzzer harness: safetensors weights as a model folder holds them, through
// st_collection_open_dir (what every model load calls) and so st_open's validation of the
// header (length, JSON, dtypes, shapes, offsets). Two kinds of input:
//   a safetensors file (8-byte header length, JSON header, data): DIR/model.safetensors;
//   an input that starts with '{': DIR/model.safetensors.index.json next to two fixed valid
//   shards (model-00001-of-00002.safetensors with "a" and "b", -00002- with "c"), so the
//   index's weight_map is checked against real files.
// What opens is then read: every listed tensor found by name, every small float tensor
// converted to fp32, so the offsets that were accepted are also used.
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "model/safetensors.h"

static char *single_dir, *sharded_dir;

static void make_dirs(void) {
    single_dir = path_join(fuzz_dir(), "single");
    sharded_dir = path_join(fuzz_dir(), "sharded");
    if (ensure_dir(single_dir) || ensure_dir(sharded_dir)) abort();
    static const float v[6] = {1, -2, 0.5f, 3, 4, 5};
    const StWriteTensor first[2] = {{"a", 2, {2, 2}, v}, {"b", 1, {2}, v}};
    const StWriteTensor second[1] = {{"c", 1, {3}, v}};
    char *p1 = path_join(sharded_dir, "model-00001-of-00002.safetensors");
    char *p2 = path_join(sharded_dir, "model-00002-of-00002.safetensors");
    if (st_write(p1, first, 2, DT_BF16) || st_write(p2, second, 1, DT_F32)) abort();
    free(p1);
    free(p2);
}

static void read_all(const StCollection *c) {
    for (int f = 0; f < c->nfiles; f++) {
        for (int i = 0; i < c->files[f].n; i++) {
            const StTensor *t = &c->files[f].tensors[i];
            const char *file = NULL;
            if (!st_collection_find(c, t->name, &file) || !file) abort();
            if (t->numel > (1 << 16)) continue;
            if (t->dtype != DT_F32 && t->dtype != DT_BF16 && t->dtype != DT_F16) continue;
            float *out = malloc(sizeof(float) * (t->numel + 1));
            st_tensor_to_f32(t, out);
            free(out);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!single_dir) make_dirs();
    const int index = size > 0 && data[0] == '{';
    const char *dir = index ? sharded_dir : single_dir;
    char *name = path_join(index ? "sharded" : "single",
                           index ? "model.safetensors.index.json" : "model.safetensors");
    free(fuzz_write(name, data, size));
    free(name);
    StCollection c;
    if (st_collection_open_dir(&c, dir) == 0) {
        read_all(&c);
        st_collection_close(&c);
    }
    return 0;
}
