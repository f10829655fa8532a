/* A safetensors file (what ./probe imports) through ssl_safetensors_read:
   its JSON header, dtypes, shapes and data offsets. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path;
    ssl_tfile f;
    if (fuzz_file(data, size, &path) != 0 || ssl_safetensors_read(path, &f) != 0) return 0;
    fuzz_check_tensors(&f);
    ssl_tfile_free(&f);
    return 0;
}
