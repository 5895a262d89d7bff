package stratum

import (
	"context"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestIdleConnectionsHoldNoGoroutine: where the poller runs, an authorized connection
// waiting for its miner holds no goroutine, and closing such a connection from the
// server side (no reader to notice) still releases it and tells the handler.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	s, h, addr := startServer(t, Limits{})
	if s.poll == nil {
		t.Skip("no poller on this system: one goroutine per connection")
	}
	before := runtime.NumGoroutine()
	const n = 200
	peers := make([]*peer, n)
	for i := range peers {
		peers[i] = dial(t, addr)
		handshake(t, peers[i], "")
	}
	waitUntil(t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.authorized) == n
	})
	if grew := runtime.NumGoroutine() - before; grew > n/4 {
		t.Errorf("%d idle connections added %d goroutines, want few (the poller holds them)", n, grew)
	}
	// The connections still work: each answers a request.
	for _, p := range peers[:10] {
		p.send(`{"id":7,"method":"mining.suggest_difficulty","params":[2]}` + "\n")
		if m := p.msg(); string(m.ID) != "7" || string(m.Result) != "true" {
			t.Fatalf("reply %s %s, want id 7 true", m.ID, m.Result)
		}
	}
	for _, c := range s.Conns() {
		c.Close()
	}
	waitUntil(t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.closed == n && s.NumConns() == 0
	})
	for _, p := range peers[:10] {
		if !p.closed() {
			t.Fatal("connection closed by the server still open")
		}
	}
}

