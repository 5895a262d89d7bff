package sqlite

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

// model is what a ShareStore must hold after a sequence of AddShares calls: the first
// copy offered of every sequence.
type model map[uint64]hashgrid.Share

func (m model) add(batch []hashgrid.Share) {
	for _, s := range batch {
		if _, ok := m[s.Seq]; !ok {
			m[s.Seq] = s
		}
	}
}

func (m model) sorted() []hashgrid.Share {
	out := make([]hashgrid.Share, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b hashgrid.Share) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

func (m model) shares(after, upto uint64, limit int) []hashgrid.Share {
	var out []hashgrid.Share
	for _, s := range m.sorted() {
		if s.Seq > after && s.Seq <= upto && s.Result == hashgrid.ShareAccepted && len(out) < limit {
			out = append(out, s)
		}
	}
	return out
}

func (m model) sharesFor(address string, limit int) []hashgrid.Share {
	all := m.sorted()
	var out []hashgrid.Share
	for i := len(all) - 1; i >= 0 && len(out) < limit; i-- {
		if all[i].Address == address {
			out = append(out, all[i])
		}
	}
	return out
}

// summarize returns per-worker summaries of the shares keep accepts, ordered by
// address and name.
func (m model) summarize(keep func(hashgrid.Share) bool) []hashgrid.Worker {
	byKey := map[workerKey]*hashgrid.Worker{}
	for _, s := range m {
		if !keep(s) {
			continue
		}
		k := workerKey{s.Address, s.Worker}
		w := byKey[k]
		if w == nil {
			w = &hashgrid.Worker{Address: s.Address, Name: s.Worker}
			byKey[k] = w
		}
		count(w, &s)
	}
	var out []hashgrid.Worker
	for _, w := range byKey {
		out = append(out, *w)
	}
	slices.SortFunc(out, func(a, b hashgrid.Worker) int {
		return cmp.Or(strings.Compare(a.Address, b.Address), strings.Compare(a.Name, b.Name))
	})
	return out
}

func (m model) workBetween(from, to time.Time) []hashgrid.Worker {
	return m.summarize(func(s hashgrid.Share) bool { return !s.Time.Before(from) && s.Time.Before(to) })
}

// blockRow is a row of share_blocks with its addresses.
type blockRow struct {
	first, last, minTime, maxTime int64
	count                         int
	size                          int
	addresses                     []string
}

// checkBlocks checks the invariants of the stored blocks against their data and
// returns them in sequence order.
func checkBlocks(tb testing.TB, db *DB) []blockRow {
	tb.Helper()
	rows, err := db.r.Query(`SELECT first_seq, last_seq, min_time, max_time, count, data FROM share_blocks ORDER BY first_seq`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []blockRow
	for rows.Next() {
		var b blockRow
		var data []byte
		if err := rows.Scan(&b.first, &b.last, &b.minTime, &b.maxTime, &b.count, &data); err != nil {
			tb.Fatal(err)
		}
		b.size = len(data)
		shares, err := decodeBlock(data)
		if err != nil {
			tb.Fatalf("block %d: %v", b.first, err)
		}
		if len(shares) != b.count || b.count == 0 || b.count > MaxBlockShares || b.size > MaxBlockBytes {
			tb.Fatalf("block %d: count %d, %d shares decoded, %d bytes", b.first, b.count, len(shares), b.size)
		}
		minT, maxT := int64(math.MaxInt64), int64(math.MinInt64)
		addrs := map[string]bool{}
		for _, s := range shares {
			minT, maxT = min(minT, s.Time.UnixNano()), max(maxT, s.Time.UnixNano())
			addrs[s.Address] = true
		}
		if int64(shares[0].Seq) != b.first || int64(shares[len(shares)-1].Seq) != b.last || minT != b.minTime || maxT != b.maxTime {
			tb.Fatalf("block %d..%d, times %d..%d: shares say %d..%d, %d..%d", b.first, b.last, b.minTime, b.maxTime,
				shares[0].Seq, shares[len(shares)-1].Seq, minT, maxT)
		}
		if b.maxTime-b.minTime > int64(MaxBlockTimeSpan) {
			tb.Fatalf("block %d spans %v", b.first, time.Duration(b.maxTime-b.minTime))
		}
		if n := len(out); n > 0 && out[n-1].last >= b.first {
			tb.Fatalf("block %d..%d overlaps %d..%d", out[n-1].first, out[n-1].last, b.first, b.last)
		}
		for a := range addrs {
			b.addresses = append(b.addresses, a)
		}
		slices.Sort(b.addresses)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	// share_block_addresses lists exactly each block's addresses.
	got := map[int64][]string{}
	arows, err := db.r.Query(`SELECT address, first_seq FROM share_block_addresses ORDER BY first_seq, address`)
	if err != nil {
		tb.Fatal(err)
	}
	defer arows.Close()
	for arows.Next() {
		var a string
		var first int64
		if err := arows.Scan(&a, &first); err != nil {
			tb.Fatal(err)
		}
		got[first] = append(got[first], a)
	}
	if len(got) != len(out) {
		tb.Fatalf("share_block_addresses names %d blocks, share_blocks holds %d", len(got), len(out))
	}
	for _, b := range out {
		if !slices.Equal(got[b.first], b.addresses) {
			tb.Fatalf("block %d: share_block_addresses lists %q, the block holds %q", b.first, got[b.first], b.addresses)
		}
	}
	return out
}

// checkAgainst compares every query of db with what m says it must return.
func checkAgainst(t *testing.T, db *DB, m model, addresses []string, windows [][2]time.Time) {
	t.Helper()
	ctx := context.Background()
	all := m.sorted()
	top := uint64(0)
	if len(all) > 0 {
		top = all[len(all)-1].Seq
	}
	if got, err := db.LastSeq(ctx); err != nil || got != top {
		t.Fatalf("LastSeq: got %d, %v; want %d", got, err, top)
	}
	everything := m.summarize(func(hashgrid.Share) bool { return true })
	checkWorkers(t, "Workers", mustWorkers(t, db, ""), everything)
	var acc, rej uint64
	var w hashgrid.Work
	for _, x := range everything {
		acc, rej, w = acc+x.Accepted, rej+x.Rejected, w.Plus(x.Work)
	}
	checkTotals(t, db, acc, rej, w)

	ranges := [][2]uint64{{0, math.MaxUint64}, {0, top / 2}, {top / 3, top}, {top, math.MaxUint64}, {1, 2}}
	for i := 0; i < 20 && len(all) > 0; i++ {
		a := all[i*len(all)/20].Seq
		ranges = append(ranges, [2]uint64{a - 1, a + uint64(i*37)}, [2]uint64{a, top})
	}
	for _, r := range ranges {
		for _, limit := range []int{1, 7, 500, 1 << 30} {
			got, err := db.Shares(ctx, r[0], r[1], limit)
			if err != nil {
				t.Fatalf("Shares(%d, %d, %d): %v", r[0], r[1], limit, err)
			}
			if want := m.shares(r[0], r[1], limit); !slices.Equal(got, want) {
				t.Fatalf("Shares(%d, %d, %d):\n got %v\nwant %v", r[0], r[1], limit, seqs(got), seqs(want))
			}
		}
	}
	for _, a := range append(addresses, "nobody") {
		for _, limit := range []int{1, 3, 100, 1 << 30} {
			got, err := db.SharesFor(ctx, a, limit)
			if err != nil {
				t.Fatalf("SharesFor(%s, %d): %v", a, limit, err)
			}
			if want := m.sharesFor(a, limit); !slices.Equal(got, want) {
				t.Fatalf("SharesFor(%s, %d):\n got %v\nwant %v", a, limit, seqs(got), seqs(want))
			}
		}
	}
	checkMinutes(t, db)
	checkWorkBetween(t, db, m, windows)
}

// checkWorkBetween compares WorkBetween over each window with the model and with a
// decode of every share in the window.
func checkWorkBetween(tb testing.TB, db *DB, m model, windows [][2]time.Time) {
	tb.Helper()
	for _, win := range windows {
		got, err := db.WorkBetween(context.Background(), win[0], win[1])
		if err != nil {
			tb.Fatalf("WorkBetween(%v, %v): %v", win[0], win[1], err)
		}
		what := fmt.Sprintf("WorkBetween(%v, %v)", win[0], win[1])
		checkWorkers(tb, what, got, m.workBetween(win[0], win[1]))
		checkWorkers(tb, what+" against a full decode", got, decodedWorkBetween(tb, db, win[0], win[1]))
	}
}

// decodedWorkBetween is WorkBetween without work_minutes: it decodes every share in
// the window, as schema version 2 did.
func decodedWorkBetween(tb testing.TB, db *DB, from, to time.Time) []hashgrid.Worker {
	tb.Helper()
	tx, err := db.r.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	sums := map[workerKey]*workSum{}
	if err := sumBlocks(context.Background(), tx, boundTime(from), boundTime(to), sums); err != nil {
		tb.Fatal(err)
	}
	return sortedWorkers(sums)
}

// checkMinutes checks that work_minutes holds exactly the sums, by minute and worker,
// of the shares the blocks hold.
func checkMinutes(tb testing.TB, db *DB) {
	tb.Helper()
	want := map[minuteKey]workSum{}
	rows, err := db.r.Query(`SELECT data FROM share_blocks`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			tb.Fatal(err)
		}
		shares, err := decodeBlock(data)
		if err != nil {
			tb.Fatal(err)
		}
		for _, s := range shares {
			t := s.Time.UnixNano()
			// Floor division the long way: the minute starting at or before t.
			m := t / int64(time.Minute)
			for m*int64(time.Minute) > t {
				m--
			}
			k := minuteKey{m, s.Address, s.Worker}
			w, ok := want[k]
			if !ok {
				w.last = math.MinInt64
			}
			w.count(s.Result, s.Diff, s.Actual, s.Repeats, t)
			want[k] = w
		}
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	got := map[minuteKey]workSum{}
	mrows, err := db.r.Query(`SELECT minute, address, worker, accepted, rejected, work_hi, work_lo, last_share, best FROM work_minutes`)
	if err != nil {
		tb.Fatal(err)
	}
	defer mrows.Close()
	for mrows.Next() {
		var k minuteKey
		var acc, rej, hi, lo, last, best int64
		if err := mrows.Scan(&k.minute, &k.address, &k.name, &acc, &rej, &hi, &lo, &last, &best); err != nil {
			tb.Fatal(err)
		}
		got[k] = workSum{uint64(acc), uint64(rej), hashgrid.Work{Hi: uint64(hi), Lo: uint64(lo)}, last, hashgrid.Diff(best)}
	}
	if err := mrows.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(got) != len(want) {
		tb.Fatalf("work_minutes holds %d rows, the blocks' shares make %d", len(got), len(want))
	}
	for k, w := range want {
		if got[k] != w {
			tb.Fatalf("work_minutes %+v: got %+v, want %+v", k, got[k], w)
		}
	}
}

// minuteWindows returns n windows cut where work_minutes meets the blocks: on minutes
// and a nanosecond either side, at and around shares' times, inside one minute,
// across many, around all the shares, empty and reversed.
func minuteWindows(rnd *rand.Rand, shares []hashgrid.Share, n int) [][2]time.Time {
	lo, hi := shares[0].Time, shares[0].Time
	for _, s := range shares {
		if s.Time.Before(lo) {
			lo = s.Time
		}
		if s.Time.After(hi) {
			hi = s.Time
		}
	}
	onMinute := func(t time.Time) time.Time { return time.Unix(0, minuteOf(t.UnixNano())*minuteNanos).UTC() }
	point := func() time.Time {
		s := shares[rnd.IntN(len(shares))].Time
		switch rnd.IntN(6) {
		case 0:
			return s
		case 1:
			return s.Add(time.Duration(rnd.IntN(3) - 1))
		case 2:
			return onMinute(s).Add(time.Duration(rnd.IntN(3) - 1))
		case 3:
			return onMinute(s).Add(time.Duration(rnd.IntN(7)-3) * time.Minute)
		case 4:
			return s.Add(time.Duration(rnd.Int64N(int64(10*time.Minute))) - 5*time.Minute)
		}
		return lo.Add(time.Duration(rnd.Int64N(int64(hi.Sub(lo)+4*time.Minute+1))) - 2*time.Minute)
	}
	out := [][2]time.Time{
		{onMinute(lo), onMinute(hi).Add(time.Minute)}, // every share, minutes only
		{lo, hi.Add(1)},                    // every share, exactly
		{lo.Add(1), hi},                    // all but the first and the last
		{lo.Add(-time.Hour), lo},           // before every share
		{hi.Add(1), hi.Add(time.Hour)},     // after every share
		{time.Time{}, time.Unix(1<<40, 0)}, // beyond the storable range
		{hi, lo},                           // reversed
	}
	for len(out) < n {
		a, b := point(), point()
		switch k := rnd.IntN(10); {
		case k == 0: // empty
			b = a
		case k == 1: // inside the minute of a
			b = a.Add(time.Duration(rnd.Int64N(int64(onMinute(a).Add(time.Minute).Sub(a)))))
		case b.Before(a) && k < 9: // mostly in order; sometimes reversed
			a, b = b, a
		}
		out = append(out, [2]time.Time{a, b})
	}
	return out
}

// windows returns time windows starting and ending exactly at, and a nanosecond
// around, the times of shares, so that they cut blocks inside.
func windows(rnd *rand.Rand, shares []hashgrid.Share) [][2]time.Time {
	out := [][2]time.Time{{time.Time{}, t0.Add(24 * time.Hour)}, {t0.Add(-time.Hour), t0}}
	for range 40 {
		a, b := shares[rnd.IntN(len(shares))].Time, shares[rnd.IntN(len(shares))].Time
		if b.Before(a) {
			a, b = b, a
		}
		out = append(out, [2]time.Time{a, b}, [2]time.Time{a.Add(time.Nanosecond), b.Add(time.Nanosecond)},
			[2]time.Time{a, a.Add(time.Nanosecond)}, [2]time.Time{a.Add(-time.Nanosecond), a})
	}
	return out
}

// TestAddSharesOverlapping offers random batches as a consumer might after crashes
// and worse: in order, re-offered from earlier points with different contents, with
// sequences repeated inside a batch, and with gaps filled in later. After every batch
// the counts match, and at the end every query matches the model.
func TestAddSharesOverlapping(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	rnd := rand.New(rand.NewPCG(1, 2))
	addresses := []string{"bcrt1qa", "bcrt1qb", "bcrt1qc", "bcrt1qd", "bcrt1qe"}
	const n = 3000
	version := 0
	// variant returns a copy of sequence seq, its job id telling copies apart; copies'
	// times differ, sometimes by a minute boundary.
	variant := func(seq uint64) hashgrid.Share {
		version++
		at := time.Duration(seq)*100*time.Millisecond + time.Duration(rnd.IntN(1000)-500)*time.Millisecond
		if seq > 2000 {
			at -= 5 * time.Minute // the clock stepped back
		}
		result := hashgrid.ShareAccepted
		if rnd.IntN(10) == 0 {
			result = hashgrid.ShareStale
		}
		s := share(seq, addresses[rnd.IntN(len(addresses))], fmt.Sprint("rig", rnd.IntN(3)), result,
			hashgrid.Diff(rnd.Uint64()), at)
		s.JobID = fmt.Sprintf("%d-%d", seq, version)
		return s
	}
	m := model{}
	offer := func(batch []hashgrid.Share) {
		t.Helper()
		if err := db.AddShares(ctx, batch); err != nil {
			t.Fatalf("AddShares %v: %v", seqs(batch), err)
		}
		m.add(batch)
		var acc, rej uint64
		for _, s := range m {
			if s.Result == hashgrid.ShareAccepted {
				acc++
			} else {
				rej++
			}
		}
		if a, r, _, _ := db.Totals(ctx); a != acc || r != rej {
			t.Fatalf("after %v: Totals %d accepted, %d rejected; want %d, %d", seqs(batch), a, r, acc, rej)
		}
		// Re-offered shares must not be summed twice, nor a later copy's time used.
		checkWorkBetween(t, db, m, minuteWindows(rnd, m.sorted(), 12))
	}
	next := uint64(1)
	for next <= n {
		var batch []hashgrid.Share
		switch k := rnd.IntN(10); {
		case k < 2 && next > 1: // re-offer from an earlier point, past the top
			from := next - uint64(rnd.IntN(int(min(next-1, 400)))) - 1
			to := min(next+uint64(rnd.IntN(100)), n+1)
			for s := from; s < to; s++ {
				batch = append(batch, variant(s))
			}
			next = max(next, to)
		case k < 3: // every other sequence; the gaps come in a later batch
			for s := next; s < min(next+200, n+1); s += 2 {
				batch = append(batch, variant(s))
			}
		case k < 4 && next > 1: // the gaps (and stored neighbours) of a recent range
			from := next - uint64(rnd.IntN(int(min(next-1, 300)))) - 1
			for s := from; s < next; s++ {
				batch = append(batch, variant(s))
			}
			rnd.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
		default: // the consumer's usual batch, sometimes with a sequence repeated
			for s := next; s < min(next+uint64(1+rnd.IntN(300)), n+1); s++ {
				batch = append(batch, variant(s))
				if rnd.IntN(50) == 0 {
					batch = append(batch, variant(s))
				}
			}
			next = batch[len(batch)-1].Seq + 1
		}
		if len(batch) > 0 {
			offer(batch)
		}
	}
	// Whatever the gappy batches skipped, filled in at the end in one batch.
	var rest []hashgrid.Share
	for s := uint64(1); s <= n; s++ {
		rest = append(rest, variant(s))
	}
	offer(rest)
	if len(m) != n {
		t.Fatalf("model holds %d shares, want %d", len(m), n)
	}
	blocks := checkBlocks(t, db)
	t.Logf("%d shares in %d blocks", n, len(blocks))
	checkAgainst(t, db, m, addresses, append(windows(rnd, m.sorted()), minuteWindows(rnd, m.sorted(), 300)...))
}

// TestAddSharesRepeatsFirstCopy checks that of copies of a sequence, the first offered
// is the one stored and counted, in a batch and across batches, and that a batch
// filling the gaps of a stored block merges with it.
func TestAddSharesRepeatsFirstCopy(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	mk := func(seq uint64, addr, job string, diff hashgrid.Diff) hashgrid.Share {
		s := share(seq, addr, "rig", hashgrid.ShareAccepted, diff, time.Duration(seq)*time.Second)
		s.JobID = job
		return s
	}
	batches := [][]hashgrid.Share{
		{mk(1, "a", "first", 10), mk(3, "a", "first", 30), mk(1, "a", "second", 1000), mk(5, "b", "first", 50)},
		{mk(3, "a", "second", 3000), mk(2, "c", "first", 20), mk(4, "a", "first", 40), mk(2, "c", "second", 2000)},
		{mk(9, "a", "first", 90), mk(7, "a", "first", 70)},
		{mk(6, "b", "first", 60), mk(8, "c", "first", 80), mk(5, "b", "second", 5000), mk(10, "a", "first", 100)},
		{mk(20, "a", "first", 200)},
		{mk(21, "a", "first", 210), mk(20, "a", "second", 2000), mk(19, "a", "first", 190)},
	}
	for i, b := range batches {
		if err := db.AddShares(ctx, b); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	got, err := db.Shares(ctx, 0, 100, 100)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []string
	for _, s := range got {
		jobs = append(jobs, fmt.Sprint(s.Seq, s.JobID))
	}
	want := []string{"1first", "2first", "3first", "4first", "5first", "6first", "7first", "8first", "9first", "10first",
		"19first", "20first", "21first"}
	if !slices.Equal(jobs, want) {
		t.Fatalf("Shares: got %q, want %q", jobs, want)
	}
	checkTotals(t, db, 13, 0, work(10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 190, 200, 210))
	blocks := checkBlocks(t, db)
	// 1..5 merged into one block; 8 fell in the gap of 7..9, which was merged with the
	// rest of its batch; 19 and 21 are on both sides of 20.
	var ranges []string
	for _, b := range blocks {
		ranges = append(ranges, fmt.Sprintf("%d-%d", b.first, b.last))
	}
	if want := []string{"1-5", "6-10", "19-19", "20-20", "21-21"}; !slices.Equal(ranges, want) {
		t.Fatalf("blocks: got %v, want %v", ranges, want)
	}
	if got, _ := db.SharesFor(ctx, "c", 10); !slices.Equal(seqs(got), []uint64{8, 2}) {
		t.Fatalf("SharesFor(c): got %v, want [8 2]", seqs(got))
	}
}

// TestBlockLimits checks that a batch is split at MaxBlockShares, MaxBlockBytes and
// MaxBlockTimeSpan, and that queries read across the splits.
func TestBlockLimits(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		n      int
		modify func(s *hashgrid.Share)
		want   func(blocks []blockRow) bool
	}{
		{"shares", 2*MaxBlockShares + 10, func(s *hashgrid.Share) { s.Time = t0.Add(time.Duration(s.Seq) * time.Millisecond) },
			func(bs []blockRow) bool {
				return len(bs) == 3 && bs[0].count == MaxBlockShares && bs[1].count == MaxBlockShares && bs[2].count == 10
			}},
		{"bytes", 3000, func(s *hashgrid.Share) {
			s.Address = strings.Repeat("a", hashgrid.MaxShareAddressLen-4) + fmt.Sprintf("%04d", s.Seq)
			s.Worker = strings.Repeat("w", hashgrid.MaxShareWorkerLen)
			s.JobID = strings.Repeat("j", hashgrid.MaxShareJobIDLen)
			s.UserAgent = strings.Repeat("u", hashgrid.MaxShareUserAgentLen)
			s.Remote = strings.Repeat("r", hashgrid.MaxShareRemoteLen)
		}, func(bs []blockRow) bool {
			return len(bs) >= 3 && bs[0].size > MaxBlockBytes-2*maxEntryBytes
		}},
		// 0, 30 and 60 seconds span exactly the limit; 90 starts a new block.
		{"time span", 10, func(s *hashgrid.Share) { s.Time = t0.Add(time.Duration(s.Seq-1) * MaxBlockTimeSpan / 2) },
			func(bs []blockRow) bool {
				return len(bs) == 4 && bs[0].count == 3 && bs[0].maxTime-bs[0].minTime == int64(MaxBlockTimeSpan)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := openDB(t)
			m := model{}
			var batch []hashgrid.Share
			for i := range tt.n {
				s := share(uint64(i+1), fmt.Sprint("a", i%3), "w", hashgrid.ShareAccepted, hashgrid.DiffOne, 0)
				tt.modify(&s)
				batch = append(batch, s)
			}
			if err := db.AddShares(ctx, batch); err != nil {
				t.Fatal(err)
			}
			m.add(batch)
			bs := checkBlocks(t, db)
			if !tt.want(bs) {
				var desc []string
				for _, b := range bs {
					desc = append(desc, fmt.Sprintf("%d-%d (%d shares, %d bytes, %v)", b.first, b.last, b.count, b.size,
						time.Duration(b.maxTime-b.minTime)))
				}
				t.Fatalf("blocks: %s", strings.Join(desc, ", "))
			}
			var addrs []string
			for _, s := range batch[:3] {
				addrs = append(addrs, s.Address)
			}
			checkAgainst(t, db, m, addrs, windows(rand.New(rand.NewPCG(3, 4)), batch))
		})
	}
}

// TestWorkBetweenBlockBoundaries cuts windows inside blocks, at their ends, and at the
// edge of the index range WorkBetween reads: a block spanning exactly
// MaxBlockTimeSpan whose last share alone is in the window.
func TestWorkBetweenBlockBoundaries(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	var b1, b2 []hashgrid.Share
	for i := range 10 {
		b1 = append(b1, share(uint64(i+1), "a", "w", hashgrid.ShareAccepted, hashgrid.Diff(i+1), time.Duration(i)*time.Second))
		b2 = append(b2, share(uint64(i+11), "a", "w", hashgrid.ShareAccepted, hashgrid.Diff(i+11), time.Duration(i+10)*time.Second))
	}
	wide := []hashgrid.Share{
		share(21, "b", "w", hashgrid.ShareAccepted, 1, time.Hour),
		share(22, "b", "w", hashgrid.ShareLowDiff, 1, time.Hour+MaxBlockTimeSpan/2),
		share(23, "b", "w", hashgrid.ShareAccepted, 5, time.Hour+MaxBlockTimeSpan),
	}
	for _, b := range [][]hashgrid.Share{b1, b2, wide} {
		if err := db.AddShares(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if bs := checkBlocks(t, db); len(bs) != 3 {
		t.Fatalf("got %d blocks, want 3", len(bs))
	}
	sum := func(from, to int) hashgrid.Work {
		var w hashgrid.Work
		for d := from; d <= to; d++ {
			w = w.Add(hashgrid.Diff(d))
		}
		return w
	}
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	tests := []struct {
		name     string
		from, to time.Time
		want     []hashgrid.Worker
	}{
		{"inside a block", sec(3), sec(7), []hashgrid.Worker{{Address: "a", Name: "w", Accepted: 4, Work: sum(4, 7), LastShare: sec(6)}}},
		{"a nanosecond later", sec(3).Add(1), sec(7).Add(1), []hashgrid.Worker{{Address: "a", Name: "w", Accepted: 4, Work: sum(5, 8), LastShare: sec(7)}}},
		{"across two blocks", sec(8), sec(12), []hashgrid.Worker{{Address: "a", Name: "w", Accepted: 4, Work: sum(9, 12), LastShare: sec(11)}}},
		{"the last share of the first block", sec(9), sec(10), []hashgrid.Worker{{Address: "a", Name: "w", Accepted: 1, Work: sum(10, 10), LastShare: sec(9)}}},
		{"between shares", sec(3).Add(1), sec(4), nil},
		{"between blocks", sec(20), t0.Add(time.Hour), nil},
		{"the end of a block as wide as allowed", t0.Add(time.Hour + MaxBlockTimeSpan), t0.Add(2 * time.Hour),
			[]hashgrid.Worker{{Address: "b", Name: "w", Accepted: 1, Work: work(5), LastShare: t0.Add(time.Hour + MaxBlockTimeSpan)}}},
		{"its middle", t0.Add(time.Hour + 1), t0.Add(time.Hour + MaxBlockTimeSpan),
			[]hashgrid.Worker{{Address: "b", Name: "w", Rejected: 1, LastShare: t0.Add(time.Hour + MaxBlockTimeSpan/2)}}},
	}
	for _, tt := range tests {
		got, err := db.WorkBetween(ctx, tt.from, tt.to)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		checkWorkers(t, tt.name, got, tt.want)
	}
}

// TestSharesForManyBlocks interleaves addresses over many blocks, one of them rare,
// and checks SharesFor reads only and all the blocks holding an address.
func TestSharesForManyBlocks(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	m := model{}
	seq := uint64(0)
	rare := 0
	for b := range 60 {
		var batch []hashgrid.Share
		for i := range 25 {
			seq++
			addr := []string{"x", "y"}[i%2]
			if b%7 == 3 && i%10 == 4 {
				addr = "rare"
			}
			batch = append(batch, share(seq, addr, "w", hashgrid.ShareResult(i%3), 1, time.Duration(seq)*time.Second))
		}
		if b%7 == 3 {
			rare++
		}
		if err := db.AddShares(ctx, batch); err != nil {
			t.Fatal(err)
		}
		m.add(batch)
	}
	var n int
	if err := db.r.QueryRow(`SELECT COUNT(*) FROM share_block_addresses WHERE address = 'rare'`).Scan(&n); err != nil || n != rare {
		t.Fatalf("blocks listed for the rare address: got %d, %v; want %d", n, err, rare)
	}
	checkBlocks(t, db)
	checkAgainst(t, db, m, []string{"x", "y", "rare"}, nil)
	for _, limit := range []int{1, 2, 3, 5, 12, 13, 24, 25, 26, 749, 750, 751} {
		for _, a := range []string{"x", "y", "rare"} {
			got, err := db.SharesFor(ctx, a, limit)
			if err != nil {
				t.Fatal(err)
			}
			if want := m.sharesFor(a, limit); !slices.Equal(got, want) {
				t.Fatalf("SharesFor(%s, %d): got %v, want %v", a, limit, seqs(got), seqs(want))
			}
		}
	}
}

func TestBlockCodec(t *testing.T) {
	var ps []pendingShare
	for i := range 20 {
		s := share(uint64(100+2*i), fmt.Sprint("addr", i%3), fmt.Sprint("w", i%2), hashgrid.ShareResult(i%4), hashgrid.Diff(i)<<40, time.Duration(i))
		s.Block = i == 7
		enc, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, pendingShare{s: &s, enc: enc, time: s.Time.UnixNano()})
	}
	blocks := chunkShares(ps, nil)
	if len(blocks) != 1 {
		t.Fatalf("got %d blocks, want 1", len(blocks))
	}
	data := blocks[0].data()
	got, err := decodeBlock(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ps {
		if got[i] != *ps[i].s {
			t.Fatalf("share %d:\n got %+v\nwant %+v", i, got[i], *ps[i].s)
		}
	}
	if a := blocks[0].addresses(); !slices.Equal(a, []string{"addr0", "addr1", "addr2"}) {
		t.Fatalf("addresses: got %q", a)
	}
	// Every truncation, and any trailing byte, is an error.
	for n := range len(data) {
		if _, err := decodeBlock(data[:n]); err == nil {
			t.Fatalf("decode of %d of %d bytes: got nil error", n, len(data))
		}
	}
	if _, err := decodeBlock(append(slices.Clone(data), 0)); err == nil {
		t.Fatalf("decode with a trailing byte: got nil error")
	}
	bad := slices.Clone(data)
	bad[0] = blockFormat + 1
	if _, err := decodeBlock(bad); err == nil || !strings.Contains(err.Error(), "format") {
		t.Fatalf("decode of an unknown format: got %v", err)
	}
	// Shares out of order are refused.
	swapped := newShareBlock()
	swapped.add(&ps[1])
	swapped.add(&ps[0])
	if _, err := decodeBlock(swapped.data()); err == nil {
		t.Fatalf("decode of shares out of order: got nil error")
	}
}

func FuzzDecodeBlock(f *testing.F) {
	var ps []pendingShare
	for i := range 5 {
		s := share(uint64(i+1), fmt.Sprint("a", i%2), "w", hashgrid.ShareAccepted, 1, time.Duration(i))
		enc, _ := s.MarshalBinary()
		ps = append(ps, pendingShare{s: &s, enc: enc, time: s.Time.UnixNano()})
	}
	f.Add(chunkShares(ps, nil)[0].data())
	f.Add(chunkShares(ps[:1], nil)[0].data())
	f.Fuzz(func(t *testing.T, data []byte) {
		shares, err := decodeBlock(data)
		if err != nil {
			return
		}
		if len(shares) > MaxBlockShares {
			t.Fatalf("%d shares decoded", len(shares))
		}
		for i := 1; i < len(shares); i++ {
			if shares[i].Seq <= shares[i-1].Seq {
				t.Fatalf("shares %d and %d out of order", shares[i-1].Seq, shares[i].Seq)
			}
		}
		// Re-encoded, the shares decode to themselves.
		var again []pendingShare
		for i := range shares {
			enc, err := shares[i].MarshalBinary()
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			again = append(again, pendingShare{s: &shares[i], enc: enc, time: shares[i].Time.UnixNano()})
		}
		if len(again) == 0 {
			return
		}
		var round []hashgrid.Share
		for _, b := range chunkShares(again, nil) {
			ss, err := decodeBlock(b.data())
			if err != nil {
				t.Fatalf("decode of re-encoded block: %v", err)
			}
			round = append(round, ss...)
		}
		if !slices.Equal(round, shares) {
			t.Fatalf("round trip changed the shares")
		}
	})
}

// TestPow2Chunks checks that any row count splits into runs whose statements were all
// prepared when the store opened.
func TestPow2Chunks(t *testing.T) {
	db, _ := openDB(t)
	for _, max := range []int{workerChunk, addressChunk, minuteChunk} {
		for n := range 3 * max {
			chunks := pow2Chunks(n, max)
			sum := 0
			for i, c := range chunks {
				if c <= 0 || c > max || c&(c-1) != 0 || i > 0 && c > chunks[i-1] {
					t.Fatalf("pow2Chunks(%d, %d) = %v", n, max, chunks)
				}
				sum += c
				for _, q := range []string{insertAddressesQuery(c), selectWorkersQuery(c), upsertWorkersQuery(c),
					selectMinutesQuery(c), upsertMinutesQuery(c)} {
					switch {
					case strings.Contains(q, "share_block_addresses") && c > addressChunk,
						strings.Contains(q, "workers") && c > workerChunk,
						strings.Contains(q, "work_minutes") && c > minuteChunk:
						continue
					}
					if db.stmts[q] == nil {
						t.Fatalf("no statement prepared for %.60s… of %d rows", q, c)
					}
				}
			}
			if sum != n {
				t.Fatalf("pow2Chunks(%d, %d) = %v", n, max, chunks)
			}
		}
	}
}

// TestSummarize checks that summarize reads what UnmarshalBinary decodes, for times
// before 1970 and after 2038, every result and the largest values, and that it fails
// where decoding would.
func TestSummarize(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 8))
	var ps []pendingShare
	for i := range 2000 {
		at := time.Duration(rnd.Int64N(2*int64(100*365*24*time.Hour))) - 100*365*24*time.Hour
		s := share(uint64(i+1)*uint64(1+rnd.IntN(1<<20)), "a", "w", hashgrid.ShareResult(rnd.IntN(int(hashgrid.ShareInvalid)+1)),
			hashgrid.Diff(rnd.Uint64()>>rnd.IntN(64)), at)
		s.Height = rnd.Int64() - rnd.Int64()
		s.Actual = hashgrid.Diff(rnd.Uint64() >> rnd.IntN(64))
		if s.Result != hashgrid.ShareAccepted && rnd.IntN(3) == 0 {
			s.Repeats = 1 + rnd.Uint64N(1000) // codec version 2, decoded in full
		}
		if i == 0 {
			s.Diff, s.Actual, s.Height = hashgrid.MaxDiff, hashgrid.MaxDiff, math.MinInt64
		}
		enc, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, pendingShare{s: &s, enc: enc, time: s.Time.UnixNano()})
	}
	slices.SortFunc(ps, func(a, b pendingShare) int { return cmp.Compare(a.s.Seq, b.s.Seq) })
	ps = slices.CompactFunc(ps, func(a, b pendingShare) bool { return a.s.Seq == b.s.Seq })
	b := newShareBlock()
	for i := range ps {
		b.add(&ps[i]) // one block whatever the limits, to test the encoding alone
	}
	r, err := readBlock(b.data())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		pair, enc, ok, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if i != len(ps) {
				t.Fatalf("read %d shares, want %d", i, len(ps))
			}
			break
		}
		got, err := r.summarize(pair, enc)
		s := ps[i].s
		want := shareSummary{seq: s.Seq, time: s.Time.UnixNano(), result: s.Result, diff: s.Diff, actual: s.Actual, repeats: s.Repeats}
		if err != nil || got != want {
			t.Fatalf("summarize share %d: got %+v, %v; want %+v", i, got, err, want)
		}
	}
	// Truncated, out of order, and of an unknown version: errors, as from decode.
	enc := ps[5].enc
	for n := range 3 + 4 {
		if _, err := (&blockReader{pairs: r.pairs}).summarize(0, enc[:n]); err == nil {
			t.Fatalf("summarize of %d bytes: got nil error", n)
		}
	}
	if _, err := (&blockReader{pairs: r.pairs, last: ps[5].s.Seq}).summarize(0, enc); err == nil {
		t.Fatalf("summarize of a share out of order: got nil error")
	}
	v2 := slices.Clone(enc)
	v2[0] = 0xff // no codec version
	if _, err := (&blockReader{pairs: r.pairs}).summarize(0, v2); err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("summarize of another codec version: got %v, want the decoder's version error", err)
	}
}
