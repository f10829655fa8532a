/* pack.c - ./pack: turn an image dataset into one .ssl pack file.

     ./pack SRC OUT [key=value ...]     pack a dataset
     ./pack info FILE                   header, classes, counts
     ./pack verify FILE [threads=N]     check every CRC, decode every record
     ./pack help                        the options

   Sources: an ImageFolder tree (SRC/<class>/<image>), a list file
   (path<TAB>label lines), CIFAR-10/100 binary batches (comma-separated .bin
   files), or IDX files as MNIST and Fashion-MNIST ship them (gzip'd or not).

   Workers decode, resize and encode samples in parallel; the main thread
   writes them in source order, so the pack is the same whatever the thread
   count, and memory holds a bounded window of samples, not the dataset. */
#define SSL_IMPLEMENTATION
#include "ssl.h"

#include <dirent.h>
#include <signal.h>

typedef struct {
    char src[SSL_STR], out[SSL_STR], format[SSL_STR], labels[SSL_STR], classes[SSL_STR];
    char mode[SSL_STR], channels[SSL_STR];
    int64_t max_res, quality, raw_max, threads, limit, page_kb, warn_max;
    int force, strict, paths, quiet;
} pack_cfg;

static const ssl_opt pack_opts[] = {
    SSL_OPT_S(pack_cfg, src, "", "source: ImageFolder dir, list file, CIFAR .bin file(s) (comma-separated) or IDX images file"),
    SSL_OPT_S(pack_cfg, out, "", "output .ssl file"),
    SSL_OPT_C(pack_cfg, format, "auto", "auto|folder|list|cifar10|cifar100|idx", "source format (auto: guess from SRC)"),
    SSL_OPT_S(pack_cfg, labels, "", "IDX labels file (default: the images file name with images-idx3 -> labels-idx1)"),
    SSL_OPT_S(pack_cfg, classes, "", "comma-separated class names, overriding the source's"),
    SSL_OPT_I(pack_cfg, max_res, "0", 0, 65535, "shrink the longer side to this many pixels (area filter; never enlarges; 0 = keep)"),
    SSL_OPT_C(pack_cfg, mode, "auto", "auto|jpeg|raw|png",
              "storage: auto keeps source JPEG bytes when no resize is needed, raw for small images, else JPEG"),
    SSL_OPT_I(pack_cfg, quality, "90", 1, 100, "JPEG quality when encoding"),
    SSL_OPT_I(pack_cfg, raw_max, "16384", 0, 1 << 30, "mode=auto stores images of at most this many bytes raw"),
    SSL_OPT_C(pack_cfg, channels, "keep", "keep|rgb|gray", "keep gray images gray and colour images RGB, or convert all (alpha is dropped)"),
    SSL_OPT_I(pack_cfg, threads, "0", 0, 1024, "worker threads (0 = all cores)"),
    SSL_OPT_I(pack_cfg, limit, "0", 0, 1LL << 40, "pack only the first N samples in source order (0 = all)"),
    SSL_OPT_I(pack_cfg, page_kb, "4096", 4, 1 << 20, "page size hint for quasi-random loading, KiB"),
    SSL_OPT_I(pack_cfg, warn_max, "20", 0, 1 << 30, "print at most this many skip warnings"),
    SSL_OPT_B(pack_cfg, force, "0", "overwrite OUT if it exists"),
    SSL_OPT_B(pack_cfg, strict, "0", "a source file that cannot be decoded is an error instead of a counted skip"),
    SSL_OPT_B(pack_cfg, paths, "1", "store source paths (verify names bad records by them)"),
    SSL_OPT_B(pack_cfg, quiet, "0", "no progress line"),
};
#define NOPTS ((int)(sizeof pack_opts / sizeof pack_opts[0]))

/* ---- sources ------------------------------------------------------------ */

enum { SRC_FILES, SRC_CIFAR, SRC_IDX };

typedef struct {
    int kind;
    int64_t n;
    /* SRC_FILES */
    char **paths;
    uint32_t *labels;
    /* SRC_CIFAR: mmapped batches; SRC_IDX: pixels and labels in memory */
    int nfiles, label_bytes; /* cifar: 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine) */
    const uint8_t **fmap;
    size_t *fsize;
    int64_t *first; /* first sample of each file */
    ssl_idx idx;
    /* classes */
    char **class_names;
    int num_classes;
} source;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void add_name(char ***v, int *n, int *cap, const char *s) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *v = ssl_realloc(*v, sizeof(char *) * *cap, "names");
    }
    (*v)[(*n)++] = strdup(s);
}

