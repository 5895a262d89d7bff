package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hashgrid/hashgrid"
)

// Retention, as package sqlite keeps it: Prune deletes the oldest share blocks, a
// prefix of the sequence, and share_retention says how far; the summaries already
// count every pruned share. Rollup folds the minutes before an hour into work_hours,
// and share_retention's rolled_until (a minute, on an hour) says how far: below it
// WorkBetween answers whole hours only, from work_hours plus any row of work_minutes
// not folded yet (a late share's). Prune and Rollup hold AddShares' write lock for
// their transaction. The space of deleted rows is reused by later writes; the
// server's autovacuum reclaims it, so there is no vacuum step here.

// retentionMigration is the store's second step: the retention state and the hours.
var retentionMigration = migration{name: "retention: pruned prefix, rolled-up hours", sql: `
CREATE TABLE share_retention (
	id            INTEGER PRIMARY KEY CHECK (id = 1),
	pruned_seq    BIGINT  NOT NULL,  -- every share with Seq <= pruned_seq is pruned; 0 if none
	pruned_time   BIGINT  NOT NULL,  -- Unix nanoseconds: latest time of a pruned share; 0 if none
	pruned_shares BIGINT  NOT NULL,  -- shares pruned, in all
	pruned_blocks BIGINT  NOT NULL,  -- rows of share_blocks pruned, in all
	rolled_until  BIGINT             -- a minute on an hour: work_minutes below it are in work_hours; NULL if none
);
INSERT INTO share_retention VALUES (1, 0, 0, 0, 0, NULL);

CREATE TABLE work_hours (
	hour       BIGINT  NOT NULL,         -- floor(time / 1 hour), time in Unix nanoseconds
	address    TEXT    NOT NULL,
	worker     TEXT    NOT NULL,
	accepted   BIGINT  NOT NULL,
	rejected   BIGINT  NOT NULL,
	work       NUMERIC(40, 0) NOT NULL,
	last_share BIGINT  NOT NULL,
	best       NUMERIC(20, 0) NOT NULL,
	PRIMARY KEY (hour, address, worker)
);

-- Prune deletes a block's address rows by first_seq.
CREATE INDEX share_block_addresses_first_seq ON share_block_addresses (first_seq);
`}

// hourNanos is the span of one row of work_hours.
const hourNanos = 60 * minuteNanos

// hourOf returns the hour holding the time t (Unix nanoseconds), rounded down.
func hourOf(t int64) int64 {
	h := t / hourNanos
	if t%hourNanos < 0 {
		h--
	}
	return h
}

// hourAtOrAfter returns the first hour starting at or after t.
func hourAtOrAfter(t int64) int64 {
	h := t / hourNanos
	if t%hourNanos > 0 {
		h++
	}
	return h
}

// Pruned is how far raw shares have been pruned.
type Pruned struct {
	Seq    uint64    // every share with Seq <= Seq is pruned; 0 if none
	Time   time.Time // latest time of a pruned share; zero if none
	Shares uint64    // shares pruned, in all
	Blocks uint64    // rows of share_blocks pruned, in all
}

// retentionRow is share_retention as stored.
type retentionRow struct {
	seq, time, shares, blocks int64
	rolledUntil               *int64
}

