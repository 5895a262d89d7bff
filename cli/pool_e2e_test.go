package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/pool"
)

// startPool runs RunPool on loopback ports and returns where it listens.
func startPool(t *testing.T, cfg PoolConfig) (PoolReady, func()) {
	t.Helper()
	return startService(t, "pool", func(ctx context.Context, env Env, ready func(PoolReady)) error {
		return RunPool(ctx, cfg, env, ready)
	})
}

// startService runs one of the long-running subcommands (pool, market) until it says
// it is ready, and returns what it said and a function that stops it, checks that it
// stopped cleanly, and shows the tail of its log if the test failed.
func startService[R any](t *testing.T, name string, run func(ctx context.Context, env Env, ready func(R)) error) (R, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	readyc := make(chan R, 1)
	errc := make(chan error, 1)
	var logs bytes.Buffer
	var mu sync.Mutex
	env := Env{Stdout: io.Discard, Stderr: lockedWriter{&mu, &logs}}
	go func() { errc <- run(ctx, env, func(r R) { readyc <- r }) }()
	var zero R
	select {
	case r := <-readyc:
		return r, func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("%s: %v", name, err)
			}
			if t.Failed() {
				mu.Lock()
				t.Logf("%s log (tail):\n%s", name, tail(logs.String(), 6000))
				mu.Unlock()
			}
		}
	case err := <-errc:
		cancel()
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%s: %v\n%s", name, err, logs.String())
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("%s did not start", name)
	}
	return zero, nil
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

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decode: %v", url, err)
	}
	return resp.StatusCode
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPoolEndToEnd runs the pool on a real btcd (regtest) with two hashgrid miners and
// a peer sending garbage, kills and restarts the node mid-run, and checks that the node
// accepted the blocks, that their coinbases pay the payout address, and that the API's
// counts match what the miners were told.
func TestPoolEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	btcd := regtest.StartT(t)
	payout := regtest.TestAddress()
	r, stopPool := startPool(t, PoolConfig{
		Nodes: []string{btcd.RPCURL()}, Network: "regtest", PayoutAddress: payout,
		Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(), Tag: "/e2e/",
		PollInterval: 100 * time.Millisecond, TrackInterval: 300 * time.Millisecond, ShareInterval: time.Second, LogLevel: "debug",
	})
	base := "http://" + r.API

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	users := []string{regtest.TestAddress() + ".alpha", regtest.TestAddressP2PKH() + ".beta"}
	miners := make([]*miner.Miner, len(users))
	var wg sync.WaitGroup
	for i, u := range users {
		m, err := miner.New(miner.Config{URL: "stratum+tcp://" + r.Stratum, User: u, VersionRoll: i == 0, MaxRetryWait: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		miners[i] = m
		wg.Go(func() { m.Run(ctx) })
	}

	// A peer that sends garbage, then an oversized line: it is answered or dropped, and
	// nobody else notices.
	garbageDone := make(chan string, 1)
	go func() { garbageDone <- garbagePeer(r.Stratum) }()

	blocksAtLeast := func(n int) func() bool {
		return func() bool {
			var bl []api.BlockInfo
			getJSON(t, base+"/api/v1/blocks", &bl)
			acc := 0
			for _, b := range bl {
				if b.Status == "accepted" || b.Status == "confirmed" {
					acc++
				}
			}
			return acc >= n
		}
	}
	waitFor(t, 90*time.Second, "4 accepted blocks", blocksAtLeast(4))
	if got := <-garbageDone; got != "" {
		t.Errorf("garbage peer: %s", got)
	}

	// Kill the node. The pool stays up, says it is degraded, and miners keep their
	// connections; btcd restarts on a fresh regtest chain and mining resumes on it.
	btcd.Kill()
	waitFor(t, 20*time.Second, "healthz to report degraded", func() bool {
		var h api.Health
		return getJSON(t, base+"/healthz", &h) == http.StatusServiceUnavailable && h.Status == "degraded"
	})
	// Every block found before the kill is in the store by now (the stream is durable
	// before a miner hears "true"; the consumer lags by milliseconds).
	oldChain := map[string]bool{}
	waitFor(t, 5*time.Second, "store to catch up", func() bool {
		var bl []api.BlockInfo
		getJSON(t, base+"/api/v1/blocks", &bl)
		for _, b := range bl {
			oldChain[b.Hash] = true
		}
		return len(oldChain) >= 4
	})
	before := miners[0].Stats().Connects + miners[1].Stats().Connects
	if err := btcd.Restart(context.Background()); err != nil {
		t.Fatalf("restart btcd: %v", err)
	}
	waitFor(t, 30*time.Second, "healthz ok after restart", func() bool {
		var h api.Health
		return getJSON(t, base+"/healthz", &h) == http.StatusOK
	})
	// The restarted btcd begins a new chain; once it is OrphanDepth blocks past the
	// old blocks' heights (a shorter chain only lags and orphans nothing), the old
	// blocks are orphaned, the ones found while it was down are superseded, and new
	// ones are found on it.
	var oldTop int64
	var old []api.BlockInfo
	getJSON(t, base+"/api/v1/blocks", &old)
	for _, b := range old {
		oldTop = max(oldTop, b.Height)
	}
	if _, err := btcd.Client().Generate(context.Background(), int(oldTop)+pool.DefaultOrphanDepth); err != nil {
		t.Fatal(err)
	}
	newBlocks := func() (n int) {
		var bl []api.BlockInfo
		getJSON(t, base+"/api/v1/blocks", &bl)
		for _, b := range bl {
			if !oldChain[b.Hash] && b.Status == "accepted" {
				n++
			}
		}
		return n
	}
	waitFor(t, 90*time.Second, "two blocks on the restarted node", func() bool { return newBlocks() >= 2 })
	waitFor(t, 30*time.Second, "old-chain blocks to be orphaned", func() bool {
		var bl []api.BlockInfo
		getJSON(t, base+"/api/v1/blocks", &bl)
		for _, b := range bl {
			if oldChain[b.Hash] && b.Status != "orphaned" && b.Status != "rejected" {
				return false
			}
		}
		return true
	})
	if after := miners[0].Stats().Connects + miners[1].Stats().Connects; after != before {
		t.Errorf("miners reconnected %d times while the node was down; the pool should have kept them", after-before)
	}
	// Each miner has expected only a few shares by now (at regtest's difficulty every
	// share is a block, a few a second): let each have one before they stop, rather
	// than fail on a Poisson draw of zero (CI saw 0 for 13.4M hashes, 3.1 expected).
	waitFor(t, 60*time.Second, "a share accepted from each miner", func() bool {
		return miners[0].Stats().Accepted > 0 && miners[1].Stats().Accepted > 0
	})

	cancel()
	wg.Wait()

	// Every share a miner was told is accepted is in the store, once.
	var wantAccepted uint64
	perAddr := map[string]uint64{}
	for i, m := range miners {
		s := m.Stats()
		t.Logf("miner %s: %+v", users[i], s)
		if s.Accepted == 0 {
			t.Errorf("miner %s had no accepted shares", users[i])
		}
		wantAccepted += s.Accepted
		perAddr[strings.Split(users[i], ".")[0]] += s.Accepted
	}
	waitFor(t, 10*time.Second, "API accepted count to match the miners'", func() bool {
		var info api.PoolInfo
		getJSON(t, base+"/api/v1/pool", &info)
		return info.SharesAccepted == wantAccepted
	})
	for addr, want := range perAddr {
		var ai api.AddressInfo
		getJSON(t, base+"/api/v1/workers/"+addr, &ai)
		if ai.Accepted != want {
			t.Errorf("worker API for %s: accepted %d, miner counted %d", addr, ai.Accepted, want)
		}
	}

	// Every block the pool reports accepted after the restart is on the node's chain and
	// its coinbase pays the payout address all of the reward.
	wantScript, err := pool.AddressScript(payout, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	var bl []api.BlockInfo
	getJSON(t, base+"/api/v1/blocks", &bl)
	checked := 0
	for _, b := range bl {
		if b.Status != "accepted" || oldChain[b.Hash] {
			continue
		}
		h, _ := chainhash.NewHashFromStr(b.Hash)
		blk := getBlock(t, btcd, *h)
		cb := blk.Transactions[0]
		if len(cb.TxOut) == 0 || !bytes.Equal(cb.TxOut[0].PkScript, wantScript) || cb.TxOut[0].Value != b.Reward {
			t.Errorf("block %s: coinbase output %x / %d, want %x / %d", b.Hash, cb.TxOut[0].PkScript, cb.TxOut[0].Value, wantScript, b.Reward)
		}
		if !bytes.Contains(cb.TxIn[0].SignatureScript, []byte("/e2e/")) {
			t.Errorf("block %s: coinbase script %x lacks the pool tag", b.Hash, cb.TxIn[0].SignatureScript)
		}
		checked++
	}
	if checked == 0 {
		t.Error("no block from after the restart to check")
	}
	stopPool()
}

// getBlock fetches a block from the node as raw bytes.
func getBlock(t *testing.T, n *regtest.Node, h chainhash.Hash) *wire.MsgBlock {
	t.Helper()
	var hexBlock string
	if err := n.Client().Call(context.Background(), "getblock", []any{h.String(), 0}, &hexBlock); err != nil {
		t.Fatalf("getblock %s: %v", h, err)
	}
	raw, err := hex.DecodeString(hexBlock)
	if err != nil {
		t.Fatal(err)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	return &blk
}

// garbagePeer sends malformed lines, a submit before subscribing, and finally a line
// longer than the limit. It returns "" when the server answered errors and then
// dropped it, or a description of what went wrong.
func garbagePeer(addr string) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	send := func(s string) { io.WriteString(c, s) }
	send("this is not json\n")
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, `"error":[20`) {
		return fmt.Sprintf("want error 20 for garbage, got %q %v", line, err)
	}
	send(`{"id":7,"method":"mining.submit","params":["x","1","00","00000000","00000000"]}` + "\n")
	line, err = br.ReadString('\n')
	if err != nil || !strings.Contains(line, `"id":7`) || !strings.Contains(line, "[25") {
		return fmt.Sprintf("want error 25 for submit before subscribe, got %q %v", line, err)
	}
	send(`{"id":8,"method":"mining.authorize","params":["notanaddress.w","x"]}` + "\n")
	line, err = br.ReadString('\n')
	if err != nil || !strings.Contains(line, `"result":false`) {
		return fmt.Sprintf("want false for a bad address, got %q %v", line, err)
	}
	send(strings.Repeat("A", 100_000))
	for {
		if _, err := br.ReadString('\n'); err != nil {
			return "" // dropped
		}
	}
}
