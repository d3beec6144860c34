//go:build tools

// Package tools records the etcd server binary this module builds, so that
// `go mod tidy` keeps its dependencies in go.mod/go.sum. Build it with
// scripts/kube-binaries.sh.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
