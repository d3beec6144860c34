#!/usr/bin/env bash
# `make forget CUSTOMER=<id>`: forget a customer in the kind cluster (docs/forget.md): publish the request,
# run the erasure job now, print its report and the check of the web UI's cache and ksqlDB's view.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/kind-lib.sh
source scripts/kind-lib.sh
run_forget "${CUSTOMER:-}"
