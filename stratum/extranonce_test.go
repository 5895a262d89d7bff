package stratum

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startPrefixServer starts a server whose extranonce1s carry prefix in their top bits.
func startPrefixServer(t *testing.T, prefix uint32, bits int) (*Server, string) {
	t.Helper()
	s, err := NewServer(Config{Extranonce2Size: 4, Extranonce1Prefix: prefix, Extranonce1PrefixBits: bits}, &testHandler{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	return s, l.Addr().String()
}

// subscribe sends mining.subscribe (resuming session resume when not empty) and
// returns the extranonce1, or the error message the server answered.
func subscribe(p *peer, resume string) (en1 uint32, errMsg string) {
	p.t.Helper()
	extra := ""
	if resume != "" {
		extra = `,"` + resume + `"`
	}
	p.send(`{"id":1,"method":"mining.subscribe","params":["test/1"` + extra + `]}` + "\n")
	m := p.msg()
	if m.Error != nil {
		return 0, m.Error.Message
	}
	var res []json.RawMessage
	var s string
	if err := json.Unmarshal(m.Result, &res); err != nil || len(res) != 3 || json.Unmarshal(res[1], &s) != nil {
		p.t.Fatalf("subscribe result %s", m.Result)
	}
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil || len(s) != 8 {
		p.t.Fatalf("extranonce1 %q", s)
	}
	return uint32(v), ""
}

func TestExtranonce1PrefixConfig(t *testing.T) {
	for _, tt := range []struct {
		prefix uint32
		bits   int
		ok     bool
	}{
		{0, 0, true}, {1, 8, true}, {255, 8, true}, {256, 8, false}, {3, 30, true},
		{0, 31, false}, {0, -1, false}, {1, 0, false},
	} {
		_, err := NewServer(Config{Extranonce1Prefix: tt.prefix, Extranonce1PrefixBits: tt.bits}, &testHandler{})
		if (err == nil) != tt.ok {
			t.Errorf("prefix %d in %d bits: err %v, want ok %v", tt.prefix, tt.bits, err, tt.ok)
		}
	}
}

// TestExtranonce1Prefix: every extranonce1 carries the server's prefix, a resumed
// session keeps its extranonce1 only when it is the server's own, and when every value
// is in use a subscribe is refused and the peer dropped rather than handed a value in
// use or outside the space.
func TestExtranonce1Prefix(t *testing.T) {
	const prefix, bits = 0b10, 30 // 4 values: 0x80000000..0x80000003
	s, addr := startPrefixServer(t, prefix, bits)
	if got := s.Extranonce1Space(); got != 4 {
		t.Fatalf("space %d, want 4", got)
	}
	seen := map[uint32]bool{}
	var peers []*peer
	for i := 0; i < 4; i++ {
		p := dial(t, addr)
		en1, msg := subscribe(p, "")
		if msg != "" {
			t.Fatalf("subscribe %d refused: %s", i, msg)
		}
		if en1>>(32-bits) != prefix || seen[en1] {
			t.Fatalf("extranonce1 %08x: prefix %b or already handed out (%v)", en1, en1>>(32-bits), seen)
		}
		seen[en1] = true
		peers = append(peers, p)
	}
	// Full: refused with a reason, and dropped.
	full := dial(t, addr)
	if _, msg := subscribe(full, ""); msg == "" {
		t.Fatal("fifth subscribe on a 4-value space accepted")
	}
	if !full.closed() {
		t.Error("refused peer not dropped")
	}
	// A resume of a value in use, of a value outside the space: refused as well.
	if _, msg := subscribe(dial(t, addr), "80000001"); msg == "" {
		t.Error("resume of an extranonce1 in use on a full server accepted")
	}
	// One leaves: its value is free again (though held for resume, a new connection
	// gets it rather than a refusal).
	var left uint32
	for v := range seen {
		left = v
		break
	}
	for i, p := range peers {
		if en1, _ := subscribeAgain(p); en1 == left {
			p.c.Close()
			peers = append(peers[:i], peers[i+1:]...)
			break
		}
	}
	waitConns(t, s, 3)
	p := dial(t, addr)
	if en1, msg := subscribe(p, "00000007"); msg != "" || en1 != left {
		t.Errorf("after one left, a foreign resume got %08x (%q), want the freed %08x", en1, msg, left)
	}
}

// TestExtranonce1ResumeOwnOnly: a session id of another server's prefix is not resumed
// (a miner moving from front-end A to B must not carry A's extranonce1 to B), one of
// this server's is.
func TestExtranonce1ResumeOwnOnly(t *testing.T) {
	_, addrA := startPrefixServer(t, 1, 8)
	sb, addrB := startPrefixServer(t, 2, 8)
	pa := dial(t, addrA)
	a, _ := subscribe(pa, "")
	pa.c.Close()
	pb := dial(t, addrB)
	b, msg := subscribe(pb, fmt.Sprintf("%08x", a))
	if msg != "" || b == a || b>>24 != 2 {
		t.Errorf("front-end 2 resumed front-end 1's %08x as %08x (%q)", a, b, msg)
	}
	pb.c.Close()
	waitConns(t, sb, 0)
	pb2 := dial(t, addrB)
	if b2, _ := subscribe(pb2, fmt.Sprintf("%08x", b)); b2 != b {
		t.Errorf("own session %08x resumed as %08x", b, b2)
	}
}

// subscribeAgain returns the peer's extranonce1: a second subscribe on a connection
// answers the one it has.
func subscribeAgain(p *peer) (uint32, string) { p.t.Helper(); return subscribe(p, "") }

func waitConns(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.NumConns() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections, want %d", s.NumConns(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBroadcastAppend: lines built per connection into the workers' reused buffers
// arrive whole and each at its own connection, across buffer growth; a connection fn
// appends nothing to gets nothing.
func TestBroadcastAppend(t *testing.T) {
	s, _, addr := startServer(t, Limits{})
	const n = 100 // enough for several workers
	peers := make([]*peer, n)
	en1s := make([]uint32, n)
	for i := range peers {
		p := dial(t, addr)
		en1s[i], _ = subscribe(p, "")
		p.send(`{"id":2,"method":"mining.authorize","params":["w","x"]}` + "\n")
		p.msg() // authorize reply
		p.msg() // set_difficulty
		peers[i] = p
	}
	// The line of a connection: its extranonce1 and a filler whose length depends on
	// it, from a few bytes to several times the workers' starting buffer.
	line := func(round int, en1 uint32) string {
		fill := strings.Repeat(fmt.Sprintf("%c", 'a'+round), int(en1%7)*1500)
		return fmt.Sprintf(`{"id":null,"method":"client.show_message","params":["%d %08x %s"]}`, round, en1, fill) + "\n"
	}
	skip := func(en1 uint32) bool { return en1%5 == 0 }
	for round := range 2 {
		s.BroadcastAppend(func(c *Conn, dst []byte) []byte {
			if round == 0 && skip(c.Extranonce1()) {
				return dst
			}
			return append(dst, line(round, c.Extranonce1())...)
		})
	}
	for i, p := range peers {
		if round0 := !skip(en1s[i]); round0 {
			if got := p.line(); got != line(0, en1s[i]) {
				t.Fatalf("peer %08x, round 0: got %.80q...", en1s[i], got)
			}
		}
		if got := p.line(); got != line(1, en1s[i]) {
			t.Fatalf("peer %08x, round 1: got %.80q...", en1s[i], got)
		}
	}
}
