package stream

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func openLog(tb testing.TB, dir string, opts Options) *Log {
	tb.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		tb.Fatalf("Open(%s): %v", dir, err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

func recordData(i int) []byte { return []byte(fmt.Sprintf("record-%06d", i)) }

func mustAppend(tb testing.TB, l *Log, data []byte) uint64 {
	tb.Helper()
	seq, err := l.Append(context.Background(), data)
	if err != nil {
		tb.Fatalf("Append(%q): %v", data, err)
	}
	return seq
}

func readAll(tb testing.TB, l *Log, after uint64, max int) []Record {
	tb.Helper()
	var out []Record
	for {
		recs, err := l.Read(context.Background(), after, max)
		if err != nil {
			tb.Fatalf("Read(%d, %d): %v", after, max, err)
		}
		if len(recs) > max {
			tb.Fatalf("Read(%d, %d) returned %d records", after, max, len(recs))
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		after = recs[len(recs)-1].Seq
	}
}

// checkRecords wants records first..first+len(want)-1 holding want's data.
func checkRecords(tb testing.TB, got []Record, first uint64, want [][]byte) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.Seq != first+uint64(i) || !bytes.Equal(r.Data, want[i]) {
			tb.Fatalf("record %d: got seq %d %q, want seq %d %q", i, r.Seq, r.Data, first+uint64(i), want[i])
		}
	}
}

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	if got := l.LastSeq(); got != 0 {
		t.Fatalf("LastSeq of empty log: got %d, want 0", got)
	}
	if recs, err := l.Read(context.Background(), 0, 10); err != nil || len(recs) != 0 {
		t.Fatalf("Read of empty log: got %v, %v", recs, err)
	}
	var want [][]byte
	for i := range 300 {
		data := recordData(i)
		if i == 7 {
			data = nil // empty records are records too
		}
		want = append(want, data)
		if seq := mustAppend(t, l, data); seq != uint64(i+1) {
			t.Fatalf("Append %d: got seq %d, want %d", i, seq, i+1)
		}
	}
	checkRecords(t, readAll(t, l, 0, 17), 1, fixNil(want))
	checkRecords(t, readAll(t, l, 200, 1000), 201, fixNil(want[200:]))
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	l = openLog(t, dir, Options{})
	if got := l.LastSeq(); got != 300 {
		t.Fatalf("LastSeq after reopen: got %d, want 300", got)
	}
	if seq := mustAppend(t, l, []byte("after reopen")); seq != 301 {
		t.Fatalf("Append after reopen: got seq %d, want 301", seq)
	}
	want = append(want, []byte("after reopen"))
	checkRecords(t, readAll(t, l, 0, 64), 1, fixNil(want))
}

// fixNil turns nil records into empty ones, as Read returns them.
func fixNil(in [][]byte) [][]byte {
	out := make([][]byte, len(in))
	for i, b := range in {
		out[i] = append([]byte{}, b...)
	}
	return out
}

