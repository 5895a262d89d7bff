package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

// poolShares returns n shares as a pool stores them: sequences 1..n, times rising by
// step from t0, four workers of two addresses, a fifth of them rejected (some standing
// for repeated rejections), difficulties and actual difficulties up to the largest.
func poolShares(rnd *rand.Rand, n int, step time.Duration) []hashgrid.Share {
	out := make([]hashgrid.Share, n)
	for i := range out {
		res := hashgrid.ShareAccepted
		if rnd.IntN(5) == 0 {
			res = hashgrid.ShareLowDiff
		}
		s := share(uint64(i+1), fmt.Sprint("bcrt1qr", rnd.IntN(2)), fmt.Sprint("rig", rnd.IntN(2)), res,
			hashgrid.Diff(rnd.Uint64()>>rnd.IntN(64)), time.Duration(i)*step)
		s.Actual = hashgrid.Diff(rnd.Uint64() >> rnd.IntN(64))
		if res != hashgrid.ShareAccepted && rnd.IntN(4) == 0 {
			s.Repeats = 1 + rnd.Uint64N(50)
		}
		out[i] = s
	}
	return out
}

// addPoolShares adds shares in batches of up to 500, in order, as the stream's
// consumer does.
func addPoolShares(tb testing.TB, db *DB, rnd *rand.Rand, shares []hashgrid.Share) {
	tb.Helper()
	for i := 0; i < len(shares); {
		j := min(i+1+rnd.IntN(500), len(shares))
		if err := db.AddShares(context.Background(), shares[i:j]); err != nil {
			tb.Fatal(err)
		}
		i = j
	}
}

// minuteModel sums shares by minute and worker, the way work_minutes must.
func minuteModel(shares []hashgrid.Share) map[minuteKey]workSum {
	out := map[minuteKey]workSum{}
	for _, s := range shares {
		t := s.Time.UnixNano()
		k := minuteKey{minuteOf(t), s.Address, s.Worker}
		w, ok := out[k]
		if !ok {
			w.last = math.MinInt64
		}
		w.count(s.Result, s.Diff, s.Actual, s.Repeats, t)
		out[k] = w
	}
	return out
}

// checkSummaries checks that Summaries, workers and totals hold exactly the sums of
// shares, whether or not their raw shares are still stored: the rows of each hour
// (an hour's row, the minutes' rows, or both while a rollup is under way) add up to
// the hour's shares, and a minute's row where no hour row is holds the minute's.
func checkSummaries(tb testing.TB, db *DB, shares []hashgrid.Share) {
	tb.Helper()
	ctx := context.Background()
	minutes := minuteModel(shares)
	hours := map[minuteKey]workSum{}
	for k, w := range minutes {
		hk := minuteKey{floorDiv(k.minute, 60), k.address, k.name}
		h, ok := hours[hk]
		if !ok {
			h.last = math.MinInt64
		}
		h.plus(&w)
		hours[hk] = h
	}
	got, err := db.Summaries(ctx, "", time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64), maxSummaries)
	if err != nil {
		tb.Fatal(err)
	}
	gotHours := map[minuteKey]workSum{}
	hasHourRow := map[minuteKey]bool{}
	for _, s := range got {
		sum := workSum{s.Accepted, s.Rejected, s.Work, s.LastShare.UnixNano(), s.Best}
		switch s.Span {
		case time.Minute:
			k := minuteKey{s.Start.UnixNano() / minuteNanos, s.Address, s.Worker}
			if _, ok := minutes[k]; !ok {
				tb.Fatalf("summary of minute %v %s.%s: no share there", s.Start, s.Address, s.Worker)
			}
		case time.Hour:
			hasHourRow[minuteKey{floorDiv(s.Start.UnixNano(), hourNanos), s.Address, s.Worker}] = true
		default:
			tb.Fatalf("summary of span %v", s.Span)
		}
		hk := minuteKey{floorDiv(s.Start.UnixNano(), hourNanos), s.Address, s.Worker}
		h, ok := gotHours[hk]
		if !ok {
			h.last = math.MinInt64
		}
		h.plus(&sum)
		gotHours[hk] = h
	}
	if len(gotHours) != len(hours) {
		tb.Fatalf("Summaries cover %d worker-hours, the shares make %d", len(gotHours), len(hours))
	}
	for k, w := range hours {
		if gotHours[k] != w {
			tb.Fatalf("summaries of hour %d of %s.%s add up to %+v, the shares give %+v", k.minute, k.address, k.name, gotHours[k], w)
		}
	}
	for _, s := range got {
		k := minuteKey{s.Start.UnixNano() / minuteNanos, s.Address, s.Worker}
		if s.Span == time.Minute && !hasHourRow[minuteKey{floorDiv(k.minute, 60), s.Address, s.Worker}] {
			if w := minutes[k]; (workSum{s.Accepted, s.Rejected, s.Work, s.LastShare.UnixNano(), s.Best}) != w {
				tb.Fatalf("summary of %v %s.%s: got %+v, the shares give %+v", s.Start, s.Address, s.Worker, s, w)
			}
		}
	}
	m := model{}
	m.add(shares)
	all := m.summarize(func(hashgrid.Share) bool { return true })
	checkWorkers(tb, "Workers", mustWorkers(tb, db, ""), all)
	var acc, rej uint64
	var work hashgrid.Work
	for _, w := range all {
		acc += w.Accepted
		rej += w.Rejected
		work = work.Plus(w.Work)
	}
	checkTotals(tb, db, acc, rej, work)
}

