package stratum

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/bits"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Limits bounds what one peer can make the server hold or do. Zero values take the
// defaults from DefaultLimits.
type Limits struct {
	MaxLineBytes      int           // longest accepted line; a longer one drops the peer
	MaxConns          int           // connections in all
	MaxConnsPerIP     int           // connections from one IP address
	HandshakeTimeout  time.Duration // time to subscribe and authorize after connecting
	IdleTimeout       time.Duration // longest silence from an authorized peer
	WriteTimeout      time.Duration // longest a write to a peer may block
	MaxBadLines       int           // malformed lines tolerated before the peer is dropped
	MaxStrikes        int           // invalid shares (not stale) tolerated in StrikeWindow
	StrikeWindow      time.Duration // window over which strikes are counted
	BanDuration       time.Duration // how long an IP that exceeded MaxStrikes is refused
	MaxWorkersPerConn int           // distinct mining.authorize users on one connection
	ResumeSessions    int           // recently closed sessions remembered for resume
	MaxPendingSubmits int           // submits awaiting their answer on one connection; more wait
}

// DefaultLimits are sized for a public pool: enough room for a farm behind one NAT
// address, little for an abusive peer.
var DefaultLimits = Limits{
	MaxLineBytes:      4096,
	MaxConns:          100_000,
	MaxConnsPerIP:     2048,
	HandshakeTimeout:  60 * time.Second,
	IdleTimeout:       15 * time.Minute,
	WriteTimeout:      10 * time.Second,
	MaxBadLines:       10,
	MaxStrikes:        200,
	StrikeWindow:      time.Minute,
	BanDuration:       10 * time.Minute,
	MaxWorkersPerConn: 64,
	ResumeSessions:    100_000,
	MaxPendingSubmits: 64,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setD := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	set(&l.MaxLineBytes, d.MaxLineBytes)
	set(&l.MaxConns, d.MaxConns)
	set(&l.MaxConnsPerIP, d.MaxConnsPerIP)
	setD(&l.HandshakeTimeout, d.HandshakeTimeout)
	setD(&l.IdleTimeout, d.IdleTimeout)
	setD(&l.WriteTimeout, d.WriteTimeout)
	set(&l.MaxBadLines, d.MaxBadLines)
	set(&l.MaxStrikes, d.MaxStrikes)
	setD(&l.StrikeWindow, d.StrikeWindow)
	setD(&l.BanDuration, d.BanDuration)
	set(&l.MaxWorkersPerConn, d.MaxWorkersPerConn)
	set(&l.ResumeSessions, d.ResumeSessions)
	set(&l.MaxPendingSubmits, d.MaxPendingSubmits)
	return l
}

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
	// OnDrop, when set, is told each time a peer is dropped or refused, with a reason
	// ("ban", "limit_ip", "limit_total", "line_too_long", "bad_lines", "idle", ...).
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
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off, never exit.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			s.log.Warn("accept", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.accept(nc)
	}
}

func (s *Server) drop(reason string) {
	if s.cfg.OnDrop != nil {
		s.cfg.OnDrop(reason)
	}
}

