#!/bin/bash
# /opt/entrypoint.sh of the apache/spark stand-in (scripts/image-bases.sh); written for this project.
# It honours the contract the Spark Operator and Spark on Kubernetes rely on in the real image's
# entrypoint: the first argument picks the role.
#   driver ARGS...    spark-submit in client mode on the pod's address (SPARK_DRIVER_BIND_ADDRESS)
#   executor          the Kubernetes executor backend, configured by the SPARK_EXECUTOR_* / SPARK_* env
#   anything else     run as given
# Not done here (docs/images.md): nss_wrapper for a uid without a passwd entry, Kerberos/Hadoop conf.
set -euo pipefail

SPARK_HOME="${SPARK_HOME:-/opt/spark}"
SPARK_CONF_DIR="${SPARK_CONF_DIR:-$SPARK_HOME/conf}"
classpath="${SPARK_CLASSPATH:+$SPARK_CLASSPATH:}$SPARK_HOME/jars/*"
[[ -d "$SPARK_CONF_DIR" ]] && classpath="$SPARK_CONF_DIR:$classpath"
[[ -n "${HADOOP_CONF_DIR:-}" ]] && classpath="$HADOOP_CONF_DIR:$classpath"

case "${1:-}" in
    driver)
        shift
        cmd=("$SPARK_HOME/bin/spark-submit"
             --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:-}"
             --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS:-}"
             --deploy-mode client "$@")
        ;;
    executor)
        shift
        # Spark passes the executor's JVM options as SPARK_JAVA_OPT_0, _1, ... in order.
        java_opts=()
        while IFS='=' read -r name _; do
            java_opts+=("${!name}")
        done < <(env | grep -E '^SPARK_JAVA_OPT_[0-9]+=' | sort -t_ -k4 -n)
        cmd=("${JAVA_HOME:-/opt/java/openjdk}/bin/java" "${java_opts[@]}"
             "-Xms${SPARK_EXECUTOR_MEMORY}" "-Xmx${SPARK_EXECUTOR_MEMORY}"
             -cp "$classpath${SPARK_DIST_CLASSPATH:+:$SPARK_DIST_CLASSPATH}"
             org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend
             --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID"
             --cores "$SPARK_EXECUTOR_CORES" --app-id "$SPARK_APPLICATION_ID"
             --hostname "$SPARK_EXECUTOR_POD_IP" --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}"
             --podName "${SPARK_EXECUTOR_POD_NAME:-}")
        ;;
    *)
        cmd=("$@")
        ;;
esac

# tini as PID 1 (-s: also as a subreaper): signals reach the JVM, zombies are reaped.
exec /usr/bin/tini -s -- "${cmd[@]}"
