package stratum

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// testHandler accepts every user whose name does not start with "bad" and answers
// submits with the error queued in verdict (nil: accepted).
type testHandler struct {
	mu         sync.Mutex
	authorized []string
	suggested  []float64
	closed     int
	verdict    *Error
	submits    []*Submit
	enSub      []bool // ExtranonceSubscribed when authorized
}

func (h *testHandler) Authorize(c *Conn, user, pass string) error {
	if strings.HasPrefix(user, "bad") {
		return errors.New("unknown user")
	}
	return nil
}

func (h *testHandler) Authorized(c *Conn) {
	h.mu.Lock()
	h.authorized = append(h.authorized, c.Users()[0])
	h.enSub = append(h.enSub, c.ExtranonceSubscribed())
	h.mu.Unlock()
	c.SetDifficulty(0.5)
}

func (h *testHandler) SuggestDifficulty(c *Conn, d float64) {
	h.mu.Lock()
	h.suggested = append(h.suggested, d)
	h.mu.Unlock()
}

func (h *testHandler) Submit(c *Conn, s *Submit) *Error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.submits = append(h.submits, s)
	return h.verdict
}

func (h *testHandler) Closed(c *Conn) {
	h.mu.Lock()
	h.closed++
	h.mu.Unlock()
}

func startServer(t *testing.T, lim Limits) (*Server, *testHandler, string) {
	t.Helper()
	h := &testHandler{}
	s, err := NewServer(Config{Limits: lim, Extranonce2Size: 4}, h)
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
	return s, h, l.Addr().String()
}

type peer struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *peer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &peer{t: t, c: c, br: bufio.NewReader(c)}
}

func (p *peer) send(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.c, s); err != nil {
		p.t.Fatal(err)
	}
}

func (p *peer) line() string {
	p.t.Helper()
	l, err := p.br.ReadString('\n')
	if err != nil {
		p.t.Fatalf("read: %v (got %q)", err, l)
	}
	return l
}

// msg reads lines until one that decodes; it returns the decoded message.
func (p *peer) msg() *Message {
	p.t.Helper()
	m, err := ParseMessage([]byte(p.line()))
	if err != nil {
		p.t.Fatal(err)
	}
	return m
}

// closed reports whether the server closed the connection (reading until EOF).
func (p *peer) closed() bool {
	p.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := p.br.ReadString('\n'); err != nil {
			return !isTimeout(err)
		}
	}
}

func TestCpuminerHandshake(t *testing.T) {
	_, h, addr := startServer(t, Limits{})
	p := dial(t, addr)
	// cpuminer 2.5.1's exact lines, spaces and all.
	p.send(`{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5.1"]}` + "\n")
	m := p.msg()
	if string(m.ID) != "1" || m.Error != nil {
		t.Fatalf("subscribe reply %+v", m)
	}
	var res []json.RawMessage
	if err := json.Unmarshal(m.Result, &res); err != nil || len(res) != 3 {
		t.Fatalf("subscribe result %s", m.Result)
	}
	var en1 string
	var size int
	json.Unmarshal(res[1], &en1)
	json.Unmarshal(res[2], &size)
	if len(en1) != 8 || size != 4 {
		t.Errorf("extranonce1 %q size %d, want 8 hex digits and 4", en1, size)
	}
	if !strings.Contains(string(res[0]), `"mining.notify","`+en1+`"`) {
		t.Errorf("subscriptions %s do not carry the session id", res[0])
	}
	p.send(`{"id": 2, "method": "mining.authorize", "params": ["worker1", "x"]}` + "\n")
	if got := p.line(); got != `{"id":2,"result":true,"error":null}`+"\n" {
		t.Errorf("authorize reply %q", got)
	}
	if got := p.line(); got != `{"id":null,"method":"mining.set_difficulty","params":[0.5]}`+"\n" {
		t.Errorf("after authorize %q", got)
	}
	p.send(`{"method": "mining.submit", "params": ["worker1", "1", "00000000", "6b025d54", "42e7d800"], "id":4}` + "\n")
	if got := p.line(); got != `{"id":4,"result":true,"error":null}`+"\n" {
		t.Errorf("submit reply %q", got)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.submits) != 1 || *h.submits[0] != (Submit{Worker: "worker1", JobID: "1", Extranonce2: "00000000", NTime: "6b025d54", Nonce: "42e7d800"}) {
		t.Errorf("handler got %+v", h.submits)
	}
}

