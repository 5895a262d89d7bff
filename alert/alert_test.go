package alert

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
)

// fakeSource is an in-memory share store view.
type fakeSource struct {
	mu      sync.Mutex
	blocks  []hashgrid.Block // newest first
	workers []hashgrid.Worker
	recent  []hashgrid.Worker
	err     error
}

func (f *fakeSource) Blocks(ctx context.Context, limit int) ([]hashgrid.Block, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]hashgrid.Block(nil), f.blocks...), f.err
}

func (f *fakeSource) Workers(ctx context.Context, address string) ([]hashgrid.Worker, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]hashgrid.Worker(nil), f.workers...), f.err
}

func (f *fakeSource) WorkBetween(ctx context.Context, from, to time.Time) ([]hashgrid.Worker, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]hashgrid.Worker(nil), f.recent...), f.err
}

type fakeNode struct {
	mu sync.Mutex
	up bool
}

func (n *fakeNode) Status() node.Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return node.Status{Nodes: []node.NodeHealth{{URL: "http://***@127.0.0.1:18443", Up: n.up, LastError: "connection refused"}}, Degraded: !n.up}
}

func (n *fakeNode) set(up bool) { n.mu.Lock(); n.up = up; n.mu.Unlock() }

// receiver is a webhook endpoint that records what it is sent and can be told to fail.
type receiver struct {
	mu      sync.Mutex
	got     []Event
	keys    []string
	failing bool
	srv     *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.failing {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(req.Body)
		var ev Event
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("webhook body %q: %v", body, err)
		}
		if req.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook content type %q", req.Header.Get("Content-Type"))
		}
		r.got = append(r.got, ev)
		r.keys = append(r.keys, req.Header.Get("Idempotency-Key"))
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setFailing(f bool) { r.mu.Lock(); r.failing = f; r.mu.Unlock() }

func (r *receiver) events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.got...)
}

// kinds counts received events by kind and checks no ID came twice.
func (r *receiver) kinds(t *testing.T) map[Kind]int {
	t.Helper()
	seen := map[string]bool{}
	out := map[Kind]int{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, ev := range r.got {
		if seen[ev.ID] {
			t.Errorf("event %s delivered twice", ev.ID)
		}
		seen[ev.ID] = true
		if r.keys[i] != ev.ID {
			t.Errorf("Idempotency-Key %q, want %q", r.keys[i], ev.ID)
		}
		out[ev.Kind]++
	}
	return out
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }
func hash(b byte) (h [32]byte)       { h[0] = b; return h }
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T, dir string, src Source, nd NodeStatus, url string, clk *clock) *Monitor {
	t.Helper()
	m, err := Open(Config{
		Dir: dir, WebhookURL: url, Source: src, Node: nd, Now: clk.now,
		Settings: Settings{WorkerQuiet: 5 * time.Minute, RejectRate: 0.1, RejectMinShares: 10},
		RetryMin: time.Second, RetryMax: 8 * time.Second,
	})
	must(t, err)
	return m
}

