package pool

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
)

// ChainReader is what the block tracker asks the node.
type ChainReader interface {
	BlockHeaderVerbose(ctx context.Context, hash chainhash.Hash) (node.BlockHeader, error)
}

// BlockStore is where the tracker reads and updates found blocks.
type BlockStore interface {
	Blocks(ctx context.Context, limit int) ([]hashgrid.Block, error)
	PutBlock(ctx context.Context, b hashgrid.Block) error
}

// Tracker follows found blocks to maturity (CoinbaseMaturity confirmations) or to
// orphaning. A block the node reports off the main chain, or does not know at all (a
// node that lost its chain), is orphaned; an orphan that returns to the main chain in a
// reorg is accepted again.
type Tracker struct {
	Chain    ChainReader
	Store    BlockStore
	Interval time.Duration // default 10s
	Logger   *slog.Logger
	// OnChange, when set, is told each status change (for alerts and payouts).
	OnChange func(b hashgrid.Block, old hashgrid.BlockStatus)
}

func (t *Tracker) log() *slog.Logger {
	if t.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return t.Logger
}

// trackLimit bounds how many recent blocks one pass looks at.
const trackLimit = 2000

// Run checks blocks every Interval until ctx ends.
func (t *Tracker) Run(ctx context.Context) error {
	if t.Interval == 0 {
		t.Interval = 10 * time.Second
	}
	tick := time.NewTicker(t.Interval)
	defer tick.Stop()
	for {
		if err := t.Check(ctx); err != nil && ctx.Err() == nil {
			t.log().Warn("block tracker", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Check makes one pass over the blocks that are not final.
func (t *Tracker) Check(ctx context.Context) error {
	blocks, err := t.Store.Blocks(ctx, trackLimit)
	if err != nil {
		return err
	}
	for _, b := range blocks {
		if b.Status != hashgrid.BlockAccepted && b.Status != hashgrid.BlockOrphaned {
			continue
		}
		h, err := t.Chain.BlockHeaderVerbose(ctx, b.Hash)
		var rpcErr *node.RPCError
		switch {
		case errors.As(err, &rpcErr):
			// The node does not know the block: it is on no chain the node follows.
			h.Confirmations = -1
		case err != nil:
			return err
		}
		old, oldConf := b.Status, b.Confirmations
		switch {
		case h.Confirmations < 0:
			b.Status, b.Confirmations = hashgrid.BlockOrphaned, 0
		case h.Confirmations >= hashgrid.CoinbaseMaturity:
			b.Status, b.Confirmations = hashgrid.BlockConfirmed, h.Confirmations
		default:
			b.Status, b.Confirmations = hashgrid.BlockAccepted, h.Confirmations
		}
		if b.Status == old && b.Confirmations == oldConf {
			continue
		}
		if err := t.Store.PutBlock(ctx, b); err != nil {
			return err
		}
		if b.Status != old {
			t.log().Info("block status", "height", b.Height, "hash", chainhash.Hash(b.Hash).String(), "from", old.String(), "to", b.Status.String())
			if t.OnChange != nil {
				t.OnChange(b, old)
			}
		}
	}
	return nil
}
