package noise

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type testPKI struct {
	auth *Authority
	id   *Identity
	from time.Time // the certificate's window
	to   time.Time
}

func newPKI(tb testing.TB) testPKI {
	tb.Helper()
	auth := AuthorityFromKey(newKey(tb))
	static := newKey(tb)
	from := time.Now().Add(-time.Hour).Truncate(time.Second)
	to := from.Add(48 * time.Hour)
	c, err := auth.Certify(static.PubKey(), from, to)
	if err != nil {
		tb.Fatal(err)
	}
	return testPKI{auth: auth, id: &Identity{Static: static, Certificate: c}, from: from, to: to}
}

func (p testPKI) server() ServerConfig { return ServerConfig{Identity: p.id} }
func (p testPKI) client() ClientConfig { return ClientConfig{Authority: p.auth.PublicKey()} }

// handshake runs Server on sc and Client on cc at once. A side that fails closes its
// end, so that the other is not left waiting.
func handshake(tb testing.TB, sc, cc net.Conn, scfg ServerConfig, ccfg ClientConfig) (srv, cli *Conn, serr, cerr error) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if srv, serr = Server(sc, scfg); serr != nil {
			sc.Close()
		}
	}()
	if cli, cerr = Client(cc, ccfg); cerr != nil {
		cc.Close()
	}
	<-done
	return srv, cli, serr, cerr
}

