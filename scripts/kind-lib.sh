# shellcheck shell=bash
# Shared helpers of the kind scripts (sourced, not run). Settings come from the environment that
# mk/kind.mk exports; the defaults below match it.

KIND_CLUSTER="${KIND_CLUSTER:-marketing-engine}"
NAMESPACE="${NAMESPACE:-marketing-engine}"
RELEASE="${RELEASE:-marketing-engine}"
HELM="${HELM:-helm}"
KUBE_CONTEXT="kind-${KIND_CLUSTER}"

say() { printf '%s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

kc() { kubectl --context "$KUBE_CONTEXT" "$@"; }

# How to get each tool, printed when it is missing.
install_hint() {
    case "$1" in
        docker) echo "Docker Engine or Docker Desktop: https://docs.docker.com/get-docker/ (then start it)";;
        kind) echo "kind v0.32.0: 'go install sigs.k8s.io/kind@v0.32.0' or https://kind.sigs.k8s.io/docs/user/quick-start/#installation";;
        kubectl) echo "kubectl (v1.35-1.37): https://kubernetes.io/docs/tasks/tools/#kubectl";;
        helm) echo "Helm >= 3.18 or 4.x: https://helm.sh/docs/intro/install/ , or 'make helm-tool' (builds Helm ${HELM_VERSION:-v4.3.1} with Go into .cache/bin)";;
        *) echo "see docs/kubernetes.md";;
    esac
}

# Check every tool kind-up needs; report all missing ones at once.
check_tools() {
    local missing=0 tool path
    for tool in docker kind kubectl helm; do
        path="$tool"
        [ "$tool" = helm ] && path="$HELM"
        if ! command -v "$path" >/dev/null 2>&1; then
            say "  missing: $tool -> $(install_hint "$tool")"
            missing=1
        fi
    done
    [ "$missing" = 0 ] || die "install the tools above, then run make kind-up again"
    docker info >/dev/null 2>&1 || die "docker is installed but the daemon does not answer (start Docker Desktop / dockerd)"
}

# Warn when Docker has less memory than the stack requests (docs/kubernetes.md: memory budget).
check_docker_memory() {
    local want_mib="$1" have
    have="$(docker info --format '{{.MemTotal}}' 2>/dev/null || echo 0)"
    [ "$have" -gt 0 ] 2>/dev/null || return 0
    have=$((have / 1024 / 1024))
    if [ "$have" -lt "$want_mib" ]; then
        say "  WARNING: Docker has ${have} MiB of memory; the stack requests ~${want_mib} MiB."
        say "           Give Docker more memory, or see docs/kubernetes.md (Memory budget) for smaller values."
    fi
}

# One progress line per component: "  <name> ... waiting" then "ready in Ns" (or the error).
# Usage: wait_for <label> <timeout-seconds> <command...>; the command is retried until it succeeds.
wait_for() {
    local label="$1" timeout="$2"; shift 2
    local start now elapsed
    start="$(date +%s)"
    if [ -t 1 ]; then printf '  %-28s waiting' "$label"; fi
    while true; do
        if "$@" >/dev/null 2>&1; then
            elapsed=$(( $(date +%s) - start ))
            if [ -t 1 ]; then printf '\r  %-28s ready in %ss   \n' "$label" "$elapsed"
            else printf '  %-28s ready in %ss\n' "$label" "$elapsed"; fi
            return 0
        fi
        now="$(date +%s)"; elapsed=$(( now - start ))
        if [ "$elapsed" -ge "$timeout" ]; then
            if [ -t 1 ]; then printf '\r  %-28s NOT ready after %ss\n' "$label" "$elapsed"
            else printf '  %-28s NOT ready after %ss\n' "$label" "$elapsed"; fi
            return 1
        fi
        if [ -t 1 ]; then printf '\r  %-28s waiting %ss ' "$label" "$elapsed"; fi
        sleep 3
    done
}

# Readiness probes used with wait_for.
deploy_ready() { # <namespace> <deployment>
    local want have
    want="$(kc -n "$1" get deploy "$2" -o jsonpath='{.spec.replicas}')" || return 1
    have="$(kc -n "$1" get deploy "$2" -o jsonpath='{.status.readyReplicas}')" || return 1
    [ -n "$want" ] && [ "${have:-0}" -ge "$want" ]
}
sts_ready() { # <namespace> <statefulset>
    local want have
    want="$(kc -n "$1" get sts "$2" -o jsonpath='{.spec.replicas}')" || return 1
    have="$(kc -n "$1" get sts "$2" -o jsonpath='{.status.readyReplicas}')" || return 1
    [ -n "$want" ] && [ "${have:-0}" -ge "$want" ]
}
jobs_complete() { # <namespace> <label selector>: every Job with the label has succeeded
    local out
    out="$(kc -n "$1" get jobs -l "$2" -o jsonpath='{range .items[*]}{.status.succeeded}{" "}{end}')" || return 1
    [ -n "$out" ] && ! printf '%s' "$out" | grep -qvE '^(1 )+$'
}
spark_app_running() { # <namespace> <sparkapplication>
    [ "$(kc -n "$1" get sparkapplication "$2" -o jsonpath='{.status.applicationState.state}')" = RUNNING ]
}
