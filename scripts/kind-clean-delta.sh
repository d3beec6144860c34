#!/usr/bin/env bash
# `make kind-clean-delta`: empty ./data/delta, the Delta tables the cluster wrote (start over).
# Spark writes them as uid 185 with 0755 directories and fsGroup does not apply to a hostPath, so on a
# Linux host `rm -rf data/delta` fails without sudo: a throwaway container (root inside it) removes
# them instead. Only while the cluster is down: a running pipeline would be writing into them.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/kind-lib.sh
. scripts/kind-lib.sh
# The image the Redpanda override already pins for its init container.
CLEAN_IMAGE="${CLEAN_IMAGE:-busybox:1.37.0}"

command -v docker >/dev/null 2>&1 || die "docker not found: $(install_hint docker)"
if command -v kind >/dev/null 2>&1 && kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    die "cluster '$KIND_CLUSTER' is running and its pipeline writes to data/delta: make kind-down first"
fi
[ -d data/delta ] || { say "kind-clean-delta: no data/delta, nothing to do"; exit 0; }
# label=disable: on SELinux hosts the container may then use the bind mount without relabelling it.
docker run --rm --security-opt label=disable -v "$PWD/data/delta:/delta" "$CLEAN_IMAGE" \
    sh -c 'rm -rf /delta/* /delta/.[!.]* /delta/..?*'
say "kind-clean-delta: data/delta is empty"
