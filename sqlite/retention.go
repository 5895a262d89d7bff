package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid"
)

// walSizeLimit is the size the WAL is truncated to after a checkpoint (the
// journal_size_limit pragma).
const walSizeLimit = 64 << 20

// Pruned is how far raw shares have been pruned.
type Pruned struct {
	Seq    uint64    // every share with Seq <= Seq is pruned; 0 if none
	Time   time.Time // latest time of a pruned share; zero if none
	Shares uint64    // shares pruned, in all
	Blocks uint64    // rows of share_blocks pruned, in all
}

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (db *DB) retentionState(ctx context.Context, q queryRower) (Pruned, error) {
	var seq, t, shares, blocks int64
	if err := q.QueryRowContext(ctx, `SELECT pruned_seq, pruned_time, pruned_shares, pruned_blocks FROM retention WHERE id = 1`).
		Scan(&seq, &t, &shares, &blocks); err != nil {
		return Pruned{}, fmt.Errorf("sqlite: retention: %w", err)
	}
	p := Pruned{Seq: uint64(seq), Shares: uint64(shares), Blocks: uint64(blocks)}
	if seq > 0 {
		p.Time = loadTime(t)
	}
	return p, nil
}

// Pruned returns how far raw shares have been pruned.
func (db *DB) Pruned(ctx context.Context) (Pruned, error) { return db.retentionState(ctx, db.r) }

// PrunedSeq returns the highest pruned sequence: Shares returns nothing at or below
// it. 0 if nothing was pruned.
func (db *DB) PrunedSeq(ctx context.Context) (uint64, error) {
	p, err := db.Pruned(ctx)
	return p.Seq, err
}

// PruneResult is what one Prune call deleted.
type PruneResult struct {
	Blocks int    // rows of share_blocks deleted
	Shares int    // shares in them
	Seq    uint64 // the pruned prefix after the call (Pruned.Seq)
	More   bool   // maxBlocks were deleted: more may be prunable
}

