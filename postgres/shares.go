package postgres

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/hashgrid/hashgrid"
)

// MaxBlockShares bounds the shares one row of share_blocks holds; AddShares writes a
// larger batch as several rows.
const MaxBlockShares = 8192

// ConsumerBatch is how many shares a consumer should give AddShares at once: the
// fixed cost of a batch (the summaries' upserts, the round trips, the commit) is shared
// by four times the shares of stream.DefaultTailBatch. With the accounting consumer
// reading JetStream (BenchmarkConsumer, 50 addresses × 4 workers, three alternating
// pairs on the shared 2-core VM), 16,384 gave 133,528–185,570 shares/s where 4,096 gave
// 123,022–123,660.
const ConsumerBatch = 16384

// writeLock is the advisory lock key AddShares holds for its transaction ("hgsw"):
// one writer at a time, across processes, so that two never both store a sequence.
const writeLock = 0x68677377

// compressionMigration is the store's third step: blocks compressed with LZ4 where the
// server has it (PostgreSQL 14 and later, built with lz4). Migration 1 stored them
// uncompressed because pglz, the default, cost more than it saved; LZ4 stores a block
// of the share codec in about a fifth of the bytes, and AddShares is faster for it
// (docs/benchmarks.md). Blocks stored before keep their form; reads take either. A
// server without lz4 keeps them uncompressed.
var compressionMigration = migration{name: "share blocks compressed with lz4", sql: `
DO $$
BEGIN
	EXECUTE 'ALTER TABLE share_blocks ALTER COLUMN data SET COMPRESSION lz4, ALTER COLUMN data SET STORAGE EXTENDED';
EXCEPTION WHEN feature_not_supported OR syntax_error OR invalid_parameter_value THEN
	RAISE NOTICE 'share_blocks.data stays uncompressed: %', SQLERRM;
END
$$;
`}

// pending is one share of a batch with its encoding.
type pending struct {
	s    *hashgrid.Share
	enc  []byte
	time int64
}

// checkShare refuses, as EINVALID (retrying cannot help), what sqlite refuses: a
// sequence outside [1, 2^63), a time outside the storable range, and what the share
// codec cannot encode (a string over its limit, an unknown result).
func checkShare(i int, s *hashgrid.Share) (pending, error) {
	if s.Seq == 0 || s.Seq > math.MaxInt64 {
		return pending{}, hashgrid.Errorf(hashgrid.EINVALID, "postgres: add shares: share %d: sequence %d outside [1, 2^63)", i, s.Seq)
	}
	t, err := storedTime(s.Time)
	if err != nil {
		return pending{}, hashgrid.Errorf(hashgrid.EINVALID, "postgres: add shares: share %d (seq %d): %v", i, s.Seq, err)
	}
	enc, err := s.MarshalBinary()
	if err != nil {
		return pending{}, hashgrid.Errorf(hashgrid.EINVALID, "postgres: add shares: share %d (seq %d): %v", i, s.Seq, err)
	}
	return pending{s: s, enc: enc, time: t}, nil
}

// storedBlock is the position of a row of share_blocks.
type storedBlock struct {
	first, last uint64
	count       int
}

// contiguous reports whether the block holds every sequence in its range.
func (b storedBlock) contiguous() bool { return b.last-b.first+1 == uint64(b.count) }

