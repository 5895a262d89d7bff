package sqlite

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

func TestMinuteOf(t *testing.T) {
	m := minuteNanos
	tests := []struct{ t, floor, ceil int64 }{
		{0, 0, 0},
		{1, 0, 1},
		{m - 1, 0, 1},
		{m, 1, 1},
		{-1, -1, 0},
		{-m + 1, -1, 0},
		{-m, -1, -1},
		{-m - 1, -2, -1},
		{math.MaxInt64, math.MaxInt64 / m, math.MaxInt64/m + 1},
		{math.MinInt64, math.MinInt64/m - 1, math.MinInt64 / m},
	}
	for _, tt := range tests {
		if got := minuteOf(tt.t); got != tt.floor {
			t.Errorf("minuteOf(%d) = %d, want %d", tt.t, got, tt.floor)
		}
		if got := minuteAtOrAfter(tt.t); got != tt.ceil {
			t.Errorf("minuteAtOrAfter(%d) = %d, want %d", tt.t, got, tt.ceil)
		}
	}
}

// minuteShares returns n shares with sequences 1..n over about six minutes in each of
// three stretches: around the Unix epoch (so before it too), around t0, and ten minutes
// after it. The stretches take turns every hundred or so shares, as a clock stepping
// back and forth would; within one, times mostly rise, with some jitter. A tenth are
// exactly on a minute or a nanosecond beside one. Four workers of two addresses;
// difficulties up to the largest, so a minute's work passes 64 bits.
func minuteShares(rnd *rand.Rand, n int) []hashgrid.Share {
	cursors := []time.Time{time.Unix(0, 0).UTC().Add(-3 * time.Minute), t0.Add(-3 * time.Minute), t0.Add(7 * time.Minute)}
	step := int64(3 * 6 * time.Minute / time.Duration(n))
	era := 0
	var out []hashgrid.Share
	for i := range n {
		if rnd.IntN(100) == 0 {
			era = rnd.IntN(len(cursors))
		}
		cursors[era] = cursors[era].Add(time.Duration(rnd.Int64N(2*step + 1)))
		at := cursors[era].Add(time.Duration(rnd.Int64N(int64(4*time.Second))) - 2*time.Second)
		if rnd.IntN(10) == 0 {
			at = time.Unix(0, minuteOf(at.UnixNano())*minuteNanos).UTC().Add(time.Duration(rnd.IntN(3) - 1))
		}
		s := share(uint64(i+1), fmt.Sprint("bcrt1qm", rnd.IntN(2)), fmt.Sprint("rig", rnd.IntN(2)),
			hashgrid.ShareResult(rnd.IntN(4)/3), hashgrid.Diff(rnd.Uint64()>>rnd.IntN(64)), 0)
		s.Time = at
		out = append(out, s)
	}
	return out
}

// addInBatches adds shares in random batches, re-offering earlier ranges with other
// times (copies the store must ignore), and returns the model of what it holds.
func addInBatches(tb testing.TB, db *DB, rnd *rand.Rand, shares []hashgrid.Share) model {
	tb.Helper()
	m := model{}
	for i := 0; i < len(shares); {
		j := min(i+1+rnd.IntN(400), len(shares))
		batch := slices.Clone(shares[i:j])
		if i > 0 && rnd.IntN(3) == 0 {
			from := rnd.IntN(i)
			for _, s := range shares[from:min(from+100, i)] {
				s.Time = s.Time.Add(time.Duration(rnd.Int64N(int64(2*time.Minute))) - time.Minute)
				batch = append(batch, s)
			}
		}
		if err := db.AddShares(context.Background(), batch); err != nil {
			tb.Fatal(err)
		}
		m.add(batch)
		i = j
	}
	return m
}

