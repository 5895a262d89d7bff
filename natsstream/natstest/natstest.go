// Package natstest runs embedded NATS JetStream servers on loopback for tests and
// benchmarks: one server, or a cluster whose servers can be stopped and started again as
// the same servers.
package natstest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Server is one embedded nats-server with JetStream on a store directory that outlives
// it, so that it can be stopped and started again as the same server.
type Server struct {
	tb   testing.TB
	Opts server.Options
	srv  *server.Server
}

// Start starts the server (again) and waits until it takes connections.
func (n *Server) Start() {
	n.tb.Helper()
	opts := n.Opts // NewServer keeps and changes its options
	srv, err := server.NewServer(&opts)
	if err != nil {
		n.tb.Fatalf("nats-server %s: %v", n.Opts.ServerName, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		srv.Shutdown()
		n.tb.Fatalf("nats-server %s: not ready", n.Opts.ServerName)
	}
	n.srv = srv
	// Ports asked as -1 (random) are kept for a restart as the same server.
	n.Opts.Port = srv.Addr().(*net.TCPAddr).Port
	if n.Opts.Cluster.Port != 0 {
		n.Opts.Cluster.Port = srv.ClusterAddr().Port
	}
}

// Stop shuts the server down and waits for it; a stopped server's Stop does nothing.
func (n *Server) Stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// URL is the server's client URL.
func (n *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Opts.Port) }

// Options are a test server's: loopback, a random client port, JetStream on dir with
// 64 MiB of memory and 1 GiB of file storage, no logging, no signal handlers.
func Options(name, dir string) server.Options {
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

// Start runs one JetStream server on a random port until the test ends; mods change
// its options.
func Start(tb testing.TB, mods ...func(*server.Options)) *Server {
	tb.Helper()
	n := &Server{tb: tb, Opts: Options("n1", tb.TempDir())}
	for _, mod := range mods {
		mod(&n.Opts)
	}
	n.Start()
	tb.Cleanup(n.Stop)
	return n
}

// StartCluster runs a JetStream cluster of size servers on loopback until the test
// ends. Client ports are random; cluster ports are picked free beforehand, because a
// clustered JetStream server refuses to start without its routes, and each server's
// list names them all.
func StartCluster(tb testing.TB, size int, mods ...func(*server.Options)) []*Server {
	tb.Helper()
	ports := freePorts(tb, size)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	nodes := make([]*Server, size)
	for i := range nodes {
		opts := Options(fmt.Sprintf("n%d", i+1), tb.TempDir())
		opts.Cluster = server.ClusterOpts{Name: "hashgrid", Host: "127.0.0.1", Port: ports[i]}
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		for _, mod := range mods {
			mod(&opts)
		}
		nodes[i] = &Server{tb: tb, Opts: opts}
	}
	for _, n := range nodes {
		n.Start()
		tb.Cleanup(n.Stop)
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

// SyncAlways makes a server fsync every write to its streams (sync_interval: always)
// instead of every two minutes.
func SyncAlways(o *server.Options) { o.SyncAlways = true }

// Connect connects to the servers, reconnecting for ever, until the test ends.
func Connect(tb testing.TB, servers ...*Server) *nats.Conn {
	tb.Helper()
	var urls []string
	for _, n := range servers {
		urls = append(urls, n.URL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.Timeout(2*time.Second))
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}