// storedSeqs returns the sequences of every share the blocks still hold.
func storedSeqs(tb testing.TB, db *DB) []uint64 {
	tb.Helper()
	var out []uint64
	for _, b := range checkBlocks(tb, db) {
		var data []byte
		if err := db.r.QueryRow(`SELECT data FROM share_blocks WHERE first_seq = ?`, b.first).Scan(&data); err != nil {
			tb.Fatal(err)
		}
		ss, err := decodeBlock(data)
		if err != nil {
			tb.Fatal(err)
		}
		for _, s := range ss {
			out = append(out, s.Seq)
		}
	}
	return out
}

// TestPruneKeepsWhatIsNeeded prunes by age and by the lowest sequence still needed and
// checks that exactly a prefix of whole blocks went, none of it younger than the
// cut-off or at or above keepFrom, that everything else reads as before, and that the
// summaries still count every share.
func TestPruneKeepsWhatIsNeeded(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	rnd := rand.New(rand.NewPCG(20, 1))
	shares := poolShares(rnd, 12000, 250*time.Millisecond) // 50 minutes
	addPoolShares(t, db, rnd, shares)
	last := shares[len(shares)-1].Seq
	m := model{}
	m.add(shares)

	// Needed from seq 4000 on (a block's window, say); older than 40 minutes may go.
	keepFrom := uint64(4000)
	before := t0.Add(40 * time.Minute)
	var total PruneResult
	for {
		r, err := db.Prune(ctx, before, keepFrom, 3)
		if err != nil {
			t.Fatal(err)
		}
		if r.Blocks > 3 {
			t.Fatalf("Prune with a batch of 3 deleted %d blocks", r.Blocks)
		}
		total.Blocks += r.Blocks
		total.Shares += r.Shares
		total.Seq = r.Seq
		if !r.More {
			break
		}
	}
	if total.Blocks == 0 || total.Seq >= keepFrom {
		t.Fatalf("pruned %d blocks through %d; want some, below %d", total.Blocks, total.Seq, keepFrom)
	}
	stored := storedSeqs(t, db)
	if stored[0] != total.Seq+1 || uint64(len(stored)) != last-total.Seq || int(total.Seq) != total.Shares {
		t.Fatalf("stored %d shares from %d after pruning %d through %d; want exactly the shares after it",
			len(stored), stored[0], total.Shares, total.Seq)
	}
	// The block holding keepFrom-1 or later is the first kept: pruning stopped at it.
	blocks := checkBlocks(t, db)
	if uint64(blocks[0].last) < keepFrom-1 {
		t.Fatalf("first kept block ends at %d: it was prunable (keepFrom %d)", blocks[0].last, keepFrom)
	}
	p, err := db.Pruned(ctx)
	if err != nil || p.Seq != total.Seq || p.Shares != uint64(total.Shares) || p.Blocks != uint64(total.Blocks) {
		t.Fatalf("Pruned: got %+v, %v; want seq %d, %d shares, %d blocks", p, err, total.Seq, total.Shares, total.Blocks)
	}
	if want := m[total.Seq].Time; !p.Time.Equal(want) || !p.Time.Before(before) {
		t.Fatalf("Pruned.Time %v, want %v (the last pruned share's), before %v", p.Time, want, before)
	}
	if got, err := db.LastSeq(ctx); err != nil || got != last {
		t.Fatalf("LastSeq: got %d, %v; want %d", got, err, last)
	}
	// Shares reads the kept ones as before; the pruned are gone.
	if got := seqs(mustShares(t, db, 0, math.MaxInt64, 1<<20)); !slices.Equal(got, seqs(m.shares(total.Seq, math.MaxInt64, 1<<20))) {
		t.Fatalf("Shares after pruning: %d shares, want the %d accepted after %d", len(got), len(m.shares(total.Seq, math.MaxInt64, 1<<20)), total.Seq)
	}
	for _, a := range []string{"bcrt1qr0", "bcrt1qr1"} {
		got, err := db.SharesFor(ctx, a, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(got, func(s hashgrid.Share) bool { return s.Seq <= total.Seq }) {
			t.Fatalf("SharesFor(%s) returns a pruned share", a)
		}
		var rows int
		db.r.QueryRow(`SELECT COUNT(*) FROM share_block_addresses WHERE first_seq <= ?`, int64(total.Seq)).Scan(&rows)
		if rows != 0 {
			t.Fatalf("%d rows of share_block_addresses left for pruned blocks", rows)
		}
	}
	checkSummaries(t, db, shares)

	// Pruning again with the same bounds does nothing; with nothing needed and a
	// cut-off after every share, everything goes, and the summaries stay.
	if r, err := db.Prune(ctx, before, keepFrom, 100); err != nil || r.Blocks != 0 || r.Seq != total.Seq {
		t.Fatalf("second Prune: got %+v, %v; want nothing more", r, err)
	}
	for {
		r, err := db.Prune(ctx, t0.Add(time.Hour), math.MaxUint64, 50)
		if err != nil {
			t.Fatal(err)
		}
		if !r.More {
			break
		}
	}
	if n := len(storedSeqs(t, db)); n != 0 {
		t.Fatalf("%d shares left after pruning everything", n)
	}
	if got, err := db.LastSeq(ctx); err != nil || got != last {
		t.Fatalf("LastSeq after pruning everything: got %d, %v; want %d", got, err, last)
	}
	checkSummaries(t, db, shares)
}

func mustShares(tb testing.TB, db *DB, after, upto uint64, limit int) []hashgrid.Share {
	tb.Helper()
	ss, err := db.Shares(context.Background(), after, upto, limit)
	if err != nil {
		tb.Fatal(err)
	}
	return ss
}

// TestReplayAfterPruneCountsNothing replays the whole stream into a store that pruned
// part of it, as the pool does after a crash from an older LastSeq, and after a
// reopen: the pruned shares are not stored again nor counted twice.
func TestReplayAfterPruneCountsNothing(t *testing.T) {
	ctx := context.Background()
	db, path := openDB(t)
	rnd := rand.New(rand.NewPCG(20, 2))
	shares := poolShares(rnd, 3000, time.Second)
	addPoolShares(t, db, rnd, shares)
	r, err := db.Prune(ctx, t0.Add(30*time.Minute), 2000, 1000)
	if err != nil || r.Blocks == 0 {
		t.Fatalf("Prune: %+v, %v", r, err)
	}
	replay := func() {
		t.Helper()
		addPoolShares(t, db, rnd, shares)
		checkSummaries(t, db, shares)
		if got := storedSeqs(t, db); got[0] != r.Seq+1 {
			t.Fatalf("after a replay the store holds shares from %d, pruned through %d", got[0], r.Seq)
		}
	}
	replay()
	db.Close()
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, err := db.LastSeq(ctx); err != nil || got != 3000 {
		t.Fatalf("LastSeq after reopen: got %d, %v; want 3000", got, err)
	}
	replay()

	// A store with everything pruned still answers its LastSeq, and goes on from it.
	if _, err := db.Prune(ctx, t0.Add(time.Hour), math.MaxUint64, 1000); err != nil {
		t.Fatal(err)
	}
	if got, err := db.LastSeq(ctx); err != nil || got != 3000 {
		t.Fatalf("LastSeq with every share pruned: got %d, %v; want 3000", got, err)
	}
	more := poolShares(rnd, 3100, time.Second)[3000:]
	if err := db.AddShares(ctx, more); err != nil {
		t.Fatal(err)
	}
	checkSummaries(t, db, append(slices.Clone(shares), more...))
}

// TestWorkBetweenAfterPrune checks that windows on whole minutes are answered exactly
// over pruned shares, from the summaries, and that a window whose edge would need a
// pruned share is refused rather than answered short.
func TestWorkBetweenAfterPrune(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	rnd := rand.New(rand.NewPCG(20, 3))
	shares := poolShares(rnd, 6000, 500*time.Millisecond) // 50 minutes
	addPoolShares(t, db, rnd, shares)
	m := model{}
	m.add(shares)
	if _, err := db.Prune(ctx, t0.Add(30*time.Minute), math.MaxUint64, 1000); err != nil {
		t.Fatal(err)
	}
	p, _ := db.Pruned(ctx)
	for _, w := range [][2]time.Duration{{0, 10 * time.Minute}, {5 * time.Minute, 45 * time.Minute}, {-time.Hour, 2 * time.Hour},
		{31 * time.Minute, 40*time.Minute + 17*time.Second}, {35*time.Minute + time.Second, 35*time.Minute + 2*time.Second}} {
		from, to := t0.Add(w[0]), t0.Add(w[1])
		got, err := db.WorkBetween(ctx, from, to)
		if err != nil {
			t.Fatalf("WorkBetween(%v, %v): %v", w[0], w[1], err)
		}
		checkWorkers(t, fmt.Sprintf("WorkBetween(%v, %v)", w[0], w[1]), got, m.workBetween(from, to))
	}
	for _, w := range [][2]time.Duration{{time.Second, 10 * time.Minute}, {5 * time.Minute, 29*time.Minute + time.Second},
		{10*time.Minute + time.Second, 10*time.Minute + 2*time.Second}} {
		_, err := db.WorkBetween(ctx, t0.Add(w[0]), t0.Add(w[1]))
		if hashgrid.ErrorCode(err) != hashgrid.EINVALID {
			t.Fatalf("WorkBetween(%v, %v) with an edge in pruned shares (through %v): got %v, want EINVALID", w[0], w[1], p.Time, err)
		}
	}
}

// fileSize returns the bytes of the store on disk: the database, its WAL and shared
// memory.
func fileSize(tb testing.TB, path string) int64 {
	tb.Helper()
	var n int64
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// TestRetentionFreesDisk runs a retention pass over a new store and over one made
// before retention existed (auto_vacuum none), and checks that the file shrinks to a
// fraction of its size, the old one being converted once.
func TestRetentionFreesDisk(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprint("legacy=", legacy), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "pool.db")
			if legacy {
				// As an older program left it: auto_vacuum none, fixed by the first table.
				raw, err := sql.Open("sqlite", path)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := raw.Exec(`PRAGMA auto_vacuum = none; CREATE TABLE made_before_retention (x)`); err != nil {
					t.Fatal(err)
				}
				raw.Close()
			}
			db, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			want := autoVacuumIncremental
			if legacy {
				want = autoVacuumNone
			}
			if mode, err := db.AutoVacuum(ctx); err != nil || mode != want {
				t.Fatalf("auto_vacuum of the new store: got %d, %v; want %d", mode, err, want)
			}
			rnd := rand.New(rand.NewPCG(20, 4))
			shares := poolShares(rnd, 40000, 100*time.Millisecond) // 67 minutes
			addPoolShares(t, db, rnd, shares)
			if err := db.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			full := fileSize(t, path)
			ret := Retention{DB: db, Keep: 10 * time.Minute, Batch: 8, Pause: time.Millisecond,
				Now: func() time.Time { return t0.Add(67 * time.Minute) }}
			res, err := ret.Pass(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.Converted != legacy {
				t.Fatalf("pass converted the store: %v, want %v", res.Converted, legacy)
			}
			if mode, _ := db.AutoVacuum(ctx); mode != autoVacuumIncremental {
				t.Fatalf("auto_vacuum after the pass: %d, want incremental", mode)
			}
			after := fileSize(t, path)
			kept := len(storedSeqs(t, db))
			t.Logf("%d shares: %d bytes; after pruning %d of them: %d bytes", len(shares), full, res.Shares, after)
			if res.Shares < 30000 || kept+res.Shares != len(shares) {
				t.Fatalf("pass pruned %d shares and kept %d of %d; want those older than 10 minutes gone", res.Shares, kept, len(shares))
			}
			if after > full/3 {
				t.Fatalf("store is %d bytes after pruning %d of %d shares, was %d: disk not given back", after, res.Shares, len(shares), full)
			}
			checkSummaries(t, db, shares)
		})
	}
}

