package storetest

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

// Retainer is the retention contract's subject: a ShareStore that prunes its raw
// shares and rolls its minute summaries up into hours (sqlite.DB, postgres.Store).
// Their methods answer in types of their own packages, so each implementation's test
// passes an adapter that speaks these.
type Retainer interface {
	hashgrid.ShareStore
	// PrunedSeq returns the highest pruned sequence, 0 if none.
	PrunedSeq(ctx context.Context) (uint64, error)
	// Prune is the store's Prune: up to maxBlocks of the oldest share blocks whose
	// shares are all before before and below keepFrom, a prefix of the sequence.
	Prune(ctx context.Context, before time.Time, keepFrom uint64, maxBlocks int) (shares int, more bool, err error)
	// Rollup is the store's Rollup: up to maxRows minutes before the hour holding
	// before folded into hours.
	Rollup(ctx context.Context, before time.Time, maxRows int) (rows int, more bool, err error)
	// Summaries is the store's Summaries.
	Summaries(ctx context.Context, address string, from, to time.Time, limit int) ([]Summary, error)
	// Pass runs one pass of the store's Retention with keep, keepFrom and the clock now,
	// minutes kept for minuteSummaries.
	Pass(ctx context.Context, keep time.Duration, keepFrom uint64, minuteSummaries time.Duration, now time.Time) (pruned, rolled int, err error)
}

// Summary is a row of Retainer.Summaries.
type Summary struct {
	Start     time.Time
	Span      time.Duration
	Address   string
	Worker    string
	Accepted  uint64
	Rejected  uint64
	Work      hashgrid.Work
	Best      hashgrid.Diff
	LastShare time.Time
}

// OpenRetainer opens a fresh, empty store.
type OpenRetainer func(tb testing.TB) Retainer

// Retention runs the retention contract, each test on a store of its own.
func Retention(t *testing.T, open OpenRetainer) {
	tests := []struct {
		name string
		fn   func(*testing.T, Retainer)
	}{
		{"PruneKeepsWhatIsNeeded", testPruneKeepsWhatIsNeeded},
		{"ReplayAfterPrune", testReplayAfterPrune},
		{"WorkBetweenAfterPrune", testWorkBetweenAfterPrune},
		{"RollupKeepsSums", testRollupKeepsSums},
		{"Pass", testRetentionPass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s)
		})
	}
}

// Retention's shares: retainedShares of them, retainedStep apart from t0, in batches
// (so blocks) of retainedBatch, three workers, one share in seven rejected.
const (
	retainedShares = 720
	retainedStep   = 20 * time.Second // 720 shares span 4 hours
	retainedBatch  = 30
)

func retainedShare(seq uint64) hashgrid.Share {
	workers := []struct{ addr, name string }{{"bcrt1qa", "rig1"}, {"bcrt1qa", "rig2"}, {"bcrt1qb", ""}}
	w := workers[seq%3]
	res := hashgrid.ShareAccepted
	if seq%7 == 0 {
		res = hashgrid.ShareLowDiff
	}
	return share(seq, w.addr, w.name, res, hashgrid.DiffOne*hashgrid.Diff(1+seq%5), time.Duration(seq)*retainedStep)
}

func addRetained(tb testing.TB, s Retainer) []hashgrid.Share {
	tb.Helper()
	var all []hashgrid.Share
	for first := uint64(1); first <= retainedShares; first += retainedBatch {
		var batch []hashgrid.Share
		for seq := first; seq < first+retainedBatch; seq++ {
			batch = append(batch, retainedShare(seq))
		}
		if err := s.AddShares(context.Background(), batch); err != nil {
			tb.Fatalf("AddShares: %v", err)
		}
		all = append(all, batch...)
	}
	return all
}

// prunable returns the bounds of the prefix Prune(before, keepFrom) leaves pruned:
// at least the whole batches whose last share is before before and below keepFrom
// (a block never spans two AddShares calls), at most every share that is. Where
// between depends on how the store cuts a batch into blocks.
func prunable(before time.Time, keepFrom uint64) (lo, hi uint64) {
	for seq := uint64(1); seq <= retainedShares; seq++ {
		if !retainedShare(seq).Time.Before(before) || seq >= keepFrom {
			break
		}
		hi = seq
	}
	return hi - hi%retainedBatch, hi
}

