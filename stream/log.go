package stream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// On-disk format. A segment file is named after the sequence of its first record
// (20 decimal digits, ".seg") and starts with segmentMagic, whose last byte is the format
// version. Records follow back to back, each framed as
//
//	length  uint32 little endian: bytes of data
//	crc     uint32 little endian: CRC32C (Castagnoli) of seq and data
//	seq     uint64 little endian
//	data    length bytes
//
// A crash can leave the last write of the newest segment torn; Open keeps the records
// before the first frame that is short or fails its CRC and cuts the rest off. Older
// segments were complete and fsynced before the next one was created, so damage there
// is reported, never repaired.
const (
	segmentMagic   = "HGSTRM\x00\x01"
	segmentHdrLen  = int64(len(segmentMagic))
	frameHdrLen    = 16
	segmentExt     = ".seg"
	lockName       = "LOCK"
	indexStride    = 64      // one index entry per this many records of a segment
	maxFrameData   = 1 << 26 // format bound on a record; MaxRecordSize may not exceed it
	readBufferSize = 64 << 10
)

// Defaults and bounds for Options.
const (
	DefaultSegmentSize   = 64 << 20
	MinSegmentSize       = 4 << 10
	DefaultMaxRecordSize = 1 << 20
	DefaultMaxBatch      = 4096
	DefaultMaxBatchBytes = 8 << 20
	// DefaultQueue is how many appends may wait for the writer before Append blocks.
	DefaultQueue = 8192
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options tunes a Log. The zero value gives the defaults.
type Options struct {
	// SegmentSize is the size at which the writer starts a new segment file. A segment
	// exceeds it by at most one batch. Prune removes whole segments only.
	SegmentSize int64
	// MaxRecordSize bounds one record's data.
	MaxRecordSize int
	// MaxBatch and MaxBatchBytes bound one group commit (one write and one fsync).
	MaxBatch      int
	MaxBatchBytes int
	// FirstSeq is the sequence of the first record of a log whose directory holds no
	// segments. A consumer that must never see a number twice sets it to one more than
	// the highest it has stored, so a lost directory cannot restart numbering at 1.
	FirstSeq uint64
	// Logger receives recovery notices (a torn tail cut off); silent if nil.
	Logger *slog.Logger
}

func (o *Options) fill() error {
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.MaxRecordSize == 0 {
		o.MaxRecordSize = DefaultMaxRecordSize
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.FirstSeq == 0 {
		o.FirstSeq = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.SegmentSize < MinSegmentSize:
		return fmt.Errorf("stream: segment size %d below minimum %d", o.SegmentSize, MinSegmentSize)
	case o.MaxRecordSize < 0 || o.MaxRecordSize > maxFrameData:
		return fmt.Errorf("stream: max record size %d outside [0, %d]", o.MaxRecordSize, maxFrameData)
	case o.MaxBatch < 1:
		return fmt.Errorf("stream: max batch %d below 1", o.MaxBatch)
	case o.MaxBatchBytes < 1:
		return fmt.Errorf("stream: max batch bytes %d below 1", o.MaxBatchBytes)
	}
	return nil
}

// segmentFile is what the log needs of a file; tests substitute one that fails.
type segmentFile interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Truncate(size int64) error
	Close() error
}

type openFileFunc func(name string, flag int, perm os.FileMode) (segmentFile, error)

func osOpenFile(name string, flag int, perm os.FileMode) (segmentFile, error) {
	return os.OpenFile(name, flag, perm)
}

type indexEntry struct {
	seq uint64
	off int64
}

// segment is one file. first never changes; next, size and index change only under
// Log.mu (write lock), by the writer goroutine, and cover durable records only.
type segment struct {
	path  string
	f     segmentFile
	first uint64
	next  uint64
	size  int64
	index []indexEntry
}

// Log is a Stream kept in segment files in one directory, for one process at a time
// (Open takes a lock file). Its methods are safe for concurrent use.
type Log struct {
	dir      string
	opts     Options
	log      *slog.Logger
	openFile openFileFunc
	unlock   func() error

	// Appends reach the writer through reqs; closeMu orders sends against Close.
	closeMu sync.RWMutex
	closing bool
	reqs    chan *appendReq
	acks    chan []*appendReq // committed or failed batches, answered by the acker
	wg      sync.WaitGroup
	done    chan struct{} // closed when Close starts

	mu     sync.RWMutex
	segs   []*segment
	last   uint64        // highest durable sequence; first-1 when empty
	notify chan struct{} // closed and replaced at every commit
	failed error         // sticky: set when an fsync failed
	closed bool

	// Owned by the writer goroutine.
	tail *segment
	buf  []byte
}

type appendReq struct {
	ctx  context.Context // nil for AppendAsync
	data []byte
	seq  uint64
	err  error
	done chan struct{}               // Append: closed when answered
	cb   func(seq uint64, err error) // AppendAsync: called when answered
}

// answer reports the request's outcome to whoever waits for it.
func (r *appendReq) answer() {
	if r.cb != nil {
		if r.err != nil {
			r.seq = 0
		}
		r.cb(r.seq, r.err)
		return
	}
	close(r.done)
}

func (r *appendReq) abandoned() error {
	if r.ctx == nil {
		return nil
	}
	return r.ctx.Err()
}

var _ Stream = (*Log)(nil)

// Open opens or creates the log in dir, recovering a torn tail, and starts its writer.
func Open(dir string, opts Options) (*Log, error) {
	return open(dir, opts, osOpenFile)
}

func open(dir string, opts Options, openFile openFileFunc) (*Log, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("stream: %w", err)
	}
	unlock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("stream: lock %s: %w", dir, err)
	}
	l := &Log{
		dir: dir, opts: opts, log: opts.Logger, openFile: openFile, unlock: unlock,
		reqs:   make(chan *appendReq, DefaultQueue),
		acks:   make(chan []*appendReq, ackQueue),
		done:   make(chan struct{}),
		notify: make(chan struct{}),
	}
	if err := l.load(); err != nil {
		l.closeFiles()
		return nil, err
	}
	l.tail = l.segs[len(l.segs)-1]
	l.last = l.tail.next - 1
	l.wg.Add(2)
	go l.writer()
	go l.acker()
	return l, nil
}