func pipePair(tb testing.TB, p testPKI) (srv, cli *Conn) {
	tb.Helper()
	sc, cc := net.Pipe()
	tb.Cleanup(func() { sc.Close(); cc.Close() })
	srv, cli, serr, cerr := handshake(tb, sc, cc, p.server(), p.client())
	if serr != nil || cerr != nil {
		tb.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	return srv, cli
}

func tcpPair(tb testing.TB, p testPKI) (srv, cli *Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	sc, ok := <-accepted
	if !ok {
		tb.Fatal("accept failed")
	}
	tb.Cleanup(func() { sc.Close(); cc.Close() })
	srv, cli, serr, cerr := handshake(tb, sc, cc, p.server(), p.client())
	if serr != nil || cerr != nil {
		tb.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	return srv, cli
}

type testFrame struct {
	ext     uint16
	typ     uint8
	payload []byte
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

// frameSizes cross every chunk boundary the spec draws.
var frameSizes = []int{0, 1, 16, 100, MaxChunkPayload - 1, MaxChunkPayload, MaxChunkPayload + 1, MaxChunk, 2 * MaxChunkPayload, 2*MaxChunkPayload + 1, 140_000}

func testFrames() []testFrame {
	var fs []testFrame
	for i, n := range frameSizes {
		fs = append(fs, testFrame{ext: uint16(i) | 0x8000*uint16(i%2), typ: uint8(0x10 + i), payload: pattern(n)})
	}
	return fs
}

// exchange sends frames from w to r (from a goroutine: net.Pipe does not buffer) and
// checks that r reads exactly them.
func exchange(w, r *Conn, frames []testFrame) error {
	errc := make(chan error, 1)
	go func() {
		for _, f := range frames {
			if err := w.WriteFrame(f.ext, f.typ, f.payload); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i, f := range frames {
		h, p, err := r.ReadFrame()
		if err != nil {
			return fmt.Errorf("frame %d: %w", i, err)
		}
		if h.ExtensionType != f.ext || h.MsgType != f.typ || int(h.Length) != len(f.payload) || !bytes.Equal(p, f.payload) {
			return fmt.Errorf("frame %d: got %+v with %d bytes, want ext %#x type %#x and %d bytes", i, h, len(p), f.ext, f.typ, len(f.payload))
		}
	}
	return <-errc
}

func TestHandshakePipe(t *testing.T) {
	p := newPKI(t)
	srv, cli := pipePair(t, p)
	if err := exchange(cli, srv, testFrames()); err != nil {
		t.Fatalf("client to server: %v", err)
	}
	if err := exchange(srv, cli, testFrames()); err != nil {
		t.Fatalf("server to client: %v", err)
	}
	if got := cli.PeerCertificate(); got == nil || *got != p.id.Certificate {
		t.Fatalf("client saw certificate %+v, want %+v", got, p.id.Certificate)
	}
	if srv.PeerCertificate() != nil {
		t.Fatal("server Conn has a peer certificate")
	}
}

func TestHandshakeTCP(t *testing.T) {
	p := newPKI(t)
	srv, cli := tcpPair(t, p)
	// Both directions at once: ReadFrame and WriteFrame run side by side on each Conn.
	var wg sync.WaitGroup
	var s2c error
	wg.Add(1)
	go func() { defer wg.Done(); s2c = exchange(srv, cli, testFrames()) }()
	c2s := exchange(cli, srv, testFrames())
	wg.Wait()
	if c2s != nil || s2c != nil {
		t.Fatalf("client to server: %v; server to client: %v", c2s, s2c)
	}
}

// TestHandshakeSessionsDiffer: two handshakes with the same identity share no keys.
func TestHandshakeSessionsDiffer(t *testing.T) {
	p := newPKI(t)
	s1, c1 := pipePair(t, p)
	_, c2 := pipePair(t, p)
	a, _ := c1.seal(Header{MsgType: 1, Length: 1}, []byte{9})
	b, _ := c2.seal(Header{MsgType: 1, Length: 1}, []byte{9})
	if bytes.Equal(a, b) {
		t.Fatal("two sessions sealed a frame identically")
	}
	// ...and one session's frame means nothing to the other.
	s1.r = bytes.NewReader(b)
	if _, _, err := s1.ReadFrame(); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("frame of another session: err %v, want ErrAuthentication", err)
	}
}

// TestEncryptedLength checks the spec's pt_len_to_ct_len (values from its C code).
func TestEncryptedLength(t *testing.T) {
	for _, c := range []struct{ pt, ct int }{
		{0, 0}, {1, 17}, {16, 32}, {65518, 65534}, {65519, 65535}, {65520, 65552},
		{131038, 131070}, {131039, 131087}, {1<<24 - 1, 16781327},
	} {
		if got := EncryptedLength(c.pt); got != c.ct {
			t.Errorf("EncryptedLength(%d) = %d, want %d", c.pt, got, c.ct)
		}
	}
}

type countingConn struct {
	net.Conn
	written atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	return n, err
}

// TestWireLength: on the wire a frame is the 22-byte sealed header plus the chunked
// payload; the handshake is 64 bytes one way and 234 the other.
func TestWireLength(t *testing.T) {
	p := newPKI(t)
	s, c := net.Pipe()
	defer s.Close()
	defer c.Close()
	sc, cc := &countingConn{Conn: s}, &countingConn{Conn: c}
	srv, cli, serr, cerr := handshake(t, sc, cc, p.server(), p.client())
	if serr != nil || cerr != nil {
		t.Fatal(serr, cerr)
	}
	if cc.written.Load() != 64 || sc.written.Load() != 234 {
		t.Fatalf("handshake wrote client %d, server %d bytes; want 64 and 234", cc.written.Load(), sc.written.Load())
	}
	for _, f := range testFrames() {
		before := cc.written.Load()
		if err := exchange(cli, srv, []testFrame{f}); err != nil {
			t.Fatal(err)
		}
		if got, want := cc.written.Load()-before, int64(EncryptedHeaderSize+EncryptedLength(len(f.payload))); got != want {
			t.Errorf("payload %d: %d bytes on the wire, want %d", len(f.payload), got, want)
		}
	}
}

func TestWrongAuthorityRefused(t *testing.T) {
	p := newPKI(t)
	sc, cc := net.Pipe()
	defer sc.Close()
	cfg := p.client()
	cfg.Authority = AuthorityFromKey(newKey(t)).PublicKey()
	srv, cli, serr, cerr := handshake(t, sc, cc, p.server(), cfg)
	if !errors.Is(cerr, ErrCertificate) || cli != nil {
		t.Fatalf("client: %v, %v; want ErrCertificate and no Conn", cli, cerr)
	}
	// The server finished its half; whether it noticed the hang-up already (a pipe
	// refuses to clear a deadline once closed) or only on its first read, it gets an error
	// and no frame.
	if serr == nil {
		if h, b, err := srv.ReadFrame(); err == nil {
			t.Fatalf("server read %+v %x after the client refused it", h, b)
		}
	}
}

func TestCertificateWindowRefused(t *testing.T) {
	p := newPKI(t)
	for _, c := range []struct {
		name string
		now  time.Time
		ok   bool
	}{
		{"expired", p.to.Add(DefaultClockSkew + time.Second), false},
		{"not yet valid", p.from.Add(-DefaultClockSkew - time.Second), false},
		{"just expired, within skew", p.to.Add(DefaultClockSkew), true},
		{"inside", p.from.Add(time.Minute), true},
	} {
		sc, cc := net.Pipe()
		cfg := p.client()
		now := c.now
		cfg.Now = func() time.Time { return now }
		_, _, serr, cerr := handshake(t, sc, cc, p.server(), cfg)
		sc.Close()
		cc.Close()
		if c.ok && (cerr != nil || serr != nil) {
			t.Errorf("%s: client: %v, server: %v", c.name, cerr, serr)
		}
		if !c.ok && !errors.Is(cerr, ErrCertificateTime) {
			t.Errorf("%s: client: %v, want ErrCertificateTime", c.name, cerr)
		}
	}
}

// TestHandshakeTamper changes bytes of both handshake messages, as a man in the middle
// would: the client must refuse every time. A change in a sealed part fails its MAC; a
// change in a clear ephemeral key changes the handshake hash and the keys, so the next
// MAC fails too. Every byte of act 2 is tried; act 1 at the edges of its u and t halves
// and between (each try there costs a whole server half).
func TestHandshakeTamper(t *testing.T) {
	p := newPKI(t)
	for _, i := range []int{0, 1, 15, 30, 31, 32, 33, 47, 62, 63} {
		ini, m1, err := newInitiator()
		if err != nil {
			t.Fatal(err)
		}
		m1[i] ^= 0x01
		m2, _, _, err := respond(m1[:], p.id)
		if err != nil {
			t.Fatalf("respond: %v", err)
		}
		if _, err := ini.readMessage2(m2); !errors.Is(err, ErrAuthentication) {
			t.Fatalf("act 1 byte %d changed: err %v, want ErrAuthentication", i, err)
		}
	}
	ini, m1, err := newInitiator()
	if err != nil {
		t.Fatal(err)
	}
	m2, _, _, err := respond(m1[:], p.id)
	if err != nil {
		t.Fatal(err)
	}
	for i := range Message2Size {
		bad := bytes.Clone(m2)
		bad[i] ^= 0x80
		try := *ini // each try from the state act 1 left
		if _, err := try.readMessage2(bad); !errors.Is(err, ErrAuthentication) {
			t.Fatalf("act 2 byte %d changed: err %v, want ErrAuthentication", i, err)
		}
	}
	if _, err := ini.readMessage2(m2); err != nil {
		t.Fatalf("unchanged act 2: %v", err)
	}
}

// flipProxy relays a to b and b to a, changing one byte of the b-to-a stream.
func flipProxy(a, b net.Conn, at int) {
	go io.Copy(b, a)
	go func() {
		buf := make([]byte, 4096)
		seen := 0
		for {
			n, err := b.Read(buf)
			if n > 0 {
				if at >= seen && at < seen+n {
					buf[at-seen] ^= 0x04
				}
				seen += n
				if _, werr := a.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				a.Close()
				return
			}
		}
	}()
}

// TestTamperOverNetwork: a proxy changes one byte that the server sends, in the handshake
// or in a frame; the client refuses, and receives nothing.
func TestTamperOverNetwork(t *testing.T) {
	p := newPKI(t)
	for _, at := range []int{0, 100, Message2Size - 1, Message2Size, Message2Size + 30} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			sc, px1 := net.Pipe()
			px2, cc := net.Pipe()
			defer sc.Close()
			defer cc.Close()
			defer px1.Close()
			defer px2.Close()
			flipProxy(px2, px1, at)
			srv, cli, serr, cerr := handshake(t, sc, cc, p.server(), p.client())
			if at < Message2Size {
				if cerr == nil || cli != nil {
					t.Fatalf("client accepted a changed handshake")
				}
				return
			}
			if serr != nil || cerr != nil {
				t.Fatal(serr, cerr)
			}
			go srv.WriteFrame(0, 1, []byte("submit shares success: 4 shares, sum 1000"))
			if h, b, err := cli.ReadFrame(); err == nil {
				t.Fatalf("client read %+v %q from a changed frame", h, b)
			} else if !errors.Is(err, ErrAuthentication) {
				t.Fatalf("err %v, want ErrAuthentication", err)
			}
		})
	}
}

// sessionStates makes a matched pair of transport states without a network.
func sessionStates(tb testing.TB) (send, recv cipherState) {
	tb.Helper()
	p := newPKI(tb)
	ini, m1, err := newInitiator()
	if err != nil {
		tb.Fatal(err)
	}
	m2, _, srvRecv, err := respond(m1[:], p.id)
	if err != nil {
		tb.Fatal(err)
	}
	hello, err := ini.readMessage2(m2)
	if err != nil {
		tb.Fatal(err)
	}
	return hello.send, srvRecv
}

func readerConn(r io.Reader, recv cipherState, maxPayload int) *Conn {
	return newConn(nil, r, io.Discard, cipherState{}, recv, maxPayload)
}

// TestFrameTamper changes each byte of a one-chunk frame, and bytes around every chunk
// boundary of a three-chunk one: each read fails and returns no payload.
func TestFrameTamper(t *testing.T) {
	send, recv := sessionStates(t)
	w := newConn(nil, nil, nil, send, cipherState{}, 0)
	small, err := w.seal(Header{MsgType: 0x1c, Length: 40}, pattern(40))
	if err != nil {
		t.Fatal(err)
	}
	big, err := w.seal(Header{ExtensionType: 2, MsgType: 0x1d, Length: 140_000}, pattern(140_000))
	if err != nil {
		t.Fatal(err)
	}
	check := func(wire []byte, at int, r cipherState) {
		bad := bytes.Clone(wire)
		bad[at] ^= 0x10
		h, b, err := readerConn(bytes.NewReader(bad), r, 1<<20).ReadFrame()
		if !errors.Is(err, ErrAuthentication) || b != nil || h != (Header{}) {
			t.Fatalf("byte %d of %d changed: %+v, %d bytes, err %v", at, len(wire), h, len(b), err)
		}
	}
	for at := range small {
		check(small, at, recv)
	}
	// The big frame was sealed after the small one's header and chunk: its reader starts
	// two nonces on.
	r2 := recv
	r2.n += 2
	var positions []int
	for _, edge := range []int{0, EncryptedHeaderSize, EncryptedHeaderSize + MaxChunk, EncryptedHeaderSize + 2*MaxChunk, len(big)} {
		for d := -2; d <= 2; d++ {
			if at := edge + d; at >= 0 && at < len(big) {
				positions = append(positions, at)
			}
		}
	}
	for _, at := range positions {
		check(big, at, r2)
	}
	// Unchanged, both read back.
	r := readerConn(io.MultiReader(bytes.NewReader(small), bytes.NewReader(big)), recv, 1<<20)
	for _, want := range []int{40, 140_000} {
		if _, b, err := r.ReadFrame(); err != nil || !bytes.Equal(b, pattern(want)) {
			t.Fatalf("unchanged frame of %d: %d bytes, %v", want, len(b), err)
		}
	}
}

// TestFrameTruncated: a frame cut anywhere is an error, never a short payload.
func TestFrameTruncated(t *testing.T) {
	send, recv := sessionStates(t)
	w := newConn(nil, nil, nil, send, cipherState{}, 0)
	wire, err := w.seal(Header{MsgType: 3, Length: 70_000}, pattern(70_000))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, EncryptedHeaderSize - 1, EncryptedHeaderSize, EncryptedHeaderSize + 1, EncryptedHeaderSize + MaxChunk, len(wire) - 1} {
		h, b, err := readerConn(bytes.NewReader(wire[:n]), recv, 1<<20).ReadFrame()
		if err == nil || b != nil {
			t.Fatalf("cut at %d: %+v, %d bytes, err %v", n, h, len(b), err)
		}
		if n > 0 && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut at %d: err %v, want unexpected EOF", n, err)
		}
	}
}

