#!/usr/bin/env bash
# Fuzzes spiped-crypto with cargo-fuzz (libFuzzer + AddressSanitizer): installs the
# pinned cargo-fuzz if absent, then runs every target in fuzz/ (or FUZZ_TARGETS="a b")
# for FUZZ_SECONDS each (default 60), starting from the committed seeds in
# fuzz/corpus/<target> and growing fuzz/corpus-run/<target> (not committed). Any crash,
# leak, timeout or failed assertion stops the run with a non-zero exit; the input that
# triggered it is written under fuzz/artifacts/<target>/.
#
# cargo fuzz passes nightly-only flags (-Zsanitizer=address and others); on a stable
# toolchain RUSTC_BOOTSTRAP=1 lets rustc accept them.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

CARGO_FUZZ_VERSION=0.13.1
SECONDS_EACH="${FUZZ_SECONDS:-60}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
for target in $targets; do
  mkdir -p "corpus-run/$target" "corpus/$target"
  echo "fuzz: $target for ${SECONDS_EACH}s"
  # -rss_limit_mb guards the 300 KiB-class inputs; -timeout catches a hang.
  cargo fuzz run "$target" "corpus-run/$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
    tee "corpus-run/$target.log" | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|thread .* panicked)' || true
  # The pipeline hides cargo fuzz's status: read it back from the log.
  if grep -qE 'SUMMARY: |panicked at|Test unit written to|ERROR: libFuzzer' "corpus-run/$target.log"; then
    echo "fuzz: $target FAILED (see fuzz/corpus-run/$target.log and fuzz/artifacts/$target/)" >&2
    exit 1
  fi
done
echo "fuzz: all targets ran ${SECONDS_EACH}s each without a crash"