/* Files under dir (recursively), sorted, skipping dot-files. */
static int list_files(const char *dir, char ***out, int64_t *n, int64_t *cap) {
    DIR *d = opendir(dir);
    if (!d) return ssl__fail("cannot open folder '%s': %s", dir, strerror(errno));
    char **names = NULL;
    int nn = 0, nc = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') add_name(&names, &nn, &nc, e->d_name);
    closedir(d);
    if (nn) qsort(names, nn, sizeof *names, cmp_str);
    for (int i = 0; i < nn; i++) {
        char path[SSL_STR * 2];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (list_files(path, out, n, cap) != 0) return -1;
        } else {
            if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 1024;
                *out = ssl_realloc(*out, sizeof(char *) * *cap, "file list");
            }
            (*out)[(*n)++] = strdup(path);
        }
        free(names[i]);
    }
    free(names);
    return 0;
}

static int source_folder(source *s, const char *root) {
    DIR *d = opendir(root);
    if (!d) return ssl__fail("cannot open source folder '%s': %s", root, strerror(errno));
    int nc = 0, cc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[SSL_STR * 2];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", root, e->d_name);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) add_name(&s->class_names, &nc, &cc, e->d_name);
    }
    closedir(d);
    if (nc == 0) return ssl__fail("'%s' has no class folders (expected ImageFolder layout: %s/<class>/<image>)", root, root);
    qsort(s->class_names, nc, sizeof(char *), cmp_str);
    s->num_classes = nc;
    int64_t cap = 0, lcap = 0;
    for (int c = 0; c < nc; c++) {
        char path[SSL_STR * 2];
        snprintf(path, sizeof path, "%s/%s", root, s->class_names[c]);
        int64_t before = s->n;
        if (list_files(path, &s->paths, &s->n, &cap) != 0) return -1;
        if (s->n == before) ssl_warn("class '%s' has no files", s->class_names[c]);
        if (lcap < s->n) {
            lcap = cap;
            s->labels = ssl_realloc(s->labels, sizeof(uint32_t) * lcap, "labels");
        }
        for (int64_t i = before; i < s->n; i++) s->labels[i] = (uint32_t)c;
    }
    if (s->n == 0) return ssl__fail("'%s' has class folders but no files in them", root);
    s->kind = SRC_FILES;
    return 0;
}

static int parse_uint(const char *s, uint32_t *v) {
    char *end;
    if (!*s || *s == '-') return 0;
    unsigned long x = strtoul(s, &end, 10);
    if (*end || x > 0xFFFFFFF) return 0;
    *v = (uint32_t)x;
    return 1;
}

static int source_list(source *s, const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) return ssl__fail("cannot open list file '%s': %s", file, strerror(errno));
    char dir[SSL_STR];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else strcpy(dir, ".");
    char line[SSL_STR * 2];
    char **labs = NULL;
    int64_t cap = 0;
    int lineno = 0, numeric = 1;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) line[--l] = 0;
        if (!l || line[0] == '#') continue;
        char *tab = strchr(line, '\t');
        if (!tab || !tab[1]) {
            fclose(f);
            return ssl__fail("%s:%d: expected 'path<TAB>label', got '%s'", file, lineno, line);
        }
        *tab = 0;
        if (s->n == cap) {
            cap = cap ? cap * 2 : 1024;
            s->paths = ssl_realloc(s->paths, sizeof(char *) * cap, "paths");
            labs = ssl_realloc(labs, sizeof(char *) * cap, "labels");
        }
        char path[SSL_STR * 3];
        if (line[0] == '/') snprintf(path, sizeof path, "%s", line);
        else snprintf(path, sizeof path, "%s/%s", dir, line);
        s->paths[s->n] = strdup(path);
        labs[s->n] = strdup(tab + 1);
        uint32_t v;
        if (!parse_uint(tab + 1, &v)) numeric = 0;
        s->n++;
    }
    fclose(f);
    if (s->n == 0) return ssl__fail("list file '%s' has no entries", file);
    s->labels = ssl_malloc(sizeof(uint32_t) * s->n, "labels");
    if (numeric) {
        uint32_t mx = 0;
        for (int64_t i = 0; i < s->n; i++) {
            parse_uint(labs[i], &s->labels[i]);
            if (s->labels[i] > mx) mx = s->labels[i];
        }
        s->num_classes = (int)mx + 1;
        s->class_names = ssl_malloc(sizeof(char *) * s->num_classes, "classes");
        for (int c = 0; c < s->num_classes; c++) {
            char b[16];
            snprintf(b, sizeof b, "%d", c);
            s->class_names[c] = strdup(b);
        }
    } else {
        /* names: sorted unique */
        char **sorted = ssl_malloc(sizeof(char *) * s->n, "labels");
        memcpy(sorted, labs, sizeof(char *) * s->n);
        qsort(sorted, s->n, sizeof(char *), cmp_str);
        int cc = 0;
        for (int64_t i = 0; i < s->n; i++)
            if (i == 0 || strcmp(sorted[i], sorted[i - 1])) add_name(&s->class_names, &s->num_classes, &cc, sorted[i]);
        for (int64_t i = 0; i < s->n; i++) {
            char **hit = bsearch(&labs[i], s->class_names, s->num_classes, sizeof(char *), cmp_str);
            s->labels[i] = (uint32_t)(hit - s->class_names);
        }
        free(sorted);
    }
    for (int64_t i = 0; i < s->n; i++) free(labs[i]);
    free(labs);
    s->kind = SRC_FILES;
    return 0;
}