// TestRetentionWaitsForNeeds checks that a pass prunes nothing while what is needed
// cannot be known, and nothing at or above what is.
func TestRetentionWaitsForNeeds(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	rnd := rand.New(rand.NewPCG(20, 5))
	shares := poolShares(rnd, 2000, time.Second)
	addPoolShares(t, db, rnd, shares)
	now := func() time.Time { return t0.Add(2 * time.Hour) }
	failing := Retention{DB: db, Now: now, KeepFrom: func(context.Context) (uint64, error) { return 0, errors.New("node down") }}
	if res, err := failing.Pass(ctx); err == nil || res.Blocks != 0 {
		t.Fatalf("pass with unknown needs: got %+v, %v; want an error and nothing pruned", res, err)
	}
	if p, _ := db.Pruned(ctx); p.Seq != 0 {
		t.Fatalf("pruned through %d with unknown needs", p.Seq)
	}
	needy := Retention{DB: db, Now: now, KeepFrom: func(context.Context) (uint64, error) { return 1500, nil }}
	res, err := needy.Pass(ctx)
	if err != nil || res.Blocks == 0 || res.Seq >= 1500 {
		t.Fatalf("pass keeping from 1500: got %+v, %v", res, err)
	}
	if got := storedSeqs(t, db); got[0] > 1500 {
		t.Fatalf("store holds shares from %d, needed from 1500", got[0])
	}
	if _, err := (Retention{DB: db, Keep: -time.Second}).Pass(ctx); err == nil {
		t.Fatal("pass with a negative keep: got nil error")
	}
}

