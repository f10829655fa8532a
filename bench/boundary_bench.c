/* boundary_bench.c - does the step wait for data at epoch boundaries? A
   consumer that holds each batch for STEP_MS milliseconds (sleeping: a
   stand-in for the GPU step, which leaves the CPU to the loader) takes
   batches as ./train does on the GPU (the next batch taken before the step
   on this one, so two are held), for EPOCHS short epochs, with the next
   epoch queued (ssl_loader_queue_epoch) or not. Prints one JSON line: the
   share of the time spent waiting for the loader, all of it and at the
   epochs' first two batches, and images/s.
     boundary_bench PACK RES THREADS BS STEP_MS EPOCHS QUEUE(0|1) */
#define SSL_IMPLEMENTATION
#include "../ssl.h"

#include <sys/select.h>

static void sleep_ms(double ms) {
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(fmod(ms, 1000.0) * 1000)};
    select(0, NULL, NULL, NULL, &tv);
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: boundary_bench PACK RES THREADS BS STEP_MS EPOCHS QUEUE\n");
        return 2;
    }
    const char *path = argv[1];
    int res = atoi(argv[2]), threads = atoi(argv[3]), bs = atoi(argv[4]), epochs = atoi(argv[6]), queue = atoi(argv[7]);
    double step_ms = atof(argv[5]);
    ssl_set_verbosity(0);
    ssl_loader_config c;
    ssl_loader_config_init(&c, path, "simclr", res, bs);
    c.threads = threads;
    c.output_u8 = 1; /* the GPU path's output */
    ssl_loader *l = ssl_loader_open(&c);
    if (!l) { fprintf(stderr, "%s\n", ssl_last_error()); return 1; }
    /* warm-up epoch (first touch of the ring's pages), not timed */
    ssl_loader_start_epoch(l, 0, 0);
    if (queue) ssl_loader_queue_epoch(l, 1, 0);
    const ssl_batch *b;
    while ((b = ssl_loader_next(l))) ssl_loader_release(l, b);
    sleep_ms(1000); /* the ring refilled (queued or not, epoch 1 starts as any other) */
    double t0 = ssl_now(), w0 = ssl_loader_get_stats(l).wait_s, at_start = 0;
    int64_t images = 0;
    for (int e = 1; e <= epochs; e++) {
        ssl_loader_start_epoch(l, e, 0);
        if (queue && e < epochs) ssl_loader_queue_epoch(l, e + 1, 0);
        double w = ssl_loader_get_stats(l).wait_s;
        b = ssl_loader_next(l);
        const ssl_batch *nb = b ? ssl_loader_next(l) : NULL;
        at_start += ssl_loader_get_stats(l).wait_s - w;
        while (b) {
            sleep_ms(step_ms);
            images += b->n;
            ssl_loader_release(l, b);
            b = nb;
            nb = b ? ssl_loader_next(l) : NULL;
        }
    }
    double dt = ssl_now() - t0, waited = ssl_loader_get_stats(l).wait_s - w0;
    printf("{\"res\":%d,\"threads\":%d,\"bs\":%d,\"step_ms\":%.1f,\"epochs\":%d,\"batches_per_epoch\":%lld,\"queue\":%d,"
           "\"images_per_s\":%.1f,\"wait_share\":%.4f,\"wait_share_at_epoch_start\":%.4f}\n",
           res, threads, bs, step_ms, epochs, (long long)ssl_loader_batches_per_epoch(l), queue, images / dt, waited / dt,
           at_start / dt);
    ssl_loader_close(l);
    return 0;
}
