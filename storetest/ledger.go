package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
)

// Book is the ledger contract's subject: ledger.Book.
type Book = ledger.Book

// OpenBook opens a fresh, empty book whose entries are stamped by now.
type OpenBook func(tb testing.TB, now func() time.Time) Book

// Ledger runs the book's contract, each test on a book of its own.
func Ledger(t *testing.T, open OpenBook) {
	tests := []struct {
		name string
		fn   func(*testing.T, Book)
	}{
		{"PostAndBalances", testPostAndBalances},
		{"PostIsIdempotent", testPostIsIdempotent},
		{"RejectsBadEntries", testRejectsBadEntries},
		{"NonNegative", testNonNegative},
		{"NonNegativeUnderRace", testNonNegativeUnderRace},
		{"SameKeyUnderRace", testSameKeyUnderRace},
		{"PostAll", testPostAll},
		{"Entries", testEntries},
		{"RandomEntriesBalance", testRandomEntriesBalance},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := t0
			var mu sync.Mutex
			b := open(t, func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				clock = clock.Add(time.Second)
				return clock
			})
			t.Cleanup(func() { b.Close() })
			tt.fn(t, b)
		})
	}
}

func checkBalances(tb testing.TB, b Book, want map[string]int64) {
	tb.Helper()
	for acct, w := range want {
		if got, err := b.Balance(context.Background(), acct); err != nil || got != w {
			tb.Errorf("Balance(%s) = %d, %v; want %d", acct, got, err, w)
		}
	}
	if err := b.Check(context.Background()); err != nil {
		tb.Errorf("Check: %v", err)
	}
}

