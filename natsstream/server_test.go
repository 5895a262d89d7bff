package natsstream

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// node is one embedded nats-server with JetStream on a store directory that outlives it,
// so that it can be stopped and started again as the same server.
type node struct {
	tb   testing.TB
	opts server.Options
	srv  *server.Server
}

func (n *node) start() {
	n.tb.Helper()
	opts := n.opts // NewServer keeps and changes its options
	srv, err := server.NewServer(&opts)
	if err != nil {
		n.tb.Fatalf("nats-server %s: %v", n.opts.ServerName, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		srv.Shutdown()
		n.tb.Fatalf("nats-server %s: not ready", n.opts.ServerName)
	}
	n.srv = srv
	// Ports asked as -1 (random) are kept for a restart as the same server.
	n.opts.Port = srv.Addr().(*net.TCPAddr).Port
	if n.opts.Cluster.Port != 0 {
		n.opts.Cluster.Port = srv.ClusterAddr().Port
	}
}

func (n *node) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func (n *node) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port) }

func baseOpts(name, dir string) server.Options {
	return server.Options{
		ServerName:         name,
		Host:               "127.0.0.1",
		Port:               -1,
		JetStream:          true,
		StoreDir:           dir,
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  1 << 30,
		NoLog:              true,
		NoSigs:             true,
	}
}

// startServer runs one JetStream server on a random port; mods change its options.
func startServer(tb testing.TB, mods ...func(*server.Options)) *node {
	tb.Helper()
	n := &node{tb: tb, opts: baseOpts("n1", tb.TempDir())}
	for _, mod := range mods {
		mod(&n.opts)
	}
	n.start()
	tb.Cleanup(n.stop)
	return n
}

// startCluster runs a JetStream cluster of size servers on loopback. Client ports are
// random; cluster ports are picked free beforehand, because a clustered JetStream server
// refuses to start without its routes, and each server's list names them all.
func startCluster(tb testing.TB, size int, mods ...func(*server.Options)) []*node {
	tb.Helper()
	ports := freePorts(tb, size)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	nodes := make([]*node, size)
	for i := range nodes {
		opts := baseOpts(fmt.Sprintf("n%d", i+1), tb.TempDir())
		opts.Cluster = server.ClusterOpts{Name: "hashgrid", Host: "127.0.0.1", Port: ports[i]}
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		for _, mod := range mods {
			mod(&opts)
		}
		nodes[i] = &node{tb: tb, opts: opts}
	}
	for _, n := range nodes {
		n.start()
		tb.Cleanup(n.stop)
	}
	return nodes
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// syncAlways makes a server fsync every write to its streams (sync_interval: always)
// instead of every two minutes.
func syncAlways(o *server.Options) { o.SyncAlways = true }

func connect(tb testing.TB, nodes ...*node) *nats.Conn {
	tb.Helper()
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url())
	}
	nc, err := nats.Connect(strings.Join(urls, ","),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.Timeout(2*time.Second))
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// open opens a Stream, retrying while a fresh cluster elects its JetStream leader.
func open(tb testing.TB, nc *nats.Conn, opts Options) *Stream {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := Open(ctx, nc, opts)
		cancel()
		if err == nil {
			tb.Cleanup(func() { s.Close() })
			return s
		}
		if time.Now().After(deadline) {
			tb.Fatalf("open: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // polling for the cluster to form
	}
}