// AddShares implements hashgrid.ShareStore. The batch's new shares become one row of
// share_blocks (or several, of at most MaxBlockShares), their summaries are added to
// workers, work_minutes and totals, all in one transaction under the store's write
// lock. Summaries count only the shares this call stored, so a batch replayed after a
// crash changes nothing.
func (s *Store) AddShares(ctx context.Context, shares []hashgrid.Share) error {
	if len(shares) == 0 {
		return nil
	}
	ps := make([]pending, len(shares))
	for i := range shares {
		p, err := checkShare(i, &shares[i])
		if err != nil {
			return err
		}
		ps[i] = p
	}
	// In sequence order, keeping only the first copy of a sequence the batch repeats.
	slices.SortStableFunc(ps, func(a, b pending) int { return cmp.Compare(a.s.Seq, b.s.Seq) })
	ps = slices.CompactFunc(ps, func(a, b pending) bool { return a.s.Seq == b.s.Seq })

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: add shares: %w", err)
	}
	defer tx.Rollback(ctx)
	// Writes are queued and sent in one round trip, after the reads placing them.
	var writes pgx.Batch
	fresh, err := placeShares(ctx, tx, ps, &writes)
	if err != nil {
		return fmt.Errorf("postgres: add shares %d..%d: %w", ps[0].s.Seq, ps[len(ps)-1].s.Seq, err)
	}
	if len(fresh) == 0 {
		return nil
	}
	addSummaries(&writes, fresh)
	if err := tx.SendBatch(ctx, &writes).Close(); err != nil {
		return fmt.Errorf("postgres: add shares %d..%d: %w", ps[0].s.Seq, ps[len(ps)-1].s.Seq, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: add shares: commit: %w", err)
	}
	return nil
}

// placeShares writes the shares of ps (strictly increasing Seq) not stored yet and
// returns them. Blocks' sequence ranges never overlap: new shares falling in the gaps
// of a stored block (possible only if some batch skipped sequences) are merged with
// its shares into new blocks that replace it, and new blocks are cut where a kept
// block lies between two of their shares.
func placeShares(ctx context.Context, tx pgx.Tx, ps []pending, writes *pgx.Batch) ([]pending, error) {
	lo, hi := ps[0].s.Seq, ps[len(ps)-1].s.Seq
	// The write lock, then the common case, a batch above everything stored, is one
	// index lookup: one round trip.
	var reads pgx.Batch
	reads.Queue(`SELECT pg_advisory_xact_lock($1)`, int64(writeLock))
	reads.Queue(`SELECT pruned_seq FROM share_retention WHERE id = 1`)
	reads.Queue(`SELECT first_seq, last_seq, count FROM share_blocks
		WHERE last_seq >= $1 AND first_seq <= $2 ORDER BY first_seq`, int64(lo), int64(hi))
	br := tx.SendBatch(ctx, &reads)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, fmt.Errorf("lock: %w", err)
	}
	var pruned int64
	if err := br.QueryRow().Scan(&pruned); err != nil {
		br.Close()
		return nil, fmt.Errorf("retention: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, err
	}
	stored, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storedBlock, error) {
		var first, last int64
		var n int32
		err := r.Scan(&first, &last, &n)
		return storedBlock{uint64(first), uint64(last), int(n)}, err
	})
	if err := errors.Join(err, br.Close()); err != nil {
		return nil, err
	}
	// Shares at or below the pruned prefix were stored, and counted, before Prune
	// deleted them: a replay of them is skipped like that of any stored share.
	if pruned > 0 {
		i, _ := slices.BinarySearchFunc(ps, uint64(pruned)+1, func(p pending, seq uint64) int { return cmp.Compare(p.s.Seq, seq) })
		if ps = ps[i:]; len(ps) == 0 {
			return nil, nil
		}
	}
	if len(stored) == 0 {
		writeBlocks(writes, ps, nil)
		return ps, nil
	}
	loaded := map[uint64][]pending{} // shares of stored blocks with gaps, by first_seq
	dirty := map[uint64]bool{}
	var fresh []pending
	for _, p := range ps {
		i, found := slices.BinarySearchFunc(stored, p.s.Seq, func(b storedBlock, seq uint64) int {
			switch {
			case b.last < seq:
				return -1
			case b.first > seq:
				return 1
			}
			return 0
		})
		if !found {
			fresh = append(fresh, p)
			continue
		}
		b := stored[i]
		if b.contiguous() {
			continue
		}
		in, ok := loaded[b.first]
		if !ok {
			if in, err = loadBlock(ctx, tx, b.first); err != nil {
				return nil, err
			}
			loaded[b.first] = in
		}
		if _, ok := slices.BinarySearchFunc(in, p.s.Seq, func(q pending, seq uint64) int { return cmp.Compare(q.s.Seq, seq) }); ok {
			continue
		}
		fresh = append(fresh, p)
		dirty[b.first] = true
	}
	if len(fresh) == 0 {
		return nil, nil
	}
	write := fresh
	if len(dirty) > 0 {
		write = slices.Clone(fresh)
	}
	var keep []uint64 // first_seq of the stored blocks new ones must not span
	for _, b := range stored {
		if !dirty[b.first] {
			keep = append(keep, b.first)
			continue
		}
		writes.Queue(`DELETE FROM share_block_addresses WHERE first_seq = $1`, int64(b.first))
		writes.Queue(`DELETE FROM share_blocks WHERE first_seq = $1`, int64(b.first))
		write = append(write, loaded[b.first]...)
	}
	if len(dirty) > 0 {
		slices.SortFunc(write, func(a, b pending) int { return cmp.Compare(a.s.Seq, b.s.Seq) })
	}
	writeBlocks(writes, write, keep)
	return fresh, nil
}

