package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/natsstream"
	"github.com/hashgrid/hashgrid/natsstream/natstest"
	"github.com/hashgrid/hashgrid/stream"
)

// The accounting consumer (stream.Tailer, stream.StoreShares, AddShares, as
// cli/cluster.go runs it) stopped in the middle of a JetStream message of several
// shares resumes from the store's LastSeq, its position saved with the shares, and
// stores every share exactly once.
func TestConsumerResumesMidMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc := natstest.Connect(t, natstest.Start(t))
	pub, err := natsstream.Open(ctx, nc, natsstream.Options{FrontEnd: "fe1", MaxBatch: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const n = 1000
	t0 := time.Unix(1700000000, 0).UTC()
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		sh := hashgrid.Share{Time: t0.Add(time.Duration(i) * time.Second), Address: fmt.Sprintf("bcrt1qaddr%d", i%7),
			Worker: "rig", JobID: "1", Diff: hashgrid.DiffOne, Actual: hashgrid.DiffOne,
			Hash: [32]byte{0: byte(i), 1: byte(i >> 8), 31: 0xee}, Result: hashgrid.ShareAccepted}
		rec, err := sh.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		pub.AppendAsync(rec, func(_ uint64, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("append %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, natsstream.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs >= n/4 {
		t.Fatalf("stream: %d messages for %d shares (%v); want them batched", info.State.Msgs, n, err)
	}

	s := openStore(t)
	consume := func(after uint64, stopMid bool) uint64 {
		t.Helper()
		sub, err := natsstream.Open(ctx, nc, natsstream.Options{FrontEnd: "accounting"})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		store := stream.StoreShares(rctx, s)
		var last uint64
		// Batches of 37 cut messages of up to 64 shares anywhere.
		err = stream.Tailer{Batch: 37}.Run(rctx, sub, after, func(recs []stream.Record) error {
			if err := store(recs); err != nil {
				return err
			}
			last = recs[len(recs)-1].Seq
			acc, _, _, err := s.Totals(rctx)
			if err != nil {
				return err
			}
			if stopMid && acc >= n/3 && last&natsstream.MaxIndex != natsstream.MaxIndex || acc >= n {
				stop()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("consumer: %v", err)
		}
		return last
	}
	last := consume(0, true)
	saved, err := s.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if saved != last || saved&natsstream.MaxIndex == natsstream.MaxIndex {
		t.Fatalf("first consumer stopped after %d, store's position %d: want the same, mid-message", last, saved)
	}
	acc1, _, _, _ := s.Totals(ctx)
	if acc1 >= n {
		t.Fatalf("first consumer stored all %d shares", acc1)
	}
	consume(saved, false)
	acc, rej, _, err := s.Totals(ctx)
	if err != nil || acc != n || rej != 0 {
		t.Fatalf("totals after resuming at %d (%d stored): %d accepted, %d rejected, %v; want %d accepted", saved, acc1, acc, rej, err, n)
	}
	shares, err := s.Shares(ctx, 0, 1<<63-1, 2*n)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[[32]byte]bool{}
	for _, sh := range shares {
		if seen[sh.Hash] {
			t.Fatalf("share %x stored twice", sh.Hash)
		}
		seen[sh.Hash] = true
	}
	if len(seen) != n {
		t.Fatalf("store holds %d distinct shares, want %d", len(seen), n)
	}
}
