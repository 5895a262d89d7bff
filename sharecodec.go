package hashgrid

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The binary form of a Share is what the pool appends to the share stream, so it is
// compact and versioned rather than self-describing. Version 1 is, in order:
//
//	version   1 byte, ShareCodecVersion
//	flags     1 byte, bit 0 = Block; other bits must be zero
//	result    1 byte, a ShareResult up to ShareInvalid
//	seq       uvarint
//	time      varint Unix seconds, then uvarint nanoseconds (< 1e9); decoded in UTC
//	height    varint
//	diff      uvarint
//	actual    uvarint
//	hash      32 bytes
//	address, worker, job id, user agent, remote:
//	          each a uvarint length (at most the named limit below), then the bytes
//
// Version 2 is version 1 followed by
//
//	repeats   uvarint, at least 1: Share.Repeats of a rejected share
//
// and is written only for a share whose Repeats is not zero, so that every other share
// keeps its version 1 encoding. Version 3 is version 1 followed by
//
//	header    80 bytes: Share.Header of an accepted share the pool sampled
//
// and is written only for a share whose Header is set; a share cannot have both.
//
// Varints must be minimal, and nothing may follow the last field, so that every share
// has exactly one encoding and decode(encode(s)) == s.

// ShareCodecVersion is the version byte that leads an encoded share whose Repeats is
// zero; ShareCodecVersionRepeats leads one whose Repeats is not.
const (
	ShareCodecVersion        = 1
	ShareCodecVersionRepeats = 2
	// ShareCodecVersionHeader leads a share whose Header is set.
	ShareCodecVersionHeader = 3
)

// Limits on the strings of an encoded share. They bound what one share can cost in the
// stream and the store; the pool must refuse longer values before a share is built.
const (
	MaxShareAddressLen   = 128 // bech32 addresses are at most 90 characters
	MaxShareWorkerLen    = 128
	MaxShareJobIDLen     = 64
	MaxShareUserAgentLen = 256
	MaxShareRemoteLen    = 128 // "[ipv6%zone]:port"
)

const (
	shareFlagBlock  = 1 << 0
	shareFlagsKnown = shareFlagBlock
)

// errShareShort is wrapped when the input ends before the encoding does.
var errShareShort = errors.New("truncated")

// MarshalBinary encodes s in the versioned binary form described above. It fails if a
// string is longer than its limit or the result is unknown.
func (s *Share) MarshalBinary() ([]byte, error) {
	if s.Result > ShareInvalid {
		return nil, fmt.Errorf("share: unknown result %d", s.Result)
	}
	if s.Repeats != 0 && s.Result == ShareAccepted {
		return nil, errors.New("share: an accepted share cannot stand for repeats")
	}
	if s.Header != nil && s.Result != ShareAccepted {
		return nil, errors.New("share: only an accepted share keeps its header")
	}
	strs := [...]struct {
		name string
		v    string
		max  int
	}{
		{"address", s.Address, MaxShareAddressLen},
		{"worker", s.Worker, MaxShareWorkerLen},
		{"job id", s.JobID, MaxShareJobIDLen},
		{"user agent", s.UserAgent, MaxShareUserAgentLen},
		{"remote", s.Remote, MaxShareRemoteLen},
	}
	size := 3 + 6*binary.MaxVarintLen64 + 32 + ShareHeaderSize
	for _, f := range strs {
		if len(f.v) > f.max {
			return nil, fmt.Errorf("share: %s is %d bytes, limit %d", f.name, len(f.v), f.max)
		}
		size += binary.MaxVarintLen16 + len(f.v)
	}
	var flags byte
	if s.Block {
		flags |= shareFlagBlock
	}
	b := make([]byte, 0, size)
	version := byte(ShareCodecVersion)
	if s.Repeats != 0 {
		version = ShareCodecVersionRepeats
	}
	if s.Header != nil {
		version = ShareCodecVersionHeader
	}
	b = append(b, version, flags, byte(s.Result))
	b = binary.AppendUvarint(b, s.Seq)
	b = binary.AppendVarint(b, s.Time.Unix())
	b = binary.AppendUvarint(b, uint64(s.Time.Nanosecond()))
	b = binary.AppendVarint(b, s.Height)
	b = binary.AppendUvarint(b, uint64(s.Diff))
	b = binary.AppendUvarint(b, uint64(s.Actual))
	b = append(b, s.Hash[:]...)
	for _, f := range strs {
		b = binary.AppendUvarint(b, uint64(len(f.v)))
		b = append(b, f.v...)
	}
	if s.Repeats != 0 {
		b = binary.AppendUvarint(b, s.Repeats)
	}
	if s.Header != nil {
		b = append(b, s.Header[:]...)
	}
	return b, nil
}

