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

# The closing hint of every failed run (kind-up.sh runs it from its EXIT trap).
closing_hint() {
    say ""
    say "make kind-up did not finish: see 'make status' and 'make logs', and the troubleshooting section"
    say "of docs/kubernetes.md. Running 'make kind-up' again is safe: it picks up where it stopped."
}

# Who listens on a TCP port of this machine. Prints "<command> (pid N)" when it can tell, and returns 0
# when something listens, 1 when the port is free. ss (Linux) sees every socket, also other users';
# lsof (macOS) sees the processes it may inspect (AirPlay's ControlCenter on :5000 is the user's own);
# without either, a connection attempt on 127.0.0.1 and ::1 tells that something listens, not who.
port_holder() { # <port>
    local port="$1" out
    if command -v ss >/dev/null 2>&1; then
        out="$(ss -Hltnp "sport = :$port" 2>/dev/null)" || out=""
        [ -n "$out" ] || return 1
        printf '%s\n' "$out" | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1
        return 0
    fi
    if command -v lsof >/dev/null 2>&1; then
        out="$(lsof -nP -iTCP:"$port" -sTCP:LISTEN 2>/dev/null | awk 'NR > 1 { print $1 " (pid " $2 ")"; exit }')"
        if [ -n "$out" ]; then printf '%s\n' "$out"; return 0; fi
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    (exec 3<>"/dev/tcp/::1/$port") 2>/dev/null && return 0
    return 1
}

