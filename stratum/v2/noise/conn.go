package noise

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

const (
	// HeaderSize is the SV2 frame header: extension_type u16, msg_type u8, msg_length u24,
	// all little-endian.
	HeaderSize = 6
	// EncryptedHeaderSize is the header as sent: sealed on its own.
	EncryptedHeaderSize = HeaderSize + MACSize
	// MaxChunk is the largest Noise message (ciphertext with MAC); longer payloads are
	// split into chunks of this size.
	MaxChunk = 65535
	// MaxChunkPayload is the plaintext that fills a chunk.
	MaxChunkPayload = MaxChunk - MACSize
	// MaxPayload is the largest payload msg_length can state.
	MaxPayload = 1<<24 - 1

	// DefaultMaxPayload bounds what one frame may make a connection allocate. Mining
	// protocol messages are far smaller (their largest fields are B0_64K coinbase parts
	// and short Merkle paths); job declaration, which carries transactions, needs more and
	// sets its own.
	DefaultMaxPayload = 1 << 18
	// DefaultHandshakeTimeout bounds the handshake: two messages, one round trip.
	DefaultHandshakeTimeout = 10 * time.Second
)

// ErrFrameTooLarge is returned by ReadFrame for a header stating more than the
// connection's MaxPayload, and by WriteFrame for a payload over the protocol's limit.
var ErrFrameTooLarge = errors.New("noise: frame too large")

// Header is the SV2 frame header. The top bit of ExtensionType is the channel_msg flag;
// it is carried as is.
type Header struct {
	ExtensionType uint16
	MsgType       uint8
	Length        uint32 // payload bytes (plaintext), below 2^24
}

func (h Header) bytes() [HeaderSize]byte {
	return [HeaderSize]byte{
		byte(h.ExtensionType), byte(h.ExtensionType >> 8),
		h.MsgType,
		byte(h.Length), byte(h.Length >> 8), byte(h.Length >> 16),
	}
}

func parseHeader(b []byte) Header {
	return Header{
		ExtensionType: uint16(b[0]) | uint16(b[1])<<8,
		MsgType:       b[2],
		Length:        uint32(b[3]) | uint32(b[4])<<8 | uint32(b[5])<<16,
	}
}

// EncryptedLength is the spec's pt_len_to_ct_len: the bytes a payload of n plaintext
// bytes takes on the wire, a MAC per started chunk.
func EncryptedLength(n int) int {
	full, rest := n/MaxChunkPayload, n%MaxChunkPayload
	if rest > 0 {
		rest += MACSize
	}
	return full*MaxChunk + rest
}

// Conn is an SV2 connection after the handshake.
type Conn struct {
	nc         net.Conn  // for deadlines, addresses and Close; may be nil in tests
	r          io.Reader // where frames are read from (nc, or a test reader)
	w          io.Writer
	maxPayload int
	peerCert   *Certificate // the server's certificate, on the client side

	rmu  sync.Mutex
	recv cipherState
	rerr error // sticky: after a failure the nonces no longer agree

	wmu  sync.Mutex
	send cipherState
	werr error
}

func newConn(nc net.Conn, r io.Reader, w io.Writer, send, recv cipherState, maxPayload int) *Conn {
	return &Conn{nc: nc, r: r, w: w, send: send, recv: recv, maxPayload: maxPayload}
}

// ReadFrame reads and decrypts one frame. The payload is newly allocated and belongs to
// the caller. Any error is final, an expired read deadline included (part of a frame may
// have been consumed): the caller closes the connection.
func (c *Conn) ReadFrame() (Header, []byte, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return Header{}, nil, c.rerr
	}
	h, p, err := c.readFrame()
	if err != nil {
		c.rerr = err
		return Header{}, nil, err
	}
	return h, p, nil
}

func (c *Conn) readFrame() (Header, []byte, error) {
	var hbuf [EncryptedHeaderSize]byte
	if _, err := io.ReadFull(c.r, hbuf[:]); err != nil {
		return Header{}, nil, readErr(err)
	}
	pt, err := c.recv.open(hbuf[:0], nil, hbuf[:])
	if err != nil {
		return Header{}, nil, fmt.Errorf("noise: frame header: %w", err)
	}
	h := parseHeader(pt)
	n := int(h.Length)
	if n > c.maxPayload {
		return Header{}, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, c.maxPayload)
	}
	// Each chunk is read into the tail of the payload buffer and opened in place, the
	// buffer growing a chunk at a time so that memory follows the bytes received rather
	// than what the header claims.
	buf := make([]byte, 0, min(n, MaxChunkPayload)+MACSize)
	done := 0
	for done < n {
		m := min(n-done, MaxChunkPayload)
		buf = slices.Grow(buf[:done], m+MACSize)
		ct := buf[done : done+m+MACSize]
		if _, err := io.ReadFull(c.r, ct); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // the header promised more
			}
			return Header{}, nil, readErr(err)
		}
		if _, err := c.recv.open(ct[:0], nil, ct); err != nil {
			return Header{}, nil, fmt.Errorf("noise: frame payload: %w", err)
		}
		done += m
	}
	return h, buf[:n:n], nil
}

// readErr marks a frame cut short, so that a peer that stops mid-frame is not taken for
// one that closed between frames.
func readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("noise: truncated frame: %w", err)
	}
	return fmt.Errorf("noise: read: %w", err)
}

