package postgres

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hashgrid/hashgrid"
)

// addSharesQuery inserts a batch given as one array per column and, from the rows it
// actually inserted (RETURNING skips the conflicting, already stored ones), adds to
// the worker summaries, the minute summaries and the totals. Grouped rows are upserted
// in key order so that two concurrent writers lock them in the same order.
const addSharesQuery = `
WITH ins AS (
	INSERT INTO shares (seq, time, address, worker, job_id, height, diff_hi, diff_lo, actual_hi, actual_lo,
		hash, result, block, user_agent, remote, repeats)
	SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[],
		$7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bytea[], $12::smallint[],
		$13::boolean[], $14::text[], $15::text[], $16::bigint[])
	ON CONFLICT (seq) DO NOTHING
	RETURNING time, address, worker, diff_hi::numeric * ` + two32 + ` + diff_lo AS diff,
		actual_hi::numeric * ` + two32 + ` + actual_lo AS actual, result, repeats
), w AS (
	INSERT INTO workers AS o (address, name, accepted, rejected, work, last_share)
	SELECT address, worker, count(*) FILTER (WHERE result = 0),
		COALESCE(sum(1 + repeats) FILTER (WHERE result <> 0), 0),
		COALESCE(sum(diff) FILTER (WHERE result = 0), 0), max(time)
	FROM ins GROUP BY address, worker ORDER BY address, worker
	ON CONFLICT (address, name) DO UPDATE SET accepted = o.accepted + excluded.accepted,
		rejected = o.rejected + excluded.rejected, work = o.work + excluded.work,
		last_share = GREATEST(o.last_share, excluded.last_share)
), m AS (
	INSERT INTO work_minutes AS o (minute, address, worker, accepted, rejected, work, last_share, best)
	SELECT minute, address, worker, count(*) FILTER (WHERE result = 0),
		COALESCE(sum(1 + repeats) FILTER (WHERE result <> 0), 0),
		COALESCE(sum(diff) FILTER (WHERE result = 0), 0), max(time),
		COALESCE(max(actual) FILTER (WHERE result = 0), 0)
	FROM (SELECT *, time / 60000000000 - (CASE WHEN time % 60000000000 < 0 THEN 1 ELSE 0 END) AS minute FROM ins) x
	GROUP BY minute, address, worker ORDER BY minute, address, worker
	ON CONFLICT (minute, address, worker) DO UPDATE SET accepted = o.accepted + excluded.accepted,
		rejected = o.rejected + excluded.rejected, work = o.work + excluded.work,
		last_share = GREATEST(o.last_share, excluded.last_share), best = GREATEST(o.best, excluded.best)
)
UPDATE totals SET
	accepted = totals.accepted + t.accepted, rejected = totals.rejected + t.rejected, work = totals.work + t.work
FROM (SELECT count(*) FILTER (WHERE result = 0) AS accepted,
		COALESCE(sum(1 + repeats) FILTER (WHERE result <> 0), 0) AS rejected,
		COALESCE(sum(diff) FILTER (WHERE result = 0), 0) AS work
	FROM ins) t
WHERE totals.id = 1 AND (t.accepted > 0 OR t.rejected > 0)`

// shareColumns holds a batch column by column, the shape unnest reads.
type shareColumns struct {
	seq, time, height, diffHi, diffLo, actualHi, actualLo, repeats []int64
	address, worker, jobID, userAgent, remote                      []string
	hash                                                           [][]byte
	result                                                         []int16
	block                                                          []bool
}

func (c *shareColumns) reset(n int) {
	*c = shareColumns{
		seq: make([]int64, 0, n), time: make([]int64, 0, n), height: make([]int64, 0, n),
		diffHi: make([]int64, 0, n), diffLo: make([]int64, 0, n), actualHi: make([]int64, 0, n),
		actualLo: make([]int64, 0, n), repeats: make([]int64, 0, n),
		address: make([]string, 0, n), worker: make([]string, 0, n), jobID: make([]string, 0, n),
		userAgent: make([]string, 0, n), remote: make([]string, 0, n),
		hash: make([][]byte, 0, n), result: make([]int16, 0, n), block: make([]bool, 0, n),
	}
}

func (c *shareColumns) add(s *hashgrid.Share, t int64) {
	c.seq = append(c.seq, int64(s.Seq))
	c.time = append(c.time, t)
	c.address = append(c.address, s.Address)
	c.worker = append(c.worker, s.Worker)
	c.jobID = append(c.jobID, s.JobID)
	c.height = append(c.height, s.Height)
	c.diffHi = append(c.diffHi, int64(s.Diff>>32))
	c.diffLo = append(c.diffLo, int64(s.Diff&math.MaxUint32))
	c.actualHi = append(c.actualHi, int64(s.Actual>>32))
	c.actualLo = append(c.actualLo, int64(s.Actual&math.MaxUint32))
	c.hash = append(c.hash, s.Hash[:])
	c.result = append(c.result, int16(s.Result))
	c.block = append(c.block, s.Block)
	c.userAgent = append(c.userAgent, s.UserAgent)
	c.remote = append(c.remote, s.Remote)
	c.repeats = append(c.repeats, int64(min(s.Repeats, math.MaxInt64)))
}

