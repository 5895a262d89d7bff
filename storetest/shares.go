// Package storetest holds the contract tests every implementation of hashgrid's
// stores must pass: ShareStore for hashgrid.ShareStore and Retention for its pruning
// and rollup (run by sqlite and postgres), Ledger for the book of money (ledger's
// SQLite book and postgres's), PayoutState for the payout service's state
// (payout.SQLiteState and postgres.PayoutState) and Outbox for the alert outbox
// (alert.SQLiteOutbox and postgres.AlertOutbox).
// One suite, called from each implementation's tests with a function that opens a
// fresh, empty store, so that the implementations cannot drift apart.
//
// It checks behaviour a caller sees through the interface only: what is stored and
// read back, idempotency, order, limits and errors. What an implementation does
// beyond the interface (SQLite's vacuum, its file format) is tested beside it.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

// OpenShareStore opens a fresh, empty store for one test or benchmark; it is closed by
// the suite (implementations may also register their own cleanup).
type OpenShareStore func(tb testing.TB) hashgrid.ShareStore

// ShareStore runs the ShareStore contract, each test on a store of its own.
func ShareStore(t *testing.T, open OpenShareStore) {
	tests := []struct {
		name string
		fn   func(*testing.T, hashgrid.ShareStore)
	}{
		{"AddSharesAndSummaries", testAddSharesAndSummaries},
		{"RejectsBadInput", testRejectsBadInput},
		{"Shares", testSharesRange},
		{"WorkBetween", testWorkBetween},
		{"WorkBetweenMinutes", testWorkBetweenMinutes},
		{"Blocks", testBlocks},
		{"ConcurrentReplays", testConcurrentReplays},
		{"RandomBatches", testRandomBatches},
		{"SampledHeaders", testSampledHeaders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s)
		})
	}
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func share(seq uint64, addr, worker string, result hashgrid.ShareResult, diff hashgrid.Diff, at time.Duration) hashgrid.Share {
	return hashgrid.Share{
		Seq: seq, Time: t0.Add(at), Address: addr, Worker: worker, JobID: fmt.Sprintf("job%d", seq),
		Height: 900000, Diff: diff, Actual: diff * 3, Hash: [32]byte{0: byte(seq), 31: 0xee}, Result: result,
		UserAgent: "cpuminer/2.5.1", Remote: "127.0.0.1:40000",
	}
}

// testShares spans two addresses, three workers, accepted and rejected results (one a
// sampled reject standing for more), and a difficulty near the top of the range so
// that sums need more than 64 bits.
func testShares() []hashgrid.Share {
	big := hashgrid.MaxDiff - 5
	low := share(7, "bcrt1qb", "", hashgrid.ShareLowDiff, hashgrid.DiffOne, 6*time.Second)
	low.Repeats = 4
	low.Block = true
	return []hashgrid.Share{
		share(1, "bcrt1qa", "rig1", hashgrid.ShareAccepted, hashgrid.DiffOne, 0),
		share(2, "bcrt1qa", "rig1", hashgrid.ShareAccepted, big, time.Second),
		share(3, "bcrt1qa", "rig1", hashgrid.ShareAccepted, big, 2*time.Second),
		share(4, "bcrt1qa", "rig2", hashgrid.ShareStale, hashgrid.DiffOne, 3*time.Second),
		share(5, "bcrt1qb", "", hashgrid.ShareAccepted, hashgrid.DiffOne/1000, 4*time.Second),
		share(6, "bcrt1qa", "rig2", hashgrid.ShareAccepted, 2*hashgrid.DiffOne, 5*time.Second),
		low,
	}
}

func work(diffs ...hashgrid.Diff) hashgrid.Work {
	var w hashgrid.Work
	for _, d := range diffs {
		w = w.Add(d)
	}
	return w
}

func seqs(ss []hashgrid.Share) []uint64 {
	var out []uint64
	for _, s := range ss {
		out = append(out, s.Seq)
	}
	return out
}

