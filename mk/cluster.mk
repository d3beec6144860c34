# Tier 4: a real kube-apiserver + etcd, built from the Go module proxy (tools/kube), cached in .cache/kube;
# and the real Spark Operator (controller + webhook binary, tools/spark-operator) run against it.
KUBE_BIN := $(CACHE)/kube/bin
TEST_CLUSTER_DEPS += kube-binaries spark-operator-binary

.PHONY: kube-binaries spark-operator-binary
kube-binaries: ## build kube-apiserver + etcd for the cluster tier (cached; ~10 min cold on 2 cores)
	@bash scripts/kube-binaries.sh

spark-operator-binary: ## build the Spark Operator 2.5.2 binary for the cluster tier (cached; see docs/spark-operator.md)
	@bash scripts/spark-operator-binary.sh
