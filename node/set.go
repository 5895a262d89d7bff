package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"
)

// Defaults of a Set.
const (
	DefaultMinBackoff      = 500 * time.Millisecond
	DefaultMaxBackoff      = 30 * time.Second
	DefaultPollInterval    = 500 * time.Millisecond
	DefaultRefreshInterval = 30 * time.Second
	DefaultProbeTimeout    = 3 * time.Second
	// misconfiguredLogEvery bounds how often a node that refuses the credentials is
	// logged: it is tried at most every MaxBackoff, and said at most this often.
	misconfiguredLogEvery = time.Minute
)

// errInitialDownload is a probe's verdict on a node that answers but says it is still
// catching up with the network.
var errInitialDownload = errors.New("node: in initial block download")

// ErrNoNode is returned when no node of a Set answered.
var ErrNoNode = errors.New("node: no node answered")

// SetOptions configure a Set. Zero values take the defaults above.
type SetOptions struct {
	Logger *slog.Logger
	Clock  Clock
	// MinBackoff and MaxBackoff bound the wait before a failed node is tried again; the
	// wait doubles with each consecutive failure.
	MinBackoff, MaxBackoff time.Duration
	// PollInterval is how often Watch asks for the best block hash (the fallback for
	// nodes without long polling, and the way a hung node is noticed).
	PollInterval time.Duration
	// RefreshInterval is how often Watch fetches a fresh template for new fees.
	RefreshInterval time.Duration
	// ProbeTimeout bounds the best-block polls and the probes of failed nodes.
	ProbeTimeout time.Duration
	// NoLongPoll turns GBT long polling off.
	NoLongPoll bool
	// ZMQ lists Bitcoin Core zmqpubhashblock endpoints (tcp://HOST:PORT); a message on
	// any of them makes Watch fetch a template at once.
	ZMQ []string
}

// NodeHealth is what /healthz shows about one node.
type NodeHealth struct {
	URL         string        `json:"url"` // credentials redacted
	Up          bool          `json:"up"`
	LastError   string        `json:"last_error,omitempty"`
	LastErrorAt time.Time     `json:"last_error_at,omitzero"`
	LastSuccess time.Time     `json:"last_success,omitzero"`
	Latency     time.Duration `json:"latency_ns"` // of the last successful call
	Failures    int           `json:"consecutive_failures"`
	// Height is the node's tip height when last asked (-1: not known yet); Behind is
	// true when another node of the set reported a higher tip at the same check.
	Height int64 `json:"height"`
	Behind bool  `json:"behind,omitempty"`
}

// Set presents several nodes as one: calls go to the first healthy node and fail over to
// the next on error; failed nodes are retried with exponential backoff, and earlier
// nodes are preferred again as soon as they answer. Blocks go to every node.
//
// A node is unhealthy when it cannot be reached, when it answers with a transport or
// HTTP error, and when it answers that it cannot serve yet (NotReady: not connected,
// initial block download, warming up). A node that refuses the credentials is retried
// at most every MaxBackoff and logged at most once a minute. While Watch runs, the tips
// of all healthy nodes are compared at every poll, and a node whose tip lags behind
// another's is used only when no node that is not behind answers.
type Set struct {
	members []*member
	log     *slog.Logger
	clock   Clock
	opts    SetOptions

	mu        sync.Mutex // guards the watcher's status below
	lastTmpl  time.Time
	tmplErr   error
	tmplErrAt time.Time
	watching  bool
}

type member struct {
	c *Client

	mu        sync.Mutex
	up        bool
	fails     int
	lastErr   error
	lastErrAt time.Time
	lastOK    time.Time
	latency   time.Duration
	retryAt   time.Time
	height    int64 // tip height when last asked; -1 when never
	behind    bool  // another node had a higher tip at the last comparison
	loggedAt  time.Time
}

// NewSet returns a Set over clients, preferred in the order given.
func NewSet(clients []*Client, opts SetOptions) (*Set, error) {
	if len(clients) == 0 {
		return nil, errors.New("node: a set needs at least one node")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = SystemClock{}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.MinBackoff, DefaultMinBackoff)
	def(&opts.MaxBackoff, DefaultMaxBackoff)
	def(&opts.PollInterval, DefaultPollInterval)
	def(&opts.RefreshInterval, DefaultRefreshInterval)
	def(&opts.ProbeTimeout, DefaultProbeTimeout)
	if opts.MaxBackoff < opts.MinBackoff {
		return nil, fmt.Errorf("node: max backoff %s below min backoff %s", opts.MaxBackoff, opts.MinBackoff)
	}
	s := &Set{log: opts.Logger.With("component", "node"), clock: opts.Clock, opts: opts}
	for _, c := range clients {
		if c == nil {
			return nil, errors.New("node: nil client in set")
		}
		// Nodes start up: the first call finds out.
		s.members = append(s.members, &member{c: c, up: true, height: -1})
	}
	return s, nil
}

