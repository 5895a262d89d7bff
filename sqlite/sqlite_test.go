package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

func openDB(tb testing.TB) (*DB, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "pool.db")
	db, err := Open(path)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db, path
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func share(seq uint64, addr, worker string, result hashgrid.ShareResult, diff hashgrid.Diff, at time.Duration) hashgrid.Share {
	return hashgrid.Share{
		Seq: seq, Time: t0.Add(at), Address: addr, Worker: worker, JobID: fmt.Sprintf("job%d", seq),
		Height: 900000, Diff: diff, Actual: diff * 3, Hash: [32]byte{0: byte(seq), 31: 0xee}, Result: result,
		UserAgent: "cpuminer/2.5.1", Remote: "127.0.0.1:40000",
	}
}

// testShares spans two addresses, three workers, accepted and rejected results, and a
// difficulty near the top of the range so sums need more than 64 bits.
func testShares() []hashgrid.Share {
	big := hashgrid.MaxDiff - 5
	return []hashgrid.Share{
		share(1, "bcrt1qa", "rig1", hashgrid.ShareAccepted, hashgrid.DiffOne, 0),
		share(2, "bcrt1qa", "rig1", hashgrid.ShareAccepted, big, time.Second),
		share(3, "bcrt1qa", "rig1", hashgrid.ShareAccepted, big, 2*time.Second),
		share(4, "bcrt1qa", "rig2", hashgrid.ShareStale, hashgrid.DiffOne, 3*time.Second),
		share(5, "bcrt1qb", "", hashgrid.ShareAccepted, hashgrid.DiffOne/1000, 4*time.Second),
		share(6, "bcrt1qa", "rig2", hashgrid.ShareAccepted, 2*hashgrid.DiffOne, 5*time.Second),
		share(7, "bcrt1qb", "", hashgrid.ShareLowDiff, hashgrid.DiffOne, 6*time.Second),
	}
}

func work(diffs ...hashgrid.Diff) hashgrid.Work {
	var w hashgrid.Work
	for _, d := range diffs {
		w = w.Add(d)
	}
	return w
}

func TestSchema(t *testing.T) {
	db, path := openDB(t)
	v, err := db.SchemaVersion(context.Background())
	if err != nil || v != len(migrations) {
		t.Fatalf("SchemaVersion: got %d, %v; want %d", v, err, len(migrations))
	}
	var mode string
	if err := db.w.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode: got %q, %v; want wal", mode, err)
	}
	var fk, sync int
	db.r.QueryRow("PRAGMA foreign_keys").Scan(&fk)
	db.r.QueryRow("PRAGMA synchronous").Scan(&sync)
	if fk != 1 || sync != 2 {
		t.Fatalf("foreign_keys %d, synchronous %d; want 1, 2 (FULL)", fk, sync)
	}
	if _, err := db.r.Exec("DELETE FROM share_blocks"); err == nil {
		t.Fatalf("write through a read connection: got nil error")
	}
	db.Close()

	// Reopening applies nothing; a newer schema is refused.
	db, err = Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	db.w.Exec(fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1))
	db.Close()
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "newer than") {
		t.Fatalf("Open of a newer schema: got %v", err)
	}
	if _, err := Open(path + "?mode=ro"); err == nil {
		t.Fatalf("Open with a query string in the path: got nil error")
	}
}