func mustWorkers(tb testing.TB, s hashgrid.ShareStore, address string) []hashgrid.Worker {
	tb.Helper()
	ws, err := s.Workers(context.Background(), address)
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

func checkTotals(tb testing.TB, s hashgrid.ShareStore, acc, rej uint64, w hashgrid.Work) {
	tb.Helper()
	a, r, gw, err := s.Totals(context.Background())
	if err != nil || a != acc || r != rej || gw != w {
		tb.Fatalf("Totals: got %d, %d, %+v, %v; want %d, %d, %+v", a, r, gw, err, acc, rej, w)
	}
}

func testAddSharesAndSummaries(t *testing.T, s hashgrid.ShareStore) {
	ctx := context.Background()
	if seq, err := s.LastSeq(ctx); err != nil || seq != 0 {
		t.Fatalf("LastSeq of empty store: got %d, %v", seq, err)
	}
	checkTotals(t, s, 0, 0, hashgrid.Work{})
	checkWorkers(t, "Workers of empty store", mustWorkers(t, s, ""), nil)
	in := testShares()
	if err := s.AddShares(ctx, in); err != nil {
		t.Fatalf("AddShares: %v", err)
	}
	if seq, err := s.LastSeq(ctx); err != nil || seq != 7 {
		t.Fatalf("LastSeq: got %d, %v; want 7", seq, err)
	}
	big := hashgrid.MaxDiff - 5
	wantWorkers := []hashgrid.Worker{
		{Address: "bcrt1qa", Name: "rig1", Accepted: 3, Work: work(hashgrid.DiffOne, big, big), LastShare: t0.Add(2 * time.Second)},
		{Address: "bcrt1qa", Name: "rig2", Accepted: 1, Rejected: 1, Work: work(2 * hashgrid.DiffOne), LastShare: t0.Add(5 * time.Second)},
		{Address: "bcrt1qb", Name: "", Accepted: 1, Rejected: 5, Work: work(hashgrid.DiffOne / 1000), LastShare: t0.Add(6 * time.Second)},
	}
	if wantWorkers[0].Work.Hi == 0 {
		t.Fatalf("test data: rig1's work should need 65 bits, got %+v", wantWorkers[0].Work)
	}
	allWork := work(hashgrid.DiffOne, big, big, 2*hashgrid.DiffOne, hashgrid.DiffOne/1000)
	checkWorkers(t, "Workers(\"\")", mustWorkers(t, s, ""), wantWorkers)
	checkWorkers(t, "Workers(bcrt1qa)", mustWorkers(t, s, "bcrt1qa"), wantWorkers[:2])
	checkWorkers(t, "Workers(unknown)", mustWorkers(t, s, "nobody"), nil)
	checkTotals(t, s, 5, 6, allWork)

	// The same batch again, and a batch overlapping it, change nothing already counted.
	if err := s.AddShares(ctx, in); err != nil {
		t.Fatalf("AddShares again: %v", err)
	}
	checkWorkers(t, "Workers after replay", mustWorkers(t, s, ""), wantWorkers)
	checkTotals(t, s, 5, 6, allWork)
	if seq, err := s.LastSeq(ctx); err != nil || seq != 7 {
		t.Fatalf("LastSeq after replay: got %d, %v; want 7", seq, err)
	}
	// A batch out of order, overlapping the stored ones, with a sequence twice: the
	// first copy counts.
	eight := share(8, "bcrt1qb", "", hashgrid.ShareAccepted, hashgrid.DiffOne, 7*time.Second)
	other := eight
	other.Diff = 7 * hashgrid.DiffOne
	more := []hashgrid.Share{eight, in[6], in[5], other}
	if err := s.AddShares(ctx, more); err != nil {
		t.Fatalf("AddShares overlapping: %v", err)
	}
	wantWorkers[2].Accepted = 2
	wantWorkers[2].Work = work(hashgrid.DiffOne/1000, hashgrid.DiffOne)
	wantWorkers[2].LastShare = t0.Add(7 * time.Second)
	checkWorkers(t, "Workers after overlap", mustWorkers(t, s, ""), wantWorkers)
	checkTotals(t, s, 6, 6, allWork.Add(hashgrid.DiffOne))

	// Stored shares come back exactly, every field.
	got, err := s.SharesFor(ctx, "bcrt1qa", 10)
	if err != nil {
		t.Fatalf("SharesFor: %v", err)
	}
	want := []hashgrid.Share{in[5], in[3], in[2], in[1], in[0]}
	if !slices.Equal(got, want) {
		t.Fatalf("SharesFor(bcrt1qa):\n got %+v\nwant %+v", got, want)
	}
	if got, _ := s.SharesFor(ctx, "bcrt1qa", 2); !slices.Equal(got, want[:2]) {
		t.Fatalf("SharesFor(bcrt1qa, 2): got %v", seqs(got))
	}
	got, err = s.SharesFor(ctx, "bcrt1qb", 10)
	if want := []hashgrid.Share{eight, in[6], in[4]}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("SharesFor(bcrt1qb):\n got %+v, %v\nwant %+v", got, err, want)
	}
	if got, err := s.SharesFor(ctx, "nobody", 10); err != nil || len(got) != 0 {
		t.Fatalf("SharesFor(nobody): got %v, %v", seqs(got), err)
	}
}

