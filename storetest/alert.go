package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/alert"
)

// OpenOutbox opens a fresh, empty alert outbox.
type OpenOutbox func(tb testing.TB) alert.Outbox

// Outbox runs the alert outbox's contract, each test on an outbox of its own.
func Outbox(t *testing.T, open OpenOutbox) {
	tests := []struct {
		name string
		fn   func(*testing.T, alert.Outbox)
	}{
		{"Baseline", testBaseline},
		{"AddOnce", testAddOnce},
		{"Conditions", testConditions},
		{"Claim", testClaim},
		{"ClaimUnderRace", testClaimUnderRace},
		{"Prune", testOutboxPrune},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ob := open(t)
			t.Cleanup(func() { ob.Close() })
			tt.fn(t, ob)
		})
	}
}

func blockAlert(id string, at time.Time) alert.NewAlert {
	return alert.NewAlert{ID: id, Kind: "block_found", Body: []byte(`{"id":"` + id + `"}`), At: at}
}

func mustAdd(tb testing.TB, ob alert.Outbox, a alert.NewAlert, want bool) {
	tb.Helper()
	got, err := ob.Add(context.Background(), a)
	if err != nil || got != want {
		tb.Fatalf("Add(%s, condition %q) = %v, %v; want %v", a.ID, a.Condition, got, err, want)
	}
}

func recentIDs(tb testing.TB, ob alert.Outbox) []string {
	tb.Helper()
	es, err := ob.Recent(context.Background(), 100)
	if err != nil {
		tb.Fatalf("Recent: %v", err)
	}
	ids := []string{}
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	return ids
}

