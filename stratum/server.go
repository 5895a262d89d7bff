package stratum

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Handler is what the server asks about everything beyond the protocol's own state.
// Methods are called from the connection's goroutine, one at a time per connection.
type Handler interface {
	// Authorize checks a mining.authorize. A non-nil error answers false and its
	// message is shown to the miner.
	Authorize(c *Conn, user, password string) error
	// Authorized is called once, after the first successful authorize of a subscribed
	// connection (or after subscribe when authorize came first): send difficulty and work.
	Authorized(c *Conn)
	// SuggestDifficulty is called for mining.suggest_difficulty after Authorized.
	SuggestDifficulty(c *Conn, d float64)
	// Submit validates a share. nil answers true.
	Submit(c *Conn, s *Submit) *Error
	// Closed is called once when the connection ends.
	Closed(c *Conn)
}

// AsyncHandler may be implemented by a Handler to answer submits outside the
// connection's read loop, so that a miner with several submits in flight is not held
// to one durable write at a time. SubmitAsync is called from the read loop, in order;
// it must call done exactly once, from any goroutine. Replies are written in the order
// the submits arrived, whatever order done is called in.
type AsyncHandler interface {
	SubmitAsync(c *Conn, s *Submit, done func(*Error))
}

// Config configures a Server.
type Config struct {
	Extranonce2Size int    // bytes of extranonce2 the miner rolls (4 to 8; default 8)
	VersionMask     uint32 // bits the pool lets miners roll (BIP 310); default 0x1fffe000
	Limits          Limits
	Logger          *slog.Logger
	Now             func() time.Time
	// ExtranonceSubscribe lets miners subscribe with mining.extranonce.subscribe (or
	// the subscribe-extranonce extension of mining.configure); otherwise both are
	// answered false. The server itself never sends mining.set_extranonce: a Handler
	// that does (see Conn.ExtranonceSubscribed) writes it before the job it applies to
	// and checks shares against the extranonce1 it announced for their job, while
	// Conn.Extranonce1 stays the session id given at subscribe.
	ExtranonceSubscribe bool
	// Extranonce1Prefix and Extranonce1PrefixBits split the extranonce1 space among
	// servers that must never hand out the same one (the Stratum front-ends of one pool,
	// whose shares meet in one log): every extranonce1 this server hands out has
	// Extranonce1Prefix in its top Extranonce1PrefixBits bits, and a resumed session
	// keeps its extranonce1 only if that carries the prefix. The rest,
	// 2^(32-Extranonce1PrefixBits) values, is this server's: when every one is held by a
	// connection, mining.subscribe is refused (see Extranonce1Space). Zero bits: the whole
	// 32-bit space, as a lone server has.
	Extranonce1Prefix     uint32
	Extranonce1PrefixBits int // 0..MaxExtranonce1PrefixBits
	// OnDrop, when set, is told each time a peer is dropped or refused, with a reason
	// ("ban", "abuse_ban", "limit_ip", "limit_total", "line_too_long", "bad_lines",
	// "strikes", "rejects_only", "idle", ...).
	OnDrop func(reason string)
}

// Server accepts Stratum connections and runs one goroutine per connection.
type Server struct {
	cfg     Config
	lim     Limits
	handler Handler
	log     *slog.Logger

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[*Conn]struct{}
	perIP     map[string]int
	bans      map[string]time.Time
	abuse     map[string]*leaky    // abuse drops per IP, toward a ban
	active    map[uint32]*Conn     // extranonce1 in use
	recent    map[uint32]time.Time // recently closed sessions, for resume
	recentQ   []uint32
	nextEN1   uint32
	closing   bool

	wg      sync.WaitGroup
	poll    *poller    // nil: every connection has a reading goroutine
	polling bool       // the poller and its sweeper run (under mu)
	tasks   chan *task // lines waiting for an idle handler goroutine
	// readBufs holds read buffers, lent to a connection only while it has input.
	readBufs sync.Pool
	quit     chan struct{} // closed by Shutdown: idle handler goroutines exit
	nconns   atomic.Int64
}