// TestRollupKeepsSums rolls the minutes whose shares are pruned up into hours, a few
// rows a transaction, and checks that every sum is unchanged, that WorkBetween answers
// whole hours there exactly and refuses what only minutes could answer, and that a
// late share's minute in the rolled-up hours is counted and folded in turn.
func TestRollupKeepsSums(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	rnd := rand.New(rand.NewPCG(20, 6))
	shares := poolShares(rnd, 6000, 3*time.Second) // 5 hours from t0 (on an hour)
	addPoolShares(t, db, rnd, shares)
	m := model{}
	m.add(shares)
	if _, err := db.Prune(ctx, t0.Add(3*time.Hour+20*time.Minute), math.MaxUint64, 1<<20); err != nil {
		t.Fatal(err)
	}
	p, _ := db.Pruned(ctx)
	rolls := 0
	for {
		r, err := db.Rollup(ctx, p.Time, 7)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rows > 7 || !r.Until.Equal(t0.Add(3*time.Hour)) {
			t.Fatalf("Rollup: %+v; want at most 7 rows, until %v", r, t0.Add(3*time.Hour))
		}
		rolls++
		checkSummaries(t, db, shares) // also between two transactions of a rollup
		if !r.More {
			break
		}
	}
	var left, hours int
	db.r.QueryRow(`SELECT COUNT(*) FROM work_minutes WHERE minute < ?`, t0.Add(3*time.Hour).UnixNano()/minuteNanos).Scan(&left)
	db.r.QueryRow(`SELECT COUNT(*) FROM work_hours`).Scan(&hours)
	if left != 0 || hours != 3*4 || rolls < 10 {
		t.Fatalf("after %d rollups: %d minute rows left before the rolled hour, %d hour rows (want 0 and 12)", rolls, left, hours)
	}
	// A second rollup to the same hour finds nothing; one to an earlier hour does not
	// lower rolled_until.
	if r, err := db.Rollup(ctx, t0, 100); err != nil || r.Rows != 0 || !r.Until.Equal(t0.Add(3*time.Hour)) {
		t.Fatalf("Rollup to an earlier hour: %+v, %v", r, err)
	}

	windows := [][2]time.Duration{{0, time.Hour}, {time.Hour, 3 * time.Hour}, {-time.Hour, 10 * time.Hour},
		{2 * time.Hour, 3*time.Hour + 30*time.Minute}, {2 * time.Hour, 4*time.Hour + 7*time.Second}, {3*time.Hour + 21*time.Minute, 4 * time.Hour}}
	check := func(what string) {
		t.Helper()
		for _, w := range windows {
			from, to := t0.Add(w[0]), t0.Add(w[1])
			got, err := db.WorkBetween(ctx, from, to)
			if err != nil {
				t.Fatalf("%s: WorkBetween(%v, %v): %v", what, w[0], w[1], err)
			}
			checkWorkers(t, fmt.Sprintf("%s: WorkBetween(%v, %v)", what, w[0], w[1]), got, m.workBetween(from, to))
		}
		got, err := db.WorkBetween(ctx, time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64))
		if err != nil {
			t.Fatalf("%s: WorkBetween over all time: %v", what, err)
		}
		checkWorkers(t, what+": WorkBetween over all time", got, m.summarize(func(hashgrid.Share) bool { return true }))
	}
	check("rolled up")
	for _, w := range [][2]time.Duration{{time.Minute, 2 * time.Hour}, {0, 2*time.Hour + time.Minute}, {10 * time.Minute, 20 * time.Minute}} {
		if _, err := db.WorkBetween(ctx, t0.Add(w[0]), t0.Add(w[1])); hashgrid.ErrorCode(err) != hashgrid.EINVALID {
			t.Fatalf("WorkBetween(%v, %v) off the hour where only hours are kept: got %v, want EINVALID", w[0], w[1], err)
		}
	}

	// A late share in a rolled-up hour lands in work_minutes, is counted there, and the
	// next rollup folds it.
	late := share(6001, "bcrt1qr0", "rig0", hashgrid.ShareAccepted, hashgrid.DiffOne, 90*time.Minute)
	if err := db.AddShares(ctx, []hashgrid.Share{late}); err != nil {
		t.Fatal(err)
	}
	shares = append(shares, late)
	m.add([]hashgrid.Share{late})
	checkSummaries(t, db, shares)
	check("with a late share")
	if r, err := db.Rollup(ctx, p.Time, 100); err != nil || r.Rows != 1 {
		t.Fatalf("Rollup of the late share's minute: %+v, %v", r, err)
	}
	checkSummaries(t, db, shares)
	check("late share rolled up")
}