/* Reads names, one per line, from a file beside `near` (CIFAR's meta). */
static void names_beside(source *s, const char *near, const char *file, int want) {
    char path[SSL_STR * 2], line[256];
    snprintf(path, sizeof path, "%s", near);
    char *comma = strchr(path, ',');
    if (comma) *comma = 0;
    char *slash = strrchr(path, '/');
    if (slash) slash[1] = 0; else path[0] = 0;
    strncat(path, file, sizeof path - strlen(path) - 1);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char **names = NULL;
    int n = 0, cap = 0;
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r' || line[l - 1] == ' ')) line[--l] = 0;
        if (l) add_name(&names, &n, &cap, line);
    }
    fclose(f);
    if (n == want) {
        s->class_names = names;
        s->num_classes = n;
    } else {
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
    }
}

static void numeric_classes(source *s, int n) {
    s->num_classes = n;
    s->class_names = ssl_malloc(sizeof(char *) * n, "classes");
    for (int c = 0; c < n; c++) {
        char b[16];
        snprintf(b, sizeof b, "%d", c);
        s->class_names[c] = strdup(b);
    }
}

static int source_cifar(source *s, const char *files, int hundred) {
    char list[SSL_STR];
    snprintf(list, sizeof list, "%s", files);
    int rec = hundred ? 3074 : 3073;
    s->label_bytes = hundred ? 2 : 1;
    char *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        s->fmap = ssl_realloc(s->fmap, sizeof(*s->fmap) * (s->nfiles + 1), "cifar");
        s->fsize = ssl_realloc(s->fsize, sizeof(*s->fsize) * (s->nfiles + 1), "cifar");
        s->first = ssl_realloc(s->first, sizeof(*s->first) * (s->nfiles + 2), "cifar");
        if (ssl_map_file(t, &s->fmap[s->nfiles], &s->fsize[s->nfiles]) != 0) return -1;
        if (s->fsize[s->nfiles] % rec != 0)
            return ssl__fail("'%s' is %zu bytes, not a whole number of %d-byte CIFAR-%d records", t, s->fsize[s->nfiles], rec,
                             hundred ? 100 : 10);
        s->first[s->nfiles] = s->n;
        s->n += (int64_t)(s->fsize[s->nfiles] / rec);
        s->nfiles++;
    }
    if (!s->nfiles) return ssl__fail("no CIFAR files given");
    s->first[s->nfiles] = s->n;
    int nclass = hundred ? 100 : 10;
    uint8_t mx = 0;
    for (int f = 0; f < s->nfiles; f++)
        for (size_t o = 0; o < s->fsize[f]; o += rec) {
            uint8_t l = s->fmap[f][o + s->label_bytes - 1];
            if (l > mx) mx = l;
        }
    if (mx >= nclass) return ssl__fail("CIFAR-%d label %u out of range: is this the right format?", nclass, mx);
    names_beside(s, files, hundred ? "fine_label_names.txt" : "batches.meta.txt", nclass);
    if (!s->class_names) numeric_classes(s, nclass);
    s->kind = SRC_CIFAR;
    return 0;
}

static int source_idx(source *s, const char *images, const char *labels) {
    if (ssl_idx_load(images, labels, &s->idx) != 0) return -1;
    s->n = s->idx.n;
    numeric_classes(s, s->idx.num_classes);
    s->kind = SRC_IDX;
    return 0;
}

