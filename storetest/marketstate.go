package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/market"
)

// OpenMarketState makes a fresh, empty market state store for one test and returns
// a function that opens it: each call opens the same store again, as a restarted
// market would (earlier openings need not be closed, as after a crash).
type OpenMarketState func(tb testing.TB) func() market.StateStore

// MarketState runs market.StateStore's contract, each test on a store of its own.
func MarketState(t *testing.T, open OpenMarketState) {
	tests := []struct {
		name string
		fn   func(*testing.T, func() market.StateStore)
	}{
		{"Empty", testStateEmpty},
		{"RoundTrip", testStateRoundTrip},
		{"ChangedOrdersOnly", testStateChangedOnly},
		{"ChangedWorkers", testStateChangedWorkers},
		{"Delete", testStateDelete},
		{"NextIDOnlyRises", testStateNextID},
		{"ReopenWithoutClose", testStateReopen},
		{"ConcurrentSaves", testStateConcurrent},
		{"ImportOnce", testStateImport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

func openState(tb testing.TB, open func() market.StateStore) market.StateStore {
	tb.Helper()
	s := open()
	tb.Cleanup(func() { s.Close() })
	return s
}

func loadState(tb testing.TB, s market.StateStore) market.State {
	tb.Helper()
	st, err := s.Load(context.Background())
	if err != nil {
		tb.Fatalf("Load: %v", err)
	}
	return st
}

func saveState(tb testing.TB, s market.StateStore, u market.Update) {
	tb.Helper()
	if err := s.Save(context.Background(), u); err != nil {
		tb.Fatalf("Save: %v", err)
	}
}

var stateT0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

// sampleOrder is an order with every kind of field set.
func sampleOrder(n int) *market.OrderRecord {
	id := fmt.Sprintf("o%d", n)
	return &market.OrderRecord{
		ID: id, Kind: market.KindContract, Account: "a1",
		Dest:  market.Destination{URL: "stratum+tcp://pool.example:3333", User: "buyer.w" + id, Password: "x"},
		Price: 123_456_789_012, Limit: 0.1 + float64(n), Status: market.StatusActive, Reason: "",
		Created: stateT0, Decreased: stateT0.Add(time.Minute), Start: stateT0, End: stateT0.Add(24 * time.Hour),
		Funded: 1_000_000, Charged: 12_345, Refunded: 0, LastEntry: 42, SettleSeq: 7, FundSeq: 1, XferSeq: 1,
		ChargeNum:  "123456789012345678901234567890",
		SellerNum:  map[string]string{"bcrt1qaddr/rig1": "98765432109876543210"},
		SellerPaid: map[string]int64{"bcrt1qaddr/rig1": 11_000},
		FeePosted:  246, VariancePosted: -3, Accepted: 1 << 40, Rejected: 2, Stale: 3, Dropped: 4,
		Work:       hashgrid.Work{Hi: 3, Lo: 1234},
		FirstShare: stateT0.Add(time.Second),
		Segments: []market.Segment{
			{Account: "a1", From: stateT0, Accepted: 10, Work: hashgrid.Work{Lo: 1000}},
			{Account: "a2", From: stateT0.Add(time.Hour), Accepted: 5, Work: hashgrid.Work{Hi: 1, Lo: 234}},
		},
		Offer: &market.TransferOffer{To: "a3", Price: 500},
	}
}

func sampleAccount(n int) *market.Account {
	return &market.Account{ID: fmt.Sprintf("a%d", n), KeyHash: fmt.Sprintf("%064x", n), Created: stateT0.Add(time.Duration(n) * time.Second)}
}

// ordersJSON is the orders of st by id, each as JSON, to compare field for field.
func ordersJSON(tb testing.TB, rs []*market.OrderRecord) map[string]string {
	tb.Helper()
	out := map[string]string{}
	for _, r := range rs {
		b, err := json.Marshal(r)
		if err != nil {
			tb.Fatal(err)
		}
		out[r.ID] = string(b)
	}
	return out
}

func checkOrders(tb testing.TB, got []*market.OrderRecord, want ...*market.OrderRecord) {
	tb.Helper()
	g, w := ordersJSON(tb, got), ordersJSON(tb, want)
	if len(g) != len(w) {
		tb.Errorf("got %d orders, want %d", len(g), len(w))
	}
	for id, wj := range w {
		if g[id] != wj {
			tb.Errorf("order %s:\n got %s\nwant %s", id, g[id], wj)
		}
	}
}

func checkAccounts(tb testing.TB, got []*market.Account, want ...*market.Account) {
	tb.Helper()
	g := map[string]*market.Account{}
	for _, a := range got {
		g[a.ID] = a
	}
	if len(got) != len(want) {
		tb.Errorf("got %d accounts, want %d", len(got), len(want))
	}
	for _, w := range want {
		a := g[w.ID]
		if a == nil || a.KeyHash != w.KeyHash || !a.Created.Equal(w.Created) {
			tb.Errorf("account %s: got %+v, want %+v", w.ID, a, w)
		}
	}
}

func testStateEmpty(t *testing.T, open func() market.StateStore) {
	s := openState(t, open)
	if st := loadState(t, s); !st.Empty() {
		t.Errorf("a new store holds %+v", st)
	}
	saveState(t, s, market.Update{}) // an empty update changes nothing
	if st := loadState(t, s); !st.Empty() {
		t.Errorf("after an empty Save the store holds %+v", st)
	}
}

func testStateRoundTrip(t *testing.T, open func() market.StateStore) {
	s := openState(t, open)
	o1, o2 := sampleOrder(1), sampleOrder(2)
	o2.Kind, o2.Offer, o2.Start, o2.End, o2.Status, o2.Reason = market.KindSpot, nil, time.Time{}, time.Time{}, market.StatusPaused, "paused by buyer"
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{o1, o2}, Accounts: []*market.Account{sampleAccount(1), sampleAccount(2)}, NextID: 4})
	st := loadState(t, s)
	checkOrders(t, st.Orders, o1, o2)
	checkAccounts(t, st.Accounts, sampleAccount(1), sampleAccount(2))
	if st.NextID != 4 {
		t.Errorf("NextID %d, want 4", st.NextID)
	}
	// Accounts added later, alone, are kept beside the others.
	saveState(t, s, market.Update{Accounts: []*market.Account{sampleAccount(5)}, NextID: 5})
	checkAccounts(t, loadState(t, s).Accounts, sampleAccount(1), sampleAccount(2), sampleAccount(5))
}

func testStateChangedOnly(t *testing.T, open func() market.StateStore) {
	s := openState(t, open)
	var all []*market.OrderRecord
	for i := 1; i <= 20; i++ {
		all = append(all, sampleOrder(i))
	}
	saveState(t, s, market.Update{Orders: all, NextID: 20})
	// Later saves carry only the orders that changed: the others stay as they were.
	o7 := sampleOrder(7)
	o7.Accepted, o7.Status, o7.ChargeNum, o7.Offer = 1<<41, market.StatusExhausted, "5", nil
	o7.SellerPaid["bcrt1qother/r2"] = 9
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{o7}, NextID: 20})
	o9 := sampleOrder(9)
	o9.Segments = append(o9.Segments, market.Segment{Account: "a9", From: stateT0.Add(2 * time.Hour)})
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{o9}, NextID: 20})
	all[6], all[8] = o7, o9
	checkOrders(t, loadState(t, s).Orders, all...)
}

