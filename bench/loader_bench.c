/* loader_bench.c - the paper's Table 2 on this machine: source images/s for
   2 views through the loader with the cumulative recipes crops, +blur,
   +gray, +sol, +jitter; `decode` decodes every record at full size and
   does nothing else (the ceiling); `u8` is the GPU-path output (crops
   resized to uint8, colour ops left to the GPU); `noblur` is jitter less
   the blur (FFCV-SSL's host recipe, which blurs on the GPU).
     [WARM=ring|epoch] loader_bench PACK RES THREADS RECIPE [IMAGES]
   Prints one JSON line. */
#define SSL_IMPLEMENTATION
#include "../ssl.h"

typedef struct { ssl_pack *p; ssl_buf *bufs; } dec_ctx;
static void decode_one(void *c, int64_t i, int w) {
    dec_ctx *d = c;
    int iw, ih, ic;
    if (ssl_pack_decode(d->p, (uint64_t)i, 3, &d->bufs[w], &iw, &ih, &ic) != 0) ssl__die(__FILE__, __LINE__, "%s", ssl_last_error());
}

int main(int argc, char **argv) {
    const char *usage = "usage: [WARM=ring|epoch] loader_bench PACK RES THREADS decode|crops|blur|gray|sol|jitter|noblur|u8 [IMAGES]\n";
    if (argc < 5 || argc > 6) { fputs(usage, stderr); return 2; }
    const char *path = argv[1], *recipe = argv[4];
    char *e2, *e3, *e5 = "";
    long res = strtol(argv[2], &e2, 10), threads = strtol(argv[3], &e3, 10);
    long long capl = argc > 5 ? strtoll(argv[5], &e5, 10) : 0;
    if (*e2 || res < 1 || res > 4096 || *e3 || threads < 1 || threads > 1024 || *e5 || capl < 0) {
        fprintf(stderr, "loader_bench: RES must be 1-4096, THREADS 1-1024 and IMAGES 0 or more (0: all)\n%s", usage);
        return 2;
    }
    int64_t cap = capl;
    ssl_set_verbosity(0);
    /* WARM=epoch: the untimed warm-up is a whole pass (every record read
       once, so every page of the pack's mapping is in place), as
       bench/ffcv_loader.py times FFCV's second pass; by default it only
       fills the batch ring */
    const char *wenv = getenv("WARM");
    int warm_all = wenv && !strcmp(wenv, "epoch");
    if (wenv && !warm_all && strcmp(wenv, "ring")) { fprintf(stderr, "WARM=%s: want ring or epoch\n", wenv); return 2; }
    double t0, dt;
    int64_t n;
    if (!strcmp(recipe, "decode")) {
        ssl_pack p;
        if (ssl_pack_open(path, &p) != 0) { fprintf(stderr, "%s\n", ssl_last_error()); return 1; }
        n = cap && cap < (int64_t)p.h.num_samples ? cap : (int64_t)p.h.num_samples;
        dec_ctx d = {&p, calloc(threads, sizeof(ssl_buf))};
        ssl_parallel_for(warm_all || n < 64 ? n : 64, threads, decode_one, &d); /* warm-up */
        t0 = ssl_now();
        ssl_parallel_for(n, threads, decode_one, &d);
        dt = ssl_now() - t0;
    } else {
        ssl_loader_config c;
        ssl_loader_config_init(&c, path, "simclr", res, getenv("BS") ? atoi(getenv("BS")) : 64);
        for (int v = 0; v < 2; v++) {
            ssl_view_recipe *r = &c.views[v];
            int stage = !strcmp(recipe, "crops") || !strcmp(recipe, "u8") ? 0 : !strcmp(recipe, "blur") ? 1
                        : !strcmp(recipe, "gray") ? 2 : !strcmp(recipe, "sol") ? 3
                        : !strcmp(recipe, "jitter") || !strcmp(recipe, "noblur") ? 4 : -1;
            if (stage < 0) { fprintf(stderr, "unknown recipe %s\n", recipe); return 2; }
            r->blur_p = stage >= 1 && strcmp(recipe, "noblur") ? 0.5f : 0;
            r->gray_p = stage >= 2 ? 0.2f : 0;
            r->solarize_p = stage >= 3 ? 0.2f : 0;
            r->solarize_threshold = 0.5f;
            r->jitter_p = stage >= 4 ? 0.8f : 0;
        }
        c.threads = threads;
        c.output_u8 = !strcmp(recipe, "u8");
        c.batches_ahead = 4;
        ssl_loader *l = ssl_loader_open(&c);
        if (!l) { fprintf(stderr, "%s\n", ssl_last_error()); return 1; }
        ssl_loader_start_epoch(l, 0, 0);
        const ssl_batch *b;
        /* warm-up: every slot of the ring filled once (first touch of its
           pages is a one-time cost, not the steady state), or with
           WARM=epoch the whole of epoch 0 */
        int64_t warm = 0;
        while ((warm_all || warm < (int64_t)(c.batches_ahead + 1) * c.batch_size) && (b = ssl_loader_next(l))) {
            warm += b->n;
            ssl_loader_release(l, b);
        }
        n = 0;
        t0 = ssl_now();
        for (int epoch = 1; cap == 0 ? epoch == 1 : n < cap; epoch++) {
            ssl_loader_start_epoch(l, epoch, 0);
            while ((b = ssl_loader_next(l))) {
                n += b->n;
                ssl_loader_release(l, b);
                if (cap && n >= cap) break;
            }
            if (b) { /* stopped mid-epoch: drain what is in flight */ }
        }
        dt = ssl_now() - t0;
        ssl_loader_close(l);
    }
    printf("{\"impl\":\"ssl.h\",\"pack\":\"%s\",\"recipe\":\"%s\",\"res\":%d,\"threads\":%d,\"images\":%lld,\"seconds\":%.3f,\"images_per_s\":%.1f}\n",
           path, recipe, res, threads, (long long)n, dt, n / dt);
    return 0;
}
