package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/alert"
	"github.com/hashgrid/hashgrid/storetest"
)

func openAlertOutbox(tb testing.TB, url string) *AlertOutbox {
	tb.Helper()
	ob, err := OpenAlertOutbox(context.Background(), url, nil)
	if err != nil {
		tb.Fatalf("OpenAlertOutbox: %v", err)
	}
	tb.Cleanup(func() { ob.Close() })
	return ob
}

// TestAlertOutboxContract runs the alert outbox's contract that alert.SQLiteOutbox
// runs too.
func TestAlertOutboxContract(t *testing.T) {
	storetest.Outbox(t, func(tb testing.TB) alert.Outbox { return openAlertOutbox(tb, freshDatabase(tb)) })
}

// TestAlertOutboxTwoProcesses: two outboxes on one database, as two accounting
// processes have, add the same events and deliver at once: each event is queued once
// and claimed by one of them once; after a restart nothing delivered is claimed again.
func TestAlertOutboxTwoProcesses(t *testing.T) {
	ctx := context.Background()
	url := freshDatabase(t)
	obs := []*AlertOutbox{openAlertOutbox(t, url), openAlertOutbox(t, url)}
	t0 := time.Unix(1_700_000_000, 0)
	const n = 30
	var wg sync.WaitGroup
	added := make([]int, len(obs))
	for i, ob := range obs {
		wg.Go(func() {
			for k := range n {
				id := fmt.Sprintf("block:%02d", k)
				ok, err := ob.Add(ctx, alert.NewAlert{ID: id, Kind: "block_found", Body: []byte(`{}`), At: t0})
				if err != nil {
					t.Errorf("Add: %v", err)
					return
				}
				if ok {
					added[i]++
				}
			}
		})
	}
	wg.Wait()
	if added[0]+added[1] != n {
		t.Fatalf("Add reported %d + %d new events; want %d in all", added[0], added[1], n)
	}
	var mu sync.Mutex
	delivered := map[string]int{}
	for _, ob := range obs {
		wg.Go(func() {
			for {
				e, ok, err := ob.Claim(ctx, t0, t0.Add(time.Minute))
				if err != nil || !ok {
					if err != nil {
						t.Errorf("Claim: %v", err)
					}
					return
				}
				mu.Lock()
				delivered[e.ID]++
				mu.Unlock()
				if err := ob.Delivered(ctx, e.Seq, t0); err != nil {
					t.Errorf("Delivered: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if len(delivered) != n {
		t.Errorf("%d events delivered; want %d", len(delivered), n)
	}
	for id, k := range delivered {
		if k != 1 {
			t.Errorf("%s delivered %d times", id, k)
		}
	}
	// A restart: a new connection to the same database, long after every lease.
	obs[0].Close()
	again := openAlertOutbox(t, url)
	if e, ok, err := again.Claim(ctx, t0.Add(24*time.Hour), t0.Add(25*time.Hour)); err != nil || ok {
		t.Errorf("after a restart, Claim = %+v, %v, %v; want nothing (all delivered)", e, ok, err)
	}
}
