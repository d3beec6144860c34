#!/usr/bin/env bash
# Render the four SparkApplication CRs from the chart into one file per job, for `kubectl apply`:
#   scripts/helm-render-pipeline.sh [OUT_DIR] [extra helm template args...]     (default OUT_DIR: spark/k8s)
# `make chart-render` writes spark/k8s/ with it; tests/manifests/test_chart_pipeline_files.py renders
# again into a temporary directory and requires the committed files to be identical.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-spark/k8s}"
[ $# -gt 0 ] && shift
HELM="${HELM:-.cache/bin/helm}"
NAMESPACE="${NAMESPACE:-marketing-engine}"
RELEASE="${RELEASE:-marketing-engine}"
command -v "$HELM" >/dev/null 2>&1 || { echo "helm-render-pipeline: $HELM not found (make helm-tool)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$HELM" template "$RELEASE" charts/marketing-engine --namespace "$NAMESPACE" --kube-version 1.36.1 \
    --set pipeline.enabled=true --set managedBy=kubectl \
    --show-only templates/spark-applications.yaml "$@" > "$tmp/all.yaml"

# Split on document markers; name each file after the job (metadata.name minus the release prefix).
awk -v dir="$tmp" -v prefix="$RELEASE-" '
    /^---/ { n++; next }
    /^# Source:/ { next }
    { doc[n] = doc[n] $0 "\n" }
    /^  name: / && !(n in name) { name[n] = $2 }
    END {
        for (i in doc) {
            if (!(i in name)) continue
            job = name[i]; sub("^" prefix, "", job)
            f = dir "/" job ".yaml"
            printf "# SparkApplication %s, rendered from charts/marketing-engine by `make chart-render`.\n", name[i] > f
            printf "# Do not edit: change the chart values (pipeline.*) and render again.\n" > f
            printf "# Apply by hand: kubectl apply -n %s -f spark/k8s/ (or: make pipeline)\n", ns > f
            printf "---\n%s", doc[i] > f
            close(f)
        }
    }' ns="$NAMESPACE" "$tmp/all.yaml"

count="$(find "$tmp" -name '*.yaml' ! -name all.yaml | wc -l | tr -d ' ')"
[ "$count" -gt 0 ] || { echo "helm-render-pipeline: no SparkApplication rendered" >&2; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT"/*.yaml
for f in "$tmp"/*.yaml; do
    [ "$(basename "$f")" = all.yaml ] || cp "$f" "$OUT/"
done
echo "helm-render-pipeline: $count SparkApplications -> $OUT/"
