package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid"
)

// AddShares implements hashgrid.ShareStore. The batch's new shares become one block, or
// several where a limit or a stored block's sequence range splits them. Summaries and
// totals count only the shares this call stored, so a batch replayed after a crash
// changes nothing. The same goes for the rows of work_minutes.
func (db *DB) AddShares(ctx context.Context, shares []hashgrid.Share) error {
	if len(shares) == 0 {
		return nil
	}
	pending := make([]pendingShare, len(shares))
	for i := range shares {
		s := &shares[i]
		// Bad input is EINVALID, so a consumer knows retrying cannot help.
		if s.Seq == 0 || s.Seq > math.MaxInt64 {
			return hashgrid.Errorf(hashgrid.EINVALID, "sqlite: add shares: share %d: sequence %d outside [1, 2^63)", i, s.Seq)
		}
		t, err := storedTime(s.Time)
		if err != nil {
			return hashgrid.Errorf(hashgrid.EINVALID, "sqlite: add shares: share %d (seq %d): %v", i, s.Seq, err)
		}
		enc, err := s.MarshalBinary()
		if err != nil {
			return hashgrid.Errorf(hashgrid.EINVALID, "sqlite: add shares: share %d (seq %d): %v", i, s.Seq, err)
		}
		pending[i] = pendingShare{s: s, enc: enc, time: t}
	}
	// In sequence order, keeping only the first copy of a sequence the batch repeats.
	slices.SortStableFunc(pending, func(a, b pendingShare) int { return cmp.Compare(a.s.Seq, b.s.Seq) })
	pending = slices.CompactFunc(pending, func(a, b pendingShare) bool { return a.s.Seq == b.s.Seq })

	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: add shares: %w", err)
	}
	defer tx.Rollback()
	// Shares at or below the pruned prefix were stored, and counted, before Prune
	// deleted them: a replay of them is skipped like that of any stored share. Read in
	// the transaction, which holds the writer connection Prune needs.
	if pruned := db.pruned.Load(); pruned > 0 {
		i, _ := slices.BinarySearchFunc(pending, pruned+1, func(p pendingShare, seq uint64) int { return cmp.Compare(p.s.Seq, seq) })
		if pending = pending[i:]; len(pending) == 0 {
			return nil
		}
	}
	w := &writeTx{ctx: ctx, tx: tx, shared: db.stmts}
	fresh, err := placeShares(w, pending)
	if err != nil {
		return fmt.Errorf("sqlite: add shares %d..%d: %w", pending[0].s.Seq, pending[len(pending)-1].s.Seq, err)
	}
	if len(fresh) == 0 {
		return nil
	}
	deltas := map[workerKey]*hashgrid.Worker{}
	minutes := map[minuteKey]*workSum{}
	var total hashgrid.Worker
	for _, p := range fresh {
		countMinute(minutes, p.s.Address, p.s.Worker, p.s.Result, p.s.Diff, p.s.Actual, p.s.Repeats, p.time)
		k := workerKey{p.s.Address, p.s.Worker}
		d := deltas[k]
		if d == nil {
			d = &hashgrid.Worker{Address: p.s.Address, Name: p.s.Worker}
			deltas[k] = d
		}
		count(d, p.s)
		count(&total, p.s)
	}
	if err := workerSums.add(w, deltas); err != nil {
		return err
	}
	if err := addTotals(w, &total); err != nil {
		return err
	}
	if err := minuteSums.add(w, minutes); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: add shares: commit: %w", err)
	}
	return nil
}

// storedBlock is the position of a block already in share_blocks.
type storedBlock struct {
	first, last uint64
	count       int
}

// contiguous reports whether the block holds every sequence in its range.
func (b storedBlock) contiguous() bool { return b.last-b.first+1 == uint64(b.count) }