// writeBlocks writes ps (strictly increasing Seq) as blocks of at most
// MaxBlockShares, cut between two shares wherever a first_seq of keep lies between
// them, with their rows of share_block_addresses, queued on writes.
func writeBlocks(writes *pgx.Batch, ps []pending, keep []uint64) {
	var firsts, lasts, minTimes, maxTimes []int64
	var counts []int32
	var datas [][]byte
	var addrs []string
	var addrFirsts []int64
	for len(ps) > 0 {
		n := 1
		for n < len(ps) && n < MaxBlockShares {
			i, _ := slices.BinarySearch(keep, ps[n-1].s.Seq+1)
			if i < len(keep) && keep[i] < ps[n].s.Seq {
				break
			}
			n++
		}
		chunk := ps[:n]
		ps = ps[n:]
		size := 0
		for _, p := range chunk {
			size += binary.MaxVarintLen32 + len(p.enc)
		}
		data := make([]byte, 0, size)
		minT, maxT := chunk[0].time, chunk[0].time
		seen := map[string]bool{}
		first := int64(chunk[0].s.Seq)
		for _, p := range chunk {
			data = binary.AppendUvarint(data, uint64(len(p.enc)))
			data = append(data, p.enc...)
			minT, maxT = min(minT, p.time), max(maxT, p.time)
			if !seen[p.s.Address] {
				seen[p.s.Address] = true
				addrs = append(addrs, p.s.Address)
				addrFirsts = append(addrFirsts, first)
			}
		}
		firsts = append(firsts, first)
		lasts = append(lasts, int64(chunk[len(chunk)-1].s.Seq))
		minTimes = append(minTimes, minT)
		maxTimes = append(maxTimes, maxT)
		counts = append(counts, int32(len(chunk)))
		datas = append(datas, data)
	}
	writes.Queue(`INSERT INTO share_blocks (first_seq, last_seq, min_time, max_time, count, data)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::integer[], $6::bytea[])`,
		firsts, lasts, minTimes, maxTimes, counts, datas)
	writes.Queue(`INSERT INTO share_block_addresses (address, first_seq)
		SELECT * FROM unnest($1::text[], $2::bigint[])`, addrs, addrFirsts)
}

