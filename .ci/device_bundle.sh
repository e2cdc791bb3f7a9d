#!/usr/bin/env bash
# Builds what `make device-check` runs on a lent GPU machine, here, and packs it into .devbundle/ (ignored by git):
# the test and bench binaries built for one architecture (CUDA_ARCH, default 90) and stripped, and the shared
# libraries from Debian packages that the GPU machine's image lacks (.devbundle/devlibs). The machine then runs
#   rm -rf build && cp -r .devbundle/build build && RK_PREBUILT=1 RK_DEVLIBS=.devbundle/devlibs make device-check
# Usage: .ci/device_bundle.sh   (then carry .devbundle)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${CUDA_ARCH:-90}
bdir=build-sm$arch
make -s -j2 BUILD_DIR=$bdir CUDA_ARCH=$arch CFLAGS="-O3 -march=x86-64-v3" all \
    $(ls tests/test_*.c | sed "s|^tests/\(.*\)\.c$|$bdir/tests/\1|") \
    $(ls bench/bench_*.c | sed "s|^bench/\(.*\)\.c$|$bdir/bench/\1|")
rm -rf .devbundle
mkdir -p .devbundle/build/tests .devbundle/build/bench .devbundle/devlibs
cp $bdir/rk-* .devbundle/build/
cp $bdir/tests/test_* .devbundle/build/tests/
cp $bdir/bench/bench_* .devbundle/build/bench/
strip .devbundle/build/rk-* .devbundle/build/tests/* .devbundle/build/bench/*
# libraries: everything the binaries need except glibc, the CUDA libraries (the machine has its own) and the
# loader
ldd .devbundle/build/tests/* .devbundle/build/bench/* .devbundle/build/rk-* 2>/dev/null | awk '/=>/ {print $3}' | sort -u |
    grep -v -E 'libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libresolv|libcu|libnv|ld-linux|libstdc|libgcc_s|libkrb|libk5|libgssapi|libcom_err|libkeyutils|libcrypto|libssl|libffi|libz\.so' |
    while read -r lib; do cp -L "$lib" .devbundle/devlibs/; done
du -sh .devbundle .devbundle/build .devbundle/devlibs
