package pool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
)

// Limits of a found block's submission.
const (
	// submitTimeout bounds one attempt at every node.
	submitTimeout = 60 * time.Second
	// checkTimeout bounds asking the nodes where a submitted block landed.
	checkTimeout = 15 * time.Second
	// submitRetryMin and submitRetryMax bound the wait between attempts while no node
	// takes a block; the wait doubles after each attempt.
	submitRetryMin = 250 * time.Millisecond
	submitRetryMax = 10 * time.Second
	// maxSubmitRetry is how long a block that no node took is retried before it is
	// given up as stale: by then the network has found about six blocks, and a block
	// on a parent that old would lose every race.
	maxSubmitRetry = time.Hour
)

// outcome is the fate of one submission attempt.
type outcome uint8

const (
	pending    outcome = iota // no node took the block: try again
	accepted                  // a node took it
	rejected                  // a node refused it with a reason
	superseded                // a heavier chain holds another block at its height
)

// submitBlock sends a solved block to the nodes and records its fate. seqc delivers
// the finding share's sequence number once it is recorded (0 if it could not be).
//
// A block no node takes (every node unreachable, or answering that it is not ready) is
// not given up: it is recorded as submitted with the reason, logged as an error, and
// sent again to every node with backoff until a node accepts or rejects it, a heavier
// chain holds another block at its height, maxSubmitRetry passes, or the pool shuts
// down.
func (p *Pool) submitBlock(b *solved, sh hashgrid.Share, seqc <-chan uint64) {
	defer p.bg.Done()
	start := p.cfg.Now()
	rec := hashgrid.Block{
		Hash:        b.hash,
		Height:      b.w.height,
		PrevHash:    b.w.prev,
		Time:        sh.Time,
		Address:     sh.Address,
		Worker:      sh.Worker,
		Reward:      b.w.reward,
		Fees:        b.w.tmpl.TotalFees(),
		NetworkDiff: b.w.netTgt.Difficulty(),
		Status:      hashgrid.BlockSubmitted,
	}
	hash := chainhash.Hash(rec.Hash).String()
	blk, err := b.w.block(&b.hdr, b.cb)
	out, why := rejected, ""
	if err != nil {
		why = err.Error()
	}
	wait := submitRetryMin
	for try := 1; err == nil; try++ {
		out, why = p.trySubmit(blk, b.hash, rec.Height)
		if try == 1 {
			rec.ShareSeq = <-seqc
		}
		if out != pending {
			break
		}
		rec.Reason = "no node has taken the block yet: " + why
		p.log.Error("found block not taken by any node; retrying", "height", rec.Height, "hash", hash, "attempt", try, "retry_in", wait, "err", why)
		if try == 1 {
			// Kept as submitted with the reason, for the API and the alerts.
			if perr := p.blocks.PutBlock(context.Background(), rec); perr != nil {
				p.log.Error("record block", "err", perr, "hash", hash)
			}
		}
		if p.cfg.Now().Sub(start) >= maxSubmitRetry {
			out, why = superseded, fmt.Sprintf("stale: no node took the block within %s (%s)", maxSubmitRetry, why)
			break
		}
		select {
		case <-p.retryStop:
			rec.Reason = "the pool stopped before a node took the block: " + why
			p.log.Error("found block never submitted", "height", rec.Height, "hash", hash, "err", why)
			p.recordBlock(rec)
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, submitRetryMax)
	}
	if rec.ShareSeq == 0 && err != nil {
		rec.ShareSeq = <-seqc
	}
	switch out {
	case accepted:
		rec.Status, rec.Reason = hashgrid.BlockAccepted, ""
		p.log.Info("block found", "height", rec.Height, "hash", hash, "finder", sh.Address+"."+sh.Worker, "reward", rec.Reward, "submit", p.cfg.Now().Sub(start))
		p.mu.Lock()
		p.stats.BlocksFound++
		p.mu.Unlock()
	case superseded:
		// Never on the chain: an orphan with its reason (alerts tell it apart from a
		// block that left the chain).
		rec.Status, rec.Reason = hashgrid.BlockOrphaned, why
		p.log.Warn("found block superseded", "height", rec.Height, "hash", hash, "why", why)
	default:
		rec.Status, rec.Reason = hashgrid.BlockRejected, why
		p.log.Error("block rejected", "height", rec.Height, "hash", hash, "err", why)
	}
	p.m.block(rec.Status)
	p.recordBlock(rec)
	if rec.Status == hashgrid.BlockAccepted && p.cfg.OnBlock != nil {
		p.cfg.OnBlock()
	}
}

func (p *Pool) recordBlock(rec hashgrid.Block) {
	if err := p.blocks.PutBlock(context.Background(), rec); err != nil {
		p.log.Error("record block", "err", err, "hash", chainhash.Hash(rec.Hash).String())
	}
}

// stopRetries ends the retries of found blocks (at shutdown); it may be called twice.
func (p *Pool) stopRetries() { p.retryOnce.Do(func() { close(p.retryStop) }) }

// trySubmit sends the block to every node once and says what became of it.
func (p *Pool) trySubmit(blk *wire.MsgBlock, hash chainhash.Hash, height int64) (outcome, string) {
	ctx, cancel := context.WithTimeout(context.Background(), submitTimeout)
	err := p.node.SubmitBlock(ctx, blk)
	cancel()
	var rej *node.RejectedError
	switch {
	case err == nil:
	case errors.As(err, &rej) && rej.Reason == "inconclusive":
		// Bitcoin Core kept the block but did not connect it (a side chain): where
		// it stands is the chain's to say, below.
	case errors.As(err, &rej):
		return rejected, err.Error()
	default:
		// No node took it. If a heavier chain already holds its height, stop.
		if j, ok := p.where(hash, height); ok && j.verdict == offChain {
			return superseded, "superseded: " + j.why
		}
		return pending, err.Error()
	}
	// A node may take a block whose parent it does not know (btcd keeps it as an
	// orphan and answers null): only a block some node has is taken.
	j, ok := p.where(hash, height)
	switch {
	case !ok:
		// The nodes took it but do not answer where it stands: the tracker will.
		return accepted, ""
	case j.verdict == offChain:
		return superseded, "superseded: " + j.why
	case j.verdict == onChain:
		return accepted, ""
	case j.known && j.atHeight != (chainhash.Hash{}) && j.atHeight != hash:
		// The node has both blocks and keeps the one it saw first: this one lost
		// the race at its height.
		return superseded, fmt.Sprintf("superseded: the nodes hold block %s at height %d", j.atHeight, height)
	case j.known:
		return accepted, ""
	}
	return pending, "taken but on no node's chain (its parent is unknown to the nodes)"
}

// placement is a judgement plus whether any node has the block at all, and the block
// the heaviest answering node holds at its height.
type placement struct {
	judgement
	known    bool
	atHeight chainhash.Hash
}

// where asks the nodes where the block stands; ok is false when the pool's node
// cannot say (no ChainReader, or no node answered).
func (p *Pool) where(hash chainhash.Hash, height int64) (placement, bool) {
	cr, ok := p.node.(ChainReader)
	if !ok {
		return placement{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	views, err := cr.BlockViews(ctx, hash, height)
	cancel()
	if err != nil {
		p.log.Warn("check submitted block", "hash", hash.String(), "err", err)
		return placement{}, false
	}
	pl := placement{judgement: judge(hash, height, views, DefaultOrphanDepth)}
	top := int64(-1)
	for _, v := range views {
		pl.known = pl.known || v.Known
		if v.Tip > top {
			top, pl.atHeight = v.Tip, v.AtHeight
		}
	}
	return pl, true
}