// loadBlock returns the shares of the block at first, in sequence order.
func loadBlock(ctx context.Context, tx pgx.Tx, first uint64) ([]pending, error) {
	var data []byte
	if err := tx.QueryRow(ctx, `SELECT data FROM share_blocks WHERE first_seq = $1`, int64(first)).Scan(&data); err != nil {
		return nil, fmt.Errorf("share block %d: %w", first, err)
	}
	var out []pending
	err := eachShare(data, func(s hashgrid.Share, enc []byte) bool {
		out = append(out, pending{s: &s, enc: enc, time: s.Time.UnixNano()})
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("share block %d: %w", first, err)
	}
	return out, nil
}

// eachShare decodes the shares of a block's data in order, calling f for each until
// it returns false.
func eachShare(data []byte, f func(s hashgrid.Share, enc []byte) bool) error {
	for len(data) > 0 {
		n, k := binary.Uvarint(data)
		if k <= 0 || n > uint64(len(data)-k) {
			return errors.New("corrupt block: bad share length")
		}
		enc := data[k : k+int(n)]
		data = data[k+int(n):]
		var s hashgrid.Share
		if err := s.UnmarshalBinary(enc); err != nil {
			return fmt.Errorf("corrupt block: %w", err)
		}
		if !f(s, enc) {
			return nil
		}
	}
	return nil
}

// summary is a worker's sum over some shares; best is the highest Actual of an
// accepted one.
type summary struct {
	accepted, rejected uint64
	work               hashgrid.Work
	last               int64
	best               hashgrid.Diff
}

func (w *summary) count(s *hashgrid.Share, t int64) {
	if s.Result == hashgrid.ShareAccepted {
		w.accepted++
		w.work = w.work.Add(s.Diff)
		w.best = max(w.best, s.Actual)
	} else {
		w.rejected += 1 + s.Repeats // a sampled reject stands for Repeats more
	}
	w.last = max(w.last, t)
}

type minuteKey struct {
	minute        int64
	address, name string
}

// addSummaries queues on writes the statements adding the fresh shares to workers,
// work_minutes and totals, upserting rows in key order.
func addSummaries(writes *pgx.Batch, fresh []pending) {
	workers := map[workerKey]*summary{}
	minutes := map[minuteKey]*summary{}
	total := summary{last: math.MinInt64}
	for _, p := range fresh {
		wk := workerKey{p.s.Address, p.s.Worker}
		w := workers[wk]
		if w == nil {
			w = &summary{last: math.MinInt64}
			workers[wk] = w
		}
		w.count(p.s, p.time)
		mk := minuteKey{minuteOf(p.time), p.s.Address, p.s.Worker}
		m := minutes[mk]
		if m == nil {
			m = &summary{last: math.MinInt64}
			minutes[mk] = m
		}
		m.count(p.s, p.time)
		total.count(p.s, p.time)
	}
	wkeys := make([]workerKey, 0, len(workers))
	for k := range workers {
		wkeys = append(wkeys, k)
	}
	slices.SortFunc(wkeys, func(a, b workerKey) int {
		return cmp.Or(strings.Compare(a.address, b.address), strings.Compare(a.name, b.name))
	})
	var addr, name []string
	var work []pgtype.Numeric
	var acc, rej, last []int64
	for _, k := range wkeys {
		w := workers[k]
		addr, name = append(addr, k.address), append(name, k.name)
		acc, rej = append(acc, int64(w.accepted)), append(rej, int64(w.rejected))
		work, last = append(work, numeric(w.work.Big())), append(last, w.last)
	}
	writes.Queue(`INSERT INTO workers AS o (address, name, accepted, rejected, work, last_share)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::numeric[], $6::bigint[])
			AS t(a, n, acc, rej, w, l)
		ON CONFLICT (address, name) DO UPDATE SET accepted = o.accepted + excluded.accepted,
			rejected = o.rejected + excluded.rejected, work = o.work + excluded.work,
			last_share = GREATEST(o.last_share, excluded.last_share)`, addr, name, acc, rej, work, last)

	mkeys := make([]minuteKey, 0, len(minutes))
	for k := range minutes {
		mkeys = append(mkeys, k)
	}
	slices.SortFunc(mkeys, func(a, b minuteKey) int {
		return cmp.Or(cmp.Compare(a.minute, b.minute), strings.Compare(a.address, b.address), strings.Compare(a.name, b.name))
	})
	var mins []int64
	var best []pgtype.Numeric
	// New slices: the batch holds the workers' until it is sent.
	addr, name, work, acc, rej, last = nil, nil, nil, nil, nil, nil
	for _, k := range mkeys {
		m := minutes[k]
		mins, addr, name = append(mins, k.minute), append(addr, k.address), append(name, k.name)
		acc, rej = append(acc, int64(m.accepted)), append(rej, int64(m.rejected))
		work, last = append(work, numeric(m.work.Big())), append(last, m.last)
		best = append(best, numeric(new(big.Int).SetUint64(uint64(m.best))))
	}
	writes.Queue(`INSERT INTO work_minutes AS o (minute, address, worker, accepted, rejected, work, last_share, best)
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::numeric[], $7::bigint[], $8::numeric[])
			AS t(m, a, n, acc, rej, w, l, b)
		ON CONFLICT (minute, address, worker) DO UPDATE SET accepted = o.accepted + excluded.accepted,
			rejected = o.rejected + excluded.rejected, work = o.work + excluded.work,
			last_share = GREATEST(o.last_share, excluded.last_share), best = GREATEST(o.best, excluded.best)`,
		mins, addr, name, acc, rej, work, last, best)
	writes.Queue(`UPDATE totals SET accepted = accepted + $1, rejected = rejected + $2, work = work + $3 WHERE id = 1`,
		int64(total.accepted), int64(total.rejected), numeric(total.work.Big()))
}

// numeric is an integer as a NUMERIC parameter, sent in binary.
func numeric(n *big.Int) pgtype.Numeric { return pgtype.Numeric{Int: n, Valid: true} }

// LastSeq implements hashgrid.ShareStore.
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	// Pruned shares were stored: the sequence never goes back below them.
	var seq int64
	if err := s.pool.QueryRow(ctx, `SELECT GREATEST(COALESCE(MAX(last_seq), 0),
		(SELECT pruned_seq FROM share_retention WHERE id = 1)) FROM share_blocks`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("postgres: last seq: %w", err)
	}
	return uint64(seq), nil
}

