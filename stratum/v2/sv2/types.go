package sv2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/btcsuite/btcd/chainhash/v2"
)

// Errors a decode or encode wraps; test them with errors.Is.
var (
	// ErrTruncated: the payload ends inside a field.
	ErrTruncated = errors.New("payload truncated")
	// ErrTrailing: bytes follow the message's last field.
	ErrTrailing = errors.New("bytes after the last field")
	// ErrLength: a length prefix or value is over its data type's limit.
	ErrLength = errors.New("length over the data type's limit")
	// ErrOption: an OPTION prefix other than 0 (empty) or 1 (set).
	ErrOption = errors.New("option prefix is neither 0 nor 1")
)

// Length limits of the data types (chapter 3.1).
const (
	MaxStr0255 = 255
	MaxB032    = 32
	MaxB0255   = 255
	MaxB064K   = 1<<16 - 1
	MaxB016M   = 1<<24 - 1
	MaxSeq0255 = 255
	MaxSeq064K = 1<<16 - 1
	MaxU24     = 1<<24 - 1
)

// U256 is a 256-bit unsigned integer as it travels: 32 bytes, little-endian. Targets
// use it; hashes (prev_hash, merkle_root, merkle_path) are chainhash.Hash, the same
// bytes in Bitcoin's internal order.
type U256 [32]byte

// Pubkey is a PUBKEY: the X coordinate of a secp256k1 public key (BIP 340).
type Pubkey [32]byte

// Option is an OPTION[T]: a value that may be absent (a SEQ0_1 on the wire).
type Option[T any] struct {
	V   T
	Set bool
}

// Some returns a set Option holding v.
func Some[T any](v T) Option[T] { return Option[T]{V: v, Set: true} }