func testRejectsBadInput(t *testing.T, s hashgrid.ShareStore) {
	ctx := context.Background()
	good := share(1, "a", "w", hashgrid.ShareAccepted, 1, 0)
	bad := func(f func(*hashgrid.Share)) hashgrid.Share {
		b := good
		b.Seq = 2
		f(&b)
		return b
	}
	tests := []struct {
		name string
		s    hashgrid.Share
	}{
		{"seq 0", bad(func(s *hashgrid.Share) { s.Seq = 0 })},
		{"seq too big", bad(func(s *hashgrid.Share) { s.Seq = math.MaxInt64 + 1 })},
		{"zero time", bad(func(s *hashgrid.Share) { s.Time = time.Time{} })},
		{"long address", bad(func(s *hashgrid.Share) { s.Address = strings.Repeat("a", hashgrid.MaxShareAddressLen+1) })},
		{"long worker", bad(func(s *hashgrid.Share) { s.Worker = strings.Repeat("w", hashgrid.MaxShareWorkerLen+1) })},
		{"long user agent", bad(func(s *hashgrid.Share) { s.UserAgent = strings.Repeat("u", hashgrid.MaxShareUserAgentLen+1) })},
		{"unknown result", bad(func(s *hashgrid.Share) { s.Result = hashgrid.ShareInvalid + 1 })},
	}
	for _, tt := range tests {
		err := s.AddShares(ctx, []hashgrid.Share{good, tt.s})
		if err == nil || hashgrid.ErrorCode(err) != hashgrid.EINVALID {
			t.Fatalf("%s: AddShares: got %v, want an EINVALID error", tt.name, err)
		}
	}
	// Nothing of a refused batch is stored.
	if seq, _ := s.LastSeq(ctx); seq != 0 {
		t.Fatalf("LastSeq after refused batches: got %d, want 0", seq)
	}
	checkTotals(t, s, 0, 0, hashgrid.Work{})
	if err := s.AddShares(ctx, nil); err != nil {
		t.Fatalf("AddShares(nil): %v", err)
	}
	// The longest strings the codec allows are stored whole.
	long := good
	long.Address = strings.Repeat("a", hashgrid.MaxShareAddressLen)
	long.Worker = strings.Repeat("w", hashgrid.MaxShareWorkerLen)
	long.JobID = strings.Repeat("j", hashgrid.MaxShareJobIDLen)
	long.UserAgent = strings.Repeat("u", hashgrid.MaxShareUserAgentLen)
	long.Remote = strings.Repeat("r", hashgrid.MaxShareRemoteLen)
	long.Diff, long.Actual = hashgrid.MaxDiff, math.MaxUint64
	if err := s.AddShares(ctx, []hashgrid.Share{long}); err != nil {
		t.Fatalf("AddShares of the longest share: %v", err)
	}
	if got, err := s.Shares(ctx, 0, 1, 1); err != nil || len(got) != 1 || got[0] != long {
		t.Fatalf("Shares of the longest share:\n got %+v, %v\nwant %+v", got, err, long)
	}
}