// Shares implements hashgrid.ShareStore. It reads the blocks from the one holding
// after+1 (or the first above it) in sequence order, until it has limit shares or
// passes upto; blocks' ranges never overlap, so that order is the shares' order.
func (s *Store) Shares(ctx context.Context, after, upto uint64, limit int) ([]hashgrid.Share, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	if after >= upto || after >= math.MaxInt64 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT first_seq, data FROM share_blocks
		WHERE last_seq > $1 AND first_seq <= $2 ORDER BY first_seq`, seqBound(after), seqBound(upto))
	if err != nil {
		return nil, fmt.Errorf("postgres: shares: %w", err)
	}
	defer rows.Close()
	var out []hashgrid.Share
	for len(out) < limit && rows.Next() {
		var first int64
		var data []byte
		if err := rows.Scan(&first, &data); err != nil {
			return nil, fmt.Errorf("postgres: shares: %w", err)
		}
		err := eachShare(data, func(sh hashgrid.Share, _ []byte) bool {
			if sh.Seq > upto {
				return false
			}
			if sh.Seq > after && sh.Result == hashgrid.ShareAccepted {
				out = append(out, sh)
			}
			return len(out) < limit
		})
		if err != nil {
			return nil, fmt.Errorf("postgres: share block %d: %w", first, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: shares: %w", err)
	}
	return out, nil
}

// SharesFor implements hashgrid.ShareStore; newest means highest sequence. It reads
// only the blocks share_block_addresses lists for address, newest first.
func (s *Store) SharesFor(ctx context.Context, address string, limit int) ([]hashgrid.Share, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT b.first_seq, b.data
		FROM share_block_addresses a JOIN share_blocks b ON b.first_seq = a.first_seq
		WHERE a.address = $1 ORDER BY a.first_seq DESC`, address)
	if err != nil {
		return nil, fmt.Errorf("postgres: shares for %s: %w", address, err)
	}
	defer rows.Close()
	var out, block []hashgrid.Share
	for len(out) < limit && rows.Next() {
		var first int64
		var data []byte
		if err := rows.Scan(&first, &data); err != nil {
			return nil, fmt.Errorf("postgres: shares for %s: %w", address, err)
		}
		block = block[:0]
		err := eachShare(data, func(sh hashgrid.Share, _ []byte) bool {
			if sh.Address == address {
				block = append(block, sh)
			}
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("postgres: share block %d: %w", first, err)
		}
		for i := len(block) - 1; i >= 0 && len(out) < limit; i-- {
			out = append(out, block[i])
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: shares for %s: %w", address, err)
	}
	return out, nil
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

// WorkBetween implements hashgrid.ShareStore, ordered by address and name. The whole
// minutes inside [from, to) are read from work_minutes, only the shares of the partial
// minutes at its edges from the blocks holding them, all in one read-only,
// repeatable-read transaction so that the reads see the same commits.
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
	sums := map[workerKey]*summary{}
	st, err := readRetention(ctx, tx)
	if err != nil {
		return nil, err
	}
	// Below rolled_until only hours are kept.
	if lo, err = sumRolled(ctx, tx, st, lo, hi, sums); err != nil {
		return nil, err
	}
	first, last := minuteAtOrAfter(lo), minuteOf(hi)
	if lo < hi {
		if err := checkEdges(st, lo, hi, first, last); err != nil {
			return nil, err
		}
	}
	switch {
	case lo >= hi: // all of it was in rolled-up hours
	case first >= last:
		err = sumBlocks(ctx, tx, sums, lo, hi)
	default:
		err = sumMinutes(ctx, tx, sums, first, last)
		if err == nil {
			err = sumBlocks(ctx, tx, sums, lo, first*minuteNanos)
		}
		if err == nil {
			err = sumBlocks(ctx, tx, sums, last*minuteNanos, hi)
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

func sumFor(sums map[workerKey]*summary, k workerKey) *summary {
	w := sums[k]
	if w == nil {
		w = &summary{last: math.MinInt64}
		sums[k] = w
	}
	return w
}

// sumMinutes adds the rows of work_minutes in [first, last) to sums.
func sumMinutes(ctx context.Context, tx pgx.Tx, sums map[workerKey]*summary, first, last int64) error {
	rows, err := tx.Query(ctx, `SELECT address, worker, sum(accepted)::bigint, sum(rejected)::bigint, sum(work)::text, max(last_share)
		FROM work_minutes WHERE minute >= $1 AND minute < $2 GROUP BY address, worker`, first, last)
	if err != nil {
		return err
	}
	return addSums(rows, sums)
}

// addSums adds rows of (address, worker, accepted, rejected, work as text, last share)
// to sums.
func addSums(rows pgx.Rows, sums map[workerKey]*summary) error {
	defer rows.Close()
	for rows.Next() {
		var k workerKey
		var acc, rej, l int64
		var work string
		if err := rows.Scan(&k.address, &k.name, &acc, &rej, &work, &l); err != nil {
			return err
		}
		wk, err := parseWork(work)
		if err != nil {
			return err
		}
		w := sumFor(sums, k)
		w.accepted += uint64(acc)
		w.rejected += uint64(rej)
		w.work = w.work.Plus(wk)
		w.last = max(w.last, l)
	}
	return rows.Err()
}

// sumBlocks adds the shares with times in [lo, hi) to sums, reading the blocks whose
// times overlap it.
func sumBlocks(ctx context.Context, tx pgx.Tx, sums map[workerKey]*summary, lo, hi int64) error {
	if lo >= hi {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT first_seq, data FROM share_blocks WHERE max_time >= $1 AND min_time < $2`, lo, hi)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var first int64
		var data []byte
		if err := rows.Scan(&first, &data); err != nil {
			return err
		}
		err := eachShare(data, func(sh hashgrid.Share, _ []byte) bool {
			if t := sh.Time.UnixNano(); t >= lo && t < hi {
				sumFor(sums, workerKey{sh.Address, sh.Worker}).count(&sh, t)
			}
			return true
		})
		if err != nil {
			return fmt.Errorf("share block %d: %w", first, err)
		}
	}
	return rows.Err()
}
