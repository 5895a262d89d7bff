package stratum

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// verdictHandler answers submits from another goroutine (as the pool does) by the
// worker's name: "low.*" low difficulty, "bad.*" malformed, "dup.*" duplicate, anything
// else accepted. It lets any user authorize.
type verdictHandler struct {
	testHandler
	submits atomic.Int64
}

func (h *verdictHandler) Authorize(c *Conn, user, pass string) error { return nil }

func (h *verdictHandler) SubmitAsync(c *Conn, s *Submit, done func(*Error)) {
	h.submits.Add(1)
	var e *Error
	switch {
	case strings.HasPrefix(s.Worker, "low."):
		e = &Error{ErrCodeLowDifficulty, "low difficulty share"}
	case strings.HasPrefix(s.Worker, "bad."):
		e = &Error{ErrCodeOther, "ntime out of range"}
	case strings.HasPrefix(s.Worker, "dup."):
		e = &Error{ErrCodeDuplicate, "duplicate share"}
	}
	go done(e)
}

// startVerdictServer starts a server over real TCP on loopback with h and lim; drops
// counts the OnDrop reasons.
func startVerdictServer(t testing.TB, lim Limits, now func() time.Time) (*Server, *verdictHandler, string, *dropCounts) {
	t.Helper()
	h := &verdictHandler{}
	drops := &dropCounts{m: map[string]int{}}
	s, err := NewServer(Config{Limits: lim, Extranonce2Size: 4, Now: now, OnDrop: drops.add}, h)
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
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
	})
	return s, h, l.Addr().String(), drops
}

type dropCounts struct {
	mu sync.Mutex
	m  map[string]int
}

func (d *dropCounts) add(reason string) { d.mu.Lock(); d.m[reason]++; d.mu.Unlock() }

func (d *dropCounts) String() string { d.mu.Lock(); defer d.mu.Unlock(); return fmt.Sprint(d.m) }

func (d *dropCounts) get(reason string) int { d.mu.Lock(); defer d.mu.Unlock(); return d.m[reason] }

// miner is a peer that subscribed and authorized as user.
func miner(t *testing.T, addr, user string) *peer {
	t.Helper()
	p := dial(t, addr)
	p.send(`{"id":1,"method":"mining.subscribe","params":["test/1"]}` + "\n")
	p.msg()
	p.send(`{"id":2,"method":"mining.authorize","params":["` + user + `","x"]}` + "\n")
	if m := p.msg(); string(m.Result) != "true" {
		t.Fatalf("authorize %s: %+v", user, m)
	}
	p.line() // set_difficulty
	return p
}

