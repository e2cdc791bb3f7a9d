#!/usr/bin/env bash
# Builds what `make device-check` runs on a lent GPU machine, here, and packs it into .devbundle/bundle.tar.xz
# (ignored by git): the test and bench binaries and rk-embed (for .ci/device_embed_check.sh) built for one
# architecture (CUDA_ARCH, default 90) and stripped, and
# the shared libraries from Debian packages that the GPU machine's image lacks (devlibs/). Every binary links the
# whole kernel library (~28 MB each at fb22b3e), so the tree is ~450 MB; one solid xz archive keeps it near 6 MB,
# under what a lent machine takes (64 MiB, shared with .devembed when that travels too). The machine then runs
#   bash .ci/device_unbundle.sh && RK_PREBUILT=1 RK_DEVLIBS=.devbundle/devlibs make device-check
# Usage: .ci/device_bundle.sh   (then carry .devbundle)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${CUDA_ARCH:-90}
bdir=build-sm$arch
# only what the device check runs: the suites with CUDA cases and the GPU benches (each binary holds the kernels)
tests="test_wgmma test_ops test_ops_bwd test_ops_train test_attn_bwd test_quant test_lora test_train test_models"
tests=$(for t in $tests; do [ -f tests/$t.c ] && echo $t; done)
benches=$(ls bench/bench_*.c | sed 's|^bench/\(.*\)\.c$|\1|' | grep -v _cpu)
make -s -j2 BUILD_DIR=$bdir CUDA_ARCH=$arch $(for t in $tests; do echo $bdir/tests/$t; done) \
    $(for b in $benches; do echo $bdir/bench/$b; done) $bdir/rk-embed
rm -rf .devbundle
mkdir -p .devbundle/build/tests .devbundle/build/bench .devbundle/devlibs
for t in $tests; do cp $bdir/tests/$t .devbundle/build/tests/; done
for b in $benches; do cp $bdir/bench/$b .devbundle/build/bench/; done
cp $bdir/rk-embed .devbundle/build/
strip .devbundle/build/tests/* .devbundle/build/bench/* .devbundle/build/rk-embed
# libraries: everything the binaries need except glibc, the CUDA libraries (the machine has its own) and the
# loader
ldd .devbundle/build/tests/* .devbundle/build/bench/* .devbundle/build/rk-embed 2>/dev/null | awk '/=>/ {print $3}' | sort -u |
    grep -v -E 'libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libresolv|libcu|libnv|ld-linux|libstdc|libgcc_s|libkrb|libk5|libgssapi|libcom_err|libkeyutils|libcrypto|libssl|libffi|libz\.so' |
    grep -v -E 'libopenblas|libgfortran|libquadmath' |
    while read -r lib; do cp -L "$lib" .devbundle/devlibs/; done
# OpenBLAS itself (36 MB) does not fit in what a lent machine takes: a small stand-in (.ci/blas_shim.c) serves the
# CPU references there
gcc -O3 -march=x86-64-v3 -fopenmp -shared -fPIC -Wl,-soname,libopenblas.so.0 -o .devbundle/devlibs/libopenblas.so.0 \
    .ci/blas_shim.c
# the commit the binaries were built from (the device machine's copy of .git can lag behind: device_check.sh and
# device_focus.sh print this one)
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!.devbundle' ':!.devembed' || echo -dirty)" >.devbundle/build/COMMIT
du -sh .devbundle .devbundle/build .devbundle/devlibs
# one solid archive (the binaries share most of their bytes); the unpacked tree is removed so only it travels. A
# dictionary as large as the tree (~430 MB at d41d7c9) lets xz find each binary's copy of the kernels in the first
# one: 6.3 MB instead of 13.1 MB with -9's 64 MiB (about 6 GB of memory and 2 minutes here, one thread; unpacking
# needs 512 MiB)
tar -C .devbundle -cf - build devlibs | xz --lzma2=preset=9,dict=512MiB -T1 >.devbundle/bundle.tar.xz
rm -rf .devbundle/build .devbundle/devlibs
ls -la .devbundle/bundle.tar.xz
