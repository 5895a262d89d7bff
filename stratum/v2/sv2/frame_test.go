package sv2

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

// TestParseHeader uses the reference implementation's header test: bytes 01..06.
func TestParseHeader(t *testing.T) {
	h, err := ParseHeader(hx("010203040506"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Header{ExtensionType: 0x0201, MsgType: 0x03, Length: 0x060504}); h != want {
		t.Errorf("got %+v, want %+v", h, want)
	}
	if h.ChannelMsg() || h.Extension() != 0x0201 {
		t.Errorf("channel_msg %t, extension %#x", h.ChannelMsg(), h.Extension())
	}
	h, _ = ParseHeader(hx("bc8a 1a 000000"))
	if !h.ChannelMsg() || h.Extension() != 0x0abc {
		t.Errorf("0x8abc: channel_msg %t, extension %#x", h.ChannelMsg(), h.Extension())
	}
	if _, err := ParseHeader(hx("0000 00 0000")); !errors.Is(err, ErrTruncated) {
		t.Errorf("5-byte header: %v", err)
	}
	b, err := AppendHeader(nil, Header{ExtensionType: 0x8001, MsgType: 0x1a, Length: MaxPayload})
	if err != nil || !bytes.Equal(b, hx("0180 1a ffffff")) {
		t.Errorf("AppendHeader: %x, %v", b, err)
	}
	if _, err := AppendHeader(nil, Header{Length: MaxPayload + 1}); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("AppendHeader over U24: %v", err)
	}
}

func TestDecodeFrameErrors(t *testing.T) {
	share := hx("01000000 09000000 01000000 b5ba0300 04b20b68 00000020")
	for _, c := range []struct {
		name    string
		h       Header
		payload []byte
		want    error
	}{
		{"extension", Header{ExtensionType: 0x0001, MsgType: 0x00}, nil, ErrExtension},
		{"extension, channel message", Header{ExtensionType: 0x8002, MsgType: TypeSubmitSharesStandard, Length: 24}, share, ErrExtension},
		{"experimental extension", Header{ExtensionType: 0x4000, MsgType: 0x01}, nil, ErrExtension},
		{"reserved 0x1e", Header{ExtensionType: ChannelMsgBit, MsgType: 0x1e}, nil, ErrUnknownType},
		{"job declaration", Header{MsgType: 0x50}, nil, ErrUnknownType},
		{"template distribution SetNewPrevHash", Header{MsgType: 0x72}, nil, ErrUnknownType},
		{"channel message without the bit", Header{MsgType: TypeSubmitSharesStandard, Length: 24}, share, ErrChannelBit},
		{"connection message with the bit", Header{ExtensionType: ChannelMsgBit, MsgType: TypeSetupConnectionSuccess, Length: 6}, hx("0200 00000000"), ErrChannelBit},
		{"SetGroupChannel with the bit", Header{ExtensionType: ChannelMsgBit, MsgType: TypeSetGroupChannel, Length: 6}, hx("10000000 0000"), ErrChannelBit},
		{"payload shorter than msg_length", Header{ExtensionType: ChannelMsgBit, MsgType: TypeSubmitSharesStandard, Length: 25}, share, ErrLengthMismatch},
		{"payload longer than msg_length", Header{ExtensionType: ChannelMsgBit, MsgType: TypeSubmitSharesStandard, Length: 23}, share, ErrLengthMismatch},
	} {
		m, err := Decode(c.h, c.payload)
		if !errors.Is(err, c.want) || m != nil {
			t.Errorf("%s: %v, %v; want %v", c.name, m, err, c.want)
		}
	}
}

// stream is every table frame, one after the other.
func stream() []byte {
	var b []byte
	for _, c := range msgCases {
		b = append(b, c.frame...)
	}
	return b
}

// TestFrameReader reads the table's frames from one stream, a byte at a time, and
// then meets a clean end.
func TestFrameReader(t *testing.T) {
	fr := NewFrameReader(iotest.OneByteReader(bytes.NewReader(stream())), MaxPayload)
	for _, c := range msgCases {
		h, m, err := fr.ReadMessage()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if h.MsgType != c.msg.MsgType() || !reflect.DeepEqual(m, c.msg) {
			t.Fatalf("%s: got %+v", c.name, m)
		}
	}
	if _, _, err := fr.Next(); err != io.EOF {
		t.Errorf("after the last frame: %v, want io.EOF", err)
	}
}

func TestFrameReaderEnds(t *testing.T) {
	frame := msgCases[0].frame
	for _, n := range []int{1, HeaderSize - 1, HeaderSize, len(frame) - 1} {
		_, _, err := NewFrameReader(bytes.NewReader(frame[:n]), MaxPayload).Next()
		if err != io.ErrUnexpectedEOF {
			t.Errorf("stream ending after %d bytes: %v", n, err)
		}
	}
	boom := errors.New("boom")
	_, _, err := NewFrameReader(iotest.ErrReader(boom), MaxPayload).Next()
	if !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
}

// TestFrameReaderLimits: a frame over the reader's limit, or over the largest payload
// its type can have, is refused from its header, before its payload is read.
func TestFrameReaderLimits(t *testing.T) {
	for _, c := range []struct {
		name   string
		max    int
		header []byte
		ok     bool
	}{
		{"at the reader's limit", 100, hx("0000 ff 640000"), true},
		{"over the reader's limit", 100, hx("0000 ff 650000"), false},
		{"extension over the limit", 100, hx("0100 00 650000"), false},
		{"SubmitSharesStandard of 24", MaxPayload, hx("0080 1a 180000"), true},
		{"SubmitSharesStandard of 25", MaxPayload, hx("0080 1a 190000"), false},
		{"SetupConnection over its largest", MaxPayload, hx("0000 00 0c0500"), false},
		{"extension SubmitSharesStandard of 25", MaxPayload, hx("0180 1a 190000"), true},
		{"negative limit", -1, hx("0000 ff 010000"), false},
	} {
		// The stream holds only the header: a frame refused from its header
		// fails with ErrFrameTooLarge, one accepted runs out of payload.
		_, _, err := NewFrameReader(bytes.NewReader(c.header), c.max).Next()
		if c.ok && err != io.ErrUnexpectedEOF || !c.ok && !errors.Is(err, ErrFrameTooLarge) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// TestFrameReaderReusesBuffer: the payload slice is reused, so a decoded message must
// not alias it.
func TestFrameReaderReusesBuffer(t *testing.T) {
	var b []byte
	first := &SetExtranoncePrefix{ChannelID: 1, ExtranoncePrefix: hx("aabbccdd")}
	second := &SetExtranoncePrefix{ChannelID: 1, ExtranoncePrefix: hx("11223344")}
	b, _ = AppendFrame(b, first)
	b, _ = AppendFrame(b, second)
	fr := NewFrameReader(bytes.NewReader(b), MaxPayload)
	_, m1, err := fr.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := fr.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m1, first) {
		t.Errorf("first message changed by the second read: %+v", m1)
	}
}