func TestReadArguments(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	mustAppend(t, l, []byte("x"))
	if _, err := l.Read(context.Background(), 0, 0); err == nil {
		t.Fatalf("Read with max 0: got nil error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Read(ctx, 0, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read with cancelled ctx: got %v, want context.Canceled", err)
	}
	if _, err := l.Append(context.Background(), make([]byte, DefaultMaxRecordSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append of oversized record: got %v, want ErrTooLarge", err)
	}
}

func TestRotateAndPrune(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: MinSegmentSize}
	l := openLog(t, dir, opts)
	var want [][]byte
	for i := range 1000 {
		want = append(want, recordData(i))
		mustAppend(t, l, want[i])
	}
	segs := l.Segments()
	if segs < 5 {
		t.Fatalf("Segments after 1000 records of %d-byte segments: got %d, want at least 5", MinSegmentSize, segs)
	}
	// Every starting point, crossing segment boundaries and index strides.
	for after := 0; after <= 1000; after += 13 {
		checkRecords(t, readAll(t, l, uint64(after), 29), uint64(after+1), want[after:])
	}
	for _, e := range mustReadDir(t, dir) {
		if fi, _ := e.Info(); filepath.Ext(e.Name()) == segmentExt && fi.Size() > MinSegmentSize+int64(frameHdrLen+len(want[0])) {
			t.Errorf("segment %s is %d bytes, more than one record beyond %d", e.Name(), fi.Size(), MinSegmentSize)
		}
	}

	if n, err := l.Prune(1); err != nil || n != 0 {
		t.Fatalf("Prune(1): got %d, %v; want 0, nil", n, err)
	}
	n, err := l.Prune(500)
	if err != nil || n == 0 {
		t.Fatalf("Prune(500): got %d, %v; want some segments removed", n, err)
	}
	first := l.FirstSeq()
	if first > 500 || first == 1 {
		t.Fatalf("FirstSeq after Prune(500): got %d, want in (1, 500]", first)
	}
	if got := l.Segments(); got != segs-n {
		t.Fatalf("Segments after pruning %d: got %d, want %d", n, got, segs-n)
	}
	if _, err := l.Read(context.Background(), first-2, 10); !errors.Is(err, ErrPruned) {
		t.Fatalf("Read before FirstSeq: got %v, want ErrPruned", err)
	}
	checkRecords(t, readAll(t, l, first-1, 50), first, want[first-1:])
	// Pruning everything keeps the newest segment and the numbering.
	if _, err := l.Prune(2000); err != nil {
		t.Fatalf("Prune(2000): %v", err)
	}
	if got := l.Segments(); got != 1 {
		t.Fatalf("Segments after pruning all: got %d, want 1", got)
	}
	l.Close()

	l = openLog(t, dir, opts)
	if got := l.LastSeq(); got != 1000 {
		t.Fatalf("LastSeq after prune and reopen: got %d, want 1000", got)
	}
	if seq := mustAppend(t, l, []byte("next")); seq != 1001 {
		t.Fatalf("Append after prune and reopen: got %d, want 1001", seq)
	}
}

func mustReadDir(tb testing.TB, dir string) []os.DirEntry {
	tb.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return es
}

func TestFirstSeq(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{FirstSeq: 1000})
	if got := l.LastSeq(); got != 999 {
		t.Fatalf("LastSeq of empty log from 1000: got %d, want 999", got)
	}
	if seq := mustAppend(t, l, []byte("a")); seq != 1000 {
		t.Fatalf("first Append: got %d, want 1000", seq)
	}
	l.Close()
	// FirstSeq only applies to an empty directory.
	l = openLog(t, dir, Options{FirstSeq: 5})
	if seq := mustAppend(t, l, []byte("b")); seq != 1001 {
		t.Fatalf("Append after reopen: got %d, want 1001", seq)
	}
}

// tailSegment returns the path of the newest segment in dir.
func tailSegment(tb testing.TB, dir string) string {
	tb.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	if err != nil || len(matches) == 0 {
		tb.Fatalf("no segments in %s: %v", dir, err)
	}
	return matches[len(matches)-1]
}

func appendToFile(tb testing.TB, path string, b []byte) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