static int source_open(source *s, const pack_cfg *cfg) {
    memset(s, 0, sizeof *s);
    const char *fmt = cfg->format, *src = cfg->src;
    char guess[32];
    if (!strcmp(fmt, "auto")) {
        struct stat st;
        char first[SSL_STR];
        snprintf(first, sizeof first, "%s", src);
        char *comma = strchr(first, ',');
        if (comma) *comma = 0;
        if (stat(first, &st) != 0) return ssl__fail("source '%s' does not exist", first);
        size_t l = strlen(first);
        if (S_ISDIR(st.st_mode)) strcpy(guess, "folder");
        else if (strstr(first, "idx3") || strstr(first, "-ubyte")) strcpy(guess, "idx");
        else if (l > 4 && !strcmp(first + l - 4, ".bin"))
            strcpy(guess, (st.st_size % 3073 == 0) ? "cifar10" : (st.st_size % 3074 == 0) ? "cifar100" : "cifar10");
        else strcpy(guess, "list");
        fmt = guess;
    }
    int r;
    if (!strcmp(fmt, "folder")) r = source_folder(s, src);
    else if (!strcmp(fmt, "list")) r = source_list(s, src);
    else if (!strcmp(fmt, "cifar10")) r = source_cifar(s, src, 0);
    else if (!strcmp(fmt, "cifar100")) r = source_cifar(s, src, 1);
    else r = source_idx(s, src, cfg->labels);
    if (r != 0) return -1;
    if (cfg->classes[0]) {
        char list[SSL_STR];
        snprintf(list, sizeof list, "%s", cfg->classes);
        char **names = NULL, *save = NULL;
        int n = 0, cap = 0;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) add_name(&names, &n, &cap, t);
        if (n < s->num_classes)
            return ssl__fail("classes= names %d classes but the source has %d", n, s->num_classes);
        for (int c = 0; c < s->num_classes; c++) free(s->class_names[c]);
        free(s->class_names);
        s->class_names = names;
        s->num_classes = n;
    }
    if (cfg->limit && cfg->limit < s->n) {
        if (s->paths) /* the names past the limit are never read */
            for (int64_t i = cfg->limit; i < s->n; i++) free(s->paths[i]);
        s->n = cfg->limit;
    }
    return 0;
}

static void source_close(source *s) {
    if (s->paths) for (int64_t i = 0; i < s->n; i++) free(s->paths[i]);
    free(s->paths);
    free(s->labels);
    for (int f = 0; f < s->nfiles; f++) ssl_unmap_file(s->fmap[f], s->fsize[f]);
    free(s->fmap); free(s->fsize); free(s->first);
    ssl_idx_free(&s->idx);
    for (int c = 0; c < s->num_classes; c++) free(s->class_names[c]);
    free(s->class_names);
}

/* ---- the pipeline ------------------------------------------------------- */

typedef struct {
    int ready, skipped;
    char reason[2048];
    ssl_buf bytes;
    size_t size;
    int w, h, c, enc;
    uint32_t label;
} slot;

typedef struct {
    ssl_buf file, px, px2;
} scratch;

typedef struct {
    const pack_cfg *cfg;
    source *src;
    int store_mode, want_c;
    int64_t window;
    slot *slots;
    scratch *scr;
    pthread_mutex_t mu;
    pthread_cond_t cv_ready, cv_free;
    int64_t consumed;
    _Atomic int64_t next;
    _Atomic int stop;
} pipeline;

static volatile sig_atomic_t g_interrupted = 0;
static void on_signal(int sig) { (void)sig; g_interrupted = 1; }


