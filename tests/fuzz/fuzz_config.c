/* A config file (train.c/probe.c's config=FILE) through
   ssl_config_load_file, against a table with an option of every kind;
   every value it sets must be in its range, and printing the table must
   work after it. */
#include "fuzz.h"

/* one option of each kind the table knows */
typedef struct {
    char optimizer[SSL_STR];
    int64_t epochs;
    char out[SSL_STR];
    double wd;
    int amp;
} fuzz_cfg;
static const ssl_opt opts[] = {
    SSL_OPT_C(fuzz_cfg, optimizer, "lars", "sgd|lars|adamw", "optimizer"),
    SSL_OPT_I(fuzz_cfg, epochs, "100", 1, 10000, "epochs"),
    SSL_OPT_S(fuzz_cfg, out, "run", "output folder"),
    SSL_OPT_F(fuzz_cfg, wd, "1e-6", 0, 1, "weight decay"),
    SSL_OPT_B(fuzz_cfg, amp, "1", "mixed precision"),
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path;
    if (fuzz_file(data, size, &path) != 0) return 0;
    fuzz_cfg c;
    ssl_config_defaults(opts, 5, &c);
    (void)ssl_config_load_file(opts, 5, &c, path);
    if (c.epochs < 1 || c.epochs > 10000 || !(c.wd >= 0 && c.wd <= 1) || (c.amp != 0 && c.amp != 1)) __builtin_trap();
    if (strlen(c.out) >= SSL_STR) __builtin_trap();
    if (strcmp(c.optimizer, "sgd") && strcmp(c.optimizer, "lars") && strcmp(c.optimizer, "adamw")) __builtin_trap();
    static FILE *null;
    if (!null) null = fopen("/dev/null", "w");
    if (null) ssl_config_print(null, opts, 5, &c);
    return 0;
}