// TestReplayAndReorder: a frame sent again, or two frames swapped, fail their MACs since
// each takes the next nonce.
func TestReplayAndReorder(t *testing.T) {
	send, recv := sessionStates(t)
	w := newConn(nil, nil, nil, send, cipherState{}, 0)
	f1, _ := w.seal(Header{MsgType: 1, Length: 3}, []byte("one"))
	f2, _ := w.seal(Header{MsgType: 2, Length: 3}, []byte("two"))

	r := readerConn(bytes.NewReader(slicesConcat(f1, f1)), recv, 100)
	if _, b, err := r.ReadFrame(); err != nil || string(b) != "one" {
		t.Fatalf("first read: %q %v", b, err)
	}
	if _, _, err := r.ReadFrame(); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("replayed frame: err %v, want ErrAuthentication", err)
	}
	r = readerConn(bytes.NewReader(slicesConcat(f2, f1)), recv, 100)
	if _, _, err := r.ReadFrame(); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("reordered frame: err %v, want ErrAuthentication", err)
	}
}

func slicesConcat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// TestStickyError: after one failure a Conn refuses to read on, even good frames.
func TestStickyError(t *testing.T) {
	send, recv := sessionStates(t)
	w := newConn(nil, nil, nil, send, cipherState{}, 0)
	f1, _ := w.seal(Header{MsgType: 1, Length: 3}, []byte("one"))
	bad := bytes.Clone(f1)
	bad[5] ^= 1
	r := readerConn(bytes.NewReader(slicesConcat(bad, f1)), recv, 100)
	_, _, err1 := r.ReadFrame()
	_, b, err2 := r.ReadFrame()
	if err1 == nil || err2 != err1 || b != nil {
		t.Fatalf("errors %v then %v (%q); want the same error twice", err1, err2, b)
	}
}

