#!/usr/bin/env bash
# What a build on the GPU machine may lack (its image has CUDA and PyTorch,
# not Debian's libjpeg-turbo or stb_image, and it cannot fetch them):
#
#   bash bench/gpu_deps.sh copy DIR    here: copies libjpeg-turbo's headers
#                                      and libraries into DIR/include, DIR/lib
#                                      and stb_image's headers into DIR/stb
#   bash bench/gpu_deps.sh flags DIR   there: prints the make options that
#                                      point the build at DIR for whatever
#                                      that machine lacks (nothing if it has all)
set -euo pipefail
what=${1:-}; D=${2:-}
[ -n "$D" ] || { echo "usage: bench/gpu_deps.sh copy|flags DIR" >&2; exit 2; }
case "$what" in
copy)
    L=/usr/lib/x86_64-linux-gnu
    mkdir -p "$D/include" "$D/lib" "$D/stb"
    cp /usr/include/turbojpeg.h /usr/include/jpeglib.h /usr/include/jerror.h /usr/include/jmorecfg.h \
       /usr/include/x86_64-linux-gnu/jconfig.h "$D/include/"
    for l in libturbojpeg.so.0 libjpeg.so.62; do cp -L $L/$l "$D/lib/$l"; cp -L $L/$l "$D/lib/${l%%.so*}.so"; done
    cp /usr/include/stb/stb_image.h /usr/include/stb/stb_image_write.h "$D/stb/"
    du -sh "$D"
    ;;
flags)
    f=""
    if ! pkg-config --exists libturbojpeg 2>/dev/null && [ -f "$D/lib/libturbojpeg.so" ]; then f="$f JPEG_PREFIX=$D"; fi
    if [ ! -f /usr/include/stb/stb_image.h ] && [ ! -f /usr/include/stb_image.h ]; then
        # without stb_image, ./train, ./pack and ./probe do not compile: a
        # copy made before this script copied stb_image must fail here, loudly
        if [ ! -f "$D/stb/stb_image.h" ]; then
            echo "gpu_deps.sh: this machine has no stb_image.h and $D/stb has none: ./train, ./pack and ./probe will not build (run the prepare step again where the repository is)" >&2
            echo "$f"
            exit 1
        fi
        f="$f STB_PREFIX=$D/stb"
    fi
    echo "$f"
    ;;
*) echo "usage: bench/gpu_deps.sh copy|flags DIR" >&2; exit 2 ;;
esac