func (c *shareColumns) args() []any {
	return []any{c.seq, c.time, c.address, c.worker, c.jobID, c.height, c.diffHi, c.diffLo, c.actualHi, c.actualLo,
		c.hash, c.result, c.block, c.userAgent, c.remote, c.repeats}
}

// checkShare refuses, as EINVALID (retrying cannot help), what sqlite refuses: a
// sequence outside [1, 2^63), a time outside the storable range, and a string over
// the share codec's limits, or an unknown result.
func checkShare(i int, s *hashgrid.Share) (int64, error) {
	if s.Seq == 0 || s.Seq > math.MaxInt64 {
		return 0, hashgrid.Errorf(hashgrid.EINVALID, "postgres: add shares: share %d: sequence %d outside [1, 2^63)", i, s.Seq)
	}
	t, err := storedTime(s.Time)
	if err != nil {
		return 0, hashgrid.Errorf(hashgrid.EINVALID, "postgres: add shares: share %d (seq %d): %v", i, s.Seq, err)
	}
	if s.Result > hashgrid.ShareInvalid {
		return 0, hashgrid.Errorf(hashgrid.EINVALID, "postgres: add shares: share %d (seq %d): unknown result %d", i, s.Seq, s.Result)
	}
	for _, f := range []struct {
		name string
		v    string
		max  int
	}{
		{"address", s.Address, hashgrid.MaxShareAddressLen},
		{"worker", s.Worker, hashgrid.MaxShareWorkerLen},
		{"job id", s.JobID, hashgrid.MaxShareJobIDLen},
		{"user agent", s.UserAgent, hashgrid.MaxShareUserAgentLen},
		{"remote", s.Remote, hashgrid.MaxShareRemoteLen},
	} {
		if len(f.v) > f.max {
			return 0, hashgrid.Errorf(hashgrid.EINVALID, "postgres: add shares: share %d (seq %d): %s of %d bytes over %d",
				i, s.Seq, f.name, len(f.v), f.max)
		}
	}
	return t, nil
}

// AddShares implements hashgrid.ShareStore: the batch (split into statements of at
// most MaxBatch shares) and its summaries in one transaction. Summaries count only
// the shares this call inserted, so a batch replayed after a crash changes nothing.
func (s *Store) AddShares(ctx context.Context, shares []hashgrid.Share) error {
	if len(shares) == 0 {
		return nil
	}
	type pending struct {
		s *hashgrid.Share
		t int64
	}
	ps := make([]pending, len(shares))
	for i := range shares {
		t, err := checkShare(i, &shares[i])
		if err != nil {
			return err
		}
		ps[i] = pending{&shares[i], t}
	}
	// In sequence order, keeping only the first copy of a sequence the batch repeats.
	slices.SortStableFunc(ps, func(a, b pending) int { return cmp.Compare(a.s.Seq, b.s.Seq) })
	ps = slices.CompactFunc(ps, func(a, b pending) bool { return a.s.Seq == b.s.Seq })

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: add shares: %w", err)
	}
	defer tx.Rollback(ctx)
	var cols shareColumns
	for len(ps) > 0 {
		n := min(len(ps), MaxBatch)
		cols.reset(n)
		for _, p := range ps[:n] {
			cols.add(p.s, p.t)
		}
		if _, err := tx.Exec(ctx, addSharesQuery, cols.args()...); err != nil {
			return fmt.Errorf("postgres: add shares %d..%d: %w", ps[0].s.Seq, ps[n-1].s.Seq, err)
		}
		ps = ps[n:]
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: add shares: commit: %w", err)
	}
	return nil
}

