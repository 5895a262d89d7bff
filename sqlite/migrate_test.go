package sqlite

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

// The queries of schema version 1, one row per share, as the program that shipped it
// ran them: the reference the blocks of version 2 must agree with.

func v1Insert(tb testing.TB, db *DB, shares []hashgrid.Share) {
	tb.Helper()
	tx, err := db.w.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	for _, s := range shares {
		if _, err := tx.Exec(`INSERT INTO shares (`+v1ShareColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			int64(s.Seq), s.Time.UnixNano(), s.Address, s.Worker, s.JobID, s.Height,
			int64(s.Diff>>32), int64(s.Diff&0xffffffff), int64(s.Actual), s.Hash[:], int(s.Result), s.Block,
			s.UserAgent, s.Remote); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}

func v1Query(tb testing.TB, db *DB, query string, args ...any) []hashgrid.Share {
	tb.Helper()
	rows, err := db.r.Query(`SELECT `+v1ShareColumns+` FROM shares `+query, args...)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []hashgrid.Share
	for rows.Next() {
		s, _, err := scanV1Share(rows)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, *s)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

func v1Shares(tb testing.TB, db *DB, after, upto uint64, limit int) []hashgrid.Share {
	return v1Query(tb, db, `WHERE seq > ? AND seq <= ? AND result = 0 ORDER BY seq LIMIT ?`, seqBound(after), seqBound(upto), limit)
}

func v1SharesFor(tb testing.TB, db *DB, address string, limit int) []hashgrid.Share {
	return v1Query(tb, db, `WHERE address = ? ORDER BY seq DESC LIMIT ?`, address, limit)
}

func v1WorkBetween(tb testing.TB, db *DB, from, to time.Time) []hashgrid.Worker {
	tb.Helper()
	rows, err := db.r.Query(`SELECT address, worker,
			SUM(result = 0), SUM(result <> 0),
			SUM(CASE WHEN result = 0 THEN diff_hi ELSE 0 END),
			SUM(CASE WHEN result = 0 THEN diff_lo ELSE 0 END),
			MAX(time)
		FROM shares WHERE time >= ? AND time < ?
		GROUP BY address, worker ORDER BY address, worker`, boundTime(from), boundTime(to))
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []hashgrid.Worker
	for rows.Next() {
		var w hashgrid.Worker
		var acc, rej, hi, lo, last int64
		if err := rows.Scan(&w.Address, &w.Name, &acc, &rej, &hi, &lo, &last); err != nil {
			tb.Fatal(err)
		}
		w.Accepted, w.Rejected = uint64(acc), uint64(rej)
		// hi·2^32 + lo; the sums of halves stay below 2^63 for these test windows.
		w.Work = hashgrid.Work{Hi: uint64(hi) >> 32, Lo: uint64(hi) << 32}.Plus(hashgrid.Work{Lo: uint64(lo)})
		w.LastShare = loadTime(last)
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestMigrateSharesToBlocks builds a database as the program with only migration 1
// left it, opens it with this one, and checks that every query returns what it did.
func TestMigrateSharesToBlocks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pool.db")
	old, err := open(path, migrations[:1])
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := old.SchemaVersion(ctx); v != 1 {
		t.Fatalf("old schema version %d, want 1", v)
	}
	// More rows than one block holds, with gaps in the sequences, every result, long
	// strings, a clock that steps back and one far away, and large difficulties.
	rnd := rand.New(rand.NewPCG(5, 6))
	addresses := []string{"bcrt1qm0", "bcrt1qm1", "bcrt1qm2", strings.Repeat("l", hashgrid.MaxShareAddressLen)}
	var in []hashgrid.Share
	seq := uint64(0)
	for i := range 2*MaxBlockShares + 500 {
		seq += 1 + uint64(rnd.IntN(3)/2)
		at := time.Duration(i) * 7 * time.Millisecond
		switch {
		case i == 5000:
			at = 1000 * time.Hour
		case i > 6000:
			at -= 2 * time.Minute
		}
		s := share(seq, addresses[rnd.IntN(len(addresses))], fmt.Sprint("rig", rnd.IntN(4)),
			hashgrid.ShareResult(rnd.IntN(int(hashgrid.ShareInvalid)+1)), hashgrid.Diff(rnd.Uint64()>>8), at)
		s.Block = i%1000 == 0
		if i%97 == 0 {
			s.UserAgent = strings.Repeat("u", hashgrid.MaxShareUserAgentLen)
		}
		in = append(in, s)
	}
	v1Insert(t, old, in)
	// Summaries as the old AddShares kept them, which the migration leaves alone.
	m := model{}
	m.add(in)
	var total hashgrid.Worker
	for _, w := range m.summarize(func(hashgrid.Share) bool { return true }) {
		if _, err := old.w.Exec(`INSERT INTO workers VALUES (?, ?, ?, ?, ?, ?, ?)`, w.Address, w.Name, w.Accepted, w.Rejected,
			int64(w.Work.Hi), int64(w.Work.Lo), w.LastShare.UnixNano()); err != nil {
			t.Fatal(err)
		}
		total.Accepted, total.Rejected, total.Work = total.Accepted+w.Accepted, total.Rejected+w.Rejected, total.Work.Plus(w.Work)
	}
	if _, err := old.w.Exec(`UPDATE totals SET accepted = ?, rejected = ?, work_hi = ?, work_lo = ?`,
		total.Accepted, total.Rejected, int64(total.Work.Hi), int64(total.Work.Lo)); err != nil {
		t.Fatal(err)
	}

	type sharesQuery struct {
		after, upto uint64
		limit       int
	}
	shareQueries := []sharesQuery{{0, math.MaxUint64, 1 << 30}, {0, 10, 100}, {100, 5000, 7}, {seq, math.MaxUint64, 10}}
	for i := range 30 {
		a := in[rnd.IntN(len(in))].Seq
		shareQueries = append(shareQueries, sharesQuery{a, a + uint64(rnd.IntN(5000)), 1 + rnd.IntN(3000)},
			sharesQuery{a - 1, seq, 1 + i})
	}
	wantShares := map[sharesQuery][]hashgrid.Share{}
	for _, q := range shareQueries {
		wantShares[q] = v1Shares(t, old, q.after, q.upto, q.limit)
	}
	wantFor := map[string][]hashgrid.Share{}
	for _, a := range append(addresses, "nobody") {
		for _, limit := range []int{1, 30, 500, 1 << 30} {
			wantFor[fmt.Sprint(a, limit)] = v1SharesFor(t, old, a, limit)
		}
	}
	wins := windows(rnd, in)
	var wantWork [][]hashgrid.Worker
	for _, w := range wins {
		wantWork = append(wantWork, v1WorkBetween(t, old, w[0], w[1]))
	}
	wantWorkers := mustWorkers(t, old, "")
	db := reopenMigrated(t, old, path, 1)
	var n int
	if err := db.r.QueryRow(`SELECT COUNT(*) FROM sqlite_schema WHERE name LIKE 'shares%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("objects of the old shares table left: %d, %v", n, err)
	}
	blocks := checkBlocks(t, db)
	stored := 0
	for _, b := range blocks {
		stored += b.count
	}
	if stored != len(in) {
		t.Fatalf("blocks hold %d shares, want %d", stored, len(in))
	}
	t.Logf("%d shares moved into %d blocks", len(in), len(blocks))

	if got, err := db.LastSeq(ctx); err != nil || got != seq {
		t.Fatalf("LastSeq: got %d, %v; want %d", got, err, seq)
	}
	for _, q := range shareQueries {
		got, err := db.Shares(ctx, q.after, q.upto, q.limit)
		if err != nil {
			t.Fatal(err)
		}
		if want := wantShares[q]; !slices.Equal(got, want) {
			t.Fatalf("Shares(%d, %d, %d): got %d shares, want %d (%v...)", q.after, q.upto, q.limit, len(got), len(want), seqs(want[:min(len(want), 5)]))
		}
	}
	for _, a := range append(addresses, "nobody") {
		for _, limit := range []int{1, 30, 500, 1 << 30} {
			got, err := db.SharesFor(ctx, a, limit)
			if err != nil {
				t.Fatal(err)
			}
			if want := wantFor[fmt.Sprint(a, limit)]; !slices.Equal(got, want) {
				t.Fatalf("SharesFor(%.10s, %d): got %d shares, want %d", a, limit, len(got), len(want))
			}
		}
	}
	for i, w := range wins {
		got, err := db.WorkBetween(ctx, w[0], w[1])
		if err != nil {
			t.Fatal(err)
		}
		checkWorkers(t, fmt.Sprintf("WorkBetween(%v, %v)", w[0], w[1]), got, wantWork[i])
	}
	checkWorkers(t, "Workers", mustWorkers(t, db, ""), wantWorkers)

	// The store goes on from there: stored sequences are skipped, new ones counted.
	more := []hashgrid.Share{in[len(in)-1], share(seq+1, "bcrt1qm0", "rig0", hashgrid.ShareAccepted, 1, time.Hour)}
	more[0].JobID = "replayed"
	if err := db.AddShares(ctx, more); err != nil {
		t.Fatal(err)
	}
	m.add(more)
	checkAgainst(t, db, m, addresses, wins[:10])
}

// TestMigrateRefusesUnencodableRow checks that a version 1 row the share codec cannot
// encode fails the migration and leaves the database as it was.
func TestMigrateRefusesUnencodableRow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pool.db")
	old, err := open(path, migrations[:1])
	if err != nil {
		t.Fatal(err)
	}
	s := share(1, "a", "w", hashgrid.ShareAccepted, 1, 0)
	s.JobID = strings.Repeat("j", hashgrid.MaxShareJobIDLen+1)
	v1Insert(t, old, []hashgrid.Share{share(2, "a", "w", hashgrid.ShareAccepted, 1, 0), s})
	old.Close()
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "migrate to 2") || !strings.Contains(err.Error(), "share 1") {
		t.Fatalf("Open: got %v, want a migration error naming share 1", err)
	}
	old, err = open(path, migrations[:1])
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if got := v1SharesFor(t, old, "a", 10); len(got) != 2 {
		t.Fatalf("after the failed migration: %d rows in shares, want 2", len(got))
	}
}

// reopenMigrated closes old, a database at schema version from, and opens path with
// every migration; it fails the test unless the schema is then the latest.
func reopenMigrated(t *testing.T, old *DB, path string, from int) *DB {
	t.Helper()
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path)
	if err != nil {
		t.Fatalf("Open of a version %d database: %v", from, err)
	}
	t.Cleanup(func() { db.Close() })
	if v, _ := db.SchemaVersion(context.Background()); v != len(migrations) {
		t.Fatalf("schema version after migration: got %d, want %d", v, len(migrations))
	}
	return db
}