/* Produces the stored record of sample i into slot o. */
static int make_record(pipeline *pp, int64_t i, slot *o, scratch *sc) {
    const pack_cfg *cfg = pp->cfg;
    source *s = pp->src;
    const uint8_t *bytes = NULL, *px = NULL;
    size_t nbytes = 0;
    int w, h, c, fmt = SSL_FMT_UNKNOWN;
    if (s->kind == SRC_FILES) {
        o->label = s->labels[i];
        if (ssl_read_file_buf(s->paths[i], &sc->file, &nbytes) != 0) return -1;
        bytes = sc->file.p;
        if (ssl_image_info(bytes, nbytes, &w, &h, &c, &fmt) != 0) return -1;
    } else if (s->kind == SRC_CIFAR) {
        int f = 0;
        while (i >= s->first[f + 1]) f++;
        const uint8_t *r = s->fmap[f] + (size_t)(i - s->first[f]) * (3072 + s->label_bytes);
        o->label = r[s->label_bytes - 1];
        /* CIFAR stores three 32x32 planes: interleave to HWC */
        uint8_t *d = ssl_buf_reserve(&sc->px, 3072);
        for (int k = 0; k < 1024; k++) {
            d[3 * k] = r[s->label_bytes + k];
            d[3 * k + 1] = r[s->label_bytes + 1024 + k];
            d[3 * k + 2] = r[s->label_bytes + 2048 + k];
        }
        px = d; w = h = 32; c = 3;
    } else {
        o->label = ssl_idx_label(&s->idx, (uint32_t)i);
        px = ssl_idx_pixels(&s->idx, (uint32_t)i);
        w = s->idx.w; h = s->idx.h; c = 1;
    }
    int tc = pp->want_c ? pp->want_c : c;
    int longer = w > h ? w : h;
    int shrink = cfg->max_res > 0 && longer > cfg->max_res;
    /* auto: a source JPEG that needs no change is stored as it is */
    if (bytes && fmt == SSL_FMT_JPEG && !shrink && tc == c && pp->store_mode == SSL_STORE_AUTO) {
        if (w > 65535 || h > 65535) return ssl__fail("%dx%d is larger than a pack record allows (65535)", w, h);
        memcpy(ssl_buf_reserve(&o->bytes, nbytes), bytes, nbytes);
        o->size = nbytes; o->w = w; o->h = h; o->c = c; o->enc = SSL_ENC_JPEG;
        return 0;
    }
    if (bytes) {
        if (ssl_decode(bytes, nbytes, tc, &sc->px, &w, &h, &c) != 0) return -1;
        px = sc->px.p;
    } else if (tc != c) {
        uint8_t *d = ssl_buf_reserve(&sc->px2, (size_t)w * h * 3);
        ssl_convert_channels(px, w, h, c, d, tc);
        px = d;
        c = tc;
    }
    if (shrink) {
        int nw = w >= h ? (int)cfg->max_res : (int)((double)w * cfg->max_res / h + 0.5);
        int nh = h > w ? (int)cfg->max_res : (int)((double)h * cfg->max_res / w + 0.5);
        if (nw < 1) nw = 1;
        if (nh < 1) nh = 1;
        uint8_t *d = ssl_buf_reserve(&sc->px2, (size_t)nw * nh * c);
        ssl_buf tmp = {0, 0};
        ssl_resample(px, w, h, c, 0, 0, w, h, d, NULL, nw, nh, SSL_FILTER_BOX, &tmp);
        ssl_buf_free(&tmp);
        px = d; w = nw; h = nh;
    }
    if (w > 65535 || h > 65535) return ssl__fail("%dx%d is larger than a pack record allows (65535); set max_res", w, h);
    int mode = pp->store_mode;
    size_t raw = (size_t)w * h * c;
    if (mode == SSL_STORE_AUTO) mode = raw <= (size_t)cfg->raw_max ? SSL_STORE_RAW : SSL_STORE_JPEG;
    o->w = w; o->h = h; o->c = c;
    if (mode == SSL_STORE_RAW) {
        memcpy(ssl_buf_reserve(&o->bytes, raw), px, raw);
        o->size = raw;
        o->enc = SSL_ENC_RAW;
        return 0;
    }
    if (mode == SSL_STORE_PNG) {
        o->enc = SSL_ENC_PNG;
        return ssl_encode_png(px, w, h, c, &o->bytes, &o->size);
    }
    o->enc = SSL_ENC_JPEG;
    return ssl_encode_jpeg(px, w, h, c, (int)cfg->quality, &o->bytes, &o->size);
}

static void *worker(void *arg) {
    void **a = arg;
    pipeline *pp = a[0];
    scratch *sc = a[1];
    for (;;) {
        int64_t i = atomic_fetch_add(&pp->next, 1);
        if (i >= pp->src->n || atomic_load(&pp->stop)) break;
        pthread_mutex_lock(&pp->mu);
        while (i >= pp->consumed + pp->window && !atomic_load(&pp->stop)) pthread_cond_wait(&pp->cv_free, &pp->mu);
        pthread_mutex_unlock(&pp->mu);
        if (atomic_load(&pp->stop)) break;
        slot *o = &pp->slots[i % pp->window];
        o->skipped = make_record(pp, i, o, sc) != 0;
        if (o->skipped) snprintf(o->reason, sizeof o->reason, "%s", ssl_last_error());
        pthread_mutex_lock(&pp->mu);
        o->ready = 1;
        pthread_cond_broadcast(&pp->cv_ready);
        pthread_mutex_unlock(&pp->mu);
    }
    return NULL;
}

static const char *sample_name(const source *s, int64_t i, char *buf, size_t cap) {
    if (s->kind == SRC_FILES) return s->paths[i];
    snprintf(buf, cap, "%s record %lld", s->kind == SRC_CIFAR ? "CIFAR" : "IDX", (long long)i);
    return buf;
}

