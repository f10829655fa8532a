/* read_bench.c - how fast records come out of a pack: all records in a
   random order, each copied out of the memory map (what a loader does), on
   a warm page cache. Prints one JSON line. */
#define SSL_IMPLEMENTATION
#include "../ssl.h"

typedef struct { ssl_pack *p; uint32_t *order; uint8_t **dst; _Atomic uint64_t bytes; } ctx_t;

static void copy_one(void *c, int64_t k, int w) {
    ctx_t *x = c;
    size_t n;
    const uint8_t *r = ssl_pack_record(x->p, x->order[k], &n);
    memcpy(x->dst[w], r, n);
    atomic_fetch_add(&x->bytes, n);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: read_bench PACK [threads] [repeats]\n"); return 2; }
    int threads = argc > 2 ? atoi(argv[2]) : 1, reps = argc > 3 ? atoi(argv[3]) : 3;
    ssl_pack p;
    if (ssl_pack_open(argv[1], &p) != 0) { fprintf(stderr, "%s\n", ssl_last_error()); return 1; }
    uint64_t n = p.h.num_samples;
    ctx_t c = {&p, malloc(n * 4), calloc(threads, sizeof(uint8_t *)), 0};
    size_t mx = 0;
    for (uint64_t i = 0; i < n; i++) if (p.index[i].size > mx) mx = p.index[i].size;
    for (int t = 0; t < threads; t++) c.dst[t] = malloc(mx);
    for (uint64_t i = 0; i < n; i++) c.order[i] = (uint32_t)i;
    ssl_rng r = ssl_rng_make(1, 0, 0, 0, 0);
    for (uint64_t i = n - 1; i > 0; i--) { uint32_t j = ssl_rng_below(&r, (uint32_t)(i + 1)), t = c.order[i]; c.order[i] = c.order[j]; c.order[j] = t; }
    ssl_parallel_for((int64_t)n, threads, copy_one, &c); /* warm the page cache */
    double best = 1e9;
    for (int k = 0; k < reps; k++) {
        atomic_store(&c.bytes, 0);
        double t0 = ssl_now();
        ssl_parallel_for((int64_t)n, threads, copy_one, &c);
        double dt = ssl_now() - t0;
        if (dt < best) best = dt;
    }
    printf("{\"pack\":\"%s\",\"threads\":%d,\"records\":%llu,\"bytes\":%llu,\"records_per_s\":%.0f,\"GB_per_s\":%.2f}\n", argv[1], threads,
           (unsigned long long)n, (unsigned long long)atomic_load(&c.bytes), n / best, atomic_load(&c.bytes) / best / 1e9);
    return 0;
}
