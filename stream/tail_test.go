package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"
)

// runTail starts Tailer.Run in a goroutine owned by the test and returns its result.
func runTail(t *testing.T, ctx context.Context, tl Tailer, s Stream, after uint64, fn func([]Record) error) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { done <- tl.Run(ctx, s, after, fn) })
	t.Cleanup(wg.Wait)
	return done
}

func TestTailDelivers(t *testing.T) {
	t.Run("in turn", func(t *testing.T) { testTailDelivers(t, false) })
	t.Run("read ahead", func(t *testing.T) { testTailDelivers(t, true) })
}

func testTailDelivers(t *testing.T, readAhead bool) {
	l := openLog(t, t.TempDir(), Options{})
	for i := range 30 {
		mustAppend(t, l, recordData(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan Record, 1000)
	var sizes []int
	done := runTail(t, ctx, Tailer{Batch: 7, ReadAhead: readAhead}, l, 10, func(recs []Record) error {
		sizes = append(sizes, len(recs))
		for _, r := range recs {
			got <- r
		}
		return nil
	})
	for i := 30; i < 100; i++ {
		mustAppend(t, l, recordData(i))
	}
	deadline := time.After(10 * time.Second)
	for want := uint64(11); want <= 100; want++ {
		select {
		case r := <-got:
			if r.Seq != want || string(r.Data) != string(recordData(int(want-1))) {
				t.Fatalf("tail: got record %d %q, want %d %q", r.Seq, r.Data, want, recordData(int(want-1)))
			}
		case <-deadline:
			t.Fatalf("tail: record %d not delivered", want)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: got %v, want context.Canceled", err)
	}
	if m := slices.Max(sizes); m > 7 {
		t.Fatalf("batch of %d records, limit 7", m)
	}
	select {
	case r := <-got:
		t.Fatalf("extra record %d delivered", r.Seq)
	default:
	}
}

func TestTailRetriesWithoutSkipping(t *testing.T) {
	t.Run("in turn", func(t *testing.T) { testTailRetries(t, false) })
	// Reading ahead, the next batch is read while the store fails: it waits, and the
	// failed batch is offered again first.
	t.Run("read ahead", func(t *testing.T) { testTailRetries(t, true) })
}

func testTailRetries(t *testing.T, readAhead bool) {
	l := openLog(t, t.TempDir(), Options{})
	for i := range 12 {
		mustAppend(t, l, recordData(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls []uint64 // first seq of every call
	stored := make(chan uint64, 100)
	failures := 0
	start := time.Now()
	done := runTail(t, ctx, Tailer{Batch: 5, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, ReadAhead: readAhead}, l, 0,
		func(recs []Record) error {
			calls = append(calls, recs[0].Seq)
			// The store is down for the second batch's first four attempts.
			if recs[0].Seq == 6 && failures < 4 {
				failures++
				return fmt.Errorf("database is locked")
			}
			for _, r := range recs {
				stored <- r.Seq
			}
			return nil
		})
	for want := uint64(1); want <= 12; want++ {
		select {
		case seq := <-stored:
			if seq != want {
				t.Fatalf("stored %d, want %d", seq, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("record %d never stored", want)
		}
	}
	cancel()
	<-done
	if want := []uint64{1, 6, 6, 6, 6, 6, 11}; !slices.Equal(calls, want) {
		t.Fatalf("calls by first seq: got %v, want %v", calls, want)
	}
	// 1+2+4+4 ms of backoff at least.
	if el := time.Since(start); el < 11*time.Millisecond {
		t.Fatalf("four retries took %v, want at least 11ms of backoff", el)
	}
}

func TestTailPermanentError(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	mustAppend(t, l, []byte("poison"))
	bad := errors.New("cannot decode")
	done := runTail(t, context.Background(), Tailer{}, l, 0, func(recs []Record) error { return Permanent(bad) })
	select {
	case err := <-done:
		if !errors.Is(err, bad) {
			t.Fatalf("Run with a permanent error: got %v, want it wrapped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return on a permanent error")
	}
}

func TestTailStopsOnCloseAndCancel(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	done := runTail(t, context.Background(), Tailer{}, l, 0, func([]Record) error { return nil })
	l.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Run across Close: got %v, want ErrClosed", err)
	}

	// Cancelled while backing off from a failing consumer.
	l = openLog(t, t.TempDir(), Options{})
	mustAppend(t, l, []byte("x"))
	ctx, cancel := context.WithCancel(context.Background())
	failed := make(chan struct{}, 1)
	done = runTail(t, ctx, Tailer{MinBackoff: time.Hour}, l, 0, func([]Record) error {
		failed <- struct{}{}
		return errors.New("down")
	})
	<-failed
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run cancelled during backoff: got %v", err)
	}
}

func TestTailFunc(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	for i := range 3 {
		mustAppend(t, l, recordData(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var got []uint64
	err := Tail(ctx, l, 1, 2, func(recs []Record) error {
		for _, r := range recs {
			got = append(got, r.Seq)
		}
		if len(got) == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("Tail: got %v, %v; want [2 3], context.Canceled", got, err)
	}
}

// BenchmarkAppend measures durable appends of 128-byte records (about one encoded share)
// with 1, 16 and 200 concurrent appenders, reporting throughput and append latency.
func BenchmarkAppend(b *testing.B) {
	rec := make([]byte, 128)
	for _, n := range []int{1, 16, 200} {
		b.Run(fmt.Sprintf("appenders=%d", n), func(b *testing.B) {
			l, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			lat := make([][]time.Duration, n)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := range n {
				count := b.N / n
				if w < b.N%n {
					count++
				}
				wg.Go(func() {
					ls := make([]time.Duration, 0, count)
					for range count {
						t0 := time.Now()
						if _, err := l.Append(context.Background(), rec); err != nil {
							b.Error(err)
							return
						}
						ls = append(ls, time.Since(t0))
					}
					lat[w] = ls
				})
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			all := slices.Concat(lat...)
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			b.ReportMetric(float64(b.N)/el.Seconds(), "appends/s")
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}

// readCounter is a Stream that tells of each Read.
type readCounter struct {
	Stream
	reads chan uint64 // the after of each Read
}

func (r readCounter) Read(ctx context.Context, after uint64, max int) ([]Record, error) {
	select {
	case r.reads <- after:
	default:
	}
	return r.Stream.Read(ctx, after, max)
}

// With ReadAhead, the next batch is read while fn still works on the last: fn here
// waits for that read before it returns, which without read-ahead never comes.
func TestTailReadsAhead(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	for i := range 10 {
		mustAppend(t, l, recordData(i))
	}
	rc := readCounter{Stream: l, reads: make(chan uint64, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	overlapped := make(chan bool, 1)
	done := runTail(t, ctx, Tailer{Batch: 5, ReadAhead: true}, rc, 0, func(recs []Record) error {
		if recs[0].Seq != 1 {
			return nil
		}
		for {
			select {
			case after := <-rc.reads:
				if after == 5 {
					overlapped <- true
					return nil
				}
			case <-time.After(5 * time.Second):
				overlapped <- false
				return nil
			}
		}
	})
	if !<-overlapped {
		t.Fatal("the batch after 5 was not read while the first was being consumed")
	}
	cancel()
	<-done
}
