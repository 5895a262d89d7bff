package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
)

// Limits bounds what one V2 peer can make the bridge hold. Zero values take the
// defaults from DefaultLimits. The V1 server's own limits (connections per address,
// strikes, bans) apply to every channel as to a V1 connection from the miner's address.
type Limits struct {
	MaxConns         int           // V2 connections in all
	MaxConnsPerIP    int           // V2 connections from one IP address
	MaxFrameBytes    int           // largest frame payload a miner may send (noise MaxPayload)
	MaxChannels      int           // channels open on one connection
	MaxJobs          int           // jobs kept per channel for submits; older ones are stale
	MaxPendingShares int           // submits of one channel awaiting their V1 answer; more wait
	HandshakeTimeout time.Duration // Noise handshake, then SetupConnection
	IdleTimeout      time.Duration // longest silence from a miner
	WriteTimeout     time.Duration // longest a frame write to a miner may block
	ChannelTimeout   time.Duration // opening a channel's V1 connection (configure, subscribe, authorize)
}

// DefaultLimits are sized like stratum.DefaultLimits.
var DefaultLimits = Limits{
	MaxConns:      100_000,
	MaxConnsPerIP: 2048,
	// The largest message a miner sends is SetupConnection (1,291 bytes at most);
	// nothing it may send comes near 4 KiB.
	MaxFrameBytes:    4096,
	MaxChannels:      64,
	MaxJobs:          16,
	MaxPendingShares: 64,
	HandshakeTimeout: 10 * time.Second,
	IdleTimeout:      15 * time.Minute,
	WriteTimeout:     10 * time.Second,
	ChannelTimeout:   30 * time.Second,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setD := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.MaxConns, d.MaxConns)
	set(&l.MaxConnsPerIP, d.MaxConnsPerIP)
	set(&l.MaxFrameBytes, d.MaxFrameBytes)
	set(&l.MaxChannels, d.MaxChannels)
	set(&l.MaxJobs, d.MaxJobs)
	set(&l.MaxPendingShares, d.MaxPendingShares)
	setD(&l.HandshakeTimeout, d.HandshakeTimeout)
	setD(&l.IdleTimeout, d.IdleTimeout)
	setD(&l.WriteTimeout, d.WriteTimeout)
	setD(&l.ChannelTimeout, d.ChannelTimeout)
	return l
}

// Config configures a Server.
type Config struct {
	Identity *noise.Identity // the server's static key and certificate
	Limits   Limits
	Logger   *slog.Logger
	// OnDrop, when set, is told each time a V2 peer is dropped or refused, with a
	// reason ("limit_total", "limit_ip", "handshake", "setup", "bad_frame", "idle").
	OnDrop func(reason string)
}

// Server accepts V2 connections and bridges their channels to a V1 server.
type Server struct {
	cfg Config
	lim Limits
	v1  *stratum.Server
	log *slog.Logger

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[*conn]struct{}
	perIP     map[string]int
	closing   bool
	wg        sync.WaitGroup
}

// NewServer returns a bridge to v1.
func NewServer(v1 *stratum.Server, cfg Config) (*Server, error) {
	if v1 == nil {
		return nil, errors.New("bridge: no V1 server")
	}
	if cfg.Identity == nil || cfg.Identity.Static == nil {
		return nil, errors.New("bridge: no noise identity")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	lim := cfg.Limits.withDefaults()
	if lim.MaxFrameBytes > noise.MaxPayload {
		return nil, fmt.Errorf("bridge: MaxFrameBytes %d over %d", lim.MaxFrameBytes, noise.MaxPayload)
	}
	return &Server{
		cfg:   cfg,
		lim:   lim,
		v1:    v1,
		log:   cfg.Logger,
		conns: make(map[*conn]struct{}),
		perIP: make(map[string]int),
	}, nil
}

// NumConns returns the number of open V2 connections.
func (s *Server) NumConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) drop(reason string) {
	if s.cfg.OnDrop != nil {
		s.cfg.OnDrop(reason)
	}
}

// Serve accepts connections on l until l is closed or Shutdown is called.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return errors.New("bridge: server closed")
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	return stratum.AcceptLoop(l, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.closing
	}, s.log, s.accept)
}

func (s *Server) accept(nc net.Conn) {
	ip := hostOf(nc.RemoteAddr())
	s.mu.Lock()
	switch {
	case s.closing || len(s.conns) >= s.lim.MaxConns:
		s.mu.Unlock()
		s.drop("limit_total")
		nc.Close()
		return
	case s.perIP[ip] >= s.lim.MaxConnsPerIP:
		s.mu.Unlock()
		s.drop("limit_ip")
		nc.Close()
		return
	}
	s.perIP[ip]++
	c := newConn(s, nc, ip)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.release(c)
		c.serve()
	}()
}

func (s *Server) release(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
		delete(s.perIP, c.ip)
	}
	s.mu.Unlock()
}

// Shutdown stops accepting, closes every V2 connection (and so their channels' V1
// connections) and waits for their goroutines, or until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for _, l := range s.listeners {
		l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
