package payout

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/hashgrid/hashgrid"
)

// loadChunk is how many sequence numbers one store read covers when the window is
// rebuilt at start-up.
const loadChunk = 50_000

func shareOf(sh *hashgrid.Share) WindowShare {
	return WindowShare{Seq: sh.Seq, Address: sh.Address, Diff: sh.Diff, Weight: sh.Diff, Hash: sh.Hash}
}

// runWindow keeps the PPLNS window: it waits for the first template (the window's size
// depends on the network target), rebuilds the window from the store, then follows the
// store's accepted shares and cuts and commits a new window at most every
// SnapshotInterval. It reads the store, not the share stream, because the stream is
// pruned behind the store; the store's retention keeps what the window holds (see
// RetainFrom).
func (s *Service) runWindow(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.bitsSet:
	}
	size, err := WindowSize(s.cfg.Window, s.bits.Load())
	if err != nil {
		return err
	}
	last, err := s.store.LastSeq(ctx)
	if err != nil {
		return err
	}
	if err := s.loadWindow(ctx, last, size); err != nil {
		return err
	}
	t := time.NewTicker(s.cfg.SnapshotInterval)
	defer t.Stop()
	for {
		if err := s.follow(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("payout: follow shares", "err", err)
		}
		if err := s.cut(ctx, false); err != nil && ctx.Err() == nil {
			s.log.Error("payout: cut window", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// followBatch bounds one read of new shares.
const followBatch = 10_000

// follow adds the shares stored since the last one in the window.
func (s *Service) follow(ctx context.Context) error {
	for {
		s.mu.Lock()
		after := s.live.last()
		s.mu.Unlock()
		sh, err := s.store.Shares(ctx, after, math.MaxInt64, followBatch)
		if err != nil {
			return err
		}
		s.mu.Lock()
		for i := range sh {
			if sh[i].Seq > s.live.last() {
				s.live.add(shareOf(&sh[i]))
				s.dirty = true
			}
		}
		s.mu.Unlock()
		if len(sh) < followBatch {
			return nil
		}
	}
}

// loadWindow reads the newest accepted shares with Seq ≤ upto from the store, back
// until their work reaches twice the window's size or the store has no older share.
func (s *Service) loadWindow(ctx context.Context, upto uint64, size hashgrid.Work) error {
	retain := size.Plus(size)
	var pages [][]hashgrid.Share
	var acc hashgrid.Work
	hi := upto
	for hi > 0 && workLess(acc, retain) {
		lo := uint64(0)
		if hi > loadChunk {
			lo = hi - loadChunk
		}
		sh, err := s.store.Shares(ctx, lo, hi, loadChunk)
		if err != nil {
			return fmt.Errorf("payout: load window: %w", err)
		}
		for i := range sh {
			acc = acc.Add(sh[i].Diff)
		}
		pages = append(pages, sh)
		hi = lo
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live.setSize(size)
	for i := len(pages) - 1; i >= 0; i-- {
		for j := range pages[i] {
			s.live.add(shareOf(&pages[i][j]))
		}
	}
	s.dirty, s.loaded = true, true
	return nil
}

// cut cuts the window and, once its parameters are durable, makes it the one the next
// coinbase commits to. The live window keeps what a cut needs as shares arrive, so a
// cut costs the same whatever the window's size (see the package doc).
func (s *Service) cut(ctx context.Context, force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	bits := s.bits.Load()
	if !force && !s.dirty && bits == s.cutBits {
		return nil
	}
	p, weights, err := s.live.window(s.cfg.Window, bits, s.cfg.Split)
	if err != nil {
		return err
	}
	if s.live.len() == 0 {
		return nil
	}
	now := s.cfg.Now()
	if err := s.db.putWindow(ctx, p, now.UnixNano()); err != nil {
		return err
	}
	s.cur.Store(&committed{params: p, commitment: p.Commitment(), weights: weights})
	s.dirty, s.cutBits, s.lastCut = false, bits, now
	return nil
}
