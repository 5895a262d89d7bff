package payout

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
)

// RetainFrom returns the lowest share sequence whose raw share the service may still
// read; math.MaxUint64 if it needs none. The share store's retention prunes only below
// it (see sqlite.Retention, postgres.Retention). What the schemes read:
//
//   - PPLNS: the live window (the newest shares, twice the window's work), and the
//     window each found block's coinbase commits to, until the block is final: its
//     credit, and the credit again after a reorg, recut the window from the store,
//     and verify pages through it. A block is final once rejected, orphaned, or
//     confirmed with its maturity booked.
//   - PPS, FPPS: every share after the consumer's cursor, not credited yet.
//   - SOLO: nothing; a block's finder is in the block.
//
// Before the PPLNS window has been rebuilt at start-up, or the PPS cursor saved, it
// answers 0: everything. It fails, and nothing is to be pruned, while a block that
// is not final cannot be fetched from the chain to read its commitment.
func (s *Service) RetainFrom(ctx context.Context) (uint64, error) {
	keep := uint64(math.MaxUint64)
	switch s.cfg.Scheme {
	case PPS, FPPS:
		cursor, started, err := s.db.ppsCursor(ctx)
		if err != nil {
			return 0, fmt.Errorf("payout: retain: %w", err)
		}
		if !started {
			return 0, nil
		}
		return min(keep, cursor+1), nil
	case PPLNS:
	default:
		return keep, nil
	}
	s.mu.Lock()
	loaded, first := s.loaded, s.live.first()
	s.mu.Unlock()
	if !loaded {
		return 0, nil
	}
	keep = min(keep, first)
	blocks, err := s.store.Blocks(ctx, reconcileLimit)
	if err != nil {
		return 0, fmt.Errorf("payout: retain: %w", err)
	}
	for _, b := range blocks {
		final, err := s.final(ctx, b)
		if err != nil {
			return 0, fmt.Errorf("payout: retain: block %s: %w", chainhash.Hash(b.Hash), err)
		}
		if final {
			continue
		}
		start, err := s.windowStart(ctx, chainhash.Hash(b.Hash))
		if err != nil {
			return 0, fmt.Errorf("payout: retain: block %s: %w", chainhash.Hash(b.Hash), err)
		}
		keep = min(keep, start)
	}
	return keep, nil
}

// final reports whether the ledger is done with a block: it will not read the block's
// window again. An orphaned block is final: were it to return to the best chain after
// its window's shares were pruned, its new credit fails (and says why) rather than
// paying a wrong split.
func (s *Service) final(ctx context.Context, b hashgrid.Block) (bool, error) {
	switch b.Status {
	case hashgrid.BlockRejected, hashgrid.BlockOrphaned:
		return true, nil
	case hashgrid.BlockConfirmed:
		k, active, err := s.epoch(ctx, chainhash.Hash(b.Hash))
		if err != nil || k == 0 || !active {
			return false, err
		}
		_, matured, err := s.has(ctx, blockKey(chainhash.Hash(b.Hash), k, "mature"))
		return matured, err
	}
	return false, nil
}

// blockWindowRef is what a found block's coinbase commits to.
type blockWindowRef struct {
	commitment Hash32
	has        bool   // the coinbase carries a commitment
	start      uint64 // first Seq of the window; math.MaxUint64 if none is needed
}

// windowStart returns the first Seq of the window a found block's coinbase commits
// to, math.MaxUint64 if it commits to none this service knows (no share had been seen,
// or not this pool's window) or to an empty one.
func (s *Service) windowStart(ctx context.Context, h chainhash.Hash) (uint64, error) {
	ref, err := s.windowRef(ctx, h)
	return ref.start, err
}

// windowRef reads a found block's commitment from the chain. The answer never
// changes, so it is kept.
func (s *Service) windowRef(ctx context.Context, h chainhash.Hash) (blockWindowRef, error) {
	s.startMu.Lock()
	ref, ok := s.starts[h]
	s.startMu.Unlock()
	if ok {
		return ref, nil
	}
	blk, err := s.chain.Block(ctx, h)
	if err != nil {
		return ref, fmt.Errorf("fetch block: %w", err)
	}
	if len(blk.Transactions) == 0 {
		return ref, fmt.Errorf("block without coinbase")
	}
	var scripts [][]byte
	for _, o := range blk.Transactions[0].TxOut {
		scripts = append(scripts, o.PkScript)
	}
	ref.start = math.MaxUint64
	if ref.commitment, ref.has = FindCommitment(scripts); ref.has {
		p, err := s.db.window(ctx, ref.commitment)
		switch {
		case hashgrid.ErrorCode(err) == hashgrid.ENOTFOUND:
		case err != nil:
			return ref, err
		case p.Count > 0:
			ref.start = p.Start
		}
	}
	s.startMu.Lock()
	if len(s.starts) >= reconcileLimit*2 {
		clear(s.starts)
	}
	s.starts[h] = ref
	s.startMu.Unlock()
	return ref, nil
}

// pruneWindowsBatch bounds the windows one statement of PruneWindows deletes.
const pruneWindowsBatch = 1000

// PruneWindows deletes the parameters of PPLNS windows cut before before that no
// block can need: the pool cuts a window every SnapshotInterval while shares arrive,
// and keeps one row per cut, but only the windows found blocks commit to are ever read
// again. Kept are the windows of credited blocks (verify publishes them), those the
// coinbase of every block not yet final commits to, and every window cut since
// before. Like RetainFrom it fails, deleting nothing, while a block that is not final
// cannot be fetched from the chain. It returns how many windows it deleted.
func (s *Service) PruneWindows(ctx context.Context, before time.Time) (int, error) {
	if s.cfg.Scheme != PPLNS {
		return 0, nil
	}
	blocks, err := s.store.Blocks(ctx, reconcileLimit)
	if err != nil {
		return 0, fmt.Errorf("payout: prune windows: %w", err)
	}
	var keep []Hash32
	for _, b := range blocks {
		final, err := s.final(ctx, b)
		if err != nil {
			return 0, fmt.Errorf("payout: prune windows: block %s: %w", chainhash.Hash(b.Hash), err)
		}
		if final {
			continue
		}
		ref, err := s.windowRef(ctx, chainhash.Hash(b.Hash))
		if err != nil {
			return 0, fmt.Errorf("payout: prune windows: block %s: %w", chainhash.Hash(b.Hash), err)
		}
		if ref.has {
			keep = append(keep, ref.commitment)
		}
	}
	n := 0
	for {
		d, err := s.db.st.PruneWindows(ctx, before.UnixNano(), keep, pruneWindowsBatch)
		n += d
		if err != nil {
			return n, err
		}
		if d < pruneWindowsBatch {
			return n, nil
		}
	}
}

// prunedStore is a share store that prunes raw shares (sqlite.DB, postgres.Store).
type prunedStore interface {
	// PrunedSeq returns the highest pruned sequence, 0 if none.
	PrunedSeq(ctx context.Context) (uint64, error)
}

// checkRetained fails if the store has pruned shares of window p, which then cannot
// be rebuilt or published.
func (s *Service) checkRetained(ctx context.Context, p WindowParams) error {
	ps, ok := s.store.(prunedStore)
	if !ok || p.Count == 0 {
		return nil
	}
	pruned, err := ps.PrunedSeq(ctx)
	if err != nil {
		return err
	}
	if pruned >= p.Start {
		return hashgrid.Errorf(hashgrid.ENOTFOUND, "the shares of window %s (%d to %d) are pruned: the pool keeps raw shares "+
			"for its share retention and while a block is not final", p.Commitment(), p.Start, p.End)
	}
	return nil
}