// submits sends n submits for user in one write, with ids from id, and reads their n
// replies, returning how many were errors with code.
func (p *peer) submits(user string, id, n, code int) int {
	p.t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"id":%d,"method":"mining.submit","params":["%s","1","00000000","00000000","%08x"]}`+"\n", id+i, user, i)
	}
	p.send(b.String())
	got := 0
	for i := 0; i < n; i++ {
		m := p.msg()
		for m.ID == nil || string(m.ID) == "null" { // a notification
			m = p.msg()
		}
		if m.Error != nil && m.Error.Code == code {
			got++
		}
	}
	return got
}

// A farm's miners whose difficulty was just raised send low-difficulty shares in a
// burst: 1,000 from one connection and 200 from each of four more, on one address, in
// a second or two. None is dropped, the address is not banned, and the connections go
// on to have shares accepted. (Before: past 200 in a minute the connection was dropped
// and its whole address banned for ten minutes.)
func TestLowDifficultyRejectsAreNoStrikes(t *testing.T) {
	s, _, addr, drops := startVerdictServer(t, Limits{}, nil)
	busy := miner(t, addr, "low.a")
	if n := busy.submits("low.a", 100, 1000, ErrCodeLowDifficulty); n != 1000 {
		t.Fatalf("%d of 1000 answered low difficulty", n)
	}
	var others []*peer
	for i := range 4 {
		p := miner(t, addr, fmt.Sprintf("low.%d", i))
		if n := p.submits(fmt.Sprintf("low.%d", i), 5000, 200, ErrCodeLowDifficulty); n != 200 {
			t.Fatalf("peer %d: %d of 200 answered low difficulty", i, n)
		}
		others = append(others, p)
	}
	if s.Banned("127.0.0.1") {
		t.Fatal("address banned for low-difficulty shares")
	}
	// Every connection still works: authorize an accepted worker and submit.
	for i, p := range append(others, busy) {
		p.send(fmt.Sprintf(`{"id":9,"method":"mining.authorize","params":["ok.%d","x"]}`+"\n", i))
		if m := p.msg(); string(m.Result) != "true" {
			t.Fatalf("peer %d: authorize after rejects: %+v", i, m)
		}
		if n := p.submits(fmt.Sprintf("ok.%d", i), 10, 1, 0); n != 0 {
			t.Fatalf("peer %d: accepted share answered with an error", i)
		}
	}
	if got := s.NumConns(); got != 5 {
		t.Errorf("%d connections open, want 5 (drops %v)", got, drops)
	}
}

// A connection that sends nothing but rejected shares for longer than
// RejectOnlyTimeout is dropped; another connection from the same address, whose
// shares are accepted, keeps working, and the address is not banned.
func TestRejectOnlyConnectionIsDropped(t *testing.T) {
	const timeout = 600 * time.Millisecond
	s, _, addr, drops := startVerdictServer(t, Limits{RejectOnlyTimeout: timeout}, nil)
	bad := miner(t, addr, "low.broken")
	good := miner(t, addr, "ok.honest")
	start := time.Now()
	id := 100
	dropped := false
	for time.Since(start) < 5*timeout && !dropped {
		id++
		bad.send(fmt.Sprintf(`{"id":%d,"method":"mining.submit","params":["low.broken","1","00000000","00000000","00000000"]}`+"\n", id))
		bad.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := bad.br.ReadString('\n'); err != nil {
			dropped = true
			break
		}
		if n := good.submits("ok.honest", id, 1, 0); n != 0 {
			t.Fatal("the honest connection's share was refused")
		}
		time.Sleep(20 * time.Millisecond) // a miner's pace, not synchronisation
	}
	el := time.Since(start)
	if !dropped {
		t.Fatalf("a connection with only rejected shares for %s was not dropped (drops %v)", el, drops)
	}
	if el < timeout {
		t.Errorf("dropped after %s, before RejectOnlyTimeout %s", el, timeout)
	}
	if drops.get("rejects_only") != 1 {
		t.Errorf("drops %v, want one rejects_only", drops)
	}
	if s.Banned("127.0.0.1") {
		t.Error("address banned for one connection's rejects")
	}
	if n := good.submits("ok.honest", 9000, 8, 0); n != 0 {
		t.Error("the honest connection stopped working after the other was dropped")
	}
	// A new connection from the address is accepted.
	miner(t, addr, "ok.new")
}

// Invalid submits drop the connection that sends them, not the address.
func TestStrikesDropTheConnectionOnly(t *testing.T) {
	s, _, addr, drops := startVerdictServer(t, Limits{MaxStrikes: 4}, nil)
	honest := miner(t, addr, "ok.honest")
	bad := miner(t, addr, "bad.device")
	if n := bad.submits("bad.device", 10, 4, ErrCodeOther); n != 4 {
		t.Fatalf("%d of 4 invalid shares answered as invalid", n)
	}
	bad.send(`{"id":20,"method":"mining.submit","params":["bad.device","1","00000000","00000000","00000000"]}` + "\n")
	if !bad.closed() {
		t.Fatal("connection not dropped past MaxStrikes")
	}
	if drops.get("strikes") != 1 {
		t.Errorf("drops %v, want one for strikes", drops)
	}
	if s.Banned("127.0.0.1") {
		t.Error("address banned for one connection's strikes")
	}
	if n := honest.submits("ok.honest", 30, 4, 0); n != 0 {
		t.Error("the honest connection stopped working")
	}
	miner(t, addr, "ok.again")
}

// An address whose connections keep being dropped for abuse, a client reconnecting to
// flood malformed lines, is banned: its new connections are refused, while its
// connection that behaves stays open.
func TestAbuseDropsBanTheAddress(t *testing.T) {
	s, _, addr, drops := startVerdictServer(t, Limits{MaxBadLines: 2, MaxAbuseDropsPerIP: 3, MaxLineBytes: 512}, nil)
	honest := miner(t, addr, "ok.honest")
	for i := range 4 {
		if s.Banned("127.0.0.1") {
			t.Fatalf("banned after %d abuse drops, want after 4", i)
		}
		p := dial(t, addr)
		if i == 3 {
			p.send(strings.Repeat("x", 600)) // an over-long line is a malformed flood too
		} else {
			p.send("{not json\n{not json\n{not json\n")
		}
		if !p.closed() {
			t.Fatalf("flood %d: connection not dropped", i)
		}
	}
	waitUntil(t, func() bool { return s.Banned("127.0.0.1") })
	if drops.get("abuse_ban") != 1 {
		t.Errorf("drops %v, want one abuse_ban", drops)
	}
	if !dial(t, addr).closed() {
		t.Error("a banned address could connect")
	}
	if n := honest.submits("ok.honest", 30, 4, 0); n != 0 {
		t.Error("the address's behaving connection was closed by the ban")
	}
}

// Unknown methods are answered with an error and count as bad lines that drain over
// StrikeWindow: a miner trying an unknown extension now and then is never dropped.
func TestUnknownMethodsDecay(t *testing.T) {
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	_, _, addr, drops := startVerdictServer(t, Limits{MaxBadLines: 3, StrikeWindow: time.Minute}, now)
	p := miner(t, addr, "ok.a")
	for round := range 5 {
		for i := range 3 {
			p.send(fmt.Sprintf(`{"id":%d,"method":"mining.frobnicate","params":[]}`+"\n", 10*round+i))
			m := p.msg()
			if m.Error == nil || m.Error.Code != ErrCodeOther || m.Error.Message != "unknown method" {
				t.Fatalf("round %d: unknown method answered %+v", round, m)
			}
		}
		offset.Add(int64(time.Minute))
	}
	if n := p.submits("ok.a", 100, 2, 0); n != 0 {
		t.Fatal("connection stopped working")
	}
	// Four at once are still too many.
	for i := range 4 {
		p.send(fmt.Sprintf(`{"id":%d,"method":"mining.frobnicate","params":[]}`+"\n", 200+i))
	}
	if !p.closed() {
		t.Error("four unknown methods at once did not drop the connection")
	}
	if drops.get("bad_lines") != 1 {
		t.Errorf("drops %v, want one bad_lines", drops)
	}
}

func TestLeaky(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var b leaky
	for i := 1; i <= 10; i++ {
		if b.add(t0, 10, time.Minute) {
			t.Fatalf("over after %d of 10", i)
		}
	}
	if !b.add(t0, 10, time.Minute) {
		t.Fatal("11 of 10 not over")
	}
	// 12 s drains two of ten a minute (the eleventh, over, was counted too).
	if b.add(t0.Add(12*time.Second), 10, time.Minute) {
		t.Error("over after two drained")
	}
	if b.drained(t0.Add(time.Minute)) {
		t.Error("drained before its time")
	}
	if !b.drained(t0.Add(2 * time.Minute)) {
		t.Error("not drained after two windows")
	}
}
