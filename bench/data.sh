# Sourced by the bench scripts: extracts the benchmark datasets from
# ../shared/data into build/bench-data (once), builds ./pack, and sets D.
SHARED=${SHARED:-../shared}
D=build/bench-data
mkdir -p $D bench/out
[ -d $D/cifar10/train ] || tar xzf $SHARED/data/cifar10-jpg.tar.gz -C $D
[ -d $D/imagenette/train ] || tar xzf $SHARED/data/imagenette-train.tar.gz -C $D
make -s pack >/dev/null

# Helpers the loader comparisons share (loader_bench.sh, ffcv_bench.sh):
# a JSON line's field, the better of two figures (this VM's neighbours are
# noisy), a ratio a/b as "N.Nx" (or to more places), the run's header (date, commit, CPU), and
# build/loader_bench.
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
best() { awk -v a=$1 -v b=$2 'BEGIN{print (a > b ? a : b)}'; }
ratio() { awk -v a=$1 -v b=$2 -v p=${3:-1} 'BEGIN{printf("%." p "fx", a / b)}'; }  # [places, 1 by default]
run_header() { echo "$(date -u +%F), ssl.h $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs;"; }
build_loader_bench() { cc -O3 -march=native -pthread -DSSL_TURBOJPEG -DSSL_LIBJPEG -o build/loader_bench bench/loader_bench.c -lm -lturbojpeg -ljpeg; }