// load opens every segment in order, checks them, and cuts a torn tail.
func (l *Log) load() error {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	var firsts []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segmentExt) {
			continue
		}
		first, err := strconv.ParseUint(strings.TrimSuffix(name, segmentExt), 10, 64)
		if err != nil || first == 0 || segmentName(first) != name {
			return fmt.Errorf("stream: unexpected file %s in %s", name, l.dir)
		}
		firsts = append(firsts, first)
	}
	slices.Sort(firsts)
	for i, first := range firsts {
		isTail := i == len(firsts)-1
		seg, err := l.openSegment(first, isTail)
		if err != nil {
			return err
		}
		if n := len(l.segs); n > 0 && l.segs[n-1].next != seg.first {
			seg.f.Close()
			return fmt.Errorf("stream: %s ends at sequence %d but %s starts at %d",
				segmentName(l.segs[n-1].first), l.segs[n-1].next-1, segmentName(seg.first), seg.first)
		}
		l.segs = append(l.segs, seg)
	}
	if len(l.segs) == 0 {
		seg, err := l.createSegment(l.opts.FirstSeq)
		if err != nil {
			return err
		}
		l.segs = append(l.segs, seg)
	}
	return nil
}

func segmentName(first uint64) string { return fmt.Sprintf("%020d%s", first, segmentExt) }

func (l *Log) openSegment(first uint64, isTail bool) (*segment, error) {
	path := filepath.Join(l.dir, segmentName(first))
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("stream: %w", err)
	}
	f, err := l.openFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("stream: %w", err)
	}
	seg := &segment{path: path, f: f, first: first, next: first}
	fail := func(err error) (*segment, error) {
		f.Close()
		return nil, err
	}
	size := fi.Size()
	hdr := make([]byte, segmentHdrLen)
	n, err := f.ReadAt(hdr, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fail(fmt.Errorf("stream: %s: %w", path, err))
	}
	if n < len(hdr) || bytes.Equal(hdr, make([]byte, len(hdr))) {
		// Created but its header never reached the disk: only the newest segment may be
		// in that state, and it holds no records.
		if !isTail {
			return fail(fmt.Errorf("stream: %s: missing header", path))
		}
		l.log.Warn("stream: rewriting torn segment header", "segment", path, "size", size)
		if err := writeHeader(f); err != nil {
			return fail(fmt.Errorf("stream: %s: %w", path, err))
		}
		seg.size = segmentHdrLen
		return seg, nil
	}
	if string(hdr) != segmentMagic {
		return fail(fmt.Errorf("stream: %s: not a stream segment (header %x)", path, hdr))
	}
	end, reason := scanSegment(seg, size)
	if reason != "" {
		if !isTail {
			return fail(fmt.Errorf("stream: %s: corrupt record at offset %d: %s", path, end, reason))
		}
		l.log.Warn("stream: cutting torn tail", "segment", path, "offset", end, "dropped_bytes", size-end, "reason", reason)
		if err := f.Truncate(end); err != nil {
			return fail(fmt.Errorf("stream: %s: truncate torn tail: %w", path, err))
		}
		if err := f.Sync(); err != nil {
			return fail(fmt.Errorf("stream: %s: %w", path, err))
		}
	}
	seg.size = end
	return seg, nil
}