func testBaseline(t *testing.T, ob alert.Outbox) {
	ctx := context.Background()
	if b, err := ob.Baselined(ctx); err != nil || b {
		t.Fatalf("Baselined of a new outbox = %v, %v", b, err)
	}
	for range 2 {
		if err := ob.SetBaselined(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := ob.Baselined(ctx); err != nil || !b {
		t.Fatalf("Baselined = %v, %v; want true", b, err)
	}
}

func testAddOnce(t *testing.T, ob alert.Outbox) {
	ctx := context.Background()
	a := blockAlert("block:aa", t0)
	mustAdd(t, ob, a, true)
	mustAdd(t, ob, a, false)
	// A quiet event is remembered, not queued; queueing it later does nothing.
	q := blockAlert("block:bb", t0.Add(time.Second))
	q.Quiet = true
	mustAdd(t, ob, q, true)
	q.Quiet = false
	mustAdd(t, ob, q, false)
	es, err := ob.Recent(ctx, 10)
	if err != nil || len(es) != 1 {
		t.Fatalf("Recent = %+v, %v; want the one alert", es, err)
	}
	e := es[0]
	if e.ID != a.ID || e.Kind != a.Kind || string(e.Body) != string(a.Body) || !e.Created.Equal(t0) || e.Attempts != 0 ||
		!e.Delivered.IsZero() || e.LastError != "" || e.Seq == 0 {
		t.Errorf("Recent()[0] = %+v; want %s queued at %v, never tried", e, a.ID, t0)
	}
}

func testConditions(t *testing.T, ob alert.Outbox) {
	ctx := context.Background()
	c := alert.NewAlert{ID: "quiet:w@1", Condition: "quiet:w", Since: 1, Kind: "worker_quiet", Body: []byte(`{}`), At: t0}
	mustAdd(t, ob, c, true)
	// The episode is open: a later start of the same condition is not announced.
	later := c
	later.ID, later.Since = "quiet:w@2", 2
	mustAdd(t, ob, later, false)
	if err := ob.Clear(ctx, "quiet:w"); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, ob, later, true)
	// Another condition is independent.
	other := c
	other.ID, other.Condition = "node:x@1", "node:x"
	mustAdd(t, ob, other, true)
	if got, want := recentIDs(t, ob), []string{"node:x@1", "quiet:w@2", "quiet:w@1"}; !slices.Equal(got, want) {
		t.Errorf("Recent IDs = %v; want %v (newest first)", got, want)
	}
	if es, err := ob.Recent(ctx, 2); err != nil || len(es) != 2 {
		t.Errorf("Recent(2) = %d alerts, %v", len(es), err)
	}
}

func testClaim(t *testing.T, ob alert.Outbox) {
	ctx := context.Background()
	if _, ok, err := ob.Claim(ctx, t0, t0.Add(time.Minute)); err != nil || ok {
		t.Fatalf("Claim of an empty outbox: ok %v, %v", ok, err)
	}
	for _, id := range []string{"a", "b", "c"} {
		mustAdd(t, ob, blockAlert(id, t0), true)
	}
	// Not due before it was queued.
	if _, ok, err := ob.Claim(ctx, t0.Add(-time.Second), t0.Add(time.Minute)); err != nil || ok {
		t.Fatalf("Claim before the alerts are due: ok %v, %v", ok, err)
	}
	lease := t0.Add(10 * time.Second)
	claim := func(now time.Time) (alert.Entry, bool) {
		t.Helper()
		e, ok, err := ob.Claim(ctx, now, now.Add(10*time.Second))
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		return e, ok
	}
	var got []string
	for {
		e, ok := claim(t0)
		if !ok {
			break
		}
		got = append(got, e.ID)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("claimed %v; want %v, oldest first, each once while leased", got, want)
	}
	ea, _, _ := ob.Claim(ctx, lease, lease.Add(time.Hour)) // the leases ended: a again
	if ea.ID != "a" {
		t.Fatalf("Claim after the lease = %q; want a", ea.ID)
	}
	if err := ob.Delivered(ctx, ea.Seq, lease); err != nil {
		t.Fatal(err)
	}
	eb, _, _ := ob.Claim(ctx, lease, lease.Add(time.Hour))
	if eb.ID != "b" {
		t.Fatalf("Claim = %q; want b", eb.ID)
	}
	if err := ob.Failed(ctx, eb.Seq, lease.Add(5*time.Second), "webhook: HTTP 503"); err != nil {
		t.Fatal(err)
	}
	ec, _, _ := ob.Claim(ctx, lease, lease.Add(time.Hour))
	if ec.ID != "c" {
		t.Fatalf("Claim = %q; want c", ec.ID)
	}
	if err := ob.Delivered(ctx, ec.Seq, lease); err != nil {
		t.Fatal(err)
	}
	// b is due again at its retry time, with its attempt and error; a and c never are.
	if _, ok := claim(lease.Add(4 * time.Second)); ok {
		t.Fatal("an alert claimed before its retry time")
	}
	e, ok := claim(lease.Add(5 * time.Second))
	if !ok || e.ID != "b" || e.Attempts != 1 || e.LastError != "webhook: HTTP 503" {
		t.Fatalf("Claim at b's retry = %+v, %v; want b after 1 attempt, with its error", e, ok)
	}
	if err := ob.Delivered(ctx, e.Seq, lease.Add(6*time.Second)); err != nil {
		t.Fatal(err)
	}
	if e, ok := claim(t0.Add(1000 * time.Hour)); ok {
		t.Fatalf("a delivered alert claimed again: %+v", e)
	}
	es, err := ob.Recent(ctx, 10)
	if err != nil || len(es) != 3 {
		t.Fatalf("Recent = %d, %v", len(es), err)
	}
	for _, e := range es {
		want := map[string]int{"a": 1, "b": 2, "c": 1}[e.ID]
		if e.Delivered.IsZero() || e.Attempts != want || e.LastError != "" {
			t.Errorf("alert %s: delivered %v, %d attempts, error %q; want delivered after %d, no error", e.ID, e.Delivered, e.Attempts, e.LastError, want)
		}
	}
	if !es[1].Delivered.Equal(lease.Add(6 * time.Second)) {
		t.Errorf("b delivered at %v; want %v", es[1].Delivered, lease.Add(6*time.Second))
	}
}

// testClaimUnderRace: monitors claiming from one outbox at once each get a different
// alert; every alert is claimed exactly once.
func testClaimUnderRace(t *testing.T, ob alert.Outbox) {
	ctx := context.Background()
	const n = 40
	for i := range n {
		mustAdd(t, ob, blockAlert(fmt.Sprintf("block:%02d", i), t0), true)
	}
	var mu sync.Mutex
	claimed := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				e, ok, err := ob.Claim(ctx, t0, t0.Add(time.Hour))
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				if !ok {
					return
				}
				mu.Lock()
				claimed[e.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claimed) != n {
		t.Errorf("%d alerts claimed; want %d", len(claimed), n)
	}
	for id, k := range claimed {
		if k != 1 {
			t.Errorf("alert %s claimed %d times", id, k)
		}
	}
}

func testOutboxPrune(t *testing.T, ob alert.Outbox) {
	ctx := context.Background()
	cond := alert.NewAlert{ID: "quiet:w@1", Condition: "quiet:w", Since: 1, Kind: "worker_quiet", Body: []byte(`{}`), At: t0}
	mustAdd(t, ob, cond, true)
	mustAdd(t, ob, blockAlert("block:old", t0), true)
	mustAdd(t, ob, blockAlert("block:undelivered", t0), true)
	for range 2 {
		e, _, err := ob.Claim(ctx, t0, t0.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if err := ob.Delivered(ctx, e.Seq, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := ob.Clear(ctx, "quiet:w"); err != nil {
		t.Fatal(err)
	}
	// Not yet old: nothing goes.
	if err := ob.Prune(ctx, t0); err != nil {
		t.Fatal(err)
	}
	if got := recentIDs(t, ob); len(got) != 3 {
		t.Fatalf("after Prune(t0): %v; want all 3", got)
	}
	if err := ob.Prune(ctx, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, want := recentIDs(t, ob), []string{"block:undelivered"}; !slices.Equal(got, want) {
		t.Fatalf("after Prune: %v; want %v (delivered ones gone)", got, want)
	}
	// A block's ID is kept for good; a pruned condition's episode may be announced again.
	mustAdd(t, ob, blockAlert("block:old", t0.Add(time.Hour)), false)
	mustAdd(t, ob, cond, true)
}