// TestRetentionPassRollsUp checks that a pass rolls up the minutes whose shares it
// pruned, but none of the last MinuteSummaries, whatever Keep.
func TestRetentionPassRollsUp(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	rnd := rand.New(rand.NewPCG(20, 7))
	shares := poolShares(rnd, 6000, 3*time.Second) // 5 hours from t0
	addPoolShares(t, db, rnd, shares)
	res, err := (Retention{DB: db, Keep: time.Hour, MinuteSummaries: 2 * time.Hour, Pause: time.Millisecond,
		Now: func() time.Time { return t0.Add(5 * time.Hour) }}).Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var minutesBefore, minutesAfter, hours int
	cut := t0.Add(3*time.Hour).UnixNano() / minuteNanos
	db.r.QueryRow(`SELECT COUNT(*) FROM work_minutes WHERE minute < ?`, cut).Scan(&minutesBefore)
	db.r.QueryRow(`SELECT COUNT(*) FROM work_minutes WHERE minute >= ?`, cut).Scan(&minutesAfter)
	db.r.QueryRow(`SELECT COUNT(*) FROM work_hours`).Scan(&hours)
	wantBefore, wantAfter := 0, 0
	for k := range minuteModel(shares) {
		if k.minute < cut {
			wantBefore++
		} else {
			wantAfter++
		}
	}
	if res.Shares == 0 || res.Rolled != wantBefore || minutesBefore != 0 || hours != 3*4 || minutesAfter != wantAfter {
		t.Fatalf("pass %+v: %d minute rows before the last 2 hours, %d in them, %d hour rows; want every minute of "+
			"the first 3 hours rolled into 12 hour rows, the last 2 hours by the minute", res, minutesBefore, minutesAfter, hours)
	}
	checkSummaries(t, db, shares)
}

