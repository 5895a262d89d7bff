package api_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/sqlite"
)

// v2Sessions has one worker on Stratum V1, one on V2 (the bridge's user agent) and one
// on both.
type v2Sessions struct{ fakeSessions }

func (*v2Sessions) Sessions() []pool.SessionInfo {
	at := time.Now().Add(-time.Minute)
	return []pool.SessionInfo{
		{ID: "00000001", UserAgent: "bitaxe/2.1", Address: addrA, Workers: []string{"v1rig"}, ConnectedAt: at},
		{ID: "00000002", UserAgent: "sv2/braiins/2024", Address: addrA, Workers: []string{"v2rig"}, ConnectedAt: at},
		{ID: "00000003", UserAgent: "sv2/braiins/2024", Address: addrA, Workers: []string{"both"}, ConnectedAt: at},
		{ID: "00000004", UserAgent: "cgminer", Address: addrA, Workers: []string{"both"}, ConnectedAt: at},
	}
}

// TestWorkerProtocol checks that the API and the dashboard name the Stratum version of
// each worker's connections, from the user agent the V2 bridge gives them.
func TestWorkerProtocol(t *testing.T) {
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var shares []hashgrid.Share
	for i, w := range []string{"v1rig", "v2rig", "both", "offline"} {
		shares = append(shares, hashgrid.Share{Seq: uint64(i + 1), Time: time.Now().Add(-time.Minute), Address: addrA, Worker: w, JobID: "1", Diff: hashgrid.DiffOne, Actual: hashgrid.DiffOne})
	}
	if err := store.AddShares(context.Background(), shares); err != nil {
		t.Fatal(err)
	}
	sess := &v2Sessions{}
	srv := httptest.NewServer(api.New(api.Config{Store: store, Pool: fakePool{}, Node: fakeNode{}, Network: "regtest",
		Dashboard: api.DashboardConfig{Sessions: sess, Kicker: sess, Banner: &fakeBanner{}, AdminToken: adminToken}}).Handler())
	defer srv.Close()
	want := map[string]string{"v1rig": "v1", "v2rig": "v2", "both": "v1+v2", "offline": ""}

	var info api.AddressInfo
	if err := json.Unmarshal(mustGet(t, srv.URL+"/api/v1/workers/"+addrA), &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Workers) != len(want) {
		t.Fatalf("workers %+v", info.Workers)
	}
	for _, w := range info.Workers {
		if w.Protocol != want[w.Name] {
			t.Errorf("API worker %q: protocol %q, want %q", w.Name, w.Protocol, want[w.Name])
		}
	}
	var snap api.Snapshot
	if err := json.Unmarshal(mustGet(t, srv.URL+"/api/v1/dashboard?address="+addrA), &snap); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, w := range snap.Workers {
		if p, ok := want[w.Name]; ok && w.Address == addrA {
			seen++
			if w.Protocol != p {
				t.Errorf("dashboard worker %q: protocol %q, want %q", w.Name, w.Protocol, p)
			}
		}
	}
	if seen != len(want) {
		t.Errorf("dashboard shows %d of the %d workers: %+v", seen, len(want), snap.Workers)
	}
}