static int do_pack(pack_cfg *cfg) {
    source src;
    double t0 = ssl_now();
    if (source_open(&src, cfg) != 0) return -1;
    pipeline pp;
    memset(&pp, 0, sizeof pp);
    pp.cfg = cfg;
    pp.src = &src;
    pp.store_mode = !strcmp(cfg->mode, "raw") ? SSL_STORE_RAW : !strcmp(cfg->mode, "jpeg") ? SSL_STORE_JPEG
                    : !strcmp(cfg->mode, "png") ? SSL_STORE_PNG : SSL_STORE_AUTO;
    pp.want_c = !strcmp(cfg->channels, "rgb") ? 3 : !strcmp(cfg->channels, "gray") ? 1 : 0;
    int threads = cfg->threads ? (int)cfg->threads : ssl_num_cores();
    pp.window = threads * 8;
    pp.slots = ssl_calloc(sizeof(slot) * pp.window, "slots");
    pp.scr = ssl_calloc(sizeof(scratch) * threads, "scratch");
    pthread_mutex_init(&pp.mu, NULL);
    pthread_cond_init(&pp.cv_ready, NULL);
    pthread_cond_init(&pp.cv_free, NULL);
    atomic_init(&pp.next, 0);
    atomic_init(&pp.stop, 0);

    ssl_pack_writer *w = ssl_pack_writer_open(cfg->out, cfg->force, (uint32_t)(cfg->page_kb * 1024));
    if (!w) { source_close(&src); return -1; }
    ssl_info("pack: %lld samples, %d classes from '%s' -> '%s' (mode=%s, max_res=%lld, %d threads)", (long long)src.n,
             src.num_classes, cfg->src, cfg->out, cfg->mode, (long long)cfg->max_res, threads);

    pthread_t *tid = ssl_malloc(sizeof(pthread_t) * threads, "threads");
    void **args = ssl_malloc(sizeof(void *) * 2 * threads, "args");
    for (int t = 0; t < threads; t++) {
        args[2 * t] = &pp;
        args[2 * t + 1] = &pp.scr[t];
        pthread_create(&tid[t], NULL, worker, &args[2 * t]);
    }
    int64_t *per_class = ssl_calloc(sizeof(int64_t) * src.num_classes, "counts");
    int64_t skipped = 0, enc_count[SSL_ENC_COUNT] = {0};
    int rc = 0;
    char nb[64];
    ssl_progress prog;
    ssl_progress_start(&prog, "pack", src.n);
    for (int64_t i = 0; i < src.n; i++) {
        slot *o = &pp.slots[i % pp.window];
        pthread_mutex_lock(&pp.mu);
        while (!o->ready && !g_interrupted) {
            /* wake up now and then to notice ctrl-C */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200000000;
            if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
            pthread_cond_timedwait(&pp.cv_ready, &pp.mu, &ts);
        }
        pthread_mutex_unlock(&pp.mu);
        if (g_interrupted) {
            ssl__fail("interrupted; '%s' was not written", cfg->out);
            rc = -1;
            break;
        }
        if (o->skipped) {
            if (cfg->strict) {
                ssl__fail("%s: %s (strict=1)", sample_name(&src, i, nb, sizeof nb), o->reason);
                rc = -1;
                break;
            }
            if (skipped < cfg->warn_max) ssl_warn("skipped %s: %s", sample_name(&src, i, nb, sizeof nb), o->reason);
            skipped++;
        } else {
            const char *path = cfg->paths && src.kind == SRC_FILES ? src.paths[i] : NULL;
            if (ssl_pack_writer_add(w, o->bytes.p, o->size, o->w, o->h, o->c, o->enc, o->label, path) != 0) {
                ssl__fail_ctx("%s", sample_name(&src, i, nb, sizeof nb));
                rc = -1;
                break;
            }
            per_class[o->label]++;
            enc_count[o->enc]++;
        }
        pthread_mutex_lock(&pp.mu);
        o->ready = 0;
        pp.consumed = i + 1;
        pthread_cond_broadcast(&pp.cv_free);
        pthread_mutex_unlock(&pp.mu);
        if (!cfg->quiet) ssl_progress_update(&prog, i + 1);
    }
    atomic_store(&pp.stop, 1);
    pthread_mutex_lock(&pp.mu);
    pthread_cond_broadcast(&pp.cv_free);
    pthread_mutex_unlock(&pp.mu);
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    if (rc == 0 && ssl_pack_writer_count(w) == 0) {
        ssl__fail("no sample could be packed (%lld skipped)", (long long)skipped);
        rc = -1;
    }
    if (rc == 0) {
        if (!cfg->quiet) ssl_progress_end(&prog, src.n);
        uint64_t n = ssl_pack_writer_count(w), rec_bytes = ssl_pack_writer_bytes(w) - SSL_PACK_HEADER_SIZE;
        rc = ssl_pack_writer_finish(w, (const char *const *)src.class_names, src.num_classes, pp.store_mode, (int)cfg->max_res);
        w = NULL;
        if (rc == 0) {
            struct stat st;
            stat(cfg->out, &st);
            double dt = ssl_now() - t0;
            printf("packed %llu samples into '%s' in %.2fs (%.0f images/s)\n", (unsigned long long)n, cfg->out, dt,
                   src.n / (dt > 0 ? dt : 1));
            printf("  bytes: %llu in records (%.1f per sample), %llu total\n", (unsigned long long)rec_bytes,
                   (double)rec_bytes / (n ? n : 1), (unsigned long long)st.st_size);
            printf("  encodings: raw %lld, jpeg %lld, png %lld\n", (long long)enc_count[0], (long long)enc_count[1],
                   (long long)enc_count[2]);
            printf("  skipped: %lld%s\n", (long long)skipped, skipped > cfg->warn_max ? " (first ones listed above)" : "");
            printf("  per class:");
            for (int c = 0; c < src.num_classes; c++) printf("%s %s=%lld", c ? "," : "", src.class_names[c], (long long)per_class[c]);
            printf("\n");
        }
    }
    if (w) ssl_pack_writer_abort(w);
    for (int64_t k = 0; k < pp.window; k++) ssl_buf_free(&pp.slots[k].bytes);
    for (int t = 0; t < threads; t++) {
        ssl_buf_free(&pp.scr[t].file);
        ssl_buf_free(&pp.scr[t].px);
        ssl_buf_free(&pp.scr[t].px2);
    }
    free(pp.slots); free(pp.scr); free(tid); free(args); free(per_class);
    source_close(&src);
    return rc;
}

