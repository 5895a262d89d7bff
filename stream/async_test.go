package stream

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
)

// TestAppendAsync: callbacks come once each, in commit order from one goroutine, with
// the sequence the record is stored at, only after it is durable.
func TestAppendAsync(t *testing.T) {
	l, fs := openFaulty(t, t.TempDir(), Options{})
	const n = 2000
	var mu sync.Mutex
	got := map[string]uint64{}
	var order []uint64
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		data := []byte(fmt.Sprintf("async-%d", i))
		l.AppendAsync(data, func(seq uint64, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("record %d: %v", i, err)
				return
			}
			if last := l.LastSeq(); seq > last {
				t.Errorf("record %d answered at seq %d before it was durable (last %d)", i, seq, last)
			}
			mu.Lock()
			got[fmt.Sprintf("async-%d", i)] = seq
			order = append(order, seq)
			mu.Unlock()
		})
	}
	wg.Wait()
	for i := 1; i < len(order); i++ {
		if order[i] <= order[i-1] {
			t.Fatalf("callbacks out of commit order: seq %d after %d", order[i], order[i-1])
		}
	}
	if syncs := fs.syncs.Load(); syncs >= n/2 {
		t.Errorf("%d async appends took %d fsyncs, want far fewer (group commit)", n, syncs)
	}
	recs := readAll(t, l, 0, 500)
	if len(recs) != n {
		t.Fatalf("stored %d records, want %d", len(recs), n)
	}
	for _, r := range recs {
		if got[string(r.Data)] != r.Seq {
			t.Fatalf("%s stored at %d, callback said %d", r.Data, r.Seq, got[string(r.Data)])
		}
	}
}

// TestAppendAsyncErrors: refused records are answered at once; a failed write answers
// every record of the batch with the error and stores none of them.
func TestAppendAsyncErrors(t *testing.T) {
	l, fs := openFaulty(t, t.TempDir(), Options{MaxRecordSize: 8})
	answered := false
	l.AppendAsync(make([]byte, 9), func(seq uint64, err error) {
		answered = true
		if seq != 0 || !errors.Is(err, ErrTooLarge) {
			t.Errorf("too large: got %d, %v; want 0, ErrTooLarge", seq, err)
		}
	})
	if !answered {
		t.Fatal("a too large record was not answered before AppendAsync returned")
	}
	enospc := error(syscall.ENOSPC)
	fs.writeErr.Store(&enospc)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		l.AppendAsync([]byte("lost"), func(seq uint64, err error) {
			defer wg.Done()
			if seq != 0 || !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("full disk: got %d, %v; want 0, ENOSPC", seq, err)
			}
		})
	}
	wg.Wait()
	if last := l.LastSeq(); last != 0 {
		t.Errorf("LastSeq after failed appends: %d, want 0", last)
	}
	l.Close()
	answered = false
	l.AppendAsync([]byte("late"), func(seq uint64, err error) {
		answered = true
		if !errors.Is(err, ErrClosed) {
			t.Errorf("after Close: got %v, want ErrClosed", err)
		}
	})
	if !answered {
		t.Error("an append to a closed log was not answered at once")
	}
}
