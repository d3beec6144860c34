#!/usr/bin/env bash
# `make consistency`: run the consistency check now in the kind cluster (a Job from the chart's CronJob,
# which otherwise runs it every two minutes) and print its log: the report's summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/kind-lib.sh
source scripts/kind-lib.sh
run_consistency