func TestConfigureVersionRolling(t *testing.T) {
	_, _, addr := startServer(t, Limits{})
	tests := []struct {
		params string
		want   string
	}{
		// BIP 310: the answer is pool mask AND miner mask.
		{`[["version-rolling"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2}]`, `{"version-rolling":true,"version-rolling.mask":"1fffe000"}`},
		{`[["version-rolling"],{"version-rolling.mask":"00fff000"}]`, `{"version-rolling":true,"version-rolling.mask":"00ffe000"}`},
		// No mask given means ffffffff.
		{`[["version-rolling"],{}]`, `{"version-rolling":true,"version-rolling.mask":"1fffe000"}`},
		// Too few common bits for the miner's minimum.
		{`[["version-rolling"],{"version-rolling.mask":"00006000","version-rolling.min-bit-count":16}]`, `{"version-rolling":false}`},
		{`[["minimum-difficulty","subscribe-extranonce","info","made-up"],{"minimum-difficulty.value":0.001}]`, `{"info":true,"made-up":false,"minimum-difficulty":true,"subscribe-extranonce":false}`},
	}
	for _, tt := range tests {
		p := dial(t, addr)
		p.send(`{"id":1,"method":"mining.configure","params":` + tt.params + "}\n")
		m := p.msg()
		if m.Error != nil || string(m.Result) != tt.want {
			t.Errorf("configure %s\n got %s (%v)\nwant %s", tt.params, m.Result, m.Error, tt.want)
		}
	}
}

func handshake(t *testing.T, p *peer, extra string) (en1 string) {
	t.Helper()
	p.send(`{"id":1,"method":"mining.subscribe","params":["test/1"` + extra + `]}` + "\n")
	var res []json.RawMessage
	json.Unmarshal(p.msg().Result, &res)
	json.Unmarshal(res[1], &en1)
	p.send(`{"id":2,"method":"mining.authorize","params":["w","x"]}` + "\n")
	p.line() // true
	p.line() // set_difficulty
	return en1
}

func TestSessionResume(t *testing.T) {
	s, h, addr := startServer(t, Limits{})
	p := dial(t, addr)
	en1 := handshake(t, p, "")
	p.c.Close()
	waitUntil(t, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.closed == 1 })
	p2 := dial(t, addr)
	if got := handshake(t, p2, `,"`+en1+`"`); got != en1 {
		t.Errorf("resumed extranonce1 %s, want %s", got, en1)
	}
	// A session id in use by a live connection is not handed out twice.
	p3 := dial(t, addr)
	if got := handshake(t, p3, `,"`+en1+`"`); got == en1 {
		t.Errorf("extranonce1 %s given to two live connections", got)
	}
	if n := s.NumConns(); n != 2 {
		t.Errorf("NumConns = %d, want 2", n)
	}
}

func TestSuggestDifficultyAndExtranonce(t *testing.T) {
	_, h, addr := startServer(t, Limits{})
	p := dial(t, addr)
	// Refused: the server never sends mining.set_extranonce.
	p.send(`{"id":9,"method":"mining.extranonce.subscribe","params":[]}` + "\n")
	if m := p.msg(); string(m.Result) != "false" {
		t.Fatalf("extranonce.subscribe: %+v", m)
	}
	handshake(t, p, "")
	p.send(`{"id":3,"method":"mining.suggest_difficulty","params":[0.0001]}` + "\n")
	if m := p.msg(); string(m.Result) != "true" {
		t.Fatalf("suggest_difficulty: %+v", m)
	}
	p.send(`{"id":4,"method":"mining.suggest_difficulty","params":[-1]}` + "\n")
	if m := p.msg(); m.Error == nil {
		t.Error("negative suggested difficulty accepted")
	}
	h.mu.Lock()
	if len(h.suggested) != 1 || h.suggested[0] != 0.0001 {
		t.Errorf("suggested %v", h.suggested)
	}
	h.mu.Unlock()
}