// Prune deletes, in one transaction, up to maxBlocks of the oldest share blocks (in
// sequence order) all of whose shares were received before before and have Seq below
// keepFrom, and stops at the first block that does not qualify, so that what is
// pruned is always a prefix of the sequence. The summaries are left as they are: they
// already count every pruned share. The freed pages are reused by later writes; they
// go back to the file system by VacuumStep, in a store in incremental auto-vacuum
// mode (every store created by this version; see ConvertToIncrementalVacuum for
// older ones).
//
// One call holds the writer for as long as reading and deleting maxBlocks blocks takes
// (each at most MaxBlockShares shares and MaxBlockBytes): AddShares waits at most that.
// A crash leaves either the whole call done or nothing of it.
func (db *DB) Prune(ctx context.Context, before time.Time, keepFrom uint64, maxBlocks int) (PruneResult, error) {
	if maxBlocks <= 0 {
		return PruneResult{}, fmt.Errorf("sqlite: prune: batch of %d blocks must be positive", maxBlocks)
	}
	cut := boundTime(before)
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return PruneResult{}, fmt.Errorf("sqlite: prune: %w", err)
	}
	defer tx.Rollback()
	st, err := db.retentionState(ctx, tx)
	if err != nil {
		return PruneResult{}, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT first_seq, last_seq, max_time, count, data FROM share_blocks
		ORDER BY first_seq LIMIT ?`, maxBlocks)
	if err != nil {
		return PruneResult{}, fmt.Errorf("sqlite: prune: %w", err)
	}
	type victim struct {
		first, last, maxTime int64
		count                int
		addresses            []string
	}
	var victims []victim
	for rows.Next() {
		var v victim
		var data []byte
		if err := rows.Scan(&v.first, &v.last, &v.maxTime, &v.count, &data); err != nil {
			rows.Close()
			return PruneResult{}, fmt.Errorf("sqlite: prune: %w", err)
		}
		if v.maxTime >= cut || uint64(v.last) >= keepFrom {
			break
		}
		r, err := readBlock(data) // the pairs only: the shares are not decoded
		if err != nil {
			rows.Close()
			return PruneResult{}, fmt.Errorf("sqlite: prune: share block %d: %w", v.first, err)
		}
		seen := map[string]bool{}
		for _, k := range r.pairs {
			if !seen[k.address] {
				seen[k.address] = true
				v.addresses = append(v.addresses, k.address)
			}
		}
		victims = append(victims, v)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return PruneResult{}, fmt.Errorf("sqlite: prune: %w", err)
	}
	res := PruneResult{Seq: st.Seq}
	if len(victims) == 0 {
		return res, nil
	}
	pruneTime := int64(math.MinInt64)
	if st.Seq > 0 {
		pruneTime = st.Time.UnixNano()
	}
	for _, v := range victims {
		if _, err := tx.ExecContext(ctx, `DELETE FROM share_blocks WHERE first_seq = ?`, v.first); err != nil {
			return PruneResult{}, fmt.Errorf("sqlite: prune: share block %d: %w", v.first, err)
		}
		for _, a := range v.addresses {
			if _, err := tx.ExecContext(ctx, `DELETE FROM share_block_addresses WHERE address = ? AND first_seq = ?`, a, v.first); err != nil {
				return PruneResult{}, fmt.Errorf("sqlite: prune: share block %d: %w", v.first, err)
			}
		}
		res.Blocks++
		res.Shares += v.count
		res.Seq = max(res.Seq, uint64(v.last))
		pruneTime = max(pruneTime, v.maxTime)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE retention SET pruned_seq = ?, pruned_time = ?,
		pruned_shares = pruned_shares + ?, pruned_blocks = pruned_blocks + ? WHERE id = 1`,
		int64(res.Seq), pruneTime, res.Shares, res.Blocks); err != nil {
		return PruneResult{}, fmt.Errorf("sqlite: prune: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return PruneResult{}, fmt.Errorf("sqlite: prune: commit: %w", err)
	}
	db.pruned.Store(res.Seq)
	res.More = res.Blocks == maxBlocks
	return res, nil
}

// Auto-vacuum modes of the auto_vacuum pragma.
const (
	autoVacuumNone        = 0
	autoVacuumIncremental = 2
)

// AutoVacuum returns the store's auto_vacuum mode: 0 none, 1 full, 2 incremental.
func (db *DB) AutoVacuum(ctx context.Context) (int, error) {
	var mode int
	if err := db.w.QueryRowContext(ctx, `PRAGMA auto_vacuum`).Scan(&mode); err != nil {
		return 0, fmt.Errorf("sqlite: auto_vacuum: %w", err)
	}
	return mode, nil
}

// VacuumStep gives up to pages free pages back to the file system, if the store is in
// incremental auto-vacuum mode, and returns how many free pages remain. Each step
// holds the writer while it moves pages from the end of the file into the free ones,
// so a caller frees a large prune a step at a time. In WAL mode the file shrinks at the
// next checkpoint.
func (db *DB) VacuumStep(ctx context.Context, pages int) (int, error) {
	mode, err := db.AutoVacuum(ctx)
	if err != nil || mode != autoVacuumIncremental {
		return 0, err
	}
	if pages <= 0 {
		return 0, fmt.Errorf("sqlite: incremental vacuum of %d pages", pages)
	}
	if _, err := db.w.ExecContext(ctx, fmt.Sprintf(`PRAGMA incremental_vacuum(%d)`, pages)); err != nil {
		return 0, fmt.Errorf("sqlite: incremental vacuum: %w", err)
	}
	var free int
	if err := db.w.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil {
		return 0, fmt.Errorf("sqlite: freelist: %w", err)
	}
	return free, nil
}

// vacuumStepPages is how many pages (of 4 KiB) one step of a retention pass frees.
const vacuumStepPages = 1024