// placeShares writes the shares of pending, sorted by strictly increasing Seq, whose
// sequences are not stored yet, and returns them. Blocks' sequence ranges never
// overlap: new shares falling in the gaps of a stored block (possible only if some
// batch skipped sequences) are merged with it into new blocks that replace it.
func placeShares(w *writeTx, pending []pendingShare) ([]pendingShare, error) {
	lo, hi := pending[0].s.Seq, pending[len(pending)-1].s.Seq
	// The common case, a batch above everything stored, is this one index lookup.
	rows, err := w.query(overlapQuery, int64(lo), int64(hi))
	if err != nil {
		return nil, err
	}
	var stored []storedBlock
	for rows.Next() {
		var first, last int64
		var n int
		if err := rows.Scan(&first, &last, &n); err != nil {
			rows.Close()
			return nil, err
		}
		stored = append(stored, storedBlock{uint64(first), uint64(last), n})
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, err
	}
	if len(stored) == 0 {
		return pending, writeBlocks(w, chunkShares(pending, nil))
	}

	// The shares of the stored blocks with gaps, by first_seq, loaded when needed.
	loaded := map[uint64][]pendingShare{}
	dirty := map[uint64]bool{}
	var fresh []pendingShare
	for _, p := range pending {
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
			if in, err = loadBlock(w, b.first); err != nil {
				return nil, err
			}
			loaded[b.first] = in
		}
		if _, ok := slices.BinarySearchFunc(in, p.s.Seq, func(q pendingShare, seq uint64) int { return cmp.Compare(q.s.Seq, seq) }); ok {
			continue
		}
		fresh = append(fresh, p)
		dirty[b.first] = true
	}
	if len(fresh) == 0 {
		return nil, nil
	}

	write := fresh // with the shares of the dirty blocks, which are rewritten
	if len(dirty) > 0 {
		write = slices.Clone(fresh)
	}
	var keep []uint64 // first_seq of the stored blocks new ones must not span
	for _, b := range stored {
		if !dirty[b.first] {
			keep = append(keep, b.first)
			continue
		}
		if err := deleteBlock(w, b.first, loaded[b.first]); err != nil {
			return nil, err
		}
		write = append(write, loaded[b.first]...)
	}
	if len(dirty) > 0 {
		slices.SortFunc(write, func(a, b pendingShare) int { return cmp.Compare(a.s.Seq, b.s.Seq) })
	}
	split := func(prev, next uint64) bool {
		i, _ := slices.BinarySearch(keep, prev+1)
		return i < len(keep) && keep[i] < next
	}
	return fresh, writeBlocks(w, chunkShares(write, split))
}

// loadBlock returns the shares of the block at first, in sequence order.
func loadBlock(w *writeTx, first uint64) ([]pendingShare, error) {
	var data []byte
	if err := w.tx.QueryRowContext(w.ctx, `SELECT data FROM share_blocks WHERE first_seq = ?`, int64(first)).Scan(&data); err != nil {
		return nil, fmt.Errorf("share block %d: %w", first, err)
	}
	r, err := readBlock(data)
	if err != nil {
		return nil, fmt.Errorf("share block %d: %w", first, err)
	}
	var out []pendingShare
	for {
		pair, enc, ok, err := r.next()
		if err != nil {
			return nil, fmt.Errorf("share block %d: %w", first, err)
		}
		if !ok {
			return out, nil
		}
		s, err := r.decode(pair, enc)
		if err != nil {
			return nil, fmt.Errorf("share block %d: %w", first, err)
		}
		out = append(out, pendingShare{s: &s, enc: enc, time: s.Time.UnixNano()})
	}
}

// deleteBlock deletes the block at first, whose shares are in.
func deleteBlock(w *writeTx, first uint64, in []pendingShare) error {
	if _, err := w.tx.ExecContext(w.ctx, `DELETE FROM share_blocks WHERE first_seq = ?`, int64(first)); err != nil {
		return fmt.Errorf("share block %d: %w", first, err)
	}
	seen := map[string]bool{}
	for _, p := range in {
		if seen[p.s.Address] {
			continue
		}
		seen[p.s.Address] = true
		if _, err := w.tx.ExecContext(w.ctx, `DELETE FROM share_block_addresses WHERE address = ? AND first_seq = ?`,
			p.s.Address, int64(first)); err != nil {
			return fmt.Errorf("share block %d: %w", first, err)
		}
	}
	return nil
}