// NewServer returns a server that hands requests to h.
func NewServer(cfg Config, h Handler) (*Server, error) {
	if cfg.Extranonce2Size == 0 {
		cfg.Extranonce2Size = 8
	}
	if cfg.Extranonce2Size < 2 || cfg.Extranonce2Size > 16 {
		return nil, fmt.Errorf("stratum: extranonce2 size %d out of range 2..16", cfg.Extranonce2Size)
	}
	if cfg.VersionMask == 0 {
		cfg.VersionMask = 0x1fffe000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Extranonce1PrefixBits < 0 || cfg.Extranonce1PrefixBits > MaxExtranonce1PrefixBits {
		return nil, fmt.Errorf("stratum: extranonce1 prefix of %d bits, want 0..%d", cfg.Extranonce1PrefixBits, MaxExtranonce1PrefixBits)
	}
	if cfg.Extranonce1Prefix>>cfg.Extranonce1PrefixBits != 0 {
		return nil, fmt.Errorf("stratum: extranonce1 prefix %#x does not fit in %d bits", cfg.Extranonce1Prefix, cfg.Extranonce1PrefixBits)
	}
	var seed [4]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("stratum: seed extranonce1: %w", err)
	}
	lim := cfg.Limits.withDefaults()
	poll, err := newPoller()
	if err != nil {
		cfg.Logger.Debug("no poller: one reading goroutine per connection", "err", err)
	}
	return &Server{
		poll:    poll,
		cfg:     cfg,
		lim:     lim,
		handler: h,
		log:     cfg.Logger,
		conns:   make(map[*Conn]struct{}),
		perIP:   make(map[string]int),
		bans:    make(map[string]time.Time),
		abuse:   make(map[string]*leaky),
		active:  make(map[uint32]*Conn),
		recent:  make(map[uint32]time.Time),
		nextEN1: binary.BigEndian.Uint32(seed[:]),
		tasks:   make(chan *task),
		readBufs: sync.Pool{New: func() any {
			b := make([]byte, readChunk+lim.MaxLineBytes)
			return &b
		}},
		quit: make(chan struct{}),
	}, nil
}

// Handling lines off the connection's goroutine.
//
// Each connection's own goroutine only reads: it hands every complete line to a handler
// goroutine and waits for it, so requests of one connection are still handled one at a
// time, in order. An idle connection's goroutine then never has run the handlers (JSON
// decoding, hashing, the pool's bookkeeping), so its stack stays at the runtime's
// smallest size; the stack a handler needs is paid once per busy handler, not once per
// connection. Handler goroutines are started when none is idle and exit after
// handlerIdle without work.

// task is one read's worth of lines for a handler goroutine.
type task struct {
	c     *Conn
	event bool // a polled connection is readable: the handler reads it
	lr    *lineReader
	data  []byte
	ok    chan bool
}

// handlerIdle is how long an idle handler goroutine waits for work before exiting.
const handlerIdle = 30 * time.Second

var taskPool = sync.Pool{New: func() any { return &task{ok: make(chan bool, 1)} }}

// handle runs c.handleLines on a handler goroutine and returns its result.
func (s *Server) handle(c *Conn, lr *lineReader, data []byte) bool {
	t := taskPool.Get().(*task)
	t.c, t.lr, t.data = c, lr, data
	select {
	case s.tasks <- t:
	default:
		s.wg.Add(1)
		go s.runHandler(t)
	}
	ok := <-t.ok
	t.c, t.lr, t.data = nil, nil, nil
	taskPool.Put(t)
	return ok
}

// dispatch hands a readable polled connection to a handler goroutine.
func (s *Server) dispatch(c *Conn) {
	t := taskPool.Get().(*task)
	t.c, t.event = c, true
	select {
	case s.tasks <- t:
	default:
		s.wg.Add(1)
		go s.runHandler(t)
	}
}

func (s *Server) runHandler(t *task) {
	defer s.wg.Done()
	idle := time.NewTimer(handlerIdle)
	defer idle.Stop()
	for {
		if t.event {
			c := t.c
			t.c, t.event = nil, false
			taskPool.Put(t)
			c.onReadable()
		} else {
			t.ok <- t.c.handleLines(t.lr, t.data)
		}
		idle.Reset(handlerIdle)
		select {
		case t = <-s.tasks:
		case <-idle.C:
			return
		case <-s.quit:
			return
		}
	}
}

// Extranonce2Size returns the configured extranonce2 size.
func (s *Server) Extranonce2Size() int { return s.cfg.Extranonce2Size }

// NumConns returns the number of open connections.
func (s *Server) NumConns() int { return int(s.nconns.Load()) }