func TestTornTail(t *testing.T) {
	good := appendFrame(nil, 11, []byte("eleventh record"))
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-1] ^= 1
	wrongSeq := appendFrame(nil, 12, []byte("eleventh record"))
	huge := make([]byte, frameHdrLen)
	binary.LittleEndian.PutUint32(huge, maxFrameData+1)
	tests := []struct {
		name    string
		garbage []byte
		kept    uint64 // LastSeq after recovery
	}{
		{"half header", good[:7], 10},
		{"header only", good[:frameHdrLen], 10},
		{"half data", good[:len(good)-3], 10},
		{"bad crc", badCRC, 10},
		{"wrong sequence", wrongSeq, 10},
		{"huge length", huge, 10},
		{"zeros", make([]byte, 100), 10},
		{"good then half", append(bytes.Clone(good), good[:9]...), 11},
		{"good then bad crc", append(bytes.Clone(good), badCRC...), 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, Options{})
			var want [][]byte
			for i := range 10 {
				want = append(want, recordData(i))
				mustAppend(t, l, want[i])
			}
			l.Close()
			path := tailSegment(t, dir)
			fi, _ := os.Stat(path)
			appendToFile(t, path, tt.garbage)

			l = openLog(t, dir, Options{})
			if got := l.LastSeq(); got != tt.kept {
				t.Fatalf("LastSeq after recovery: got %d, want %d", got, tt.kept)
			}
			wantSize := fi.Size()
			if tt.kept == 11 {
				want = append(want, []byte("eleventh record"))
				wantSize += int64(len(good))
			}
			if fi2, _ := os.Stat(path); fi2.Size() != wantSize {
				t.Fatalf("segment size after recovery: got %d, want %d", fi2.Size(), wantSize)
			}
			next := []byte("after recovery")
			if seq := mustAppend(t, l, next); seq != tt.kept+1 {
				t.Fatalf("Append after recovery: got seq %d, want %d", seq, tt.kept+1)
			}
			want = append(want, next)
			checkRecords(t, readAll(t, l, 0, 100), 1, want)
			l.Close()
			l = openLog(t, dir, Options{})
			checkRecords(t, readAll(t, l, 0, 100), 1, want)
		})
	}
}

func TestTornSegmentHeader(t *testing.T) {
	for _, size := range []int{0, 3, int(segmentHdrLen)} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, Options{SegmentSize: MinSegmentSize})
			for i := range 400 {
				mustAppend(t, l, recordData(i))
			}
			last := l.LastSeq()
			l.Close()
			// A crash just after creating the next segment, before its header was durable.
			if err := os.WriteFile(filepath.Join(dir, segmentName(last+1)), make([]byte, size), 0o644); err != nil {
				t.Fatal(err)
			}
			l = openLog(t, dir, Options{SegmentSize: MinSegmentSize})
			if got := l.LastSeq(); got != last {
				t.Fatalf("LastSeq: got %d, want %d", got, last)
			}
			if seq := mustAppend(t, l, []byte("x")); seq != last+1 {
				t.Fatalf("Append: got %d, want %d", seq, last+1)
			}
			if got := len(readAll(t, l, 0, 1000)); got != int(last+1) {
				t.Fatalf("records: got %d, want %d", got, last+1)
			}
		})
	}
}

func TestCorruptionRefused(t *testing.T) {
	setup := func(t *testing.T) (dir string, segs []string) {
		dir = t.TempDir()
		l := openLog(t, dir, Options{SegmentSize: MinSegmentSize})
		for i := range 400 {
			mustAppend(t, l, recordData(i))
		}
		l.Close()
		segs, _ = filepath.Glob(filepath.Join(dir, "*"+segmentExt))
		if len(segs) < 2 {
			t.Fatalf("want several segments, got %d", len(segs))
		}
		return dir, segs
	}
	t.Run("old segment bit flip", func(t *testing.T) {
		dir, segs := setup(t)
		b, _ := os.ReadFile(segs[0])
		b[len(b)-2] ^= 0x10
		os.WriteFile(segs[0], b, 0o644)
		if _, err := Open(dir, Options{}); err == nil || !bytesContains(err.Error(), "corrupt record") {
			t.Fatalf("Open with a damaged old segment: got %v, want corrupt record error", err)
		}
	})
	t.Run("missing middle segment", func(t *testing.T) {
		dir, segs := setup(t)
		os.Remove(segs[1])
		if _, err := Open(dir, Options{}); err == nil || !bytesContains(err.Error(), "starts at") {
			t.Fatalf("Open with a gap: got %v, want gap error", err)
		}
	})
	t.Run("foreign header", func(t *testing.T) {
		dir, segs := setup(t)
		os.WriteFile(segs[len(segs)-1], []byte("not a segment at all"), 0o644)
		if _, err := Open(dir, Options{}); err == nil || !bytesContains(err.Error(), "not a stream segment") {
			t.Fatalf("Open with a foreign file: got %v", err)
		}
	})
	t.Run("stray file", func(t *testing.T) {
		dir, _ := setup(t)
		os.WriteFile(filepath.Join(dir, "12.seg"), nil, 0o644)
		if _, err := Open(dir, Options{}); err == nil || !bytesContains(err.Error(), "unexpected file") {
			t.Fatalf("Open with a stray file: got %v", err)
		}
	})
}

