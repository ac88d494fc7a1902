#!/bin/sh
# build.sh DIR [cmake args...] — configure and build peerd into DIR.
set -eu
dir=$1; shift
cd "$(dirname "$0")/.."
cmake -S . -B "$dir" "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
