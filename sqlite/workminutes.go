package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/hashgrid/hashgrid"
)

// minuteNanos is the span of one row of work_minutes.
const minuteNanos = int64(60e9)

// minuteOf returns the minute holding the time t (Unix nanoseconds): t divided by a
// minute, rounded down, so that times before 1970 fall in the minute they began in.
func minuteOf(t int64) int64 {
	m := t / minuteNanos
	if t%minuteNanos < 0 {
		m--
	}
	return m
}

// minuteAtOrAfter returns the first minute starting at or after t.
func minuteAtOrAfter(t int64) int64 {
	m := t / minuteNanos
	if t%minuteNanos > 0 {
		m++
	}
	return m
}

// minuteKey is a row of work_minutes.
type minuteKey struct {
	minute        int64
	address, name string
}

func compareMinuteKeys(a, b minuteKey) int {
	return cmp.Or(cmp.Compare(a.minute, b.minute), strings.Compare(a.address, b.address), strings.Compare(a.name, b.name))
}

// workSum is a worker's summary over some shares; last is the time of the latest,
// math.MinInt64 before any; best is the highest difficulty an accepted share's hash
// met (its Actual), 0 before any.
type workSum struct {
	accepted, rejected uint64
	work               hashgrid.Work
	last               int64
	best               hashgrid.Diff
}

// count adds one share; repeats is its Share.Repeats, the further rejections a
// sampled rejected share stands for.
func (w *workSum) count(result hashgrid.ShareResult, diff, actual hashgrid.Diff, repeats uint64, t int64) {
	if result == hashgrid.ShareAccepted {
		w.accepted++
		w.work = w.work.Add(diff)
		w.best = max(w.best, actual)
	} else {
		w.rejected += 1 + repeats
	}
	w.last = max(w.last, t)
}

func (w *workSum) plus(v *workSum) {
	w.accepted += v.accepted
	w.rejected += v.rejected
	w.work = w.work.Plus(v.work)
	w.last = max(w.last, v.last)
	w.best = max(w.best, v.best)
}

// countMinute adds a share to its minute's delta in deltas.
func countMinute(deltas map[minuteKey]*workSum, address, name string, result hashgrid.ShareResult, diff, actual hashgrid.Diff, repeats uint64, t int64) {
	k := minuteKey{minuteOf(t), address, name}
	d := deltas[k]
	if d == nil {
		d = &workSum{last: math.MinInt64}
		deltas[k] = d
	}
	d.count(result, diff, actual, repeats, t)
}

// minuteSums keeps work_minutes.
var minuteSums = sumRows[minuteKey, *workSum]{
	what: "work minutes", chunk: minuteChunk, compare: compareMinuteKeys,
	selectQ: selectMinutesQuery, upsertQ: upsertMinutesQuery,
	keyArgs: func(args []any, k minuteKey) []any { return append(args, k.minute, k.address, k.name) },
	scan: func(rows *sql.Rows) (minuteKey, *workSum, error) {
		var k minuteKey
		var acc, rej, hi, lo, last, best int64
		if err := rows.Scan(&k.minute, &k.address, &k.name, &acc, &rej, &hi, &lo, &last, &best); err != nil {
			return minuteKey{}, nil, err
		}
		return k, &workSum{uint64(acc), uint64(rej), hashgrid.Work{Hi: uint64(hi), Lo: uint64(lo)}, last, hashgrid.Diff(best)}, nil
	},
	rowArgs: func(args []any, k minuteKey, d, o *workSum, found bool) []any {
		s := *d
		if found {
			s.plus(o)
		}
		return append(args, k.minute, k.address, k.name, int64(s.accepted), int64(s.rejected),
			int64(s.work.Hi), int64(s.work.Lo), s.last, int64(s.best))
	},
}