// testStateChangedWorkers: an order with many workers, saved again with Workers
// naming the few whose entries changed (one changed, one new, one gone), loads as the
// whole new record; saved without Workers, it loads with exactly its workers.
func testStateChangedWorkers(t *testing.T, open func() market.StateStore) {
	s := openState(t, open)
	o := sampleOrder(1)
	for i := range 50 {
		k := fmt.Sprintf("bcrt1qw%d/rig", i)
		o.SellerNum[k] = fmt.Sprintf("%d000000000000000000000", i+1)
		o.SellerPaid[k] = int64(i * 1000)
	}
	o.SellerNum["bcrt1qnumonly/r"] = "7"
	o.SellerPaid["bcrt1qpaidonly/r"] = 8
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{o, sampleOrder(2)}, NextID: 2})
	checkOrders(t, loadState(t, s).Orders, o, sampleOrder(2))

	o2 := cloneOrder(t, o)
	o2.Accepted++
	o2.SellerNum["bcrt1qw3/rig"], o2.SellerPaid["bcrt1qw3/rig"] = "99999999999999999999999", 123_456
	o2.SellerNum["bcrt1qnew/rig"], o2.SellerPaid["bcrt1qnew/rig"] = "5", 0
	delete(o2.SellerNum, "bcrt1qw5/rig")
	delete(o2.SellerPaid, "bcrt1qw5/rig")
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{o2}, Workers: map[string][]string{"o1": {"bcrt1qnew/rig", "bcrt1qw3/rig", "bcrt1qw5/rig"}}, NextID: 2})
	checkOrders(t, loadState(t, s).Orders, o2, sampleOrder(2))

	// Named with no workers: the order's row changes, its workers stay.
	o3 := cloneOrder(t, o2)
	o3.Status = market.StatusPaused
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{o3}, Workers: map[string][]string{"o1": {}}, NextID: 2})
	checkOrders(t, loadState(t, s).Orders, o3, sampleOrder(2))

	// Not named: written whole.
	o4 := sampleOrder(1)
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{o4}, NextID: 2})
	checkOrders(t, loadState(t, s).Orders, o4, sampleOrder(2))
}

