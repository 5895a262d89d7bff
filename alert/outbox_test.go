package alert

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

// TestTwoMonitorsOneOutbox: two monitors on one outbox (two processes on one
// database; here two connections to one alerts.db) check and deliver at once, again
// and again: every event reaches the webhook once. Before Deliver claimed each alert,
// both sent what both read as due.
func TestTwoMonitorsOneOutbox(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	rcv := newReceiver(t)
	src := &fakeSource{}
	ms := []*Monitor{open(t, dir, src, nil, rcv.srv.URL, clk), open(t, dir, src, nil, rcv.srv.URL, clk)}
	for _, m := range ms {
		t.Cleanup(func() { m.Close() })
		pass(t, m) // the baseline: no blocks yet
	}
	src.mu.Lock()
	for i := range 20 {
		src.blocks = append(src.blocks, hashgrid.Block{Hash: hash(byte(i + 1)), Height: int64(100 + i), Status: hashgrid.BlockAccepted, Address: "bcrt1a"})
	}
	src.mu.Unlock()
	for range 3 {
		var wg sync.WaitGroup
		for _, m := range ms {
			wg.Go(func() {
				if err := m.Check(context.Background()); err != nil {
					t.Errorf("Check: %v", err)
				}
				if _, err := m.Deliver(context.Background()); err != nil {
					t.Errorf("Deliver: %v", err)
				}
			})
		}
		wg.Wait()
		clk.add(time.Minute) // past every claim's lease
	}
	if got := rcv.kinds(t)[BlockFound]; got != 20 {
		t.Errorf("%d block alerts delivered; want 20, each once", got)
	}
}
