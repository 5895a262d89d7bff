package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/alert"
	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/node/regtest"
)

// webhook is a local alert receiver that can be switched off (answering 503).
type webhook struct {
	mu   sync.Mutex
	down bool
	got  []alert.Event
	srv  *httptest.Server
}

func newWebhook(t *testing.T) *webhook {
	t.Helper()
	w := &webhook{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.down {
			rw.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var ev alert.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("webhook body %q: %v", body, err)
		}
		w.got = append(w.got, ev)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) setDown(d bool) { w.mu.Lock(); w.down = d; w.mu.Unlock() }

// count returns how many events of kind arrived, failing on any ID that came twice.
func (w *webhook) count(t *testing.T, kind alert.Kind) int {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]bool{}
	n := 0
	for _, ev := range w.got {
		if seen[ev.ID] {
			t.Fatalf("alert %s delivered twice", ev.ID)
		}
		seen[ev.ID] = true
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

func (w *webhook) ids(kind alert.Kind) map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]bool{}
	for _, ev := range w.got {
		if ev.Kind == kind {
			out[ev.ID] = true
		}
	}
	return out
}

// TestAlertEndToEnd runs the pool on btcd (regtest) with a miner and a local webhook:
// found blocks and a quiet worker are announced once each; while the webhook is down
// and the pool is restarted, nothing is lost and nothing repeats; a node that dies is
// announced once.
func TestAlertEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	btcd := regtest.StartT(t)
	rpcURL, err := url.Parse(btcd.RPCURL())
	if err != nil {
		t.Fatal(err)
	}
	hook := newWebhook(t)
	data := t.TempDir()
	cfg := PoolConfig{
		Nodes: []string{btcd.RPCURL()}, Network: "regtest", PayoutAddress: regtest.TestAddress(),
		Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: data, Tag: "/alert/", LogLevel: "info",
		// Shares every half second on average: a gap of 8 s while mining is too unlikely
		// (about e^-16 per share) to make a mining worker look quiet.
		PollInterval: 100 * time.Millisecond, TrackInterval: 300 * time.Millisecond, ShareInterval: 500 * time.Millisecond,
		AlertWebhook: hook.srv.URL, AlertWorkerQuiet: 8 * time.Second, AlertInterval: 200 * time.Millisecond,
	}
	r, stopPool := startPool(t, cfg)

	mine := func(user string) func() {
		ctx, cancel := context.WithCancel(context.Background())
		m, err := miner.New(miner.Config{URL: "stratum+tcp://" + r.Stratum, User: user, MaxRetryWait: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { m.Run(ctx) })
		return func() { cancel(); wg.Wait() }
	}
	stopMiner := mine(regtest.TestAddress() + ".quiet")
	waitFor(t, 90*time.Second, "two block_found alerts", func() bool { return hook.count(t, alert.BlockFound) >= 2 })

	// The miner stops: after 8 s without shares its worker is announced, once.
	stopMiner()
	waitFor(t, 20*time.Second, "a worker_quiet alert", func() bool { return hook.count(t, alert.WorkerQuiet) >= 1 })
	time.Sleep(time.Second) // several more checks run; none may repeat the alert
	if n := hook.count(t, alert.WorkerQuiet); n != 1 {
		t.Errorf("worker_quiet alerts: %d, want 1", n)
	}
	foundBefore := hook.ids(alert.BlockFound)

	// The webhook goes down; a new miner finds blocks; the pool stops before they can
	// be delivered.
	hook.setDown(true)
	stopMiner = mine(regtest.TestAddressP2PKH() + ".second")
	whileDown := func() (n int) {
		var bl []struct{ Hash, Status string }
		getJSON(t, "http://"+r.API+"/api/v1/blocks", &bl)
		for _, b := range bl {
			if !foundBefore["block_found:"+b.Hash] && (b.Status == "accepted" || b.Status == "confirmed") {
				n++
			}
		}
		return n
	}
	waitFor(t, 90*time.Second, "two blocks found while the webhook is down", func() bool { return whileDown() >= 2 })
	stopMiner()
	time.Sleep(500 * time.Millisecond) // let the monitor queue them
	// The miner may have found another block between the last look and its stop.
	blocksWhileDown := whileDown()
	stopPool()
	if n := len(hook.ids(alert.BlockFound)); n != len(foundBefore) {
		t.Fatalf("a block alert got through a down webhook: %d, had %d", n, len(foundBefore))
	}

	// Restart on the same data directory with the webhook back: the queued alerts
	// arrive, once, and nothing already delivered is sent again.
	hook.setDown(false)
	r, stopPool = startPool(t, cfg)
	defer stopPool()
	waitFor(t, 30*time.Second, "the queued block alerts after the restart", func() bool {
		return hook.count(t, alert.BlockFound) >= len(foundBefore)+blocksWhileDown
	})
	time.Sleep(time.Second)
	if got, want := hook.count(t, alert.BlockFound), len(foundBefore)+blocksWhileDown; got != want {
		t.Errorf("block_found alerts after restart: %d, want %d", got, want)
	}
	// ".quiet" once before the restart (not again after it), ".second" once.
	waitFor(t, 20*time.Second, "the second worker_quiet alert", func() bool { return hook.count(t, alert.WorkerQuiet) >= 2 })
	time.Sleep(time.Second)
	if n := hook.count(t, alert.WorkerQuiet); n != 2 {
		t.Errorf("worker_quiet alerts: %d, want 2", n)
	}

	// The node dies: one node_down alert however long it stays down.
	btcd.Kill()
	waitFor(t, 30*time.Second, "a node_down alert", func() bool { return hook.count(t, alert.NodeDown) >= 1 })
	time.Sleep(time.Second)
	if n := hook.count(t, alert.NodeDown); n != 1 {
		t.Errorf("node_down alerts: %d, want 1", n)
	}
	hook.mu.Lock()
	for _, ev := range hook.got {
		if pw, _ := rpcURL.User.Password(); pw == "" || strings.Contains(ev.Text, pw) || strings.Contains(ev.Text, hook.srv.URL) || ev.Text == "" {
			t.Errorf("alert text %q", ev.Text)
		}
	}
	hook.mu.Unlock()
}
