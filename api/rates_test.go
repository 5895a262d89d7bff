package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/sqlite"
)

// snapshotData matches the first snapshot the dashboard page carries.
var snapshotData = regexp.MustCompile(`<script type="application/json" id="snapshot">.*?</script>`)

// youngPool serves the API of a pool that started two minutes before now and has
// had one miner sending a share of difficulty 1 every 10 seconds since.
func youngPool(t *testing.T, now time.Time, nodeStatus api.NodeStatus, nShares int) (*httptest.Server, hashgrid.Work) {
	t.Helper()
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	started := now.Add(-2 * time.Minute)
	var shares []hashgrid.Share
	var work hashgrid.Work
	for i := range nShares {
		sh := hashgrid.Share{Seq: uint64(i + 1), Time: started.Add(time.Duration(i+1) * 10 * time.Second).Add(-time.Second), Address: addrA, Worker: "rig1",
			JobID: "1", Height: 201, Diff: hashgrid.DiffOne, Actual: hashgrid.DiffOne * 2}
		shares = append(shares, sh)
		work = work.Add(sh.Diff)
	}
	if len(shares) > 0 {
		if err := store.AddShares(context.Background(), shares); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(api.New(api.Config{Store: store, Pool: fakePool{}, Node: nodeStatus, Network: "regtest",
		Now: func() time.Time { return now }, Dashboard: api.DashboardConfig{Started: started}}).Handler())
	t.Cleanup(srv.Close)
	return srv, work
}

// TestYoungPoolHashrate: a pool two minutes old rates its miners over those two
// minutes, not over the ten-minute window it has not lived yet.
func TestYoungPoolHashrate(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 30, 30, 0, time.UTC)
	srv, work := youngPool(t, now, nil, 12)
	want := work.Hashes() / 120
	var info api.PoolInfo
	if err := json.Unmarshal(mustGet(t, srv.URL+"/api/v1/pool"), &info); err != nil {
		t.Fatal(err)
	}
	if math.Abs(info.Hashrate-want) > want*1e-9 || info.HashrateSpan != 120 {
		t.Errorf("pool hashrate %.6g over %d s, want %.6g over 120 s (the window is %d s)", info.Hashrate, info.HashrateSpan, want, info.HashrateWindow)
	}
	var av api.AddressView
	if err := json.Unmarshal(mustGet(t, srv.URL+"/api/v1/address/"+addrA), &av); err != nil {
		t.Fatal(err)
	}
	if math.Abs(av.Hashrate-want) > want*1e-9 {
		t.Errorf("address hashrate %.6g, want %.6g", av.Hashrate, want)
	}
}

// chain is a node whose blocks 1..n came every 30 seconds after a genesis of 2011.
type chain struct {
	fakeNode
	headers map[chainhash.Hash]node.BlockHeader
	tip     chainhash.Hash
	calls   int
}

func newChain(n int) *chain {
	c := &chain{headers: map[chainhash.Hash]node.BlockHeader{}}
	var prev chainhash.Hash
	t0 := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC).Unix()
	for h := 0; h <= n; h++ {
		hash := chainhash.Hash{byte(h + 1)}
		tm := t0 + int64(h)*30
		if h == 0 {
			tm = 1296688602
		}
		c.headers[hash] = node.BlockHeader{Hash: hash, Height: int64(h), Time: tm, PrevHash: prev}
		prev, c.tip = hash, hash
	}
	return c
}

func (c *chain) BestBlockHash(ctx context.Context) (chainhash.Hash, error) { return c.tip, nil }
func (c *chain) BlockHeaderVerbose(ctx context.Context, h chainhash.Hash) (node.BlockHeader, error) {
	c.calls++
	hd, ok := c.headers[h]
	if !ok {
		return hd, fmt.Errorf("no block %s", h)
	}
	return hd, nil
}