// TestPolledTimeouts: the sweeper drops a silent authorized peer after IdleTimeout
// and keeps one that talks.
func TestPolledTimeouts(t *testing.T) {
	_, addr, drops := startDropCounting(t, Limits{IdleTimeout: 300 * time.Millisecond})
	silent, talker := dial(t, addr), dial(t, addr)
	handshake(t, silent, "")
	handshake(t, talker, "")
	stop := time.Now().Add(900 * time.Millisecond)
	for time.Now().Before(stop) {
		talker.send(`{"id":9,"method":"mining.suggest_difficulty","params":[1]}` + "\n")
		if m := talker.msg(); string(m.ID) != "9" {
			t.Fatalf("talker got %s, want the reply to id 9", m.ID)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !silent.closed() {
		t.Fatal("silent peer not dropped after the idle timeout")
	}
	if idle := drops("idle"); idle != 1 {
		t.Errorf("idle drops: %d, want 1 (the silent peer only)", idle)
	}
	talker.send(`{"id":10,"method":"mining.suggest_difficulty","params":[1]}` + "\n")
	if m := talker.msg(); string(m.ID) != "10" {
		t.Fatalf("talker got %s after the sweep, want the reply to id 10", m.ID)
	}
}

// TestLineSplitAcrossReads: a request that arrives in pieces, with pauses between
// them (so the poller sees each piece alone), is handled whole.
func TestLineSplitAcrossReads(t *testing.T) {
	_, _, addr := startServer(t, Limits{})
	p := dial(t, addr)
	handshake(t, p, "")
	line := `{"id":11,"method":"mining.suggest_difficulty","params":[0.25]}` + "\n"
	for i := 0; i < len(line); i += 7 {
		p.send(line[i:min(i+7, len(line))])
		time.Sleep(5 * time.Millisecond)
	}
	if m := p.msg(); string(m.ID) != "11" || string(m.Result) != "true" {
		t.Fatalf("reply %s %s, want id 11 true", m.ID, m.Result)
	}
}

// TestSlowReaderDropped: a peer that stops reading is dropped once a write to it has
// waited WriteTimeout (the first part of a line goes out without waiting, the rest
// waits), and the server and its other peers carry on.
func TestSlowReaderDropped(t *testing.T) {
	s, addr, drops := startDropCounting(t, Limits{WriteTimeout: 200 * time.Millisecond})
	slow, fine := dial(t, addr), dial(t, addr)
	handshake(t, slow, "")
	handshake(t, fine, "")
	line := []byte(`{"id":null,"method":"client.show_message","params":["` + strings.Repeat("x", 64<<10) + `"]}` + "\n")
	start := time.Now()
	var werr error
	for i := 0; i < 1000 && werr == nil; i++ { // at most 64 MB: far more than socket buffers hold
		for _, c := range s.Conns() {
			if c.UserAgent() == "test/1" && c.RemoteAddr() == slow.c.LocalAddr().String() {
				werr = c.WriteRaw(line)
			}
		}
	}
	if werr == nil {
		t.Fatal("writes to a peer that does not read never failed")
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 5*time.Second {
		t.Errorf("slow peer dropped after %s, want about the 200ms write timeout", el)
	}
	if n := drops("write"); n != 1 {
		t.Errorf("write drops: %d, want 1", n)
	}
	fine.send(`{"id":5,"method":"mining.suggest_difficulty","params":[1]}` + "\n")
	if m := fine.msg(); string(m.ID) != "5" {
		t.Fatalf("other peer got %s, want the reply to id 5", m.ID)
	}
}

// TestBroadcastPastAStuckPeer: broadcasts keep reaching the peers that read while one
// has stopped reading; that one is dropped once its socket buffers are full and a
// write to it has waited WriteTimeout, and no reading peer misses a line. (Unpaced, a
// reader that a loaded machine left unscheduled for WriteTimeout was dropped too.)
func TestBroadcastPastAStuckPeer(t *testing.T) {
	s, addr, drops := startDropCounting(t, Limits{WriteTimeout: 200 * time.Millisecond})
	stuck := dial(t, addr)
	handshake(t, stuck, "")
	fine := make([]*peer, 3)
	got := make([]atomic.Int64, len(fine))
	for i := range fine {
		fine[i] = dial(t, addr)
		handshake(t, fine[i], "")
	}
	waitUntil(t, func() bool { return s.NumConns() == 4 })
	for i, p := range fine {
		go func() {
			for {
				l, err := p.br.ReadString('\n')
				if err != nil {
					return
				}
				if strings.Contains(l, "client.show_message") {
					got[i].Add(1)
				}
			}
		}()
	}
	line := []byte(`{"id":null,"method":"client.show_message","params":["` + strings.Repeat("x", 16<<10) + `"]}` + "\n")
	each := func(*Conn) []byte { return line }
	sent := 0
	start := time.Now()
	// Each broadcast waits for the reading peers to have its line, so that only the
	// stuck peer's socket fills, however late a busy machine schedules the readers.
	caughtUp := func() {
		deadline := time.Now().Add(2 * time.Second)
		for i := range got {
			for got[i].Load() < int64(sent) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Microsecond)
			}
		}
	}
	for sent < 4000 && drops("write") == 0 { // at most 64 MB to the stuck peer
		s.Broadcast(each)
		sent++
		caughtUp()
	}
	if drops("write") != 1 {
		t.Fatalf("after %d broadcasts, write drops: %d, want 1", sent, drops("write"))
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 5*time.Second {
		t.Errorf("stuck peer dropped after %s, want about the 200ms write timeout", el)
	}
	for range 5 {
		s.Broadcast(each)
		sent++
	}
	waitUntil(t, func() bool {
		for i := range got {
			if got[i].Load() != int64(sent) {
				return false
			}
		}
		return true
	})
	if s.NumConns() != 3 {
		t.Errorf("%d connections open, want the 3 that read", s.NumConns())
	}
}

// startDropCounting starts a server whose drops are counted by reason; drops(r) reads
// the count.
func startDropCounting(t *testing.T, lim Limits) (s *Server, addr string, drops func(reason string) int) {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	s, err := NewServer(Config{Limits: lim, OnDrop: func(r string) {
		mu.Lock()
		counts[r]++
		mu.Unlock()
	}}, &testHandler{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, l.Addr().String(), func(r string) int {
		mu.Lock()
		defer mu.Unlock()
		return counts[r]
	}
}
