package sqlite

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hashgrid/hashgrid"
)

// Limits on one share block. A block is written in one piece and read in one piece, so
// these bound what a single row costs to write, read and decode.
const (
	// MaxBlockShares is the most shares one block holds.
	MaxBlockShares = 4096
	// MaxBlockBytes bounds a block's encoded data. One share encodes to at most
	// maxEntryBytes, far below it, so every share fits in a block of its own.
	MaxBlockBytes = 1 << 20
	// MaxBlockTimeSpan bounds max_time - min_time of a block, so that WorkBetween can
	// find the blocks overlapping a window by an index range on min_time alone. Raising
	// it is safe; lowering it needs a migration that splits the blocks it no longer bounds.
	MaxBlockTimeSpan = time.Minute
)

// blockFormat is the first byte of every block's data. Version 1 is:
//
//	format   1 byte, blockFormat
//	pairs    uvarint n, then n times: address, worker (each a uvarint length, then the
//	         bytes), the distinct (address, worker) pairs of the block's shares
//	shares   uvarint count, then count times: uvarint pair index, uvarint length, then
//	         the share's hashgrid.Share.MarshalBinary encoding
//
// Shares are in strictly increasing Seq order. The pair index lets a reader skip the
// shares of other addresses, or group by worker, without decoding them.
const blockFormat = 1

// maxEntryBytes bounds one share's entry in a block: its pair's strings (at most once
// per block), the index and length varints, and the encoded share itself (fixed
// fields, six varints, five strings at the codec's limits with their lengths, and a
// sampled share's header).
const maxEntryBytes = 2*binary.MaxVarintLen16 + hashgrid.MaxShareAddressLen + hashgrid.MaxShareWorkerLen +
	2*binary.MaxVarintLen32 +
	3 + 6*binary.MaxVarintLen64 + 32 + 5*binary.MaxVarintLen16 + hashgrid.ShareHeaderSize +
	hashgrid.MaxShareAddressLen + hashgrid.MaxShareWorkerLen + hashgrid.MaxShareJobIDLen +
	hashgrid.MaxShareUserAgentLen + hashgrid.MaxShareRemoteLen

// blockOverhead is what a block's data holds besides its entries: the format byte and
// the two counts.
const blockOverhead = 1 + 2*binary.MaxVarintLen32

// pendingShare is a share about to be written, with its encoding and stored time.
type pendingShare struct {
	s    *hashgrid.Share
	enc  []byte
	time int64
}

// shareBlock is one block being built: a row of share_blocks and its addresses.
type shareBlock struct {
	first, last      uint64
	minTime, maxTime int64
	count            int
	pairs            []workerKey
	pairIndex        map[workerKey]int
	pairBytes        int
	entries          []byte
}

func newShareBlock() *shareBlock {
	return &shareBlock{minTime: math.MaxInt64, maxTime: math.MinInt64, pairIndex: map[workerKey]int{}}
}

// fits reports whether p can join the block within its limits.
func (b *shareBlock) fits(p *pendingShare) bool {
	if b.count == 0 {
		return true
	}
	if b.count >= MaxBlockShares {
		return false
	}
	size := blockOverhead + b.pairBytes + len(b.entries) + 2*binary.MaxVarintLen32 + len(p.enc)
	if _, ok := b.pairIndex[workerKey{p.s.Address, p.s.Worker}]; !ok {
		size += 2*binary.MaxVarintLen16 + len(p.s.Address) + len(p.s.Worker)
	}
	if size > MaxBlockBytes {
		return false
	}
	lo, hi := min(b.minTime, p.time), max(b.maxTime, p.time)
	return hi-lo <= int64(MaxBlockTimeSpan)
}

// add appends p, whose Seq must be above every Seq in the block.
func (b *shareBlock) add(p *pendingShare) {
	k := workerKey{p.s.Address, p.s.Worker}
	i, ok := b.pairIndex[k]
	if !ok {
		i = len(b.pairs)
		b.pairIndex[k] = i
		b.pairs = append(b.pairs, k)
		b.pairBytes += uvarintLen(uint64(len(k.address))) + len(k.address) + uvarintLen(uint64(len(k.name))) + len(k.name)
	}
	if b.count == 0 {
		b.first = p.s.Seq
	}
	b.last = p.s.Seq
	b.minTime, b.maxTime = min(b.minTime, p.time), max(b.maxTime, p.time)
	b.count++
	b.entries = binary.AppendUvarint(b.entries, uint64(i))
	b.entries = binary.AppendUvarint(b.entries, uint64(len(p.enc)))
	b.entries = append(b.entries, p.enc...)
}

