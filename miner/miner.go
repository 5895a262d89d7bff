// Package miner is a Stratum V1 and V2 CPU miner: it connects with the stratum client
// (V1) or the stratum/v2/client package (V2, stratum2+tcp:// URLs, on a standard
// header-only channel or an extended one), rolls extranonce, nonces and (when the pool
// allows) version bits, and submits every hash that meets the pool's target. hashgrid
// uses it in tests, in the demo and as a load generator; it speaks to any Stratum V1
// pool and to V2 pools over the encrypted transport. It leaves out V2 group channels,
// custom jobs and the unencrypted V2 mode.
package miner

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stratum/v2/client"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
	"github.com/hashgrid/hashgrid/stratum/v2/sv2"
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
	MaxRetryWait time.Duration      // longest pause between reconnects; default 10s
	V2Channel    client.ChannelKind // the channel to open on stratum2+tcp:// pools
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
		if err := checkURL(u); err != nil {
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
		if errors.Is(err, noise.ErrCertificate) {
			// The server is not the pool the URL's key names: retrying would hand the
			// hashrate to whoever it is.
			return fmt.Errorf("miner: %s: %w", url, err)
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
// For V2 it is a SetupConnection.Error or OpenMiningChannel.Error.
func refused(err error) bool {
	var se *stratum.Error
	var re *client.RefusedError
	return errors.Is(err, stratum.ErrAuthorizeRefused) || errors.As(err, &se) && se.Code == stratum.ErrCodeUnauthorized ||
		errors.As(err, &re)
}

func (m *Miner) session(ctx context.Context, url string) error {
	if isV2(url) {
		return m.sessionV2(ctx, url)
	}
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
	submit := func(ctx context.Context, s *share) error { return c.Submit(ctx, &s.v1) }
	return mine(ctx, m, c.Updates(), c.Done(), c.Err, newJob, submit)
}

// mine hashes each work update on Threads goroutines until ctx ends or the connection
// does, submitting what they find through submit. It serves both protocols: W is the
// client's work type and newJob prepares it for hashing.
func mine[W any](ctx context.Context, m *Miner, updates <-chan W, done <-chan struct{}, connErr func() error,
	newJob func(*Miner, W) (*job, error), submit func(context.Context, *share) error) error {
	m.connects.Add(1)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	found := make(chan share, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.submitter(submit, found)
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
		case <-done:
			return connErr()
		case w, ok := <-updates:
			if !ok {
				return connErr()
			}
			j, err := newJob(m, w)
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

// share is a found solution in the form of its protocol.
type share struct {
	v1    stratum.Submit
	v2    client.Share
	diff  hashgrid.Diff // credited when accepted
	block bool
}

// submitDrainTimeout bounds the wait for each answer while stopping.
const submitDrainTimeout = 10 * time.Second

// submitter sends found shares until found is closed. Each submit has its own timeout
// rather than the session's context, so a share found just before a stop is still
// answered; a broken connection fails it at once.
func (m *Miner) submitter(submit func(context.Context, *share) error, found <-chan share) {
	for s := range found {
		ctx, cancel := context.WithTimeout(context.Background(), submitDrainTimeout)
		err := submit(ctx, &s)
		cancel()
		var se *stratum.Error
		var ve *client.ShareError
		switch {
		case err == nil:
			m.accepted.Add(1)
			if s.block {
				m.blocks.Add(1)
			}
			m.mu.Lock()
			m.work = m.work.Add(s.diff)
			m.mu.Unlock()
		case errors.As(err, &se) && se.Code == stratum.ErrCodeJobNotFound,
			errors.As(err, &ve) && (ve.Code == sv2.CodeStaleShare || ve.Code == sv2.CodeInvalidJobID):
			m.stale.Add(1)
			m.rejected.Add(1)
		case errors.As(err, &se), errors.As(err, &ve):
			m.rejected.Add(1)
			m.log.Debug("miner: share rejected", "err", err)
		default:
			m.errs.Add(1)
		}
	}
}

// job is work prepared for hashing, whichever protocol it came by. The header's merkle
// root is either fixed (root, a V2 standard channel) or that of the coinbase head,
// extranonce, tail over branch, with an extranonce of en2Size bytes the miner rolls.
type job struct {
	prev    chainhash.Hash
	version uint32
	mask    uint32 // nVersion bits the miner may roll
	bits    uint32
	ntime   uint32
	target  pow.Target
	net     pow.Target
	diff    hashgrid.Diff

	root    *chainhash.Hash
	head    []byte
	tail    []byte
	en2Size int
	branch  []chainhash.Hash

	// share builds the submission for a header found with extranonce en2, ntime,
	// nonce, version and its rolled bits vbits.
	share func(en2 []byte, ntime, nonce, version, vbits uint32) share
}

func newJob(m *Miner, w stratum.Work) (*job, error) {
	nj, err := w.Notify.Decode()
	if err != nil {
		return nil, err
	}
	if w.Difficulty <= 0 {
		return nil, errors.New("no difficulty set before the first job")
	}
	d := hashgrid.DiffFromFloat(w.Difficulty)
	j := &job{prev: nj.Prev, version: nj.Version, mask: w.VersionMask, bits: nj.Bits, ntime: nj.NTime,
		target: pow.DiffTarget(d), diff: d, head: append(slices.Clip(nj.Coinb1), w.Extranonce1...),
		tail: nj.Coinb2, en2Size: w.Extranonce2Size, branch: nj.Branch}
	if j.net, err = pow.CompactTarget(j.bits); err != nil {
		return nil, err
	}
	j.share = func(en2 []byte, ntime, nonce, version, vbits uint32) share {
		s := share{diff: d, v1: stratum.Submit{
			Worker:      m.cfg.User,
			JobID:       w.Notify.JobID,
			Extranonce2: hex.EncodeToString(en2),
			NTime:       fmt.Sprintf("%08x", ntime),
			Nonce:       fmt.Sprintf("%08x", nonce),
		}}
		if j.mask != 0 {
			s.v1.VersionBits = fmt.Sprintf("%08x", vbits)
		}
		return s
	}
	return j, nil
}

// hash searches nonces for one job on thread t. Threads never repeat each other's
// work: each owns the top byte of the extranonce when there is one, and otherwise a
// share of the version bits (or, with no version rolling, of the nonce range).
func (m *Miner) hash(ctx context.Context, j *job, t int, found chan<- share) {
	threads := uint64(m.cfg.Threads)
	en2 := make([]byte, j.en2Size)
	if len(en2) > 0 {
		en2[0] = byte(t)
	}
	split := len(en2) == 0
	lo, hi := uint64(0), uint64(1)<<32
	if split && j.mask == 0 {
		span := hi / threads
		lo, hi = uint64(t)*span, uint64(t+1)*span
	}
	cb := make([]byte, 0, len(j.head)+len(en2)+len(j.tail))
	var hdr [80]byte
	ntime := j.ntime
	for counter := uint64(1); ; counter++ {
		vc := counter
		if split {
			vc = counter*threads + uint64(t)
			if j.mask == 0 && counter > 1 {
				ntime++ // the thread's nonces are spent and nothing else rolls
			}
		}
		version, vbits := j.version, uint32(0)
		if j.mask != 0 {
			// Spread the counter's low bits over the mask: rolled versions every round.
			vbits = deposit(uint32(vc), j.mask)
			version = (j.version &^ j.mask) | vbits
		}
		var root chainhash.Hash
		if j.root != nil {
			root = *j.root
		} else {
			putCounter(en2[min(1, len(en2)):], counter)
			cb = append(cb[:0], j.head...)
			cb = append(cb, en2...)
			cb = append(cb, j.tail...)
			root = pow.MerkleRoot(pow.DoubleSHA256(cb), j.branch)
		}
		pow.Header(&hdr, version, &j.prev, &root, ntime, j.bits, 0)
		const batch = 1 << 14
		for nonce := lo; nonce < hi; nonce++ {
			if (nonce-lo)%batch == 0 {
				if nonce > lo {
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
			s := j.share(slices.Clone(en2), ntime, uint32(nonce), version, vbits)
			s.block = pow.Meets(&h, j.net)
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