// writeBlocks inserts blocks and their rows of share_block_addresses.
func writeBlocks(w *writeTx, blocks []*shareBlock) error {
	args := make([]any, 0, 2*addressChunk)
	for _, b := range blocks {
		if err := w.exec(insertBlockQuery, int64(b.first), int64(b.last), b.minTime, b.maxTime, b.count, b.data()); err != nil {
			return fmt.Errorf("share block %d..%d: %w", b.first, b.last, err)
		}
		addrs := b.addresses()
		for _, n := range pow2Chunks(len(addrs), addressChunk) {
			args = args[:0]
			for _, a := range addrs[:n] {
				args = append(args, a, int64(b.first))
			}
			addrs = addrs[n:]
			if err := w.exec(insertAddressesQuery(n), args...); err != nil {
				return fmt.Errorf("share block %d..%d addresses: %w", b.first, b.last, err)
			}
		}
	}
	return nil
}

func count(w *hashgrid.Worker, s *hashgrid.Share) {
	if s.Result == hashgrid.ShareAccepted {
		w.Accepted++
		w.Work = w.Work.Add(s.Diff)
	} else {
		w.Rejected += 1 + s.Repeats // a sampled reject stands for Repeats more
	}
	if s.Time.After(w.LastShare) {
		w.LastShare = s.Time
	}
}

// workerSums keeps the worker summaries.
var workerSums = sumRows[workerKey, *hashgrid.Worker]{
	what: "workers", chunk: workerChunk, compare: compareWorkerKeys,
	selectQ: selectWorkersQuery, upsertQ: upsertWorkersQuery,
	keyArgs: func(args []any, k workerKey) []any { return append(args, k.address, k.name) },
	scan: func(rows *sql.Rows) (workerKey, *hashgrid.Worker, error) {
		var o hashgrid.Worker
		var acc, rej, hi, lo, last int64
		if err := rows.Scan(&o.Address, &o.Name, &acc, &rej, &hi, &lo, &last); err != nil {
			return workerKey{}, nil, err
		}
		o.Accepted, o.Rejected = uint64(acc), uint64(rej)
		o.Work = hashgrid.Work{Hi: uint64(hi), Lo: uint64(lo)}
		o.LastShare = time.Unix(0, last)
		return workerKey{o.Address, o.Name}, &o, nil
	},
	rowArgs: func(args []any, k workerKey, d, o *hashgrid.Worker, found bool) []any {
		if !found {
			o = &hashgrid.Worker{}
		}
		last := d.LastShare.UnixNano()
		if found {
			last = max(last, o.LastShare.UnixNano())
		}
		work := o.Work.Plus(d.Work)
		return append(args, k.address, k.name, int64(o.Accepted+d.Accepted), int64(o.Rejected+d.Rejected),
			int64(work.Hi), int64(work.Lo), last)
	},
}

func compareWorkerKeys(a, b workerKey) int {
	return cmp.Or(strings.Compare(a.address, b.address), strings.Compare(a.name, b.name))
}

func addTotals(w *writeTx, d *hashgrid.Worker) error {
	var acc, rej, hi, lo int64
	if err := w.queryRow(readTotalsQuery, nil, &acc, &rej, &hi, &lo); err != nil {
		return fmt.Errorf("sqlite: totals: %w", err)
	}
	work := hashgrid.Work{Hi: uint64(hi), Lo: uint64(lo)}.Plus(d.Work)
	if err := w.exec(writeTotalsQuery, acc+int64(d.Accepted), rej+int64(d.Rejected), int64(work.Hi), int64(work.Lo)); err != nil {
		return fmt.Errorf("sqlite: totals: %w", err)
	}
	return nil
}

// LastSeq implements hashgrid.ShareStore. It reads through the writer connection so
// that it sees every commit AddShares has returned from. Pruned shares count as
// stored: the stream must not replay them.
func (db *DB) LastSeq(ctx context.Context) (uint64, error) {
	var seq int64
	if err := db.w.QueryRowContext(ctx, `SELECT COALESCE(MAX(last_seq), 0) FROM share_blocks`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("sqlite: last seq: %w", err)
	}
	return max(uint64(seq), db.pruned.Load()), nil
}