// TestFrameTooLarge: the limit is checked on the header, before any payload is read
// (the reader below has none to give).
func TestFrameTooLarge(t *testing.T) {
	send, recv := sessionStates(t)
	w := newConn(nil, nil, nil, send, cipherState{}, 0)
	atLimit, _ := w.seal(Header{MsgType: 1, Length: 1000}, pattern(1000))
	over, _ := w.seal(Header{MsgType: 1, Length: 1001}, pattern(1001))
	r := readerConn(bytes.NewReader(slicesConcat(atLimit, over[:EncryptedHeaderSize])), recv, 1000)
	if _, b, err := r.ReadFrame(); err != nil || len(b) != 1000 {
		t.Fatalf("frame at the limit: %d bytes, %v", len(b), err)
	}
	if _, _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("frame over the limit: err %v, want ErrFrameTooLarge", err)
	}
	if err := w.WriteFrame(0, 0, make([]byte, MaxPayload+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("writing 2^24 bytes: err %v, want ErrFrameTooLarge", err)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	p := newPKI(t)
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	cfg := p.server()
	cfg.HandshakeTimeout = 50 * time.Millisecond
	start := time.Now()
	_, err := Server(sc, cfg) // the client never speaks
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("server: err %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %v", d)
	}

	sc2, cc2 := net.Pipe()
	defer sc2.Close()
	defer cc2.Close()
	go io.Copy(io.Discard, sc2) // a server that reads and never answers
	ccfg := p.client()
	ccfg.HandshakeTimeout = 50 * time.Millisecond
	if _, err := Client(cc2, ccfg); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("client: err %v, want a timeout", err)
	}
}

