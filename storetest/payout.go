package storetest

import (
	"context"
	"encoding/hex"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/payout"
)

// OpenPayoutState opens a fresh, empty payout state.
type OpenPayoutState func(tb testing.TB) payout.State

// PayoutState runs the payout state's contract, each test on a state of its own.
func PayoutState(t *testing.T, open OpenPayoutState) {
	tests := []struct {
		name string
		fn   func(*testing.T, payout.State)
	}{
		{"PoolID", testPoolID},
		{"Windows", testWindows},
		{"PruneWindows", testPruneWindows},
		{"Rates", testRates},
		{"PPS", testPPS},
		{"Batches", testBatches},
		{"BatchNumberOnce", testBatchNumberOnce},
		{"BlockWindows", testBlockWindows},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := open(t)
			t.Cleanup(func() { st.Close() })
			tt.fn(t, st)
		})
	}
}

// testPoolID: one id, whoever asks first, however many ask at once.
func testPoolID(t *testing.T, st payout.State) {
	ctx := context.Background()
	ids := make([]string, 8)
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() { ids[i], errs[i] = st.PoolID(ctx) })
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil {
			t.Fatalf("PoolID: %v", errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("PoolID answered %q and %q", ids[0], ids[i])
		}
	}
	if b, err := hex.DecodeString(ids[0]); err != nil || len(b) != 8 {
		t.Errorf("PoolID = %q; want 16 hex digits", ids[0])
	}
	if again, err := st.PoolID(ctx); err != nil || again != ids[0] {
		t.Errorf("PoolID again = %q, %v; want %q", again, err, ids[0])
	}
}

func window(start, count uint64) payout.WindowParams {
	return payout.WindowParams{N: 2 << 32, Bits: 0x1d00ffff, Size: payout.WorkJSON{Hi: 1, Lo: math.MaxUint64}, FeeBps: 150,
		DirectMin: 10_000, MaxDirect: 20, Start: start, End: start + count - 1, Count: count, First: 7,
		Total: payout.WorkJSON{Lo: 123456789}, Root: payout.Hash32{byte(start), 2, 3}}
}

func testWindows(t *testing.T, st payout.State) {
	ctx := context.Background()
	p := window(100, 50)
	c := p.Commitment()
	if _, err := st.Window(ctx, c); hashgrid.ErrorCode(err) != hashgrid.ENOTFOUND {
		t.Fatalf("Window of nothing stored: err %v; want ENOTFOUND", err)
	}
	if err := st.PutWindow(ctx, p, 1000); err != nil {
		t.Fatal(err)
	}
	// Again: the first stays (same parameters, as the commitment is their hash).
	if err := st.PutWindow(ctx, p, 2000); err != nil {
		t.Fatalf("PutWindow again: %v", err)
	}
	got, err := st.Window(ctx, c)
	if err != nil || got != p {
		t.Fatalf("Window = %+v, %v; want %+v", got, err, p)
	}
	if got.Commitment() != c {
		t.Errorf("stored window hashes to %s; want %s", got.Commitment(), c)
	}
	// Created stayed 1000: a prune before 1500 deletes it, proving the second put
	// did not move it.
	if n, err := st.PruneWindows(ctx, 1500, nil, 10); err != nil || n != 1 {
		t.Errorf("PruneWindows(before the first put's time) = %d, %v; want 1", n, err)
	}
}