func TestAddSharesAndSummaries(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	if seq, err := db.LastSeq(ctx); err != nil || seq != 0 {
		t.Fatalf("LastSeq of empty store: got %d, %v", seq, err)
	}
	in := testShares()
	if err := db.AddShares(ctx, in); err != nil {
		t.Fatalf("AddShares: %v", err)
	}
	if seq, err := db.LastSeq(ctx); err != nil || seq != 7 {
		t.Fatalf("LastSeq: got %d, %v; want 7", seq, err)
	}
	big := hashgrid.MaxDiff - 5
	wantWorkers := []hashgrid.Worker{
		{Address: "bcrt1qa", Name: "rig1", Accepted: 3, Work: work(hashgrid.DiffOne, big, big), LastShare: t0.Add(2 * time.Second)},
		{Address: "bcrt1qa", Name: "rig2", Accepted: 1, Rejected: 1, Work: work(2 * hashgrid.DiffOne), LastShare: t0.Add(5 * time.Second)},
		{Address: "bcrt1qb", Name: "", Accepted: 1, Rejected: 1, Work: work(hashgrid.DiffOne / 1000), LastShare: t0.Add(6 * time.Second)},
	}
	if wantWorkers[0].Work.Hi == 0 {
		t.Fatalf("test data: rig1's work should need 65 bits, got %+v", wantWorkers[0].Work)
	}
	checkWorkers(t, "Workers(\"\")", mustWorkers(t, db, ""), wantWorkers)
	checkWorkers(t, "Workers(bcrt1qa)", mustWorkers(t, db, "bcrt1qa"), wantWorkers[:2])
	checkWorkers(t, "Workers(unknown)", mustWorkers(t, db, "nobody"), nil)
	checkTotals(t, db, 5, 2, work(hashgrid.DiffOne, big, big, 2*hashgrid.DiffOne, hashgrid.DiffOne/1000))

	// The same batch again, and a batch overlapping it, change nothing already counted.
	if err := db.AddShares(ctx, in); err != nil {
		t.Fatalf("AddShares again: %v", err)
	}
	checkWorkers(t, "Workers after replay", mustWorkers(t, db, ""), wantWorkers)
	checkTotals(t, db, 5, 2, work(hashgrid.DiffOne, big, big, 2*hashgrid.DiffOne, hashgrid.DiffOne/1000))
	more := append(slices.Clone(in[5:]), share(8, "bcrt1qb", "", hashgrid.ShareAccepted, hashgrid.DiffOne, 7*time.Second),
		share(8, "bcrt1qb", "", hashgrid.ShareAccepted, hashgrid.DiffOne, 7*time.Second)) // duplicate inside a batch too
	if err := db.AddShares(ctx, more); err != nil {
		t.Fatalf("AddShares overlapping: %v", err)
	}
	wantWorkers[2].Accepted = 2
	wantWorkers[2].Work = work(hashgrid.DiffOne/1000, hashgrid.DiffOne)
	wantWorkers[2].LastShare = t0.Add(7 * time.Second)
	checkWorkers(t, "Workers after overlap", mustWorkers(t, db, ""), wantWorkers)
	checkTotals(t, db, 6, 2, work(hashgrid.DiffOne, big, big, 2*hashgrid.DiffOne, hashgrid.DiffOne/1000, hashgrid.DiffOne))

	// Stored shares come back exactly.
	got, err := db.SharesFor(ctx, "bcrt1qa", 10)
	if err != nil {
		t.Fatalf("SharesFor: %v", err)
	}
	want := []hashgrid.Share{in[5], in[3], in[2], in[1], in[0]}
	if !slices.Equal(got, want) {
		t.Fatalf("SharesFor(bcrt1qa):\n got %+v\nwant %+v", got, want)
	}
	if got, _ := db.SharesFor(ctx, "bcrt1qa", 2); !slices.Equal(got, want[:2]) {
		t.Fatalf("SharesFor(bcrt1qa, 2): got %v", seqs(got))
	}
}

func mustWorkers(tb testing.TB, db *DB, address string) []hashgrid.Worker {
	tb.Helper()
	ws, err := db.Workers(context.Background(), address)
	if err != nil {
		tb.Fatalf("Workers(%q): %v", address, err)
	}
	return ws
}