func checkPrunedSeq(tb testing.TB, s Retainer, before time.Time, keepFrom uint64) uint64 {
	tb.Helper()
	lo, hi := prunable(before, keepFrom)
	got := mustPrunedSeq(tb, s)
	if got < lo || got > hi {
		tb.Fatalf("PrunedSeq after pruning before %v, keeping from %d = %d; want %d to %d", before.Sub(t0), keepFrom, got, lo, hi)
	}
	return got
}

func mustPrunedSeq(tb testing.TB, s Retainer) uint64 {
	tb.Helper()
	p, err := s.PrunedSeq(context.Background())
	if err != nil {
		tb.Fatalf("PrunedSeq: %v", err)
	}
	return p
}

func pruneAll(tb testing.TB, s Retainer, before time.Time, keepFrom uint64, batch int) int {
	tb.Helper()
	total := 0
	for {
		n, more, err := s.Prune(context.Background(), before, keepFrom, batch)
		if err != nil {
			tb.Fatalf("Prune: %v", err)
		}
		total += n
		if !more {
			return total
		}
	}
}

// checkAccepted checks that Shares returns exactly the accepted shares above from.
func checkAccepted(tb testing.TB, s Retainer, from uint64) {
	tb.Helper()
	got, err := s.Shares(context.Background(), 0, math.MaxUint64, 10*retainedShares)
	if err != nil {
		tb.Fatalf("Shares: %v", err)
	}
	var want []uint64
	for seq := from + 1; seq <= retainedShares; seq++ {
		if retainedShare(seq).Result == hashgrid.ShareAccepted {
			want = append(want, seq)
		}
	}
	if len(got) != len(want) {
		tb.Fatalf("Shares after pruning through %d: %d shares; want %d", from, len(got), len(want))
	}
	for i := range got {
		if got[i].Seq != want[i] {
			tb.Fatalf("Shares()[%d].Seq = %d; want %d", i, got[i].Seq, want[i])
		}
	}
}

func testPruneKeepsWhatIsNeeded(t *testing.T, s Retainer) {
	ctx := context.Background()
	addRetained(t, s)
	workers := mustWorkers(t, s, "")
	acc, rej, work, err := s.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Prune(ctx, t0, math.MaxUint64, 0); err == nil {
		t.Error("Prune with a batch of 0: no error")
	}
	if mustPrunedSeq(t, s) != 0 {
		t.Fatal("PrunedSeq of a new store is not 0")
	}
	// Nothing is old enough: nothing goes.
	if n := pruneAll(t, s, t0, math.MaxUint64, 4); n != 0 {
		t.Fatalf("pruned %d shares older than the oldest", n)
	}
	// By age: the shares of the first hour, but no block with a share at or after it.
	before := t0.Add(time.Hour + 5*time.Second)
	n := pruneAll(t, s, before, math.MaxUint64, 2)
	seq := checkPrunedSeq(t, s, before, math.MaxUint64)
	if n != int(seq) {
		t.Errorf("pruned %d shares, through %d", n, seq)
	}
	checkAccepted(t, s, seq)
	// By need: everything is old, but sequence keepFrom and after are needed.
	keepFrom := uint64(247)
	n = pruneAll(t, s, t0.Add(24*time.Hour), keepFrom, 1)
	next := checkPrunedSeq(t, s, t0.Add(24*time.Hour), keepFrom)
	if n != int(next-seq) {
		t.Errorf("pruned %d more shares, from %d through %d", n, seq, next)
	}
	checkAccepted(t, s, next)
	// Everything: the summaries still count every share, and the sequence goes on.
	pruneAll(t, s, t0.Add(24*time.Hour), math.MaxUint64, 100)
	checkAccepted(t, s, retainedShares)
	checkWorkers(t, "Workers after pruning", mustWorkers(t, s, ""), workers)
	checkTotals(t, s, acc, rej, work)
	if seq, err := s.LastSeq(ctx); err != nil || seq != retainedShares {
		t.Errorf("LastSeq after pruning everything = %d, %v; want %d", seq, err, retainedShares)
	}
}