// data returns the block's encoding.
func (b *shareBlock) data() []byte {
	out := make([]byte, 0, blockOverhead+b.pairBytes+len(b.entries))
	out = append(out, blockFormat)
	out = binary.AppendUvarint(out, uint64(len(b.pairs)))
	for _, k := range b.pairs {
		out = binary.AppendUvarint(out, uint64(len(k.address)))
		out = append(out, k.address...)
		out = binary.AppendUvarint(out, uint64(len(k.name)))
		out = append(out, k.name...)
	}
	out = binary.AppendUvarint(out, uint64(b.count))
	return append(out, b.entries...)
}

// addresses returns the distinct addresses of the block's shares.
func (b *shareBlock) addresses() []string {
	seen := make(map[string]bool, len(b.pairs))
	var out []string
	for _, k := range b.pairs {
		if !seen[k.address] {
			seen[k.address] = true
			out = append(out, k.address)
		}
	}
	return out
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// chunkShares splits shares, sorted by strictly increasing Seq, into blocks within the
// limits. A block never holds both prev and next if split(prev, next) reports true:
// there is a stored block between them that the new blocks must not overlap. split may
// be nil.
func chunkShares(shares []pendingShare, split func(prev, next uint64) bool) []*shareBlock {
	var out []*shareBlock
	b := newShareBlock()
	for i := range shares {
		p := &shares[i]
		if b.count > 0 && (!b.fits(p) || split != nil && split(b.last, p.s.Seq)) {
			out = append(out, b)
			b = newShareBlock()
		}
		b.add(p)
	}
	if b.count > 0 {
		out = append(out, b)
	}
	return out
}

var errBlockShort = errors.New("truncated")

// blockReader reads a block's data entry by entry.
type blockReader struct {
	pairs []workerKey
	count int // entries not yet read
	b     []byte
	last  uint64 // Seq of the previous share decoded
}

func readBlock(data []byte) (*blockReader, error) {
	r := &blockReader{b: data}
	if len(r.b) == 0 {
		return nil, errBlockShort
	}
	if r.b[0] != blockFormat {
		return nil, fmt.Errorf("unknown block format %d", r.b[0])
	}
	r.b = r.b[1:]
	n, err := r.uvarint()
	if err != nil {
		return nil, fmt.Errorf("pairs: %w", err)
	}
	if n > MaxBlockShares {
		return nil, fmt.Errorf("%d pairs, limit %d", n, MaxBlockShares)
	}
	r.pairs = make([]workerKey, n)
	for i := range r.pairs {
		a, err := r.string(hashgrid.MaxShareAddressLen)
		if err != nil {
			return nil, fmt.Errorf("pair %d address: %w", i, err)
		}
		w, err := r.string(hashgrid.MaxShareWorkerLen)
		if err != nil {
			return nil, fmt.Errorf("pair %d worker: %w", i, err)
		}
		r.pairs[i] = workerKey{a, w}
	}
	count, err := r.uvarint()
	if err != nil {
		return nil, fmt.Errorf("count: %w", err)
	}
	if count > MaxBlockShares {
		return nil, fmt.Errorf("%d shares, limit %d", count, MaxBlockShares)
	}
	r.count = int(count)
	return r, nil
}

func (r *blockReader) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		return 0, errBlockShort
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *blockReader) bytes(n uint64) ([]byte, error) {
	if uint64(len(r.b)) < n {
		return nil, errBlockShort
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v, nil
}

func (r *blockReader) string(max int) (string, error) {
	n, err := r.uvarint()
	if err != nil {
		return "", err
	}
	if n > uint64(max) {
		return "", fmt.Errorf("length %d exceeds limit %d", n, max)
	}
	b, err := r.bytes(n)
	return string(b), err
}

// next returns the pair index and encoding of the next share; ok is false after the
// last, when the data must also have ended.
func (r *blockReader) next() (pair int, enc []byte, ok bool, err error) {
	if r.count == 0 {
		if len(r.b) != 0 {
			return 0, nil, false, fmt.Errorf("%d trailing bytes", len(r.b))
		}
		return 0, nil, false, nil
	}
	r.count--
	i, err := r.uvarint()
	if err != nil {
		return 0, nil, false, err
	}
	if i >= uint64(len(r.pairs)) {
		return 0, nil, false, fmt.Errorf("pair %d of %d", i, len(r.pairs))
	}
	n, err := r.uvarint()
	if err != nil {
		return 0, nil, false, err
	}
	enc, err = r.bytes(n)
	if err != nil {
		return 0, nil, false, err
	}
	return int(i), enc, true, nil
}

// decode decodes one share's encoding and checks it against its pair and the order of
// the block.
func (r *blockReader) decode(pair int, enc []byte) (hashgrid.Share, error) {
	var s hashgrid.Share
	if err := s.UnmarshalBinary(enc); err != nil {
		return s, err
	}
	if k := r.pairs[pair]; s.Address != k.address || s.Worker != k.name {
		return s, fmt.Errorf("share %d: address and worker differ from pair %d", s.Seq, pair)
	}
	if s.Seq <= r.last {
		return s, fmt.Errorf("share %d after %d", s.Seq, r.last)
	}
	r.last = s.Seq
	return s, nil
}

// decodeBlock returns every share in data, oldest first.
func decodeBlock(data []byte) ([]hashgrid.Share, error) {
	r, err := readBlock(data)
	if err != nil {
		return nil, err
	}
	out := make([]hashgrid.Share, 0, r.count)
	for {
		pair, enc, ok, err := r.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return out, nil
		}
		s, err := r.decode(pair, enc)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
}

// summarizedCodecVersion is the share codec version summarize reads. It is not
// hashgrid.ShareCodecVersion: a new version may lay the fields out differently.
const summarizedCodecVersion = 1

// shareSummary is what WorkBetween and the per-minute summaries need of a share.
type shareSummary struct {
	seq     uint64
	time    int64 // Unix nanoseconds
	result  hashgrid.ShareResult
	diff    hashgrid.Diff
	actual  hashgrid.Diff
	repeats uint64 // Share.Repeats
}

// summarize returns the summary of the share enc encodes without decoding its strings
// (five allocations a share in UnmarshalBinary), reading the leading fields of version 1
// of the share codec as sharecodec.go documents them: version, flags and result bytes,
// then seq, time seconds and nanoseconds, height, diff and actual varints. A share of another
// version is decoded in full. Like decode, it checks the block's sequence order.
func (r *blockReader) summarize(pair int, enc []byte) (shareSummary, error) {
	if len(enc) == 0 || enc[0] != summarizedCodecVersion {
		s, err := r.decode(pair, enc)
		if err != nil {
			return shareSummary{}, err
		}
		return shareSummary{seq: s.Seq, time: s.Time.UnixNano(), result: s.Result, diff: s.Diff, actual: s.Actual, repeats: s.Repeats}, nil
	}
	if len(enc) < 3 {
		return shareSummary{}, fmt.Errorf("share of %d bytes", len(enc))
	}
	var out shareSummary
	out.result = hashgrid.ShareResult(enc[2])
	b := enc[3:]
	var fields [6]uint64 // seq, seconds (zig-zag), nanoseconds, height (zig-zag), diff, actual
	for i := range fields {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return shareSummary{}, fmt.Errorf("share: field %d: %w", i, errBlockShort)
		}
		fields[i], b = v, b[n:]
	}
	sec := int64(fields[1] >> 1)
	if fields[1]&1 != 0 {
		sec = ^sec
	}
	if out.result > hashgrid.ShareInvalid || fields[2] >= uint64(time.Second) {
		return shareSummary{}, fmt.Errorf("share %d: result %d, nanoseconds %d", fields[0], out.result, fields[2])
	}
	out.seq, out.time, out.diff, out.actual = fields[0], time.Unix(sec, int64(fields[2])).UnixNano(), hashgrid.Diff(fields[4]), hashgrid.Diff(fields[5])
	if out.seq <= r.last {
		return shareSummary{}, fmt.Errorf("share %d after %d", out.seq, r.last)
	}
	r.last = out.seq
	return out, nil
}
