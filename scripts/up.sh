#!/usr/bin/env bash
# The README's main-job command: installs what is missing, builds, and starts the local stack on
# its embedded defaults (SQLite, data under .svidscope/). Stops cleanly on Ctrl-C or SIGTERM.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

apt_install openssl ca-certificates || true
# Prometheus and Alertmanager for the stack's monitoring, libfaketime for game-day clock skew:
# optional (up says how to install what is missing), so a non-root run still starts the stack.
apt_install prometheus prometheus-alertmanager faketime || true
ensure_node_modules
log "build"
npm run -s build
exec node bin/svidscope.js up --data-dir .svidscope/up "$@"
