# Tier 4: a real kube-apiserver + etcd, built from the Go module proxy (tools/kube), cached in .cache/kube.
KUBE_BIN := $(CACHE)/kube/bin
TEST_CLUSTER_DEPS += kube-binaries

.PHONY: kube-binaries
kube-binaries: ## build kube-apiserver + etcd for the cluster tier (cached; ~10 min cold on 2 cores)
	@bash scripts/kube-binaries.sh