// TestExtranonceSubscribeAllowed: with Config.ExtranonceSubscribe the server accepts
// mining.extranonce.subscribe and the subscribe-extranonce extension, and the handler
// sees which connections asked; without it, neither is accepted.
func TestExtranonceSubscribeAllowed(t *testing.T) {
	h := &testHandler{}
	s, err := NewServer(Config{Extranonce2Size: 4, ExtranonceSubscribe: true}, h)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	}()
	p := dial(t, l.Addr().String())
	p.send(`{"id":9,"method":"mining.extranonce.subscribe","params":[]}` + "\n")
	if m := p.msg(); string(m.Result) != "true" {
		t.Fatalf("extranonce.subscribe: %+v", m)
	}
	handshake(t, p, "")
	p2 := dial(t, l.Addr().String())
	p2.send(`{"id":1,"method":"mining.configure","params":[["subscribe-extranonce"],{}]}` + "\n")
	if m := p2.msg(); string(m.Result) != `{"subscribe-extranonce":true}` {
		t.Fatalf("configure: %s", m.Result)
	}
	handshake(t, p2, "")
	p3 := dial(t, l.Addr().String())
	handshake(t, p3, "")
	waitUntil(t, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.enSub) == 3 })
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.enSub[0] || !h.enSub[1] || h.enSub[2] {
		t.Errorf("ExtranonceSubscribed at authorize: %v, want [true true false]", h.enSub)
	}
}

func TestErrorsAndAbuse(t *testing.T) {
	_, h, addr := startServer(t, Limits{MaxLineBytes: 512, MaxBadLines: 3, MaxStrikes: 4, BanDuration: time.Hour})
	t.Run("submit before subscribe", func(t *testing.T) {
		p := dial(t, addr)
		p.send(`{"id":5,"method":"mining.submit","params":["w","1","00","00","00"]}` + "\n")
		if m := p.msg(); m.Error == nil || m.Error.Code != ErrCodeNotSubscribed {
			t.Errorf("got %+v", m)
		}
	})
	t.Run("unauthorized worker", func(t *testing.T) {
		p := dial(t, addr)
		handshake(t, p, "")
		p.send(`{"id":5,"method":"mining.submit","params":["other","1","00","00","00"]}` + "\n")
		if m := p.msg(); m.Error == nil || m.Error.Code != ErrCodeUnauthorized {
			t.Errorf("got %+v", m)
		}
		p.send(`{"id":6,"method":"mining.authorize","params":["bad.user","x"]}` + "\n")
		if m := p.msg(); string(m.Result) != "false" || m.Error.Code != ErrCodeUnauthorized {
			t.Errorf("bad user: %+v", m)
		}
	})
	t.Run("malformed lines then drop", func(t *testing.T) {
		p := dial(t, addr)
		for i := 0; i < 3; i++ {
			p.send("{not json\n")
			if m := p.msg(); m.Error == nil || m.Error.Code != ErrCodeOther {
				t.Fatalf("got %+v", m)
			}
		}
		p.send("{still not json\n")
		if !p.closed() {
			t.Error("peer not dropped after too many malformed lines")
		}
	})
	t.Run("line too long", func(t *testing.T) {
		p := dial(t, addr)
		p.send(strings.Repeat("x", 600))
		if !p.closed() {
			t.Error("peer not dropped for a line over the limit")
		}
	})
	t.Run("split writes", func(t *testing.T) {
		p := dial(t, addr)
		line := `{"id":1,"method":"mining.subscribe","params":["split/1"]}` + "\n"
		for i := 0; i < len(line); i += 7 {
			p.send(line[i:min(i+7, len(line))])
			time.Sleep(time.Millisecond)
		}
		if m := p.msg(); m.Error != nil || string(m.ID) != "1" {
			t.Errorf("got %+v", m)
		}
	})
	t.Run("invalid shares drop the connection", func(t *testing.T) {
		h.mu.Lock()
		h.verdict = &Error{ErrCodeDuplicate, "duplicate share"}
		h.mu.Unlock()
		defer func() { h.mu.Lock(); h.verdict = nil; h.mu.Unlock() }()
		p := dial(t, addr)
		handshake(t, p, "")
		for i := 0; i < 4; i++ {
			p.send(`{"id":7,"method":"mining.submit","params":["w","1","00000000","00000000","00000000"]}` + "\n")
			if m := p.msg(); m.Error == nil || m.Error.Code != ErrCodeDuplicate {
				t.Fatalf("got %+v", m)
			}
		}
		p.send(`{"id":7,"method":"mining.submit","params":["w","1","00000000","00000000","00000000"]}` + "\n")
		if !p.closed() {
			t.Fatal("peer not dropped after too many invalid shares")
		}
		// One connection's strikes do not ban its address.
		p = dial(t, addr)
		handshake(t, p, "")
	})
}