// minuteSumsV3 keeps work_minutes as migration 3 left it, without best: the table
// migration 3's step fills. Later versions use minuteSums.
var minuteSumsV3 = sumRows[minuteKey, *workSum]{
	what: "work minutes", chunk: minuteChunk, compare: compareMinuteKeys,
	selectQ: func(n int) string {
		return `SELECT minute, address, worker, accepted, rejected, work_hi, work_lo, last_share
		FROM work_minutes WHERE (minute, address, worker) IN (VALUES ` + valuesList(n, 3) + `)`
	},
	upsertQ: func(n int) string {
		return `INSERT INTO work_minutes (minute, address, worker, accepted, rejected, work_hi, work_lo, last_share)
		VALUES ` + valuesList(n, 8) + `
		ON CONFLICT (minute, address, worker) DO UPDATE SET accepted = excluded.accepted,
			rejected = excluded.rejected, work_hi = excluded.work_hi, work_lo = excluded.work_lo,
			last_share = excluded.last_share`
	},
	keyArgs: minuteSums.keyArgs,
	scan: func(rows *sql.Rows) (minuteKey, *workSum, error) {
		var k minuteKey
		var acc, rej, hi, lo, last int64
		if err := rows.Scan(&k.minute, &k.address, &k.name, &acc, &rej, &hi, &lo, &last); err != nil {
			return minuteKey{}, nil, err
		}
		return k, &workSum{accepted: uint64(acc), rejected: uint64(rej), work: hashgrid.Work{Hi: uint64(hi), Lo: uint64(lo)}, last: last}, nil
	},
	rowArgs: func(args []any, k minuteKey, d, o *workSum, found bool) []any {
		s := *d
		if found {
			s.plus(o)
		}
		return append(args, k.minute, k.address, k.name, int64(s.accepted), int64(s.rejected),
			int64(s.work.Hi), int64(s.work.Lo), s.last)
	},
}

// fillFlush is how many rows of work_minutes fillWorkMinutes sums in memory before
// adding them to the table; tests lower it.
var fillFlush = 1 << 16

// fillWorkBlocks is how many blocks fillWorkMinutes reads a query.
const fillWorkBlocks = 64

// fillWorkMinutes is migration 3's step: it sums the shares of every stored block into
// work_minutes, reading the blocks in sequence order a few at a time and adding the
// sums to the table whenever fillFlush rows are pending, so that memory stays bounded
// however many minutes and workers the database holds.
func fillWorkMinutes(ctx context.Context, tx *sql.Tx) error {
	w := &writeTx{ctx: ctx, tx: tx}
	deltas := map[minuteKey]*workSum{}
	after := int64(0)
	for {
		rows, err := tx.QueryContext(ctx, `SELECT first_seq, data FROM share_blocks WHERE first_seq > ? ORDER BY first_seq LIMIT ?`,
			after, fillWorkBlocks)
		if err != nil {
			return fmt.Errorf("fill work minutes after %d: %w", after, err)
		}
		type block struct {
			first int64
			data  []byte
		}
		var blocks []block
		for rows.Next() {
			var b block
			if err := rows.Scan(&b.first, &b.data); err != nil {
				rows.Close()
				return fmt.Errorf("fill work minutes: %w", err)
			}
			blocks = append(blocks, b)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("fill work minutes after %d: %w", after, err)
		}
		if len(blocks) == 0 {
			break
		}
		for _, b := range blocks {
			if err := eachSummary(b.data, func(k workerKey, s shareSummary) {
				countMinute(deltas, k.address, k.name, s.result, s.diff, s.actual, s.repeats, s.time)
			}); err != nil {
				return fmt.Errorf("share block %d: %w", b.first, err)
			}
			if len(deltas) >= fillFlush {
				if err := minuteSumsV3.add(w, deltas); err != nil {
					return err
				}
				clear(deltas)
			}
		}
		after = blocks[len(blocks)-1].first
	}
	return minuteSumsV3.add(w, deltas)
}

// eachSummary calls fn with the pair and summary of every share in a block's data.
func eachSummary(data []byte, fn func(workerKey, shareSummary)) error {
	r, err := readBlock(data)
	if err != nil {
		return err
	}
	for {
		pair, enc, ok, err := r.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		s, err := r.summarize(pair, enc)
		if err != nil {
			return err
		}
		fn(r.pairs[pair], s)
	}
}

// sumMinutes adds the rows of work_minutes for the minutes [from, to) to sums.
func sumMinutes(ctx context.Context, tx *sql.Tx, from, to int64, sums map[workerKey]*workSum) error {
	rows, err := tx.QueryContext(ctx, `SELECT address, worker, accepted, rejected, work_hi, work_lo, last_share
		FROM work_minutes WHERE minute >= ? AND minute < ?`, from, to)
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
