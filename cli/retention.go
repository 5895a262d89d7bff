package cli

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/postgres"
	"github.com/hashgrid/hashgrid/sqlite"
)

// defaultShareRetention is how long the pool keeps raw shares by default: long enough
// for a miner to verify a block's credit after it matures (a block window's shares are
// kept anyway until the block is final), short enough that the store's size follows
// the pool's rate of shares rather than its age.
const defaultShareRetention = 7 * 24 * time.Hour

// retentionLoop is a share store's retention, run until its context ends:
// sqlite.Retention or postgres.Retention, which prune and roll up alike (the
// contract in storetest runs against both).
type retentionLoop interface {
	Run(ctx context.Context) error
}

// retentionFor returns the retention loop of store, keeping raw shares for keep and
// from keepFrom (nil: no one needs any), or nil if store cannot prune.
func retentionFor(store hashgrid.ShareStore, keep time.Duration, keepFrom func(context.Context) (uint64, error), log *slog.Logger) retentionLoop {
	switch s := store.(type) {
	case *sqlite.DB:
		return sqlite.Retention{DB: s, Keep: keep, KeepFrom: keepFrom, Logger: log}
	case *postgres.Store:
		return postgres.Retention{Store: s, Keep: keep, KeepFrom: keepFrom, Logger: log}
	}
	return nil
}

// runRetention prunes the store's raw shares older than cfg.ShareRetention that the
// payout scheme no longer needs (payout.Service.RetainFrom), and the payout service's
// PPLNS windows as old that no block needs, until ctx ends; a retention of 0 keeps
// everything. The summaries (workers, totals, per-minute work and best
// share) are kept for ever: hashrate charts, alerts and the registry's import read
// those.
func runRetention(ctx context.Context, cfg PoolConfig, store hashgrid.ShareStore, payouts *payouts, log *slog.Logger) {
	log = log.With("component", "retention")
	if cfg.ShareRetention <= 0 {
		log.Info("share retention off: raw shares are kept for ever")
		return
	}
	var keepFrom func(context.Context) (uint64, error)
	if payouts != nil {
		keepFrom = func(ctx context.Context) (uint64, error) {
			// Each pass also drops the payout service's old PPLNS windows no block needs.
			if n, err := payouts.PruneWindows(ctx, time.Now().Add(-cfg.ShareRetention)); err != nil {
				log.Warn("prune PPLNS windows", "err", err)
			} else if n > 0 {
				log.Info("pruned PPLNS windows", "windows", n)
			}
			return payouts.RetainFrom(ctx)
		}
	}
	r := retentionFor(store, cfg.ShareRetention, keepFrom, log)
	if r == nil {
		log.Warn("share retention: this store cannot prune; raw shares are kept for ever")
		return
	}
	if err := r.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("share retention stopped", "err", err)
	}
}