func TestConnectionLimits(t *testing.T) {
	_, _, addr := startServer(t, Limits{MaxConnsPerIP: 2, HandshakeTimeout: 300 * time.Millisecond})
	a, b := dial(t, addr), dial(t, addr)
	_ = a
	_ = b
	if !dial(t, addr).closed() {
		t.Error("third connection from one IP accepted")
	}
	// A peer that never subscribes is dropped after the handshake timeout.
	start := time.Now()
	if !a.closed() {
		t.Fatal("silent peer not dropped")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("silent peer dropped after %s", el)
	}
}

func TestShutdownSendsReconnect(t *testing.T) {
	h := &testHandler{}
	s, err := NewServer(Config{}, h)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go s.Serve(l)
	p := dial(t, l.Addr().String())
	handshake(t, p, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := p.line(); got != `{"id":null,"method":"client.reconnect","params":[]}`+"\n" {
		t.Errorf("got %q, want client.reconnect", got)
	}
	if !p.closed() {
		t.Error("connection left open after shutdown")
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// asyncHandler answers submits from other goroutines, in reverse order of arrival
// within each batch of four, to show that replies still go out in arrival order with
// the right ids.
type asyncHandler struct {
	testHandler
	mu    sync.Mutex
	queue []func()
}

func (h *asyncHandler) SubmitAsync(c *Conn, s *Submit, done func(*Error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var verdict *Error
	if s.Nonce == "bad" {
		verdict = &Error{ErrCodeLowDifficulty, "low difficulty share"}
	}
	h.queue = append(h.queue, func() { done(verdict) })
	if len(h.queue) == 4 {
		q := h.queue
		h.queue = nil
		go func() {
			for i := len(q) - 1; i >= 0; i-- {
				q[i]()
			}
		}()
	}
}

func TestPipelinedSubmitsKeepIDsAndOrder(t *testing.T) {
	h := &asyncHandler{}
	s, err := NewServer(Config{Extranonce2Size: 4}, h)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go s.Serve(l)
	defer s.Shutdown(context.Background())
	p := dial(t, l.Addr().String())
	handshake(t, p, "")
	// Many submits in one write: they are parsed out of one read buffer, which is
	// reused while earlier replies still wait.
	var b strings.Builder
	for i := 0; i < 64; i++ {
		nonce := "00000000"
		if i%5 == 0 {
			nonce = "bad"
		}
		fmt.Fprintf(&b, `{"id":%d,"method":"mining.submit","params":["w","1","00000000","00000000","%s"]}`+"\n", 1000+i, nonce)
	}
	p.send(b.String())
	for i := 0; i < 64; i++ {
		m := p.msg()
		if want := fmt.Sprint(1000 + i); string(m.ID) != want {
			t.Fatalf("reply %d has id %s, want %s", i, m.ID, want)
		}
		if bad := i%5 == 0; bad != (m.Error != nil) {
			t.Errorf("reply %d: error %v, want error %v", i, m.Error, bad)
		}
	}
}