func checkWorkers(tb testing.TB, what string, got, want []hashgrid.Worker) {
	tb.Helper()
	if !slices.EqualFunc(got, want, func(a, b hashgrid.Worker) bool {
		return a.Address == b.Address && a.Name == b.Name && a.Accepted == b.Accepted && a.Rejected == b.Rejected &&
			a.Work == b.Work && a.LastShare.Equal(b.LastShare)
	}) {
		tb.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func checkTotals(tb testing.TB, db *DB, acc, rej uint64, w hashgrid.Work) {
	tb.Helper()
	a, r, gw, err := db.Totals(context.Background())
	if err != nil || a != acc || r != rej || gw != w {
		tb.Fatalf("Totals: got %d, %d, %+v, %v; want %d, %d, %+v", a, r, gw, err, acc, rej, w)
	}
}

func seqs(ss []hashgrid.Share) []uint64 {
	var out []uint64
	for _, s := range ss {
		out = append(out, s.Seq)
	}
	return out
}

func TestAddSharesRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	good := share(1, "a", "w", hashgrid.ShareAccepted, 1, 0)
	tests := []struct {
		name string
		s    hashgrid.Share
		want string
	}{
		{"seq 0", func() hashgrid.Share { s := good; s.Seq = 0; return s }(), "sequence 0"},
		{"seq too big", func() hashgrid.Share { s := good; s.Seq = math.MaxInt64 + 1; return s }(), "outside [1, 2^63)"},
		{"zero time", func() hashgrid.Share { s := good; s.Time = time.Time{}; return s }(), "outside the storable range"},
		{"long address", func() hashgrid.Share {
			s := good
			s.Address = strings.Repeat("a", hashgrid.MaxShareAddressLen+1)
			return s
		}(), "address is 129 bytes"},
		{"unknown result", func() hashgrid.Share { s := good; s.Result = hashgrid.ShareInvalid + 1; return s }(), "unknown result"},
	}
	for _, tt := range tests {
		err := db.AddShares(ctx, []hashgrid.Share{good, tt.s})
		if err == nil || !strings.Contains(err.Error(), tt.want) || hashgrid.ErrorCode(err) != hashgrid.EINVALID {
			t.Fatalf("%s: AddShares: got %v, want EINVALID error containing %q", tt.name, err, tt.want)
		}
	}
	// Nothing of a refused batch is stored.
	if seq, _ := db.LastSeq(ctx); seq != 0 {
		t.Fatalf("LastSeq after refused batches: got %d, want 0", seq)
	}
	if err := db.AddShares(ctx, nil); err != nil {
		t.Fatalf("AddShares(nil): %v", err)
	}
}

func TestShares(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	in := testShares()
	if err := db.AddShares(ctx, in); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		after, upto uint64
		limit       int
		want        []uint64
	}{
		{0, 100, 100, []uint64{1, 2, 3, 5, 6}},
		{0, math.MaxUint64, 100, []uint64{1, 2, 3, 5, 6}},
		{1, 5, 100, []uint64{2, 3, 5}},
		{0, 100, 2, []uint64{1, 2}},
		{3, 4, 100, nil},
		{6, 7, 100, nil},
	}
	for _, tt := range tests {
		got, err := db.Shares(ctx, tt.after, tt.upto, tt.limit)
		if err != nil {
			t.Fatalf("Shares(%d, %d, %d): %v", tt.after, tt.upto, tt.limit, err)
		}
		if !slices.Equal(seqs(got), tt.want) {
			t.Fatalf("Shares(%d, %d, %d): got %v, want %v", tt.after, tt.upto, tt.limit, seqs(got), tt.want)
		}
	}
	got, _ := db.Shares(ctx, 1, 2, 1)
	if len(got) != 1 || got[0] != in[1] {
		t.Fatalf("Shares(1, 2, 1): got %+v, want %+v", got, in[1])
	}
	if _, err := db.Shares(ctx, 0, 10, 0); err == nil {
		t.Fatalf("Shares with limit 0: got nil error")
	}
	if _, err := db.SharesFor(ctx, "a", -1); err == nil {
		t.Fatalf("SharesFor with limit -1: got nil error")
	}
}

func TestWorkBetween(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	if err := db.AddShares(ctx, testShares()); err != nil {
		t.Fatal(err)
	}
	big := hashgrid.MaxDiff - 5
	tests := []struct {
		name     string
		from, to time.Time
		want     []hashgrid.Worker
	}{
		{"all", time.Time{}, t0.Add(time.Hour), []hashgrid.Worker{
			{Address: "bcrt1qa", Name: "rig1", Accepted: 3, Work: work(hashgrid.DiffOne, big, big), LastShare: t0.Add(2 * time.Second)},
			{Address: "bcrt1qa", Name: "rig2", Accepted: 1, Rejected: 1, Work: work(2 * hashgrid.DiffOne), LastShare: t0.Add(5 * time.Second)},
			{Address: "bcrt1qb", Accepted: 1, Rejected: 1, Work: work(hashgrid.DiffOne / 1000), LastShare: t0.Add(6 * time.Second)},
		}},
		// [1s, 4s): shares 2, 3 (rig1) and 4 (rig2, stale); the end is exclusive.
		{"window", t0.Add(time.Second), t0.Add(4 * time.Second), []hashgrid.Worker{
			{Address: "bcrt1qa", Name: "rig1", Accepted: 2, Work: work(big, big), LastShare: t0.Add(2 * time.Second)},
			{Address: "bcrt1qa", Name: "rig2", Rejected: 1, LastShare: t0.Add(3 * time.Second)},
		}},
		{"empty", t0.Add(time.Hour), t0.Add(2 * time.Hour), nil},
	}
	for _, tt := range tests {
		got, err := db.WorkBetween(ctx, tt.from, tt.to)
		if err != nil {
			t.Fatalf("%s: WorkBetween: %v", tt.name, err)
		}
		checkWorkers(t, tt.name, got, tt.want)
	}
}