func cloneOrder(tb testing.TB, r *market.OrderRecord) *market.OrderRecord {
	tb.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		tb.Fatal(err)
	}
	var c market.OrderRecord
	if err := json.Unmarshal(b, &c); err != nil {
		tb.Fatal(err)
	}
	return &c
}

func testStateDelete(t *testing.T, open func() market.StateStore) {
	s := openState(t, open)
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{sampleOrder(1), sampleOrder(2)}, NextID: 2})
	saveState(t, s, market.Update{Deleted: []string{"o1", "o404"}, NextID: 2})
	checkOrders(t, loadState(t, s).Orders, sampleOrder(2))
	// Saved and deleted in one update: deleted.
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{sampleOrder(3)}, Deleted: []string{"o3"}, NextID: 3})
	checkOrders(t, loadState(t, s).Orders, sampleOrder(2))
}

func testStateNextID(t *testing.T, open func() market.StateStore) {
	s := openState(t, open)
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{sampleOrder(1)}, NextID: 10})
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{sampleOrder(1)}, NextID: 3})
	if got := loadState(t, s).NextID; got != 10 {
		t.Errorf("NextID after a lower one was saved: %d, want 10", got)
	}
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{sampleOrder(1)}, NextID: 11})
	if got := loadState(t, s).NextID; got != 11 {
		t.Errorf("NextID %d, want 11", got)
	}
}

func testStateReopen(t *testing.T, open func() market.StateStore) {
	s := open() // never closed: a crashed market's store
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{sampleOrder(1), sampleOrder(2)}, Accounts: []*market.Account{sampleAccount(1)}, NextID: 3})
	o2 := sampleOrder(2)
	o2.Charged = 99_999
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{o2}, NextID: 3})
	s2 := openState(t, open)
	st := loadState(t, s2)
	checkOrders(t, st.Orders, sampleOrder(1), o2)
	checkAccounts(t, st.Accounts, sampleAccount(1))
	if st.NextID != 3 {
		t.Errorf("NextID %d, want 3", st.NextID)
	}
	t.Cleanup(func() { s.Close() })
}

