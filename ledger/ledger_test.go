package ledger

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hashgrid/hashgrid"
)

func open(t *testing.T) *Ledger {
	t.Helper()
	l, err := Open(filepath.Join(t.TempDir(), "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestPostAndBalances(t *testing.T) {
	ctx := context.Background()
	l := open(t)
	e, err := l.Post(ctx, Tx{Key: "block:1", Memo: "reward", Postings: []Posting{
		{"pool:coinbase", -5000}, {"miner:a", 3000}, {"miner:b", 1999}, {"pool:fee", 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if e.ID == 0 || len(e.Postings) != 4 {
		t.Fatalf("entry %+v", e)
	}
	for acct, want := range map[string]int64{"pool:coinbase": -5000, "miner:a": 3000, "miner:b": 1999, "pool:fee": 1, "nobody": 0} {
		if got, err := l.Balance(ctx, acct); err != nil || got != want {
			t.Errorf("Balance(%s) = %d, %v; want %d", acct, got, err, want)
		}
	}
	bs, _ := l.Balances(ctx, "miner:")
	if len(bs) != 2 || bs["miner:a"] != 3000 {
		t.Errorf("Balances(miner:) = %v", bs)
	}
	es, _ := l.Entries(ctx, "miner:a", 10)
	if len(es) != 1 || es[0].Key != "block:1" {
		t.Errorf("Entries = %+v", es)
	}
	if err := l.Check(ctx); err != nil {
		t.Error(err)
	}
}

func TestPostIsIdempotent(t *testing.T) {
	ctx := context.Background()
	l := open(t)
	tx := Tx{Key: "payout:7", Postings: []Posting{{"miner:a", -10}, {"paid:a", 10}}}
	e1, err := l.Post(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := l.Post(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	if e1.ID != e2.ID {
		t.Errorf("retry made a second entry: %d, %d", e1.ID, e2.ID)
	}
	if b, _ := l.Balance(ctx, "paid:a"); b != 10 {
		t.Errorf("paid twice: balance %d", b)
	}
	// Same key, other amounts: a conflict, nothing written.
	_, err = l.Post(ctx, Tx{Key: "payout:7", Postings: []Posting{{"miner:a", -11}, {"paid:a", 11}}})
	if hashgrid.ErrorCode(err) != hashgrid.ECONFLICT {
		t.Errorf("conflicting retry: err %v, want conflict", err)
	}
	if b, _ := l.Balance(ctx, "paid:a"); b != 10 {
		t.Errorf("balance after conflict %d, want 10", b)
	}
}

func TestPostRejectsBadEntries(t *testing.T) {
	ctx := context.Background()
	l := open(t)
	bad := []Tx{
		{Key: "", Postings: []Posting{{"a", 1}, {"b", -1}}},
		{Key: "unbalanced", Postings: []Posting{{"a", 2}, {"b", -1}}},
		{Key: "one", Postings: []Posting{{"a", 0}, {"b", 0}}},
		{Key: "self", Postings: []Posting{{"a", 5}, {"a", -5}}},
		{Key: "huge", Postings: []Posting{{"a", MaxAbsAmount + 1}, {"b", -MaxAbsAmount - 1}}},
		{Key: "name", Postings: []Posting{{" a", 1}, {"b", -1}}},
	}
	for _, tx := range bad {
		if _, err := l.Post(ctx, tx); hashgrid.ErrorCode(err) != hashgrid.EINVALID {
			t.Errorf("Post(%q) err = %v, want invalid", tx.Key, err)
		}
	}
	if err := l.Check(ctx); err != nil {
		t.Error(err)
	}
}

// TestNonNegativeUnderRace spends one escrow from many goroutines at once: the total
// spent never exceeds what was funded.
func TestNonNegativeUnderRace(t *testing.T) {
	ctx := context.Background()
	l := open(t)
	if _, err := l.Post(ctx, Tx{Key: "fund", Postings: []Posting{{"buyer:x", -1000}, {"escrow:o1", 1000}}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for i := 0; i < 40; i++ {
		wg.Go(func() {
			_, err := l.Post(ctx, Tx{Key: fmt.Sprintf("charge:%d", i), Postings: []Posting{{"escrow:o1", -70}, {"seller:s", 70}}, NonNegative: []string{"escrow:o1"}})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrInsufficient):
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
	if b, _ := l.Balance(ctx, "escrow:o1"); b != 1000-14*70 {
		t.Errorf("escrow %d, want %d", b, 1000-14*70)
	}
	if err := l.Check(ctx); err != nil {
		t.Error(err)
	}
}

func TestAppendOnly(t *testing.T) {
	ctx := context.Background()
	l := open(t)
	if _, err := l.Post(ctx, Tx{Key: "k", Postings: []Posting{{"a", 1}, {"b", -1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.db.ExecContext(ctx, `UPDATE postings SET amount = 2`); err == nil {
		t.Error("update of a posting succeeded")
	}
	if _, err := l.db.ExecContext(ctx, `DELETE FROM entries`); err == nil {
		t.Error("delete of an entry succeeded")
	}
}

// TestCheckFindsTamperedBalance changes a kept balance behind the ledger's back.
func TestCheckFindsTamperedBalance(t *testing.T) {
	ctx := context.Background()
	l := open(t)
	l.Post(ctx, Tx{Key: "k", Postings: []Posting{{"a", 1}, {"b", -1}}})
	l.db.ExecContext(ctx, `UPDATE balances SET balance = 5 WHERE account = 'a'`)
	if err := l.Check(ctx); err == nil {
		t.Error("Check passed a tampered balance")
	}
}

func TestRandomEntriesBalance(t *testing.T) {
	ctx := context.Background()
	l := open(t)
	r := rand.New(rand.NewPCG(1, 2))
	want := map[string]int64{}
	for i := 0; i < 300; i++ {
		n := 2 + r.IntN(5)
		var ps []Posting
		var sum int64
		for j := 0; j < n-1; j++ {
			a := fmt.Sprintf("acct:%d", r.IntN(8))
			v := r.Int64N(2_000_000) - 1_000_000
			if v == 0 {
				v = 1
			}
			ps = append(ps, Posting{a, v})
			sum += v
		}
		ps = append(ps, Posting{"sink", -sum})
		if sum == 0 {
			continue
		}
		if _, err := l.Post(ctx, Tx{Key: fmt.Sprint(i), Postings: ps}); err != nil {
			if hashgrid.ErrorCode(err) == hashgrid.EINVALID {
				continue // merged to nothing
			}
			t.Fatal(err)
		}
		for _, p := range ps {
			want[p.Account] += p.Amount
		}
	}
	for a, w := range want {
		if got, _ := l.Balance(ctx, a); got != w {
			t.Errorf("%s: %d, want %d", a, got, w)
		}
	}
	if err := l.Check(ctx); err != nil {
		t.Error(err)
	}
}

// TestTwoHandlesShareOneFile: the pool and the market are two processes posting to
// one ledger file. Each posting transaction takes the write lock when it begins
// (_txlock=immediate), so a writer waits for the other (busy_timeout) instead of
// failing with SQLITE_BUSY when its read turns into a write.
func TestTwoHandlesShareOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	var ls []*Ledger
	for range 2 {
		l, err := Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ls = append(ls, l)
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i, l := range ls {
		wg.Go(func() {
			for j := range n {
				tx := Tx{Key: fmt.Sprintf("h%d:%d", i, j), Postings: []Posting{{"a", 1}, {"b", -1}}}
				if j%2 == 0 {
					_, err := l.Post(ctx, tx)
					errs <- err
				} else {
					_, err := l.PostAll(ctx, []Tx{tx})
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := ls[1].Balance(ctx, "a"); b != 2*n {
		t.Errorf("balance %d, want %d", b, 2*n)
	}
	if err := ls[0].Check(ctx); err != nil {
		t.Fatal(err)
	}
}
