package cluster

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/natsstream/natstest"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/sqlite"
)

// startNATS runs an embedded JetStream server on a random loopback port.
func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	return natstest.Connect(t, natstest.Start(t))
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestCopyBlocks: a front-end's block records reach the store once the block's share
// is there, numbered as the store numbers that share; a second leader reading the
// stream again from its start does not undo what the tracker did since.
func TestCopyBlocks(t *testing.T) {
	nc := startNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	sink, err := OpenBlockSink(ctx, nc, "fe1", 1, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	found := hashgrid.Block{Hash: [32]byte{1, 2, 3}, PrevHash: [32]byte{9}, Height: 101, Time: time.Now().UTC().Truncate(time.Millisecond),
		Address: "bcrt1qfinder", Worker: "w1", Reward: 5_000_000_000, Status: hashgrid.BlockSubmitted, ShareSeq: 3}
	if err := sink.PutBlock(ctx, found); err != nil {
		t.Fatal(err)
	}
	accepted := found
	accepted.Status = hashgrid.BlockAccepted
	if err := sink.PutBlock(ctx, accepted); err != nil {
		t.Fatal(err)
	}

	changed := make(chan hashgrid.Block, 4)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- CopyBlocks(cctx, nc, 1, store, quiet(), func(b hashgrid.Block) { changed <- b }) }()

	// The share is not stored yet: the block waits for it.
	select {
	case b := <-changed:
		t.Fatalf("block stored before its share: %+v", b)
	case <-time.After(1500 * time.Millisecond):
	}
	shares := []hashgrid.Share{
		{Seq: 41, Time: found.Time, Address: "bcrt1qfinder", Worker: "w1", Diff: hashgrid.DiffOne, Actual: hashgrid.DiffOne, Hash: [32]byte{7}},
		{Seq: 42, Time: found.Time, Address: "bcrt1qfinder", Worker: "w1", Diff: hashgrid.DiffOne, Actual: hashgrid.MaxDiff, Hash: found.Hash, Block: true},
	}
	if err := store.AddShares(ctx, shares); err != nil {
		t.Fatal(err)
	}
	var last hashgrid.Block
	for last.Status != hashgrid.BlockAccepted {
		select {
		case last = <-changed:
		case <-time.After(10 * time.Second):
			t.Fatal("block not copied after its share was stored")
		}
	}
	got, err := store.BlockByHash(ctx, found.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if got.ShareSeq != 42 || got.Status != hashgrid.BlockAccepted || got.Reward != found.Reward || got.Height != 101 {
		t.Fatalf("stored block %+v: want share 42 (the store's number, not the front-end's 3), accepted, reward and height kept", got)
	}
	stop()
	<-done

	// The tracker confirms it; a new leader reads the stream again from the start.
	got.Status, got.Confirmations = hashgrid.BlockConfirmed, 100
	if err := store.PutBlock(ctx, got); err != nil {
		t.Fatal(err)
	}
	cctx2, stop2 := context.WithCancel(ctx)
	go func() { done <- CopyBlocks(cctx2, nc, 1, store, quiet(), func(b hashgrid.Block) { changed <- b }) }()
	select {
	case b := <-changed:
		t.Fatalf("a replayed record changed a confirmed block: %+v", b)
	case <-time.After(1500 * time.Millisecond):
	}
	stop2()
	<-done
	if b, _ := store.BlockByHash(ctx, found.Hash); b.Status != hashgrid.BlockConfirmed {
		t.Fatalf("block is %s after the replay, want confirmed", b.Status)
	}
}

// TestStats: the API's pool status is the sum of the live front-ends'; one that stops
// leaves it.
func TestStats(t *testing.T) {
	nc := startNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := WatchStats(ctx, nc, 1, quiet())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ctx1, stop1 := context.WithCancel(ctx)
	done1 := make(chan error, 1)
	go func() {
		done1 <- PublishStats(ctx1, nc, 1, "fe1", func() pool.Stats {
			return pool.Stats{Connections: 3, Authorized: 2, SharesAccepted: 10, Height: 100, LastTemplate: now}
		}, quiet())
	}()
	ctx2, stop2 := context.WithCancel(ctx)
	defer stop2()
	go PublishStats(ctx2, nc, 1, "fe2", func() pool.Stats {
		return pool.Stats{Connections: 4, Authorized: 4, SharesAccepted: 5, SharesRejected: 1, Height: 101, LastTemplate: now.Add(time.Second)}
	}, quiet())

	deadline := time.Now().Add(10 * time.Second)
	for st.Stats().Connections != 7 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want 7 connections over two front-ends", st.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	s := st.Stats()
	if s.Authorized != 6 || s.SharesAccepted != 15 || s.SharesRejected != 1 || s.Height != 101 {
		t.Fatalf("stats %+v: want sums and the newest template's height", s)
	}
	stop1()
	<-done1
	for st.Stats().Connections != 4 {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("stats %+v after fe1 stopped: want fe2's only", st.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A front-end that stops publishing (killed) drops out after StatsStale.
	st.mu.Lock()
	st.now = func() time.Time { return time.Now().Add(StatsStale + StatsInterval + time.Second) }
	st.mu.Unlock()
	if n := len(st.FrontEnds()); n != 0 {
		t.Fatalf("%d front-ends live after their status went stale", n)
	}
}

// TestLayout: what the leader publishes, front-ends follow; a repeat is not re-sent.
func TestLayout(t *testing.T) {
	nc := startNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fl, err := FollowLayout(ctx, nc, 1, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fl.Current(); ok {
		t.Fatal("a layout before any was published")
	}
	pub := NewLayoutPublisher(nc, 1, quiet())
	l := payout.Layout{Commitment: payout.Hash32{1}, Weights: []payout.Weight{{Address: "a", Work: hashgrid.Work{Lo: 5}}}}
	for i := range 2 {
		if err := pub.Publish(ctx, l); err != nil {
			t.Fatal(err)
		}
		l.Weights[0].Work.Lo = 6 + uint64(i) // same commitment: not re-sent
	}
	l2 := payout.Layout{Commitment: payout.Hash32{2}, Weights: []payout.Weight{{Address: "b", Work: hashgrid.Work{Hi: 1}}}}
	if err := pub.Publish(ctx, l2); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, ok := fl.Current()
		if ok && got.Commitment == l2.Commitment {
			if len(got.Weights) != 1 || got.Weights[0] != l2.Weights[0] {
				t.Fatalf("followed layout %+v, want %+v", got, l2)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("front-end still has %+v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
