// Package miner is a Stratum V1 CPU miner: it connects with the stratum client, rolls
// extranonce2, ntime-free nonces and (when the pool grants BIP 310) version bits, and
// submits every hash that meets the pool's difficulty. hashgrid uses it in tests, in
// the demo and as a load generator; it speaks to any Stratum V1 pool.
package miner

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
)

// Config configures a miner.
type Config struct {
	URL          string
	Failover     []string // more pool URLs, tried in turn when the current one fails
	User         string
	Password     string
	Threads      int           // hashing goroutines; default 1
	Duration     time.Duration // stop after this long; 0 = until ctx ends
	VersionRoll  bool          // ask for BIP 310 version rolling
	SuggestDiff  float64       // mining.suggest_difficulty, when > 0
	Agent        string
	MaxRetryWait time.Duration // longest pause between reconnects; default 10s
	Logger       *slog.Logger
}

// Stats counts what the miner did.
type Stats struct {
	Hashes   uint64
	Accepted uint64
	Rejected uint64
	Stale    uint64 // rejected as job not found (work superseded)
	Errors   uint64 // submissions that got no verdict (connection lost)
	Work     hashgrid.Work
	Connects uint64
	Blocks   uint64 // accepted shares whose hash met the job's network target
}

// Miner mines until its context ends.
type Miner struct {
	cfg Config
	log *slog.Logger

	hashes   atomic.Uint64
	accepted atomic.Uint64
	rejected atomic.Uint64
	stale    atomic.Uint64
	errs     atomic.Uint64
	connects atomic.Uint64
	blocks   atomic.Uint64
	mu       sync.Mutex
	work     hashgrid.Work
}

// New returns a miner.
func New(cfg Config) (*Miner, error) {
	if cfg.Threads <= 0 {
		cfg.Threads = 1
	}
	if cfg.MaxRetryWait == 0 {
		cfg.MaxRetryWait = 10 * time.Second
	}
	if cfg.Agent == "" {
		cfg.Agent = "hashgrid-miner/1"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, u := range append([]string{cfg.URL}, cfg.Failover...) {
		if _, err := stratum.HostPort(u); err != nil {
			return nil, err
		}
	}
	if cfg.User == "" {
		return nil, errors.New("miner: no user")
	}
	return &Miner{cfg: cfg, log: cfg.Logger}, nil
}

// Stats returns the counters so far.
func (m *Miner) Stats() Stats {
	m.mu.Lock()
	w := m.work
	m.mu.Unlock()
	return Stats{
		Hashes: m.hashes.Load(), Accepted: m.accepted.Load(), Rejected: m.rejected.Load(),
		Stale: m.stale.Load(), Errors: m.errs.Load(), Work: w, Connects: m.connects.Load(), Blocks: m.blocks.Load(),
	}
}

// Run mines, reconnecting with backoff, until ctx ends or Duration passes. It returns
// an error only when the pool refuses the user, which no retry would change.
func (m *Miner) Run(ctx context.Context) error {
	if m.cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.cfg.Duration)
		defer cancel()
	}
	urls := append([]string{m.cfg.URL}, m.cfg.Failover...)
	wait := 100 * time.Millisecond
	for i := 0; ctx.Err() == nil; {
		url := urls[i]
		connects := m.connects.Load()
		err := m.session(ctx, url)
		if ctx.Err() != nil {
			break
		}
		if refused(err) {
			// The pool refused the user (a wrong address, say): trying again cannot help.
			return fmt.Errorf("miner: the pool refused to authorize %q: %w", m.cfg.User, err)
		}
		if m.connects.Load() != connects {
			wait = 100 * time.Millisecond // a session ran: the pool was up until now
		}
		// The next pool in turn; the pause grows only once every pool has failed.
		if i = (i + 1) % len(urls); i != 0 {
			m.log.Warn("miner: connection ended, trying the next pool", "err", err, "url", url, "next", urls[i])
			continue
		}
		m.log.Warn("miner: connection ended", "err", err, "url", url, "retry_in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		if wait *= 2; wait > m.cfg.MaxRetryWait {
			wait = m.cfg.MaxRetryWait
		}
	}
	return nil
}

// refused reports whether err is the pool's refusal of mining.authorize: an error
// reply (hashgrid answers code 24, unauthorized) or a plain false.
func refused(err error) bool {
	var se *stratum.Error
	return errors.Is(err, stratum.ErrAuthorizeRefused) || errors.As(err, &se) && se.Code == stratum.ErrCodeUnauthorized
}

