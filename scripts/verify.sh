#!/usr/bin/env bash
# `make verify`: one probe customer through every hop of the running kind stack (the chart's helm test
# hook runs python -m verify in the cluster). `make verify-local` runs the same code here against the
# endpoints in the environment instead.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/kind-lib.sh
source scripts/kind-lib.sh
verify_release