// ConvertToIncrementalVacuum switches a store created before retention existed (in
// auto_vacuum mode none, where freed pages are reused but never returned) to
// incremental mode. It is one full VACUUM: it rewrites the whole file, needs as much
// free disk again, and holds the writer until done, so AddShares waits (the share
// stream goes on acknowledging shares meanwhile). It does nothing on a store already
// incremental.
func (db *DB) ConvertToIncrementalVacuum(ctx context.Context) error {
	mode, err := db.AutoVacuum(ctx)
	if err != nil || mode == autoVacuumIncremental {
		return err
	}
	if _, err := db.w.ExecContext(ctx, `PRAGMA auto_vacuum = incremental`); err != nil {
		return fmt.Errorf("sqlite: auto_vacuum: %w", err)
	}
	if _, err := db.w.ExecContext(ctx, `VACUUM`); err != nil {
		return fmt.Errorf("sqlite: vacuum: %w", err)
	}
	return nil
}

// Checkpoint copies the WAL into the database file and truncates both: the file then
// holds exactly the pages in use, which is what a disk measurement should see.
func (db *DB) Checkpoint(ctx context.Context) error {
	if _, err := db.w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return fmt.Errorf("sqlite: checkpoint: %w", err)
	}
	return nil
}

// Summary is one worker's shares of one minute, or of one hour where the minutes
// were rolled up (see Rollup), as the store keeps them for ever.
type Summary struct {
	Start     time.Time     // start of the minute or hour
	Span      time.Duration // a minute or an hour
	Address   string
	Worker    string
	Accepted  uint64
	Rejected  uint64
	Work      hashgrid.Work // sum of accepted shares' Diff
	Best      hashgrid.Diff // highest Actual of an accepted share; 0 if none
	LastShare time.Time
}

// maxSummaries bounds the rows one Summaries call returns.
const maxSummaries = 100_000

