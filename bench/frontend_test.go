package bench

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hashgrid/hashgrid/natsstream"
	"github.com/hashgrid/hashgrid/natsstream/natstest"
)

// TestFrontEndBenchPool: the benchmark pool as a cluster front-end, in both ack
// modes, answers a submit load, and every share the load client was told was
// accepted is in the JetStream share stream once the pool stops.
func TestFrontEndBenchPool(t *testing.T) {
	nc := natstest.Connect(t, natstest.Start(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var total uint64
	for _, ack := range []natsstream.AckMode{natsstream.AckReplicated, natsstream.AckLocal} {
		s, err := StartServer(ctx, ServerConfig{Listen: "127.0.0.1:0", Data: t.TempDir(), Txs: 100, MaxConn: 1000, NATS: nc, Ack: ack, Replicas: 1, FrontEnd: ack.String()})
		if err != nil {
			t.Fatal(err)
		}
		res, err := Submit(ctx, LoadConfig{URL: "stratum+tcp://" + s.Addr, User: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.t", Password: "d=" + BenchDiff, Conns: 2, InFlight: 8, Duration: 2 * time.Second})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		// Two connections answer thousands of shares each on one template: all are
		// accepted (the benchmark pool lifts pool.DefaultMaxJobShares), but for the
		// load client's random shares above the target, about 1 in 50,000.
		if res.Accepted < 100 || res.Rejected > res.Accepted/1000 || res.P99ms <= 0 {
			t.Errorf("%s: submit run %+v", ack, res)
		}
		total += res.Accepted + res.Rejected
		st, err := js.Stream(ctx, natsstream.DefaultStreamName)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		recs := streamRecords(t, nc)
		// Accepted shares and the sampled rejects' records: at least every answer
		// the client counted as accepted.
		if recs < total-res.Rejected {
			t.Errorf("%s: the stream holds %d records after %d accepted shares in all", ack, recs, total-res.Rejected)
		}
		t.Logf("%s: %d accepted at %.0f/s, p99 %.1f ms; stream %d records in %d messages", ack, res.Accepted, res.PerSecond, res.P99ms, recs, info.State.Msgs)
	}
}

// streamRecords counts the records of the share stream (several to a message).
func streamRecords(t *testing.T, nc *nats.Conn) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := natsstream.Open(ctx, nc, natsstream.Options{FrontEnd: "counter"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var n, after uint64
	for {
		recs, err := r.Read(ctx, after, 4096)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return n
		}
		n += uint64(len(recs))
		after = recs[len(recs)-1].Seq
	}
}