func bytesContains(s, sub string) bool { return bytes.Contains([]byte(s), []byte(sub)) }

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	openLog(t, dir, Options{})
	if l, err := Open(dir, Options{}); err == nil {
		l.Close()
		t.Fatalf("second Open of %s: got nil error", dir)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{SegmentSize: 100}, {MaxRecordSize: maxFrameData + 1}, {MaxBatch: -1}, {MaxBatchBytes: -1}} {
		if l, err := Open(t.TempDir(), o); err == nil {
			l.Close()
			t.Errorf("Open with %+v: got nil error", o)
		}
	}
}

// faults makes the files of a log fail on demand.
type faults struct {
	writeErr atomic.Pointer[error]
	syncErr  atomic.Pointer[error]
	syncs    atomic.Int64
}

type faultyFile struct {
	*os.File
	f *faults
}

func (ff faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if err := ff.f.writeErr.Load(); err != nil {
		// A full disk typically takes part of the write first.
		n, _ := ff.File.WriteAt(p[:len(p)/2], off)
		return n, *err
	}
	return ff.File.WriteAt(p, off)
}

func (ff faultyFile) Sync() error {
	ff.f.syncs.Add(1)
	if err := ff.f.syncErr.Load(); err != nil {
		return *err
	}
	return ff.File.Sync()
}

func openFaulty(tb testing.TB, dir string, opts Options) (*Log, *faults) {
	tb.Helper()
	fs := &faults{}
	l, err := open(dir, opts, func(name string, flag int, perm os.FileMode) (segmentFile, error) {
		f, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return faultyFile{f, fs}, nil
	})
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { l.Close() })
	return l, fs
}

func TestWriteErrorFailsBatch(t *testing.T) {
	dir := t.TempDir()
	l, fs := openFaulty(t, dir, Options{})
	for i := range 5 {
		mustAppend(t, l, recordData(i))
	}
	enospc := error(syscall.ENOSPC)
	fs.writeErr.Store(&enospc)
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = l.Append(context.Background(), []byte("lost"))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Append %d on a full disk: got %v, want ENOSPC", i, err)
		}
	}
	if got := l.LastSeq(); got != 5 {
		t.Fatalf("LastSeq after failed appends: got %d, want 5", got)
	}
	// Space comes back: appends continue with the next sequence, after no garbage.
	fs.writeErr.Store(nil)
	if seq := mustAppend(t, l, []byte("back")); seq != 6 {
		t.Fatalf("Append after the disk recovered: got seq %d, want 6", seq)
	}
	l.Close()
	l = openLog(t, dir, Options{})
	want := [][]byte{recordData(0), recordData(1), recordData(2), recordData(3), recordData(4), []byte("back")}
	checkRecords(t, readAll(t, l, 0, 100), 1, want)
}