func (s *Server) accept(nc net.Conn) {
	ip, remote := hostOf(nc.RemoteAddr()), nc.RemoteAddr().String()
	now := s.cfg.Now()
	s.mu.Lock()
	if until, ok := s.bans[ip]; ok {
		if now.Before(until) {
			s.mu.Unlock()
			s.drop("ban")
			nc.Close()
			return
		}
		delete(s.bans, ip)
	}
	if s.closing || len(s.conns) >= s.lim.MaxConns {
		s.mu.Unlock()
		s.drop("limit_total")
		nc.Close()
		return
	}
	if s.perIP[ip] >= s.lim.MaxConnsPerIP {
		s.mu.Unlock()
		s.drop("limit_ip")
		nc.Close()
		return
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
		return
	}
	if err := poll.arm(c); err != nil {
		s.log.Warn("poll connection", "err", err, "remote", c.RemoteAddr())
		s.drop("poll")
		c.Close()
	}
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

// Ban refuses new connections from ip for d and closes its current ones.
func (s *Server) Ban(ip string, d time.Duration) {
	s.mu.Lock()
	s.bans[ip] = s.cfg.Now().Add(d)
	var victims []*Conn
	for c := range s.conns {
		if c.ip == ip {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
}

// Banned reports whether ip is banned now.
func (s *Server) Banned(ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.bans[ip]
	return ok && s.cfg.Now().Before(until)
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

// Broadcast writes to every authorized connection the line fn returns for it (nothing
// if fn returns nil), spread over a few goroutines so that one slow peer (bounded by
// WriteTimeout) does not hold up the others. It returns when every line is written or
// its connection dropped.
//
// The writes are made as raw system calls: on a socket that is not blocking, a write
// either fits in its buffer at once or is left for the deadline path, and a broadcast
// is the only work then, so handing the worker's processor to the scheduler around
// each call (as an ordinary system call does) only costs time. Replies to submits keep
// ordinary calls: there other connections' work is waiting for the processor.
func (s *Server) Broadcast(fn func(c *Conn) []byte) {
	conns := s.Conns()
	// A few workers per core: the writes are short syscalls, and a peer that cannot take
	// its line holds its worker up to WriteTimeout. (Two in all measured slower, on two
	// cores shared with the readers; docs/benchmarks.md.) Each takes broadcastClaim
	// connections at a time, so the workers do not contend on the counter per line.
	workers := 4 * runtime.GOMAXPROCS(0)
	if len(conns) < 64 {
		workers = 1
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for {
				end := int(next.Add(broadcastClaim))
				i := end - broadcastClaim
				if i >= len(conns) {
					return
				}
				for _, c := range conns[i:min(end, len(conns))] {
					if !c.authorized.Load() {
						continue
					}
					if b := fn(c); b != nil {
						c.write(b, true)
					}
				}
			}
		})
	}
	wg.Wait()
}

// broadcastClaim is how many connections a broadcast worker takes at once.
const broadcastClaim = 16

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

func (s *Server) allocExtranonce1(resume string) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(resume) == 8 {
		if v, err := strconv.ParseUint(resume, 16, 32); err == nil {
			if _, busy := s.active[uint32(v)]; !busy {
				delete(s.recent, uint32(v))
				return uint32(v)
			}
		}
	}
	for {
		s.nextEN1++
		v := s.nextEN1
		if _, busy := s.active[v]; busy {
			continue
		}
		if _, held := s.recent[v]; held {
			continue
		}
		return v
	}
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

// Conn is one miner's connection. Fields set during the handshake are read-only once
// Authorized has been called.
type Conn struct {
	srv       *Server
	nc        net.Conn
	raw       syscall.RawConn // nil if the connection has no descriptor
	ip        string
	remote    string // "ip:port", formatted once: every share records it
	connected time.Time

	// Polled connections (token != 0): the poller arms them, a handler goroutine reads
	// them while busy, and whoever moves state to connDone finishes them.
	token    uint64
	state    atomic.Int32
	lastRead atomic.Int64 // UnixNano of the last input, for the idle timeout
	lr       lineReader

	wmu    sync.Mutex
	closed atomic.Bool

	// Protocol state, owned by the connection's goroutine.
	subscribed    bool
	en1           uint32
	agent         string
	version       uint32 // negotiated version-rolling mask; 0 = none
	minDiff       float64
	suggested     float64
	extranonceSub bool
	users         []string
	authorized    atomic.Bool
	badLines      int

	// Pipelined submits (AsyncHandler): replies wait in arrival order.
	pmu         sync.Mutex
	pending     []*pendingReply
	flushing    bool          // a flush goroutine is writing replies
	sem         chan struct{} // bounds pending submits; made on the first submit
	strikes     int
	strikeStart time.Time

	// Data is the handler's per-connection state.
	Data any
}

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() string { return c.remote }

// IP returns the peer's IP address.
func (c *Conn) IP() string { return c.ip }

// Extranonce1 returns the connection's 4-byte extranonce1.
func (c *Conn) Extranonce1() uint32 { return c.en1 }

// Extranonce2Size returns how many extranonce2 bytes the miner rolls.
func (c *Conn) Extranonce2Size() int { return c.srv.cfg.Extranonce2Size }

// UserAgent returns the agent string sent with mining.subscribe.
func (c *Conn) UserAgent() string { return c.agent }

// VersionMask returns the negotiated BIP 310 mask, 0 when the miner did not ask.
func (c *Conn) VersionMask() uint32 { return c.version }

// MinDifficulty returns the floor set by the minimum-difficulty extension, 0 if none.
func (c *Conn) MinDifficulty() float64 { return c.minDiff }

// SuggestedDifficulty returns the last mining.suggest_difficulty value, 0 if none.
func (c *Conn) SuggestedDifficulty() float64 { return c.suggested }

// Users returns the users authorized on this connection.
func (c *Conn) Users() []string { return c.users }

// ConnectedAt returns when the connection was accepted.
func (c *Conn) ConnectedAt() time.Time { return c.connected }

// ExtranonceSubscribed reports whether the miner accepts mining.set_extranonce.
func (c *Conn) ExtranonceSubscribed() bool { return c.extranonceSub }

// Authorized reports whether the connection has subscribed and authorized. Data is
// safe to read from other goroutines once this is true.
func (c *Conn) Authorized() bool { return c.authorized.Load() }

// Close closes the connection; then Closed is called, once.
func (c *Conn) Close() {
	if c.closed.CompareAndSwap(false, true) {
		c.nc.Close()
		if c.token != 0 && c.state.CompareAndSwap(connArmed, connDone) {
			// Idle in the poller: nothing else will notice. Finish apart from the
			// caller, which may hold the connection's write lock.
			go c.finish()
		}
	}
}

// States of a polled connection.
const (
	connArmed int32 = iota // waiting in the poller for input
	connBusy               // a handler goroutine is reading it
	connDone               // finished: released and reported closed
)

// finish releases a closed connection and tells the handler; it runs once.
func (c *Conn) finish() {
	s := c.srv
	defer s.wg.Done()
	c.Close()
	if c.token != 0 {
		if p := s.pollerOf(); p != nil {
			p.remove(c)
		}
	}
	s.release(c)
	if c.authorized.Load() || c.subscribed {
		s.handler.Closed(c)
	}
}

func (s *Server) pollerOf() *poller {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.poll
}

// onReadable runs on a handler goroutine when the poller saw input on c (state busy):
// it reads what has arrived, handles the complete lines and re-arms c.
func (c *Conn) onReadable() {
	s := c.srv
	bp, data, err := c.lr.read(false)
	switch {
	case err == errWouldBlock:
	case err != nil:
		c.Close()
	default:
		c.lastRead.Store(s.cfg.Now().UnixNano())
		ok := c.handleLines(&c.lr, data)
		c.lr.release(bp)
		if !ok {
			c.Close()
		}
	}
	c.state.Store(connArmed)
	if !c.closed.Load() {
		if p := s.pollerOf(); p != nil && p.rearm(c) == nil {
			return
		}
		c.Close()
	}
	// Closed: Close may have seen the connection busy, so finish it here unless Close
	// got there first.
	if c.state.CompareAndSwap(connArmed, connDone) {
		c.finish()
	}
}

// writeLine writes one complete line, bounded by WriteTimeout. A failed write closes
// the connection: a peer that cannot keep up is dropped, the server is not held up.
func (c *Conn) writeLine(b []byte) error { return c.write(b, false) }

// write is writeLine; raw makes the first attempt a raw system call (see Broadcast).
func (c *Conn) write(b []byte, raw bool) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// Most writes fit in the socket's buffer at once: try that first, which needs no
	// deadline; only what is left waits, bounded by WriteTimeout.
	n, err := c.tryWrite(b, raw)
	if err == nil && n == len(b) {
		return nil
	}
	if err == nil || err == syscall.EAGAIN {
		c.nc.SetWriteDeadline(c.srv.cfg.Now().Add(c.srv.lim.WriteTimeout))
		_, err = c.nc.Write(b[n:])
	}
	if err != nil {
		c.srv.drop("write")
		c.Close()
	}
	return err
}

// tryWrite writes what the socket takes now, without waiting. Without a descriptor it
// writes nothing and returns no error.
func (c *Conn) tryWrite(b []byte, raw bool) (int, error) {
	if c.raw == nil {
		return 0, nil
	}
	var n int
	var werr error
	if err := c.raw.Write(func(fd uintptr) bool {
		for {
			if raw {
				n, werr = rawWrite(fd, b)
			} else {
				n, werr = syscall.Write(int(fd), b)
			}
			if werr != syscall.EINTR {
				break
			}
		}
		return true
	}); err != nil {
		return 0, err
	}
	return max(n, 0), werr
}

// WriteRaw writes pre-encoded lines (each ending in a newline).
func (c *Conn) WriteRaw(b []byte) error { return c.writeLine(b) }

// SetDifficulty sends mining.set_difficulty.
func (c *Conn) SetDifficulty(d float64) error {
	p := strconv.AppendFloat([]byte("["), d, 'g', -1, 64)
	return c.writeLine(AppendNotification(nil, "mining.set_difficulty", append(p, ']')))
}

// SetExtranonce sends mining.set_extranonce, if the miner subscribed to it, and
// switches the connection to the new extranonce1. It reports whether it was sent.
func (c *Conn) SetExtranonce(en1 uint32) (bool, error) {
	if !c.extranonceSub {
		return false, nil
	}
	s := c.srv
	s.mu.Lock()
	if other, busy := s.active[en1]; busy && other != c {
		s.mu.Unlock()
		return false, fmt.Errorf("stratum: extranonce1 %08x in use", en1)
	}
	delete(s.active, c.en1)
	s.active[en1] = c
	c.en1 = en1
	s.mu.Unlock()
	p := fmt.Appendf(nil, `["%08x",%d]`, en1, s.cfg.Extranonce2Size)
	return true, c.writeLine(AppendNotification(nil, "mining.set_extranonce", p))
}

// ShowMessage sends client.show_message.
func (c *Conn) ShowMessage(text string) error {
	p, _ := json.Marshal([]string{text})
	return c.writeLine(AppendNotification(nil, "client.show_message", p))
}

// Reconnect sends client.reconnect to host:port after wait seconds ("" host: same server).
func (c *Conn) Reconnect(host string, port int, wait int) error {
	p := []byte("[]")
	if host != "" {
		p, _ = json.Marshal([]any{host, port, wait})
	}
	return c.writeLine(AppendNotification(nil, "client.reconnect", p))
}

// Reading.
//
// An idle connection holds no read buffer: its goroutine waits for the socket to be
// readable through syscall.RawConn, and only then takes a buffer from the server's
// pool and reads everything the peer has sent, up to the buffer's size. The complete
// lines in it are handled in one hand-off to a handler goroutine; an incomplete last
// line is copied aside (the only per-connection read memory, held only while a line is
// split across reads) and put in front of the next read.

// readChunk is how much a read asks for beyond a carried partial line: a busy miner's
// pipelined submits (about 160 bytes each) arrive in one read.
const readChunk = 8 << 10

var errLineTooLong = errors.New("stratum: line too long")

// lineReader reads a connection's input in chunks of whole lines.
type lineReader struct {
	raw     syscall.RawConn // nil: read r with a blocking Read
	r       io.Reader
	bufs    *sync.Pool // of *[]byte, each readChunk+max bytes
	max     int        // MaxLineBytes: a line must be shorter
	partial []byte     // the incomplete line carried to the next read
}

func newLineReader(r io.Reader, bufs *sync.Pool, max int) *lineReader {
	lr := &lineReader{r: r, bufs: bufs, max: max}
	if sc, ok := r.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			lr.raw = raw
		}
	}
	return lr
}

