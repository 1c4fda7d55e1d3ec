#!/bin/sh
# Install one locked requirements file from the host-built wheelhouse into one folder, in a build stage:
#   sh install-deps.sh REQUIREMENTS WHEELHOUSE TARGET
# The wheelhouse is built on the host for the image's Python ABI, so this needs no network (builds run
# with --network=none) and no compiler. --no-deps: each file is one part of a complete lock (the shared
# services/common/requirements.txt and the service's own), so pip must not pull a part into the other.
set -eu
requirements="$1" wheels="$2" target="$3"
python3 -m pip install --no-index --find-links="$wheels" --no-deps --no-compile --disable-pip-version-check \
    --no-cache-dir --target="$target" -r "$requirements"
rm -rf "$target/bin"
# Cython sources ship in some wheels (asyncpg, uvloop: several MB) and are never read; type stubs neither.
find "$target" \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.c' -o -name '*.h' \
    -o -name '*.pyi' \) -delete
# Shared objects carry debug symbols (uvloop's alone: ~10 MB); strip where the build base has strip.
if command -v strip >/dev/null; then find "$target" -name '*.so' -exec strip --strip-unneeded {} +; fi
# Bytecode with unchecked hashes: the runtime filesystem is read-only, and the .pyc must be used whatever
# the files' timestamps.
python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash "$target"
