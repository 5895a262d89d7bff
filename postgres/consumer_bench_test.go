package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/natsstream"
	"github.com/hashgrid/hashgrid/natsstream/natstest"
	"github.com/hashgrid/hashgrid/stream"
)

// BenchmarkConsumer measures the accounting consumer as `hashgrid pool --role
// accounting` runs it (cli/cluster.go): a stream.Tailer reading a JetStream share stream
// (natsstream, one embedded server, R1) from the start, decoding each record
// (stream.StoreShares) and writing it with AddShares. b.N shares, published beforehand
// (not timed), from 200 workers or from as many workers as a batch holds; it reports
// shares/s from the first read to the last share stored, the mean batch, and the
// shares per JetStream message the appends took (natsstream groups them).
//
// The "readahead" runs read the next batch while the last is being stored
// (stream.Tailer.ReadAhead, as the accounting process runs it); the others read and
// store in turn.
func BenchmarkConsumer(b *testing.B) {
	for _, readAhead := range []bool{false, true} {
		for _, w := range []struct{ addrs, workers int }{{50, 4}, {1000, 10}} {
			name := fmt.Sprintf("%dx%d", w.addrs, w.workers)
			if readAhead {
				name += "/readahead"
			}
			b.Run(name, func(b *testing.B) { benchConsumer(b, w.addrs, w.workers, readAhead) })
		}
	}
}

func benchConsumer(b *testing.B, addrs, workers int, readAhead bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	nc := natstest.Connect(b, natstest.Start(b, func(o *server.Options) { o.JetStreamMaxStore = 8 << 30 }))

	// The share stream, filled as a front-end would fill it.
	pub, err := natsstream.Open(ctx, nc, natsstream.Options{FrontEnd: "fe1"})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	n := b.N
	t0 := time.Unix(1700000000, 0).UTC()
	slots := make(chan struct{}, 1024)
	done := make(chan error, n)
	for i := 1; i <= n; i++ {
		seq := uint64(i)
		res := hashgrid.ShareAccepted
		if seq%10 == 0 {
			res = hashgrid.ShareLowDiff
		}
		sh := hashgrid.Share{Seq: seq, Time: t0.Add(time.Duration(seq) * 100 * time.Microsecond),
			Address: fmt.Sprintf("bcrt1qbenchaddress%06d", seq%uint64(addrs)), Worker: fmt.Sprintf("rig%d", (seq/uint64(addrs))%uint64(workers)),
			JobID: fmt.Sprintf("job%d", seq), Height: 900000, Diff: hashgrid.DiffOne, Actual: 3 * hashgrid.DiffOne,
			Hash: [32]byte{0: byte(seq), 31: 0xee}, Result: res, UserAgent: "cpuminer/2.5.1", Remote: "127.0.0.1:40000"}
		rec, err := sh.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		slots <- struct{}{}
		pub.AppendAsync(rec, func(_ uint64, err error) { <-slots; done <- err })
	}
	for range n {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}

	// How many JetStream messages the front-end's appends took.
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	st, err := js.Stream(ctx, natsstream.DefaultStreamName)
	if err != nil {
		b.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}

	s := openStore(b)
	sub, err := natsstream.Open(ctx, nc, natsstream.Options{FrontEnd: "accounting"})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	store := stream.StoreShares(ctx, s)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	batches, consumed := 0, 0
	var inStore time.Duration
	b.ResetTimer()
	start := time.Now()
	consume := func(recs []stream.Record) error {
		st := time.Now()
		if err := store(recs); err != nil {
			return err
		}
		inStore += time.Since(st)
		batches++
		if consumed += len(recs); consumed >= n {
			stop()
		}
		return nil
	}
	err = stream.Tailer{Batch: ConsumerBatch, ReadAhead: readAhead}.Run(runCtx, sub, 0, consume)
	el := time.Since(start)
	b.StopTimer()
	if !errors.Is(err, context.Canceled) {
		b.Fatalf("consumer: %v", err)
	}
	b.ReportMetric(float64(n)/el.Seconds(), "shares/s")
	b.ReportMetric(float64(n)/float64(batches), "shares/batch")
	b.ReportMetric(100*inStore.Seconds()/el.Seconds(), "%store")
	b.ReportMetric(float64(n)/float64(info.State.Msgs), "shares/msg")
	if acc, rej, _, err := s.Totals(ctx); err != nil || acc+rej != uint64(n) {
		b.Fatalf("Totals: %d accepted, %d rejected, %v; want %d in all", acc, rej, err, n)
	}
}