// scanSegment reads seg's records up to size, filling next and index. It returns the
// offset after the last good record and, if the file does not end there, why.
func scanSegment(seg *segment, size int64) (end int64, reason string) {
	r := bufio.NewReaderSize(io.NewSectionReader(seg.f, segmentHdrLen, size-segmentHdrLen), readBufferSize)
	off := segmentHdrLen
	var hdr [frameHdrLen]byte
	var data []byte
	for n := 0; ; n++ {
		if off == size {
			return off, ""
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return off, fmt.Sprintf("short frame header (%d bytes left)", size-off)
		}
		length := binary.LittleEndian.Uint32(hdr[0:4])
		sum := binary.LittleEndian.Uint32(hdr[4:8])
		seq := binary.LittleEndian.Uint64(hdr[8:16])
		if length > maxFrameData {
			return off, fmt.Sprintf("length %d exceeds %d", length, maxFrameData)
		}
		if int64(length) > size-off-frameHdrLen {
			return off, fmt.Sprintf("short record: length %d, %d bytes left", length, size-off-frameHdrLen)
		}
		data = slices.Grow(data[:0], int(length))[:length]
		if _, err := io.ReadFull(r, data); err != nil {
			return off, fmt.Sprintf("read: %v", err)
		}
		if crc := frameCRC(hdr[8:16], data); crc != sum {
			return off, fmt.Sprintf("crc %08x, want %08x", crc, sum)
		}
		if seq != seg.next {
			return off, fmt.Sprintf("sequence %d, want %d", seq, seg.next)
		}
		if n%indexStride == 0 {
			seg.index = append(seg.index, indexEntry{seq, off})
		}
		seg.next++
		off += frameHdrLen + int64(length)
	}
}

func frameCRC(seq, data []byte) uint32 {
	return crc32.Update(crc32.Checksum(seq, castagnoli), castagnoli, data)
}

func appendFrame(b []byte, seq uint64, data []byte) []byte {
	var hdr [frameHdrLen]byte
	binary.LittleEndian.PutUint32(hdr[0:4], uint32(len(data)))
	binary.LittleEndian.PutUint64(hdr[8:16], seq)
	binary.LittleEndian.PutUint32(hdr[4:8], frameCRC(hdr[8:16], data))
	b = append(b, hdr[:]...)
	return append(b, data...)
}

func writeHeader(f segmentFile) error {
	if _, err := f.WriteAt([]byte(segmentMagic), 0); err != nil {
		return err
	}
	if err := f.Truncate(segmentHdrLen); err != nil {
		return err
	}
	return f.Sync()
}

// createSegment makes a new, durable, empty segment whose first record will be first.
func (l *Log) createSegment(first uint64) (*segment, error) {
	path := filepath.Join(l.dir, segmentName(first))
	f, err := l.openFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("stream: create segment: %w", err)
	}
	if err := writeHeader(f); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("stream: create segment %s: %w", path, err)
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("stream: create segment %s: %w", path, err)
	}
	return &segment{path: path, f: f, first: first, next: first, size: segmentHdrLen}, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Append implements Stream. The record is durable when Append returns nil. If ctx ends
// first, Append returns its error, but a record already handed to the writer may still
// be committed: the caller treats it as not recorded, and the store may hold it anyway.
func (l *Log) Append(ctx context.Context, rec []byte) (uint64, error) {
	if err := l.checkSize(rec); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// The copy lets the caller reuse rec even when it gives up waiting.
	req := &appendReq{ctx: ctx, data: bytes.Clone(rec), done: make(chan struct{})}
	if err := l.enqueue(ctx, req); err != nil {
		return 0, err
	}
	select {
	case <-req.done:
		return req.seq, req.err
	case <-ctx.Done():
		return 0, fmt.Errorf("stream: append abandoned (the record may still be written): %w", ctx.Err())
	}
}

// AppendAsync implements Stream. It takes rec over (the caller must not change it
// afterwards) and calls done once, from the log's acknowledging goroutine, when the
// record is durable or has failed; done runs before AppendAsync returns if the record
// is refused at once (too large, log closed). It blocks only while DefaultQueue
// appends already wait for the writer. done must not block: every append after it
// waits for it.
func (l *Log) AppendAsync(rec []byte, done func(seq uint64, err error)) {
	if err := l.checkSize(rec); err != nil {
		done(0, err)
		return
	}
	if err := l.enqueue(nil, &appendReq{data: rec, cb: done}); err != nil {
		done(0, err)
	}
}

