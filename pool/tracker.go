package pool

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
)

// ChainReader is what the block tracker asks the nodes: each answering node's view of a
// block found at a height (node.Set.BlockViews).
type ChainReader interface {
	BlockViews(ctx context.Context, hash chainhash.Hash, height int64) ([]node.BlockView, error)
}

// DefaultOrphanDepth is how many blocks a node's main chain must hold from the found
// block's height up, with another block at that height, before the found block is
// called orphaned: six, the depth at which a payment is customarily taken as final.
const DefaultOrphanDepth = 6

// BlockStore is where the tracker reads and updates found blocks.
type BlockStore interface {
	Blocks(ctx context.Context, limit int) ([]hashgrid.Block, error)
	PutBlock(ctx context.Context, b hashgrid.Block) error
}

// Tracker follows found blocks to maturity (CoinbaseMaturity confirmations) or to
// orphaning, judging each block by the node with the highest tip among those that
// answer. A block is orphaned only by a node that has seen a heavier chain without it:
// its main chain holds another block at the block's height, with OrphanDepth blocks
// from there up. A node that does not know the block and whose chain does not reach
// that far (a node that lags, one that fail-over just switched to) says nothing, and
// the block keeps its status. An orphan that returns to the main chain in a reorg is
// accepted again.
type Tracker struct {
	Chain    ChainReader
	Store    BlockStore
	Interval time.Duration // default 10s
	// OrphanDepth is DefaultOrphanDepth when 0.
	OrphanDepth int64
	Logger      *slog.Logger
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
		views, err := t.Chain.BlockViews(ctx, b.Hash, b.Height)
		if err != nil {
			return err
		}
		old, oldConf := b.Status, b.Confirmations
		v := judge(b.Hash, b.Height, views, t.depth())
		switch {
		case v.verdict == noVerdict:
			continue
		case v.verdict == offChain:
			b.Status, b.Confirmations = hashgrid.BlockOrphaned, 0
		case v.confirmations >= hashgrid.CoinbaseMaturity:
			b.Status, b.Confirmations, b.Reason = hashgrid.BlockConfirmed, v.confirmations, ""
		default:
			// On the chain: a reason it was once given for being off it no longer holds.
			b.Status, b.Confirmations, b.Reason = hashgrid.BlockAccepted, v.confirmations, ""
		}
		if b.Status == old && b.Confirmations == oldConf {
			continue
		}
		if err := t.Store.PutBlock(ctx, b); err != nil {
			return err
		}
		if b.Status != old {
			t.log().Info("block status", "height", b.Height, "hash", chainhash.Hash(b.Hash).String(), "from", old.String(), "to", b.Status.String(), "why", v.why)
			if t.OnChange != nil {
				t.OnChange(b, old)
			}
		}
	}
	return nil
}

func (t *Tracker) depth() int64 {
	if t.OrphanDepth > 0 {
		return t.OrphanDepth
	}
	return DefaultOrphanDepth
}

type verdict uint8

const (
	noVerdict verdict = iota // no answering node can tell: the block keeps its status
	onChain                  // on the main chain of the heaviest answering node
	offChain                 // a heavier chain without the block: orphaned or superseded
)

// judgement is what the nodes' views say about a found block.
type judgement struct {
	verdict       verdict
	confirmations int64  // when onChain
	why           string // for the log and, when offChain, the block's reason
}

// judge reads the views of the answering nodes about the block hash found at height.
// The node with the highest tip speaks (on a tie, one that has the block on its main
// chain): the block is on the chain if that node has it there, off the chain if that
// node's main chain holds another block at its height under at least depth blocks, and
// otherwise nobody can tell yet. A node that never saw the block and lags behind it, as
// a node just failed over to may, can never orphan a block.
func judge(hash [32]byte, height int64, views []node.BlockView, depth int64) judgement {
	if len(views) == 0 {
		return judgement{}
	}
	best := views[0]
	for _, v := range views[1:] {
		if v.Tip > best.Tip || (v.Tip == best.Tip && v.Confirmations > best.Confirmations) {
			best = v
		}
	}
	switch {
	case best.Confirmations >= 1:
		return judgement{verdict: onChain, confirmations: best.Confirmations, why: "on the main chain of " + best.Node}
	case best.AtHeight != (chainhash.Hash{}) && best.AtHeight != hash && best.Tip-height+1 >= depth:
		return judgement{verdict: offChain, why: fmt.Sprintf("node %s holds block %s at height %d, with its tip at %d", best.Node, best.AtHeight, height, best.Tip)}
	}
	why := fmt.Sprintf("node %s does not have the block on its main chain, but its tip %d is not %d blocks past height %d", best.Node, best.Tip, depth, height)
	if !best.Known && best.Tip < height {
		why = fmt.Sprintf("node %s does not know the block and its tip %d is below its height %d", best.Node, best.Tip, height)
	}
	return judgement{why: why}
}