// testReplayAfterPrune: a replay of the whole stream after a prune stores and counts
// nothing again, neither the pruned shares nor the others.
func testReplayAfterPrune(t *testing.T, s Retainer) {
	ctx := context.Background()
	all := addRetained(t, s)
	workers := mustWorkers(t, s, "")
	acc, rej, work, _ := s.Totals(ctx)
	pruned := uint64(pruneAll(t, s, t0.Add(2*time.Hour), math.MaxUint64, 3))
	if pruned == 0 {
		t.Fatal("nothing pruned")
	}
	for i := 0; i < len(all); i += 100 {
		if err := s.AddShares(ctx, all[i:min(i+100, len(all))]); err != nil {
			t.Fatalf("replay: %v", err)
		}
	}
	checkAccepted(t, s, pruned)
	checkWorkers(t, "Workers after the replay", mustWorkers(t, s, ""), workers)
	checkTotals(t, s, acc, rej, work)
}

// testWorkBetweenAfterPrune: windows on whole minutes answer as before the prune; a
// window edge inside a pruned minute is refused.
func testWorkBetweenAfterPrune(t *testing.T, s Retainer) {
	ctx := context.Background()
	addRetained(t, s)
	windows := [][2]time.Time{
		{t0, t0.Add(4 * time.Hour)},
		{t0.Add(10 * time.Minute), t0.Add(100 * time.Minute)},
		{t0.Add(30 * time.Minute), t0.Add(150*time.Minute + 7*time.Second)}, // its end is after the pruned shares
	}
	var before [][]hashgrid.Worker
	for _, w := range windows {
		ws, err := s.WorkBetween(ctx, w[0], w[1])
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, ws)
	}
	pruneAll(t, s, t0.Add(2*time.Hour), math.MaxUint64, 4)
	for i, w := range windows {
		ws, err := s.WorkBetween(ctx, w[0], w[1])
		if err != nil {
			t.Fatalf("WorkBetween(%v, %v) after pruning: %v", w[0], w[1], err)
		}
		checkWorkers(t, "WorkBetween after pruning", ws, before[i])
	}
	if _, err := s.WorkBetween(ctx, t0.Add(10*time.Minute+time.Second), t0.Add(3*time.Hour)); hashgrid.ErrorCode(err) != hashgrid.EINVALID {
		t.Errorf("WorkBetween from inside a pruned minute: err %v; want EINVALID", err)
	}
}

