package postgres

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

// TestTwoStoresOneDatabase writes the same shares through two Stores on one database,
// as two accounting processes would during a hand-over, each in its own batch sizes
// and order: every share is stored and counted once.
func TestTwoStoresOneDatabase(t *testing.T) {
	ctx := context.Background()
	url := freshDatabase(t)
	var stores [2]*Store
	for i := range stores {
		s, err := Open(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	const n = 3000
	all := make([]hashgrid.Share, n)
	for i := range all {
		seq := uint64(i + 1)
		all[i] = hashgrid.Share{Seq: seq, Time: time.Unix(1_700_000_000+int64(seq), 0).UTC(), Address: fmt.Sprintf("a%d", seq%4),
			Diff: hashgrid.DiffOne}
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for w, size := range []int{64, 250, 97, 1000} {
		wg.Go(func() {
			batches := slices.Collect(slices.Chunk(all, size))
			if w%2 == 1 {
				slices.Reverse(batches)
			}
			for _, b := range batches {
				if err := stores[w%2].AddShares(ctx, b); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", w, err)
		}
	}
	acc, _, _, err := stores[0].Totals(ctx)
	if err != nil || acc != n {
		t.Fatalf("Totals: %d accepted, %v; want %d", acc, err, n)
	}
	got, err := stores[1].Shares(ctx, 0, n, n)
	if err != nil || len(got) != n {
		t.Fatalf("Shares: %d, %v; want %d", len(got), err, n)
	}
	for i, s := range got {
		if s.Seq != uint64(i+1) {
			t.Fatalf("Shares[%d].Seq = %d", i, s.Seq)
		}
	}
}