func pass(t *testing.T, m *Monitor) {
	t.Helper()
	must(t, m.Check(context.Background()))
	if _, err := m.Deliver(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestAlertEachEventOnce raises every kind of alert, repeats the checks many times
// and across a restart, and checks each event reached the webhook exactly once, and
// that a condition that ends and begins again is a new event.
func TestAlertEachEventOnce(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	rcv := newReceiver(t)
	nd := &fakeNode{up: true}
	src := &fakeSource{
		// History from before alerts were enabled: not announced.
		blocks:  []hashgrid.Block{{Hash: hash(1), Height: 100, Status: hashgrid.BlockConfirmed, Address: "bcrt1old"}},
		workers: []hashgrid.Worker{{Address: "bcrt1a", Name: "rig", LastShare: clk.now().Add(-time.Hour)}},
	}
	m := open(t, dir, src, nd, rcv.srv.URL, clk)
	pass(t, m)
	if got := rcv.events(); len(got) != 0 {
		t.Fatalf("first check announced history: %+v", got)
	}

	// Now things happen.
	src.mu.Lock()
	src.blocks = append([]hashgrid.Block{{Hash: hash(2), Height: 101, Status: hashgrid.BlockAccepted, Address: "bcrt1a", Worker: "rig", Reward: 5000000000}}, src.blocks...)
	src.workers = append(src.workers, hashgrid.Worker{Address: "bcrt1b", Name: "s9", LastShare: clk.now().Add(-6 * time.Minute)})
	src.recent = []hashgrid.Worker{{Address: "bcrt1c", Name: "bad", Accepted: 10, Rejected: 10}}
	src.mu.Unlock()
	nd.set(false)
	for range 3 {
		pass(t, m)
		clk.add(time.Second)
	}
	// The found block is orphaned by a reorg.
	src.mu.Lock()
	src.blocks[0].Status = hashgrid.BlockOrphaned
	src.mu.Unlock()
	pass(t, m)
	// A block no node could take yet: one alert while the pool retries it, and the
	// usual one when a node accepts it.
	src.mu.Lock()
	src.blocks = append([]hashgrid.Block{{Hash: hash(3), Height: 102, Status: hashgrid.BlockSubmitted, Reason: "no node has taken the block yet: node: no node answered", Address: "bcrt1a", Worker: "rig"}}, src.blocks...)
	src.mu.Unlock()
	for range 2 {
		pass(t, m)
	}
	src.mu.Lock()
	src.blocks[0].Status, src.blocks[0].Reason = hashgrid.BlockAccepted, ""
	src.mu.Unlock()
	pass(t, m)

	// Restart: nothing is announced again.
	must(t, m.Close())
	m = open(t, dir, src, nd, rcv.srv.URL, clk)
	for range 3 {
		pass(t, m)
	}
	got := rcv.kinds(t)
	want := map[Kind]int{BlockFound: 2, BlockWaiting: 1, BlockOrphaned: 1, WorkerQuiet: 1, NodeDown: 1, RejectRate: 2} // worker and pool
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s alerts: got %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
	for _, ev := range rcv.events() {
		if ev.Text == "" || ev.Time.IsZero() {
			t.Errorf("event %+v lacks text or time", ev)
		}
		if strings.Contains(ev.Text, rcv.srv.URL) {
			t.Errorf("event text leaks the webhook URL: %q", ev.Text)
		}
	}

	// The node comes back and fails again; the worker resumes and goes quiet again:
	// each is a new episode, announced once.
	nd.set(true)
	src.mu.Lock()
	src.workers[1].LastShare = clk.now()
	src.recent = nil
	src.mu.Unlock()
	pass(t, m)
	nd.set(false)
	clk.add(10 * time.Minute)
	pass(t, m)
	pass(t, m)
	got = rcv.kinds(t)
	if got[NodeDown] != 2 || got[WorkerQuiet] != 2 {
		t.Errorf("after a second episode: node_down %d, worker_quiet %d; want 2 and 2", got[NodeDown], got[WorkerQuiet])
	}
	must(t, m.Close())
}

// TestAlertNoneLostAcrossRestart queues alerts while the webhook is failing, stops
// the monitor, and checks that a new monitor on the same directory delivers them all,
// once each, when the webhook recovers.
func TestAlertNoneLostAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	rcv := newReceiver(t)
	src := &fakeSource{}
	m := open(t, dir, src, nil, rcv.srv.URL, clk)
	pass(t, m) // baseline: nothing yet
	rcv.setFailing(true)
	src.mu.Lock()
	for i := byte(1); i <= 5; i++ {
		src.blocks = append([]hashgrid.Block{{Hash: hash(i), Height: int64(200 + int(i)), Status: hashgrid.BlockAccepted, Address: "bcrt1a"}}, src.blocks...)
	}
	src.mu.Unlock()
	for range 4 {
		pass(t, m)
		clk.add(20 * time.Second)
	}
	if n := len(rcv.events()); n != 0 {
		t.Fatalf("failing webhook recorded %d events", n)
	}
	recs, err := m.Recent(context.Background(), 10)
	must(t, err)
	if len(recs) != 5 {
		t.Fatalf("outbox holds %d alerts, want 5", len(recs))
	}
	for _, r := range recs {
		if r.Delivered != nil || r.Attempts == 0 && r.Event.ID == recs[len(recs)-1].Event.ID {
			t.Errorf("alert %s: delivered %v attempts %d while the webhook failed", r.Event.ID, r.Delivered, r.Attempts)
		}
	}
	must(t, m.Close())

	rcv.setFailing(false)
	m = open(t, dir, src, nil, rcv.srv.URL, clk)
	clk.add(time.Minute) // past the retry delay
	pass(t, m)
	pass(t, m)
	if got := rcv.kinds(t)[BlockFound]; got != 5 {
		t.Errorf("delivered %d block alerts after restart, want 5", got)
	}
	// Oldest first.
	evs := rcv.events()
	for i := 1; i < len(evs); i++ {
		if evs[i-1].Fields["height"] > evs[i].Fields["height"] {
			t.Errorf("delivered out of order: %s before %s", evs[i-1].Fields["height"], evs[i].Fields["height"])
		}
	}
	must(t, m.Close())
}

// TestAlertRetryBackoff checks that a failed POST is retried after the backoff and
// not before.
func TestAlertRetryBackoff(t *testing.T) {
	clk := newClock()
	rcv := newReceiver(t)
	src := &fakeSource{}
	m := open(t, t.TempDir(), src, nil, rcv.srv.URL, clk)
	defer m.Close()
	pass(t, m)
	rcv.setFailing(true)
	src.mu.Lock()
	src.blocks = []hashgrid.Block{{Hash: hash(9), Height: 1, Status: hashgrid.BlockAccepted}}
	src.mu.Unlock()
	pass(t, m) // attempt 1 fails: retry in 1s
	clk.add(time.Second)
	pass(t, m) // attempt 2 fails: retry in 2s
	rcv.setFailing(false)
	clk.add(time.Second)
	pass(t, m)
	if n := len(rcv.events()); n != 0 {
		t.Fatalf("sent before the backoff ended: %d", n)
	}
	clk.add(time.Second)
	pass(t, m)
	if n := len(rcv.events()); n != 1 {
		t.Fatalf("after the backoff: %d events, want 1", n)
	}
	recs, err := m.Recent(context.Background(), 1)
	must(t, err)
	if recs[0].Attempts != 3 || recs[0].Delivered == nil {
		t.Errorf("record %+v, want 3 attempts and delivered", recs[0])
	}
}

// TestAlertWithoutWebhook logs alerts and marks them delivered.
func TestAlertWithoutWebhook(t *testing.T) {
	clk := newClock()
	var logs strings.Builder
	var mu sync.Mutex
	src := &fakeSource{}
	m, err := Open(Config{Dir: t.TempDir(), Source: src, Now: clk.now, Logger: newTextLogger(&mu, &logs)})
	must(t, err)
	defer m.Close()
	pass(t, m)
	src.blocks = []hashgrid.Block{{Hash: hash(3), Height: 7, Status: hashgrid.BlockAccepted, Address: "bcrt1z", Reward: 312500000}}
	pass(t, m)
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(out, "block found at height 7") || !strings.Contains(out, "3.12500000 BTC") {
		t.Errorf("log lacks the alert line:\n%s", out)
	}
	recs, err := m.Recent(context.Background(), 5)
	must(t, err)
	if len(recs) != 1 || recs[0].Delivered == nil {
		t.Errorf("records %+v, want one delivered", recs)
	}
}

// TestAlertCheckErrorKeepsBaseline: a store error on the first check must not mark
// the baseline done, or the history would be announced on the next check.
func TestAlertCheckErrorKeepsBaseline(t *testing.T) {
	clk := newClock()
	rcv := newReceiver(t)
	src := &fakeSource{err: errors.New("disk on fire"), blocks: []hashgrid.Block{{Hash: hash(4), Status: hashgrid.BlockAccepted}}}
	m := open(t, t.TempDir(), src, nil, rcv.srv.URL, clk)
	defer m.Close()
	if err := m.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Check: %v, want the store error", err)
	}
	src.mu.Lock()
	src.err = nil
	src.mu.Unlock()
	pass(t, m)
	if n := len(rcv.events()); n != 0 {
		t.Errorf("history announced after a failed first check: %d events", n)
	}
}

func TestSettingsValidate(t *testing.T) {
	for _, tc := range []struct {
		s    Settings
		want string
	}{
		{Settings{RejectRate: 1.5}, "outside 0..1"},
		{Settings{RejectRate: -0.1}, "outside 0..1"},
		{Settings{WorkerQuiet: -time.Second}, "negative"},
		{Settings{WorkerQuiet: time.Millisecond}, "below one second"},
		{Settings{RejectMinShares: -1}, "negative"},
		{Settings{WorkerQuiet: time.Minute, RejectRate: 0.05}, ""},
	} {
		err := tc.s.Validate()
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.s, err, tc.want)
		}
	}
	if _, err := Open(Config{Dir: t.TempDir(), Source: &fakeSource{}, WebhookURL: "ftp://x"}); err == nil {
		t.Error("Open accepted an ftp webhook URL")
	}
}

func newTextLogger(mu *sync.Mutex, w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(lockedWriter{mu, w}, nil))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
