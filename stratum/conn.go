package stratum

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

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
	subscribed bool
	en1        uint32
	agent      string
	version    uint32 // negotiated version-rolling mask; 0 = none
	minDiff    float64
	suggested  float64
	users      []string
	authorized atomic.Bool
	enSub      atomic.Bool // mining.extranonce.subscribe accepted (Config.ExtranonceSubscribe)
	badLines   leaky       // malformed lines and unknown methods

	// Pipelined submits (AsyncHandler): replies wait in arrival order.
	pmu          sync.Mutex
	pending      []*pendingReply
	flushing     bool          // a flush goroutine is writing replies
	sem          chan struct{} // bounds pending submits; made on the first submit
	strikes      leaky         // invalid submits
	rejectsSince int64         // UnixNano of the first of the rejects since the last accepted share; 0 none

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

// ExtranonceSubscribed reports whether the miner subscribed to mining.set_extranonce
// and the server let it (Config.ExtranonceSubscribe).
func (c *Conn) ExtranonceSubscribed() bool { return c.enSub.Load() }

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