func TestBlocks(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	if bs, err := db.Blocks(ctx, 10); err != nil || len(bs) != 0 {
		t.Fatalf("Blocks of empty store: got %v, %v", bs, err)
	}
	mk := func(i byte, at time.Duration) hashgrid.Block {
		return hashgrid.Block{
			Hash: [32]byte{0: i, 31: 0}, Height: 100 + int64(i), PrevHash: [32]byte{1: i}, Time: t0.Add(at),
			Address: "bcrt1qa", Worker: "rig1", Reward: 312500000 + int64(i), Fees: int64(i), NetworkDiff: 4.6565423739069247e-10,
			Status: hashgrid.BlockSubmitted, ShareSeq: uint64(i) * 10,
		}
	}
	b1, b2, b3 := mk(1, 0), mk(2, time.Minute), mk(3, 2*time.Minute)
	for _, b := range []hashgrid.Block{b2, b1, b3} {
		if err := db.PutBlock(ctx, b); err != nil {
			t.Fatalf("PutBlock: %v", err)
		}
	}
	b2.Status, b2.Confirmations, b2.Reason = hashgrid.BlockOrphaned, 0, "reorg"
	if err := db.PutBlock(ctx, b2); err != nil {
		t.Fatalf("PutBlock update: %v", err)
	}
	got, err := db.Blocks(ctx, 10)
	if err != nil {
		t.Fatalf("Blocks: %v", err)
	}
	if want := []hashgrid.Block{b3, b2, b1}; !slices.Equal(got, want) {
		t.Fatalf("Blocks:\n got %+v\nwant %+v", got, want)
	}
	if got, _ := db.Blocks(ctx, 1); len(got) != 1 || got[0] != b3 {
		t.Fatalf("Blocks(1): got %+v", got)
	}
	b, err := db.BlockByHash(ctx, b2.Hash)
	if err != nil || b != b2 {
		t.Fatalf("BlockByHash: got %+v, %v; want %+v", b, err, b2)
	}
	_, err = db.BlockByHash(ctx, [32]byte{9})
	if !errors.Is(err, hashgrid.ErrNotFound) || hashgrid.ErrorCode(err) != hashgrid.ENOTFOUND {
		t.Fatalf("BlockByHash of unknown hash: got %v, want ErrNotFound", err)
	}
	if errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("BlockByHash leaks sql.ErrNoRows")
	}
	if _, err := db.Blocks(ctx, 0); err == nil {
		t.Fatalf("Blocks(0): got nil error")
	}
}

