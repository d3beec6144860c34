#!/usr/bin/env bash
# `make spark-sql`: an interactive Spark SQL shell inside the cluster, over the pipeline's Delta tables.
# Runs a throwaway pod from the Spark image (same jars as the pipeline) with the Delta volume mounted,
# Spark in local mode, under the same restricted security context as the pipeline pods; the pod is
# deleted when the shell exits. The tables that exist are registered by name (bronze_*, silver_*,
# gold_c360, gold_propensity, ...: spark/sql_shell.py, as `make spark-sql-local` does on the host).
# Arguments are passed to spark-sql, e.g.
#   make spark-sql ARGS="-e 'SELECT count(*) FROM gold_c360'"
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/kind-lib.sh
. scripts/kind-lib.sh
: "${IMAGE_TAG:=$(scripts/image-tag.sh spark)}"
# The chart's delta.mountPath (DELTA_ROOT inside the pods). Not $DELTA_ROOT: make exports the host's.
DELTA_MOUNT=/data/delta
pod="spark-sql-$(date +%s)"

# A JSON array of strings (backslash, double quote, newline and tab escaped), without python or jq.
json_array() {
    local out="" item
    for item in "$@"; do
        item="${item//\\/\\\\}"; item="${item//\"/\\\"}"
        item="${item//$'\n'/\\n}"; item="${item//$'\t'/\\t}"
        out="${out:+$out, }\"$item\""
    done
    printf '[%s]' "$out"
}

# In the pod: write the view definitions, then exec spark-sql with them (-i) and the user's arguments.
# shellcheck disable=SC2016  # expanded in the pod, not here
script='export PYTHONPATH="/opt/marketing-engine:/opt/spark/python:$(ls /opt/spark/python/lib/py4j-*-src.zip)"
/opt/venv/bin/python -c "import sys; from spark.settings import JobSettings; from spark.sql_shell import init_sql; sys.stdout.write(init_sql(JobSettings.from_env()))" > /tmp/init.sql \
  || echo "spark-sql: could not register the tables by name; use delta.\`/data/delta/...\`" >&2
exec /opt/spark/bin/spark-sql "$@"'
args=(-c "$script" spark-sql
      --master "local[2]"
      --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension
      --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog
      --conf spark.sql.session.timeZone=UTC
      --conf spark.sql.warehouse.dir=/tmp/spark-warehouse
      --conf "spark.hadoop.javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName=/tmp/metastore_db;create=true"
      --conf spark.ui.enabled=false
      --driver-memory 768m
      -i /tmp/init.sql
      "$@")

overrides=$(cat <<EOF
{
  "apiVersion": "v1",
  "metadata": {"labels": {"app.kubernetes.io/name": "marketing-engine", "app.kubernetes.io/component": "spark-sql",
                          "app.kubernetes.io/part-of": "marketing-engine"}},
  "spec": {
    "automountServiceAccountToken": false,
    "securityContext": {"runAsNonRoot": true, "runAsUser": 185, "runAsGroup": 185, "fsGroup": 185,
                        "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{
      "name": "spark-sql",
      "image": "marketing-engine/spark:${IMAGE_TAG}",
      "imagePullPolicy": "IfNotPresent",
      "stdin": true, "tty": true,
      "workingDir": "/tmp",
      "command": ["/bin/bash"],
      "args": $(json_array "${args[@]}"),
      "env": [{"name": "DELTA_ROOT", "value": "${DELTA_MOUNT}"}],
      "resources": {"requests": {"cpu": "100m", "memory": "1280Mi"}, "limits": {"cpu": "2", "memory": "1280Mi"}},
      "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
                          "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
      "volumeMounts": [{"name": "delta", "mountPath": "${DELTA_MOUNT}"}, {"name": "tmp", "mountPath": "/tmp"}]
    }],
    "volumes": [{"name": "delta", "persistentVolumeClaim": {"claimName": "${RELEASE}-delta"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
  }
}
EOF
)

say "Spark SQL over ${DELTA_MOUNT} in the cluster (e.g. SELECT * FROM gold_c360 LIMIT 10;). Ctrl-D to quit."
exec kubectl --context "$KUBE_CONTEXT" -n "$NAMESPACE" run "$pod" --rm -it --restart=Never \
    --image="marketing-engine/spark:${IMAGE_TAG}" --overrides="$overrides"