// Serve accepts connections on l until l is closed or Shutdown is called.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return errors.New("stratum: server closed")
	}
	s.listeners = append(s.listeners, l)
	if s.poll != nil && !s.polling {
		s.polling = true
		s.wg.Add(2)
		p := s.poll
		go func() {
			defer s.wg.Done()
			defer p.close()
			p.run(s.dispatch)
		}()
		go s.sweep()
	}
	s.mu.Unlock()
	return AcceptLoop(l, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.closing
	}, s.log, func(nc net.Conn) { s.accept(nc) })
}

// AcceptLoop accepts connections from l and hands each to serve, until l is closed
// or closing reports true (then it returns nil). A failing Accept (out of file
// descriptors and the like) is retried after a pause of 5 ms, doubling up to 1 s: a
// server never exits for it.
func AcceptLoop(l net.Listener, closing func() bool, log *slog.Logger, serve func(net.Conn)) error {
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if closing() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			log.Warn("accept", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		serve(nc)
	}
}

// ErrRefused is returned (wrapped, with the reason OnDrop is given) by ServeConn for a
// connection the server would not have accepted from a listener.
var ErrRefused = errors.New("stratum: connection refused")

// ServeConn serves one connection that did not come from a listener, such as one end
// of a socket pair or net.Pipe behind which a protocol bridge (Stratum V2) speaks for a
// remote miner. It goes through the same bans and limits as an accepted one, by
// nc.RemoteAddr(), so a bridge that wraps its end to report the miner's own address
// keeps per-IP limits and bans on the miner rather than on the bridge. A refused nc is
// closed and the error wraps ErrRefused. Otherwise nc is served as an accepted
// connection is: waited on by the poller when it exposes a descriptor (syscall.Conn)
// and Serve runs, else read by a goroutine of its own, until it closes or Shutdown.
func (s *Server) ServeConn(nc net.Conn) error {
	if reason := s.accept(nc); reason != "" {
		return fmt.Errorf("%w: %s", ErrRefused, reason)
	}
	return nil
}

func (s *Server) drop(reason string) {
	if s.cfg.OnDrop != nil {
		s.cfg.OnDrop(reason)
	}
}

// accept serves nc or closes it, returning the reason it was refused ("" when served).
func (s *Server) accept(nc net.Conn) string {
	ip, remote := hostOf(nc.RemoteAddr()), nc.RemoteAddr().String()
	now := s.cfg.Now()
	s.mu.Lock()
	if until, ok := s.bans[ip]; ok {
		if now.Before(until) {
			s.mu.Unlock()
			s.drop("ban")
			nc.Close()
			return "ban"
		}
		delete(s.bans, ip)
	}
	if s.closing || len(s.conns) >= s.lim.MaxConns {
		s.mu.Unlock()
		s.drop("limit_total")
		nc.Close()
		return "limit_total"
	}
	if s.perIP[ip] >= s.lim.MaxConnsPerIP {
		s.mu.Unlock()
		s.drop("limit_ip")
		nc.Close()
		return "limit_ip"
	}
	s.perIP[ip]++
	c := &Conn{srv: s, nc: nc, ip: ip, remote: remote, connected: now, version: 0}
	c.lastRead.Store(now.UnixNano())
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	c.lr = lineReader{raw: c.raw, r: nc, bufs: &s.readBufs, max: s.lim.MaxLineBytes}
	var poll *poller
	if s.polling && c.raw != nil {
		poll = s.poll
		c.token = poll.register(c)
	}
	s.conns[c] = struct{}{}
	s.nconns.Add(1)
	s.wg.Add(1) // done when the connection is finished
	s.mu.Unlock()
	if poll == nil {
		go c.serve()
		return ""
	}
	if err := poll.arm(c); err != nil {
		s.log.Warn("poll connection", "err", err, "remote", c.RemoteAddr())
		s.drop("poll")
		c.Close()
		return "poll"
	}
	return ""
}

// sweepEvery is how often the sweeper checks polled connections' timeouts: a quarter
// of the shortest timeout, within [10 ms, 1 s].
func (s *Server) sweepEvery() time.Duration {
	return min(max(min(s.lim.HandshakeTimeout, s.lim.IdleTimeout)/4, 10*time.Millisecond), time.Second)
}

