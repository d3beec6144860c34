//go:build tools

// Package tools records the binary this module builds, so that `go mod tidy` keeps its
// dependencies in go.mod/go.sum. Build it with scripts/spark-operator-binary.sh.
package tools

import (
	_ "github.com/kubeflow/spark-operator/v2/cmd/operator"
)