// errWouldBlock is read's answer, without waiting, when no input has arrived.
var errWouldBlock = errors.New("stratum: no input yet")

// read returns a buffer from the pool holding the carried partial line followed by
// what was read; the caller passes it to lines and then release. With wait it waits
// for input; without, it returns errWouldBlock if there is none.
func (lr *lineReader) read(wait bool) (*[]byte, []byte, error) {
	if lr.raw == nil {
		bp := lr.take()
		n, err := lr.r.Read((*bp)[len(lr.partial):])
		if n == 0 {
			lr.bufs.Put(bp)
			if err == nil {
				err = io.ErrNoProgress
			}
			return nil, nil, err
		}
		return bp, (*bp)[:len(lr.partial)+n], nil
	}
	var bp *[]byte
	var n int
	var rerr error
	err := lr.raw.Read(func(fd uintptr) bool {
		bp = lr.take()
		for {
			n, rerr = syscall.Read(int(fd), (*bp)[len(lr.partial):])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			// Nothing yet: wait for the poller without holding a buffer.
			lr.bufs.Put(bp)
			bp = nil
			return !wait
		}
		return true
	})
	if err == nil && rerr == syscall.EAGAIN {
		return nil, nil, errWouldBlock
	}
	switch {
	case err != nil:
	case rerr != nil:
		err = os.NewSyscallError("read", rerr)
	case n <= 0:
		err = io.EOF
	}
	if err != nil {
		if bp != nil {
			lr.bufs.Put(bp)
		}
		return nil, nil, err
	}
	return bp, (*bp)[:len(lr.partial)+n], nil
}

