package pool_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/bench"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/stratum"
)

func TestNetworkDifficulties(t *testing.T) {
	custom := chaincfg.CustomSignetParams([]byte{0x51}, nil) // OP_TRUE challenge
	tests := []struct {
		net  *chaincfg.Params
		want pool.Difficulties
	}{
		{&chaincfg.MainNetParams, pool.Difficulties{Start: 16384, Min: 256, Max: 4e9}},
		{&chaincfg.TestNet3Params, pool.Difficulties{Start: 42, Min: 1, Max: 4e9}},
		{&chaincfg.TestNet4Params, pool.Difficulties{Start: 42, Min: 1, Max: 4e9}},
		{&chaincfg.SigNetParams, pool.Difficulties{Start: 1, Min: 0.001, Max: 4e9}},
		{&custom, pool.Difficulties{Start: 1, Min: 0.001, Max: 4e9}},
		{&chaincfg.RegressionNetParams, pool.Difficulties{Start: 0.001, Min: 1e-6, Max: 4e9}},
		{&chaincfg.SimNetParams, pool.Difficulties{Start: 0.001, Min: 1e-6, Max: 4e9}},
		{nil, pool.Difficulties{Start: 16384, Min: 256, Max: 4e9}},
	}
	for _, tt := range tests {
		if got := pool.NetworkDifficulties(tt.net); got != tt.want {
			name := "nil"
			if tt.net != nil {
				name = tt.net.Name
			}
			t.Errorf("%s: got %+v, want %+v", name, got, tt.want)
		}
	}
}

// diffPool serves a pool on net (with cfg's difficulty fields) paying one address.
func diffPool(t *testing.T, net0 *chaincfg.Params, addr string, cfg pool.Config) (*pool.Pool, string) {
	t.Helper()
	out, err := pool.SingleAddress(addr, net0)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Network, cfg.Outputs = net0, out
	return servePool(t, cfg, nil)
}

// servePool serves a pool of cfg on loopback, on the benchmark template at height
// 900,000, its shares going to sink, until the test ends.
func servePool(t *testing.T, cfg pool.Config, sink pool.ShareSink) (*pool.Pool, string) {
	t.Helper()
	p, err := pool.New(cfg, nil, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.UpdateTemplate(bench.Template(900_000, 10), true); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	return p, l.Addr().String()
}

// firstWork dials addr and returns the client with its first job.
func firstWork(t *testing.T, ctx context.Context, cfg stratum.ClientConfig) (*stratum.Client, stratum.Work) {
	t.Helper()
	c, err := stratum.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	select {
	case w := <-c.Updates():
		return c, w
	case <-ctx.Done():
		t.Fatal("no job")
	}
	panic("unreachable")
}

// nextWork returns the client's next job.
func nextWork(t *testing.T, ctx context.Context, c *stratum.Client) stratum.Work {
	t.Helper()
	select {
	case w := <-c.Updates():
		return w
	case <-ctx.Done():
		t.Fatal("no job")
	}
	panic("unreachable")
}

// TestDifficultyDefaultsOverTCP checks, over real connections, the difficulty a
// miner gets on each network by default and when it asks for a lower one with a "d="
// password option, mining.suggest_difficulty or the minimum-difficulty extension.
func TestDifficultyDefaultsOverTCP(t *testing.T) {
	tests := []struct {
		net0       *chaincfg.Params
		addr       string
		start, min float64
	}{
		{&chaincfg.MainNetParams, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", 16384, 256},
		{&chaincfg.TestNet3Params, "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", 42, 1},
		{&chaincfg.SigNetParams, "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", 1, 0.001},
		{&chaincfg.RegressionNetParams, "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", 0.001, 1e-6},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tt := range tests {
		// Difficulties travel in fixed point (units of 2^-32).
		tt.start, tt.min = hashgrid.DiffFromFloat(tt.start).Float(), hashgrid.DiffFromFloat(tt.min).Float()
		t.Run(tt.net0.Name, func(t *testing.T) {
			_, poolAddr := diffPool(t, tt.net0, tt.addr, pool.Config{})
			url := "stratum+tcp://" + poolAddr
			if _, w := firstWork(t, ctx, stratum.ClientConfig{URL: url, User: tt.addr + ".a", Password: "x"}); w.Difficulty != tt.start {
				t.Errorf("start difficulty %g, want %g", w.Difficulty, tt.start)
			}
			if _, w := firstWork(t, ctx, stratum.ClientConfig{URL: url, User: tt.addr + ".b", Password: "d=1e-9"}); w.Difficulty != tt.min {
				t.Errorf("d=1e-9 gave difficulty %g, want the minimum %g", w.Difficulty, tt.min)
			}
			if _, w := firstWork(t, ctx, stratum.ClientConfig{URL: url, User: tt.addr + ".c", Password: "x", SuggestDiff: 1e-9}); w.Difficulty != tt.min {
				t.Errorf("suggesting 1e-9 before authorizing gave difficulty %g, want the minimum %g", w.Difficulty, tt.min)
			}
			c, _ := firstWork(t, ctx, stratum.ClientConfig{URL: url, User: tt.addr + ".d", Password: "x"})
			if _, err := c.Call(ctx, "mining.suggest_difficulty", []byte("[1e-9]")); err != nil {
				t.Fatal(err)
			}
			if w := nextWork(t, ctx, c); w.Difficulty != tt.min {
				t.Errorf("suggesting 1e-9 after authorizing gave difficulty %g, want the minimum %g", w.Difficulty, tt.min)
			}
			// Asking for more than the maximum gets the maximum.
			if _, w := firstWork(t, ctx, stratum.ClientConfig{URL: url, User: tt.addr + ".e", Password: "d=1e12"}); w.Difficulty != 4e9 {
				t.Errorf("d=1e12 gave difficulty %g, want 4e9", w.Difficulty)
			}
		})
	}
}

func TestDifficultyConfig(t *testing.T) {
	out, err := pool.SingleAddress("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", &chaincfg.MainNetParams)
	if err != nil {
		t.Fatal(err)
	}
	// A start below mainnet's minimum with the minimum left to its default is refused,
	// not taken as a silent lower floor.
	_, err = pool.New(pool.Config{Network: &chaincfg.MainNetParams, Outputs: out, StartDiff: 1}, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "minimum") {
		t.Errorf("start 1 on mainnet: err %v, want one naming the minimum", err)
	}
	// With the minimum set too, it is the operator's choice.
	if _, err := pool.New(pool.Config{Network: &chaincfg.MainNetParams, Outputs: out, StartDiff: 1, MinDiff: 0.5}, nil, nil, nil); err != nil {
		t.Errorf("start 1, minimum 0.5 on mainnet: %v", err)
	}
	// A minimum set above the network's start raises the start with it.
	if _, err := pool.New(pool.Config{Network: &chaincfg.MainNetParams, Outputs: out, MinDiff: 65536}, nil, nil, nil); err != nil {
		t.Errorf("minimum 65536 on mainnet: %v", err)
	}
}