# Every hostPort of the kind config must be free before `kind create cluster` binds them: report all
# busy ones at once, naming the process when possible. (Not run when the cluster exists: its own node
# container holds them then.)
check_host_ports() { # <kind config file>
    local port who busy=0
    while read -r port; do
        if who="$(port_holder "$port")"; then
            say "  host port $port is in use${who:+ by $who}"
            busy=1
        fi
    done < <(sed -n 's/^[[:space:]]*hostPort:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$1")
    [ "$busy" = 0 ] || die "free the ports above (or change hostPort in $1), then run make kind-up again"
}

# SELinux enforcing on this host (Fedora, RHEL, ...)? Then a bind mount needs relabelling before the
# node container may use it.
selinux_enforcing() {
    if command -v getenforce >/dev/null 2>&1; then
        [ "$(getenforce 2>/dev/null)" = Enforcing ]
    else
        [ "$(cat /sys/fs/selinux/enforce 2>/dev/null)" = 1 ]
    fi
}

# The kind config to create the cluster with: kind-config.yaml itself, or on an SELinux-enforcing host
# a copy whose Delta mount has kind's `selinuxRelabel: true` (the mount gets the shared :z label) and
# an absolute hostPath (the copy lives elsewhere). Prints the path.
kind_config_for_host() { # <kind config file>
    if ! selinux_enforcing; then
        printf '%s\n' "$1"
        return 0
    fi
    local copy
    copy="$(mktemp "${TMPDIR:-/tmp}/kind-config.XXXXXX")"
    sed -e "s|^\([[:space:]]*\)- hostPath: data/delta[[:space:]]*\$|\1- hostPath: $PWD/data/delta\n\1  selinuxRelabel: true|" \
        "$1" > "$copy"
    grep -q 'selinuxRelabel: true' "$copy" || die "could not add selinuxRelabel to the Delta mount of $1"
    printf '%s\n' "$copy"
}

# Docker's VM against what the stack requests (docs/kubernetes.md: Docker resources). kind reserves
# nothing for the system, so the node can allocate MemTotal minus the kubelet's 100Mi eviction
# threshold and NCPU cores; MemTotal is what the VM's kernel reports, a few percent under the size
# set in Docker Desktop (a "10 GiB" VM reports about 9.7 GiB).
check_docker_resources() { # <memory requests MiB> <cpu requests millicores> <recommended GiB>
    local want_mib="$1" want_m="$2" gib="$3" info mem cpus have_mib
    info="$(docker info --format '{{.MemTotal}} {{.NCPU}}' 2>/dev/null)" || return 0
    read -r mem cpus <<<"$info"
    if [ "${mem:-0}" -gt 0 ] 2>/dev/null; then
        have_mib=$((mem / 1024 / 1024))
        if [ $((have_mib - 100)) -lt "$want_mib" ]; then
            say "  WARNING: Docker reports ${have_mib} MiB of memory, so kind's node can allocate $((have_mib - 100)) MiB;"
            say "           the stack requests ${want_mib} MiB: pods would stay Pending. Give Docker >= ${gib} GiB,"
            say "           or see docs/kubernetes.md (Memory budget) for smaller values."
        fi
    fi
    if [ "${cpus:-0}" -gt 0 ] 2>/dev/null && [ $((cpus * 1000)) -lt "$want_m" ]; then
        say "  WARNING: Docker has ${cpus} CPUs; the stack requests ${want_m}m: pods would stay Pending."
        say "           Give Docker >= $(( (want_m + 999) / 1000 )) CPUs."
    fi
}

# helm upgrade --install of a third-party chart with an explicit timeout and a progress line before the
# silent wait. Helm 4 waits for a chart's hook Jobs even without --wait (its default strategy is
# hookOnly), each up to --timeout, 5m by default (`helm upgrade --help`, v4.3.1): too short for the
# first image pull of Redpanda's post-install configuration Job on a slow line.
helm_install() { # <release> <chart> <version> <namespace> <values file>
    say "  $1 $3: installing (up to $HELM_TIMEOUT; the first run pulls images)"
    "$HELM" upgrade --install "$1" "$2" --version "$3" --kube-context "$KUBE_CONTEXT" -n "$4" -f "$5" \
        --timeout "$HELM_TIMEOUT" >/dev/null
    say "  $1 $3: installed"
}

# One progress line per component: "  <name> ... waiting" then "ready in Ns" (or the error).
# Usage: wait_for <label> <timeout-seconds> <command...>; the command is retried while it returns 1;
# 0 is ready, 2 is failed for good (its output says what and where to look): no point in waiting on.
wait_for() {
    local label="$1" timeout="$2"; shift 2
    local start elapsed out rc
    start="$(date +%s)"
    if [ -t 1 ]; then printf '  %-28s waiting' "$label"; fi
    while true; do
        if out="$("$@" 2>&1)"; then rc=0; else rc=$?; fi
        elapsed=$(( $(date +%s) - start ))
        if [ "$rc" = 0 ]; then
            if [ -t 1 ]; then printf '\r  %-28s ready in %ss   \n' "$label" "$elapsed"
            else printf '  %-28s ready in %ss\n' "$label" "$elapsed"; fi
            return 0
        fi
        if [ "$rc" -ge 2 ]; then
            if [ -t 1 ]; then printf '\r'; fi
            printf '  %-28s FAILED after %ss: %s\n' "$label" "$elapsed" "$out"
            return 1
        fi
        if [ "$elapsed" -ge "$timeout" ]; then
            if [ -t 1 ]; then printf '\r  %-28s NOT ready after %ss\n' "$label" "$elapsed"
            else printf '  %-28s NOT ready after %ss\n' "$label" "$elapsed"; fi
            [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/    /'
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
# Every Job with the label has succeeded (0); one has failed for good (2: its backoffLimit is spent,
# the Job's Failed condition); else 1.
jobs_complete() { # <namespace> <label selector>
    local out name succeeded failed pending=0
    out="$(kc -n "$1" get jobs -l "$2" -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.succeeded}{" "}{.status.conditions[?(@.type=="Failed")].status}{"\n"}{end}')" || return 1
    [ -n "$out" ] || return 1
    while read -r name succeeded failed; do
        [ -n "$name" ] || continue
        if [ "$succeeded" = True ] || [ "$failed" = True ]; then  # read shifts an empty "succeeded"
            echo "Job $name failed; see kubectl -n $1 describe job/$name and kubectl -n $1 logs job/$name"
            return 2
        fi
        [ "${succeeded:-0}" -ge 1 ] 2>/dev/null || pending=1
    done <<<"$out"
    [ "$pending" = 0 ]
}
# One Job by name: succeeded (0), failed for good (2: its Failed condition), else 1.
job_done() { # <namespace> <job>
    local out succeeded failed
    out="$(kc -n "$1" get job "$2" -o jsonpath='{.status.succeeded}|{.status.conditions[?(@.type=="Failed")].status}')" || return 1
    IFS='|' read -r succeeded failed <<<"$out"
    if [ "$failed" = True ]; then
        echo "Job $2 failed; see kubectl -n $1 describe job/$2"
        return 2
    fi
    [ "${succeeded:-0}" -ge 1 ] 2>/dev/null
}
# RUNNING (0); FAILED, or SUBMISSION_FAILED with the submission retries of its restartPolicy spent
# (the operator resubmits until then, after onSubmissionFailureRetryInterval): 2; else 1.
spark_app_running() { # <namespace> <sparkapplication>
    local out state attempts retries message
    out="$(kc -n "$1" get sparkapplication "$2" -o jsonpath='{.status.applicationState.state}|{.status.submissionAttempts}|{.spec.restartPolicy.onSubmissionFailureRetries}|{.status.applicationState.errorMessage}')" || return 1
    IFS='|' read -r state attempts retries message <<<"$out"
    case "$state" in
        RUNNING) return 0 ;;
        FAILED) ;;
        SUBMISSION_FAILED) [ "${attempts:-0}" -gt "${retries:-0}" ] 2>/dev/null || return 1 ;;
        *) return 1 ;;
    esac
    echo "SparkApplication $2 is $state: ${message:-no message}; see kubectl -n $1 describe sparkapplication $2 and make logs C=spark-${2##*-}"
    return 2
}

