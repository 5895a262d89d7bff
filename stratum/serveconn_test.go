package stratum

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// addrConn reports a remote address of its choosing, as a protocol bridge's pipe end does.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (a *addrConn) RemoteAddr() net.Addr { return a.remote }

// TestServeConnByRemoteAddr checks that a connection handed to ServeConn is served like
// an accepted one (a client over it completes the handshake) and counted against the
// address it reports, not the pipe's.
func TestServeConnByRemoteAddr(t *testing.T) {
	s, _, _ := startServer(t, Limits{MaxConnsPerIP: 1})
	pipe := func(ip string) (ours net.Conn, err error) {
		ours, theirs := net.Pipe()
		err = s.ServeConn(&addrConn{Conn: theirs, remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 4000}})
		return ours, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ours, err := pipe("203.0.113.5")
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ctx, ours, ClientConfig{User: "w1", Agent: "sv2/v/f", VersionMask: 0x1fffffe0, MinDiff: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.VersionMask(); got != 0x1fffe000 {
		t.Errorf("granted mask %08x, want 1fffe000", got)
	}
	waitUntil(t, func() bool { return len(s.Conns()) == 1 && s.Conns()[0].Authorized() })
	sc := s.Conns()[0]
	if sc.IP() != "203.0.113.5" || sc.RemoteAddr() != "203.0.113.5:4000" || sc.UserAgent() != "sv2/v/f" || sc.MinDifficulty() != 2 {
		t.Errorf("served as ip %q remote %q agent %q min diff %v", sc.IP(), sc.RemoteAddr(), sc.UserAgent(), sc.MinDifficulty())
	}

	// The address's one place is taken: refused, and the pipe closed.
	second, err := pipe("203.0.113.5")
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("second connection of the address: %v, want ErrRefused", err)
	}
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := second.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("refused pipe read: %v, want EOF", err)
	}
	// Another address is still welcome.
	third, err := pipe("198.51.100.7")
	if err != nil {
		t.Fatalf("other address: %v", err)
	}
	third.Close()
}