func (m *Miner) session(ctx context.Context, url string) error {
	var mask uint32
	if m.cfg.VersionRoll {
		mask = 0x1fffe000
	}
	c, err := stratum.Dial(ctx, stratum.ClientConfig{
		URL: url, User: m.cfg.User, Password: m.cfg.Password, Agent: m.cfg.Agent,
		VersionMask: mask, SuggestDiff: m.cfg.SuggestDiff, Extranonce: true, Logger: m.log,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	m.connects.Add(1)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	found := make(chan share, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.submitter(c, found)
	}()

	var cur context.CancelFunc = func() {}
	var hwg sync.WaitGroup
	// On the way out: stop hashing, then let the submitter send what was already found
	// and hear the answers, so that the miner's counts match the pool's.
	defer func() {
		cur()
		hwg.Wait()
		close(found)
		wg.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.Done():
			return c.Err()
		case w, ok := <-c.Updates():
			if !ok {
				return c.Err()
			}
			j, err := newJob(w)
			if err != nil {
				m.log.Warn("miner: bad job", "err", err)
				continue
			}
			cur()
			hwg.Wait()
			jctx, jcancel := context.WithCancel(sctx)
			cur = jcancel
			for t := 0; t < m.cfg.Threads; t++ {
				hwg.Add(1)
				go func(t int) {
					defer hwg.Done()
					m.hash(jctx, j, t, found)
				}(t)
			}
		}
	}
}

type share struct {
	sub   stratum.Submit
	diff  float64
	block bool
}

// submitDrainTimeout bounds the wait for each answer while stopping.
const submitDrainTimeout = 10 * time.Second

// submitter sends found shares until found is closed. Each submit has its own timeout
// rather than the session's context, so a share found just before a stop is still
// answered; a broken connection fails it at once.
func (m *Miner) submitter(c *stratum.Client, found <-chan share) {
	for s := range found {
		ctx, cancel := context.WithTimeout(context.Background(), submitDrainTimeout)
		err := c.Submit(ctx, &s.sub)
		cancel()
		var se *stratum.Error
		switch {
		case err == nil:
			m.accepted.Add(1)
			if s.block {
				m.blocks.Add(1)
			}
			m.mu.Lock()
			m.work = m.work.Add(hashgrid.DiffFromFloat(s.diff))
			m.mu.Unlock()
		case errors.As(err, &se) && se.Code == stratum.ErrCodeJobNotFound:
			m.stale.Add(1)
			m.rejected.Add(1)
		case errors.As(err, &se):
			m.rejected.Add(1)
			m.log.Debug("miner: share rejected", "err", err)
		default:
			m.errs.Add(1)
		}
	}
}

// job is a mining.notify prepared for hashing.
type job struct {
	w       stratum.Work
	prev    chainhash.Hash
	coinb1  []byte
	coinb2  []byte
	branch  []chainhash.Hash
	version uint32
	bits    uint32
	ntime   uint32
	target  pow.Target
	net     pow.Target
}

func newJob(w stratum.Work) (*job, error) {
	nj, err := w.Notify.Decode()
	if err != nil {
		return nil, err
	}
	j := &job{w: w, prev: nj.Prev, coinb1: nj.Coinb1, coinb2: nj.Coinb2, branch: nj.Branch, version: nj.Version, bits: nj.Bits, ntime: nj.NTime}
	if w.Difficulty <= 0 {
		return nil, errors.New("no difficulty set before the first job")
	}
	j.target = pow.DiffTarget(hashgrid.DiffFromFloat(w.Difficulty))
	if j.net, err = pow.CompactTarget(j.bits); err != nil {
		return nil, err
	}
	return j, nil
}

// hash searches nonces for one job on thread t. Each thread owns the top byte of
// extranonce2, so threads never repeat each other's work.
func (m *Miner) hash(ctx context.Context, j *job, t int, found chan<- share) {
	en2 := make([]byte, j.w.Extranonce2Size)
	if len(en2) > 0 {
		en2[0] = byte(t)
	}
	mask := j.w.VersionMask
	cb := make([]byte, 0, len(j.coinb1)+len(j.w.Extranonce1)+len(en2)+len(j.coinb2))
	var hdr [80]byte
	var counter uint64
	for {
		// Next extranonce2 (the bytes after the thread's own) and version bits.
		counter++
		putCounter(en2[min(1, len(en2)):], counter)
		version, vbits := j.version, uint32(0)
		if mask != 0 {
			// Spread the counter's low bits over the mask: rolled versions every round.
			vbits = deposit(uint32(counter), mask)
			version = (j.version &^ mask) | vbits
		}
		cb = append(cb[:0], j.coinb1...)
		cb = append(cb, j.w.Extranonce1...)
		cb = append(cb, en2...)
		cb = append(cb, j.coinb2...)
		root := pow.MerkleRoot(pow.DoubleSHA256(cb), j.branch)
		pow.Header(&hdr, version, &j.prev, &root, j.ntime, j.bits, 0)
		const batch = 1 << 14
		for nonce := uint64(0); nonce < 1<<32; nonce++ {
			if nonce%batch == 0 {
				if nonce > 0 {
					m.hashes.Add(batch)
				}
				if ctx.Err() != nil {
					return
				}
			}
			binary.LittleEndian.PutUint32(hdr[76:], uint32(nonce))
			h := pow.DoubleSHA256(hdr[:])
			if !pow.Meets(&h, j.target) {
				continue
			}
			s := share{diff: j.w.Difficulty, block: pow.Meets(&h, j.net), sub: stratum.Submit{
				Worker:      m.cfg.User,
				JobID:       j.w.Notify.JobID,
				Extranonce2: hex.EncodeToString(en2),
				NTime:       fmt.Sprintf("%08x", j.ntime),
				Nonce:       fmt.Sprintf("%08x", uint32(nonce)),
			}}
			if mask != 0 {
				s.sub.VersionBits = fmt.Sprintf("%08x", vbits)
			}
			select {
			case found <- s:
			case <-ctx.Done():
				return
			}
		}
	}
}

// putCounter writes v big-endian into b, keeping its low len(b) bytes.
func putCounter(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

// deposit spreads the low bits of v over the set bits of mask (PDEP).
func deposit(v, mask uint32) uint32 {
	var out uint32
	for mask != 0 {
		low := mask & -mask
		if v&1 != 0 {
			out |= low
		}
		v >>= 1
		mask &^= low
	}
	return out
}