// TestConcurrentReadsDuringWrites reads while batches commit, which the separate read
// pool allows under WAL without "database is locked".
func TestConcurrentReadsDuringWrites(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	done := make(chan error, 1)
	go func() {
		for b := range 20 {
			var batch []hashgrid.Share
			for i := range 50 {
				seq := uint64(b*50 + i + 1)
				batch = append(batch, share(seq, "a", fmt.Sprint(seq%5), hashgrid.ShareAccepted, hashgrid.DiffOne, time.Duration(seq)))
			}
			if err := db.AddShares(ctx, batch); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for {
		if _, _, _, err := db.Totals(ctx); err != nil {
			t.Fatalf("Totals during writes: %v", err)
		}
		if _, err := db.Workers(ctx, "a"); err != nil {
			t.Fatalf("Workers during writes: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("AddShares: %v", err)
			}
			checkTotals(t, db, 1000, 0, work(slices.Repeat([]hashgrid.Diff{hashgrid.DiffOne}, 1000)...))
			return
		default:
		}
	}
}

// BenchmarkAddShares measures AddShares in batches of 500 new shares from 20 addresses
// (20 workers: seq%5 follows from seq%20), each batch one fsynced transaction.
func BenchmarkAddShares(b *testing.B) {
	ctx := context.Background()
	db, _ := openDB(b)
	const batch = 500
	shares := make([]hashgrid.Share, batch)
	seq := uint64(0)
	b.ResetTimer()
	start := time.Now()
	cpu0 := processCPU(b)
	rows := 0
	for b.Loop() {
		for i := range shares {
			seq++
			shares[i] = share(seq, fmt.Sprintf("bcrt1qaddress%02d", seq%20), fmt.Sprintf("rig%d", seq%5),
				hashgrid.ShareAccepted, hashgrid.DiffOne, time.Duration(seq)*time.Millisecond)
		}
		if err := db.AddShares(ctx, shares); err != nil {
			b.Fatal(err)
		}
		rows += batch
	}
	b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(rows), "cpu-µs/row")
}

// processCPU returns the user and system CPU time the process has used: what a
// benchmark costs the pool beside it, where wall time includes waiting on fsync.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRead measures the queries over 200,000 stored shares, added as the consumer
// adds them (batches of 500, 20 addresses each with one worker, a tenth rejected, a share
// a millisecond): Shares reading the whole window (shares/s counts stored shares, of
// which Shares returns the accepted) in pages of 50,000 as PPLNS loads it, WorkBetween over
// the last 10,000 shares (a hashrate window), and SharesFor of one address's latest 500.
func BenchmarkRead(b *testing.B) {
	ctx := context.Background()
	db, _ := openDB(b)
	const n, batch = 200_000, 500
	shares := make([]hashgrid.Share, batch)
	for seq := uint64(1); seq <= n; {
		for i := range shares {
			shares[i] = share(seq, fmt.Sprintf("bcrt1qaddress%02d", seq%20), fmt.Sprintf("rig%d", seq%5),
				hashgrid.ShareResult(seq%10/9), hashgrid.DiffOne, time.Duration(seq)*time.Millisecond)
			seq++
		}
		if err := db.AddShares(ctx, shares); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Shares", func(b *testing.B) {
		got := 0
		for b.Loop() {
			got = 0
			for after := uint64(0); ; {
				page, err := db.Shares(ctx, after, n, 50_000)
				if err != nil {
					b.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				got += len(page)
				after = page[len(page)-1].Seq
			}
		}
		if got != n-n/10 {
			b.Fatalf("read %d shares, want %d", got, n-n/10)
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "shares/s")
	})
	b.Run("WorkBetween", func(b *testing.B) {
		for b.Loop() {
			ws, err := db.WorkBetween(ctx, t0.Add((n-10_000)*time.Millisecond), t0.Add((n+1)*time.Millisecond))
			if err != nil || len(ws) != 20 {
				b.Fatalf("WorkBetween: %d workers, %v", len(ws), err)
			}
		}
	})
	b.Run("SharesFor", func(b *testing.B) {
		for b.Loop() {
			ss, err := db.SharesFor(ctx, "bcrt1qaddress07", 500)
			if err != nil || len(ss) != 500 {
				b.Fatalf("SharesFor: %d shares, %v", len(ss), err)
			}
		}
	})
}

// BenchmarkWorkBetween10m measures WorkBetween over the 10-minute window the API, the
// dashboard and the alerts ask for, holding about 1,000,000 shares: 1,000,000 shares
// 600 µs apart (1,667 a second) from 15 s past a minute, added in batches of 500, 20
// workers, a tenth rejected. "api" is [last share - 10 min, last share + 1 s), as the API
// asks, whose partial minutes at the edges hold 61 s of shares; "minutes" is the nine
// whole minutes inside it. shares/op counts the shares summed.
func BenchmarkWorkBetween10m(b *testing.B) {
	ctx := context.Background()
	db, _ := openDB(b)
	const n, batch, gap = 1_000_000, 500, 600 * time.Microsecond
	start := 15 * time.Second
	shares := make([]hashgrid.Share, batch)
	for seq := uint64(1); seq <= n; {
		for i := range shares {
			shares[i] = share(seq, fmt.Sprintf("bcrt1qaddress%02d", seq%20), fmt.Sprintf("rig%d", seq%5),
				hashgrid.ShareResult(seq%10/9), hashgrid.DiffOne, start+time.Duration(seq-1)*gap)
			seq++
		}
		if err := db.AddShares(ctx, shares); err != nil {
			b.Fatal(err)
		}
	}
	last := t0.Add(start + (n-1)*gap)
	for _, w := range []struct {
		name     string
		from, to time.Time
	}{
		{"api", last.Add(-10 * time.Minute), last.Add(time.Second)},
		{"minutes", t0.Add(time.Minute), t0.Add(10 * time.Minute)},
	} {
		b.Run(w.name, func(b *testing.B) {
			var summed uint64
			for b.Loop() {
				ws, err := db.WorkBetween(ctx, w.from, w.to)
				if err != nil || len(ws) != 20 {
					b.Fatalf("WorkBetween: %d workers, %v", len(ws), err)
				}
				summed = 0
				for _, x := range ws {
					summed += x.Accepted + x.Rejected
				}
			}
			b.ReportMetric(float64(summed), "shares/op")
		})
	}
}
