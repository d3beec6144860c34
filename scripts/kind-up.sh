#!/usr/bin/env bash
# `make kind-up`: the whole platform on a local kind cluster. Idempotent: every step creates what is
# missing and upgrades what exists, so running it again is safe (and is how you apply changes).
#
# Steps: check tools -> kind cluster -> build + load images -> namespaces -> Redpanda, Spark Operator,
# Kafka UI (official charts, pinned versions, charts/values/*.yaml) -> wait for Redpanda -> our chart
# -> wait for every component -> SparkApplications (spark/k8s/) -> seed -> every pod Ready -> URLs.
# Every failure ends with the troubleshooting hint (the EXIT trap below).
#
# Environment (exported by mk/kind.mk): KIND_CLUSTER NAMESPACE RELEASE HELM APP_IMAGE_TAG SPARK_IMAGE_TAG VALUES
# REDPANDA_CHART_VERSION SPARK_OPERATOR_CHART_VERSION KAFKA_UI_CHART_VERSION MEMORY_REQUEST_MIB
# CPU_REQUEST_M DOCKER_MEMORY_GIB WEB_HOST_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/kind-lib.sh
. scripts/kind-lib.sh
trap 'rc=$?; [ "$rc" = 0 ] || closing_hint; exit "$rc"' EXIT

: "${REDPANDA_CHART_VERSION:=26.2.2}" "${SPARK_OPERATOR_CHART_VERSION:=2.5.2}" "${KAFKA_UI_CHART_VERSION:=1.5.2}"
: "${APP_IMAGE_TAG:=$(scripts/image-tag.sh app)}" "${SPARK_IMAGE_TAG:=$(scripts/image-tag.sh spark)}"
: "${VALUES:=}" "${WEB_HOST_PORT:=30500}"
: "${MEMORY_REQUEST_MIB:=10240}" "${CPU_REQUEST_M:=3000}" "${DOCKER_MEMORY_GIB:=11}"
TIMEOUT="${KIND_UP_TIMEOUT:-600}"
# Helm's --timeout also bounds the charts' hook Jobs (Redpanda's post-install configuration Job).
HELM_TIMEOUT="${KIND_UP_HELM_TIMEOUT:-15m}"
PODS_TIMEOUT="${KIND_UP_PODS_TIMEOUT:-$(( TIMEOUT < 180 ? TIMEOUT : 180 ))}"
KIND_CONFIG=kind-config.yaml
user_values=()
[ -n "$VALUES" ] && user_values=(-f "$VALUES")

say "== 1/8 tools"
check_tools
check_docker_resources "$MEMORY_REQUEST_MIB" "$CPU_REQUEST_M" "$DOCKER_MEMORY_GIB"

say "== 2/8 kind cluster '$KIND_CLUSTER' ($KIND_CONFIG)"
# The Delta tables land here on the host (kind extraMounts). The Spark pods run as uid 185, which
# fsGroup cannot reach on a hostPath: the directory is made writable for them.
mkdir -p data/delta && chmod 0777 data/delta
if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    say "  exists"
else
    check_host_ports "$KIND_CONFIG"
    config="$(kind_config_for_host "$KIND_CONFIG")"
    [ "$config" = "$KIND_CONFIG" ] || say "  SELinux is enforcing: the Delta mount is relabelled (selinuxRelabel, $config)"
    kind create cluster --name "$KIND_CLUSTER" --config "$config" --wait 120s
fi
kc cluster-info >/dev/null || die "cannot reach cluster context $KUBE_CONTEXT"

say "== 3/8 images (marketing-engine/app:$APP_IMAGE_TAG, marketing-engine/spark:$SPARK_IMAGE_TAG)"
make --no-print-directory images APP_IMAGE_TAG="$APP_IMAGE_TAG" SPARK_IMAGE_TAG="$SPARK_IMAGE_TAG"

say "== 4/8 namespaces"
for ns in "$NAMESPACE" redpanda spark-operator kafka-ui; do
    kc create namespace "$ns" --dry-run=client -o yaml | kc apply -f - >/dev/null
done
# Our pods meet the restricted Pod Security Standard (tests/manifests); enforce baseline, warn and audit
# on restricted so a regression shows up as a warning instead of a stuck rollout.
kc label namespace "$NAMESPACE" --overwrite \
    pod-security.kubernetes.io/enforce=baseline \
    pod-security.kubernetes.io/warn=restricted \
    pod-security.kubernetes.io/audit=restricted >/dev/null
say "  $NAMESPACE redpanda spark-operator kafka-ui"