// UnmarshalBinary decodes a share encoded by MarshalBinary. Truncated, trailing,
// over-long or non-canonical input is an error; s is only written on success.
func (s *Share) UnmarshalBinary(data []byte) error {
	d := shareDecoder{b: data}
	version := d.byte("version")
	if d.err == nil && version != ShareCodecVersion && version != ShareCodecVersionRepeats && version != ShareCodecVersionHeader {
		return fmt.Errorf("share: unsupported version %d", version)
	}
	flags := d.byte("flags")
	if d.err == nil && flags&^shareFlagsKnown != 0 {
		return fmt.Errorf("share: unknown flags %#x", flags)
	}
	result := ShareResult(d.byte("result"))
	if d.err == nil && result > ShareInvalid {
		return fmt.Errorf("share: unknown result %d", result)
	}
	var out Share
	out.Result = result
	out.Block = flags&shareFlagBlock != 0
	out.Seq = d.uvarint("seq")
	sec := d.varint("time")
	nsec := d.uvarint("time")
	if d.err == nil && nsec >= uint64(time.Second) {
		return fmt.Errorf("share: time nanoseconds %d out of range", nsec)
	}
	out.Time = time.Unix(sec, int64(nsec)).UTC()
	out.Height = d.varint("height")
	out.Diff = Diff(d.uvarint("diff"))
	out.Actual = Diff(d.uvarint("actual"))
	copy(out.Hash[:], d.bytes("hash", len(out.Hash)))
	out.Address = d.string("address", MaxShareAddressLen)
	out.Worker = d.string("worker", MaxShareWorkerLen)
	out.JobID = d.string("job id", MaxShareJobIDLen)
	out.UserAgent = d.string("user agent", MaxShareUserAgentLen)
	out.Remote = d.string("remote", MaxShareRemoteLen)
	if version == ShareCodecVersionRepeats {
		out.Repeats = d.uvarint("repeats")
		if d.err == nil && out.Repeats == 0 {
			return errors.New("share: version 2 with zero repeats")
		}
		if d.err == nil && out.Result == ShareAccepted {
			return errors.New("share: an accepted share cannot stand for repeats")
		}
	}
	if version == ShareCodecVersionHeader {
		h := d.bytes("header", ShareHeaderSize)
		if d.err == nil && out.Result != ShareAccepted {
			return errors.New("share: only an accepted share keeps its header")
		}
		if d.err == nil {
			// A copy: the input is often a buffer the caller reuses.
			out.Header = new([ShareHeaderSize]byte)
			copy(out.Header[:], h)
		}
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("share: %d trailing bytes", len(d.b))
	}
	*s = out
	return nil
}

// shareDecoder consumes b field by field; after the first error every read returns a
// zero value and err keeps the first error, so callers check once at the end.
type shareDecoder struct {
	b   []byte
	err error
}

func (d *shareDecoder) fail(field string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("share: %s: %w", field, err)
	}
}

func (d *shareDecoder) byte(field string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail(field, errShareShort)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *shareDecoder) bytes(field string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail(field, errShareShort)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

var errNonMinimal = errors.New("non-minimal varint")

func (d *shareDecoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.fail(field, errShareShort)
		return 0
	case n < 0:
		d.fail(field, errors.New("varint overflows 64 bits"))
		return 0
	case n > 1 && d.b[n-1] == 0:
		d.fail(field, errNonMinimal)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *shareDecoder) varint(field string) int64 {
	u := d.uvarint(field)
	// Undo the zig-zag mapping of binary.AppendVarint.
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

func (d *shareDecoder) string(field string, max int) string {
	n := d.uvarint(field)
	if d.err != nil {
		return ""
	}
	if n > uint64(max) {
		d.fail(field, fmt.Errorf("length %d exceeds limit %d", n, max))
		return ""
	}
	return string(d.bytes(field, int(n)))
}
