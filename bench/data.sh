# Sourced by the bench scripts: extracts the benchmark datasets from
# ../shared/data into build/bench-data (once), builds ./pack, and sets D.
SHARED=${SHARED:-../shared}
D=build/bench-data
mkdir -p $D bench/out
[ -d $D/cifar10/train ] || tar xzf $SHARED/data/cifar10-jpg.tar.gz -C $D
[ -d $D/imagenette/train ] || tar xzf $SHARED/data/imagenette-train.tar.gz -C $D
make -s pack >/dev/null