// Summaries returns the summaries of the minutes and hours starting in [from, to), of
// one address (all if address is ""), ordered by start, address and worker, at most
// limit (at most maxSummaries). A minute and the hour holding it may both appear: a
// late share's minute not rolled up yet.
func (db *DB) Summaries(ctx context.Context, address string, from, to time.Time, limit int) ([]Summary, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	limit = min(limit, maxSummaries)
	lo, hi := boundTime(from), boundTime(to)
	var out []Summary
	for _, t := range []struct {
		q      string
		lo, hi int64
		span   time.Duration
	}{
		{`SELECT minute * 60, address, worker, accepted, rejected, work_hi, work_lo, last_share, best FROM work_minutes
			WHERE minute >= ? AND minute < ?`, minuteAtOrAfter(lo), minuteAtOrAfter(hi), time.Minute},
		{`SELECT hour * 3600, address, worker, accepted, rejected, work_hi, work_lo, last_share, best FROM work_hours
			WHERE hour >= ? AND hour < ?`, hourAtOrAfter(lo), hourAtOrAfter(hi), time.Hour},
	} {
		q, args := t.q, []any{t.lo, t.hi}
		if address != "" {
			q += ` AND address = ?`
			args = append(args, address)
		}
		rows, err := db.r.QueryContext(ctx, q+` ORDER BY 1, address, worker LIMIT ?`, append(args, limit)...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: summaries: %w", err)
		}
		for rows.Next() {
			s := Summary{Span: t.span}
			var sec, acc, rej, whi, wlo, last, best int64
			if err := rows.Scan(&sec, &s.Address, &s.Worker, &acc, &rej, &whi, &wlo, &last, &best); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: summaries: %w", err)
			}
			s.Start = time.Unix(sec, 0).UTC()
			s.Accepted, s.Rejected = uint64(acc), uint64(rej)
			s.Work = hashgrid.Work{Hi: uint64(whi), Lo: uint64(wlo)}
			s.Best = hashgrid.Diff(best)
			s.LastShare = loadTime(last)
			out = append(out, s)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, fmt.Errorf("sqlite: summaries: %w", err)
		}
	}
	slices.SortFunc(out, func(a, b Summary) int {
		return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.Span, b.Span), strings.Compare(a.Address, b.Address),
			strings.Compare(a.Worker, b.Worker))
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// fillBest is migration 4's step: it sets the best column of work_minutes from the
// shares of every stored block, a few blocks a query and at most fillFlush minutes in
// memory, like fillWorkMinutes.
func fillBest(ctx context.Context, tx *sql.Tx) error {
	best := map[minuteKey]hashgrid.Diff{}
	flush := func() error {
		for k, b := range best {
			var old int64
			err := tx.QueryRowContext(ctx, `SELECT best FROM work_minutes WHERE minute = ? AND address = ? AND worker = ?`,
				k.minute, k.address, k.name).Scan(&old)
			if err != nil {
				return fmt.Errorf("fill best: minute %d of %s.%s: %w", k.minute, k.address, k.name, err)
			}
			if b <= hashgrid.Diff(old) {
				continue
			}
			if _, err := tx.ExecContext(ctx, `UPDATE work_minutes SET best = ? WHERE minute = ? AND address = ? AND worker = ?`,
				int64(b), k.minute, k.address, k.name); err != nil {
				return fmt.Errorf("fill best: %w", err)
			}
		}
		clear(best)
		return nil
	}
	after := int64(0)
	for {
		rows, err := tx.QueryContext(ctx, `SELECT first_seq, data FROM share_blocks WHERE first_seq > ? ORDER BY first_seq LIMIT ?`,
			after, fillWorkBlocks)
		if err != nil {
			return fmt.Errorf("fill best after %d: %w", after, err)
		}
		n := 0
		for rows.Next() {
			var data []byte
			if err := rows.Scan(&after, &data); err != nil {
				rows.Close()
				return fmt.Errorf("fill best: %w", err)
			}
			n++
			if err := eachSummary(data, func(k workerKey, s shareSummary) {
				if s.result != hashgrid.ShareAccepted {
					return
				}
				mk := minuteKey{minuteOf(s.time), k.address, k.name}
				best[mk] = max(best[mk], s.actual)
			}); err != nil {
				rows.Close()
				return fmt.Errorf("share block %d: %w", after, err)
			}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("fill best after %d: %w", after, err)
		}
		if len(best) >= fillFlush || n == 0 {
			if err := flush(); err != nil {
				return err
			}
		}
		if n == 0 {
			return nil
		}
	}
}

// Retention prunes raw shares periodically: those received more than Keep ago that no
// one still needs (KeepFrom), in transactions of Batch blocks with Pause between them,
// so that AddShares never waits for more than one batch.
type Retention struct {
	DB *DB
	// Keep is how long raw shares are kept at least (the pool's share_retention).
	Keep time.Duration
	// KeepFrom returns the lowest Seq some consumer still needs the raw share of (the
	// payout service: the PPLNS window, the windows of blocks not yet final, the shares
	// PPS has not credited); math.MaxUint64 if none. nil means none. An error skips the
	// pass: nothing is pruned while the need is unknown.
	KeepFrom func(ctx context.Context) (uint64, error)
	// Interval is the time between passes; default DefaultRetentionInterval.
	Interval time.Duration
	// Batch is the most blocks one transaction deletes; default DefaultRetentionBatch.
	Batch int
	// Pause is the time between two transactions of a pass; default
	// DefaultRetentionPause.
	Pause time.Duration
	// MinuteSummaries is how long summaries are kept by the minute at least, whatever
	// Keep: hashrate charts ask for whole minutes of the last day. Older ones whose
	// shares are pruned are rolled up into hours. Default DefaultMinuteSummaries.
	MinuteSummaries time.Duration
	Now             func() time.Time
	Logger          *slog.Logger
}

// Defaults of Retention.
const (
	DefaultRetentionInterval = 10 * time.Minute
	DefaultRetentionBatch    = 16
	DefaultRetentionPause    = 20 * time.Millisecond
	DefaultMinuteSummaries   = 48 * time.Hour
)