// TestRepeatsCounted checks that a sampled rejected share counts for itself and the
// Repeats rejections it stands for, in every summary: workers, totals, minutes, and
// WorkBetween both from the minutes and from the blocks.
func TestRepeatsCounted(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	ok := share(1, "bcrt1qrep", "w", hashgrid.ShareAccepted, hashgrid.DiffOne, 10*time.Second)
	low := share(2, "bcrt1qrep", "w", hashgrid.ShareLowDiff, hashgrid.DiffOne, 20*time.Second)
	low.Repeats = 4
	if err := db.AddShares(ctx, []hashgrid.Share{ok, low}); err != nil {
		t.Fatal(err)
	}
	ws := mustWorkers(t, db, "bcrt1qrep")
	if len(ws) != 1 || ws[0].Accepted != 1 || ws[0].Rejected != 5 {
		t.Fatalf("workers: %+v; want 1 accepted, 5 rejected", ws)
	}
	if acc, rej, _, err := db.Totals(ctx); err != nil || acc != 1 || rej != 5 {
		t.Fatalf("totals: %d accepted, %d rejected, %v; want 1 and 5", acc, rej, err)
	}
	for _, w := range [][2]time.Duration{{0, time.Minute}, {5 * time.Second, 30 * time.Second}} {
		got, err := db.WorkBetween(ctx, t0.Add(w[0]), t0.Add(w[1]))
		if err != nil || len(got) != 1 || got[0].Rejected != 5 {
			t.Fatalf("WorkBetween(%v, %v): %+v, %v; want 5 rejected", w[0], w[1], got, err)
		}
	}
	sums, err := db.Summaries(ctx, "bcrt1qrep", t0, t0.Add(time.Minute), 10)
	if err != nil || len(sums) != 1 || sums[0].Rejected != 5 || sums[0].Best != ok.Actual {
		t.Fatalf("Summaries: %+v, %v; want 5 rejected, best %v", sums, err, ok.Actual)
	}
}