say "== 5/8 third-party charts (official repositories, pinned versions)"
"$HELM" repo add redpanda https://charts.redpanda.com --force-update >/dev/null
"$HELM" repo add spark-operator https://kubeflow.github.io/spark-operator --force-update >/dev/null
"$HELM" repo add kafbat-ui https://kafbat.github.io/helm-charts --force-update >/dev/null
"$HELM" repo update redpanda spark-operator kafbat-ui >/dev/null
helm_install redpanda redpanda/redpanda "$REDPANDA_CHART_VERSION" redpanda charts/values/redpanda.yaml
helm_install spark-operator spark-operator/spark-operator "$SPARK_OPERATOR_CHART_VERSION" spark-operator \
    charts/values/spark-operator.yaml
helm_install kafka-ui kafbat-ui/kafka-ui "$KAFKA_UI_CHART_VERSION" kafka-ui charts/values/kafka-ui.yaml

say "== 6/8 waiting for the platform"
wait_for "redpanda" "$TIMEOUT" sts_ready redpanda redpanda
wait_for "spark-operator controller" "$TIMEOUT" deploy_ready spark-operator spark-operator-controller
wait_for "spark-operator webhook" "$TIMEOUT" deploy_ready spark-operator spark-operator-webhook
wait_for "kafka-ui" "$TIMEOUT" deploy_ready kafka-ui kafka-ui

say "== 7/8 marketing-engine chart (release $RELEASE, namespace $NAMESPACE)"
make --no-print-directory chart-sync >/dev/null
"$HELM" upgrade --install "$RELEASE" charts/marketing-engine --kube-context "$KUBE_CONTEXT" -n "$NAMESPACE" \
    --set images.app.tag="$APP_IMAGE_TAG" --set images.spark.tag="$SPARK_IMAGE_TAG" ${user_values[@]+"${user_values[@]}"} >/dev/null
failed=0
wait_for "topics" "$TIMEOUT" jobs_complete "$NAMESPACE" "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=topics" || failed=1
wait_for "redis" "$TIMEOUT" deploy_ready "$NAMESPACE" "$RELEASE-redis" || failed=1
wait_for "ksqldb" "$TIMEOUT" deploy_ready "$NAMESPACE" "$RELEASE-ksqldb" || failed=1
wait_for "ksql-operator" "$TIMEOUT" deploy_ready "$NAMESPACE" "$RELEASE-ksql-operator" || failed=1
wait_for "web" "$TIMEOUT" deploy_ready "$NAMESPACE" "$RELEASE-web" || failed=1
wait_for "web-feeder" "$TIMEOUT" deploy_ready "$NAMESPACE" "$RELEASE-web-feeder" || failed=1

say "== 8/8 Spark pipeline (spark/k8s/ with the Spark image's tag) and seed"
make --no-print-directory pipeline SPARK_IMAGE_TAG="$SPARK_IMAGE_TAG" >/dev/null
for app in bronze silver gold score; do
    wait_for "spark $app" "$TIMEOUT" spark_app_running "$NAMESPACE" "$RELEASE-$app" || failed=1
done
wait_for "seed" "${KIND_SEED_TIMEOUT:-900}" jobs_complete "$NAMESPACE" "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=seed" || failed=1
# The waits above watch one object each; a pod left Pending (no room on the node) or not Ready
# elsewhere must not pass for success.
wait_for "every pod Ready" "$PODS_TIMEOUT" all_pods_ready "$NAMESPACE" redpanda spark-operator kafka-ui || failed=1

if [ "$failed" = 0 ] && [ "${KIND_VERIFY:-1}" = 1 ]; then
    say "== verify: one probe customer through every hop (make verify; KIND_VERIFY=0 skips it)"
    if ! verify_release; then
        failed=1
        say "  verify failed. Right after the seed the Spark jobs may still be working through its backlog"
        say "  (make status shows each layer's newest batch): run 'make verify' again in a few minutes."
    fi
fi

cat <<EOF

Marketing Engine is up on kind cluster '$KIND_CLUSTER' (kubectl context $KUBE_CONTEXT).
  Web UI            http://localhost:$WEB_HOST_PORT
  Kafka UI          http://localhost:8080
  Kafka (host)      localhost:31092
  Schema Registry   http://localhost:30081
  HTTP Proxy        http://localhost:30082
  Delta tables      ./data/delta
Next: make verify | make status | make logs C=web | make ksql | make spark-sql | make kind-seed | make kind-down
EOF
if [ "$failed" = 1 ]; then
    say ""
    say "Some components were not ready in time or failed (above)."
    exit 1
fi