func testSharesRange(t *testing.T, s hashgrid.ShareStore) {
	ctx := context.Background()
	in := testShares()
	if err := s.AddShares(ctx, in); err != nil {
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
		{5, 3, 100, nil},
		{math.MaxUint64, math.MaxUint64, 100, nil},
	}
	for _, tt := range tests {
		got, err := s.Shares(ctx, tt.after, tt.upto, tt.limit)
		if err != nil {
			t.Fatalf("Shares(%d, %d, %d): %v", tt.after, tt.upto, tt.limit, err)
		}
		if !slices.Equal(seqs(got), tt.want) {
			t.Fatalf("Shares(%d, %d, %d): got %v, want %v", tt.after, tt.upto, tt.limit, seqs(got), tt.want)
		}
	}
	got, _ := s.Shares(ctx, 1, 2, 1)
	if len(got) != 1 || got[0] != in[1] {
		t.Fatalf("Shares(1, 2, 1): got %+v, want %+v", got, in[1])
	}
	if _, err := s.Shares(ctx, 0, 10, 0); err == nil {
		t.Fatalf("Shares with limit 0: got nil error")
	}
	if _, err := s.SharesFor(ctx, "a", -1); err == nil {
		t.Fatalf("SharesFor with limit -1: got nil error")
	}
	// Sequences with gaps, filled in later, read back in order.
	if err := s.AddShares(ctx, []hashgrid.Share{share(20, "c", "", 0, 1, 20*time.Second), share(12, "c", "", 0, 1, 12*time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddShares(ctx, []hashgrid.Share{share(15, "c", "", 0, 1, 15*time.Second), share(10, "c", "", 0, 1, 10*time.Second)}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Shares(ctx, 6, 100, 100); err != nil || !slices.Equal(seqs(got), []uint64{10, 12, 15, 20}) {
		t.Fatalf("Shares after filling gaps: got %v, %v; want [10 12 15 20]", seqs(got), err)
	}
	if got, err := s.SharesFor(ctx, "c", 3); err != nil || !slices.Equal(seqs(got), []uint64{20, 15, 12}) {
		t.Fatalf("SharesFor(c, 3): got %v, %v; want [20 15 12]", seqs(got), err)
	}
	if seq, err := s.LastSeq(ctx); err != nil || seq != 20 {
		t.Fatalf("LastSeq: got %d, %v; want 20", seq, err)
	}
	// A batch around a stored run, and one inside it: the new shares on either side
	// read back in order with the run.
	var run []hashgrid.Share
	var want []uint64
	for seq := uint64(30); seq <= 40; seq++ {
		run = append(run, share(seq, "d", "", 0, 1, time.Duration(seq)*time.Second))
		want = append(want, seq)
	}
	if err := s.AddShares(ctx, run); err != nil {
		t.Fatal(err)
	}
	around := []hashgrid.Share{share(45, "d", "", 0, 1, 45*time.Second), share(35, "d", "", 0, 1, 35*time.Second),
		share(25, "d", "", 0, 1, 25*time.Second)}
	if err := s.AddShares(ctx, around); err != nil {
		t.Fatal(err)
	}
	want = append(append([]uint64{25}, want...), 45)
	if got, err := s.Shares(ctx, 20, 100, 100); err != nil || !slices.Equal(seqs(got), want) {
		t.Fatalf("Shares around a stored run: got %v, %v; want %v", seqs(got), err, want)
	}
	if got, err := s.SharesFor(ctx, "d", 3); err != nil || !slices.Equal(seqs(got), []uint64{45, 40, 39}) {
		t.Fatalf("SharesFor(d, 3) around a stored run: got %v, %v; want [45 40 39]", seqs(got), err)
	}
	if acc, _, _, err := s.Totals(ctx); err != nil || acc != uint64(5+4+len(want)) {
		t.Fatalf("Totals: %d accepted, %v; want %d", acc, err, 5+4+len(want))
	}
}

func testWorkBetween(t *testing.T, s hashgrid.ShareStore) {
	ctx := context.Background()
	if err := s.AddShares(ctx, testShares()); err != nil {
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
			{Address: "bcrt1qb", Accepted: 1, Rejected: 5, Work: work(hashgrid.DiffOne / 1000), LastShare: t0.Add(6 * time.Second)},
		}},
		// [1s, 4s): shares 2, 3 (rig1) and 4 (rig2, stale); the end is exclusive.
		{"window", t0.Add(time.Second), t0.Add(4 * time.Second), []hashgrid.Worker{
			{Address: "bcrt1qa", Name: "rig1", Accepted: 2, Work: work(big, big), LastShare: t0.Add(2 * time.Second)},
			{Address: "bcrt1qa", Name: "rig2", Rejected: 1, LastShare: t0.Add(3 * time.Second)},
		}},
		{"one minute", t0, t0.Add(time.Minute), []hashgrid.Worker{
			{Address: "bcrt1qa", Name: "rig1", Accepted: 3, Work: work(hashgrid.DiffOne, big, big), LastShare: t0.Add(2 * time.Second)},
			{Address: "bcrt1qa", Name: "rig2", Accepted: 1, Rejected: 1, Work: work(2 * hashgrid.DiffOne), LastShare: t0.Add(5 * time.Second)},
			{Address: "bcrt1qb", Accepted: 1, Rejected: 5, Work: work(hashgrid.DiffOne / 1000), LastShare: t0.Add(6 * time.Second)},
		}},
		{"empty", t0.Add(time.Hour), t0.Add(2 * time.Hour), nil},
		{"backwards", t0.Add(time.Hour), t0, nil},
		{"before", t0.Add(-time.Hour), t0, nil},
	}
	for _, tt := range tests {
		got, err := s.WorkBetween(ctx, tt.from, tt.to)
		if err != nil {
			t.Fatalf("%s: WorkBetween: %v", tt.name, err)
		}
		checkWorkers(t, tt.name, got, tt.want)
	}
}

// testWorkBetweenMinutes checks WorkBetween on windows of every kind (on whole
// minutes, with partial minutes at either edge, inside one minute, across 1970) against
// sums computed here from the shares themselves, with shares added in several batches
// out of time order.
func testWorkBetweenMinutes(t *testing.T, s hashgrid.ShareStore) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(16, 1))
	epochs := []time.Time{t0, time.Unix(0, 0).UTC()} // the second straddles 1970: negative minutes
	var all []hashgrid.Share
	seq := uint64(0)
	for _, base := range epochs {
		for range 300 {
			seq++
			at := time.Duration(rng.Int64N(int64(12*time.Minute))) - 6*time.Minute
			res := hashgrid.ShareAccepted
			if rng.IntN(5) == 0 {
				res = hashgrid.ShareStale
			}
			sh := share(seq, fmt.Sprintf("addr%d", rng.IntN(3)), fmt.Sprintf("w%d", rng.IntN(2)), res,
				hashgrid.Diff(rng.Uint64N(uint64(hashgrid.MaxDiff))+1), 0)
			sh.Time = base.Add(at)
			if res != hashgrid.ShareAccepted {
				sh.Repeats = rng.Uint64N(3)
			}
			all = append(all, sh)
		}
	}
	// Batches in shuffled order, so that minutes are added to after they were first written.
	batches := slices.Collect(slices.Chunk(all, 37))
	rng.Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })
	for _, b := range batches {
		if err := s.AddShares(ctx, b); err != nil {
			t.Fatalf("AddShares: %v", err)
		}
	}
	expect := func(from, to time.Time) []hashgrid.Worker {
		sums := map[[2]string]*hashgrid.Worker{}
		for i := range all {
			sh := &all[i]
			if sh.Time.Before(from) || !sh.Time.Before(to) {
				continue
			}
			k := [2]string{sh.Address, sh.Worker}
			w := sums[k]
			if w == nil {
				w = &hashgrid.Worker{Address: sh.Address, Name: sh.Worker}
				sums[k] = w
			}
			if sh.Result == hashgrid.ShareAccepted {
				w.Accepted++
				w.Work = w.Work.Add(sh.Diff)
			} else {
				w.Rejected += 1 + sh.Repeats
			}
			if sh.Time.After(w.LastShare) {
				w.LastShare = sh.Time
			}
		}
		var out []hashgrid.Worker
		for _, w := range sums {
			out = append(out, *w)
		}
		slices.SortFunc(out, func(a, b hashgrid.Worker) int {
			if c := strings.Compare(a.Address, b.Address); c != 0 {
				return c
			}
			return strings.Compare(a.Name, b.Name)
		})
		return out
	}
	for _, base := range epochs {
		windows := [][2]time.Time{
			{base.Add(-3 * time.Minute), base.Add(2 * time.Minute)},                               // whole minutes
			{base.Add(-3*time.Minute + 17*time.Second), base.Add(2*time.Minute + 41*time.Second)}, // both edges partial
			{base.Add(-3 * time.Minute), base.Add(2*time.Minute + time.Nanosecond)},               // end partial
			{base.Add(-3*time.Minute - time.Nanosecond), base.Add(2 * time.Minute)},               // start partial
			{base.Add(10 * time.Second), base.Add(50 * time.Second)},                              // inside one minute
			{base.Add(-90 * time.Second), base.Add(-30 * time.Second)},                            // across a boundary, no whole minute
			{base.Add(-time.Hour), base.Add(time.Hour)},                                           // everything
		}
		for range 20 {
			a := base.Add(time.Duration(rng.Int64N(int64(14*time.Minute))) - 7*time.Minute)
			windows = append(windows, [2]time.Time{a, a.Add(time.Duration(rng.Int64N(int64(5 * time.Minute))))})
		}
		for _, w := range windows {
			got, err := s.WorkBetween(ctx, w[0], w[1])
			if err != nil {
				t.Fatalf("WorkBetween(%v, %v): %v", w[0], w[1], err)
			}
			checkWorkers(t, fmt.Sprintf("WorkBetween(%v, %v)", w[0], w[1]), got, expect(w[0], w[1]))
		}
	}
	// RecentWindow's windows are on whole minutes.
	from, to, _ := hashgrid.RecentWindow(t0.Add(30*time.Second), 3*time.Minute)
	got, err := s.WorkBetween(ctx, from, to)
	if err != nil {
		t.Fatalf("WorkBetween(RecentWindow): %v", err)
	}
	checkWorkers(t, "WorkBetween(RecentWindow)", got, expect(from, to))
}