// take returns a pooled buffer with the partial line copied to its front.
func (lr *lineReader) take() *[]byte {
	bp := lr.bufs.Get().(*[]byte)
	copy(*bp, lr.partial)
	return bp
}

// release returns a buffer from read to the pool.
func (lr *lineReader) release(bp *[]byte) { lr.bufs.Put(bp) }

// lines calls fn with each complete line of data (without its newline; empty lines are
// skipped) until fn returns false, and keeps the incomplete rest for the next read. A
// line of max bytes or more is errLineTooLong.
func (lr *lineReader) lines(data []byte, fn func(line []byte) bool) (bool, error) {
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		line := data[:i]
		data = data[i+1:]
		if len(line) >= lr.max {
			return false, errLineTooLong
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			continue
		}
		if !fn(line) {
			return false, nil
		}
	}
	if len(data) >= lr.max {
		return false, errLineTooLong
	}
	if len(data) == 0 {
		lr.partial = nil
	} else {
		lr.partial = append(lr.partial[:0:0], data...)
	}
	return true, nil
}

// serve reads a connection that the poller does not watch, on its own goroutine.
func (c *Conn) serve() {
	s := c.srv
	defer c.finish()
	lr := &c.lr
	var deadline time.Time
	for {
		now := s.cfg.Now()
		want := now.Add(s.lim.IdleTimeout)
		if !c.authorized.Load() {
			want = c.connected.Add(s.lim.HandshakeTimeout)
			if !now.Before(want) {
				s.drop("handshake_timeout")
				return
			}
		}
		// Moving the deadline costs a timer update: do it when it moved by a second.
		if d := want.Sub(deadline); d > time.Second || d < -time.Second {
			c.nc.SetReadDeadline(want)
			deadline = want
		}
		bp, data, err := lr.read(true)
		if err != nil {
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			case isTimeout(err):
				s.drop("idle")
			}
			return
		}
		ok := s.handle(c, lr, data)
		lr.release(bp)
		if !ok {
			return
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// handleLines handles the complete lines of one read; false means drop the peer.
func (c *Conn) handleLines(lr *lineReader, data []byte) bool {
	ok, err := lr.lines(data, c.handleLine)
	if err != nil {
		c.srv.drop("line_too_long")
		c.srv.log.Debug("line too long", "remote", c.RemoteAddr())
	}
	return ok
}

// handleLine processes one request; false means drop the peer.
func (c *Conn) handleLine(line []byte) bool {
	s := c.srv
	if ah, ok := s.handler.(AsyncHandler); ok {
		if id, sub, ok := parseSubmitFast(line); ok {
			return c.submitParsed(id, &sub, nil, ah)
		}
	}
	m, err := ParseMessage(line)
	if err != nil || !m.IsRequest() {
		c.badLines++
		if err == nil {
			// A response from the miner (to client.get_version, say): ignore it.
			c.badLines--
			return true
		}
		if c.badLines > s.lim.MaxBadLines {
			s.drop("bad_lines")
			return false
		}
		id := json.RawMessage("null")
		if m != nil {
			id = m.ID
		}
		c.writeLine(AppendResponse(nil, id, nil, &Error{ErrCodeOther, "malformed request"}))
		return true
	}
	switch m.Method {
	case "mining.submit":
		return c.handleSubmit(m)
	case "mining.subscribe":
		return c.handleSubscribe(m)
	case "mining.authorize":
		return c.handleAuthorize(m)
	case "mining.configure":
		return c.handleConfigure(m)
	case "mining.suggest_difficulty":
		p, err := m.StringParams(4)
		if err != nil || len(p) < 1 {
			return c.replyErr(m, ErrCodeOther, "bad params")
		}
		d, err := strconv.ParseFloat(p[0], 64)
		if err != nil || !(d > 0) || math.IsInf(d, 0) {
			return c.replyErr(m, ErrCodeOther, "difficulty must be a positive number")
		}
		c.suggested = d
		if c.authorized.Load() {
			s.handler.SuggestDifficulty(c, d)
		}
		return c.reply(m, []byte("true"))
	case "mining.extranonce.subscribe":
		c.extranonceSub = true
		return c.reply(m, []byte("true"))
	case "mining.multi_version", "mining.get_transactions", "mining.capabilities":
		return c.replyErr(m, ErrCodeOther, "not supported")
	default:
		c.badLines++
		if c.badLines > s.lim.MaxBadLines {
			s.drop("bad_lines")
			return false
		}
		return c.replyErr(m, ErrCodeOther, "unknown method")
	}
}

func (c *Conn) reply(m *Message, result []byte) bool {
	if len(m.ID) == 0 || string(m.ID) == "null" {
		return true // a notification needs no answer
	}
	return c.writeLine(AppendResponse(nil, m.ID, result, nil)) == nil
}

func (c *Conn) replyErr(m *Message, code int, msg string) bool {
	return c.writeLine(AppendResponse(nil, m.ID, nil, &Error{code, msg})) == nil
}

// maxAgentLen bounds the stored user agent.
const maxAgentLen = 128

func (c *Conn) handleSubscribe(m *Message) bool {
	s := c.srv
	p, err := m.StringParams(4)
	if err != nil {
		return c.replyErr(m, ErrCodeOther, "bad params")
	}
	resume := ""
	if len(p) > 0 {
		c.agent = p[0]
		if len(c.agent) > maxAgentLen {
			c.agent = c.agent[:maxAgentLen]
		}
	}
	if len(p) > 1 {
		resume = strings.ToLower(p[1])
	}
	if !c.subscribed {
		c.en1 = s.allocExtranonce1(resume)
		s.mu.Lock()
		s.active[c.en1] = c
		s.mu.Unlock()
		c.subscribed = true
	}
	sid := fmt.Sprintf("%08x", c.en1)
	res := fmt.Appendf(nil, `[[["mining.set_difficulty","%s"],["mining.notify","%s"]],"%s",%d]`, sid, sid, sid, s.cfg.Extranonce2Size)
	if !c.reply(m, res) {
		return false
	}
	if len(c.users) > 0 && !c.authorized.Load() {
		c.authorized.Store(true)
		s.handler.Authorized(c)
	}
	return true
}

func (c *Conn) handleAuthorize(m *Message) bool {
	s := c.srv
	p, err := m.StringParams(4)
	if err != nil || len(p) < 1 {
		return c.replyErr(m, ErrCodeOther, "bad params")
	}
	pass := ""
	if len(p) > 1 {
		pass = p[1]
	}
	if len(c.users) >= s.lim.MaxWorkersPerConn {
		return c.replyErr(m, ErrCodeOther, "too many workers on one connection")
	}
	if err := s.handler.Authorize(c, p[0], pass); err != nil {
		msg := err.Error()
		var se *Error
		if errors.As(err, &se) {
			msg = se.Message
		}
		return c.writeLine(AppendResponse(nil, m.ID, []byte("false"), &Error{ErrCodeUnauthorized, msg})) == nil
	}
	known := false
	for _, u := range c.users {
		known = known || u == p[0]
	}
	if !known {
		c.users = append(c.users, p[0])
	}
	if !c.reply(m, []byte("true")) {
		return false
	}
	if c.subscribed && !c.authorized.Load() {
		c.authorized.Store(true)
		s.handler.Authorized(c)
	}
	return true
}

func (c *Conn) handleConfigure(m *Message) bool {
	var params []json.RawMessage
	if err := json.Unmarshal(m.Params, &params); err != nil || len(params) < 1 {
		return c.replyErr(m, ErrCodeOther, "bad params")
	}
	var exts []string
	if err := json.Unmarshal(params[0], &exts); err != nil || len(exts) > 16 {
		return c.replyErr(m, ErrCodeOther, "bad extension list")
	}
	opts := map[string]json.RawMessage{}
	if len(params) > 1 {
		if err := json.Unmarshal(params[1], &opts); err != nil {
			return c.replyErr(m, ErrCodeOther, "bad extension parameters")
		}
	}
	res := map[string]any{}
	for _, ext := range exts {
		switch ext {
		case "version-rolling":
			minerMask := uint32(0xffffffff)
			if raw, ok := opts["version-rolling.mask"]; ok {
				var hexMask string
				if json.Unmarshal(raw, &hexMask) != nil {
					return c.replyErr(m, ErrCodeOther, "bad version-rolling.mask")
				}
				v, err := strconv.ParseUint(hexMask, 16, 32)
				if err != nil {
					return c.replyErr(m, ErrCodeOther, "bad version-rolling.mask")
				}
				minerMask = uint32(v)
			}
			minBits := 0
			if raw, ok := opts["version-rolling.min-bit-count"]; ok {
				json.Unmarshal(raw, &minBits)
			}
			mask := c.srv.cfg.VersionMask & minerMask
			if bits.OnesCount32(mask) < minBits {
				res["version-rolling"] = false
				continue
			}
			c.version = mask
			res["version-rolling"] = true
			res["version-rolling.mask"] = fmt.Sprintf("%08x", mask)
		case "minimum-difficulty":
			var v float64
			if raw, ok := opts["minimum-difficulty.value"]; ok && json.Unmarshal(raw, &v) == nil && v > 0 && !math.IsInf(v, 0) {
				c.minDiff = v
				res["minimum-difficulty"] = true
			} else {
				res["minimum-difficulty"] = false
			}
		case "subscribe-extranonce":
			c.extranonceSub = true
			res["subscribe-extranonce"] = true
		case "info":
			res["info"] = true
		default:
			res[ext] = false
		}
	}
	b, _ := json.Marshal(res)
	return c.reply(m, b)
}

type pendingReply struct {
	id   json.RawMessage
	err  *Error
	done bool
}

func (c *Conn) handleSubmit(m *Message) bool {
	s := c.srv
	if ah, ok := s.handler.(AsyncHandler); ok {
		return c.handleSubmitAsync(m, ah)
	}
	sub, err := ParseSubmit(m)
	if err != nil {
		return c.strike(m, &Error{ErrCodeOther, "bad submit params"})
	}
	if !c.subscribed {
		return c.strike(m, &Error{ErrCodeNotSubscribed, "not subscribed"})
	}
	if !c.authorized.Load() || !c.hasUser(sub.Worker) {
		return c.strike(m, &Error{ErrCodeUnauthorized, "unauthorized worker"})
	}
	if e := s.handler.Submit(c, sub); e != nil {
		if e.Code == ErrCodeJobNotFound {
			// Stale work is normal around a new block; it is no sign of abuse.
			return c.writeLine(AppendResponse(nil, m.ID, nil, e)) == nil
		}
		return c.strike(m, e)
	}
	return c.writeLine(AppendResponse(nil, m.ID, []byte("true"), nil)) == nil
}

func (c *Conn) hasUser(u string) bool {
	for _, x := range c.users {
		if x == u {
			return true
		}
	}
	return false
}

// strike answers with e and counts it against the peer; a peer over MaxStrikes in
// StrikeWindow is banned.
func (c *Conn) strike(m *Message, e *Error) bool {
	if !c.countStrike() {
		return false
	}
	return c.writeLine(AppendResponse(nil, m.ID, nil, e)) == nil
}

// countStrike counts one invalid share; false means the peer was banned.
func (c *Conn) countStrike() bool {
	s := c.srv
	now := s.cfg.Now()
	c.pmu.Lock()
	if now.Sub(c.strikeStart) > s.lim.StrikeWindow {
		c.strikeStart, c.strikes = now, 0
	}
	c.strikes++
	over := c.strikes > s.lim.MaxStrikes
	n := c.strikes
	c.pmu.Unlock()
	if over {
		s.log.Warn("banning peer for invalid shares", "ip", c.ip, "strikes", n)
		s.drop("strikes")
		s.Ban(c.ip, s.lim.BanDuration)
		return false
	}
	return true
}

// handleSubmitAsync queues the reply slot, hands the share to the handler and goes
// back to reading; complete writes replies as the head of the queue resolves.
func (c *Conn) handleSubmitAsync(m *Message, ah AsyncHandler) bool {
	sub, err := ParseSubmit(m)
	return c.submitParsed(m.ID, sub, err, ah)
}

func (c *Conn) submitParsed(id json.RawMessage, sub *Submit, err error, ah AsyncHandler) bool {
	s := c.srv
	var early *Error
	switch {
	case err != nil:
		early = &Error{ErrCodeOther, "bad submit params"}
	case !c.subscribed:
		early = &Error{ErrCodeNotSubscribed, "not subscribed"}
	case !c.authorized.Load() || !c.hasUser(sub.Worker):
		early = &Error{ErrCodeUnauthorized, "unauthorized worker"}
	}
	if c.sem == nil {
		c.sem = make(chan struct{}, s.lim.MaxPendingSubmits)
	}
	c.sem <- struct{}{} // wait while MaxPendingSubmits are unanswered
	r := &pendingReply{id: id}
	c.pmu.Lock()
	c.pending = append(c.pending, r)
	c.pmu.Unlock()
	if early != nil {
		return c.complete(r, early)
	}
	ah.SubmitAsync(c, sub, func(e *Error) { c.complete(r, e) })
	return !c.closed.Load()
}

// complete records a submit's verdict. Replies leave in arrival order, written by one
// flush goroutine per connection at a time: verdicts that resolve together (a batch of
// shares made durable by one fsync) go out in one write. It reports false when the peer
// was dropped.
func (c *Conn) complete(r *pendingReply, e *Error) bool {
	<-c.sem
	if e != nil && e.Code != ErrCodeJobNotFound {
		// Stale work is normal around a new block; anything else counts.
		if !c.countStrike() {
			return false
		}
	}
	c.pmu.Lock()
	r.err, r.done = e, true
	start := !c.flushing && c.pending[0].done
	if start {
		c.flushing = true
	}
	c.pmu.Unlock()
	if start {
		c.srv.wg.Add(1)
		go c.flush()
	}
	return !c.closed.Load()
}

// flush writes the resolved replies at the head of the queue until none is left.
func (c *Conn) flush() {
	defer c.srv.wg.Done()
	bp := replyBufs.Get().(*[]byte)
	defer replyBufs.Put(bp)
	for {
		buf := (*bp)[:0]
		c.pmu.Lock()
		n := 0
		for n < len(c.pending) && c.pending[n].done {
			p := c.pending[n]
			if p.err == nil {
				buf = AppendResponse(buf, p.id, []byte("true"), nil)
			} else {
				buf = AppendResponse(buf, p.id, nil, p.err)
			}
			c.pending[n] = nil
			n++
		}
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil // let an idle connection hold no queue
		}
		if n == 0 {
			c.flushing = false
			c.pmu.Unlock()
			return
		}
		c.pmu.Unlock()
		*bp = buf
		if c.writeLine(buf) != nil {
			c.pmu.Lock()
			c.flushing = false
			c.pmu.Unlock()
			return
		}
	}
}

// replyBufs holds the buffers flushes build replies in.
var replyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}
