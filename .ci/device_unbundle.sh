#!/usr/bin/env bash
# .ci/device_unbundle.sh: on the lent GPU machine, unpacks .devbundle/bundle.tar.xz (made by .ci/device_bundle.sh)
# into .devbundle/{build,devlibs} and puts the binaries in build/ for `RK_PREBUILT=1 make device-check`. Uses tar + xz
# when present, else Python's tarfile (lzma is in the standard library).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .devbundle/bundle.tar.xz ] || { echo "device_unbundle: .devbundle/bundle.tar.xz missing (run .ci/device_bundle.sh here and carry .devbundle)"; exit 1; }
rm -rf .devbundle/build .devbundle/devlibs
if command -v xz >/dev/null 2>&1; then
    tar -C .devbundle -xJf .devbundle/bundle.tar.xz
else
    python3 -c 'import tarfile; tarfile.open(".devbundle/bundle.tar.xz").extractall(".devbundle")'
fi
rm -rf build && cp -r .devbundle/build build
echo "device_unbundle: $(ls build/tests build/bench | wc -l) binaries in build/$([ -x build/rk-embed ] && echo ' and build/rk-embed'), libraries in .devbundle/devlibs"
