package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hashgrid/hashgrid"
)

// Summaries older than the raw shares are kept by the hour: Rollup folds the rows of
// work_minutes before an hour into work_hours, which hold the same sums per worker
// and hour, so that what is kept for ever grows with the workers and hours, not the
// minutes. The retention row's rolled_until (a minute, on an hour) says how far: below
// it WorkBetween answers whole hours only, from work_hours plus any row of
// work_minutes not folded yet (a late share's), so it is exact while a rollup is under
// way.

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

// hourSums keeps work_hours; its keys are minuteKeys whose minute field holds the hour.
var hourSums = sumRows[minuteKey, *workSum]{
	what: "work hours", chunk: minuteChunk, compare: compareMinuteKeys,
	selectQ: func(n int) string {
		return `SELECT hour, address, worker, accepted, rejected, work_hi, work_lo, last_share, best
		FROM work_hours WHERE (hour, address, worker) IN (VALUES ` + valuesList(n, 3) + `)`
	},
	upsertQ: func(n int) string {
		return `INSERT INTO work_hours (hour, address, worker, accepted, rejected, work_hi, work_lo, last_share, best)
		VALUES ` + valuesList(n, 9) + `
		ON CONFLICT (hour, address, worker) DO UPDATE SET accepted = excluded.accepted,
			rejected = excluded.rejected, work_hi = excluded.work_hi, work_lo = excluded.work_lo,
			last_share = excluded.last_share, best = excluded.best`
	},
	keyArgs: minuteSums.keyArgs,
	scan:    minuteSums.scan,
	rowArgs: minuteSums.rowArgs,
}

// rolledUntil returns the retention row's rolled_until; ok is false if nothing was
// rolled up.
func rolledUntil(ctx context.Context, q queryRower) (minute int64, ok bool, err error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT rolled_until FROM retention WHERE id = 1`).Scan(&v); err != nil {
		return 0, false, fmt.Errorf("sqlite: retention: %w", err)
	}
	return v.Int64, v.Valid, nil
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
// the transaction that adds it to its hour. Call it with a time whose shares are
// pruned (Retention does), so that minute resolution is lost only where the raw
// shares are gone too.
func (db *DB) Rollup(ctx context.Context, before time.Time, maxRows int) (RollupResult, error) {
	if maxRows <= 0 {
		return RollupResult{}, fmt.Errorf("sqlite: rollup: batch of %d rows must be positive", maxRows)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return RollupResult{}, fmt.Errorf("sqlite: rollup: %w", err)
	}
	defer tx.Rollback()
	until := hourOf(boundTime(before)) * 60
	old, ok, err := rolledUntil(ctx, tx)
	if err != nil {
		return RollupResult{}, err
	}
	if ok {
		until = max(until, old)
	}
	if !ok || until > old {
		if _, err := tx.ExecContext(ctx, `UPDATE retention SET rolled_until = ? WHERE id = 1`, until); err != nil {
			return RollupResult{}, fmt.Errorf("sqlite: rollup: %w", err)
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT minute, address, worker, accepted, rejected, work_hi, work_lo, last_share, best
		FROM work_minutes WHERE minute < ? ORDER BY minute, address, worker LIMIT ?`, until, maxRows)
	if err != nil {
		return RollupResult{}, fmt.Errorf("sqlite: rollup: %w", err)
	}
	deltas := map[minuteKey]*workSum{}
	n := 0
	var lastKey minuteKey
	for rows.Next() {
		k, v, err := minuteSums.scan(rows)
		if err != nil {
			rows.Close()
			return RollupResult{}, fmt.Errorf("sqlite: rollup: %w", err)
		}
		n++
		lastKey = k
		hk := minuteKey{floorDiv(k.minute, 60), k.address, k.name}
		if d := deltas[hk]; d != nil {
			d.plus(v)
		} else {
			deltas[hk] = v
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return RollupResult{}, fmt.Errorf("sqlite: rollup: %w", err)
	}
	res := RollupResult{Rows: n, Until: loadTime(until * minuteNanos), More: n == maxRows}
	if n > 0 {
		if err := hourSums.add(&writeTx{ctx: ctx, tx: tx}, deltas); err != nil {
			return RollupResult{}, err
		}
		// The rows read are exactly those up to the last one in key order.
		if _, err := tx.ExecContext(ctx, `DELETE FROM work_minutes WHERE minute < ? AND (minute, address, worker) <= (?, ?, ?)`,
			until, lastKey.minute, lastKey.address, lastKey.name); err != nil {
			return RollupResult{}, fmt.Errorf("sqlite: rollup: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return RollupResult{}, fmt.Errorf("sqlite: rollup: commit: %w", err)
	}
	return res, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// sumRolled adds to sums what lies in [lo, hi) below rolled_until, where only whole
// hours are known, and returns where the rest of the window starts: max(lo, the
// rolled_until time). A window edge inside that region that is not on an hour is
// refused (EINVALID); so is none if nothing was rolled up.
func sumRolled(ctx context.Context, tx *sql.Tx, lo, hi int64, sums map[workerKey]*workSum) (int64, error) {
	until, ok, err := rolledUntil(ctx, tx)
	if err != nil || !ok {
		return lo, err
	}
	boundary := until * minuteNanos // on an hour; until came from an hour of a stored time
	if lo >= boundary {
		return lo, nil
	}
	end := min(hi, boundary)
	for _, t := range []int64{lo, end} {
		if t%hourNanos != 0 && t != math.MinInt64 && t != math.MaxInt64 {
			return 0, hashgrid.Errorf(hashgrid.EINVALID, "sqlite: work between: summaries before %s are kept by the hour, "+
				"and %s is not on one; start and end the window on whole hours there",
				loadTime(boundary).Format(time.RFC3339), loadTime(t).Format(time.RFC3339Nano))
		}
	}
	h0, h1 := hourAtOrAfter(lo), hourOf(end)
	if h0 < h1 {
		if err := sumHours(ctx, tx, h0, h1, sums); err != nil {
			return 0, err
		}
		// Rows of work_minutes not folded yet, or added since by a late share.
		if err := sumMinutes(ctx, tx, h0*60, h1*60, sums); err != nil {
			return 0, err
		}
	}
	return end, nil
}

// sumHours adds the rows of work_hours for the hours [from, to) to sums.
func sumHours(ctx context.Context, tx *sql.Tx, from, to int64, sums map[workerKey]*workSum) error {
	rows, err := tx.QueryContext(ctx, `SELECT address, worker, accepted, rejected, work_hi, work_lo, last_share
		FROM work_hours WHERE hour >= ? AND hour < ?`, from, to)
	if err != nil {
		return fmt.Errorf("sqlite: work between: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k workerKey
		var acc, rej, hi, lo, last int64
		if err := rows.Scan(&k.address, &k.name, &acc, &rej, &hi, &lo, &last); err != nil {
			return fmt.Errorf("sqlite: work between: %w", err)
		}
		w := sums[k]
		if w == nil {
			w = &workSum{last: math.MinInt64}
			sums[k] = w
		}
		w.plus(&workSum{accepted: uint64(acc), rejected: uint64(rej), work: hashgrid.Work{Hi: uint64(hi), Lo: uint64(lo)}, last: last})
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: work between: %w", err)
	}
	return nil
}
