#!/usr/bin/env bash
# Build the Spark Operator binary the cluster tests (tests/cluster/test_spark_operator.py) run as the
# controller (`spark-operator controller start`) and the mutating webhook (`spark-operator webhook start`):
#   spark-operator  from github.com/kubeflow/spark-operator/v2/cmd/operator (pinned in tools/spark-operator/go.mod)
# into .cache/kube/bin/ (git-ignored), next to kube-apiserver and etcd (scripts/kube-binaries.sh), and the
# CRDs of the same release's chart (charts/spark-operator-chart/crds: SparkApplication,
# ScheduledSparkApplication and SparkConnect, which the controller also watches) into
# .cache/kube/bin/spark-operator-crds/.
# Idempotent: when the binary exists and the stamp matches the pinned version and the go.mod/go.sum
# contents, it does nothing.
#
# Same Go caches as kube-binaries (.cache/go/{mod,build}). Cold build on 2 cores: see docs/spark-operator.md.
#
# Environment:
#   KUBE_BIN_DIR   output directory       (default: <repo>/.cache/kube/bin)
#   GO_CACHE_DIR   GOMODCACHE/GOCACHE dir (default: <repo>/.cache/go)
#   FORCE=1        rebuild even when the stamp matches
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tools/spark-operator"
BIN_DIR="${KUBE_BIN_DIR:-$ROOT/.cache/kube/bin}"
GO_CACHE_DIR="${GO_CACHE_DIR:-$ROOT/.cache/go}"
STAMP="$BIN_DIR/.spark-operator-version"
CRD_DIR="$BIN_DIR/spark-operator-crds"
MODULE=github.com/kubeflow/spark-operator/v2

log() { printf 'spark-operator-binary: %s\n' "$*"; }
die() { printf 'spark-operator-binary: ERROR: %s\n' "$*" >&2; exit 1; }

VERSION="$(awk -v m="$MODULE" '($1 == "require" && $2 == m) { print $3; exit } ($1 == m && $2 ~ /^v/) { print $2; exit }' "$TOOLS/go.mod")"
[[ "$VERSION" =~ ^v2\.[0-9]+\.[0-9]+$ ]] || die "cannot read $MODULE version from $TOOLS/go.mod"
sums="$(cat "$TOOLS/go.mod" "$TOOLS/go.sum" | sha256sum | cut -c1-16)"
want_stamp="spark-operator=$VERSION gomod=$sums"

log "pinned: spark-operator $VERSION"
if [[ "${FORCE:-0}" != 1 && -x "$BIN_DIR/spark-operator" && -f "$CRD_DIR/sparkoperator.k8s.io_sparkconnects.yaml" \
      && -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]]; then
    log "up to date: $BIN_DIR/spark-operator (nothing to do)"
    exit 0
fi

command -v go >/dev/null || die "go not found on PATH (need Go >= 1.24 to build spark-operator $VERSION)"
export GOFLAGS=-mod=mod
export GOMODCACHE="$GO_CACHE_DIR/mod"
export GOCACHE="$GO_CACHE_DIR/build"
export GOTOOLCHAIN=local   # never download another toolchain behind our back
export CGO_ENABLED=0       # static, like the upstream image's build (make build-operator)
mkdir -p "$BIN_DIR" "$GOMODCACHE" "$GOCACHE"
log "using $(go env GOVERSION), GOMODCACHE=$GOMODCACHE, GOCACHE=$GOCACHE"

tmp="$(mktemp -d "$BIN_DIR/.build-spark-operator.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
rm -f "$STAMP"

start=$SECONDS
log "[1/3] downloading Go modules"
(cd "$TOOLS" && go mod download)
log "      downloaded in $((SECONDS - start))s"

# The version stamp upstream's Makefile (build-operator) sets, so `spark-operator version` reports the release.
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$VERSION -X $vpkg.gitTreeState=clean"
log "[2/3] building spark-operator $VERSION"
t=$SECONDS
(cd "$TOOLS" && go build -trimpath -ldflags="$ldflags" -o "$tmp/spark-operator" "$MODULE/cmd/operator")
log "      built in $((SECONDS - t))s"

log "[3/3] checking and installing into $BIN_DIR"
says="$("$tmp/spark-operator" version --short)"
[[ "$says" == "Git Version: $VERSION" ]] || die "spark-operator version says '$says', expected 'Git Version: $VERSION'"
for sub in controller webhook; do
    "$tmp/spark-operator" "$sub" start --help >/dev/null || die "spark-operator $sub start --help failed"
done
moddir="$(cd "$TOOLS" && go list -m -f '{{.Dir}}' "$MODULE")"
crds=("$moddir"/charts/spark-operator-chart/crds/*.yaml)
[[ -f "${crds[0]}" ]] || die "no CRDs in $moddir/charts/spark-operator-chart/crds"
rm -rf "$CRD_DIR" && mkdir -p "$CRD_DIR"
cp "${crds[@]}" "$CRD_DIR/" && chmod u+w "$CRD_DIR"/*.yaml   # the module cache is read-only
mv -f "$tmp/spark-operator" "$BIN_DIR/spark-operator"
printf '%s\n' "$want_stamp" > "$STAMP"
log "done in $((SECONDS - start))s: $(du -h "$BIN_DIR/spark-operator" | cut -f1) spark-operator, ${#crds[@]} CRDs in $CRD_DIR"
