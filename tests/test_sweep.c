/* Grids: ./train with comma lists runs every combination as a cell under
   out=, each an ordinary run; the same command again skips finished cells
   and resumes interrupted ones; a diverged cell is recorded and the grid
   goes on; Slurm array tasks each run their share; bad grids are refused
   before any cell starts. */
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>

#define run(out, ...) test_runf(out, NULL, __VA_ARGS__)

/* 256 Fashion-MNIST images, packed once per run. */
static const char *sweep_data(void) { return test_fmnist_pack("sweep256.ssl", 256); }

/* ResNet-18 at width 1/16, 16 px, 8 steps an epoch of 32 images */
#define TINY "width=0.0625 res=16 bs=32 projector=32-16 views=crop_gray threads=1 loader_threads=1 log_every=1 device=cpu"

static char *slurp(const char *dir, const char *name) {
    char path[SSL_STR + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *b;
    size_t n;
    if (ssl_read_file(path, &b, &n) != 0) return NULL;
    char *s = realloc(b, n + 1);
    s[n] = 0;
    return s;
}

static int count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static int exists(const char *dir, const char *name) {
    char path[SSL_STR + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0;
}

static int have_gnuplot(void) { return run(NULL, "command -v gnuplot") == 0; }

static const char *const CELLS[4] = {"lr=0.3_tau=0.1", "lr=0.3_tau=0.2", "lr=0.5_tau=0.1", "lr=0.5_tau=0.2"};

/* A 2x2 grid, stopped (SIGTERM to ./train) during its third cell, then the
   same command again: the first two are not rerun (their logs unchanged),
   the third resumes from its checkpoint, the fourth runs; then the table
   (four rows), the JSON lines, the heatmap, and the summary rebuilt alone. */
TEST(sweep_grid_stops_resumes_and_summarizes) {
    const char *t = test_bin("SSL_TRAIN", "./train"), *data = sweep_data(), *g = test_tmp("sweep_grid");
    char cmd[2 * SSL_STR], *out;
    snprintf(cmd, sizeof cmd, "%s simclr data=%s val=%s knn_train=128 " TINY " epochs=4 ckpt_every=1 lr=0.3,0.5 tau=0.1,0.2 out=%s",
             t, data, data, g);
    /* stopped once the third cell has logged a step */
    int rc = run(&out, "rm -rf %s; %s & pid=$!; for i in $(seq 600); do grep -qs '^{\"epoch\"' %s/%s/log.jsonl && break; sleep 0.05; done; "
                       "kill -TERM $pid; wait $pid",
                 g, cmd, g, CELLS[2]);
    CHECK(rc == 0, "the stopped grid exited %d: %s", rc, out);
    CHECK_CONTAINS(out, "terminated: the running cells checkpoint and stop");
    free(out);
    char *md = slurp(g, "sweep.md");
    CHECK(md && count_of(md, "| done |") == 2 && count_of(md, "| unfinished |") == 1 && count_of(md, "| pending |") == 1,
          "after the stop, want 2 done, 1 unfinished, 1 pending: %s", md ? md : "(no sweep.md)");
    free(md);
    CHECK(exists(g, "lr=0.5_tau=0.1/ckpt.sslt"), "the stopped cell left no checkpoint");
    CHECK(!exists(g, CELLS[3]), "the fourth cell started before the stop");
    char *log0 = slurp(g, "lr=0.3_tau=0.1/log.jsonl"), *log1 = slurp(g, "lr=0.3_tau=0.2/log.jsonl");
    /* again: the same command */
    rc = run(&out, "%s", cmd);
    CHECK(rc == 0, "the rerun exited %d: %s", rc, out);
    CHECK(count_of(out, "already; skipped") == 2, "want the two finished cells skipped: %s", out);
    CHECK_CONTAINS(out, "lr=0.5_tau=0.1: resumed from its checkpoint");
    CHECK_CONTAINS(out, "lr=0.5_tau=0.2: started");
    free(out);
    char *now0 = slurp(g, "lr=0.3_tau=0.1/log.jsonl"), *now1 = slurp(g, "lr=0.3_tau=0.2/log.jsonl");
    CHECK(log0 && now0 && !strcmp(log0, now0), "the first cell's log changed on the rerun");
    CHECK(log1 && now1 && !strcmp(log1, now1), "the second cell's log changed on the rerun");
    free(log0), free(log1), free(now0), free(now1);
    /* the third: a second start, from the step it stopped at (> 0) */
    char *l2 = slurp(g, "lr=0.5_tau=0.1/log.jsonl");
    const char *second = l2 ? strstr(l2 + 1, "{\"config\"") : NULL;
    double at = second ? atof(strstr(second, "\"resumed_at_step\": ") + 19) : -1;
    printf("    third cell resumed at step %.0f of 32\n", at);
    CHECK(at > 0 && at < 32, "the third cell resumed at step %.0f (want 1..31)", at);
    CHECK(count_of(l2, "{\"eval\"") == 1, "the third cell has %d eval records", count_of(l2, "{\"eval\""));
    free(l2);
    /* the summary */
    md = slurp(g, "sweep.md");
    CHECK(md && count_of(md, "| done |") == 4, "want four done rows: %s", md ? md : "(none)");
    for (int i = 0; i < 4 && md; i++) CHECK(strstr(md, CELLS[i]) != NULL, "sweep.md lacks %s", CELLS[i]);
    CHECK(md && strstr(md, "| lr | tau | kNN top-1 | probe top-1 | final loss | wall | status |"), "sweep.md header: %s", md);
    char *js = slurp(g, "sweep.jsonl");
    CHECK(js && count_of(js, "\n") == 4 && count_of(js, "\"status\": \"done\"") == 4 && count_of(js, "\"knn_top1\": 0.") == 4,
          "sweep.jsonl: %s", js ? js : "(none)");
    CHECK(js && strstr(js, "\"values\": {\"lr\": \"0.5\", \"tau\": \"0.1\"}"), "sweep.jsonl values: %s", js);
    if (have_gnuplot()) {
        CHECK(exists(g, "sweep.png") && exists(g, "sweep.gp"), "no heatmap with gnuplot installed");
        CHECK(md && strstr(md, "![kNN top-1 (%) on val](sweep.png)"), "sweep.md does not show the heatmap");
    } else printf("    gnuplot is not installed: no heatmap checked\n");
    /* rebuilt from the cells' logs alone */
    char path[SSL_STR + 32];
    snprintf(path, sizeof path, "%s/sweep.md", g);
    unlink(path);
    snprintf(path, sizeof path, "%s/sweep.jsonl", g);
    unlink(path);
    rc = run(&out, "%s summary out=%s", t, g);
    CHECK(rc == 0, "./train summary: exit %d: %s", rc, out);
    free(out);
    char *md2 = slurp(g, "sweep.md"), *js2 = slurp(g, "sweep.jsonl");
    CHECK(md2 && count_of(md2, "| done |") == 4, "the rebuilt sweep.md: %s", md2 ? md2 : "(none)");
    CHECK(js && js2 && !strcmp(js, js2), "the rebuilt sweep.jsonl differs:\n%s\n%s", js, js2 ? js2 : "(none)");
    free(md), free(js), free(md2), free(js2);
    /* without gnuplot: said, and the table and JSON lines still written */
    snprintf(path, sizeof path, "%s/sweep.md", g);
    unlink(path);
    rc = run(&out, "PATH=/nonexistent %s summary out=%s", t, g);
    CHECK(rc == 0 && strstr(out, "gnuplot not found"), "summary without gnuplot: exit %d: %s", rc, out);
    free(out);
    md = slurp(g, "sweep.md");
    CHECK(md && count_of(md, "| done |") == 4 && strstr(md, "No figure: gnuplot not found"), "sweep.md without gnuplot: %s",
          md ? md : "(none)");
    free(md);
}

/* An absurd learning rate: those cells stop on a non-finite loss, are
   marked diverged in the table, the JSON lines and the heatmap, and the
   grid completes (exit 0). */
TEST(sweep_diverged_cell_is_marked_and_the_grid_goes_on) {
    const char *t = test_bin("SSL_TRAIN", "./train"), *data = sweep_data(), *g = test_tmp("sweep_nan");
    char *out;
    int rc = run(&out, "rm -rf %s; %s vicreg data=%s val=%s knn_train=128 " TINY " epochs=1 warmup=0 lr=0.3,5000 sim=25,10 out=%s", g,
                 t, data, data, g);
    CHECK(rc == 0, "a grid with diverged cells exited %d: %s", rc, out);
    CHECK(count_of(out, "diverged (non-finite loss at step") == 2, "want two diverged cells: %s", out);
    free(out);
    char *md = slurp(g, "sweep.md"), *js = slurp(g, "sweep.jsonl");
    CHECK(md && count_of(md, "| done |") == 2 && count_of(md, "| diverged (non-finite loss at step") == 2, "sweep.md: %s", md ? md : "");
    CHECK(md && strstr(md, "| 5000 | 25 | - | - |"), "a diverged row shows a kNN top-1: %s", md ? md : "");
    CHECK(js && count_of(js, "\"status\": \"diverged\", \"knn_top1\": null") == 2, "sweep.jsonl: %s", js ? js : "");
    if (have_gnuplot()) {
        char *gp = slurp(g, "sweep.gp");
        /* the heatmap's diverged cells: lr=5000 is row 1, both columns */
        CHECK(gp && strstr(gp, "$bad << EOD\n0 1\n1 1\nEOD") && strstr(gp, "\"diverged\""), "heatmap script: %s", gp ? gp : "");
        CHECK(exists(g, "sweep.png"), "no heatmap");
        free(gp);
    }
    free(md), free(js);
}

/* SLURM_ARRAY_TASK_ID=1 of 2 runs cells 1 and 3 exactly; task 0 the rest;
   then the summary has the whole table. An mpirun rank (PMI_RANK) too. */
TEST(sweep_slurm_array_tasks_share_the_cells) {
    const char *t = test_bin("SSL_TRAIN", "./train"), *data = sweep_data(), *g = test_tmp("sweep_slurm");
    char cmd[2 * SSL_STR], *out;
    snprintf(cmd, sizeof cmd, "%s simclr data=%s " TINY " epochs=1 lr=0.3,0.5 tau=0.1,0.2 out=%s", t, data, g);
    int rc = run(&out, "rm -rf %s; SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=2 %s", g, cmd);
    CHECK(rc == 0, "task 1: exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "Slurm array task 1 of 2: 2 to run here");
    free(out);
    CHECK(!exists(g, CELLS[0]) && exists(g, CELLS[1]) && !exists(g, CELLS[2]) && exists(g, CELLS[3]),
          "task 1 of 2 ran other cells than 2 and 4");
    char *md = slurp(g, "sweep.md");
    CHECK(md && count_of(md, "| done |") == 2 && count_of(md, "| pending |") == 2, "after task 1: %s", md ? md : "");
    free(md);
    rc = run(&out, "PMI_RANK=0 PMI_SIZE=2 %s parallel=2", cmd);
    CHECK(rc == 0, "rank 0: exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "mpirun rank 0 of 2: 2 to run here, 2 at a time");
    CHECK(!strstr(out, "skipped"), "rank 0 looked at the other rank's cells: %s", out);
    free(out);
    rc = run(&out, "%s summary out=%s", t, g);
    CHECK(rc == 0, "summary: exit %d: %s", rc, out);
    free(out);
    md = slurp(g, "sweep.md");
    CHECK(md && count_of(md, "| done |") == 4, "the whole table: %s", md ? md : "");
    free(md);
    rc = run(&out, "SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_COUNT=2 %s", cmd);
    CHECK(rc != 0 && strstr(out, "SLURM_ARRAY_TASK_ID=2"), "task 2 of 2 accepted: %s", out);
    free(out);
}

/* Three axes: one heatmap per pair, the third axis at its best (epochs=0:
   each cell evaluates its initial network). */
TEST(sweep_three_axes_draw_a_heatmap_per_pair) {
    const char *t = test_bin("SSL_TRAIN", "./train"), *data = sweep_data(), *g = test_tmp("sweep_axes");
    char *out;
    int rc = run(&out, "rm -rf %s; %s simclr data=%s val=%s knn_train=128 " TINY " epochs=0 width=0.0625,0.125 tau=0.1,0.2 "
                       "lr=0.1,0.2 parallel=2 out=%s",
                 g, t, data, data, g);
    CHECK(rc == 0, "exit %d: %s", rc, out);
    free(out);
    char *md = slurp(g, "sweep.md");
    CHECK(md && count_of(md, "| done |") == 8, "want 8 done rows: %s", md ? md : "(none)");
    if (have_gnuplot()) {
        CHECK(exists(g, "sweep_width_tau.png") && exists(g, "sweep_width_lr.png") && exists(g, "sweep_tau_lr.png") &&
                  !exists(g, "sweep.png"),
              "want one heatmap per pair of width, tau, lr");
        char *gp = slurp(g, "sweep_width_tau.gp");
        CHECK(gp && strstr(gp, "the other options at their best"), "heatmap script: %s", gp ? gp : "(none)");
        /* values and keys drawn as written: no gnuplot subscripts */
        CHECK(gp && strstr(gp, "set xtics (\"0.1\" 0, \"0.2\" 1) noenhanced") && strstr(gp, "set ylabel \"width\" noenhanced"),
              "heatmap tics and labels not plain text: %s", gp ? gp : "(none)");
        free(gp);
    }
    free(md);
}

/* Several GPUs: each running cell gets one, CUDA_VISIBLE_DEVICES cut to
   its id (here the ids listed; device=auto, so on a machine without a GPU
   the cells still run, on the CPU); with mpirun, local rank 1 starts its
   slots after local rank 0's. */
TEST(sweep_cells_spread_one_per_gpu) {
    const char *t = test_bin("SSL_TRAIN", "./train"), *data = sweep_data(), *g = test_tmp("sweep_gpus");
    const char *opts = "width=0.0625 res=16 bs=32 projector=32-16 views=crop_gray log_every=1 device=auto epochs=0 knn_train=64";
    char *out;
    int rc = run(&out, "rm -rf %s; CUDA_VISIBLE_DEVICES=3,5,7 %s simclr data=%s val=%s %s lr=0.1,0.2 parallel=2 out=%s", g, t, data,
                 data, opts, g);
    CHECK(rc == 0, "exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "one GPU each of 3");
    CHECK_CONTAINS(out, "lr=0.1: started on GPU 3");
    CHECK_CONTAINS(out, "lr=0.2: started on GPU 5");
    free(out);
    rc = run(&out, "rm -rf %s; CUDA_VISIBLE_DEVICES=3,5,7 OMPI_COMM_WORLD_LOCAL_RANK=1 %s simclr data=%s val=%s %s lr=0.1,0.2 "
                   "parallel=2 out=%s",
             g, t, data, data, opts, g);
    CHECK(rc == 0, "exit %d: %s", rc, out);
    CHECK_CONTAINS(out, "lr=0.1: started on GPU 7"); /* (1 * 2 + 0) mod 3 */
    CHECK_CONTAINS(out, "lr=0.2: started on GPU 3"); /* (1 * 2 + 1) mod 3 */
    free(out);
    rc = run(&out, "rm -rf %s; CUDA_VISIBLE_DEVICES=3,5,7 %s simclr data=%s val=%s %s lr=0.1,0.2 device=cpu out=%s", g, t, data,
             data, opts, g);
    CHECK(rc == 0 && !strstr(out, "on GPU"), "device=cpu cells were given GPUs: exit %d: %s", rc, out);
    free(out);
}

/* Refused before any cell starts, naming the option: an empty value, a
   list for an option that takes one value, a bad value in one cell, an
   unknown key, and more than 256 cells without force=1. */
TEST(sweep_bad_grids_are_refused) {
    const char *t = test_bin("SSL_TRAIN", "./train"), *g = test_tmp("sweep_bad");
    static const struct { const char *args, *want; } bad[] = {
        {"lr=0.1,,0.3", "an empty value in the list of 'lr'"},
        {"lr=0.1,", "an empty value in the list of 'lr'"},
        {"lr=0.1,0.2 out=a,b", "'out' takes one value"},
        {"lr=0.1,0.2 data=a.ssl,b.ssl", "'data' takes one value"},
        {"resume=a,b", "'resume' takes one value"},
        {"lr=0.1,0.2 resume=runs/a", "a grid resumes its cells itself"},
        {"lr=0.1,0.2 tau=0.1,-1", "bad value for 'tau'"},
        {"lrr=0.1,0.2", "did you mean 'lr'?"},
        {"lr=0.1,0.2,0.1", "'0.1' is listed twice for 'lr'"},
        {"lr=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17 tau=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", "272 cells"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out;
        int rc = run(&out, "rm -rf %s; %s simclr data=missing.ssl %s out=%s", g, t, bad[i].args, g);
        CHECK(rc != 0 && strstr(out, bad[i].want), "%s: exit %d, want '%s': %s", bad[i].args, rc, bad[i].want, out);
        struct stat st;
        CHECK(stat(g, &st) != 0, "%s: the refused grid made %s", bad[i].args, g);
        free(out);
    }
    char *out;
    run(&out, "%s simclr lr=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17 tau=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 out=%s", t, g);
    CHECK_CONTAINS(out, "force=1");
    free(out);
}