func readRetention(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (retentionRow, error) {
	var r retentionRow
	if err := q.QueryRow(ctx, `SELECT pruned_seq, pruned_time, pruned_shares, pruned_blocks, rolled_until
		FROM share_retention WHERE id = 1`).Scan(&r.seq, &r.time, &r.shares, &r.blocks, &r.rolledUntil); err != nil {
		return r, fmt.Errorf("postgres: retention: %w", err)
	}
	return r, nil
}

// Pruned returns how far raw shares have been pruned.
func (s *Store) Pruned(ctx context.Context) (Pruned, error) {
	r, err := readRetention(ctx, s.pool)
	if err != nil {
		return Pruned{}, err
	}
	p := Pruned{Seq: uint64(r.seq), Shares: uint64(r.shares), Blocks: uint64(r.blocks)}
	if r.seq > 0 {
		p.Time = loadTime(r.time)
	}
	return p, nil
}

// PrunedSeq returns the highest pruned sequence: Shares returns nothing at or below
// it. 0 if nothing was pruned.
func (s *Store) PrunedSeq(ctx context.Context) (uint64, error) {
	p, err := s.Pruned(ctx)
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
// already count every pruned share. It holds the write lock, so AddShares waits for
// at most one call; a share replayed later at or below the pruned prefix is skipped
// like any stored one.
func (s *Store) Prune(ctx context.Context, before time.Time, keepFrom uint64, maxBlocks int) (PruneResult, error) {
	if maxBlocks <= 0 {
		return PruneResult{}, fmt.Errorf("postgres: prune: batch of %d blocks must be positive", maxBlocks)
	}
	cut := boundTime(before)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return PruneResult{}, fmt.Errorf("postgres: prune: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(writeLock)); err != nil {
		return PruneResult{}, fmt.Errorf("postgres: prune: lock: %w", err)
	}
	st, err := readRetention(ctx, tx)
	if err != nil {
		return PruneResult{}, err
	}
	rows, err := tx.Query(ctx, `SELECT first_seq, last_seq, max_time, count FROM share_blocks ORDER BY first_seq LIMIT $1`, maxBlocks)
	if err != nil {
		return PruneResult{}, fmt.Errorf("postgres: prune: %w", err)
	}
	res := PruneResult{Seq: uint64(st.seq)}
	pruneTime := int64(math.MinInt64)
	if st.seq > 0 {
		pruneTime = st.time
	}
	var victims []int64
	var first, last, maxTime int64
	var count int32
	stop := errors.New("stop")
	_, err = pgx.ForEachRow(rows, []any{&first, &last, &maxTime, &count}, func() error {
		if maxTime >= cut || uint64(last) >= keepFrom {
			return stop
		}
		victims = append(victims, first)
		res.Blocks++
		res.Shares += int(count)
		res.Seq = max(res.Seq, uint64(last))
		pruneTime = max(pruneTime, maxTime)
		return nil
	})
	if err != nil && !errors.Is(err, stop) {
		return PruneResult{}, fmt.Errorf("postgres: prune: %w", err)
	}
	if len(victims) == 0 {
		return res, nil
	}
	var b pgx.Batch
	b.Queue(`DELETE FROM share_blocks WHERE first_seq = ANY ($1)`, victims)
	b.Queue(`DELETE FROM share_block_addresses WHERE first_seq = ANY ($1)`, victims)
	b.Queue(`UPDATE share_retention SET pruned_seq = $1, pruned_time = $2,
		pruned_shares = pruned_shares + $3, pruned_blocks = pruned_blocks + $4 WHERE id = 1`,
		int64(res.Seq), pruneTime, res.Shares, res.Blocks)
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return PruneResult{}, fmt.Errorf("postgres: prune: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return PruneResult{}, fmt.Errorf("postgres: prune: commit: %w", err)
	}
	res.More = res.Blocks == maxBlocks
	return res, nil
}

// RollupResult is what one Rollup call did.
type RollupResult struct {
	Rows  int       // rows of work_minutes folded into work_hours
	Until time.Time // rolled_until after the call
	More  bool      // maxRows were folded: more may remain
}

// Rollup folds, in one transaction, up to maxRows of the oldest rows of work_minutes
// from before the hour holding before into work_hours, and raises rolled_until to that
// hour (it never lowers it). The sums are unchanged: each row leaves work_minutes in
// the statement that adds it to its hour. Call it with a time whose shares are pruned
// (Retention does), so that minute resolution is lost only where the raw shares are
// gone too.
func (s *Store) Rollup(ctx context.Context, before time.Time, maxRows int) (RollupResult, error) {
	if maxRows <= 0 {
		return RollupResult{}, fmt.Errorf("postgres: rollup: batch of %d rows must be positive", maxRows)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return RollupResult{}, fmt.Errorf("postgres: rollup: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(writeLock)); err != nil {
		return RollupResult{}, fmt.Errorf("postgres: rollup: lock: %w", err)
	}
	st, err := readRetention(ctx, tx)
	if err != nil {
		return RollupResult{}, err
	}
	until := hourOf(boundTime(before)) * 60
	if st.rolledUntil != nil {
		until = max(until, *st.rolledUntil)
	}
	if st.rolledUntil == nil || until > *st.rolledUntil {
		if _, err := tx.Exec(ctx, `UPDATE share_retention SET rolled_until = $1 WHERE id = 1`, until); err != nil {
			return RollupResult{}, fmt.Errorf("postgres: rollup: %w", err)
		}
	}
	var n int
	// The oldest rows leave work_minutes and are added to their hours in one statement.
	if err := tx.QueryRow(ctx, `WITH moved AS (
			DELETE FROM work_minutes WHERE (minute, address, worker) IN (
				SELECT minute, address, worker FROM work_minutes WHERE minute < $1
				ORDER BY minute, address, worker LIMIT $2)
			RETURNING minute, address, worker, accepted, rejected, work, last_share, best),
		folded AS (
			INSERT INTO work_hours AS h (hour, address, worker, accepted, rejected, work, last_share, best)
			SELECT floor(minute / 60.0)::BIGINT, address, worker, sum(accepted), sum(rejected), sum(work),
				max(last_share), max(best)
			FROM moved GROUP BY 1, address, worker
			ON CONFLICT (hour, address, worker) DO UPDATE SET accepted = h.accepted + excluded.accepted,
				rejected = h.rejected + excluded.rejected, work = h.work + excluded.work,
				last_share = GREATEST(h.last_share, excluded.last_share), best = GREATEST(h.best, excluded.best)
			RETURNING 1)
		SELECT count(*) FROM moved`, until, maxRows).Scan(&n); err != nil {
		return RollupResult{}, fmt.Errorf("postgres: rollup: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return RollupResult{}, fmt.Errorf("postgres: rollup: commit: %w", err)
	}
	return RollupResult{Rows: n, Until: loadTime(until * minuteNanos), More: n == maxRows}, nil
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
// one address (all if address is ""), ordered by start, span, address and worker, at
// most limit (at most maxSummaries). A minute and the hour holding it may both
// appear: a late share's minute not rolled up yet.
func (s *Store) Summaries(ctx context.Context, address string, from, to time.Time, limit int) ([]Summary, error) {
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
		{`SELECT minute, address, worker, accepted, rejected, work::text, last_share, best::text FROM work_minutes
			WHERE minute >= $1 AND minute < $2`, minuteAtOrAfter(lo), minuteAtOrAfter(hi), time.Minute},
		{`SELECT hour, address, worker, accepted, rejected, work::text, last_share, best::text FROM work_hours
			WHERE hour >= $1 AND hour < $2`, hourAtOrAfter(lo), hourAtOrAfter(hi), time.Hour},
	} {
		q, args := t.q, []any{t.lo, t.hi}
		if address != "" {
			q += ` AND address = $4`
			args = append(args, limit, address)
		} else {
			args = append(args, limit)
		}
		rows, err := s.pool.Query(ctx, q+` ORDER BY 1, address COLLATE "C", worker COLLATE "C" LIMIT $3`, args...)
		if err != nil {
			return nil, fmt.Errorf("postgres: summaries: %w", err)
		}
		var start, acc, rej, last int64
		var addr, worker, work, best string
		if _, err := pgx.ForEachRow(rows, []any{&start, &addr, &worker, &acc, &rej, &work, &last, &best}, func() error {
			sm := Summary{Span: t.span, Address: addr, Worker: worker, Accepted: uint64(acc), Rejected: uint64(rej),
				Start: loadTime(start * int64(t.span)), LastShare: loadTime(last)}
			var err error
			if sm.Work, err = parseWork(work); err != nil {
				return err
			}
			b, err := parseWork(best)
			if err != nil || b.Hi != 0 {
				return fmt.Errorf("best %q is not a 64-bit difficulty", best)
			}
			sm.Best = hashgrid.Diff(b.Lo)
			out = append(out, sm)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("postgres: summaries: %w", err)
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

// sumRolled adds to sums what lies in [lo, hi) below rolled_until, where only whole
// hours are known, and returns where the rest of the window starts: max(lo, the
// rolled_until time). A window edge inside that region that is not on an hour is
// refused (EINVALID).
func sumRolled(ctx context.Context, tx pgx.Tx, st retentionRow, lo, hi int64, sums map[workerKey]*summary) (int64, error) {
	if st.rolledUntil == nil {
		return lo, nil
	}
	boundary := *st.rolledUntil * minuteNanos // on an hour
	if lo >= boundary {
		return lo, nil
	}
	end := min(hi, boundary)
	for _, t := range []int64{lo, end} {
		if t%hourNanos != 0 && t != math.MinInt64 && t != math.MaxInt64 {
			return 0, hashgrid.Errorf(hashgrid.EINVALID, "postgres: work between: summaries before %s are kept by the hour, "+
				"and %s is not on one; start and end the window on whole hours there",
				loadTime(boundary).Format(time.RFC3339), loadTime(t).Format(time.RFC3339Nano))
		}
	}
	h0, h1 := hourAtOrAfter(lo), hourOf(end)
	if h0 < h1 {
		if err := sumHours(ctx, tx, sums, h0, h1); err != nil {
			return 0, fmt.Errorf("postgres: work between: %w", err)
		}
		// Rows of work_minutes not folded yet, or added since by a late share.
		if err := sumMinutes(ctx, tx, sums, h0*60, h1*60); err != nil {
			return 0, fmt.Errorf("postgres: work between: %w", err)
		}
	}
	return end, nil
}

// sumHours adds the rows of work_hours for the hours [from, to) to sums.
func sumHours(ctx context.Context, tx pgx.Tx, sums map[workerKey]*summary, from, to int64) error {
	rows, err := tx.Query(ctx, `SELECT address, worker, sum(accepted)::bigint, sum(rejected)::bigint, sum(work)::text, max(last_share)
		FROM work_hours WHERE hour >= $1 AND hour < $2 GROUP BY address, worker`, from, to)
	if err != nil {
		return err
	}
	return addSums(rows, sums)
}

// checkEdges fails if a part of [lo, hi) that WorkBetween reads from share blocks
// (all of it when it holds no whole minute, else the partial minutes at either end)
// starts at or before the latest pruned share: some of its shares may be gone.
func checkEdges(st retentionRow, lo, hi, first, last int64) error {
	if st.seq == 0 {
		return nil
	}
	edges := [][2]int64{{lo, hi}}
	if first < last {
		edges = [][2]int64{{lo, first * minuteNanos}, {last * minuteNanos, hi}}
	}
	for _, e := range edges {
		if e[0] < e[1] && e[0] <= st.time {
			return hashgrid.Errorf(hashgrid.EINVALID, "postgres: work between: shares up to %s are pruned, so the part of the window "+
				"from %s to %s cannot be summed; start and end it on whole minutes", loadTime(st.time).Format(time.RFC3339Nano),
				loadTime(e[0]).Format(time.RFC3339Nano), loadTime(e[1]).Format(time.RFC3339Nano))
		}
	}
	return nil
}

// Retention prunes raw shares periodically, as sqlite.Retention does: those received
// more than Keep ago that no one still needs (KeepFrom), in transactions of Batch
// blocks with Pause between them, so that AddShares never waits for more than one
// batch; then it rolls the minutes older than both the pruned shares and
// MinuteSummaries up into hours.
type Retention struct {
	Store *Store
	// Keep is how long raw shares are kept at least (the pool's share_retention).
	Keep time.Duration
	// KeepFrom returns the lowest Seq some consumer still needs the raw share of;
	// math.MaxUint64 if none. nil means none. An error skips the pass.
	KeepFrom func(ctx context.Context) (uint64, error)
	// Interval is the time between passes; default DefaultRetentionInterval.
	Interval time.Duration
	// Batch is the most blocks one transaction deletes; default DefaultRetentionBatch.
	Batch int
	// Pause is the time between two transactions of a pass; default
	// DefaultRetentionPause.
	Pause time.Duration
	// MinuteSummaries is how long summaries are kept by the minute at least, whatever
	// Keep. Default DefaultMinuteSummaries.
	MinuteSummaries time.Duration
	Now             func() time.Time
	Logger          *slog.Logger
}

// Defaults of Retention, those of sqlite.Retention.
const (
	DefaultRetentionInterval = 10 * time.Minute
	DefaultRetentionBatch    = 16
	DefaultRetentionPause    = 20 * time.Millisecond
	DefaultMinuteSummaries   = 48 * time.Hour
)

// rollupBatch is the most rows of work_minutes one Rollup transaction of a pass folds.
const rollupBatch = 4096

// PassResult is what one retention pass did.
type PassResult struct {
	Blocks   int    // share blocks pruned
	Shares   int    // shares in them
	Seq      uint64 // the pruned prefix after the pass
	KeepFrom uint64 // what KeepFrom answered
	Rolled   int    // rows of work_minutes rolled up into work_hours
}

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

// Pass prunes what it may now, batch by batch, then rolls the minutes of the hours
// whose shares are pruned (and older than MinuteSummaries) up into hours.
func (r Retention) Pass(ctx context.Context) (PassResult, error) {
	r.defaults()
	if r.Keep < 0 {
		return PassResult{}, fmt.Errorf("postgres: retention: negative keep %v", r.Keep)
	}
	res := PassResult{KeepFrom: math.MaxUint64}
	if r.KeepFrom != nil {
		k, err := r.KeepFrom(ctx)
		if err != nil {
			return res, fmt.Errorf("postgres: retention: what is still needed: %w", err)
		}
		res.KeepFrom = k
	}
	before := r.Now().Add(-r.Keep)
	for {
		pr, err := r.Store.Prune(ctx, before, res.KeepFrom, r.Batch)
		res.Blocks += pr.Blocks
		res.Shares += pr.Shares
		res.Seq = max(res.Seq, pr.Seq)
		if err != nil {
			return res, err
		}
		if !pr.More {
			break
		}
		if err := pause(ctx, r.Pause); err != nil {
			return res, err
		}
	}
	p, err := r.Store.Pruned(ctx)
	if err != nil || p.Seq == 0 {
		return res, err
	}
	rollBefore := p.Time
	if t := r.Now().Add(-r.MinuteSummaries); t.Before(rollBefore) {
		rollBefore = t
	}
	for {
		rr, err := r.Store.Rollup(ctx, rollBefore, rollupBatch)
		res.Rolled += rr.Rows
		if err != nil {
			return res, err
		}
		if !rr.More {
			return res, nil
		}
		if err := pause(ctx, r.Pause); err != nil {
			return res, err
		}
	}
}

func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