// TestWorkBetweenMinutes checks WorkBetween against the model and a full decode over
// windows cut on and around minutes, before and after the epoch, and that both of its
// ways, the minutes with the edges decoded and decoding alone, were taken.
func TestWorkBetweenMinutes(t *testing.T) {
	db, _ := openDB(t)
	rnd := rand.New(rand.NewPCG(11, 12))
	shares := minuteShares(rnd, 6000)
	m := addInBatches(t, db, rnd, shares)
	t.Logf("%d shares in %d blocks", len(m), len(checkBlocks(t, db)))
	checkMinutes(t, db)
	wins := minuteWindows(rnd, shares, 600)
	checkWorkBetween(t, db, m, wins)
	var whole, edgesOnly int
	for _, w := range wins {
		lo, hi := boundTime(w[0]), boundTime(w[1])
		switch {
		case lo >= hi:
		case minuteAtOrAfter(lo) < minuteOf(hi):
			whole++
		default:
			edgesOnly++
		}
	}
	if whole < 100 || edgesOnly < 100 {
		t.Fatalf("%d windows held whole minutes, %d did not; want at least 100 of each", whole, edgesOnly)
	}
}

// v2Insert stores shares, sorted by sequence without repeats, as schema version 2 did:
// in blocks, without work_minutes.
func v2Insert(tb testing.TB, db *DB, shares []hashgrid.Share) {
	tb.Helper()
	tx, err := db.w.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	var pending []pendingShare
	for i := range shares {
		enc, err := shares[i].MarshalBinary()
		if err != nil {
			tb.Fatal(err)
		}
		pending = append(pending, pendingShare{s: &shares[i], enc: enc, time: shares[i].Time.UnixNano()})
		if len(pending) == 300 || i == len(shares)-1 {
			if err := writeBlocks(&writeTx{ctx: context.Background(), tx: tx}, chunkShares(pending, nil)); err != nil {
				tb.Fatal(err)
			}
			pending = nil
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}

// TestMigrateWorkMinutes builds a database as the program with migrations 1 and 2 left
// it, opens it with this one, and checks that work_minutes sums the stored shares and
// that WorkBetween answers as it did: with the sums added to the table all at the end,
// and a few rows at a time, so that rows are read back and added to.
func TestMigrateWorkMinutes(t *testing.T) {
	for _, flush := range []int{fillFlush, 5} {
		t.Run(fmt.Sprint("flush", flush), func(t *testing.T) {
			defer func(n int) { fillFlush = n }(fillFlush)
			fillFlush = flush
			testMigrateWorkMinutes(t)
		})
	}
}

func testMigrateWorkMinutes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pool.db")
	old, err := open(path, migrations[:2])
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(13, 14))
	shares := minuteShares(rnd, 8000)
	v2Insert(t, old, shares)
	if n := len(checkBlocks(t, old)); n <= fillWorkBlocks {
		t.Fatalf("%d blocks, want more than one query's %d", n, fillWorkBlocks)
	}
	wins := minuteWindows(rnd, shares, 300)
	var want [][]hashgrid.Worker
	for _, w := range wins {
		want = append(want, decodedWorkBetween(t, old, w[0], w[1]))
	}
	db := reopenMigrated(t, old, path, 2)
	if len(migrations) != 5 {
		t.Fatalf("%d migrations, this test knows 5", len(migrations))
	}
	checkMinutes(t, db) // the rows of migration 3 with the best shares of migration 4
	m := model{}
	m.add(shares)
	for i, w := range wins {
		got, err := db.WorkBetween(ctx, w[0], w[1])
		if err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("WorkBetween(%v, %v)", w[0], w[1])
		checkWorkers(t, what+" against version 2", got, want[i])
		checkWorkers(t, what, got, m.workBetween(w[0], w[1]))
	}

	// The store goes on from there, adding to the minutes the migration filled.
	more := append(minuteShares(rnd, 500), shares[:50]...)
	for i := range more[:500] {
		more[i].Seq += uint64(len(shares))
	}
	if err := db.AddShares(ctx, more); err != nil {
		t.Fatal(err)
	}
	m.add(more)
	checkMinutes(t, db)
	checkWorkBetween(t, db, m, wins[:100])
}
