package ledger

import (
	"context"
	"errors"
	"testing"

	"github.com/hashgrid/hashgrid"
)

func TestPostAllIsAtomicAndIdempotent(t *testing.T) {
	ctx := context.Background()
	l := open(t)
	if _, err := l.Post(ctx, Tx{Key: "fund", Postings: []Posting{{"pool:capital", -100}, {"pool:funds", 100}}}); err != nil {
		t.Fatal(err)
	}
	credit := func(key string, amt int64) Tx {
		return Tx{Key: key, Postings: []Posting{{"pool:funds", -amt}, {"miner:a", amt}}, NonNegative: []string{"pool:funds"}}
	}
	es, err := l.PostAll(ctx, []Tx{credit("pps:1", 30), credit("pps:2", 30)})
	if err != nil || len(es) != 2 || es[0].ID == 0 {
		t.Fatalf("PostAll = %+v, %v", es, err)
	}
	// Replaying the same batch changes nothing.
	if _, err := l.PostAll(ctx, []Tx{credit("pps:1", 30), credit("pps:2", 30)}); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if got, _ := l.Balance(ctx, "miner:a"); got != 60 {
		t.Errorf("miner:a = %d after replay, want 60", got)
	}
	// A batch whose last entry would overdraw leaves no entry of it behind.
	_, err = l.PostAll(ctx, []Tx{credit("pps:3", 30), credit("pps:4", 30)})
	if !errors.Is(err, ErrInsufficient) || hashgrid.ErrorCode(err) != hashgrid.ECONFLICT {
		t.Fatalf("overdraw: err = %v, want ErrInsufficient", err)
	}
	if _, err := l.Entry(ctx, "pps:3"); hashgrid.ErrorCode(err) != hashgrid.ENOTFOUND {
		t.Errorf("pps:3 posted by a failed batch: %v", err)
	}
	if got, _ := l.Balance(ctx, "pool:funds"); got != 40 {
		t.Errorf("pool:funds = %d, want 40", got)
	}
	// Same key, other amounts: conflict, nothing written.
	if _, err := l.PostAll(ctx, []Tx{credit("pps:5", 1), credit("pps:1", 31)}); hashgrid.ErrorCode(err) != hashgrid.ECONFLICT {
		t.Errorf("conflicting replay: err = %v", err)
	}
	if _, err := l.Entry(ctx, "pps:5"); hashgrid.ErrorCode(err) != hashgrid.ENOTFOUND {
		t.Errorf("pps:5 posted by a failed batch")
	}
	if _, err := l.PostAll(ctx, []Tx{credit("d", 1), credit("d", 1)}); hashgrid.ErrorCode(err) != hashgrid.EINVALID {
		t.Errorf("duplicate key in batch: err = %v", err)
	}
	if err := l.Check(ctx); err != nil {
		t.Error(err)
	}
}