// TestNetworkHashrateFromBlocks: the network hashrate is the difficulty's work per
// block over the time the last blocks really took, not over 600 s each (on regtest
// that shows 0.00 H/s).
func TestNetworkHashrateFromBlocks(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 30, 30, 0, time.UTC)
	c := newChain(9)
	srv, _ := youngPool(t, now, c, 0)
	diff := fakePool{}.Stats().NetworkDiff
	// Blocks 1..9: 8 intervals of 30 s; the genesis block's 2011 time is left out.
	want := diff * math.Exp2(32) * 8 / 240
	var info api.PoolInfo
	if err := json.Unmarshal(mustGet(t, srv.URL+"/api/v1/pool"), &info); err != nil {
		t.Fatal(err)
	}
	if math.Abs(info.NetworkHashrate-want) > want*1e-9 || info.NetworkHashrateBlocks != 8 || info.NetworkHashrateFrom != "blocks" {
		t.Errorf("network hashrate %.6g over %d blocks, want %.6g over 8", info.NetworkHashrate, info.NetworkHashrateBlocks, want)
	}
	var nw api.PPNetwork
	if err := json.Unmarshal(mustGet(t, srv.URL+"/api/network"), &nw); err != nil {
		t.Fatal(err)
	}
	if nw.NetworkHashPS != math.Round(want) {
		t.Errorf("public-pool networkhashps %v, want %v", nw.NetworkHashPS, math.Round(want))
	}
	if c.calls != 10 {
		t.Errorf("%d header calls for one tip, want 10 (each header once)", c.calls)
	}

	// A pool mining faster than the blocks suggest (regtest: nearly every share is a
	// block) is part of the network: the network is at least as fast as the pool.
	srv, _ = youngPool(t, now, newChain(9), 12)
	if err := json.Unmarshal(mustGet(t, srv.URL+"/api/v1/pool"), &info); err != nil {
		t.Fatal(err)
	}
	if info.NetworkHashrate != info.Hashrate || info.NetworkHashrateFrom != "pool" {
		t.Errorf("network hashrate %.6g from %q beside a pool of %.6g", info.NetworkHashrate, info.NetworkHashrateFrom, info.Hashrate)
	}
}

// TestPageCarriesFirstSnapshot: the dashboard page arrives with the pool's figures,
// so it is not empty while its event stream connects; an address the pool knows
// nothing of says so instead of showing zeros.
func TestPageCarriesFirstSnapshot(t *testing.T) {
	srv, _, _ := newServer(t, nil)
	for _, tc := range []struct {
		path  string
		known any // address.known, nil for the pool page
	}{
		{"/", nil},
		{"/address/" + addrA, true},
		{"/address/bcrt1qnobodyhere", false},
	} {
		page := mustGet(t, srv.URL+tc.path)
		m := snapshotData.Find(page)
		if m == nil {
			t.Errorf("%s carries no snapshot", tc.path)
			continue
		}
		js := strings.TrimSuffix(strings.TrimPrefix(string(m), `<script type="application/json" id="snapshot">`), `</script>`)
		var snap map[string]any
		if err := json.Unmarshal([]byte(js), &snap); err != nil {
			t.Fatalf("%s: snapshot: %v", tc.path, err)
		}
		pool, _ := snap["pool"].(map[string]any)
		if pool["network"] != "regtest" || pool["shares_accepted"] != float64(36) {
			t.Errorf("%s: snapshot pool %v", tc.path, pool)
		}
		addr, _ := snap["address"].(map[string]any)
		if tc.known == nil {
			if addr != nil {
				t.Errorf("%s: snapshot has an address", tc.path)
			}
		} else if addr["known"] != tc.known {
			t.Errorf("%s: address known = %v, want %v", tc.path, addr["known"], tc.known)
		}
	}
	// No value can close the data element early.
	if strings.Count(string(mustGet(t, srv.URL+"/")), "</script>") != 2 {
		t.Errorf("the page has other than its two script elements")
	}
}