/* ---- info and verify ---------------------------------------------------- */

static int do_info(const char *path) {
    ssl_pack p;
    if (ssl_pack_open(path, &p) != 0) return -1;
    const ssl_pack_header *h = &p.h;
    printf("%s: .ssl pack version %u, %llu bytes\n", path, h->version, (unsigned long long)h->file_size);
    printf("  samples      %llu\n  classes      %u\n  storage      %s\n  max_res      %u%s\n  page size    %u KiB\n",
           (unsigned long long)h->num_samples, h->num_classes, ssl_store_mode_name((int)h->store_mode), h->max_res,
           h->max_res ? "" : " (not limited)", h->page_size / 1024);
    printf("  records      [%llu, %llu)\n  index        %llu (%llu bytes)\n  strings      %llu (%llu bytes)%s\n",
           (unsigned long long)h->data_offset, (unsigned long long)h->index_offset, (unsigned long long)h->index_offset,
           (unsigned long long)(h->num_samples * sizeof(ssl_pack_rec)), (unsigned long long)h->strings_offset,
           (unsigned long long)h->strings_size, (h->flags & SSL_PACK_HAS_PATHS) ? ", with source paths" : "");
    int64_t *cnt = ssl_calloc(sizeof(int64_t) * h->num_classes, "counts"), enc[SSL_ENC_COUNT] = {0}, ch[4] = {0};
    unsigned minw = 65535, minh = 65535, maxw = 0, maxh = 0;
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < h->num_samples; i++) {
        const ssl_pack_rec *r = &p.index[i];
        cnt[r->label]++;
        enc[r->encoding]++;
        ch[r->channels]++;
        bytes += r->size;
        if (r->width < minw) minw = r->width;
        if (r->width > maxw) maxw = r->width;
        if (r->height < minh) minh = r->height;
        if (r->height > maxh) maxh = r->height;
    }
    uint64_t pages = h->num_samples ? ssl_pack_page(&p, h->num_samples - 1) + 1 : 0;
    printf("  encodings    raw %lld, jpeg %lld, png %lld\n  channels     gray %lld, rgb %lld\n", (long long)enc[0],
           (long long)enc[1], (long long)enc[2], (long long)ch[1], (long long)ch[3]);
    if (h->num_samples)
        printf("  sizes        %ux%u to %ux%u, %.1f bytes per record, %llu pages\n", minw, minh, maxw, maxh,
               (double)bytes / h->num_samples, (unsigned long long)pages);
    printf("  class counts\n");
    for (uint32_t c = 0; c < h->num_classes; c++) printf("    %4u %-24s %lld\n", c, p.class_names[c], (long long)cnt[c]);
    free(cnt);
    ssl_pack_close(&p);
    return 0;
}

typedef struct {
    ssl_pack *p;
    ssl_buf *bufs;
    pthread_mutex_t mu;
    int64_t bad;
    int64_t *bad_ids;
    char (*bad_msg)[2048];
    int64_t bad_cap;
    _Atomic int64_t done;
} verify_ctx;