// PassResult is what one retention pass did.
type PassResult struct {
	Blocks    int    // share blocks pruned
	Shares    int    // shares in them
	Seq       uint64 // the pruned prefix after the pass
	KeepFrom  uint64 // what KeepFrom answered
	Rolled    int    // rows of work_minutes rolled up into work_hours
	Converted bool   // the store was switched to incremental vacuum
}

// rollupBatch is the most rows of work_minutes one Rollup transaction of a pass folds.
const rollupBatch = 4096

func (r *Retention) defaults() {
	if r.Interval <= 0 {
		r.Interval = DefaultRetentionInterval
	}
	if r.Batch <= 0 {
		r.Batch = DefaultRetentionBatch
	}
	if r.Pause <= 0 {
		r.Pause = DefaultRetentionPause
	}
	if r.MinuteSummaries <= 0 {
		r.MinuteSummaries = DefaultMinuteSummaries
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
}

// Run runs a pass every Interval until ctx ends.
func (r Retention) Run(ctx context.Context) error {
	r.defaults()
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		res, err := r.Pass(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			r.Logger.Warn("share retention", "err", err)
		case res.Blocks > 0:
			r.Logger.Info("share retention: pruned", "shares", res.Shares, "blocks", res.Blocks, "through_seq", res.Seq,
				"keep", r.Keep, "keep_from_seq", res.KeepFrom)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Pass prunes what it may now, batch by batch, rolls the minutes of the hours whose
// shares are pruned (and older than MinuteSummaries) up into hours, gives the freed
// pages back a step at a time, then checkpoints the WAL so that the file shrinks. A
// store in auto_vacuum mode none is converted once, after the first pass that pruned
// something.
func (r Retention) Pass(ctx context.Context) (PassResult, error) {
	r.defaults()
	if r.Keep < 0 {
		return PassResult{}, fmt.Errorf("sqlite: retention: negative keep %v", r.Keep)
	}
	res := PassResult{KeepFrom: math.MaxUint64}
	if r.KeepFrom != nil {
		k, err := r.KeepFrom(ctx)
		if err != nil {
			return res, fmt.Errorf("sqlite: retention: what is still needed: %w", err)
		}
		res.KeepFrom = k
	}
	before := r.Now().Add(-r.Keep)
	for {
		pr, err := r.DB.Prune(ctx, before, res.KeepFrom, r.Batch)
		res.Blocks += pr.Blocks
		res.Shares += pr.Shares
		res.Seq = max(res.Seq, pr.Seq)
		if err != nil {
			return res, err
		}
		if !pr.More {
			break
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(r.Pause):
		}
	}
	// The summaries of the hours whose shares are pruned, and older than
	// MinuteSummaries, are kept by the hour.
	p, err := r.DB.Pruned(ctx)
	if err != nil {
		return res, err
	}
	if p.Seq > 0 {
		rollBefore := p.Time
		if t := r.Now().Add(-r.MinuteSummaries); t.Before(rollBefore) {
			rollBefore = t
		}
		for {
			rr, err := r.DB.Rollup(ctx, rollBefore, rollupBatch)
			res.Rolled += rr.Rows
			if err != nil {
				return res, err
			}
			if !rr.More {
				break
			}
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(r.Pause):
			}
		}
	}
	if res.Blocks == 0 && res.Rolled == 0 {
		return res, nil
	}
	if mode, err := r.DB.AutoVacuum(ctx); err != nil {
		return res, err
	} else if mode == autoVacuumNone {
		r.Logger.Info("share retention: switching the store to incremental vacuum (one full VACUUM)")
		if err := r.DB.ConvertToIncrementalVacuum(ctx); err != nil {
			return res, err
		}
		res.Converted = true
	}
	for {
		free, err := r.DB.VacuumStep(ctx, vacuumStepPages)
		if err != nil {
			return res, err
		}
		if free == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(r.Pause):
		}
	}
	return res, r.DB.Checkpoint(ctx)
}
