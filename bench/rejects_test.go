package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/sqlite"
)

// treeBytes is the size of the files under dir.
func treeBytes(tb testing.TB, dir string) int64 {
	tb.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// The issue 20 load, scaled down in time: 200 connections from one address, 8 submits
// in flight each, every submit hashed and rejected as low difficulty (the pool's
// mainnet start difficulty, 16384, against a client that hashes nothing). On a stock
// pool nothing is dropped or banned, and the rejects cost the disk a few bytes each.
// (Before: every connection dropped and the address banned within about 2 s, and
// every reject a record of its own.)
func TestAllRejectedLoad(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	s, err := StartServer(ctx, ServerConfig{Listen: "127.0.0.1:0", Data: data, Txs: 100, MaxConn: 1000})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			s.Close()
		}
	}()
	base := treeBytes(t, data)
	cfg := LoadConfig{URL: "stratum+tcp://" + s.Addr, User: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.t", Password: "x",
		Conns: 200, InFlight: 8, Duration: 3 * time.Second}
	res, err := Submit(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Dropped != 0 || res.Conns != 200 {
		t.Errorf("%d of %d connections dropped during the run", res.Dropped, res.Conns)
	}
	if res.Accepted != 0 || res.Rejected < 1000 {
		t.Errorf("want only rejects, and many: %+v", res)
	}
	if s.Pool.Server().Banned("127.0.0.1") {
		t.Error("the load's address was banned")
	}
	// Measured before Close, whose checkpoint shrinks SQLite's log; what Close adds is
	// the held rejects' few count records.
	disk := treeBytes(t, data) - base
	s.Close()
	closed = true
	// The rejects were sampled, yet the store counts every one the pool answered.
	store, err := sqlite.Open(filepath.Join(data, "bench.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	acc, rej, _, err := store.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Pool.Stats(); acc != 0 || rej != st.SharesRejected || rej < res.Rejected {
		t.Errorf("store counts %d accepted, %d rejected; the pool answered %d rejects, the client heard %d",
			acc, rej, st.SharesRejected, res.Rejected)
	}
	per := float64(disk) / float64(res.Rejected)
	t.Logf("%d rejects in %.1f s (%.0f/s, p50 %.1f ms, p99 %.1f ms): %d bytes on disk, %.2f B per reject",
		res.Rejected, res.Seconds, res.PerSecond, res.P50ms, res.P99ms, disk, per)
	if per > 10 {
		t.Errorf("%.1f B on disk per rejected share, want at most 10", per)
	}
}
