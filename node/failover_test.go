package node_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/node/regtest"
)

func proxied(tb testing.TB, p *regtest.Proxy, opts ...node.Option) *node.Client {
	tb.Helper()
	c, err := node.NewClient(p.URL(), append([]node.Option{node.WithTimeout(2 * time.Second)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// A node that answers "not ready" is alive but must not be mined on: the set asks the
// next node.
func TestSetFailsOverFromNotReadyNode(t *testing.T) {
	a, b := regtest.StartT(t), regtest.StartT(t)
	ctx := testContext(t)
	pa := regtest.StartProxy(t, a)
	bestA, _ := a.Client().BestBlockHash(ctx)
	bestB, _ := b.Client().BestBlockHash(ctx)
	for _, tc := range []struct {
		name string
		mode regtest.Mode
	}{
		{"initial download", regtest.InitialDownload},
		{"warmup", regtest.Warmup},
		{"not connected", regtest.NotConnected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pa.Set(regtest.Pass)
			s := newSet(t, node.SetOptions{MinBackoff: time.Hour, MaxBackoff: time.Hour}, proxied(t, pa), b.Client())
			tmpl, err := s.BlockTemplate(ctx)
			if err != nil || tmpl.PrevHash != bestA {
				t.Fatalf("healthy a: template on %v, err %v; want a's tip %s", tmpl, err, bestA)
			}
			pa.Set(tc.mode)
			tmpl, err = s.BlockTemplate(ctx)
			if err != nil {
				t.Fatalf("a answers %d: BlockTemplate: %v, want b's template", tc.mode.Code, err)
			}
			if tmpl.PrevHash != bestB {
				t.Fatalf("a answers %d: template on %s, want b's tip %s", tc.mode.Code, tmpl.PrevHash, bestB)
			}
			h := s.Health()
			if h[0].Up || !strings.Contains(h[0].LastError, tc.mode.Message) || !h[1].Up {
				t.Fatalf("health %+v, want a down with %q, b up", h, tc.mode.Message)
			}
		})
	}
}

// Two nodes that do not know each other: the first lags three blocks behind the second.
// The watcher mines on the higher tip although the lagging node is preferred, and goes
// back to the preferred node once it is ahead again.
func TestWatchAvoidsLaggingNode(t *testing.T) {
	a, b := regtest.StartT(t), regtest.StartT(t)
	ctx := testContext(t)
	hs, err := b.Client().Generate(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	tipB := hs[len(hs)-1]
	s := newSet(t, node.SetOptions{PollInterval: 50 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, a.Client(), b.Client())
	ch := watch(t, s)
	d := next(t, ch, 10*time.Second, func(d delivery) bool { return d.t.PrevHash == tipB })
	if d.t.Height != 5 || !d.newTip {
		t.Fatalf("template on b's tip: height %d newTip %v, want 5 true", d.t.Height, d.newTip)
	}
	h := s.Health()
	if !h[0].Behind || h[0].Height != 1 || h[1].Behind || h[1].Height != 4 {
		t.Fatalf("health %+v, want a behind at 1, b at 4", h)
	}
	// Nothing on a's tip is delivered while it lags.
	bestA, _ := a.Client().BestBlockHash(ctx)
	deadline := time.After(500 * time.Millisecond)
	for done := false; !done; {
		select {
		case d := <-ch:
			if d.t.PrevHash == bestA {
				t.Fatalf("template on the lagging node's tip %s delivered", bestA)
			}
		case <-deadline:
			done = true
		}
	}
	hs, err = a.Client().Generate(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, 10*time.Second, func(d delivery) bool { return d.t.PrevHash == hs[len(hs)-1] && d.t.Height == 6 })
}

// lockedBuffer is a log destination shared by the set's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Wrong credentials are not an outage: the node is asked seldom and the log says what is
// wrong once, not on every try.
func TestSetRefusedCredentials(t *testing.T) {
	a, b := regtest.StartT(t), regtest.StartT(t)
	pa := regtest.StartProxy(t, a)
	pa.Set(regtest.Unauthorized)
	var logs lockedBuffer
	s := newSet(t, node.SetOptions{
		Logger:     slog.New(slog.NewTextHandler(&logs, nil)),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: time.Hour, PollInterval: 20 * time.Millisecond,
	}, proxied(t, pa), b.Client())
	ch := watch(t, s)
	bestB, _ := b.Client().BestBlockHash(testContext(t))
	next(t, ch, 5*time.Second, func(d delivery) bool { return d.t.PrevHash == bestB })
	time.Sleep(time.Second) // the window in which a transient failure would be retried many times
	if n := pa.Requests(); n > 2 {
		t.Errorf("node with refused credentials asked %d times in a second, want at most 2", n)
	}
	if n := strings.Count(logs.String(), "refuses the RPC credentials"); n != 1 {
		t.Errorf("credentials error logged %d times, want once:\n%s", n, logs.String())
	}
	if h := s.Health(); h[0].Up || !strings.Contains(h[0].LastError, "401") {
		t.Errorf("health %+v, want node 0 down with http 401", h[0])
	}
}

// The startup check refuses wrong credentials and a node on another network, and lets a
// node that is only down pass (the set fails over from it).
func TestCheckNetwork(t *testing.T) {
	a := regtest.StartT(t)
	ctx := testContext(t)
	pa := regtest.StartProxy(t, a)
	ok := newSet(t, node.SetOptions{}, proxied(t, pa))
	if err := ok.CheckNetwork(ctx, "regtest"); err != nil {
		t.Fatalf("regtest node, --network regtest: %v", err)
	}
	err := ok.CheckNetwork(ctx, "mainnet")
	if !errors.Is(err, node.ErrMisconfigured) || !strings.Contains(err.Error(), `"regtest"`) || !strings.Contains(err.Error(), `"mainnet"`) {
		t.Fatalf("regtest node, --network mainnet: %v, want ErrMisconfigured naming both chains", err)
	}
	pa.Set(regtest.Unauthorized)
	err = ok.CheckNetwork(ctx, "regtest")
	if !errors.Is(err, node.ErrMisconfigured) || !strings.Contains(err.Error(), "credentials") || strings.Contains(err.Error(), "regtest@") {
		t.Fatalf("refused credentials: %v, want ErrMisconfigured about credentials, password redacted", err)
	}
	pa.Set(regtest.Down)
	if err := ok.CheckNetwork(ctx, "regtest"); err != nil {
		t.Fatalf("node down at startup: %v, want nil (fail over until it answers)", err)
	}
}

// btcd downloading the chain answers getblockchaininfo but refuses templates: the set
// must not take it back at every probe and drop it again at the next template.
func TestSetBacksOffNodeRefusingTemplates(t *testing.T) {
	a, b := regtest.StartT(t), regtest.StartT(t)
	pa := regtest.StartProxy(t, a)
	pa.Set(regtest.Mode{Code: -10, Message: "Bitcoin is downloading blocks...", Methods: []string{"getblocktemplate"}})
	s := newSet(t, node.SetOptions{PollInterval: 20 * time.Millisecond, RefreshInterval: 50 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 10 * time.Second}, proxied(t, pa), b.Client())
	ch := watch(t, s)
	bestB, _ := b.Client().BestBlockHash(testContext(t))
	next(t, ch, 5*time.Second, func(d delivery) bool { return d.t.PrevHash == bestB })
	time.Sleep(3 * time.Second) // templates every 50 ms: 60 chances to ask the refusing node
	// Backoff doubling from 50 ms allows about seven tries in 3 s.
	if n := pa.Calls("getblocktemplate"); n > 10 {
		t.Errorf("node refusing templates asked for %d in 3 s, want at most 10", n)
	}
	t.Logf("getblocktemplate calls to the refusing node: %d", pa.Calls("getblocktemplate"))
}
