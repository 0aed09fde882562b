// Command etcd is the upstream etcd server (go.etcd.io/etcd/server/v3), built by
// scripts/setup/k8s.sh for the chart tests' local Kubernetes control plane.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