// testStateConcurrent saves orders and accounts from several goroutines at once, as
// the market's saves and account creations do: nothing is lost.
func testStateConcurrent(t *testing.T, open func() market.StateStore) {
	s := openState(t, open)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, 2*n)
	var want []*market.OrderRecord
	var wantAccts []*market.Account
	for i := 1; i <= n; i++ {
		want = append(want, sampleOrder(i))
		wantAccts = append(wantAccts, sampleAccount(100+i))
		wg.Go(func() {
			errs[i-1] = s.Save(context.Background(), market.Update{Orders: []*market.OrderRecord{sampleOrder(i)}, NextID: uint64(i)})
		})
		wg.Go(func() {
			errs[n+i-1] = s.Save(context.Background(), market.Update{Accounts: []*market.Account{sampleAccount(100 + i)}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("save %d: %v", i, err)
		}
	}
	st := loadState(t, s)
	checkOrders(t, st.Orders, want...)
	checkAccounts(t, st.Accounts, wantAccts...)
	if st.NextID != n {
		t.Errorf("NextID %d, want %d", st.NextID, n)
	}
}

// testStateImport: a market's JSON state file is copied into an empty store once; a
// store that holds anything is never imported into.
func testStateImport(t *testing.T, open func() market.StateStore) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "market.json")
	fs, err := market.OpenFileStore(path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	saveState(t, fs, market.Update{Orders: []*market.OrderRecord{sampleOrder(1), sampleOrder(3)}, Accounts: []*market.Account{sampleAccount(2)}, NextID: 3})
	saveState(t, fs, market.Update{Accounts: []*market.Account{sampleAccount(4)}, NextID: 4})
	fs.Close()

	s := openState(t, open)
	// No file: nothing to do, and the store stays empty.
	if got, err := market.ImportFile(ctx, s, filepath.Join(dir, "none.json"), "", nil); err != nil || !got.Empty() {
		t.Errorf("ImportFile of no file: %+v, %v", got, err)
	}
	if st := loadState(t, s); !st.Empty() {
		t.Errorf("after importing no file the store holds %+v", st)
	}
	got, err := market.ImportFile(ctx, s, path, "", nil)
	if err != nil {
		t.Fatalf("ImportFile: %v", err)
	}
	if len(got.Orders) != 2 || len(got.Accounts) != 2 {
		t.Errorf("ImportFile copied %d orders and %d accounts, want 2 and 2", len(got.Orders), len(got.Accounts))
	}
	st := loadState(t, s)
	checkOrders(t, st.Orders, sampleOrder(1), sampleOrder(3))
	checkAccounts(t, st.Accounts, sampleAccount(2), sampleAccount(4))
	if st.NextID < 3 {
		t.Errorf("NextID %d, want at least 3", st.NextID)
	}
	// Again: the store holds the state already, and what changed since stays.
	o3 := sampleOrder(3)
	o3.Status = market.StatusCancelled
	saveState(t, s, market.Update{Orders: []*market.OrderRecord{o3}, NextID: 3})
	if got, err := market.ImportFile(ctx, s, path, "", nil); err != nil || !got.Empty() {
		t.Errorf("second ImportFile: copied %+v, %v; want nothing", got, err)
	}
	st = loadState(t, s)
	checkOrders(t, st.Orders, sampleOrder(1), o3)
	checkAccounts(t, st.Accounts, sampleAccount(2), sampleAccount(4))

}

// MarketStateSaveBenchmark measures one save of changed orders into a store that
// holds orders in all, each with workers workers: the cost of a busy market's save
// every second. Each save names changedWorkers workers of each changed order as
// changed (Update.Workers), or none if changedWorkers is negative, when every worker
// of a changed order is written.
func MarketStateSaveBenchmark(b *testing.B, open OpenMarketState, orders, changed, workers, changedWorkers int) {
	s := openState(b, open(b))
	mk := func(n int) *market.OrderRecord {
		r := sampleOrder(n)
		for i := range workers {
			k := fmt.Sprintf("bcrt1qsellerpayoutaddress%06d/rig%d", i, i)
			r.SellerNum[k], r.SellerPaid[k] = "123456789012345678901234", int64(i)
		}
		return r
	}
	var all []*market.OrderRecord
	for i := 1; i <= orders; i++ {
		all = append(all, mk(i))
	}
	saveState(b, s, market.Update{Orders: all, NextID: uint64(orders)})
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		u := market.Update{NextID: uint64(orders)}
		if changedWorkers >= 0 {
			u.Workers = map[string][]string{}
		}
		for j := range changed {
			r := all[(i*changed+j)%orders]
			r.Accepted = uint64(i)
			if changedWorkers >= 0 {
				var ws []string
				for w := range changedWorkers {
					k := fmt.Sprintf("bcrt1qsellerpayoutaddress%06d/rig%d", (i+w)%workers, (i+w)%workers)
					r.SellerPaid[k]++
					ws = append(ws, k)
				}
				u.Workers[r.ID] = ws
			}
			u.Orders = append(u.Orders, r)
		}
		saveState(b, s, u)
	}
}
