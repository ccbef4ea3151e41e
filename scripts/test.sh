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
stalled=.svidscope/stalled-files.txt
reporters=(--reporter=default --reporter=json --reporter=./test/support/stall-watchdog.ts)
npx vitest run "${reporters[@]}" --outputFile.json="$report" "$@" || status=$?
if [ -s "$stalled" ]; then
  # The stall watchdog ended a worker that stopped answering (its log above says what it was
  # doing). Those files run once more on their own; their results replace the stalled ones, and
  # the exit status comes from the merged results (vitest's own counts the ended worker).
  mapfile -t files < "$stalled"
  log "running again, on their own, the files whose worker stalled: ${files[*]}"
  rerun=.svidscope/vitest-report-rerun.json
  status=0
  npx vitest run "${reporters[@]}" --outputFile.json="$rerun" "${files[@]}" || status=$?
  node scripts/test-summary.mjs --rerun "$rerun" --stalled "$stalled" "$report" || status=$?
else
  node scripts/test-summary.mjs --stalled "$stalled" "$report" || status=$?
fi
exit "$status"
