package node_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/node/regtest"
)

func newSet(tb testing.TB, opts node.SetOptions, clients ...*node.Client) *node.Set {
	tb.Helper()
	s, err := node.NewSet(clients, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestSetFailover(t *testing.T) {
	a, b := regtest.StartT(t), regtest.StartT(t)
	ctx := testContext(t)
	s := newSet(t, node.SetOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, a.Client(), b.Client())

	bestA, _ := a.Client().BestBlockHash(ctx)
	bestB, _ := b.Client().BestBlockHash(ctx)
	tmpl, err := s.BlockTemplate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.PrevHash != bestA {
		t.Fatalf("template builds on %s, want node a's tip %s", tmpl.PrevHash, bestA)
	}

	a.Kill()
	tmpl, err = s.BlockTemplate(ctx)
	if err != nil {
		t.Fatalf("with node a killed: %v", err)
	}
	if tmpl.PrevHash != bestB {
		t.Fatalf("template builds on %s, want node b's tip %s", tmpl.PrevHash, bestB)
	}
	h := s.Health()
	if h[0].Up || h[0].LastError == "" || !h[1].Up {
		t.Fatalf("health %+v, want a down with an error, b up", h)
	}
	if st := s.Status(); !st.Degraded {
		t.Fatalf("status %+v, want degraded", st)
	}

	// A block found meanwhile reaches b although a is first in line and dead.
	blk := buildBlock(t, tmpl, payScript(t), "failover")
	if err := s.SubmitBlock(ctx, blk); err != nil {
		t.Fatalf("SubmitBlock with a dead: %v", err)
	}
	if got, _ := b.Client().BestBlockHash(ctx); got != blk.BlockHash() {
		t.Fatalf("node b's tip %s, want the submitted block %s", got, blk.BlockHash())
	}

	// a comes back (on a new chain): once its backoff passed, it is preferred again.
	if err := a.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	newA, _ := a.Client().BestBlockHash(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		tmpl, err = s.BlockTemplate(ctx)
		if err == nil && tmpl.PrevHash == newA {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node a not preferred again after restart: %v, prev %v, health %+v", err, tmpl.PrevHash, s.Health())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if h := s.Health(); !h[0].Up {
		t.Fatalf("health %+v, want a up", h)
	}
}

func TestSetAllDown(t *testing.T) {
	a := regtest.StartT(t)
	a.Kill()
	s := newSet(t, node.SetOptions{}, a.Client())
	_, err := s.BlockTemplate(testContext(t))
	if !errors.Is(err, node.ErrNoNode) {
		t.Fatalf("got %v, want ErrNoNode", err)
	}
	// Even in backoff, a call still tries: the pool must not wait out a backoff.
	_, err = s.ChainInfo(testContext(t))
	if !errors.Is(err, node.ErrNoNode) {
		t.Fatalf("got %v, want ErrNoNode", err)
	}
	if h := s.Health(); h[0].Failures != 2 {
		t.Fatalf("failures %d, want 2", h[0].Failures)
	}
}

type delivery struct {
	t      *node.Template
	newTip bool
	at     time.Time
}

// watch runs s.Watch until the test ends and returns its deliveries.
func watch(t *testing.T, s *node.Set) <-chan delivery {
	t.Helper()
	ch := make(chan delivery, 100)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		err := s.Watch(ctx, func(tm *node.Template, newTip bool) { ch <- delivery{tm, newTip, time.Now()} })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v, want context.Canceled", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ch
}

func next(t *testing.T, ch <-chan delivery, within time.Duration, ok func(delivery) bool) delivery {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case d := <-ch:
			if ok(d) {
				return d
			}
		case <-deadline:
			t.Fatalf("no matching template within %s", within)
		}
	}
}

func TestWatchNewTip(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts node.SetOptions
	}{
		{"longpoll", node.SetOptions{PollInterval: time.Hour}},
		{"polling", node.SetOptions{NoLongPoll: true, PollInterval: 100 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := regtest.StartT(t)
			ctx := testContext(t)
			ch := watch(t, newSet(t, tc.opts, n.Client()))
			first := next(t, ch, 5*time.Second, func(d delivery) bool { return true })
			if !first.newTip || first.t.Height != 2 {
				t.Fatalf("first delivery height %d newTip %v, want 2 true", first.t.Height, first.newTip)
			}
			for range 3 {
				hs, err := n.Client().Generate(ctx, 1)
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				d := next(t, ch, time.Second, func(d delivery) bool { return d.t.PrevHash == hs[0] })
				if !d.newTip {
					t.Fatal("new tip delivered with newTip false")
				}
				t.Logf("new tip seen %s after generate returned", d.at.Sub(start))
			}
		})
	}
}

func TestWatchNodeRestart(t *testing.T) {
	n := regtest.StartT(t)
	ctx := testContext(t)
	s := newSet(t, node.SetOptions{PollInterval: 50 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, ProbeTimeout: 500 * time.Millisecond}, n.Client())
	ch := watch(t, s)
	next(t, ch, 5*time.Second, func(d delivery) bool { return true })
	if _, err := n.Client().Generate(ctx, 5); err != nil {
		t.Fatal(err)
	}
	next(t, ch, 2*time.Second, func(d delivery) bool { return d.t.Height == 7 })

	n.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for !s.Status().Degraded {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v, want degraded with the node dead", s.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	best, _ := n.Client().BestBlockHash(ctx)
	// The restarted node has a new chain at height 1: its template is delivered as a new tip.
	d := next(t, ch, 5*time.Second, func(d delivery) bool { return d.t.PrevHash == best })
	if !d.newTip || d.t.Height != 2 {
		t.Fatalf("after restart: height %d newTip %v, want 2 true", d.t.Height, d.newTip)
	}
	deadline = time.Now().Add(5 * time.Second)
	for s.Status().Degraded {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v, want healthy after restart", s.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWatchZMQ(t *testing.T) {
	n := regtest.StartT(t)
	ctx := testContext(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := fmt.Sprintf("tcp://%s", l.Addr())
	l.Close()
	pub := zmq4.NewPub(ctx)
	defer pub.Close()
	if err := pub.Listen(ep); err != nil {
		t.Fatal(err)
	}
	// Neither long polling nor polling: only ZMQ can bring the new tip.
	s := newSet(t, node.SetOptions{NoLongPoll: true, PollInterval: time.Hour, RefreshInterval: time.Hour, ZMQ: []string{ep}}, n.Client())
	ch := watch(t, s)
	next(t, ch, 5*time.Second, func(d delivery) bool { return true })
	hs, err := n.Client().Generate(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	rev := make([]byte, 32)
	for i := range rev {
		rev[i] = hs[0][31-i]
	}
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for seq := uint32(0); ; seq++ {
		// PUB drops messages until the subscription arrived: publish until seen.
		msg := zmq4.NewMsgFrom([]byte("hashblock"), rev, []byte{byte(seq), 0, 0, 0})
		if err := pub.Send(msg); err != nil {
			t.Fatal(err)
		}
		select {
		case d := <-ch:
			if d.t.PrevHash == hs[0] && d.newTip {
				return
			}
		case <-tick.C:
		case <-deadline:
			t.Fatal("no template after hashblock notifications")
		}
	}
}