// testRollupKeepsSums rolls up in small batches: whole-hour windows and the
// summaries' sums are as before; an edge inside a rolled-up hour is refused.
func testRollupKeepsSums(t *testing.T, s Retainer) {
	ctx := context.Background()
	addRetained(t, s)
	windows := [][2]time.Time{
		{t0, t0.Add(4 * time.Hour)},
		{t0.Add(time.Hour), t0.Add(150 * time.Minute)}, // hours, then minutes past rolled_until
		{time.Time{}, time.Unix(1<<40, 0)},
	}
	var before [][]hashgrid.Worker
	for _, w := range windows {
		ws, err := s.WorkBetween(ctx, w[0], w[1])
		if err != nil {
			t.Fatal(err)
		}
		before = append(before, ws)
	}
	sumsBefore := summaryTotals(t, s)
	pruneAll(t, s, t0.Add(2*time.Hour+time.Minute), math.MaxUint64, 10)
	if _, _, err := s.Rollup(ctx, t0, 0); err == nil {
		t.Error("Rollup with a batch of 0: no error")
	}
	rolled, rounds := 0, 0
	for {
		n, more, err := s.Rollup(ctx, t0.Add(2*time.Hour+30*time.Minute), 25)
		if err != nil {
			t.Fatalf("Rollup: %v", err)
		}
		if n > 25 {
			t.Fatalf("Rollup(25) folded %d rows", n)
		}
		rolled += n
		rounds++
		if !more {
			break
		}
	}
	// Two hours of three workers' minutes, but for the first minute's first share
	// (sequence 0): 359 rows.
	if rolled != 359 || rounds < 359/25 {
		t.Errorf("rolled %d rows in %d calls; want 359 in batches of 25", rolled, rounds)
	}
	for i, w := range windows {
		ws, err := s.WorkBetween(ctx, w[0], w[1])
		if err != nil {
			t.Fatalf("WorkBetween(%v, %v) after the rollup: %v", w[0], w[1], err)
		}
		checkWorkers(t, "WorkBetween after the rollup", ws, before[i])
	}
	if _, err := s.WorkBetween(ctx, t0.Add(10*time.Minute), t0.Add(3*time.Hour)); hashgrid.ErrorCode(err) != hashgrid.EINVALID {
		t.Errorf("WorkBetween from inside a rolled-up hour: err %v; want EINVALID", err)
	}
	sumsAfter := summaryTotals(t, s)
	if sumsAfter != sumsBefore {
		t.Errorf("summaries' sums after the rollup %+v; want %+v", sumsAfter, sumsBefore)
	}
	// The hours are there, by the hour.
	sm, err := s.Summaries(ctx, "bcrt1qb", t0, t0.Add(time.Hour), 100)
	if err != nil || len(sm) != 1 || sm[0].Span != time.Hour || !sm[0].Start.Equal(t0) || sm[0].Worker != "" {
		t.Errorf("Summaries of bcrt1qb's first hour = %+v, %v; want one hour row", sm, err)
	}
	// A late share in a rolled-up hour still counts.
	first, err := s.WorkBetween(ctx, t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	late := retainedShare(retainedShares + 3) // bcrt1qa.rig1, accepted
	late.Time = t0.Add(30 * time.Minute)
	if err := s.AddShares(ctx, []hashgrid.Share{late}); err != nil {
		t.Fatal(err)
	}
	ws, err := s.WorkBetween(ctx, t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for i := range first {
		if first[i].Address == late.Address && first[i].Name == late.Worker {
			first[i].Accepted++
			first[i].Work = first[i].Work.Add(late.Diff)
		}
	}
	checkWorkers(t, "WorkBetween of the first hour after a late share", ws, first)
}

type sumTotals struct {
	accepted, rejected uint64
	work               hashgrid.Work
	best               hashgrid.Diff
	rows               int
}

func summaryTotals(tb testing.TB, s Retainer) sumTotals {
	tb.Helper()
	sm, err := s.Summaries(context.Background(), "", time.Time{}, time.Unix(1<<40, 0), 100_000)
	if err != nil {
		tb.Fatalf("Summaries: %v", err)
	}
	var t sumTotals
	for i, r := range sm {
		if i > 0 && r.Start.Before(sm[i-1].Start) {
			tb.Fatalf("Summaries out of order at %d", i)
		}
		t.accepted += r.Accepted
		t.rejected += r.Rejected
		t.work = t.work.Plus(r.Work)
		t.best = max(t.best, r.Best)
	}
	return t
}

// testRetentionPass: one pass prunes what is old and not needed, and rolls up the
// minutes older than both the pruned shares and the minute horizon.
func testRetentionPass(t *testing.T, s Retainer) {
	ctx := context.Background()
	addRetained(t, s)
	now := t0.Add(4 * time.Hour)
	// Raw shares are kept an hour and a half; sequence 400 on is still needed;
	// minutes are kept an hour and a quarter.
	pruned, rolled, err := s.Pass(ctx, 90*time.Minute, 400, 75*time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	if seq := checkPrunedSeq(t, s, now.Add(-90*time.Minute), 400); pruned != int(seq) {
		t.Errorf("pass pruned %d shares, through %d", pruned, seq)
	}
	// The pruned shares end after 2h10; the minutes of the hours before 2h are rolled
	// up: 359 rows (see testRollupKeepsSums).
	if rolled != 359 {
		t.Errorf("pass rolled %d rows; want 359", rolled)
	}
	// A second pass finds nothing more.
	if pruned, rolled, err := s.Pass(ctx, 90*time.Minute, 400, 75*time.Minute, now); err != nil || pruned != 0 || rolled != 0 {
		t.Errorf("second pass: pruned %d, rolled %d, %v; want nothing", pruned, rolled, err)
	}
}