static void verify_one(void *ctx, int64_t i, int wk) {
    verify_ctx *v = ctx;
    int w, h, c;
    int bad = ssl_pack_check_record(v->p, (uint64_t)i) != 0;
    if (!bad) bad = ssl_pack_decode(v->p, (uint64_t)i, 0, &v->bufs[wk], &w, &h, &c) != 0;
    if (bad) {
        pthread_mutex_lock(&v->mu);
        if (v->bad == v->bad_cap) {
            v->bad_cap = v->bad_cap ? v->bad_cap * 2 : 64;
            v->bad_ids = ssl_realloc(v->bad_ids, sizeof(int64_t) * v->bad_cap, "bad list");
            v->bad_msg = ssl_realloc(v->bad_msg, 2048 * v->bad_cap, "bad list");
        }
        v->bad_ids[v->bad] = i;
        snprintf(v->bad_msg[v->bad], 2048, "%s", ssl_last_error());
        v->bad++;
        pthread_mutex_unlock(&v->mu);
    }
    atomic_fetch_add(&v->done, 1);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int do_verify(const char *path, int threads) {
    ssl_pack p;
    if (ssl_pack_open(path, &p) != 0) return -1;
    if (threads <= 0) threads = ssl_num_cores();
    verify_ctx v;
    memset(&v, 0, sizeof v);
    v.p = &p;
    v.bufs = ssl_calloc(sizeof(ssl_buf) * threads, "buffers");
    pthread_mutex_init(&v.mu, NULL);
    double t0 = ssl_now();
    ssl_parallel_for((int64_t)p.h.num_samples, threads, verify_one, &v);
    double dt = ssl_now() - t0;
    /* report in sample order, whatever order the threads found them in */
    int64_t *order = ssl_malloc(sizeof(int64_t) * 2 * (v.bad ? v.bad : 1), "order");
    for (int64_t k = 0; k < v.bad; k++) { order[2 * k] = v.bad_ids[k]; order[2 * k + 1] = k; }
    qsort(order, (size_t)v.bad, 2 * sizeof(int64_t), cmp_i64);
    for (int64_t k = 0; k < v.bad; k++) {
        int64_t i = order[2 * k];
        const char *src = ssl_pack_source(&p, (uint64_t)i);
        printf("BAD sample %lld%s%s%s: %s\n", (long long)i, src[0] ? " (" : "", src, src[0] ? ")" : "", v.bad_msg[order[2 * k + 1]]);
    }
    printf("verified %llu records of '%s' in %.2fs: %lld bad\n", (unsigned long long)p.h.num_samples, path, dt, (long long)v.bad);
    for (int t = 0; t < threads; t++) ssl_buf_free(&v.bufs[t]);
    free(v.bufs); free(v.bad_ids); free(v.bad_msg); free(order);
    int64_t bad = v.bad;
    ssl_pack_close(&p);
    if (bad) return ssl__fail("%lld bad record(s) in '%s'", (long long)bad, path);
    return 0;
}

static void usage(void) {
    printf("usage: ./pack SRC OUT [key=value ...]   pack a dataset into OUT (.ssl)\n"
           "       ./pack info FILE                 print a pack's header, classes and counts\n"
           "       ./pack verify FILE [threads=N]   check every record's CRC and decode it\n\n"
           "SRC is an ImageFolder dir (SRC/<class>/<image>), a list file (path<TAB>label),\n"
           "CIFAR-10/100 .bin batches (comma-separated), or an IDX images file (.gz ok).\n\noptions:\n");
    ssl_config_usage(stdout, pack_opts, NOPTS);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage();
        return argc < 2 ? 1 : 0;
    }
    pack_cfg cfg;
    ssl_config_defaults(pack_opts, NOPTS, &cfg);
    const char *pos[3];
    int npos = 0;
    if (ssl_config_parse(pack_opts, NOPTS, &cfg, argc - 1, argv + 1, pos, 3, &npos) != 0) {
        fprintf(stderr, "pack: %s\n", ssl_last_error());
        return 2;
    }
    int rc;
    if (npos >= 1 && (!strcmp(pos[0], "info") || !strcmp(pos[0], "verify"))) {
        if (npos != 2) {
            fprintf(stderr, "pack: usage: ./pack %s FILE\n", pos[0]);
            return 2;
        }
        rc = !strcmp(pos[0], "info") ? do_info(pos[1]) : do_verify(pos[1], (int)cfg.threads);
    } else {
        if (npos > 2) {
            fprintf(stderr, "pack: unexpected argument '%s'\n", pos[2]);
            return 2;
        }
        if (npos >= 1) snprintf(cfg.src, sizeof cfg.src, "%s", pos[0]);
        if (npos >= 2) snprintf(cfg.out, sizeof cfg.out, "%s", pos[1]);
        if (!cfg.src[0] || !cfg.out[0]) {
            fprintf(stderr, "pack: need a source and an output: ./pack SRC OUT (see ./pack help)\n");
            return 2;
        }
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        rc = do_pack(&cfg);
    }
    if (rc != 0) {
        fprintf(stderr, "pack: %s\n", ssl_last_error());
        return 1;
    }
    return 0;
}
