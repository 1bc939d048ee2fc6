#!/bin/sh
# build.sh - configure (once) and build mailroom in build/.
set -eu
cd "$(dirname "$0")/.."
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build
