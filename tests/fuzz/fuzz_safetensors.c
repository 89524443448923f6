// libFuzzer harness: a safetensors file (8-byte header length, JSON header, data block) through
// st_open, the loader every model read goes through, then every small float tensor converted
// to fp32 so that the offsets st_open accepted are also read.
#include <stdlib.h>

#include "fuzz_util.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *path = fuzz_write("model.safetensors", data, size);
    StFile f;
    if (st_open(&f, path) == 0) {
        for (int i = 0; i < f.n; i++) {
            const StTensor *t = &f.tensors[i];
            if (st_find(&f, t->name) == NULL) abort(); // every listed tensor must be found
            if (t->numel > (1 << 16)) continue;
            if (t->dtype != DT_F32 && t->dtype != DT_BF16 && t->dtype != DT_F16) continue;
            float *out = malloc(sizeof(float) * (t->numel + 1));
            st_tensor_to_f32(t, out);
            free(out);
        }
        st_close(&f);
    }
    free(path);
    return 0;
}
