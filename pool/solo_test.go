package pool_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"net"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid/bench"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/stratum"
)

// TestFinderLayouts runs the pool with a SOLO-style OutputFunc (each finder's coinbase
// pays the finder) and checks over real connections that each miner's jobs pay its own
// address, and that a difficulty change brings a new job id over the same layout.
func TestFinderLayouts(t *testing.T) {
	net0 := &chaincfg.MainNetParams
	p, poolAddr := startSolo(t, net0)
	defer p.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, addr := range []string{"1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"} {
		c, err := stratum.Dial(ctx, stratum.ClientConfig{URL: "stratum+tcp://" + poolAddr, User: addr + ".w", Password: "x"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		want, _ := pool.AddressScript(addr, net0)
		first := <-c.Updates()
		if cb2, _ := hex.DecodeString(first.Notify.Coinb2); !bytes.Contains(cb2, want) {
			t.Errorf("%s: coinbase does not pay the finder", addr)
		}
		// A new difficulty comes with a new job id over the same layout.
		if _, err := c.Call(ctx, "mining.suggest_difficulty", []byte("[512]")); err != nil {
			t.Fatal(err)
		}
		var second stratum.Work
		select {
		case second = <-c.Updates():
		case <-ctx.Done():
			t.Fatalf("%s: no job after the difficulty change", addr)
		}
		if second.Notify.JobID == first.Notify.JobID || second.Difficulty != 512 {
			t.Errorf("%s: job %s at %g after job %s", addr, second.Notify.JobID, second.Difficulty, first.Notify.JobID)
		}
		if second.Notify.Coinb2 != first.Notify.Coinb2 {
			t.Errorf("%s: layout changed with the difficulty", addr)
		}
	}
}

// TestFinderLayoutsOnBroadcast checks that a new tip's broadcast gives each SOLO
// connection the layout paying its own address, with connections of different
// addresses interleaved (the broadcast's address cache must tell them apart).
func TestFinderLayoutsOnBroadcast(t *testing.T) {
	net0 := &chaincfg.MainNetParams
	p, poolAddr := startSolo(t, net0)
	defer p.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b := "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
	addrs := []string{a, b, a, b, b, a}
	clients := make([]*stratum.Client, len(addrs))
	for i, addr := range addrs {
		c, err := stratum.Dial(ctx, stratum.ClientConfig{URL: "stratum+tcp://" + poolAddr, User: addr + ".w", Password: "x"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		<-c.Updates() // the job on authorizing
		clients[i] = c
	}
	if err := p.UpdateTemplate(bench.Template(900_001, 10), true); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		want, _ := pool.AddressScript(addrs[i], net0)
		select {
		case w := <-c.Updates():
			cb2, _ := hex.DecodeString(w.Notify.Coinb2)
			if !w.Notify.CleanJobs || !bytes.Contains(cb2, want) {
				t.Errorf("connection %d (%s): new tip's job (clean %v) does not pay its address", i, addrs[i], w.Notify.CleanJobs)
			}
		case <-ctx.Done():
			t.Fatalf("connection %d: no job for the new tip", i)
		}
	}
}

// startSolo serves a pool whose coinbase pays each share's finder (SOLO-style), on a
// template at height 900,000, and returns it with its Stratum address.
func startSolo(t *testing.T, net0 *chaincfg.Params) (*pool.Pool, string) {
	t.Helper()
	p := newSoloPool(t, net0)
	if err := p.UpdateTemplate(bench.Template(900_000, 10), true); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(l)
	return p, l.Addr().String()
}

// soloPoolAddress is paid by the shared layout of the SOLO test pools.
const soloPoolAddress = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"

// newSoloPool returns a pool whose coinbase pays each share's finder (SOLO-style).
func newSoloPool(tb testing.TB, net0 *chaincfg.Params) *pool.Pool {
	tb.Helper()
	solo := func(tmpl *node.Template, value int64, finder string) ([]pool.Output, string, error) {
		if finder == "" {
			finder = soloPoolAddress
		}
		sc, err := pool.AddressScript(finder, net0)
		if err != nil {
			return nil, "", err
		}
		return []pool.Output{{Value: value, Script: sc}}, finder, nil
	}
	p, err := pool.New(pool.Config{Network: net0, Outputs: solo}, nil, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