// Health returns each node's health in preference order.
func (s *Set) Health() []NodeHealth {
	out := make([]NodeHealth, len(s.members))
	for i, m := range s.members {
		m.mu.Lock()
		out[i] = NodeHealth{URL: m.c.String(), Up: m.up, LastErrorAt: m.lastErrAt, LastSuccess: m.lastOK, Latency: m.latency, Failures: m.fails, Height: m.height, Behind: m.behind}
		if m.lastErr != nil {
			out[i].LastError = m.lastErr.Error()
		}
		m.mu.Unlock()
	}
	return out
}

// Status is the Set's health with the watcher's view, for /healthz.
type Status struct {
	Nodes []NodeHealth `json:"nodes"`
	// Degraded is true when a node is down, the last template fetch failed, or the
	// newest template is older than twice the refresh interval.
	Degraded      bool      `json:"degraded"`
	LastTemplate  time.Time `json:"last_template,omitzero"`
	TemplateError string    `json:"template_error,omitempty"`
}

// Status returns the nodes' health and whether the pool works on a degraded view.
func (s *Set) Status() Status {
	st := Status{Nodes: s.Health()}
	for _, n := range st.Nodes {
		if !n.Up {
			st.Degraded = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.LastTemplate = s.lastTmpl
	if s.tmplErr != nil && !s.tmplErrAt.Before(s.lastTmpl) {
		st.TemplateError = s.tmplErr.Error()
		st.Degraded = true
	}
	if s.watching && s.clock.Now().Sub(s.lastTmpl) > 2*s.opts.RefreshInterval {
		st.Degraded = true
	}
	return st
}

func (s *Set) backoff(fails int) time.Duration {
	d := s.opts.MinBackoff
	for i := 1; i < fails && d < s.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.opts.MaxBackoff)
}

func (s *Set) success(m *member, dur time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.up {
		s.log.Info("node up", "node", m.c.String(), "after_failures", m.fails)
	}
	m.up, m.fails, m.lastOK, m.latency = true, 0, s.clock.Now(), dur
}

// answered marks a node up after a tip check, keeping its failure count: a node may
// answer getblockchaininfo and still refuse templates (btcd while it downloads the
// chain answers -10 to getblocktemplate only), so only a real call resets the backoff.
// Otherwise such a node would be taken back and dropped at every probe.
func (s *Set) answered(m *member, dur time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.up {
		s.log.Info("node up", "node", m.c.String(), "after_failures", m.fails)
	}
	m.up, m.lastOK, m.latency = true, s.clock.Now(), dur
}

func (s *Set) failure(m *member, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := s.clock.Now()
	m.fails++
	m.lastErr, m.lastErrAt = err, now
	if Misconfigured(err) {
		// Not an outage: the password will not heal by itself. Ask seldom, say it
		// plainly, and not on every try.
		if m.loggedAt.IsZero() || now.Sub(m.loggedAt) >= misconfiguredLogEvery {
			s.log.Error("node refuses the RPC credentials; fix the node URL", "node", m.c.String(), "err", err, "retry_in", s.opts.MaxBackoff)
			m.loggedAt = now
		}
		m.up = false
		m.retryAt = now.Add(s.opts.MaxBackoff)
		return
	}
	if m.up {
		s.log.Warn("node down", "node", m.c.String(), "err", err)
	}
	m.up = false
	m.retryAt = now.Add(s.backoff(m.fails))
}

// order returns the members to try. While Watch runs, its prober retries failed nodes
// in the background, so calls use healthy nodes only and callers never wait on a node
// known to hang. Without it, a failed node whose backoff has passed is retried in its
// place in the preference order: that is how an earlier node is taken back. Healthy
// nodes whose tip was behind another's at the last comparison come after all others.
// When no node qualifies, every node is tried: a pool with no node must keep trying
// rather than wait out a backoff.
func (s *Set) order() []*member {
	s.mu.Lock()
	probed := s.watching
	s.mu.Unlock()
	now := s.clock.Now()
	var up, usable, behind []*member
	for _, m := range s.members {
		m.mu.Lock()
		switch {
		case m.up && m.behind:
			behind = append(behind, m)
		case m.up:
			up = append(up, m)
			usable = append(usable, m)
		case !now.Before(m.retryAt):
			usable = append(usable, m)
		}
		m.mu.Unlock()
	}
	// A node behind the others is tried last: mining on its tip would waste work.
	up = append(up, behind...)
	usable = append(usable, behind...)
	switch {
	case probed && len(up) > 0:
		return up
	case len(usable) > 0:
		return usable
	}
	return s.members
}

// do runs fn on the members in order until one succeeds. Errors of a caller's cancelled
// context do not count against a node.
func (s *Set) do(ctx context.Context, op string, fn func(ctx context.Context, c *Client) error) error {
	var errs []string
	for _, m := range s.order() {
		start := s.clock.Now()
		err := fn(ctx, m.c)
		var rpcErr *RPCError
		if err == nil || (errors.As(err, &rpcErr) && !NotReady(err)) {
			// An RPC error is the node's answer (a block it does not know, say): the
			// node is healthy and the caller gets the typed error. A node that says it
			// cannot serve yet is failed over from below.
			s.success(m, s.clock.Now().Sub(start))
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		s.failure(m, err)
		errs = append(errs, err.Error())
	}
	return fmt.Errorf("%s: %w: %s", op, ErrNoNode, strings.Join(errs, "; "))
}

// BlockTemplate fetches a template from the first node that gives a valid one.
func (s *Set) BlockTemplate(ctx context.Context) (*Template, error) {
	var t *Template
	err := s.do(ctx, "getblocktemplate", func(ctx context.Context, c *Client) (err error) {
		t, err = c.BlockTemplate(ctx, "")
		return err
	})
	return t, err
}

// ChainInfo asks the first healthy node.
func (s *Set) ChainInfo(ctx context.Context) (ChainInfo, error) {
	var info ChainInfo
	err := s.do(ctx, "getblockchaininfo", func(ctx context.Context, c *Client) (err error) {
		info, err = c.ChainInfo(ctx)
		return err
	})
	return info, err
}

// BestBlockHash asks the first healthy node.
func (s *Set) BestBlockHash(ctx context.Context) (chainhash.Hash, error) {
	var h chainhash.Hash
	err := s.do(ctx, "getbestblockhash", func(ctx context.Context, c *Client) (err error) {
		h, err = c.BestBlockHash(ctx)
		return err
	})
	return h, err
}

// BlockHeaderVerbose asks the first healthy node.
func (s *Set) BlockHeaderVerbose(ctx context.Context, hash chainhash.Hash) (BlockHeader, error) {
	var h BlockHeader
	err := s.do(ctx, "getblockheader", func(ctx context.Context, c *Client) (err error) {
		h, err = c.BlockHeaderVerbose(ctx, hash)
		return err
	})
	return h, err
}

// SubmitBlock sends the block to every node at once, healthy or not, so that a found
// block is not lost to one bad node, and waits for all answers. It returns nil when
// any node accepted the block (or already had it), the preferred node's *RejectedError
// when nodes only rejected it, and otherwise an error listing every failure.
func (s *Set) SubmitBlock(ctx context.Context, block *wire.MsgBlock) error {
	errs := make([]error, len(s.members))
	var wg sync.WaitGroup
	for i, m := range s.members {
		wg.Go(func() {
			start := s.clock.Now()
			err := m.c.SubmitBlock(ctx, block)
			var rej *RejectedError
			switch {
			case err == nil || errors.As(err, &rej):
				// The node answered: it is healthy whatever it thought of the block.
				s.success(m, s.clock.Now().Sub(start))
			case ctx.Err() == nil:
				s.failure(m, err)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	hash := block.BlockHash()
	var firstRej *RejectedError
	var msgs []string
	accepted := false
	for i, err := range errs {
		var rej *RejectedError
		switch {
		case err == nil:
			accepted = true
		case errors.As(err, &rej) && rej.Duplicate():
			accepted = true
		case errors.As(err, &rej):
			if firstRej == nil {
				firstRej = rej
			}
			s.log.Warn("block rejected", "node", s.members[i].c.String(), "hash", hash, "reason", rej.Reason)
			msgs = append(msgs, err.Error())
		default:
			s.log.Error("block not submitted", "node", s.members[i].c.String(), "hash", hash, "err", err)
			msgs = append(msgs, err.Error())
		}
	}
	if accepted {
		return nil
	}
	if firstRej != nil {
		return firstRej
	}
	return fmt.Errorf("submitblock %s: %w: %s", hash, ErrNoNode, strings.Join(msgs, "; "))
}