func (l *Log) checkSize(rec []byte) error {
	if len(rec) > l.opts.MaxRecordSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(rec), l.opts.MaxRecordSize)
	}
	return nil
}

// enqueue hands req to the writer; ctx (nil for none) bounds the wait for room.
func (l *Log) enqueue(ctx context.Context, req *appendReq) error {
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	if l.closing {
		return ErrClosed
	}
	if ctx == nil {
		l.reqs <- req
		return nil
	}
	select {
	case l.reqs <- req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ackQueue is how many answered batches may wait for the acknowledging goroutine: the
// writer commits the next batch while the previous one is being answered.
const ackQueue = 4

// writer is the one goroutine that writes segments: it takes every append waiting in
// reqs (up to the batch limits), writes them with one write and one fsync, and passes
// the batch to the acker. While it waits on the disk new appends queue up for the next
// batch.
func (l *Log) writer() {
	defer l.wg.Done()
	defer close(l.acks)
	for {
		req, ok := <-l.reqs
		if !ok {
			return
		}
		batch := make([]*appendReq, 1, min(l.opts.MaxBatch, 64))
		batch[0] = req
		size := len(req.data)
	fill:
		for len(batch) < l.opts.MaxBatch && size < l.opts.MaxBatchBytes {
			select {
			case req, ok := <-l.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, req)
				size += len(req.data)
			default:
				break fill
			}
		}
		l.commit(batch)
		l.acks <- batch
	}
}

// acker answers committed batches in commit order, off the writer's goroutine, so that
// waking appenders and running their callbacks overlaps the next batch's fsync.
func (l *Log) acker() {
	defer l.wg.Done()
	for batch := range l.acks {
		for _, req := range batch {
			req.answer()
		}
	}
}

// commit writes and syncs batch, setting each request's seq or err; the acker answers
// them.
func (l *Log) commit(batch []*appendReq) {
	live := batch[:0:0]
	for _, req := range batch {
		if err := req.abandoned(); err != nil {
			req.err = err
			continue
		}
		if live == nil {
			live = make([]*appendReq, 0, len(batch))
		}
		live = append(live, req)
	}
	if len(live) == 0 {
		return
	}
	reply := func(err error) {
		for _, req := range live {
			req.err = err
		}
	}
	l.mu.RLock()
	failed := l.failed
	l.mu.RUnlock()
	if failed != nil {
		reply(failed)
		return
	}
	if l.tail.size >= l.opts.SegmentSize && l.tail.next > l.tail.first {
		seg, err := l.createSegment(l.tail.next)
		if err != nil {
			reply(err)
			return
		}
		l.mu.Lock()
		l.segs = append(l.segs, seg)
		l.mu.Unlock()
		l.tail = seg
	}
	tail := l.tail
	l.buf = l.buf[:0]
	seq := tail.next
	var index []indexEntry
	for _, req := range live {
		if n := seq - tail.first; n%indexStride == 0 {
			index = append(index, indexEntry{seq, tail.size + int64(len(l.buf))})
		}
		req.seq = seq
		seq++
		l.buf = appendFrame(l.buf, req.seq, req.data)
	}
	if _, err := tail.f.WriteAt(l.buf, tail.size); err != nil {
		// Nothing of this batch counts: cut off whatever part reached the file so the
		// next batch starts at a frame boundary.
		if terr := tail.f.Truncate(tail.size); terr != nil {
			l.fail(fmt.Errorf("stream: truncate after failed write: %w", terr))
		}
		reply(fmt.Errorf("stream: write %s: %w", tail.path, err))
		return
	}
	if err := tail.f.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the dirty pages, so what is on
		// disk is unknown; writing on could leave a hole before later acknowledged records.
		// The log refuses appends until it is reopened, which rescans the file.
		err = fmt.Errorf("stream: fsync %s: %w", tail.path, err)
		l.fail(err)
		reply(err)
		return
	}
	l.mu.Lock()
	tail.size += int64(len(l.buf))
	tail.next = seq
	tail.index = append(tail.index, index...)
	l.last = seq - 1
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()
	for _, req := range live {
		req.data = nil // written: let the record's bytes go before the batch is answered
	}
	if cap(l.buf) > 2*l.opts.MaxBatchBytes {
		l.buf = nil
	}
}

func (l *Log) fail(err error) {
	l.mu.Lock()
	if l.failed == nil {
		l.failed = err
		l.log.Error("stream: log failed; appends refused until reopened", "err", err)
	}
	l.mu.Unlock()
}

