package api

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
)

// rateWindow returns the hashrate window that ends now and the time it really covers.
// The window is hashrate_window_seconds long (on whole minutes, see
// hashgrid.RecentWindow), but a pool younger than that has only mined since it
// started: dividing its work by the whole window would show a hashrate that climbs
// for ten minutes although the miners' speed never changed. The covered time starts
// at the latest of the window's start, the pool's start and, when the store holds no
// share before the pool started, nothing earlier; if the store holds shares from a
// previous run, those shares are in the window and it starts at the first of them.
func (s *Server) rateWindow(ctx context.Context, now time.Time) (from, to time.Time, span time.Duration) {
	from, to, span = hashgrid.RecentWindow(now, s.cfg.HashrateWindow)
	start := s.started
	if first, ok := s.firstShare(ctx); ok && first.Before(start) {
		start = first
	}
	if start.After(from) {
		span = now.Sub(start)
	}
	// At least a second: a share a moment after the start is not a rate of its own.
	return from, to, max(span, time.Second)
}

// firstShare returns the time of the first accepted share the store holds; it is
// looked up until one exists, then remembered.
func (s *Server) firstShare(ctx context.Context) (time.Time, bool) {
	s.rates.mu.Lock()
	defer s.rates.mu.Unlock()
	if !s.rates.first.IsZero() {
		return s.rates.first, true
	}
	sh, err := s.cfg.Store.Shares(ctx, 0, math.MaxUint64, 1)
	if err != nil || len(sh) == 0 {
		return time.Time{}, false
	}
	s.rates.first = sh[0].Time
	return s.rates.first, true
}

// ChainReader is the part of the node adapter (*node.Set) the network hashrate is
// measured from: block headers walked back from the tip.
type ChainReader interface {
	BestBlockHash(ctx context.Context) (chainhash.Hash, error)
	BlockHeaderVerbose(ctx context.Context, hash chainhash.Hash) (node.BlockHeader, error)
}

// Limits of the network hashrate measurement.
const (
	netRateBlocks   = 60                // blocks back from the tip the rate is measured over
	netRateHeaders  = 4 * netRateBlocks // headers kept in memory
	netRateDeadline = 3 * time.Second   // for one measurement's calls to the node
)

// rates holds what hashrates are computed from and is shared by every request.
type rates struct {
	mu      sync.Mutex
	first   time.Time                           // first accepted share in the store
	headers map[chainhash.Hash]node.BlockHeader // by hash, bounded by netRateHeaders
	tip     chainhash.Hash                      // tip of the last measurement
	span    time.Duration                       // time between its oldest and newest block
	blocks  int                                 // blocks it covered
	checked time.Time                           // when the tip was last asked for
}

// networkHashrate estimates the network's hashrate in hashes per second from the
// current difficulty and the time the last blocks really took (getnetworkhashps's
// method): on a network whose blocks do not come every 600 seconds, such as regtest,
// or after a hashrate change not yet retargeted, the 600-second assumption is far
// off. It falls back to that assumption (blocks 0) when the node cannot be asked or
// has no block after the genesis block to measure.
func (s *Server) networkHashrate(ctx context.Context, now time.Time, difficulty float64) (rate float64, blocks int) {
	perBlock := difficulty * math.Exp2(32) // expected hashes per block
	fallback := perBlock / 600
	cr, ok := s.cfg.Node.(ChainReader)
	if !ok || difficulty <= 0 {
		return fallback, 0
	}
	r := &s.rates
	r.mu.Lock()
	defer r.mu.Unlock()
	// The tip is asked for at most once a second, whatever the number of viewers.
	if now.Sub(r.checked) >= time.Second || now.Before(r.checked) {
		r.checked = now
		ctx, cancel := context.WithTimeout(ctx, netRateDeadline)
		defer cancel()
		if tip, err := cr.BestBlockHash(ctx); err == nil && tip != r.tip {
			r.measure(ctx, cr, tip)
		}
	}
	if r.blocks < 1 || r.span <= 0 {
		return fallback, 0
	}
	return perBlock * float64(r.blocks) / r.span.Seconds(), r.blocks
}

// measure walks back from tip over up to netRateBlocks blocks, fetching only the
// headers it does not hold yet (one per new block in steady state).
func (r *rates) measure(ctx context.Context, cr ChainReader, tip chainhash.Hash) {
	if r.headers == nil {
		r.headers = map[chainhash.Hash]node.BlockHeader{}
	}
	var newest, oldest node.BlockHeader
	n := 0
	h := tip
	for n <= netRateBlocks {
		hd, ok := r.headers[h]
		if !ok {
			var err error
			if hd, err = cr.BlockHeaderVerbose(ctx, h); err != nil {
				return // keep the last measurement
			}
			if len(r.headers) >= netRateHeaders {
				clear(r.headers)
			}
			r.headers[h] = hd
		}
		if n == 0 {
			newest = hd
		}
		// The genesis block's time is the network's birth, not a block interval.
		if hd.Height == 0 && n > 0 {
			break
		}
		oldest = hd
		if hd.Height == 0 || hd.PrevHash == (chainhash.Hash{}) {
			break
		}
		n++
		h = hd.PrevHash
	}
	r.tip = tip
	r.blocks = int(newest.Height - oldest.Height)
	r.span = time.Duration(newest.Time-oldest.Time) * time.Second
}