// sweep enforces the handshake and idle timeouts of polled connections, which have no
// reading goroutine to hold a deadline.
func (s *Server) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(s.sweepEvery())
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		now := s.cfg.Now()
		for _, c := range s.Conns() {
			if c.token == 0 || c.closed.Load() {
				continue
			}
			if !c.authorized.Load() {
				if now.Sub(c.connected) >= s.lim.HandshakeTimeout {
					s.drop("handshake_timeout")
					c.Close()
				}
			} else if now.UnixNano()-c.lastRead.Load() >= int64(s.lim.IdleTimeout) {
				s.drop("idle")
				c.Close()
			}
		}
	}
}

// Conns returns a snapshot of the open connections.
func (s *Server) Conns() []*Conn {
	s.mu.Lock()
	out := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	s.mu.Unlock()
	return out
}

// Shutdown stops accepting, asks every miner to reconnect (client.reconnect, so that it
// returns to this address once the pool is back or fails over), closes the
// connections and waits for their goroutines, or until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		close(s.quit)
	}
	s.closing = true
	for _, l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	reconnect := AppendNotification(nil, "client.reconnect", []byte("[]"))
	s.Broadcast(func(*Conn) []byte { return reconnect })
	for _, c := range s.Conns() {
		c.Close()
	}
	s.mu.Lock()
	if s.poll != nil {
		if s.polling {
			s.poll.stop() // its goroutine closes it
		} else {
			s.poll.close()
		}
		s.poll, s.polling = nil, false
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// MaxExtranonce1PrefixBits bounds Config.Extranonce1PrefixBits: at least 4 values are
// left to a server.
const MaxExtranonce1PrefixBits = 30

// ErrExtranonce1Exhausted refuses a mining.subscribe when every extranonce1 of the
// server's space is held by a connection.
var ErrExtranonce1Exhausted = errors.New("stratum: no extranonce1 free on this server")

// Extranonce1Space returns how many extranonce1 values the server may hand out: how
// many subscribed connections it can hold at once.
func (s *Server) Extranonce1Space() uint64 { return 1 << (32 - s.cfg.Extranonce1PrefixBits) }

// ownsExtranonce1 reports whether v lies in the server's extranonce1 space.
func (s *Server) ownsExtranonce1(v uint32) bool {
	b := s.cfg.Extranonce1PrefixBits
	return b == 0 || v>>(32-b) == s.cfg.Extranonce1Prefix
}

// allocExtranonce1 hands c an extranonce1: the resumed one if it is free and the
// server's, else the next free one of the server's space, skipping recently closed
// sessions' while others are free. It fails, rather than wrap onto a value in use or
// outside the space, when every value is held by a connection.
func (s *Server) allocExtranonce1(c *Conn, resume string) (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(resume) == 8 {
		if v, err := strconv.ParseUint(resume, 16, 32); err == nil && s.ownsExtranonce1(uint32(v)) {
			if _, busy := s.active[uint32(v)]; !busy {
				delete(s.recent, uint32(v))
				s.active[uint32(v)] = c
				return uint32(v), nil
			}
		}
	}
	space := s.Extranonce1Space()
	if uint64(len(s.active)) >= space {
		return 0, ErrExtranonce1Exhausted
	}
	bits := s.cfg.Extranonce1PrefixBits
	low := uint32(space - 1) // space is 2^32 only with no prefix: then low is all ones
	var prefix uint32
	if bits > 0 {
		prefix = s.cfg.Extranonce1Prefix << (32 - bits)
	}
	held := false // a free value was passed over as recently closed
	var heldV uint32
	for i := uint64(0); i < space; i++ {
		s.nextEN1++
		v := prefix | s.nextEN1&low
		if _, busy := s.active[v]; busy {
			continue
		}
		if _, r := s.recent[v]; r {
			if !held {
				held, heldV = true, v
			}
			continue
		}
		s.active[v] = c
		return v, nil
	}
	// Every free value belongs to a recently closed session: one of them gives way to
	// a connection that is here now.
	delete(s.recent, heldV)
	s.active[heldV] = c
	return heldV, nil
}

func (s *Server) release(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.nconns.Add(-1)
	if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
		delete(s.perIP, c.ip)
	}
	if c.subscribed && s.active[c.en1] == c {
		delete(s.active, c.en1)
		s.recent[c.en1] = s.cfg.Now()
		s.recentQ = append(s.recentQ, c.en1)
		for len(s.recentQ) > s.lim.ResumeSessions {
			delete(s.recent, s.recentQ[0])
			s.recentQ = s.recentQ[1:]
		}
	}
	s.mu.Unlock()
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}