// LastSeq implements hashgrid.ShareStore.
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	var seq int64
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM shares`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("postgres: last seq: %w", err)
	}
	return uint64(seq), nil
}

const shareSelect = `SELECT seq, time, address, worker, job_id, height, diff_hi, diff_lo, actual_hi, actual_lo,
	hash, result, block, user_agent, remote, repeats FROM shares`

// Shares implements hashgrid.ShareStore.
func (s *Store) Shares(ctx context.Context, after, upto uint64, limit int) ([]hashgrid.Share, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, shareSelect+` WHERE seq > $1 AND seq <= $2 AND result = 0 ORDER BY seq LIMIT $3`,
		seqBound(after), seqBound(upto), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: shares: %w", err)
	}
	out, err := scanShares(rows)
	if err != nil {
		return nil, fmt.Errorf("postgres: shares: %w", err)
	}
	return out, nil
}

// SharesFor implements hashgrid.ShareStore; newest means highest sequence.
func (s *Store) SharesFor(ctx context.Context, address string, limit int) ([]hashgrid.Share, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, shareSelect+` WHERE address = $1 ORDER BY seq DESC LIMIT $2`, address, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: shares for %s: %w", address, err)
	}
	out, err := scanShares(rows)
	if err != nil {
		return nil, fmt.Errorf("postgres: shares for %s: %w", address, err)
	}
	return out, nil
}

func scanShares(rows pgx.Rows) ([]hashgrid.Share, error) {
	defer rows.Close()
	var out []hashgrid.Share
	for rows.Next() {
		var sh hashgrid.Share
		var seq, t, dhi, dlo, ahi, alo, repeats int64
		var hash []byte
		var result int16
		if err := rows.Scan(&seq, &t, &sh.Address, &sh.Worker, &sh.JobID, &sh.Height, &dhi, &dlo, &ahi, &alo,
			&hash, &result, &sh.Block, &sh.UserAgent, &sh.Remote, &repeats); err != nil {
			return nil, err
		}
		if len(hash) != len(sh.Hash) {
			return nil, fmt.Errorf("share %d: hash of %d bytes", seq, len(hash))
		}
		sh.Seq = uint64(seq)
		sh.Time = loadTime(t)
		sh.Diff = hashgrid.Diff(uint64(dhi)<<32 | uint64(dlo))
		sh.Actual = hashgrid.Diff(uint64(ahi)<<32 | uint64(alo))
		copy(sh.Hash[:], hash)
		sh.Result = hashgrid.ShareResult(result)
		sh.Repeats = uint64(repeats)
		out = append(out, sh)
	}
	return out, rows.Err()
}

// minuteNanos is the span of one row of work_minutes.
const minuteNanos = int64(60e9)

// minuteOf returns the minute holding the time t (Unix nanoseconds), rounded down.
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

type workerKey struct{ address, name string }

type workSum struct {
	accepted, rejected uint64
	work               hashgrid.Work
	last               int64
}

// sumQuery sums rows of shares or work_minutes by worker; the WHERE clause is added.
const (
	sumSharesQuery = `SELECT address, worker, count(*) FILTER (WHERE result = 0),
		COALESCE(sum(1 + repeats) FILTER (WHERE result <> 0), 0)::bigint,
		COALESCE(sum(diff_hi::numeric * ` + two32 + ` + diff_lo) FILTER (WHERE result = 0), 0)::text, max(time)
		FROM shares WHERE time >= $1 AND time < $2 GROUP BY address, worker`
	sumMinutesQuery = `SELECT address, worker, sum(accepted)::bigint, sum(rejected)::bigint, sum(work)::text, max(last_share)
		FROM work_minutes WHERE minute >= $1 AND minute < $2 GROUP BY address, worker`
)

// WorkBetween implements hashgrid.ShareStore, ordered by address and name. The whole
// minutes inside [from, to) are read from work_minutes, only the shares of the partial
// minutes at its edges from shares, all in one read-only, repeatable-read transaction
// so that the reads see the same commits.
func (s *Store) WorkBetween(ctx context.Context, from, to time.Time) ([]hashgrid.Worker, error) {
	lo, hi := boundTime(from), boundTime(to)
	if lo >= hi {
		return nil, nil
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("postgres: work between: %w", err)
	}
	defer tx.Rollback(ctx)
	sums := map[workerKey]*workSum{}
	first, last := minuteAtOrAfter(lo), minuteOf(hi)
	if first >= last {
		err = sumInto(ctx, tx, sums, sumSharesQuery, lo, hi)
	} else {
		err = sumInto(ctx, tx, sums, sumMinutesQuery, first, last)
		if err == nil && lo < first*minuteNanos {
			err = sumInto(ctx, tx, sums, sumSharesQuery, lo, first*minuteNanos)
		}
		if err == nil && last*minuteNanos < hi {
			err = sumInto(ctx, tx, sums, sumSharesQuery, last*minuteNanos, hi)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: work between: %w", err)
	}
	if len(sums) == 0 {
		return nil, nil
	}
	out := make([]hashgrid.Worker, 0, len(sums))
	for k, w := range sums {
		out = append(out, hashgrid.Worker{Address: k.address, Name: k.name, Accepted: w.accepted, Rejected: w.rejected,
			Work: w.work, LastShare: loadTime(w.last)})
	}
	slices.SortFunc(out, func(a, b hashgrid.Worker) int {
		return cmp.Or(strings.Compare(a.Address, b.Address), strings.Compare(a.Name, b.Name))
	})
	return out, nil
}

func sumInto(ctx context.Context, tx pgx.Tx, sums map[workerKey]*workSum, query string, lo, hi int64) error {
	rows, err := tx.Query(ctx, query, lo, hi)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k workerKey
		var acc, rej, last int64
		var work string
		if err := rows.Scan(&k.address, &k.name, &acc, &rej, &work, &last); err != nil {
			return err
		}
		wk, err := parseWork(work)
		if err != nil {
			return err
		}
		w := sums[k]
		if w == nil {
			w = &workSum{last: math.MinInt64}
			sums[k] = w
		}
		w.accepted += uint64(acc)
		w.rejected += uint64(rej)
		w.work = w.work.Plus(wk)
		w.last = max(w.last, last)
	}
	return rows.Err()
}
