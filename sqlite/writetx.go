package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The statements every AddShares transaction runs are prepared once, when the store
// opens, on the writer connection: the driver has no statement cache, and preparing them
// per batch cost a quarter of AddShares' CPU. Statements over many rows come in
// power-of-two row counts (see pow2Chunks), so a fixed set serves any batch.

// Most rows one multi-row statement carries; powers of two. At 9 parameters a row at
// most they stay far below SQLite's 32766.
const (
	workerChunk  = 128 // workers read or written by one statement
	addressChunk = 256 // rows of share_block_addresses inserted by one statement
	minuteChunk  = 128 // rows of work_minutes read or written by one statement
)

const (
	overlapQuery = `SELECT first_seq, last_seq, count FROM share_blocks
		WHERE last_seq >= ? AND first_seq <= ? ORDER BY last_seq`
	insertBlockQuery = `INSERT INTO share_blocks (first_seq, last_seq, min_time, max_time, count, data)
		VALUES (?, ?, ?, ?, ?, ?)`
	readTotalsQuery  = `SELECT accepted, rejected, work_hi, work_lo FROM totals WHERE id = 1`
	writeTotalsQuery = `UPDATE totals SET accepted = ?, rejected = ?, work_hi = ?, work_lo = ? WHERE id = 1`
)

func insertAddressesQuery(n int) string {
	return `INSERT INTO share_block_addresses (address, first_seq) VALUES ` + valuesList(n, 2)
}

func selectWorkersQuery(n int) string {
	return `SELECT address, name, accepted, rejected, work_hi, work_lo, last_share
		FROM workers WHERE (address, name) IN (VALUES ` + valuesList(n, 2) + `)`
}

func upsertWorkersQuery(n int) string {
	return `INSERT INTO workers (address, name, accepted, rejected, work_hi, work_lo, last_share)
		VALUES ` + valuesList(n, 7) + `
		ON CONFLICT (address, name) DO UPDATE SET accepted = excluded.accepted, rejected = excluded.rejected,
			work_hi = excluded.work_hi, work_lo = excluded.work_lo, last_share = excluded.last_share`
}

func selectMinutesQuery(n int) string {
	return `SELECT minute, address, worker, accepted, rejected, work_hi, work_lo, last_share, best
		FROM work_minutes WHERE (minute, address, worker) IN (VALUES ` + valuesList(n, 3) + `)`
}

func upsertMinutesQuery(n int) string {
	return `INSERT INTO work_minutes (minute, address, worker, accepted, rejected, work_hi, work_lo, last_share, best)
		VALUES ` + valuesList(n, 9) + `
		ON CONFLICT (minute, address, worker) DO UPDATE SET accepted = excluded.accepted,
			rejected = excluded.rejected, work_hi = excluded.work_hi, work_lo = excluded.work_lo,
			last_share = excluded.last_share, best = excluded.best`
}

// valuesList returns "(?, ?), (?, ?)" for rows rows of cols parameters.
func valuesList(rows, cols int) string {
	row := "(" + strings.Repeat("?, ", cols-1) + "?)"
	var b strings.Builder
	b.Grow(rows * (len(row) + 2))
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}

// pow2Chunks splits n rows into runs whose lengths are powers of two up to max (itself
// a power of two), largest first: 300 rows at most 128 a run are 128, 128, 32, 8, 4.
func pow2Chunks(n, max int) []int {
	var out []int
	for n > 0 {
		c := max
		for c > n {
			c >>= 1
		}
		out = append(out, c)
		n -= c
	}
	return out
}

// writeQueries lists the queries prepared when the store opens.
func writeQueries() []string {
	qs := []string{overlapQuery, insertBlockQuery, readTotalsQuery, writeTotalsQuery}
	for n := 1; n <= addressChunk; n *= 2 {
		qs = append(qs, insertAddressesQuery(n))
	}
	for n := 1; n <= workerChunk; n *= 2 {
		qs = append(qs, selectWorkersQuery(n), upsertWorkersQuery(n))
	}
	for n := 1; n <= minuteChunk; n *= 2 {
		qs = append(qs, selectMinutesQuery(n), upsertMinutesQuery(n))
	}
	return qs
}