func testPruneWindows(t *testing.T, st payout.State) {
	ctx := context.Background()
	var cs []payout.Hash32
	for i := range 6 {
		p := window(uint64(i*10+1), 10)
		cs = append(cs, p.Commitment())
		if err := st.PutWindow(ctx, p, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Window 1 is a credited block's; window 3 is kept by the caller; 5 is not before 5.
	if err := st.PutBlockWindow(ctx, payout.Hash32{0xb1}, cs[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PruneWindows(ctx, 5, nil, 0); err == nil {
		t.Error("PruneWindows with limit 0: no error")
	}
	total := 0
	for {
		n, err := st.PruneWindows(ctx, 5, []payout.Hash32{cs[3], {0xee}}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if n > 1 {
			t.Fatalf("PruneWindows(limit 1) deleted %d", n)
		}
		if n == 0 {
			break
		}
		total += n
	}
	if total != 3 {
		t.Errorf("pruned %d windows; want 3 (0, 2, 4)", total)
	}
	for i, c := range cs {
		_, err := st.Window(ctx, c)
		gone := hashgrid.ErrorCode(err) == hashgrid.ENOTFOUND
		if err != nil && !gone {
			t.Fatalf("Window %d: %v", i, err)
		}
		if wantGone := i == 0 || i == 2 || i == 4; gone != wantGone {
			t.Errorf("window %d gone = %v; want %v", i, gone, wantGone)
		}
	}
}

func testRates(t *testing.T, st payout.State) {
	ctx := context.Background()
	if _, ok, err := st.Rate(ctx, 10, 144); err != nil || ok {
		t.Fatalf("Rate with none recorded: ok %v, %v; want not ok", ok, err)
	}
	put := func(r payout.Rate) {
		t.Helper()
		if err := st.PutRate(ctx, r); err != nil {
			t.Fatalf("PutRate(%+v): %v", r, err)
		}
	}
	put(payout.Rate{Height: 10, Subsidy: 5000, Fees: 100, Bits: 0x1d00ffff})
	put(payout.Rate{Height: 12, Subsidy: 4000, Fees: 301, Bits: 0xffffffff})
	put(payout.Rate{Height: 11, Subsidy: 1, Fees: 1, Bits: 1}) // below a recorded height: ignored
	put(payout.Rate{Height: 12, Subsidy: 2, Fees: 2, Bits: 2}) // a later template at 12: ignored
	for _, tt := range []struct {
		height    int64
		feeWindow int
		ok        bool
		want      payout.Rate
	}{
		{5, 144, true, payout.Rate{Height: 10, Subsidy: 5000, Fees: 100, Bits: 0x1d00ffff}}, // below all: the lowest
		{10, 144, true, payout.Rate{Height: 10, Subsidy: 5000, Fees: 100, Bits: 0x1d00ffff}},
		{11, 144, true, payout.Rate{Height: 10, Subsidy: 5000, Fees: 100, Bits: 0x1d00ffff}}, // 12 exists: 11 never will
		{12, 144, true, payout.Rate{Height: 12, Subsidy: 4000, Fees: 200, Bits: 0xffffffff}}, // (100+301)/2
		{12, 1, true, payout.Rate{Height: 12, Subsidy: 4000, Fees: 301, Bits: 0xffffffff}},
		{12, 0, true, payout.Rate{Height: 12, Subsidy: 4000, Fees: 0, Bits: 0xffffffff}},
		{13, 144, false, payout.Rate{}}, // 13 may still be recorded
	} {
		got, ok, err := st.Rate(ctx, tt.height, tt.feeWindow)
		if err != nil || ok != tt.ok || got != tt.want {
			t.Errorf("Rate(%d, %d) = %+v, %v, %v; want %+v, %v", tt.height, tt.feeWindow, got, ok, err, tt.want, tt.ok)
		}
	}
}

func testPPS(t *testing.T, st payout.State) {
	ctx := context.Background()
	cur, started, carries, err := st.PPSState(ctx)
	if err != nil || started || cur != 0 || len(carries) != 0 || carries == nil {
		t.Fatalf("PPSState of nothing = %d, %v, %v, %v; want 0, false, an empty map", cur, started, carries, err)
	}
	if _, started, err := st.PPSCursor(ctx); err != nil || started {
		t.Fatalf("PPSCursor of nothing: started %v, %v", started, err)
	}
	// Cursor 0 saved is started: the consumer began before any share.
	if err := st.SavePPS(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	if cur, started, err := st.PPSCursor(ctx); err != nil || !started || cur != 0 {
		t.Fatalf("PPSCursor after saving 0 = %d, %v, %v", cur, started, err)
	}
	if err := st.SavePPS(ctx, 7, map[string]uint64{"a": 1, "b": math.MaxUint64, "c": 1 << 63}); err != nil {
		t.Fatal(err)
	}
	if err := st.SavePPS(ctx, math.MaxUint64, map[string]uint64{"a": 5}); err != nil {
		t.Fatal(err)
	}
	cur, started, carries, err = st.PPSState(ctx)
	want := map[string]uint64{"a": 5, "b": math.MaxUint64, "c": 1 << 63}
	if err != nil || !started || cur != math.MaxUint64 || len(carries) != len(want) {
		t.Fatalf("PPSState = %d, %v, %v, %v; want %d, true, %v", cur, started, carries, err, uint64(math.MaxUint64), want)
	}
	for a, w := range want {
		if carries[a] != w {
			t.Errorf("carry of %s = %d; want %d", a, carries[a], w)
		}
	}
	if cur, _, err := st.PPSCursor(ctx); err != nil || cur != math.MaxUint64 {
		t.Errorf("PPSCursor = %d, %v", cur, err)
	}
}

func testBatches(t *testing.T, st payout.State) {
	ctx := context.Background()
	if n, err := st.NextBatch(ctx); err != nil || n != 1 {
		t.Fatalf("NextBatch of none = %d, %v; want 1", n, err)
	}
	if bs, err := st.Batches(ctx, false); err != nil || len(bs) != 0 {
		t.Fatalf("Batches of none = %v, %v", bs, err)
	}
	b1 := payout.Batch{N: 1, Created: 1700000000, Status: payout.BatchNew,
		Items: []payout.BatchItem{{Address: "bcrt1qa", Amount: 5000}, {Address: "bcrt1qb", Amount: 2_100_000_000_000_000}}}
	if err := st.PutBatch(ctx, b1); err != nil {
		t.Fatal(err)
	}
	// A second batch 1 (a run that lost a race, or a replay) is refused and changes nothing.
	if err := st.PutBatch(ctx, payout.Batch{N: 1, Created: 1, Status: payout.BatchNew, Items: []payout.BatchItem{{Address: "x", Amount: 1}}}); err == nil {
		t.Error("PutBatch of an existing number: no error")
	}
	if n, err := st.NextBatch(ctx); err != nil || n != 2 {
		t.Fatalf("NextBatch = %d, %v; want 2", n, err)
	}
	b2 := payout.Batch{N: 2, Created: 1700000100, Status: payout.BatchNew, Items: []payout.BatchItem{{Address: "bcrt1qc", Amount: 1}}}
	if err := st.PutBatch(ctx, b2); err != nil {
		t.Fatal(err)
	}
	checkBatches(t, st, false, b1, b2)
	checkBatches(t, st, true, b1, b2)
	if err := st.SetBatch(ctx, 1, payout.BatchExported, ""); err != nil {
		t.Fatal(err)
	}
	b1.Status = payout.BatchExported
	checkBatches(t, st, true, b2)
	txid := "6f00000000000000000000000000000000000000000000000000000000000001"
	if err := st.SetBatch(ctx, 1, payout.BatchSent, txid); err != nil {
		t.Fatal(err)
	}
	b1.Status, b1.TxID = payout.BatchSent, txid
	checkBatches(t, st, false, b1, b2)
}

func checkBatches(tb testing.TB, st payout.State, onlyOpen bool, want ...payout.Batch) {
	tb.Helper()
	got, err := st.Batches(context.Background(), onlyOpen)
	if err != nil {
		tb.Fatalf("Batches(%v): %v", onlyOpen, err)
	}
	if !slices.EqualFunc(got, want, func(a, b payout.Batch) bool {
		return a.N == b.N && a.Created == b.Created && a.Status == b.Status && a.TxID == b.TxID && slices.Equal(a.Items, b.Items)
	}) {
		tb.Errorf("Batches(%v) = %+v; want %+v", onlyOpen, got, want)
	}
}

// testBatchNumberOnce: runs racing to record one batch number: one wins.
func testBatchNumberOnce(t *testing.T, st payout.State) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			errs[i] = st.PutBatch(ctx, payout.Batch{N: 1, Created: int64(i), Status: payout.BatchNew,
				Items: []payout.BatchItem{{Address: "a", Amount: int64(i + 1)}}})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	bs, err := st.Batches(ctx, false)
	if ok != 1 || err != nil || len(bs) != 1 {
		t.Errorf("%d of %d PutBatch(1) succeeded, %d batches stored (%v); want 1 and 1", ok, len(errs), len(bs), err)
	}
}

func testBlockWindows(t *testing.T, st payout.State) {
	ctx := context.Background()
	h, c := payout.Hash32{0xaa, 1}, payout.Hash32{0xcc, 2}
	if _, err := st.BlockWindow(ctx, h); hashgrid.ErrorCode(err) != hashgrid.ENOTFOUND {
		t.Fatalf("BlockWindow of nothing: %v; want ENOTFOUND", err)
	}
	if err := st.PutBlockWindow(ctx, h, c); err != nil {
		t.Fatal(err)
	}
	if err := st.PutBlockWindow(ctx, h, payout.Hash32{0xdd}); err != nil {
		t.Fatalf("PutBlockWindow again: %v", err)
	}
	if got, err := st.BlockWindow(ctx, h); err != nil || got != c {
		t.Errorf("BlockWindow = %s, %v; want %s (the first recorded)", got, err, c)
	}
}
