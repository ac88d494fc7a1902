#!/bin/sh
# One bounded fuzz run, as ctest's fuzz_<name> tests do (cmake/fuzz.cmake):
#   run.sh BINARY NAME SECONDS MAXLEN SCRATCH
# 1. replays every input in tests/fuzz/regressions/NAME/ (crashes found
#    before: each must now pass);
# 2. fuzzes a fresh COPY of tests/fuzz/corpus/NAME/ (the tree is never
#    written) for SECONDS, inputs up to MAXLEN bytes.
# Any crash, leak, sanitizer report or timeout exits non-zero; the input is
# kept as SCRATCH/NAME/crash-* (the path is printed). docs/fuzzing.md.
set -eu
bin=$1 name=$2 secs=$3 maxlen=$4 scratch=$5
src=${PEERD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
corpus=$src/tests/fuzz/corpus/$name
regress=$src/tests/fuzz/regressions/$name
dict=$src/tests/fuzz/$name.dict
work=$scratch/$name

rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
if [ -d "$corpus" ]; then cp "$corpus"/* "$work/corpus/" 2>/dev/null || true; fi

# -rss_limit_mb: ASan's shadow memory counts; -timeout: one input, seconds.
common="-rss_limit_mb=2048 -timeout=20 -artifact_prefix=$work/artifacts/"

regs=$(find "$regress" -type f ! -name 'README*' 2>/dev/null | sort || true)
if [ -n "$regs" ]; then
  echo "== $name: replaying $(echo "$regs" | wc -l) regression input(s)"
  # shellcheck disable=SC2086 # one argument per file (names have no blanks)
  if ! "$bin" $common $regs; then
    echo "== $name: a regression input in $regress fails again" >&2
    exit 1
  fi
fi

# shellcheck disable=SC2086 # $common: several flags
set -- -max_total_time="$secs" -max_len="$maxlen" -print_final_stats=1 $common
if [ -f "$dict" ]; then set -- "$@" -dict="$dict"; fi
echo "== $name: fuzzing for ${secs}s from $(ls "$work/corpus" | wc -l) seed(s)"
if ! "$bin" "$@" "$work/corpus"; then
  echo "== $name: FAILED; the input is in $work/artifacts/:" >&2
  ls -l "$work/artifacts" >&2
  echo "(docs/fuzzing.md: fix it, then copy it into tests/fuzz/regressions/$name/)" >&2
  exit 1
fi
