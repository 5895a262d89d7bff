package stream

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

// loadShare is a share as the pool records it under load: a bech32 address, a worker
// name, a job id, an agent and a remote address.
func loadShare(worker int, result hashgrid.ShareResult, i int) hashgrid.Share {
	sh := hashgrid.Share{
		Time:      time.Unix(1700000000, int64(i)).UTC(),
		Address:   "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
		Worker:    fmt.Sprintf("rig%03d", worker),
		JobID:     fmt.Sprintf("%x", 1000+i%7),
		Height:    840000,
		Diff:      hashgrid.DiffOne,
		Actual:    hashgrid.DiffOne / 3,
		Result:    result,
		UserAgent: "cgminer/4.12.1",
		Remote:    fmt.Sprintf("127.0.0.1:%d", 40000+worker),
	}
	sh.Hash[0], sh.Hash[1], sh.Hash[2] = byte(worker), byte(i), byte(i>>8)
	return sh
}

// dirBytes is the size of the files in dir.
func dirBytes(tb testing.TB, dir string) int64 {
	tb.Helper()
	var n int64
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range ents {
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

type countKey struct {
	worker string
	result hashgrid.ShareResult
}

// recordLoad sends 200 workers' shares through k: each worker 500 rejected (mostly low
// difficulty, some stale and duplicate) and 10 accepted. It checks that every accepted
// share was answered with a sequence only once durable, and returns what it sent.
func recordLoad(t *testing.T, k ShareSink, l *Log) (sent map[countKey]uint64, rejects int) {
	t.Helper()
	sent = map[countKey]uint64{}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for w := range 200 {
		for i := range 510 {
			res := hashgrid.ShareLowDiff
			switch {
			case i%51 == 0:
				res = hashgrid.ShareAccepted
			case i%37 == 0:
				res = hashgrid.ShareStale
			case i%29 == 0:
				res = hashgrid.ShareDuplicate
			}
			sh := loadShare(w, res, i)
			sent[countKey{sh.Worker, res}]++
			if res != hashgrid.ShareAccepted {
				rejects++
			}
			wg.Add(1)
			k.Record(&sh, func(seq uint64, err error) {
				defer wg.Done()
				if err != nil {
					bad.Add(1)
					return
				}
				if res == hashgrid.ShareAccepted && (seq == 0 || seq > l.LastSeq()) {
					// An accepted share is answered with its own record, once durable.
					bad.Add(1)
				}
			})
		}
	}
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d shares answered with an error or, accepted, without a durable record", n)
	}
	return sent, rejects
}

// Rejected shares cost the stream a bounded sample and one count record per worker and
// kind, not a record each; the counts by worker and reason stay exact and every
// accepted share is still a durable record of its own. (Before: every rejected share
// was a record, about 215 bytes with its frame.)
func TestRejectSamplingBoundsBytesKeepsCounts(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	k := NewShareSink(l, RejectSampling{Interval: time.Hour})
	sent, rejects := recordLoad(t, k, l)
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[countKey]uint64{}
	full := 0
	for _, r := range readAll(t, l, 0, 4096) {
		var sh hashgrid.Share
		if err := sh.UnmarshalBinary(r.Data); err != nil {
			t.Fatalf("record %d: %v", r.Seq, err)
		}
		if sh.Result != hashgrid.ShareAccepted && sh.Repeats == 0 {
			full++
		}
		got[countKey{sh.Worker, sh.Result}] += 1 + sh.Repeats
	}
	if len(got) != len(sent) {
		t.Errorf("%d worker and result pairs recorded, want %d", len(got), len(sent))
	}
	for key, n := range sent {
		if got[key] != n {
			t.Errorf("%s %s: %d recorded, want %d", key.worker, key.result, got[key], n)
		}
	}
	if max := 200 * DefaultRejectSampling.SamplesPerWorker; full > max+200*3 {
		t.Errorf("%d rejected shares written alone, want at most %d samples and one per kind", full, max)
	}
	l.Close()
	after := float64(dirBytes(t, dir))

	// The same load through a sink that writes every share, as the pool did before.
	dir2 := t.TempDir()
	l2 := openLog(t, dir2, Options{})
	recordLoad(t, ShareSink{S: l2}, l2)
	l2.Close()
	before := float64(dirBytes(t, dir2))
	accepted := float64(200 * 10)
	perAccepted := before / float64(rejects+200*10)
	// The accepted shares cost the same in both; what is left is the rejects' cost.
	b, a := (before-accepted*perAccepted)/float64(rejects), (after-accepted*perAccepted)/float64(rejects)
	t.Logf("%d rejected and %d accepted shares: %.0f bytes on disk, %.1f B per rejected share, sampled (before: %.0f bytes, %.1f B each)",
		rejects, int(accepted), after, a, before, b)
	if a > 4 {
		t.Errorf("%.1f B on disk per rejected share, want at most 4", a)
	}
}

// Held rejections are written when their interval ends, by the timer with no further
// share, and the next interval samples afresh.
func TestRejectSamplingIntervalTimer(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	k := NewShareSink(l, RejectSampling{Interval: 50 * time.Millisecond, SamplesPerWorker: 2})
	defer k.Close()
	held := 0
	for i := range 10 {
		sh := loadShare(1, hashgrid.ShareLowDiff, i)
		k.Record(&sh, func(seq uint64, err error) {
			if err != nil {
				t.Errorf("record: %v", err)
			}
			if seq == 0 {
				held++
			}
		})
	}
	if held != 8 {
		t.Fatalf("%d of 10 held, want 8 past the 2 samples", held)
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.LastSeq() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("held rejections not written after their interval: %d records", l.LastSeq())
		}
		time.Sleep(5 * time.Millisecond)
	}
	recs := readAll(t, l, 0, 10)
	var last hashgrid.Share
	if err := last.UnmarshalBinary(recs[2].Data); err != nil {
		t.Fatal(err)
	}
	if last.Repeats != 7 || last.Hash[1] != 9 {
		t.Errorf("count record: repeats %d, hash of share %d; want 7 repeats on the latest (9)", last.Repeats, last.Hash[1])
	}
	// A new interval: samples again.
	sh := loadShare(1, hashgrid.ShareLowDiff, 10)
	k.Record(&sh, func(seq uint64, err error) {
		if seq == 0 || err != nil {
			t.Errorf("first reject of a new interval: seq %d, err %v; want it written", seq, err)
		}
	})
}

// Many worker names buy neither more full samples than MaxSamples nor more held
// workers than MaxWorkers: the held counts are written early instead.
func TestRejectSamplingBounds(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	k := NewShareSink(l, RejectSampling{Interval: time.Hour, SamplesPerWorker: 1, MaxSamples: 5, MaxWorkers: 20})
	var wg sync.WaitGroup
	for w := range 30 {
		for i := range 3 {
			sh := loadShare(w, hashgrid.ShareLowDiff, i)
			wg.Add(1)
			k.Record(&sh, func(uint64, error) { wg.Done() })
		}
	}
	wg.Wait()
	// Workers 0..4 got a sample each; at worker 20 the 20 workers' held rejections
	// were written (a count record each) and a new interval gave workers 20..24 a
	// sample each.
	if got := l.LastSeq(); got != 5+20+5 {
		t.Errorf("%d records before Close, want 30", got)
	}
	k.Close()
	var total uint64
	for _, r := range readAll(t, l, 0, 100) {
		var sh hashgrid.Share
		if err := sh.UnmarshalBinary(r.Data); err != nil {
			t.Fatal(err)
		}
		total += 1 + sh.Repeats
	}
	if total != 90 {
		t.Errorf("%d rejections recorded, want 90", total)
	}
}
