package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/pool"
)

// On regtest the network difficulty is 4.66e-10, below any share difficulty a pool
// hands out, so every share is a block. The test therefore fixes the miners' share
// difficulty (password d=...) and sizes the PPLNS window in that unit: N = 4.29e7
// network difficulties is 0.02 difficulty, the last 40 shares of 0.0005. Miners differ
// in speed by their hashing threads (1, 1 and 2).
const (
	e2eShareDiff  = 0.0005
	e2eWindowN    = 0.02 / 4.656542373906925e-10
	e2eFeeBps     = 100
	e2eDirectMin  = 20_0000_0000 // only the fast miner's credit reaches 20 BTC of 50
	e2eMinBlocks  = 60
	e2eWindowSize = 40
)

func runPayoutCLI(t *testing.T, cmd *Command, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := cmd.Run(context.Background(), args, Env{Stdout: &out, Stderr: &out, Getenv: os.Getenv})
	return out.String(), err
}

// TestPayoutPPLNSEndToEnd runs the pool under PPLNS on btcd with three miners of
// different speeds until many blocks are found, then checks every credited block: the
// credits follow the miners' weight in the committed window, the coinbase pays the
// miners above the threshold directly, `hashgrid verify` agrees for every miner and
// fails once the published window or split is altered. Then btcd restarts on a fresh
// chain: the old blocks are orphaned and their credits reversed.
func TestPayoutPPLNSEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	btcd := regtest.StartT(t)
	data := t.TempDir()
	r, stopPool := startPool(t, PoolConfig{
		Nodes: []string{btcd.RPCURL()}, Network: "regtest", PayoutAddress: regtest.TestAddress(),
		Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: data, Tag: "/payout-e2e/",
		PollInterval: 100 * time.Millisecond, TrackInterval: 300 * time.Millisecond, LogLevel: "debug",
		PayoutScheme: "pplns", PPLNSWindow: e2eWindowN, PoolFeeBps: e2eFeeBps, CoinbaseThreshold: e2eDirectMin,
		PayoutThreshold: 1_0000_0000, PayoutInterval: time.Second,
	})
	base := "http://" + r.API
	addrs := []string{e2eAddress(t, 1), e2eAddress(t, 2), e2eAddress(t, 3)}
	threads := []int{1, 1, 2}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i, a := range addrs {
		m, err := miner.New(miner.Config{URL: "stratum+tcp://" + r.Stratum, User: a + ".w", Password: "d=0.0005", Threads: threads[i], MaxRetryWait: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { m.Run(ctx) })
	}
	// credited lists the standing blocks the ledger credited; full keeps only those
	// whose window had filled.
	credited := func(full bool) (blocks []api.BlockInfo) {
		var bl []api.BlockInfo
		getJSON(t, base+"/api/v1/blocks", &bl)
		for _, b := range bl {
			if b.Status != "accepted" && b.Status != "confirmed" {
				continue
			}
			var v payout.WindowView
			if getJSON(t, base+"/api/v1/blocks/"+b.Hash+"/window?limit=1", &v) == http.StatusOK && v.Credit != nil && (!full || v.Params.Count >= e2eWindowSize) {
				blocks = append(blocks, b)
			}
		}
		return blocks
	}
	waitFor(t, 4*time.Minute, "blocks credited over full windows", func() bool { return len(credited(true)) >= e2eMinBlocks })
	cancel()
	wg.Wait()
	// Let the last blocks be credited and some mature.
	waitFor(t, 30*time.Second, "the ledger to catch up", func() bool {
		var bl []api.BlockInfo
		getJSON(t, base+"/api/v1/blocks", &bl)
		n := 0
		for _, b := range bl {
			if b.Status == "accepted" || b.Status == "confirmed" {
				n++
			}
		}
		return len(credited(false)) == n
	})
	blocks := credited(true)
	t.Logf("%d blocks credited", len(blocks))

	directSeen, confirmed := 0, 0
	checkedShares := map[string]int{}
	for _, b := range blocks {
		if b.Status == "confirmed" {
			confirmed++
		}
		v, err := fetchWindow(context.Background(), http.DefaultClient, base, b.Hash)
		if err != nil {
			t.Fatal(err)
		}
		// Proportional to the window's shares: all shares weigh the same except the
		// cut oldest one, so each credit is within one share's worth of its count's part.
		count := map[string]int{}
		for _, s := range v.Shares {
			count[s.Address]++
		}
		dist := v.Reward - v.Reward*e2eFeeBps/10_000
		h, _ := chainhash.NewHashFromStr(b.Hash)
		cb := getBlock(t, btcd, *h).Transactions[0]
		for _, c := range v.Credit.Credits {
			want := dist * int64(count[c.Address]) / int64(len(v.Shares))
			if d := c.Amount - want; d > dist/int64(len(v.Shares))+1 || -d > dist/int64(len(v.Shares))+1 {
				t.Errorf("block %s: %s credited %d for %d of %d shares, want about %d", b.Hash, c.Address, c.Amount, count[c.Address], len(v.Shares), want)
			}
			if (c.Amount >= e2eDirectMin) != c.Direct {
				t.Errorf("block %s: credit %d to %s direct=%v, threshold %d", b.Hash, c.Amount, c.Address, c.Direct, e2eDirectMin)
			}
			if c.Direct {
				directSeen++
				script, _ := pool.AddressScript(c.Address, &chaincfg.RegressionNetParams)
				found := false
				for _, o := range cb.TxOut {
					found = found || (bytes.Equal(o.PkScript, script) && o.Value == c.Amount)
				}
				if !found {
					t.Errorf("block %s: coinbase does not pay %s its %d", b.Hash, c.Address, c.Amount)
				}
			}
		}
		for a, n := range count {
			checkedShares[a] += n
		}
	}
	if directSeen == 0 {
		t.Error("no credit was paid by a coinbase output")
	}
	t.Logf("direct outputs checked: %d; blocks confirmed: %d; window shares by miner: %v", directSeen, confirmed, checkedShares)
	for _, a := range addrs {
		if checkedShares[a] == 0 {
			t.Errorf("miner %s has no share in any window", a)
		}
	}

	// verify agrees for every miner on a sample of blocks, with and without the chain.
	sample := []api.BlockInfo{blocks[0], blocks[len(blocks)/2], blocks[len(blocks)-1]}
	for _, b := range sample {
		for _, a := range addrs {
			out, err := runPayoutCLI(t, verifyCommand(), "--block", b.Hash, "--address", a, "--api", base, "--node", btcd.RPCURL())
			if err != nil || !strings.Contains(out, "ok: the credit matches") {
				t.Errorf("verify %s %s: %v\n%s", b.Hash, a, err, out)
			}
		}
	}
	if out, err := runPayoutCLI(t, verifyCommand(), "--block", sample[0].Hash, "--address", addrs[0], "--api", base); err != nil || !strings.Contains(out, "pass --node") {
		t.Errorf("verify without a node: %v\n%s", err, out)
	}

	// A pool that publishes an altered window or split fails verify for every miner.
	tampers := map[string]func(*payout.WindowView){
		"share moved to another miner": func(v *payout.WindowView) {
			sh := &v.Shares[len(v.Shares)/2]
			if sh.Address == addrs[0] {
				sh.Address = addrs[1]
			} else {
				sh.Address = addrs[0]
			}
		},
		"share weight raised": func(v *payout.WindowView) { v.Shares[3].Diff *= 2; v.Shares[3].Weight *= 2 },
		"split altered":       func(v *payout.WindowView) { v.Credit.Credits[0].Amount -= 1000; v.Credit.Pool += 1000 },
	}
	for name, tamper := range tampers {
		proxy := tamperingProxy(t, base, tamper)
		for _, a := range addrs {
			for _, withNode := range []bool{true, false} {
				args := []string{"--block", sample[1].Hash, "--address", a, "--api", proxy.URL}
				if withNode {
					args = append(args, "--node", btcd.RPCURL())
				}
				out, err := runPayoutCLI(t, verifyCommand(), args...)
				if err == nil || !strings.Contains(out, "MISMATCH") {
					t.Errorf("%s: verify %s (node %v) passed:\n%s", name, a, withNode, out)
				}
			}
		}
		proxy.Close()
	}

	// 69 more blocks from the node itself: the pool's blocks at least 31 deep reach
	// 100 confirmations and mature (direct credits count as paid, custody credits
	// become balances, those above the payout threshold leave in an exported payout
	// batch); the newer ones stay immature for the reorg below.
	if _, err := btcd.Client().Generate(context.Background(), 69); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "matured credits and a payout batch", func() bool {
		var ps []payout.PayoutView
		getJSON(t, base+"/api/v1/payouts", &ps)
		var m api.MinerInfo
		getJSON(t, base+"/api/v1/miners/"+url.PathEscape(addrs[2]), &m)
		// The batch is listed (and its balances pending) before its file is written.
		files, _ := filepath.Glob(filepath.Join(data, "payouts", "payout-*.json"))
		return len(ps) > 0 && m.Balances.Paid > 0 && len(files) > 0
	})
	for _, a := range addrs {
		var m api.MinerInfo
		getJSON(t, base+"/api/v1/miners/"+url.PathEscape(a), &m)
		t.Logf("miner %s after maturity: shares %d, %+v", a, m.Accepted, m.Balances)
		if b := m.Balances; b.Earned != b.Immature+b.Mature+b.Pending+b.Paid || b.Earned <= 0 || b.Immature <= 0 {
			t.Errorf("miner %s balances %+v", a, b)
		}
	}

	// btcd restarts on a fresh chain that grows past the old one: every credited block
	// is orphaned and its credit reversed; the miners' immature earnings go back to
	// zero. (A fresh chain that stays shorter only lags: it orphans nothing.)
	old, err := btcd.Client().ChainInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	btcd.Kill()
	if err := btcd.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := btcd.Client().Generate(context.Background(), int(old.Blocks)+pool.DefaultOrphanDepth); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "old blocks orphaned and reversed", func() bool {
		for _, a := range addrs {
			var m api.MinerInfo
			getJSON(t, base+"/api/v1/miners/"+url.PathEscape(a), &m)
			if m.Balances.Immature != 0 {
				return false
			}
		}
		return true
	})
	var m api.MinerInfo
	getJSON(t, base+"/api/v1/miners/"+url.PathEscape(addrs[2]), &m)
	orphaned := 0
	for _, c := range m.Credits {
		if c.Kind == "orphaned" {
			orphaned++
		}
	}
	if orphaned == 0 {
		t.Errorf("miner view shows no reversed credit: %+v", m.Balances)
	}
	t.Logf("fast miner after the reorg: %+v, %d reversed credits listed", m.Balances, orphaned)
	stopPool()
	led, err := ledger.Open(filepath.Join(data, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	if err := led.Check(context.Background()); err != nil {
		t.Errorf("ledger after the run: %v", err)
	}
}

// e2eAddress returns a regtest P2PKH address of a made-up key hash.
func e2eAddress(t *testing.T, i byte) string {
	t.Helper()
	var h [20]byte
	h[0], h[19] = i, 0x5a
	a, err := address.NewAddressPubKeyHash(h[:], &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	return a.EncodeAddress()
}

// tamperingProxy serves the pool's API, altering block window replies with f: a pool
// that publishes something other than what it committed to.
func tamperingProxy(t *testing.T, base string, f func(*payout.WindowView)) *httptest.Server {
	t.Helper()
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(base + r.URL.RequestURI())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if strings.HasSuffix(r.URL.Path, "/window") && resp.StatusCode == http.StatusOK {
			var v payout.WindowView
			if err := json.Unmarshal(body, &v); err == nil && len(v.Shares) > 3 && v.Credit != nil {
				f(&v)
				body, _ = json.Marshal(v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	}))
}
