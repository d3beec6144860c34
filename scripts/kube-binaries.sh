#!/usr/bin/env bash
# Build the binaries the cluster tests (tests/cluster, pytest -m cluster) run:
#   kube-apiserver  from k8s.io/kubernetes   (pinned in tools/kube/go.mod)
#   etcd            from go.etcd.io/etcd/server/v3 (pinned in tools/kube/etcd/go.mod)
# into .cache/kube/bin/ (git-ignored). Idempotent: when both binaries exist and the
# stamp file matches the pinned versions and the go.mod/go.sum contents, it does nothing.
#
# Go module and build caches live in .cache/go/{mod,build} so CI can cache them
# (key: hash of tools/kube/**/go.sum). Cold build on 2 cores: ~11 min (module download
# ~1 min, etcd ~1 min, kube-apiserver ~8.5 min); nothing to do when the stamp matches.
#
# Environment:
#   KUBE_BIN_DIR   output directory       (default: <repo>/.cache/kube/bin)
#   GO_CACHE_DIR   GOMODCACHE/GOCACHE dir (default: <repo>/.cache/go)
#   FORCE=1        rebuild even when the stamp matches
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_KUBE="$ROOT/tools/kube"
TOOLS_ETCD="$ROOT/tools/kube/etcd"
BIN_DIR="${KUBE_BIN_DIR:-$ROOT/.cache/kube/bin}"
GO_CACHE_DIR="${GO_CACHE_DIR:-$ROOT/.cache/go}"
STAMP="$BIN_DIR/.versions"

log() { printf 'kube-binaries: %s\n' "$*"; }
die() { printf 'kube-binaries: ERROR: %s\n' "$*" >&2; exit 1; }

# --- pinned versions: read from the go.mod files (single source of truth) -------------
mod_version() { # <go.mod> <module path>  -> version from a `require` line or block
    awk -v m="$2" '($1 == "require" && $2 == m) { print $3; exit } ($1 == m && $2 ~ /^v/) { print $2; exit }' "$1"
}
KUBE_VERSION="$(mod_version "$TOOLS_KUBE/go.mod" k8s.io/kubernetes)"
ETCD_VERSION="$(mod_version "$TOOLS_ETCD/go.mod" go.etcd.io/etcd/server/v3)"
[[ "$KUBE_VERSION" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "cannot read k8s.io/kubernetes version from $TOOLS_KUBE/go.mod"
STAGING_VERSION="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
KUBE_MINOR="${BASH_REMATCH[1]}"
[[ "$ETCD_VERSION" =~ ^v3\.[0-9]+\.[0-9]+$ ]] || die "cannot read etcd version from $TOOLS_ETCD/go.mod"

# Every k8s.io/* staging module must be replaced by the tag matching kubernetes v1.X.Y.
bad_replaces="$(awk -v want="$STAGING_VERSION" '$2 == "=>" && $1 ~ /^k8s\.io\// && $4 != want { print "  " $0 }' "$TOOLS_KUBE/go.mod")"
[[ -z "$bad_replaces" ]] || die "staging replaces in tools/kube/go.mod must all be $STAGING_VERSION (kubernetes $KUBE_VERSION):
$bad_replaces"

sums="$(cat "$TOOLS_KUBE/go.mod" "$TOOLS_KUBE/go.sum" "$TOOLS_ETCD/go.mod" "$TOOLS_ETCD/go.sum" | sha256sum | cut -c1-16)"
want_stamp="kube-apiserver=$KUBE_VERSION etcd=$ETCD_VERSION gomod=$sums"

log "pinned: kube-apiserver $KUBE_VERSION (staging $STAGING_VERSION), etcd $ETCD_VERSION"
if [[ "${FORCE:-0}" != 1 && -x "$BIN_DIR/kube-apiserver" && -x "$BIN_DIR/etcd" && -f "$STAMP" \
      && "$(cat "$STAMP")" == "$want_stamp" ]]; then
    log "up to date: $BIN_DIR (nothing to do)"
    exit 0
fi

# --- build ------------------------------------------------------------------------------
command -v go >/dev/null || die "go not found on PATH (need Go >= 1.26 to build kube-apiserver $KUBE_VERSION)"
go_version="$(go env GOVERSION)"
if ! [[ "$go_version" =~ ^go1\.([0-9]+) ]] || (( BASH_REMATCH[1] < 26 )); then
    die "$go_version is too old: kubernetes $KUBE_VERSION needs Go >= 1.26"
fi

export GOFLAGS=-mod=mod
export GOMODCACHE="$GO_CACHE_DIR/mod"
export GOCACHE="$GO_CACHE_DIR/build"
export GOTOOLCHAIN=local   # never download another toolchain behind our back
export CGO_ENABLED=0       # static binaries, like the upstream release builds
mkdir -p "$BIN_DIR" "$GOMODCACHE" "$GOCACHE"
log "using $go_version, GOMODCACHE=$GOMODCACHE, GOCACHE=$GOCACHE"

tmp="$(mktemp -d "$BIN_DIR/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
rm -f "$STAMP"

# What hack/lib/version.sh would stamp, so /version reports the real release.
vpkg=k8s.io/component-base/version
kube_ldflags="-s -w -X $vpkg.gitVersion=$KUBE_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$KUBE_MINOR -X $vpkg.gitTreeState=clean"

start=$SECONDS
log "[1/4] downloading Go modules (kubernetes $KUBE_VERSION, etcd $ETCD_VERSION)"
(cd "$TOOLS_KUBE" && go mod download)
(cd "$TOOLS_ETCD" && go mod download)

log "[2/4] building etcd $ETCD_VERSION"
t=$SECONDS
(cd "$TOOLS_ETCD" && go build -trimpath -ldflags="-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
log "      etcd built in $((SECONDS - t))s"

log "[3/4] building kube-apiserver $KUBE_VERSION (slow the first time: ~8-9 min on 2 cores)"
t=$SECONDS
(cd "$TOOLS_KUBE" && go build -trimpath -ldflags="$kube_ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
log "      kube-apiserver built in $((SECONDS - t))s"

log "[4/4] checking and installing into $BIN_DIR"
kube_says="$("$tmp/kube-apiserver" --version)"
[[ "$kube_says" == "Kubernetes $KUBE_VERSION" ]] \
    || die "kube-apiserver --version says '$kube_says', expected 'Kubernetes $KUBE_VERSION'"
etcd_says="$("$tmp/etcd" --version)"
[[ "$etcd_says" == *"etcd Version: ${ETCD_VERSION#v}"* ]] \
    || die "etcd --version does not report ${ETCD_VERSION#v}: $etcd_says"
mv -f "$tmp/etcd" "$BIN_DIR/etcd"
mv -f "$tmp/kube-apiserver" "$BIN_DIR/kube-apiserver"
printf '%s\n' "$want_stamp" > "$STAMP"
log "done in $((SECONDS - start))s: $(du -h "$BIN_DIR/kube-apiserver" | cut -f1) kube-apiserver, $(du -h "$BIN_DIR/etcd" | cut -f1) etcd"