func TestSyncErrorIsSticky(t *testing.T) {
	dir := t.TempDir()
	l, fs := openFaulty(t, dir, Options{})
	mustAppend(t, l, []byte("kept"))
	eio := error(syscall.EIO)
	fs.syncErr.Store(&eio)
	if _, err := l.Append(context.Background(), []byte("x")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Append with failing fsync: got %v, want EIO", err)
	}
	fs.syncErr.Store(nil)
	if _, err := l.Append(context.Background(), []byte("y")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Append after a failed fsync: got %v, want the sticky EIO", err)
	}
	if got := l.LastSeq(); got != 1 {
		t.Fatalf("LastSeq: got %d, want 1", got)
	}
	l.Close()
	l = openLog(t, dir, Options{})
	if seq := mustAppend(t, l, []byte("z")); seq < 2 {
		t.Fatalf("Append after reopen: got seq %d", seq)
	}
}

func TestGroupCommit(t *testing.T) {
	l, fs := openFaulty(t, t.TempDir(), Options{})
	before := fs.syncs.Load()
	const writers, each = 50, 40
	var wg sync.WaitGroup
	seqs := make([][]uint64, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				seq, err := l.Append(context.Background(), []byte(fmt.Sprintf("%d-%d", w, i)))
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				seqs[w] = append(seqs[w], seq)
			}
		})
	}
	wg.Wait()
	syncs := fs.syncs.Load() - before
	if syncs >= writers*each/2 {
		t.Errorf("fsyncs for %d concurrent appends: got %d, want far fewer (group commit)", writers*each, syncs)
	}
	t.Logf("%d appends, %d fsyncs", writers*each, syncs)
	byData := map[string]uint64{}
	for _, r := range readAll(t, l, 0, 333) {
		byData[string(r.Data)] = r.Seq
	}
	if len(byData) != writers*each {
		t.Fatalf("records: got %d distinct, want %d", len(byData), writers*each)
	}
	for w := range writers {
		for i, seq := range seqs[w] {
			if got := byData[fmt.Sprintf("%d-%d", w, i)]; got != seq {
				t.Fatalf("record %d-%d: stored at %d, Append returned %d", w, i, got, seq)
			}
			if i > 0 && seq <= seqs[w][i-1] {
				t.Fatalf("appender %d: seq %d after %d", w, seq, seqs[w][i-1])
			}
		}
	}
}

func TestWaitAndClose(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on empty log: got %v, want deadline exceeded", err)
	}
	woke := make(chan error, 1)
	go func() { woke <- l.Wait(context.Background(), 0) }()
	mustAppend(t, l, []byte("a"))
	if err := <-woke; err != nil {
		t.Fatalf("Wait after Append: %v", err)
	}
	if err := l.Wait(context.Background(), 0); err != nil {
		t.Fatalf("Wait for an existing record: %v", err)
	}
	go func() { woke <- l.Wait(context.Background(), 1) }()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-woke; !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait across Close: got %v, want ErrClosed", err)
	}
	if _, err := l.Append(context.Background(), []byte("b")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: got %v, want ErrClosed", err)
	}
	if _, err := l.Read(context.Background(), 0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: got %v, want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestCloseDrains closes the log while appends are under way: every Append either
// returns a sequence that is then on disk, or ErrClosed.
func TestCloseDrains(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[uint64]string{}
	for w := range 20 {
		wg.Go(func() {
			for i := 0; ; i++ {
				data := fmt.Sprintf("%d-%d", w, i)
				seq, err := l.Append(context.Background(), []byte(data))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				acked[seq] = data
				mu.Unlock()
			}
		})
	}
	for l.LastSeq() < 200 {
		if err := l.Wait(context.Background(), l.LastSeq()); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	l = openLog(t, dir, Options{})
	got := map[uint64]string{}
	for _, r := range readAll(t, l, 0, 1000) {
		got[r.Seq] = string(r.Data)
	}
	for seq, data := range acked {
		if got[seq] != data {
			t.Fatalf("acknowledged record %d %q: after reopen got %q", seq, data, got[seq])
		}
	}
}

func TestAppendCancelled(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with cancelled ctx: got %v", err)
	}
	if got := l.LastSeq(); got != 0 {
		t.Fatalf("LastSeq after cancelled Append: got %d, want 0", got)
	}
}
