#!/usr/bin/env bash
# `npm test`: unit and scenario tests (no root), the layout freshness check, then as root the
# datapath tests (BPF_PROG_TEST_RUN on the compiled objects) and the end-to-end
# tests in lab namespaces. Run scripts/setup.sh first (the README's command does).
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s globstar nullglob

run() { echo "== $1"; shift; "$@"; }

run "layouts: src/datapath/layouts.generated.ts matches xdp/include/xlb_types.h" \
  npx --no-install tsx scripts/gen-layouts.ts --check

files=(test/unit/**/*.test.ts test/scenarios/*.test.ts)
if [ "$(id -u)" -eq 0 ]; then
  files+=(test/datapath/**/*.test.ts test/e2e/**/*.test.ts)
else
  echo "not root: skipping datapath and end-to-end tests" >&2
fi
# One runner, one file at a time: end-to-end tests build whole labs on a 2-core machine.
run "tests" node --import tsx --test --test-concurrency=1 --test-timeout=600000 "${files[@]}"