# Pods of ours that are Pending, or running but not Ready (finished Job pods are skipped: the Job
# waits judge them). One line each: "<namespace>/<pod> <phase> <reason>".
pods_not_ready() { # <namespace>...
    local ns out
    for ns in "$@"; do
        out="$(kc -n "$ns" get pods -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.phase}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.status.containerStatuses[*].state.waiting.reason}{" "}{.status.conditions[?(@.type=="PodScheduled")].reason}{"\n"}{end}')" || { echo "$ns: cannot list pods"; continue; }
        printf '%s\n' "$out" | awk -v ns="$ns" '
            NF && $2 != "Succeeded" && $2 != "Failed" && !($2 == "Running" && $3 == "True") {
                reason = ""; for (i = 4; i <= NF; i++) reason = reason " " $i
                print ns "/" $1 " " $2 reason "  (kubectl -n " ns " describe pod " $1 ")"
            }'
    done
}
all_pods_ready() { # <namespace>...
    local out
    out="$(pods_not_ready "$@")"
    [ -z "$out" ] || { printf '%s\n' "$out"; return 1; }
}

# make verify in the cluster: the chart's helm test hook (python -m verify in a pod of the release's
# namespace, with the web UI's endpoints), its log printed; the exit status is the verdict.
verify_release() {
    "$HELM" test "$RELEASE" --kube-context "$KUBE_CONTEXT" -n "$NAMESPACE" --logs --timeout "${VERIFY_TIMEOUT:-15m}"
}

# make consistency: one run of the consistency check now, as a Job copied from the chart's CronJob
# (kubectl create job --from=cronjob/...), waited for, its log printed (the report's summary line); the
# exit status is the run's.
run_consistency() {
    local cron="$RELEASE-consistency" job rc=0
    kc -n "$NAMESPACE" get cronjob "$cron" >/dev/null 2>&1 \
        || die "no CronJob $cron in namespace $NAMESPACE (is the chart installed with consistency.enabled=true?)"
    job="$cron-now-$(date +%s)"
    kc -n "$NAMESPACE" create job "$job" --from="cronjob/$cron" >/dev/null
    say "consistency: Job $job (from cronjob/$cron)"
    wait_for "consistency check" "${CONSISTENCY_WAIT_S:-300}" job_done "$NAMESPACE" "$job" || rc=1
    kc -n "$NAMESPACE" logs "job/$job" --tail=100 || true
    return "$rc"
}

# A SparkApplication that ran to its end: COMPLETED (0), FAILED / SUBMISSION_FAILED (2), else 1.
spark_app_done() { # <namespace> <sparkapplication>
    local state
    state="$(kc -n "$1" get sparkapplication "$2" -o jsonpath='{.status.applicationState.state}')" || return 1
    case "$state" in
        COMPLETED) return 0 ;;
        FAILED|SUBMISSION_FAILED) echo "SparkApplication $2 is $state; see kubectl -n $1 logs $2-driver"; return 2 ;;
        *) return 1 ;;
    esac
}

# make forget CUSTOMER=<id>: the erasure request (python -m forget in the web UI's pod: it has the Kafka
# and registry settings), then one run of the erasure job now, a SparkApplication made from the chart's
# ScheduledSparkApplication template (the schedule would run it later), waited for; its report lines
# (one per customer, one per store whose VACUUM waits for a streaming reader) printed; then the check
# that the web UI's cache and ksqlDB's view hold nothing personal of the customer any more.
run_forget() { # <customer id>
    local id="$1" scheduled="$RELEASE-erasure" app template rc=0
    [ -n "$id" ] || die "usage: make forget CUSTOMER=<customer id>"
    kc -n "$NAMESPACE" get scheduledsparkapplication "$scheduled" >/dev/null 2>&1 \
        || die "no ScheduledSparkApplication $scheduled in namespace $NAMESPACE (is the chart installed with pipeline.enabled=true and erasure.enabled=true?)"
    kc -n "$NAMESPACE" exec "deploy/$RELEASE-web" -c web -- env FORGET_REQUESTED_BY="make forget" \
        python -m forget "$id" || return 2
    app="$scheduled-now-$(date +%s)"
    template="$(kc -n "$NAMESPACE" get scheduledsparkapplication "$scheduled" -o jsonpath='{.spec.template}')"
    printf '{"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication", "metadata": {"name": "%s", "namespace": "%s", "labels": {"app.kubernetes.io/part-of": "marketing-engine", "app.kubernetes.io/component": "spark-erasure"}}, "spec": %s}\n' \
        "$app" "$NAMESPACE" "$template" | kc create -f - >/dev/null
    say "forget: SparkApplication $app (from scheduledsparkapplication/$scheduled)"
    wait_for "erasure job" "${FORGET_WAIT_S:-900}" spark_app_done "$NAMESPACE" "$app" || rc=1
    kc -n "$NAMESPACE" logs "$app-driver" 2>/dev/null | grep '^erasure:' || true
    kc -n "$NAMESPACE" exec "deploy/$RELEASE-web" -c web -- python -m forget.check "$id" || rc=1
    return "$rc"
}
