//go:build linux

package bench

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// TestRxTimestamp reads a line that has waited in a socket's receive queue: the time
// recvmsg reports is when it arrived, not when it was read.
func TestRxTimestamp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	defer peer.Close()
	fd, err := detach(&conn{nc: nc})
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
		t.Fatal(err)
	}
	// The kernel turns receive timestamps on a moment after the first socket asks
	// (a deferred switch): until then a line may come without one. Try a few lines.
	buf := make([]byte, 64)
	oob := make([]byte, syscall.CmsgSpace(16))
	for try := 0; ; try++ {
		before := time.Now().UnixNano()
		if _, err := peer.Write([]byte("hello\n")); err != nil {
			t.Fatal(err)
		}
		sent := time.Now().UnixNano()
		time.Sleep(100 * time.Millisecond)
		n, oobn, _, _, err := syscall.Recvmsg(fd, buf, oob, 0)
		if err != nil {
			t.Fatal(err)
		}
		read := time.Now().UnixNano()
		if string(buf[:n]) != "hello\n" {
			t.Fatalf("read %q", buf[:n])
		}
		at := rxTimestamp(oob[:oobn])
		if at == 0 && try < 10 {
			continue
		}
		// Loopback delivers within the write call, a while before the read.
		if at < before || at > sent+int64(20*time.Millisecond) || at > read-int64(50*time.Millisecond) {
			t.Errorf("receive time %d: write began %d, ended %d, read %d", at, before, sent, read)
		}
		t.Logf("stamped after %d unstamped lines", try)
		break
	}
	if rxTimestamp(nil) != 0 {
		t.Error("no control message should give no time")
	}
}