// Shares implements hashgrid.ShareStore. It reads the blocks from the one holding
// after+1 (or the first above it) in sequence order, until it has limit shares or
// passes upto. Pruned shares are not returned: a caller that needs all of a range
// checks it against PrunedSeq.
func (db *DB) Shares(ctx context.Context, after, upto uint64, limit int) ([]hashgrid.Share, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := db.r.QueryContext(ctx, `SELECT first_seq, data FROM share_blocks
		WHERE first_seq >= (SELECT first_seq FROM share_blocks WHERE last_seq > ? ORDER BY last_seq LIMIT 1)
			AND first_seq <= ?
		ORDER BY first_seq`, seqBound(after), seqBound(upto))
	if err != nil {
		return nil, fmt.Errorf("sqlite: shares: %w", err)
	}
	defer rows.Close()
	var out []hashgrid.Share
	for len(out) < limit && rows.Next() {
		var first int64
		var data []byte
		if err := rows.Scan(&first, &data); err != nil {
			return nil, fmt.Errorf("sqlite: shares: %w", err)
		}
		r, err := readBlock(data)
		if err != nil {
			return nil, fmt.Errorf("sqlite: share block %d: %w", first, err)
		}
		for len(out) < limit {
			pair, enc, ok, err := r.next()
			if err != nil {
				return nil, fmt.Errorf("sqlite: share block %d: %w", first, err)
			}
			if !ok {
				break
			}
			s, err := r.decode(pair, enc)
			if err != nil {
				return nil, fmt.Errorf("sqlite: share block %d: %w", first, err)
			}
			if s.Seq > upto {
				break
			}
			if s.Seq > after && s.Result == hashgrid.ShareAccepted {
				out = append(out, s)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: shares: %w", err)
	}
	return out, nil
}

// SharesFor implements hashgrid.ShareStore; newest means highest sequence. It reads
// only the blocks share_block_addresses lists for address, newest first, and decodes
// only that address's shares in them.
func (db *DB) SharesFor(ctx context.Context, address string, limit int) ([]hashgrid.Share, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := db.r.QueryContext(ctx, `SELECT b.first_seq, b.data
		FROM share_block_addresses a JOIN share_blocks b ON b.first_seq = a.first_seq
		WHERE a.address = ? ORDER BY a.first_seq DESC`, address)
	if err != nil {
		return nil, fmt.Errorf("sqlite: shares for %s: %w", address, err)
	}
	defer rows.Close()
	var out, block []hashgrid.Share
	for len(out) < limit && rows.Next() {
		var first int64
		var data []byte
		if err := rows.Scan(&first, &data); err != nil {
			return nil, fmt.Errorf("sqlite: shares for %s: %w", address, err)
		}
		r, err := readBlock(data)
		if err != nil {
			return nil, fmt.Errorf("sqlite: share block %d: %w", first, err)
		}
		block = block[:0]
		for {
			pair, enc, ok, err := r.next()
			if err != nil {
				return nil, fmt.Errorf("sqlite: share block %d: %w", first, err)
			}
			if !ok {
				break
			}
			if r.pairs[pair].address != address {
				continue
			}
			s, err := r.decode(pair, enc)
			if err != nil {
				return nil, fmt.Errorf("sqlite: share block %d: %w", first, err)
			}
			block = append(block, s)
		}
		for i := len(block) - 1; i >= 0 && len(out) < limit; i-- {
			out = append(out, block[i])
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: shares for %s: %w", address, err)
	}
	return out, nil
}

// WorkBetween implements hashgrid.ShareStore, ordered by address and name. The whole
// minutes inside [from, to) are read from work_minutes; only the shares of the partial
// minutes at its edges (none if from and to are on minutes) are read from their blocks.
// Both reads are in one transaction, so they see the same commits. An edge that falls
// where shares were pruned cannot be summed exactly and is refused (EINVALID): such a
// window must start and end on whole minutes, and where the minutes were rolled up
// into hours (see Rollup), on whole hours.
func (db *DB) WorkBetween(ctx context.Context, from, to time.Time) ([]hashgrid.Worker, error) {
	lo, hi := boundTime(from), boundTime(to)
	if lo >= hi {
		return nil, nil
	}
	tx, err := db.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: work between: %w", err)
	}
	defer tx.Rollback()
	sums := map[workerKey]*workSum{}
	// Below rolled_until only hours are kept.
	if lo, err = sumRolled(ctx, tx, lo, hi, sums); err != nil {
		return nil, err
	}
	if lo >= hi {
		return sortedWorkers(sums), nil
	}
	// Whole minutes are [first, last); their times [first·minute, last·minute) lie in
	// [lo, hi), so neither product overflows.
	first, last := minuteAtOrAfter(lo), minuteOf(hi)
	if err := checkEdges(ctx, tx, lo, hi, first, last); err != nil {
		return nil, err
	}
	if first >= last {
		if err := sumBlocks(ctx, tx, lo, hi, sums); err != nil {
			return nil, err
		}
		return sortedWorkers(sums), nil
	}
	if err := sumMinutes(ctx, tx, first, last, sums); err != nil {
		return nil, err
	}
	if err := sumBlocks(ctx, tx, lo, first*minuteNanos, sums); err != nil {
		return nil, err
	}
	if err := sumBlocks(ctx, tx, last*minuteNanos, hi, sums); err != nil {
		return nil, err
	}
	return sortedWorkers(sums), nil
}

// checkEdges fails if a part of [lo, hi) that WorkBetween reads from share blocks
// (all of it when it holds no whole minute, else the partial minutes at either end)
// starts at or before the latest pruned share: some of its shares may be gone.
func checkEdges(ctx context.Context, tx *sql.Tx, lo, hi, first, last int64) error {
	var edges [][2]int64
	if first >= last {
		edges = append(edges, [2]int64{lo, hi})
	} else {
		edges = append(edges, [2]int64{lo, first * minuteNanos}, [2]int64{last * minuteNanos, hi})
	}
	var prunedSeq, prunedTime int64
	if err := tx.QueryRowContext(ctx, `SELECT pruned_seq, pruned_time FROM retention WHERE id = 1`).Scan(&prunedSeq, &prunedTime); err != nil {
		return fmt.Errorf("sqlite: work between: %w", err)
	}
	if prunedSeq == 0 {
		return nil
	}
	for _, e := range edges {
		if e[0] < e[1] && e[0] <= prunedTime {
			return hashgrid.Errorf(hashgrid.EINVALID, "sqlite: work between: shares up to %s are pruned, so the part of the window "+
				"from %s to %s cannot be summed; start and end it on whole minutes", loadTime(prunedTime).Format(time.RFC3339Nano),
				loadTime(e[0]).Format(time.RFC3339Nano), loadTime(e[1]).Format(time.RFC3339Nano))
		}
	}
	return nil
}

// sortedWorkers returns sums as workers ordered by address and name, nil if empty.
func sortedWorkers(sums map[workerKey]*workSum) []hashgrid.Worker {
	if len(sums) == 0 {
		return nil
	}
	out := make([]hashgrid.Worker, 0, len(sums))
	for k, w := range sums {
		out = append(out, hashgrid.Worker{Address: k.address, Name: k.name, Accepted: w.accepted, Rejected: w.rejected,
			Work: w.work, LastShare: loadTime(w.last)})
	}
	slices.SortFunc(out, func(a, b hashgrid.Worker) int {
		return compareWorkerKeys(workerKey{a.Address, a.Name}, workerKey{b.Address, b.Name})
	})
	return out
}

// sumBlocks adds the shares with times in [lo, hi) to sums, reading the blocks that
// overlap it. A block overlapping [lo, hi) starts at most MaxBlockTimeSpan before lo,
// which bounds the index range read; shares are then filtered by their own time. Only
// the fields summed are read of each share.
func sumBlocks(ctx context.Context, tx *sql.Tx, lo, hi int64, sums map[workerKey]*workSum) error {
	if lo >= hi {
		return nil
	}
	start := int64(math.MinInt64)
	if lo > math.MinInt64+int64(MaxBlockTimeSpan) {
		start = lo - int64(MaxBlockTimeSpan)
	}
	rows, err := tx.QueryContext(ctx, `SELECT first_seq, data FROM share_blocks
		WHERE min_time >= ? AND min_time < ? AND max_time >= ?`, start, hi, lo)
	if err != nil {
		return fmt.Errorf("sqlite: work between: %w", err)
	}
	defer rows.Close()
	var bySlot []*workSum // the block's pairs' sums
	for rows.Next() {
		var first int64
		var data []byte
		if err := rows.Scan(&first, &data); err != nil {
			return fmt.Errorf("sqlite: work between: %w", err)
		}
		r, err := readBlock(data)
		if err != nil {
			return fmt.Errorf("sqlite: share block %d: %w", first, err)
		}
		bySlot = slices.Grow(bySlot[:0], len(r.pairs))[:len(r.pairs)]
		clear(bySlot)
		for {
			pair, enc, ok, err := r.next()
			if err != nil {
				return fmt.Errorf("sqlite: share block %d: %w", first, err)
			}
			if !ok {
				break
			}
			s, err := r.summarize(pair, enc)
			if err != nil {
				return fmt.Errorf("sqlite: share block %d: %w", first, err)
			}
			t := s.time
			if t < lo || t >= hi {
				continue
			}
			w := bySlot[pair]
			if w == nil {
				k := r.pairs[pair]
				if w = sums[k]; w == nil {
					w = &workSum{last: math.MinInt64}
					sums[k] = w
				}
				bySlot[pair] = w
			}
			w.count(s.result, s.diff, s.actual, s.repeats, t)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: work between: %w", err)
	}
	return nil
}

// v1ShareColumns are the columns of migration 1's shares table.
const v1ShareColumns = `seq, time, address, worker, job_id, height, diff_hi, diff_lo, actual, hash, result, block, user_agent, remote`

// moveSharesToBlocks is migration 2's step: it moves the rows of migration 1's shares
// table into blocks, MaxBlockShares rows at a time in sequence order, and drops the
// table. A row the share codec cannot encode (a string over its limit, an unknown
// result) fails the migration rather than being lost; the pool never stored one.
func moveSharesToBlocks(ctx context.Context, tx *sql.Tx) error {
	w := &writeTx{ctx: ctx, tx: tx}
	after := int64(0)
	for {
		rows, err := tx.QueryContext(ctx, `SELECT `+v1ShareColumns+` FROM shares WHERE seq > ? ORDER BY seq LIMIT ?`,
			after, MaxBlockShares)
		if err != nil {
			return fmt.Errorf("move shares after %d: %w", after, err)
		}
		var pending []pendingShare
		for rows.Next() {
			s, t, err := scanV1Share(rows)
			if err != nil {
				rows.Close()
				return err
			}
			pending = append(pending, pendingShare{s: s, time: t})
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("move shares after %d: %w", after, err)
		}
		if len(pending) == 0 {
			break
		}
		for i := range pending {
			p := &pending[i]
			if p.enc, err = p.s.MarshalBinary(); err != nil {
				return fmt.Errorf("share %d: %w", p.s.Seq, err)
			}
		}
		// Chunks are read in sequence order, so no block spans another.
		if err := writeBlocks(w, chunkShares(pending, nil)); err != nil {
			return err
		}
		after = int64(pending[len(pending)-1].s.Seq)
	}
	if _, err := tx.ExecContext(ctx, `DROP INDEX shares_time; DROP INDEX shares_address_seq; DROP TABLE shares;`); err != nil {
		return fmt.Errorf("drop shares: %w", err)
	}
	return nil
}

func scanV1Share(rows *sql.Rows) (*hashgrid.Share, int64, error) {
	var s hashgrid.Share
	var seq, t, hi, lo, actual int64
	var hash []byte
	var result int
	if err := rows.Scan(&seq, &t, &s.Address, &s.Worker, &s.JobID, &s.Height, &hi, &lo, &actual, &hash,
		&result, &s.Block, &s.UserAgent, &s.Remote); err != nil {
		return nil, 0, fmt.Errorf("move shares: %w", err)
	}
	if len(hash) != len(s.Hash) {
		return nil, 0, fmt.Errorf("share %d: hash of %d bytes", seq, len(hash))
	}
	if result < 0 || result > math.MaxUint8 {
		return nil, 0, fmt.Errorf("share %d: result %d", seq, result)
	}
	s.Seq = uint64(seq)
	s.Time = loadTime(t)
	s.Diff = hashgrid.Diff(uint64(hi)<<32 | uint64(lo))
	s.Actual = hashgrid.Diff(uint64(actual))
	copy(s.Hash[:], hash)
	s.Result = hashgrid.ShareResult(result)
	return &s, t, nil
}
