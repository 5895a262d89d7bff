package payout

import (
	"context"
	"fmt"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/stream"
)

// loadChunk is how many sequence numbers one store read covers when the window is
// rebuilt at start-up.
const loadChunk = 50_000

func shareOf(sh *hashgrid.Share) WindowShare {
	return WindowShare{Seq: sh.Seq, Address: sh.Address, Diff: sh.Diff, Weight: sh.Diff, Hash: sh.Hash}
}

// runWindow keeps the PPLNS window: it waits for the first template (the window's size
// depends on the network target), rebuilds the window from the store, then follows the
// share stream and cuts and commits a new window at most every SnapshotInterval.
func (s *Service) runWindow(ctx context.Context, log stream.Stream, after uint64) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.bitsSet:
	}
	size, err := WindowSize(s.cfg.Window, s.bits.Load())
	if err != nil {
		return err
	}
	if err := s.loadWindow(ctx, after, size.Plus(size)); err != nil {
		return err
	}
	if err := s.cut(ctx, true); err != nil {
		s.log.Error("payout: cut window", "err", err)
	}
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		t := time.NewTicker(s.cfg.SnapshotInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := s.cut(ctx, false); err != nil && ctx.Err() == nil {
					s.log.Error("payout: cut window", "err", err)
				}
			}
		}
	}()
	return stream.Tailer{Logger: s.log}.Run(ctx, log, after, func(recs []stream.Record) error {
		s.mu.Lock()
		for _, r := range recs {
			var sh hashgrid.Share
			if err := sh.UnmarshalBinary(r.Data); err != nil {
				s.mu.Unlock()
				return stream.Permanent(fmt.Errorf("record %d: %w", r.Seq, err))
			}
			sh.Seq = r.Seq
			if sh.Result == hashgrid.ShareAccepted && r.Seq > s.live.last() {
				s.live.add(shareOf(&sh))
				s.dirty = true
			}
		}
		due := s.cfg.Now().Sub(s.lastCut) >= s.cfg.SnapshotInterval
		s.mu.Unlock()
		if due {
			return s.cut(ctx, false)
		}
		return nil
	})
}

// loadWindow reads the newest accepted shares with Seq ≤ upto from the store, back
// until their work reaches retain or the store has no older share.
func (s *Service) loadWindow(ctx context.Context, upto uint64, retain hashgrid.Work) error {
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
	s.live.setRetain(retain)
	for i := len(pages) - 1; i >= 0; i-- {
		for j := range pages[i] {
			s.live.add(shareOf(&pages[i][j]))
		}
	}
	s.dirty = true
	return nil
}

// cut cuts the window and, once its parameters are durable, makes it the one the next
// coinbase commits to.
func (s *Service) cut(ctx context.Context, force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	bits := s.bits.Load()
	if !force && !s.dirty && bits == s.cutBits {
		return nil
	}
	size, err := WindowSize(s.cfg.Window, bits)
	if err != nil {
		return err
	}
	s.live.setRetain(size.Plus(size))
	if s.live.len() == 0 {
		return nil
	}
	w, err := s.live.window(s.cfg.Window, bits, s.cfg.Split)
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	if err := s.db.putWindow(ctx, w.Params, now.UnixNano()); err != nil {
		return err
	}
	s.cur.Store(&committed{params: w.Params, commitment: w.Params.Commitment(), weights: w.Weights()})
	s.dirty, s.cutBits, s.lastCut = false, bits, now
	return nil
}