// DecodeError says which message failed to decode, where and why.
type DecodeError struct {
	Msg    string // message name, as the spec spells it
	Offset int    // byte offset in the payload where decoding stopped
	Err    error  // ErrTruncated, ErrTrailing, ErrLength or ErrOption, possibly wrapped
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("sv2: %s at byte %d: %v", e.Msg, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Reader reads data types from a payload. The first error sticks: every later read
// returns a zero value, so a message's Decode reads all its fields and checks once.
type Reader struct {
	buf []byte
	off int
	err error
}

// NewReader returns a Reader over b.
func NewReader(b []byte) *Reader { return &Reader{buf: b} }

// Len returns the number of bytes left.
func (r *Reader) Len() int { return len(r.buf) - r.off }

// Done returns the first error, or ErrTrailing when bytes are left, as a DecodeError
// naming msg.
func (r *Reader) Done(msg string) error {
	if r.err == nil && r.off != len(r.buf) {
		r.err = ErrTrailing
	}
	if r.err != nil {
		return &DecodeError{Msg: msg, Offset: r.off, Err: r.err}
	}
	return nil
}

func (r *Reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// take returns the next n bytes, or nil after an error.
func (r *Reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.buf)-r.off {
		r.err = ErrTruncated
		return nil
	}
	b := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

// Bool reads a BOOL. Only the low bit carries meaning; the spec lets senders set the
// others, so they are ignored rather than refused.
func (r *Reader) Bool() bool {
	b := r.take(1)
	return b != nil && b[0]&1 == 1
}

// U8 reads a U8.
func (r *Reader) U8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

// U16 reads a U16.
func (r *Reader) U16() uint16 {
	if b := r.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

// U24 reads a U24.
func (r *Reader) U24() uint32 {
	if b := r.take(3); b != nil {
		return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
	}
	return 0
}

// U32 reads a U32.
func (r *Reader) U32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

// U64 reads a U64.
func (r *Reader) U64() uint64 {
	if b := r.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// F32 reads an F32, an IEEE 754 single in little-endian order (the spec uses it for
// nominal_hash_rate without listing it among the data types).
func (r *Reader) F32() float32 { return math.Float32frombits(r.U32()) }

// U256 reads a U256.
func (r *Reader) U256() (u U256) {
	copy(u[:], r.take(32))
	return u
}

// Hash reads a U256 that holds a hash.
func (r *Reader) Hash() (h chainhash.Hash) {
	copy(h[:], r.take(32))
	return h
}

// Pubkey reads a PUBKEY.
func (r *Reader) Pubkey() (p Pubkey) {
	copy(p[:], r.take(32))
	return p
}

// Bytes reads BYTES of a length the message defines, as a copy; no bytes read as nil,
// so that decoding is canonical.
func (r *Reader) Bytes(n int) []byte {
	b := r.take(n)
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// Str0255 reads a STR0_255. Its bytes are not checked for UTF-8: the spec leaves
// user_identity unconstrained.
func (r *Reader) Str0255() string { return string(r.take(int(r.U8()))) }

// B032 reads a B0_32, as a copy.
func (r *Reader) B032() []byte {
	n := int(r.U8())
	if n > MaxB032 {
		r.fail(fmt.Errorf("%w: B0_32 of %d bytes", ErrLength, n))
	}
	return r.Bytes(n)
}

// B0255 reads a B0_255, as a copy.
func (r *Reader) B0255() []byte { return r.Bytes(int(r.U8())) }

// B064K reads a B0_64K, as a copy.
func (r *Reader) B064K() []byte { return r.Bytes(int(r.U16())) }

// B016M reads a B0_16M, as a copy.
func (r *Reader) B016M() []byte { return r.Bytes(int(r.U24())) }

// ReadSeq0255 reads a SEQ0_255[T] whose elements elem reads. minSize is the smallest
// encoding of one element: a count the rest of the payload cannot hold is refused
// before anything is allocated.
func ReadSeq0255[T any](r *Reader, minSize int, elem func(*Reader) T) []T {
	return readSeq(r, int(r.U8()), minSize, elem)
}

// ReadSeq064K reads a SEQ0_64K[T]; see ReadSeq0255.
func ReadSeq064K[T any](r *Reader, minSize int, elem func(*Reader) T) []T {
	return readSeq(r, int(r.U16()), minSize, elem)
}

func readSeq[T any](r *Reader, n, minSize int, elem func(*Reader) T) []T {
	if r.err != nil {
		return nil
	}
	if n*max(minSize, 1) > r.Len() {
		r.err = ErrTruncated
		return nil
	}
	if n == 0 {
		return nil
	}
	s := make([]T, n)
	for i := range s {
		s[i] = elem(r)
	}
	if r.err != nil {
		return nil
	}
	return s
}

// ReadOption reads an OPTION[T].
func ReadOption[T any](r *Reader, elem func(*Reader) T) (o Option[T]) {
	switch n := r.U8(); {
	case r.err != nil:
	case n == 1:
		o = Option[T]{V: elem(r), Set: true}
	case n != 0:
		r.fail(fmt.Errorf("%w: %d", ErrOption, n))
	}
	if r.err != nil {
		return Option[T]{}
	}
	return o
}

// OptionU32 reads an OPTION[U32]. It is ReadOption(r, (*Reader).U32) without the
// function argument, which makes a Reader escape to the heap: min_ntime is on the
// path of every job.
func (r *Reader) OptionU32() Option[uint32] {
	switch n := r.U8(); {
	case r.err != nil:
	case n == 1:
		if v := r.U32(); r.err == nil {
			return Option[uint32]{V: v, Set: true}
		}
	case n != 0:
		r.fail(fmt.Errorf("%w: %d", ErrOption, n))
	}
	return Option[uint32]{}
}

// Writer appends data types to a buffer. The first error sticks, as in Reader.
type Writer struct {
	B     []byte
	start int
	err   error
}

// NewWriter returns a Writer appending to dst.
func NewWriter(dst []byte) Writer { return Writer{B: dst, start: len(dst)} }

// Finish returns the buffer; after an error it returns the buffer as it was given,
// with nothing appended, and the error naming msg.
func (w *Writer) Finish(msg string) ([]byte, error) {
	if w.err != nil {
		return w.B[:w.start], fmt.Errorf("sv2: encode %s: %w", msg, w.err)
	}
	return w.B, nil
}

func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// Bool appends a BOOL.
func (w *Writer) Bool(v bool) {
	if v {
		w.B = append(w.B, 1)
	} else {
		w.B = append(w.B, 0)
	}
}

// U8 appends a U8.
func (w *Writer) U8(v uint8) { w.B = append(w.B, v) }

// U16 appends a U16.
func (w *Writer) U16(v uint16) { w.B = binary.LittleEndian.AppendUint16(w.B, v) }

// U24 appends a U24; a value over MaxU24 is an error.
func (w *Writer) U24(v uint32) {
	if v > MaxU24 {
		w.fail(fmt.Errorf("%w: U24 value %d", ErrLength, v))
		return
	}
	w.B = append(w.B, byte(v), byte(v>>8), byte(v>>16))
}

// U32 appends a U32.
func (w *Writer) U32(v uint32) { w.B = binary.LittleEndian.AppendUint32(w.B, v) }

// U64 appends a U64.
func (w *Writer) U64(v uint64) { w.B = binary.LittleEndian.AppendUint64(w.B, v) }

// F32 appends an F32.
func (w *Writer) F32(v float32) { w.U32(math.Float32bits(v)) }

// U256 appends a U256.
func (w *Writer) U256(v U256) { w.B = append(w.B, v[:]...) }

// Hash appends a hash as a U256.
func (w *Writer) Hash(v chainhash.Hash) { w.B = append(w.B, v[:]...) }

// Pubkey appends a PUBKEY.
func (w *Writer) Pubkey(v Pubkey) { w.B = append(w.B, v[:]...) }

// Bytes appends BYTES.
func (w *Writer) Bytes(b []byte) { w.B = append(w.B, b...) }

// Str0255 appends a STR0_255; field names the field in the error of a long string.
func (w *Writer) Str0255(field, s string) {
	if len(s) > MaxStr0255 {
		w.fail(fmt.Errorf("%s: %w: STR0_255 of %d bytes", field, ErrLength, len(s)))
		return
	}
	w.B = append(append(w.B, byte(len(s))), s...)
}

// B032 appends a B0_32.
func (w *Writer) B032(field string, b []byte) {
	if len(b) > MaxB032 {
		w.fail(fmt.Errorf("%s: %w: B0_32 of %d bytes", field, ErrLength, len(b)))
		return
	}
	w.B = append(append(w.B, byte(len(b))), b...)
}

// B0255 appends a B0_255.
func (w *Writer) B0255(field string, b []byte) {
	if len(b) > MaxB0255 {
		w.fail(fmt.Errorf("%s: %w: B0_255 of %d bytes", field, ErrLength, len(b)))
		return
	}
	w.B = append(append(w.B, byte(len(b))), b...)
}

// B064K appends a B0_64K.
func (w *Writer) B064K(field string, b []byte) {
	if len(b) > MaxB064K {
		w.fail(fmt.Errorf("%s: %w: B0_64K of %d bytes", field, ErrLength, len(b)))
		return
	}
	w.U16(uint16(len(b)))
	w.B = append(w.B, b...)
}

// B016M appends a B0_16M.
func (w *Writer) B016M(field string, b []byte) {
	if len(b) > MaxB016M {
		w.fail(fmt.Errorf("%s: %w: B0_16M of %d bytes", field, ErrLength, len(b)))
		return
	}
	w.U24(uint32(len(b)))
	w.B = append(w.B, b...)
}

// WriteSeq0255 appends a SEQ0_255[T] whose elements elem appends.
func WriteSeq0255[T any](w *Writer, field string, s []T, elem func(*Writer, T)) {
	if len(s) > MaxSeq0255 {
		w.fail(fmt.Errorf("%s: %w: SEQ0_255 of %d elements", field, ErrLength, len(s)))
		return
	}
	w.U8(uint8(len(s)))
	for _, v := range s {
		elem(w, v)
	}
}

// WriteSeq064K appends a SEQ0_64K[T].
func WriteSeq064K[T any](w *Writer, field string, s []T, elem func(*Writer, T)) {
	if len(s) > MaxSeq064K {
		w.fail(fmt.Errorf("%s: %w: SEQ0_64K of %d elements", field, ErrLength, len(s)))
		return
	}
	w.U16(uint16(len(s)))
	for _, v := range s {
		elem(w, v)
	}
}

// WriteOption appends an OPTION[T].
func WriteOption[T any](w *Writer, o Option[T], elem func(*Writer, T)) {
	if !o.Set {
		w.U8(0)
		return
	}
	w.U8(1)
	elem(w, o.V)
}