func testBlocks(t *testing.T, s hashgrid.ShareStore) {
	ctx := context.Background()
	if bs, err := s.Blocks(ctx, 10); err != nil || len(bs) != 0 {
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
	b4 := mk(4, 2*time.Minute) // found at the same time as b3, one higher: listed first
	for _, b := range []hashgrid.Block{b2, b1, b4, b3} {
		if err := s.PutBlock(ctx, b); err != nil {
			t.Fatalf("PutBlock: %v", err)
		}
	}
	b2.Status, b2.Confirmations, b2.Reason = hashgrid.BlockOrphaned, 0, "reorg"
	b1.Status, b1.Confirmations = hashgrid.BlockConfirmed, hashgrid.CoinbaseMaturity
	for _, b := range []hashgrid.Block{b2, b1} {
		if err := s.PutBlock(ctx, b); err != nil {
			t.Fatalf("PutBlock update: %v", err)
		}
	}
	got, err := s.Blocks(ctx, 10)
	if err != nil {
		t.Fatalf("Blocks: %v", err)
	}
	if want := []hashgrid.Block{b4, b3, b2, b1}; !slices.Equal(got, want) {
		t.Fatalf("Blocks:\n got %+v\nwant %+v", got, want)
	}
	if got, _ := s.Blocks(ctx, 1); len(got) != 1 || got[0] != b4 {
		t.Fatalf("Blocks(1): got %+v", got)
	}
	b, err := s.BlockByHash(ctx, b2.Hash)
	if err != nil || b != b2 {
		t.Fatalf("BlockByHash: got %+v, %v; want %+v", b, err, b2)
	}
	_, err = s.BlockByHash(ctx, [32]byte{9})
	if !errors.Is(err, hashgrid.ErrNotFound) || hashgrid.ErrorCode(err) != hashgrid.ENOTFOUND {
		t.Fatalf("BlockByHash of unknown hash: got %v, want ErrNotFound", err)
	}
	if _, err := s.Blocks(ctx, 0); err == nil {
		t.Fatalf("Blocks(0): got nil error")
	}
	if err := s.PutBlock(ctx, hashgrid.Block{Hash: [32]byte{5}, ShareSeq: math.MaxInt64 + 1, Time: t0}); err == nil {
		t.Fatalf("PutBlock with a share sequence over 2^63-1: got nil error")
	}
}

// testConcurrentReplays adds the same shares from several goroutines at once, each
// in batches of its own size: every share must be counted exactly once.
func testConcurrentReplays(t *testing.T, s hashgrid.ShareStore) {
	ctx := context.Background()
	const n = 2000
	var all []hashgrid.Share
	for i := range n {
		seq := uint64(i + 1)
		all = append(all, share(seq, fmt.Sprintf("a%d", seq%3), fmt.Sprint(seq%5), hashgrid.ShareAccepted, hashgrid.DiffOne,
			time.Duration(seq)*time.Second))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g, size := range []int{50, 173, 500, 2000} {
		wg.Go(func() {
			order := slices.Collect(slices.Chunk(all, size))
			if g%2 == 1 {
				slices.Reverse(order)
			}
			for _, b := range order {
				if err := s.AddShares(ctx, b); err != nil {
					errs <- fmt.Errorf("writer %d: %w", g, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkTotals(t, s, n, 0, work(slices.Repeat([]hashgrid.Diff{hashgrid.DiffOne}, n)...))
	var accepted uint64
	for _, w := range mustWorkers(t, s, "") {
		accepted += w.Accepted
	}
	if accepted != n {
		t.Fatalf("workers' accepted shares: got %d, want %d", accepted, n)
	}
	ws, err := s.WorkBetween(ctx, t0.Add(-time.Hour), t0.Add(time.Duration(n+1)*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	accepted = 0
	for _, w := range ws {
		accepted += w.Accepted
	}
	if accepted != n {
		t.Fatalf("WorkBetween's accepted shares: got %d, want %d", accepted, n)
	}
}

// testRandomBatches adds random, overlapping sets of sequences in random order, some
// skipping sequences that later batches fill in: every sequence is stored once, and
// read back in order, whole and by address.
func testRandomBatches(t *testing.T, s hashgrid.ShareStore) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(16, 2))
	const maxSeq = 300
	mk := func(seq uint64) hashgrid.Share {
		return share(seq, fmt.Sprintf("a%d", seq%7), "", hashgrid.ShareAccepted, hashgrid.DiffOne, time.Duration(seq)*time.Second)
	}
	stored := map[uint64]bool{}
	for range 80 {
		var batch []hashgrid.Share
		switch rng.IntN(3) {
		case 0: // a run, every other sequence
			from := rng.Uint64N(maxSeq) + 1
			for seq := from; seq < from+60 && seq <= maxSeq; seq += 2 {
				batch = append(batch, mk(seq))
			}
		case 1: // a contiguous run
			from := rng.Uint64N(maxSeq) + 1
			for seq := from; seq < from+40 && seq <= maxSeq; seq++ {
				batch = append(batch, mk(seq))
			}
		default: // scattered
			for range 30 {
				batch = append(batch, mk(rng.Uint64N(maxSeq)+1))
			}
		}
		rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
		if err := s.AddShares(ctx, batch); err != nil {
			t.Fatalf("AddShares: %v", err)
		}
		for _, sh := range batch {
			stored[sh.Seq] = true
		}
	}
	var want []uint64
	for seq := range uint64(maxSeq + 1) {
		if stored[seq] {
			want = append(want, seq)
		}
	}
	got, err := s.Shares(ctx, 0, maxSeq, maxSeq)
	if err != nil || !slices.Equal(seqs(got), want) {
		t.Fatalf("Shares after random batches:\n got %v, %v\nwant %v", seqs(got), err, want)
	}
	for i := range got {
		if got[i] != mk(got[i].Seq) {
			t.Fatalf("share %d read back as %+v", got[i].Seq, got[i])
		}
	}
	// Paging through with a small limit gives the same.
	var paged []uint64
	for after := uint64(0); ; {
		page, err := s.Shares(ctx, after, maxSeq, 17)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, seqs(page)...)
		after = page[len(page)-1].Seq
	}
	if !slices.Equal(paged, want) {
		t.Fatalf("Shares paged by 17:\n got %v\nwant %v", paged, want)
	}
	checkTotals(t, s, uint64(len(want)), 0, work(slices.Repeat([]hashgrid.Diff{hashgrid.DiffOne}, len(want))...))
	got, err = s.SharesFor(ctx, "a3", maxSeq)
	var wantA3 []uint64
	for i := len(want) - 1; i >= 0; i-- {
		if want[i]%7 == 3 {
			wantA3 = append(wantA3, want[i])
		}
	}
	if err != nil || !slices.Equal(seqs(got), wantA3) {
		t.Fatalf("SharesFor(a3):\n got %v, %v\nwant %v", seqs(got), err, wantA3)
	}
	if seq, err := s.LastSeq(ctx); err != nil || seq != want[len(want)-1] {
		t.Fatalf("LastSeq: got %d, %v; want %d", seq, err, want[len(want)-1])
	}
}

// testSampledHeaders stores accepted shares of which some keep their header, as the
// pool's sample does: the header reads back with its share, through both reads, and
// the share counts like any other.
func testSampledHeaders(t *testing.T, s hashgrid.ShareStore) {
	ctx := context.Background()
	in := testShares()
	for i := range in {
		if in[i].Result == hashgrid.ShareAccepted && in[i].Seq%2 == 1 {
			h := [hashgrid.ShareHeaderSize]byte{0: byte(in[i].Seq), 79: 0x5a}
			in[i].Header = &h
		}
	}
	if err := s.AddShares(ctx, in); err != nil {
		t.Fatal(err)
	}
	got, err := s.Shares(ctx, 0, 100, 100)
	if err != nil {
		t.Fatal(err)
	}
	var want []hashgrid.Share
	for _, sh := range in {
		if sh.Result == hashgrid.ShareAccepted {
			want = append(want, sh)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Shares: got %+v, want %+v", got, want)
	}
	if got[0].Header == nil || got[1].Header != nil {
		t.Fatalf("Shares: headers of shares 1 and 2: %v, %v; want the first only", got[0].Header, got[1].Header)
	}
	recent, err := s.SharesFor(ctx, "bcrt1qa", 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range recent {
		if (sh.Header != nil) != (sh.Result == hashgrid.ShareAccepted && sh.Seq%2 == 1) {
			t.Fatalf("SharesFor: share %d header %v", sh.Seq, sh.Header)
		}
	}
	checkTotals(t, s, 5, 6, work(hashgrid.DiffOne, hashgrid.MaxDiff-5, hashgrid.MaxDiff-5, 2*hashgrid.DiffOne, hashgrid.DiffOne/1000))
	ws, err := s.WorkBetween(ctx, t0, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var acc uint64
	for _, w := range ws {
		acc += w.Accepted
	}
	if acc != 5 {
		t.Fatalf("WorkBetween: %d accepted, want 5", acc)
	}
}
