package sv2

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// TestDataTypes writes one value of every data type of chapter 3.1 and reads it back,
// against bytes written by hand.
func TestDataTypes(t *testing.T) {
	var pk Pubkey
	copy(pk[:], hx(seq0to31))
	w := NewWriter([]byte("x"))
	w.Bool(true)
	w.Bool(false)
	w.U8(0xab)
	w.U16(0x1234)
	w.U24(0x123456)
	w.U32(0x12345678)
	w.U64(0x0102030405060708)
	w.F32(-1.5)
	w.U256(u256Of(diff1LE))
	w.Pubkey(pk)
	w.Str0255("s", "hi")
	w.B032("a", hx("0102"))
	w.B0255("b", hx("03"))
	w.B064K("c", hx("0405"))
	w.B016M("d", hx("06"))
	w.Bytes(hx("0708"))
	WriteSeq0255(&w, "e", []uint16{1, 2}, (*Writer).U16)
	WriteSeq064K(&w, "f", []uint8{9}, (*Writer).U8)
	WriteOption(&w, Some[uint16](7), (*Writer).U16)
	WriteOption(&w, Option[uint16]{}, (*Writer).U16)
	got, err := w.Finish("test")
	if err != nil {
		t.Fatal(err)
	}
	want := hx(
		"78",       // the "x" already in the buffer
		"01", "00", // BOOL
		"ab",               // U8
		"3412",             // U16
		"563412",           // U24
		"78563412",         // U32
		"0807060504030201", // U64
		"0000c0bf",         // F32 -1.5
		diff1LE,            // U256
		seq0to31,           // PUBKEY
		"02 6869",          // STR0_255
		"02 0102",          // B0_32
		"01 03",            // B0_255
		"0200 0405",        // B0_64K
		"010000 06",        // B0_16M
		"0708",             // BYTES
		"02 0100 0200",     // SEQ0_255[U16]
		"0100 09",          // SEQ0_64K[U8]
		"01 0700",          // OPTION[U16], set
		"00",               // OPTION[U16], empty
	)
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}

	r := NewReader(got[1:])
	read := []any{
		r.Bool(), r.Bool(), r.U8(), r.U16(), r.U24(), r.U32(), r.U64(), r.F32(), r.U256(), r.Pubkey(),
		r.Str0255(), r.B032(), r.B0255(), r.B064K(), r.B016M(), r.Bytes(2),
		ReadSeq0255(r, 2, (*Reader).U16), ReadSeq064K(r, 1, (*Reader).U8),
		ReadOption(r, (*Reader).U16), ReadOption(r, (*Reader).U16),
	}
	if err := r.Done("test"); err != nil {
		t.Fatal(err)
	}
	wantRead := []any{
		true, false, uint8(0xab), uint16(0x1234), uint32(0x123456), uint32(0x12345678), uint64(0x0102030405060708),
		float32(-1.5), u256Of(diff1LE), pk, "hi", hx("0102"), hx("03"), hx("0405"), hx("06"), hx("0708"),
		[]uint16{1, 2}, []uint8{9}, Some[uint16](7), Option[uint16]{},
	}
	for i := range read {
		if !reflect.DeepEqual(read[i], wantRead[i]) {
			t.Errorf("value %d: got %#v, want %#v", i, read[i], wantRead[i])
		}
	}
}

func TestReaderErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		read func(*Reader)
		want error
	}{
		{"U24 short", "0102", func(r *Reader) { r.U24() }, ErrTruncated},
		{"PUBKEY short", rep("00", 31), func(r *Reader) { r.Pubkey() }, ErrTruncated},
		{"B0_16M short", "ffffff 00", func(r *Reader) { r.B016M() }, ErrTruncated},
		{"B0_32 over 32", "21" + rep("00", 33), func(r *Reader) { r.B032() }, ErrLength},
		{"SEQ0_64K count over the payload", "0300 0100 0200", func(r *Reader) { ReadSeq064K(r, 2, (*Reader).U16) }, ErrTruncated},
		{"OPTION prefix 2", "02 0700", func(r *Reader) { ReadOption(r, (*Reader).U16) }, ErrOption},
		{"OPTION set but short", "01 07", func(r *Reader) { ReadOption(r, (*Reader).U16) }, ErrTruncated},
		{"OptionU32 prefix 2", "02 07000000", func(r *Reader) { r.OptionU32() }, ErrOption},
		{"trailing", "0102", func(r *Reader) { r.U8() }, ErrTrailing},
		// The first error sticks: a later read cannot replace it.
		{"first error sticks", "21" + rep("00", 40), func(r *Reader) { r.B032(); r.U64(); r.U64() }, ErrLength},
	} {
		r := NewReader(hx(c.in))
		c.read(r)
		if err := r.Done("T"); !errors.Is(err, c.want) || !strings.HasPrefix(err.Error(), "sv2: T at byte ") {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		write func(*Writer)
	}{
		{"U24 over 2^24-1", func(w *Writer) { w.U24(1 << 24) }},
		{"STR0_255 of 256", func(w *Writer) { w.Str0255("f", strings.Repeat("x", 256)) }},
		{"B0_32 of 33", func(w *Writer) { w.B032("f", make([]byte, 33)) }},
		{"B0_255 of 256", func(w *Writer) { w.B0255("f", make([]byte, 256)) }},
		{"B0_64K of 65536", func(w *Writer) { w.B064K("f", make([]byte, 1<<16)) }},
		{"B0_16M of 2^24", func(w *Writer) { w.B016M("f", make([]byte, 1<<24)) }},
		{"SEQ0_255 of 256", func(w *Writer) { WriteSeq0255(w, "f", make([]uint8, 256), (*Writer).U8) }},
		{"SEQ0_64K of 65536", func(w *Writer) { WriteSeq064K(w, "f", make([]uint8, 1<<16), (*Writer).U8) }},
	} {
		w := NewWriter([]byte("keep"))
		w.U32(1)
		c.write(&w)
		w.U32(2)
		out, err := w.Finish("T")
		if !errors.Is(err, ErrLength) || string(out) != "keep" {
			t.Errorf("%s: %q, %v", c.name, out, err)
		}
	}
}

// TestF32Bits: F32 carries any bit pattern, NaN payloads included, so a proxy relays
// nominal_hash_rate unchanged.
func TestF32Bits(t *testing.T) {
	for _, bits := range []uint32{0, 0x80000000, 0x7f800000, 0x7fc00001, 0xffffffff, math.Float32bits(1e15)} {
		w := NewWriter(nil)
		w.U32(bits)
		v := NewReader(w.B).F32()
		w2 := NewWriter(nil)
		w2.F32(v)
		if !bytes.Equal(w.B, w2.B) {
			t.Errorf("%#08x became %x", bits, w2.B)
		}
	}
}
