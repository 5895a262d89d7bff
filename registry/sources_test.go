package registry

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/power"
	"github.com/hashgrid/hashgrid/sqlite"
)

// TestReportFromRealStores feeds the report from the pool's SQLite share store and from
// energy lines written by the power controller's own writer, and checks that the report's
// totals are the sources' totals.
func TestReportFromRealStores(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "pool.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// 90 minutes of shares, one every 20 s per worker: rack1-01 at difficulty 8192,
	// rack1-02 at 16384, gpu-07 (an "inference" server) at 0.25; every 25th share
	// stale. Shares after the hour fall outside the snapshot.
	var shares []hashgrid.Share
	seq := uint64(0)
	for i := 0; i < 270; i++ {
		at := t0.Add(time.Duration(i) * 20 * time.Second)
		for _, w := range []struct {
			name string
			diff float64
		}{{"rack1-01", 8192}, {"rack1-02", 16384}, {"gpu-07", 0.25}} {
			seq++
			res := hashgrid.ShareAccepted
			if seq%25 == 0 {
				res = hashgrid.ShareStale
			}
			shares = append(shares, hashgrid.Share{Seq: seq, Time: at, Address: minerAddr, Worker: w.name,
				JobID: "1f", Height: 812, Diff: hashgrid.DiffFromFloat(w.diff), Actual: hashgrid.DiffFromFloat(w.diff * 1.5),
				Result: res, Remote: "127.0.0.1:50000"})
		}
	}
	if err := db.AddShares(ctx, shares); err != nil {
		t.Fatal(err)
	}
	// What the report must show: the store's own summary of the hour.
	want, err := db.WorkBetween(ctx, t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var wantPoW, wantGPU hashgrid.Worker
	for _, w := range want {
		if w.Name == "gpu-07" {
			wantGPU = w
			continue
		}
		wantPoW.Accepted += w.Accepted
		wantPoW.Rejected += w.Rejected
		wantPoW.Work = wantPoW.Work.Plus(w.Work)
	}
	if wantPoW.Accepted == 0 || wantGPU.Accepted == 0 {
		t.Fatalf("store returned no work: %+v", want)
	}

	var energy bytes.Buffer
	ew := power.NewEnergyWriter(&energy)
	var wantMinerWh int64
	for q := 0; q < 4; q++ {
		s := t0.Add(time.Duration(q) * 15 * time.Minute)
		wh := int64(7400 + 50*q)
		wantMinerWh += wh
		if err := ew.Write(power.EnergyRecord{Start: s, End: s.Add(15 * time.Minute), Site: "s1", Group: "miners", Mode: "full", MachinesOn: 10, EnergyWh: wh, HashrateGHs: 1_000_000}); err != nil {
			t.Fatal(err)
		}
		mode := "serve"
		if q == 3 {
			mode = power.Curtailed
		}
		if err := ew.Write(power.EnergyRecord{Start: s, End: s.Add(15 * time.Minute), Site: "s1", Group: "inference", Mode: mode, MachinesOn: 4, EnergyWh: 8000}); err != nil {
			t.Fatal(err)
		}
	}

	r, _ := newRegistry(t)
	buildSite(t, r)
	if _, err := r.ImportEnergy(&energy, "energy.jsonl", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ImportPool(ctx, db, "s1", t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, rep, _, err := r.Report("s1", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var pow, inf ClassTotal
	for _, c := range rep.Classes {
		switch c.Class {
		case "pow-mining":
			pow = c
		case "ai-inference":
			inf = c
		}
	}
	if pow.EnergyWh != wantMinerWh || inf.EnergyWh != 32000 {
		t.Errorf("energy: got pow %d, inference %d Wh; want %d, 32000", pow.EnergyWh, inf.EnergyWh, wantMinerWh)
	}
	if pow.Accepted != wantPoW.Accepted || pow.Rejected != wantPoW.Rejected || pow.Hashes != wantPoW.Work.Big().String() {
		t.Errorf("pow shares: got %d/%d %s hashes; store says %d/%d %s", pow.Accepted, pow.Rejected, pow.Hashes, wantPoW.Accepted, wantPoW.Rejected, wantPoW.Work.Big())
	}
	if inf.Accepted != wantGPU.Accepted {
		t.Errorf("inference shares: got %d, store says %d", inf.Accepted, wantGPU.Accepted)
	}
	flagged := false
	for _, d := range rep.Discrepancies {
		if d.Code == "pow_shares_undeclared" && d.Group == "inference" {
			flagged = true
		}
		if d.Group == "miners" {
			t.Errorf("honest miners flagged: %+v", d)
		}
	}
	if !flagged {
		t.Errorf("the mining inference group was not flagged: %+v", rep.Discrepancies)
	}
}
