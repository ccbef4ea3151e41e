#!/usr/bin/env bash
# The README's test command: installs what the tests need (system packages when run as root),
# then lints, builds and runs every test tier (unit, integration, e2e: the vitest projects of
# test/tiers.ts, each file once). Ends with one "N passed, N failed" line.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

apt_install openssl ca-certificates prometheus prometheus-alertmanager faketime
ensure_node_modules

# PostgreSQL backs the shared-datastore tests; the script installs, starts and prints its URL.
if url="$(bash scripts/postgres.sh)"; then
  export SVIDSCOPE_TEST_POSTGRES_URL="$url"
else
  log "PostgreSQL is not available; its tests will report why"
fi

log "lint"
npm run -s lint
log "build"
npm run -s build

mkdir -p .svidscope
report=.svidscope/vitest-report.json
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
node scripts/test-summary.mjs "$report" || status=$?
exit "$status"
