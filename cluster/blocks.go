package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/nats-io/nats.go"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/natsstream"
	"github.com/hashgrid/hashgrid/stream"
)

// BlockSink is a front-end's pool.BlockSink: PutBlock returns once the record is in
// the block stream (acknowledged by its replicas).
type BlockSink struct {
	s *natsstream.Stream
}

// blockOpts are the block stream's options for one front-end.
func blockOpts(frontEnd string, replicas int, log *slog.Logger) natsstream.Options {
	return natsstream.Options{Stream: BlockStream, Prefix: BlockPrefix, FrontEnd: frontEnd, Replicas: replicas, Logger: log}
}

// OpenBlockSink opens the block stream for front-end frontEnd.
func OpenBlockSink(ctx context.Context, nc *nats.Conn, frontEnd string, replicas int, log *slog.Logger) (*BlockSink, error) {
	s, err := natsstream.Open(ctx, nc, blockOpts(frontEnd, replicas, log))
	if err != nil {
		return nil, err
	}
	return &BlockSink{s: s}, nil
}

// PutBlock publishes b.
func (bs *BlockSink) PutBlock(ctx context.Context, b hashgrid.Block) error {
	data, err := json.Marshal(blockRecord(b))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = bs.s.Append(ctx, data)
	return err
}

// Close closes the sink's stream.
func (bs *BlockSink) Close() error { return bs.s.Close() }

// wireBlock is a block record as published: hashgrid.Block with its hashes in the
// usual display order.
type wireBlock struct {
	Hash          string    `json:"hash"`
	Height        int64     `json:"height"`
	PrevHash      string    `json:"prev_hash"`
	Time          time.Time `json:"time"`
	Address       string    `json:"address"`
	Worker        string    `json:"worker"`
	Reward        int64     `json:"reward"`
	Fees          int64     `json:"fees"`
	NetworkDiff   float64   `json:"network_difficulty"`
	Status        uint8     `json:"status"`
	Reason        string    `json:"reason,omitempty"`
	Confirmations int64     `json:"confirmations"`
}

func blockRecord(b hashgrid.Block) wireBlock {
	return wireBlock{
		Hash: chainhash.Hash(b.Hash).String(), Height: b.Height, PrevHash: chainhash.Hash(b.PrevHash).String(),
		Time: b.Time, Address: b.Address, Worker: b.Worker, Reward: b.Reward, Fees: b.Fees,
		NetworkDiff: b.NetworkDiff, Status: uint8(b.Status), Reason: b.Reason, Confirmations: b.Confirmations,
	}
}

func (w wireBlock) block() (hashgrid.Block, error) {
	h, err := chainhash.NewHashFromStr(w.Hash)
	if err != nil {
		return hashgrid.Block{}, fmt.Errorf("hash: %w", err)
	}
	p, err := chainhash.NewHashFromStr(w.PrevHash)
	if err != nil {
		return hashgrid.Block{}, fmt.Errorf("prev_hash: %w", err)
	}
	if w.Status > uint8(hashgrid.BlockConfirmed) {
		return hashgrid.Block{}, fmt.Errorf("status %d unknown", w.Status)
	}
	return hashgrid.Block{
		Hash: *h, Height: w.Height, PrevHash: *p, Time: w.Time, Address: w.Address, Worker: w.Worker,
		Reward: w.Reward, Fees: w.Fees, NetworkDiff: w.NetworkDiff, Status: hashgrid.BlockStatus(w.Status),
		Reason: w.Reason, Confirmations: w.Confirmations,
	}, nil
}

// BlockStore is what CopyBlocks writes to: the accounting database.
type BlockStore interface {
	PutBlock(ctx context.Context, b hashgrid.Block) error
	BlockByHash(ctx context.Context, hash [32]byte) (hashgrid.Block, error)
	SharesFor(ctx context.Context, address string, limit int) ([]hashgrid.Share, error)
}

// findShareWindow is how many of the finder's newest shares are searched for the one
// that found a block.
const findShareWindow = 10_000

// CopyBlocks copies the block stream into store until ctx ends, from its start, then
// calls onChange after each block that changed. A front-end's record only ever moves a
// block out of BlockSubmitted: a block the store already holds in any later state
// (which the tracker may have moved on since) is left alone, so reading the stream
// again from its start, as every new leader does, changes nothing.
//
// A front-end numbers a block's share in its own sequence; the store numbers it in the
// shared stream's. The record's ShareSeq is therefore found in the store, by the block
// hash among the finder's shares; a block whose share is not stored yet waits for it.
func CopyBlocks(ctx context.Context, nc *nats.Conn, replicas int, store BlockStore, log *slog.Logger, onChange func(hashgrid.Block)) error {
	s, err := natsstream.Open(ctx, nc, blockOpts("accounting", replicas, log))
	if err != nil {
		return err
	}
	defer s.Close()
	var after uint64
	for {
		recs, err := s.Read(ctx, after, 256)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, stream.ErrPruned) {
				return err
			}
			log.Warn("read block stream", "err", err)
			if !sleep(ctx, time.Second) {
				return ctx.Err()
			}
			continue
		}
		for _, r := range recs {
			for {
				changed, b, err := copyBlock(ctx, store, r.Data)
				if err == nil {
					if changed && onChange != nil {
						onChange(b)
					}
					break
				}
				var perm permanent
				if errors.As(err, &perm) {
					log.Error("block record skipped", "seq", r.Seq, "err", err)
					break
				}
				log.Warn("block record not stored yet", "seq", r.Seq, "err", err)
				if !sleep(ctx, time.Second) {
					return ctx.Err()
				}
			}
			after = r.Seq
		}
		if len(recs) == 0 {
			if err := s.Wait(ctx, after); err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
}

type permanent struct{ error }

// copyBlock stores one record; changed is false when the store already had the block
// past BlockSubmitted.
func copyBlock(ctx context.Context, store BlockStore, data []byte) (changed bool, b hashgrid.Block, err error) {
	var w wireBlock
	if err := json.Unmarshal(data, &w); err != nil {
		return false, b, permanent{fmt.Errorf("decode: %w", err)}
	}
	b, err = w.block()
	if err != nil {
		return false, b, permanent{err}
	}
	old, err := store.BlockByHash(ctx, b.Hash)
	switch {
	case err == nil:
		if old.Status != hashgrid.BlockSubmitted || b.Status == hashgrid.BlockSubmitted {
			return false, b, nil
		}
	case !errors.Is(err, hashgrid.ErrNotFound):
		return false, b, err
	}
	shares, err := store.SharesFor(ctx, b.Address, findShareWindow)
	if err != nil {
		return false, b, err
	}
	for _, sh := range shares {
		if sh.Block && sh.Hash == b.Hash {
			b.ShareSeq = sh.Seq
			break
		}
	}
	if b.ShareSeq == 0 {
		if time.Since(b.Time) > time.Hour {
			return false, b, permanent{fmt.Errorf("block %s: its share is not among the finder's %d newest", w.Hash, findShareWindow)}
		}
		return false, b, fmt.Errorf("block %s: its share is not stored yet", w.Hash)
	}
	if err := store.PutBlock(ctx, b); err != nil {
		return false, b, err
	}
	return true, b, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
