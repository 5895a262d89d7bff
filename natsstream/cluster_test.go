package natsstream

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hashgrid/hashgrid/stream"
)

// With three replicas, one server down does not stop appends (two of three are a
// majority), and the server, started again on its store directory, catches up.
func TestClusterR3SurvivesOneServer(t *testing.T) {
	nodes := startCluster(t, 3)
	nc := connect(t, nodes...)
	s := open(t, nc, Options{FrontEnd: "fe1", Replicas: 3})
	const n = 100
	appendN := func(from int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			if _, err := s.Append(ctxT(t, 30*time.Second), rec(i)); err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
	}
	appendN(0)

	// A consumer tails the stream throughout, through its own connection.
	tr := open(t, connect(t, nodes...), Options{FrontEnd: "tailer", Replicas: 3})
	tailed := make(chan stream.Record, 3*n)
	ctx, cancel := context.WithCancel(context.Background())
	tailDone := make(chan error, 1)
	tailExit := make(chan struct{})
	go func() {
		defer close(tailExit)
		tailDone <- stream.Tailer{Batch: 16, MinBackoff: 10 * time.Millisecond}.Run(ctx, tr, 0, func(recs []stream.Record) error {
			for _, r := range recs {
				select {
				case tailed <- r:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
	}()
	defer func() {
		cancel()
		<-tailExit
	}()

	// Stop the stream's leader, the hardest case: a new one must be elected and the
	// appends under way re-sent to it.
	info, err := s.st.Info(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Config.Storage != jetstream.FileStorage {
		t.Fatalf("stream config: replicas %d storage %v", info.Config.Replicas, info.Config.Storage)
	}
	var down *node
	for _, n := range nodes {
		if n.Opts.ServerName == info.Cluster.Leader {
			down = n
		}
	}
	if down == nil {
		t.Fatalf("no server is the leader %q", info.Cluster.Leader)
	}
	down.Stop()
	appendN(n)

	down.Start()
	// The restarted server catches up: the leader reports it current with no lag.
	deadline := time.Now().Add(60 * time.Second)
	for {
		info, err := s.st.Info(ctxT(t, 5*time.Second))
		caughtUp := false
		if err == nil && info.Cluster != nil {
			for _, p := range info.Cluster.Replicas {
				if p.Name == down.Opts.ServerName && p.Current && p.Lag == 0 {
					caughtUp = true
				}
			}
			if info.Cluster.Leader == down.Opts.ServerName {
				caughtUp = true // it leads again, so it holds everything
			}
		}
		if caughtUp && err == nil && info.State.Msgs == 2*n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted server %s did not catch up: %+v %v", down.Opts.ServerName, info, err)
		}
		time.Sleep(100 * time.Millisecond) // polling the leader's view
	}
	// Reading through a connection to the restarted server alone: every record, once,
	// in order.
	r := open(t, connect(t, down), Options{FrontEnd: "reader", Replicas: 3})
	got := readAll(t, r, 0, 64)
	if len(got) != 2*n {
		t.Fatalf("read %d records, want %d", len(got), 2*n)
	}
	for i, g := range got {
		if string(g.Data) != string(rec(i)) {
			t.Fatalf("record %d: got %q, want %q", g.Seq, g.Data, rec(i))
		}
	}
	appendN(2 * n)

	// The tail saw every record once, in order, across the leader's stop and return.
	var last uint64
	for i := range 3 * n {
		select {
		case r := <-tailed:
			if r.Seq <= last || string(r.Data) != string(rec(i)) {
				t.Fatalf("tailed record %d: seq %d after %d, %q", i, r.Seq, last, r.Data)
			}
			last = r.Seq
		case err := <-tailDone:
			t.Fatalf("tail stopped after %d records: %v", i, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("tail stuck after %d records", i)
		}
	}
}

// Ack mode local on R3: the Shipper goes on through the stream leader's stop and return,
// and the stream ends with every local record once.
func TestClusterShipperSurvivesLeaderStop(t *testing.T) {
	nodes := startCluster(t, 3)
	nc := connect(t, nodes...)
	opts := Options{FrontEnd: "fe1", Replicas: 3}
	r := open(t, connect(t, nodes...), Options{FrontEnd: "reader", Replicas: 3})
	dir := t.TempDir()
	log, err := stream.Open(filepath.Join(dir, "log"), stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	appendLocal(t, log, 1, 200)
	_, stop := runShipper(t, nc, log, filepath.Join(dir, "shipped"), opts)
	waitRecords(t, r, 200)
	info, err := r.st.Info(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var leader *node
	for _, n := range nodes {
		if n.Opts.ServerName == info.Cluster.Leader {
			leader = n
		}
	}
	if leader == nil {
		t.Fatalf("no server is the leader %q", info.Cluster.Leader)
	}
	leader.Stop()
	appendLocal(t, log, 201, 400)
	waitRecords(t, r, 400)
	leader.Start()
	appendLocal(t, log, 401, 500)
	waitRecords(t, r, 500)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