func testPostAndBalances(t *testing.T, b Book) {
	ctx := context.Background()
	e, err := b.Post(ctx, ledger.Tx{Key: "block:1", Memo: "reward", Postings: []ledger.Posting{
		{Account: "pool:coinbase", Amount: -5000}, {Account: "miner:b", Amount: 1000}, {Account: "miner:a", Amount: 3000},
		{Account: "miner:b", Amount: 999}, {Account: "pool:fee", Amount: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Postings to one account are merged, and sorted by account.
	wantPs := []ledger.Posting{{Account: "miner:a", Amount: 3000}, {Account: "miner:b", Amount: 1999},
		{Account: "pool:coinbase", Amount: -5000}, {Account: "pool:fee", Amount: 1}}
	if e.ID == 0 || e.Key != "block:1" || e.Memo != "reward" || !e.Time.Equal(t0.Add(time.Second)) || !slices.Equal(e.Postings, wantPs) {
		t.Fatalf("Post: got %+v; want key block:1, memo reward, time %v, postings %v", e, t0.Add(time.Second), wantPs)
	}
	got, err := b.Entry(ctx, "block:1")
	if err != nil || got.ID != e.ID || !got.Time.Equal(e.Time) || got.Memo != e.Memo || !slices.Equal(got.Postings, wantPs) {
		t.Fatalf("Entry(block:1): got %+v, %v; want %+v", got, err, e)
	}
	checkBalances(t, b, map[string]int64{"pool:coinbase": -5000, "miner:a": 3000, "miner:b": 1999, "pool:fee": 1, "nobody": 0})
	bs, err := b.Balances(ctx, "miner:")
	if want := map[string]int64{"miner:a": 3000, "miner:b": 1999}; err != nil || !mapsEqual(bs, want) {
		t.Errorf("Balances(miner:) = %v, %v; want %v", bs, err, want)
	}
	bs, err = b.Balances(ctx, "")
	if err != nil || len(bs) != 4 {
		t.Errorf("Balances(\"\") = %v, %v; want 4 accounts", bs, err)
	}
	// A prefix is a prefix, not a pattern.
	if bs, err := b.Balances(ctx, "miner%"); err != nil || len(bs) != 0 {
		t.Errorf("Balances(miner%%) = %v, %v; want none", bs, err)
	}
	_, err = b.Entry(ctx, "block:2")
	if !errors.Is(err, hashgrid.ErrNotFound) {
		t.Errorf("Entry of an unknown key: got %v, want ErrNotFound", err)
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func testPostIsIdempotent(t *testing.T, b Book) {
	ctx := context.Background()
	tx := ledger.Tx{Key: "payout:7", Postings: []ledger.Posting{{Account: "miner:a", Amount: -10}, {Account: "paid:a", Amount: 10}}}
	e1, err := b.Post(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	// The same postings in another order and split differently are the same entry.
	again := ledger.Tx{Key: "payout:7", Postings: []ledger.Posting{{Account: "paid:a", Amount: 4}, {Account: "miner:a", Amount: -10},
		{Account: "paid:a", Amount: 6}}}
	e2, err := b.Post(ctx, again)
	if err != nil || e2.ID != e1.ID || !e2.Time.Equal(e1.Time) || !slices.Equal(e2.Postings, e1.Postings) {
		t.Fatalf("Post again: got %+v, %v; want %+v", e2, err, e1)
	}
	checkBalances(t, b, map[string]int64{"miner:a": -10, "paid:a": 10})
	other := ledger.Tx{Key: "payout:7", Postings: []ledger.Posting{{Account: "miner:a", Amount: -11}, {Account: "paid:a", Amount: 11}}}
	if _, err := b.Post(ctx, other); hashgrid.ErrorCode(err) != hashgrid.ECONFLICT {
		t.Fatalf("Post of a key with other amounts: got %v, want ECONFLICT", err)
	}
	checkBalances(t, b, map[string]int64{"miner:a": -10, "paid:a": 10})
	if es, err := b.Entries(ctx, "miner:a", 10); err != nil || len(es) != 1 {
		t.Fatalf("Entries after replays: got %d, %v; want 1", len(es), err)
	}
}

func testRejectsBadEntries(t *testing.T, b Book) {
	ctx := context.Background()
	ok := []ledger.Posting{{Account: "a", Amount: 1}, {Account: "b", Amount: -1}}
	tests := []struct {
		name string
		tx   ledger.Tx
	}{
		{"no key", ledger.Tx{Postings: ok}},
		{"long key", ledger.Tx{Key: strings.Repeat("k", ledger.MaxKeyLen+1), Postings: ok}},
		{"long memo", ledger.Tx{Key: "k", Memo: strings.Repeat("m", ledger.MaxMemoLen+1), Postings: ok}},
		{"one posting", ledger.Tx{Key: "k", Postings: ok[:1]}},
		{"unbalanced", ledger.Tx{Key: "k", Postings: []ledger.Posting{{Account: "a", Amount: 2}, {Account: "b", Amount: -1}}}},
		{"zero amount", ledger.Tx{Key: "k", Postings: []ledger.Posting{{Account: "a", Amount: 0}, {Account: "b", Amount: 0}}}},
		{"too large", ledger.Tx{Key: "k", Postings: []ledger.Posting{{Account: "a", Amount: ledger.MaxAbsAmount + 1},
			{Account: "b", Amount: -ledger.MaxAbsAmount - 1}}}},
		{"empty account", ledger.Tx{Key: "k", Postings: []ledger.Posting{{Account: "", Amount: 1}, {Account: "b", Amount: -1}}}},
		{"spaced account", ledger.Tx{Key: "k", Postings: []ledger.Posting{{Account: " a", Amount: 1}, {Account: "b", Amount: -1}}}},
		{"long account", ledger.Tx{Key: "k", Postings: []ledger.Posting{{Account: strings.Repeat("a", ledger.MaxAccountLen+1), Amount: 1},
			{Account: "b", Amount: -1}}}},
		{"moves nothing", ledger.Tx{Key: "k", Postings: []ledger.Posting{{Account: "a", Amount: 1}, {Account: "a", Amount: -1}}}},
	}
	for _, tt := range tests {
		if _, err := b.Post(ctx, tt.tx); hashgrid.ErrorCode(err) != hashgrid.EINVALID {
			t.Errorf("%s: Post: got %v, want EINVALID", tt.name, err)
		}
	}
	if _, err := b.Entry(ctx, "k"); !errors.Is(err, hashgrid.ErrNotFound) {
		t.Errorf("Entry after refused posts: got %v, want ErrNotFound", err)
	}
	if bs, err := b.Balances(ctx, ""); err != nil || len(bs) != 0 {
		t.Errorf("Balances after refused posts: got %v, %v; want none", bs, err)
	}
}

func testNonNegative(t *testing.T, b Book) {
	ctx := context.Background()
	if _, err := b.Post(ctx, ledger.Tx{Key: "fund", Postings: []ledger.Posting{{Account: "buyer:x", Amount: -100}, {Account: "escrow:o1", Amount: 100}},
		NonNegative: []string{"escrow:o1"}}); err != nil {
		t.Fatal(err)
	}
	_, err := b.Post(ctx, ledger.Tx{Key: "over", Postings: []ledger.Posting{{Account: "escrow:o1", Amount: -101}, {Account: "seller:s", Amount: 101}},
		NonNegative: []string{"escrow:o1"}})
	if !errors.Is(err, ledger.ErrInsufficient) || hashgrid.ErrorCode(err) != hashgrid.ECONFLICT {
		t.Fatalf("overdraw: got %v, want ErrInsufficient as ECONFLICT", err)
	}
	if _, err := b.Entry(ctx, "over"); !errors.Is(err, hashgrid.ErrNotFound) {
		t.Fatalf("a refused entry was stored: %v", err)
	}
	// Exactly to zero is allowed; an account never posted to counts as zero.
	if _, err := b.Post(ctx, ledger.Tx{Key: "all", Postings: []ledger.Posting{{Account: "escrow:o1", Amount: -100}, {Account: "seller:s", Amount: 100}},
		NonNegative: []string{"escrow:o1", "never:posted"}}); err != nil {
		t.Fatalf("spend to zero: %v", err)
	}
	checkBalances(t, b, map[string]int64{"buyer:x": -100, "escrow:o1": 0, "seller:s": 100})
}

// testNonNegativeUnderRace spends one escrow from many goroutines at once: the total
// spent never exceeds what was funded.
func testNonNegativeUnderRace(t *testing.T, b Book) {
	ctx := context.Background()
	if _, err := b.Post(ctx, ledger.Tx{Key: "fund", Postings: []ledger.Posting{{Account: "buyer:x", Amount: -1000}, {Account: "escrow:o1", Amount: 1000}}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for i := range 40 {
		wg.Go(func() {
			_, err := b.Post(ctx, ledger.Tx{Key: fmt.Sprintf("charge:%d", i),
				Postings:    []ledger.Posting{{Account: "escrow:o1", Amount: -70}, {Account: fmt.Sprintf("seller:%d", i%3), Amount: 70}},
				NonNegative: []string{"escrow:o1"}})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ledger.ErrInsufficient):
				refused++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok != 14 || refused != 26 {
		t.Errorf("ok %d refused %d, want 14 and 26", ok, refused)
	}
	checkBalances(t, b, map[string]int64{"escrow:o1": 1000 - 14*70})
}

// testSameKeyUnderRace posts one key from many goroutines at once: one entry, counted
// once, returned to all.
func testSameKeyUnderRace(t *testing.T, b Book) {
	ctx := context.Background()
	tx := ledger.Tx{Key: "payout:1", Postings: []ledger.Posting{{Account: "miner:a", Amount: -25}, {Account: "paid:a", Amount: 25}}}
	var wg sync.WaitGroup
	ids := make([]int64, 16)
	errs := make([]error, 16)
	for i := range ids {
		wg.Go(func() {
			e, err := b.Post(ctx, tx)
			ids[i], errs[i] = e.ID, err
		})
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("Post %d: got entry %d, %v; want entry %d", i, ids[i], errs[i], ids[0])
		}
	}
	checkBalances(t, b, map[string]int64{"miner:a": -25, "paid:a": 25})
}

func testPostAll(t *testing.T, b Book) {
	ctx := context.Background()
	mk := func(key string, amount int64) ledger.Tx {
		return ledger.Tx{Key: key, Postings: []ledger.Posting{{Account: "pool:pps", Amount: -amount}, {Account: "miner:a", Amount: amount}}}
	}
	out, err := b.PostAll(ctx, []ledger.Tx{mk("pps:1", 10), mk("pps:2", 20)})
	if err != nil || len(out) != 2 || out[0].Key != "pps:1" || out[1].Key != "pps:2" || out[0].ID == out[1].ID {
		t.Fatalf("PostAll: got %+v, %v", out, err)
	}
	// Replayed with a new one: the old ones are returned as they were, the new added.
	again, err := b.PostAll(ctx, []ledger.Tx{mk("pps:1", 10), mk("pps:2", 20), mk("pps:3", 30)})
	if err != nil || len(again) != 3 || again[0].ID != out[0].ID || again[1].ID != out[1].ID {
		t.Fatalf("PostAll replayed: got %+v, %v", again, err)
	}
	checkBalances(t, b, map[string]int64{"miner:a": 60, "pool:pps": -60})
	// All or none: a conflict, an overdraft or a bad entry anywhere in the batch stores nothing.
	for name, batch := range map[string][]ledger.Tx{
		"conflict":  {mk("pps:4", 40), mk("pps:1", 11)},
		"overdraft": {mk("pps:4", 40), {Key: "pay:a", Postings: []ledger.Posting{{Account: "miner:a", Amount: -101}, {Account: "paid:a", Amount: 101}}, NonNegative: []string{"miner:a"}}},
		"invalid":   {mk("pps:4", 40), {Key: "bad"}},
		"twice":     {mk("pps:4", 40), mk("pps:4", 40)},
	} {
		if _, err := b.PostAll(ctx, batch); err == nil {
			t.Fatalf("PostAll with a %s: got nil error", name)
		}
		if _, err := b.Entry(ctx, "pps:4"); !errors.Is(err, hashgrid.ErrNotFound) {
			t.Fatalf("PostAll with a %s stored part of its batch: %v", name, err)
		}
	}
	// Non-negative is checked after each entry, not only at the end.
	_, err = b.PostAll(ctx, []ledger.Tx{
		{Key: "pay:a", Postings: []ledger.Posting{{Account: "miner:a", Amount: -70}, {Account: "paid:a", Amount: 70}}, NonNegative: []string{"miner:a"}},
		mk("pps:5", 50),
	})
	if !errors.Is(err, ledger.ErrInsufficient) {
		t.Fatalf("PostAll overdrawing before a later credit: got %v, want ErrInsufficient", err)
	}
	big := make([]ledger.Tx, ledger.MaxBatch+1)
	if _, err := b.PostAll(ctx, big); hashgrid.ErrorCode(err) != hashgrid.EINVALID {
		t.Fatalf("PostAll over MaxBatch: got %v, want EINVALID", err)
	}
	checkBalances(t, b, map[string]int64{"miner:a": 60, "pool:pps": -60, "paid:a": 0})
}

func testEntries(t *testing.T, b Book) {
	ctx := context.Background()
	for i := range 5 {
		acct := "miner:a"
		if i%2 == 1 {
			acct = "miner:b"
		}
		if _, err := b.Post(ctx, ledger.Tx{Key: fmt.Sprintf("credit:%d", i), Memo: fmt.Sprint(i),
			Postings: []ledger.Posting{{Account: "pool", Amount: -int64(i + 1)}, {Account: acct, Amount: int64(i + 1)}}}); err != nil {
			t.Fatal(err)
		}
	}
	keys := func(es []ledger.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Key)
		}
		return out
	}
	es, err := b.Entries(ctx, "miner:a", 10)
	if want := []string{"credit:4", "credit:2", "credit:0"}; err != nil || !slices.Equal(keys(es), want) {
		t.Fatalf("Entries(miner:a): got %v, %v; want %v", keys(es), err, want)
	}
	if es[0].Memo != "4" || !slices.Equal(es[0].Postings, []ledger.Posting{{Account: "miner:a", Amount: 5}, {Account: "pool", Amount: -5}}) {
		t.Fatalf("Entries(miner:a)[0]: got %+v", es[0])
	}
	if es, err := b.Entries(ctx, "pool", 2); err != nil || !slices.Equal(keys(es), []string{"credit:4", "credit:3"}) {
		t.Fatalf("Entries(pool, 2): got %v, %v", keys(es), err)
	}
	if es, err := b.Entries(ctx, "pool", 0); err != nil || len(es) != 5 {
		t.Fatalf("Entries(pool, 0): got %d, %v; want all 5", len(es), err)
	}
	if es, err := b.Entries(ctx, "nobody", 10); err != nil || len(es) != 0 {
		t.Fatalf("Entries(nobody): got %v, %v", keys(es), err)
	}
}

func testRandomEntriesBalance(t *testing.T, b Book) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	want := map[string]int64{}
	for i := range 200 {
		n := 2 + r.IntN(5)
		var ps []ledger.Posting
		var sum int64
		for range n - 1 {
			v := r.Int64N(2_000_000) - 1_000_000
			if v == 0 {
				v = 1
			}
			ps = append(ps, ledger.Posting{Account: fmt.Sprintf("acct:%d", r.IntN(8)), Amount: v})
			sum += v
		}
		if sum == 0 {
			continue
		}
		ps = append(ps, ledger.Posting{Account: "sink", Amount: -sum})
		if _, err := b.Post(ctx, ledger.Tx{Key: fmt.Sprint(i), Postings: ps}); err != nil {
			if hashgrid.ErrorCode(err) == hashgrid.EINVALID {
				continue // merged to nothing
			}
			t.Fatal(err)
		}
		for _, p := range ps {
			want[p.Account] += p.Amount
		}
	}
	checkBalances(t, b, want)
}
