package sv2

import (
	"errors"
	"fmt"
	"io"
)

// HeaderSize is the size of a frame header: extension_type U16, msg_type U8,
// msg_length U24 (chapter 3.2).
const HeaderSize = 6

// ChannelMsgBit is the channel_msg bit of extension_type: the most significant bit of
// the U16, so the high bit of the header's second byte. The spec's prose calls it
// both "the least significant bit" and "bit 15"; its table and the reference
// implementation (mask 0x8000) settle it.
const ChannelMsgBit uint16 = 0x8000

// MaxPayload is the largest payload msg_length can express.
const MaxPayload = MaxU24

// Errors of framing and dispatch; test them with errors.Is.
var (
	// ErrExtension: the frame belongs to a protocol extension. The spec says to
	// drop such a frame when it is for this endpoint and to forward it by channel
	// when the channel_msg bit is set; the caller decides which.
	ErrExtension = errors.New("message of a protocol extension")
	// ErrUnknownType: a msg_type of no Common or Mining Protocol message.
	ErrUnknownType = errors.New("unknown message type")
	// ErrChannelBit: the channel_msg bit differs from the spec's for the message type.
	ErrChannelBit = errors.New("channel_msg bit does not match the message type")
	// ErrFrameTooLarge: msg_length is over the reader's limit or over the largest
	// payload of its message type.
	ErrFrameTooLarge = errors.New("frame over the payload limit")
	// ErrLengthMismatch: the payload is not msg_length bytes.
	ErrLengthMismatch = errors.New("payload length differs from msg_length")
)

// Header is a frame header.
type Header struct {
	ExtensionType uint16 // channel_msg bit included
	MsgType       uint8
	Length        uint32 // msg_length, at most MaxPayload
}

// ChannelMsg reports whether the channel_msg bit is set.
func (h Header) ChannelMsg() bool { return h.ExtensionType&ChannelMsgBit != 0 }

// Extension returns the extension type without the channel_msg bit; 0 for the core
// protocols.
func (h Header) Extension() uint16 { return h.ExtensionType &^ ChannelMsgBit }

// ParseHeader reads a frame header from the first HeaderSize bytes of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("sv2: frame header of %d bytes: %w", len(b), ErrTruncated)
	}
	return Header{
		ExtensionType: uint16(b[0]) | uint16(b[1])<<8,
		MsgType:       b[2],
		Length:        uint32(b[3]) | uint32(b[4])<<8 | uint32(b[5])<<16,
	}, nil
}

// AppendHeader appends h.
func AppendHeader(dst []byte, h Header) ([]byte, error) {
	if h.Length > MaxPayload {
		return dst, fmt.Errorf("sv2: frame of %d bytes: %w", h.Length, ErrFrameTooLarge)
	}
	return append(dst, byte(h.ExtensionType), byte(h.ExtensionType>>8), h.MsgType,
		byte(h.Length), byte(h.Length>>8), byte(h.Length>>16)), nil
}

// AppendFrame appends m as a frame: its header, with extension_type 0 and the
// channel_msg bit the spec gives its type, then its payload. On error nothing is
// appended.
func AppendFrame(dst []byte, m Message) ([]byte, error) {
	start := len(dst)
	var ext uint16
	if IsChannelMsg(m.MsgType()) {
		ext = ChannelMsgBit
	}
	dst = append(dst, byte(ext), byte(ext>>8), m.MsgType(), 0, 0, 0)
	out, err := m.Encode(dst)
	if err != nil {
		return dst[:start], err
	}
	n := len(out) - start - HeaderSize
	if n > MaxPayload {
		return out[:start], fmt.Errorf("sv2: %s of %d bytes: %w", Name(m.MsgType()), n, ErrFrameTooLarge)
	}
	out[start+3], out[start+4], out[start+5] = byte(n), byte(n>>8), byte(n>>16)
	return out, nil
}

// Decode decodes the payload of a frame of the Common or Mining Protocol. A frame of
// an extension is ErrExtension, an unknown type ErrUnknownType, and a channel_msg bit
// other than the spec's for the type ErrChannelBit: the bit decides how proxies route
// a frame, so a wrong one is a malformed frame rather than a detail to overlook.
func Decode(h Header, payload []byte) (Message, error) {
	if uint32(len(payload)) != h.Length || len(payload) > MaxPayload {
		return nil, fmt.Errorf("sv2: msg_length %d, payload of %d bytes: %w", h.Length, len(payload), ErrLengthMismatch)
	}
	if h.Extension() != 0 {
		return nil, fmt.Errorf("sv2: extension_type %#04x: %w", h.ExtensionType, ErrExtension)
	}
	info := messages[h.MsgType]
	if info == nil {
		return nil, fmt.Errorf("sv2: msg_type %#02x: %w", h.MsgType, ErrUnknownType)
	}
	if h.ChannelMsg() != info.channel {
		return nil, fmt.Errorf("sv2: %s with channel_msg %t: %w", info.name, h.ChannelMsg(), ErrChannelBit)
	}
	m := info.new()
	if err := m.Decode(payload); err != nil {
		return nil, err
	}
	return m, nil
}

// FrameReader reads frames from an unencrypted stream (or from the plaintext a Noise
// transport yields), refusing any frame over its payload limit before reading it.
type FrameReader struct {
	r   io.Reader
	max int
	hdr [HeaderSize]byte
	buf []byte
}

// NewFrameReader returns a FrameReader refusing payloads over maxPayload bytes (at
// most MaxPayload). Frames of the core protocols are further bounded by MaxLen of
// their type.
func NewFrameReader(r io.Reader, maxPayload int) *FrameReader {
	return &FrameReader{r: r, max: min(max(maxPayload, 0), MaxPayload)}
}

// Next reads one frame. The payload is valid until the next call. At a clean end of
// the stream the error is io.EOF; inside a frame, io.ErrUnexpectedEOF.
func (f *FrameReader) Next() (Header, []byte, error) {
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		return Header{}, nil, err
	}
	h, _ := ParseHeader(f.hdr[:])
	limit := f.max
	if h.Extension() == 0 {
		if n := MaxLen(h.MsgType); n != 0 && n < limit {
			limit = n
		}
	}
	if int(h.Length) > limit {
		return h, nil, fmt.Errorf("sv2: frame type %#02x of %d bytes, limit %d: %w", h.MsgType, h.Length, limit, ErrFrameTooLarge)
	}
	if cap(f.buf) < int(h.Length) {
		f.buf = make([]byte, h.Length)
	}
	p := f.buf[:h.Length]
	if _, err := io.ReadFull(f.r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, err
	}
	return h, p, nil
}

// ReadMessage reads one frame and decodes it. On ErrExtension the header is returned,
// so that a caller can forward or drop the frame.
func (f *FrameReader) ReadMessage() (Header, Message, error) {
	h, p, err := f.Next()
	if err != nil {
		return h, nil, err
	}
	m, err := Decode(h, p)
	return h, m, err
}
