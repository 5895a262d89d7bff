package sqlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

// BenchmarkRetentionDisk measures the store's bytes on disk per accepted share before
// and after retention, for a pool of 1,000 workers (500 addresses, bech32 length) each
// sending a share every 10 s: 100 shares/s, stored in batches of 200 as the stream's
// consumer does. HASHGRID_RETENTION_SHARES sets the number of shares (default 1e6,
// 2.8 hours); a twentieth of them are rejected. Retention then keeps the last hour of
// raw shares (and, with MinuteSummaries of an hour, minute summaries as long), while
// the pool goes on adding a batch of 100 shares a second; the log gives how long those
// AddShares calls took, before and during the pass. Run it with -benchtime=1x.
// Reported:
//
//	raw_B/share     file size / shares with every share kept
//	kept_B/share    file size after retention / shares stored in all
//	minute_B/row    file size with every share pruned / rows of work_minutes
//	hour_B/row      file size with every share pruned and every minute rolled up /
//	                rows of work_hours
func BenchmarkRetentionDisk(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("HASHGRID_RETENTION_SHARES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("HASHGRID_RETENTION_SHARES=%q", v)
		}
	}
	const (
		workers  = 1000
		perSec   = 100
		batch    = 200
		keepLast = time.Hour
	)
	ctx := context.Background()
	for range b.N {
		path := filepath.Join(b.TempDir(), "hashgrid.db")
		db, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		rnd := rand.New(rand.NewPCG(1, 2))
		addrs := make([]string, workers/2)
		for i := range addrs {
			addrs[i] = fmt.Sprintf("bc1q%038x", rnd.Uint64()) // 42 characters, as a P2WPKH address
		}
		start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		shares := make([]hashgrid.Share, 0, batch)
		var rejected int
		b.ResetTimer()
		for i := range n {
			w := rnd.IntN(workers)
			s := hashgrid.Share{
				Seq: uint64(i + 1), Time: start.Add(time.Duration(i) * time.Second / perSec),
				Address: addrs[w/2], Worker: fmt.Sprintf("rack%02d-s19-%03d", w/40, w),
				JobID: strconv.FormatUint(uint64(i/3000), 16), Height: 930_000 + int64(i/60_000),
				Diff:      hashgrid.DiffFromFloat(float64(uint64(1) << (14 + rnd.IntN(4)))),
				UserAgent: "bmminer/2.0.0", Remote: fmt.Sprintf("203.0.113.%d:%d", w%250, 40000+w),
			}
			s.Actual = s.Diff + hashgrid.Diff(rnd.Uint64N(uint64(s.Diff)))
			for j := range s.Hash {
				s.Hash[j] = byte(rnd.Uint32())
			}
			if rnd.IntN(20) == 0 {
				s.Result = hashgrid.ShareLowDiff
				rejected++
			}
			shares = append(shares, s)
			if len(shares) == batch || i == n-1 {
				if err := db.AddShares(ctx, shares); err != nil {
					b.Fatal(err)
				}
				shares = shares[:0]
			}
		}
		b.StopTimer()
		if err := db.Checkpoint(ctx); err != nil {
			b.Fatal(err)
		}
		raw := fileSize(b, path)
		end := start.Add(time.Duration(n) * time.Second / perSec)
		// The pool goes on storing its 100 shares a second, a batch a second, while
		// retention runs: how long each AddShares takes is what retention costs it.
		next := uint64(n)
		live := func(stop <-chan struct{}) []time.Duration {
			var lat []time.Duration
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for first := true; ; first = false {
				if !first {
					select {
					case <-stop:
						return lat
					case <-tick.C:
					}
				}
				batch := make([]hashgrid.Share, perSec)
				for j := range batch {
					next++
					batch[j] = hashgrid.Share{Seq: next, Time: end.Add(time.Duration(next-uint64(n)) * time.Second / perSec),
						Address: addrs[j], Worker: "live", JobID: "live", Diff: hashgrid.DiffOne, Actual: hashgrid.DiffOne}
				}
				t := time.Now()
				if err := db.AddShares(ctx, batch); err != nil {
					b.Error(err)
					return lat
				}
				lat = append(lat, time.Since(t))
			}
		}
		stop := make(chan struct{})
		time.AfterFunc(15*time.Second, func() { close(stop) })
		quiet := live(stop)
		var busy []time.Duration
		stop, done := make(chan struct{}), make(chan struct{})
		go func() { busy = live(stop); close(done) }()
		t0 := time.Now()
		res, err := (Retention{DB: db, Keep: keepLast, MinuteSummaries: keepLast, Now: func() time.Time { return end },
			Pause: time.Millisecond}).Pass(ctx)
		if err != nil {
			b.Fatal(err)
		}
		passTime := time.Since(t0)
		close(stop)
		<-done
		stored := n + int(next-uint64(n))
		if err := db.Checkpoint(ctx); err != nil {
			b.Fatal(err)
		}
		kept := fileSize(b, path)
		vacuum := func() {
			for {
				free, err := db.VacuumStep(ctx, 1<<20)
				if err != nil {
					b.Fatal(err)
				}
				if free == 0 {
					break
				}
			}
			if err := db.Checkpoint(ctx); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := db.Prune(ctx, end.Add(time.Hour), 1<<62, 1<<20); err != nil {
			b.Fatal(err)
		}
		vacuum()
		count := func(table string) int {
			var rows int
			if err := db.r.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&rows); err != nil {
				b.Fatal(err)
			}
			return rows
		}
		// Every share pruned: the summaries alone, by the minute but for the hours the
		// pass rolled up; then every minute rolled up. Both sizes include the workers,
		// totals and blocks tables and SQLite's own pages.
		minutes, hoursBefore := count("work_minutes"), count("work_hours")
		summaries := fileSize(b, path)
		for {
			r, err := db.Rollup(ctx, end.Add(time.Hour), 1<<16)
			if err != nil {
				b.Fatal(err)
			}
			if !r.More {
				break
			}
		}
		vacuum()
		rolled := fileSize(b, path)
		hours := count("work_hours")
		db.Close()
		b.ReportMetric(float64(raw)/float64(n), "raw_B/share")
		b.ReportMetric(float64(kept)/float64(stored), "kept_B/share")
		b.ReportMetric(float64(summaries)/float64(minutes+hoursBefore), "minute_B/row")
		b.ReportMetric(float64(rolled)/float64(hours), "hour_B/row")
		b.Logf("%d shares (%d rejected) over %v: %d bytes; retention of %v pruned %d shares and rolled up %d minute rows in %v, "+
			"leaving %d bytes (%d shares kept); every share pruned: %d bytes for %d rows of work_minutes and %d of work_hours; "+
			"every minute rolled up: %d bytes for %d rows of work_hours",
			n, rejected, end.Sub(start), raw, keepLast, res.Shares, res.Rolled, passTime.Round(time.Millisecond), kept, stored-res.Shares,
			summaries, minutes, hoursBefore, rolled, hours)
		b.Logf("AddShares of %d shares a second: without retention median %v, max %v (%d batches); during the pass median %v, max %v (%d batches)",
			perSec, median(quiet), maxOf(quiet), len(quiet), median(busy), maxOf(busy), len(busy))
	}
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func maxOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Max(ds)
}