// prepareWrites prepares writeQueries on the writer connection, which must not be in a
// transaction (it is the pool's only connection).
func prepareWrites(ctx context.Context, w *sql.DB) (map[string]*sql.Stmt, error) {
	out := map[string]*sql.Stmt{}
	for _, q := range writeQueries() {
		st, err := w.PrepareContext(ctx, q)
		if err != nil {
			closeStmts(out)
			return nil, fmt.Errorf("sqlite: prepare: %w", err)
		}
		out[q] = st
	}
	return out, nil
}

func closeStmts(m map[string]*sql.Stmt) error {
	var errs []error
	for _, st := range m {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}

// writeTx is a write transaction with the statements it runs: those prepared when the
// store opened if there are (not in a migration, which runs before), otherwise
// prepared in the transaction on first use.
type writeTx struct {
	ctx    context.Context
	tx     *sql.Tx
	shared map[string]*sql.Stmt
	local  map[string]*sql.Stmt
}

func (w *writeTx) stmt(query string) (*sql.Stmt, error) {
	if st, ok := w.shared[query]; ok {
		return w.tx.StmtContext(w.ctx, st), nil
	}
	if st, ok := w.local[query]; ok {
		return st, nil
	}
	st, err := w.tx.PrepareContext(w.ctx, query)
	if err != nil {
		return nil, err
	}
	if w.local == nil {
		w.local = map[string]*sql.Stmt{}
	}
	w.local[query] = st
	return st, nil
}

func (w *writeTx) exec(query string, args ...any) error {
	st, err := w.stmt(query)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(w.ctx, args...)
	return err
}

func (w *writeTx) query(query string, args ...any) (*sql.Rows, error) {
	st, err := w.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(w.ctx, args...)
}

// queryRow scans the one row of query with args into dest, or fails with
// sql.ErrNoRows.
func (w *writeTx) queryRow(query string, args []any, dest ...any) error {
	rows, err := w.query(query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		return errors.Join(rows.Err(), sql.ErrNoRows)
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	return rows.Close()
}

// sumRows describes a table of sums kept per key, whose rows AddShares reads, adds its
// deltas to in Go (SQL integers are 64 bits, the work sums 128) and writes back, many
// keys a statement: the worker summaries and work_minutes.
type sumRows[K comparable, V any] struct {
	what    string                      // for errors
	chunk   int                         // most keys a statement
	compare func(a, b K) int            // key order, so that writes come in a fixed order
	selectQ func(n int) string          // reads the rows of n keys
	upsertQ func(n int) string          // writes n rows
	keyArgs func(args []any, k K) []any // appends a key's parameters for selectQ
	scan    func(*sql.Rows) (K, V, error)
	// rowArgs appends the parameters of k's new row for upsertQ: the delta d plus the
	// stored row old, if found.
	rowArgs func(args []any, k K, d, old V, found bool) []any
}

// add adds deltas to the stored rows.
func (t sumRows[K, V]) add(w *writeTx, deltas map[K]V) error {
	keys := make([]K, 0, len(deltas))
	for k := range deltas {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, t.compare)
	args := make([]any, 0, 8*t.chunk)
	for _, n := range pow2Chunks(len(keys), t.chunk) {
		chunk := keys[:n]
		keys = keys[n:]
		args = args[:0]
		for _, k := range chunk {
			args = t.keyArgs(args, k)
		}
		rows, err := w.query(t.selectQ(n), args...)
		if err != nil {
			return fmt.Errorf("sqlite: %s: %w", t.what, err)
		}
		old := make(map[K]V, n)
		for rows.Next() {
			k, v, err := t.scan(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("sqlite: %s: %w", t.what, err)
			}
			old[k] = v
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("sqlite: %s: %w", t.what, err)
		}
		args = args[:0]
		for _, k := range chunk {
			o, found := old[k]
			args = t.rowArgs(args, k, deltas[k], o, found)
		}
		if err := w.exec(t.upsertQ(n), args...); err != nil {
			return fmt.Errorf("sqlite: %s: %w", t.what, err)
		}
	}
	return nil
}