// WriteFrame encrypts and sends one frame with one Write. A failed write leaves the
// stream unusable (the peer's nonces may be ahead), so the error is final.
func (c *Conn) WriteFrame(extensionType uint16, msgType uint8, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(payload))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	buf, err := c.seal(Header{ExtensionType: extensionType, MsgType: msgType, Length: uint32(len(payload))}, payload)
	if err == nil {
		_, err = c.w.Write(buf)
		if err != nil {
			err = fmt.Errorf("noise: write: %w", err)
		}
	}
	if err != nil {
		c.werr = err
	}
	return err
}

func (c *Conn) seal(h Header, payload []byte) ([]byte, error) {
	buf := make([]byte, 0, EncryptedHeaderSize+EncryptedLength(len(payload)))
	hb := h.bytes()
	buf, err := c.send.seal(buf, nil, hb[:])
	if err != nil {
		return nil, err
	}
	for len(payload) > 0 {
		m := min(len(payload), MaxChunkPayload)
		if buf, err = c.send.seal(buf, nil, payload[:m]); err != nil {
			return nil, err
		}
		payload = payload[m:]
	}
	return buf, nil
}

// PeerCertificate is the certificate the server presented, on a client Conn; nil on a
// server Conn.
func (c *Conn) PeerCertificate() *Certificate { return c.peerCert }

// Close closes the underlying connection.
func (c *Conn) Close() error { return c.nc.Close() }

// NetConn is the underlying connection, for deadlines and addresses. Reading or writing
// it directly breaks the stream.
func (c *Conn) NetConn() net.Conn { return c.nc }

// ServerConfig is what Server needs. Zero limits take the defaults.
type ServerConfig struct {
	Identity         *Identity
	HandshakeTimeout time.Duration // whole handshake, from Server's call
	MaxPayload       int           // largest frame payload accepted, at most MaxPayload
}

// ClientConfig is what Client needs. Zero values take the defaults.
type ClientConfig struct {
	Authority        AuthorityKey // the server's certificate must be signed by this key
	HandshakeTimeout time.Duration
	MaxPayload       int
	ClockSkew        time.Duration    // leeway around the certificate's window; default DefaultClockSkew
	Now              func() time.Time // the clock certificates are checked against; default time.Now
}

func payloadLimit(n int) (int, error) {
	switch {
	case n == 0:
		return DefaultMaxPayload, nil
	case n < 0 || n > MaxPayload:
		return 0, fmt.Errorf("noise: MaxPayload %d outside 1..%d", n, MaxPayload)
	}
	return n, nil
}

func handshakeDeadline(nc net.Conn, d time.Duration) error {
	if d == 0 {
		d = DefaultHandshakeTimeout
	}
	if err := nc.SetDeadline(time.Now().Add(d)); err != nil {
		return fmt.Errorf("noise: set deadline: %w", err)
	}
	return nil
}

// Server runs the responder's handshake on nc. On error the caller closes nc.
func Server(nc net.Conn, cfg ServerConfig) (*Conn, error) {
	maxPayload, err := payloadLimit(cfg.MaxPayload)
	if err != nil {
		return nil, err
	}
	if cfg.Identity == nil || cfg.Identity.Static == nil {
		return nil, errors.New("noise: server has no identity")
	}
	if err := handshakeDeadline(nc, cfg.HandshakeTimeout); err != nil {
		return nil, err
	}
	var m1 [Message1Size]byte
	if _, err := io.ReadFull(nc, m1[:]); err != nil {
		return nil, fmt.Errorf("noise: handshake read: %w", err)
	}
	m2, send, recv, err := respond(m1[:], cfg.Identity)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write(m2); err != nil {
		return nil, fmt.Errorf("noise: handshake write: %w", err)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("noise: clear deadline: %w", err)
	}
	return newConn(nc, nc, nc, send, recv, maxPayload), nil
}

// Client runs the initiator's handshake on nc and checks the server's certificate
// against cfg.Authority. On error the caller closes nc.
func Client(nc net.Conn, cfg ClientConfig) (*Conn, error) {
	maxPayload, err := payloadLimit(cfg.MaxPayload)
	if err != nil {
		return nil, err
	}
	if _, err := cfg.Authority.pubKey(); err != nil {
		return nil, err
	}
	now, skew := cfg.Now, cfg.ClockSkew
	if now == nil {
		now = time.Now
	}
	switch {
	case skew == 0:
		skew = DefaultClockSkew
	case skew < 0:
		return nil, fmt.Errorf("noise: negative ClockSkew %v", skew)
	}
	if err := handshakeDeadline(nc, cfg.HandshakeTimeout); err != nil {
		return nil, err
	}
	ini, m1, err := newInitiator()
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write(m1[:]); err != nil {
		return nil, fmt.Errorf("noise: handshake write: %w", err)
	}
	var m2 [Message2Size]byte
	if _, err := io.ReadFull(nc, m2[:]); err != nil {
		return nil, fmt.Errorf("noise: handshake read: %w", err)
	}
	hello, err := ini.readMessage2(m2[:])
	if err != nil {
		return nil, err
	}
	if err := hello.cert.Verify(cfg.Authority, hello.static, now(), skew); err != nil {
		return nil, err
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("noise: clear deadline: %w", err)
	}
	c := newConn(nc, nc, nc, hello.send, hello.recv, maxPayload)
	c.peerCert = &hello.cert
	return c, nil
}