// Read implements Stream. It returns ErrPruned (wrapped) if records after after have
// been pruned.
func (l *Log) Read(ctx context.Context, after uint64, max int) ([]Record, error) {
	if max <= 0 {
		return nil, fmt.Errorf("stream: read: max %d must be positive", max)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	if after >= l.last {
		return nil, nil
	}
	if first := l.segs[0].first; after+1 < first {
		return nil, fmt.Errorf("%w: wanted records after %d, oldest is %d", ErrPruned, after, first)
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first > after+1 }) - 1
	want := min(uint64(max), l.last-after)
	out := make([]Record, 0, want)
	for ; i < len(l.segs) && uint64(len(out)) < want; i++ {
		var err error
		out, err = readSegment(l.segs[i], after, out, int(want))
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readSegment appends seg's records with Seq > after to out until out holds max.
func readSegment(seg *segment, after uint64, out []Record, max int) ([]Record, error) {
	off := segmentHdrLen
	if j := sort.Search(len(seg.index), func(j int) bool { return seg.index[j].seq > after+1 }) - 1; j >= 0 {
		off = seg.index[j].off
	}
	r := bufio.NewReaderSize(io.NewSectionReader(seg.f, off, seg.size-off), readBufferSize)
	var hdr [frameHdrLen]byte
	for len(out) < max && off < seg.size {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, fmt.Errorf("stream: read %s at %d: %w", seg.path, off, err)
		}
		length := binary.LittleEndian.Uint32(hdr[0:4])
		seq := binary.LittleEndian.Uint64(hdr[8:16])
		if int64(length) > seg.size-off-frameHdrLen {
			return nil, fmt.Errorf("stream: read %s at %d: length %d past end", seg.path, off, length)
		}
		off += frameHdrLen + int64(length)
		if seq <= after {
			if _, err := r.Discard(int(length)); err != nil {
				return nil, fmt.Errorf("stream: read %s: %w", seg.path, err)
			}
			continue
		}
		data := make([]byte, length)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, fmt.Errorf("stream: read %s: %w", seg.path, err)
		}
		if crc := frameCRC(hdr[8:16], data); crc != binary.LittleEndian.Uint32(hdr[4:8]) {
			return nil, fmt.Errorf("stream: read %s: record %d fails its checksum", seg.path, seq)
		}
		out = append(out, Record{Seq: seq, Data: data})
	}
	return out, nil
}

// Wait implements Stream.
func (l *Log) Wait(ctx context.Context, after uint64) error {
	for {
		l.mu.RLock()
		last, ch, closed := l.last, l.notify, l.closed
		l.mu.RUnlock()
		if last > after {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-l.done:
			return ErrClosed
		}
	}
}

// LastSeq returns the highest durable sequence (FirstSeq-1 when nothing was appended).
func (l *Log) LastSeq() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.last
}

// FirstSeq returns the lowest sequence still kept (LastSeq+1 when the log is empty).
func (l *Log) FirstSeq() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.segs[0].first
}

// Segments returns the number of segment files.
func (l *Log) Segments() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.segs)
}

// Prune deletes whole segments all of whose records have Seq < before, keeping the
// newest segment. Call it with one more than the highest sequence the store holds
// durably. It returns how many segments it removed.
func (l *Log) Prune(before uint64) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	n := 0
	for len(l.segs) > 1 && l.segs[1].first <= before {
		seg := l.segs[0]
		seg.f.Close()
		if err := os.Remove(seg.path); err != nil {
			return n, fmt.Errorf("stream: prune: %w", err)
		}
		l.segs = l.segs[1:]
		n++
	}
	if n > 0 {
		if err := syncDir(l.dir); err != nil {
			return n, fmt.Errorf("stream: prune: %w", err)
		}
	}
	return n, nil
}

// Close implements Stream: it commits appends already queued, stops the writer and
// closes the files. Waiters get ErrClosed.
func (l *Log) Close() error {
	l.closeMu.Lock()
	if l.closing {
		l.closeMu.Unlock()
		return nil
	}
	l.closing = true
	close(l.reqs)
	close(l.done)
	l.closeMu.Unlock()
	l.wg.Wait()
	return l.closeFiles()
}

func (l *Log) closeFiles() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	var errs []error
	for _, seg := range l.segs {
		if err := seg.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stream: close %s: %w", seg.path, err))
		}
	}
	if err := l.unlock(); err != nil {
		errs = append(errs, fmt.Errorf("stream: unlock: %w", err))
	}
	return errors.Join(errs...)
}