func TestHandshakeCutShort(t *testing.T) {
	p := newPKI(t)
	sc, cc := net.Pipe()
	defer sc.Close()
	go func() { cc.Write(make([]byte, 10)); cc.Close() }()
	if _, err := Server(sc, p.server()); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("server: err %v, want unexpected EOF", err)
	}
}

func TestConfigRefused(t *testing.T) {
	p := newPKI(t)
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	for _, n := range []int{-1, MaxPayload + 1} {
		cfg := p.server()
		cfg.MaxPayload = n
		if _, err := Server(sc, cfg); err == nil {
			t.Errorf("server MaxPayload %d: no error", n)
		}
		ccfg := p.client()
		ccfg.MaxPayload = n
		if _, err := Client(cc, ccfg); err == nil {
			t.Errorf("client MaxPayload %d: no error", n)
		}
	}
	neg := p.client()
	neg.ClockSkew = -time.Second
	if _, err := Client(cc, neg); err == nil {
		t.Error("client with negative ClockSkew: no error")
	}
	if _, err := Server(sc, ServerConfig{}); err == nil {
		t.Error("server without identity: no error")
	}
	if _, err := Client(cc, ClientConfig{}); !errors.Is(err, errKeyFormat) {
		t.Errorf("client without authority: err %v, want errKeyFormat", err)
	}
}

func newPipe(tb testing.TB) (net.Conn, net.Conn) {
	a, b := net.Pipe()
	tb.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
