package natsstream

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hashgrid/hashgrid/natsstream/natstest"
)

// The embedded servers of these tests (package natstest).
type node = natstest.Server

var (
	startServer  = natstest.Start
	startCluster = natstest.StartCluster
	connect      = natstest.Connect
	syncAlways   = natstest.SyncAlways
)

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
