// Package sqlite implements hashgrid.ShareStore on an embedded SQLite database
// (modernc.org/sqlite, pure Go).
//
// All writes go through one connection, so transactions never contend for SQLite's
// single write lock inside the process; reads use a separate pool of read-only
// connections, which WAL mode lets run beside the writer. Commits are fsynced
// (synchronous=FULL): the share stream is pruned up to what the store holds, so what
// the store has committed must survive a power cut.
//
// 128-bit work and 64-bit difficulties are stored exactly as integer columns (split
// into halves where SQL sums them), never as floats. The package does not retain or
// prune old shares.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// BusyTimeout is how long a statement waits for a lock held by another process (a
// backup, the sqlite3 shell) before failing.
const BusyTimeout = 5 * time.Second

// MaxReaders bounds the read connections.
const MaxReaders = 4

// DB is a ShareStore in one SQLite file.
type DB struct {
	path string
	w    *sql.DB // exactly one connection: every write
	r    *sql.DB // read-only connections
}

var _ hashgrid.ShareStore = (*DB)(nil)

// Open opens or creates the database at path and brings its schema up to date.
func Open(path string) (*DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite: invalid database path %q", path)
	}
	pragmas := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)",
		BusyTimeout.Milliseconds())
	w, err := sql.Open("sqlite", path+"?"+pragmas+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	db := &DB{path: path, w: w}
	if err := db.migrate(context.Background()); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(MaxReaders)
	r.SetMaxIdleConns(MaxReaders)
	db.r = r
	return db, nil
}

// Close closes the database.
func (db *DB) Close() error {
	return errors.Join(db.r.Close(), db.w.Close())
}

// migrations are applied in order, each in its own transaction together with the new
// user_version; a database's user_version is the number applied. Never edit one that
// has shipped: append a new one.
var migrations = []string{
	// 1: shares, worker summaries, pool totals, blocks.
	`
CREATE TABLE shares (
	seq        INTEGER PRIMARY KEY,  -- stream sequence, 1..2^63-1
	time       INTEGER NOT NULL,     -- Unix nanoseconds
	address    TEXT    NOT NULL,
	worker     TEXT    NOT NULL,
	job_id     TEXT    NOT NULL,
	height     INTEGER NOT NULL,
	diff_hi    INTEGER NOT NULL,     -- Diff >> 32 and Diff & 0xffffffff: halves keep SUM exact
	diff_lo    INTEGER NOT NULL,
	actual     INTEGER NOT NULL,     -- Diff bits as a signed integer
	hash       BLOB    NOT NULL,
	result     INTEGER NOT NULL,     -- hashgrid.ShareResult; 0 accepted
	block      INTEGER NOT NULL,
	user_agent TEXT    NOT NULL,
	remote     TEXT    NOT NULL
);
CREATE INDEX shares_time ON shares (time);
CREATE INDEX shares_address_seq ON shares (address, seq);

CREATE TABLE workers (
	address    TEXT    NOT NULL,
	name       TEXT    NOT NULL,
	accepted   INTEGER NOT NULL,
	rejected   INTEGER NOT NULL,
	work_hi    INTEGER NOT NULL,     -- hashgrid.Work words, bits as signed integers
	work_lo    INTEGER NOT NULL,
	last_share INTEGER NOT NULL,     -- Unix nanoseconds
	PRIMARY KEY (address, name)
) WITHOUT ROWID;

CREATE TABLE totals (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	accepted INTEGER NOT NULL,
	rejected INTEGER NOT NULL,
	work_hi  INTEGER NOT NULL,
	work_lo  INTEGER NOT NULL
);
INSERT INTO totals VALUES (1, 0, 0, 0, 0);

CREATE TABLE blocks (
	hash          BLOB    PRIMARY KEY,
	height        INTEGER NOT NULL,
	prev_hash     BLOB    NOT NULL,
	time          INTEGER NOT NULL,  -- Unix nanoseconds
	address       TEXT    NOT NULL,
	worker        TEXT    NOT NULL,
	reward        INTEGER NOT NULL,  -- satoshis
	fees          INTEGER NOT NULL,  -- satoshis
	network_diff  REAL    NOT NULL,  -- for display; never summed or paid on
	status        INTEGER NOT NULL,
	reason        TEXT    NOT NULL,
	confirmations INTEGER NOT NULL,
	share_seq     INTEGER NOT NULL   -- no foreign key: a block can be stored before its share
) WITHOUT ROWID;
CREATE INDEX blocks_time ON blocks (time, height);
`,
}

func (db *DB) migrate(ctx context.Context) error {
	var version int
	if err := db.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("sqlite: %s: read schema version: %w", db.path, err)
	}
	if version > len(migrations) {
		return fmt.Errorf("sqlite: %s: schema version %d is newer than this program's %d", db.path, version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		tx, err := db.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqlite: migrate to %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migrate to %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migrate to %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite: migrate to %d: %w", v+1, err)
		}
	}
	return nil
}

// SchemaVersion returns the number of migrations applied.
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := db.r.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlite: schema version: %w", err)
	}
	return v, nil
}

// Times are stored as Unix nanoseconds, which cover 1678 to 2262.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

func storedTime(t time.Time) (int64, error) {
	if t.Before(minTime) || t.After(maxTime) {
		return 0, fmt.Errorf("time %v outside the storable range", t)
	}
	return t.UnixNano(), nil
}

// boundTime clamps a query bound into the storable range.
func boundTime(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

func loadTime(n int64) time.Time { return time.Unix(0, n).UTC() }

// seqBound clamps a sequence used as a query bound to the stored range.
func seqBound(s uint64) int64 {
	if s > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(s)
}

func checkLimit(limit int) error {
	if limit <= 0 {
		return fmt.Errorf("sqlite: limit %d must be positive", limit)
	}
	return nil
}

type workerKey struct{ address, name string }

// insertChunk is how many shares one INSERT statement carries: one statement per row
// spends most of its time crossing database/sql, one per batch would need a statement
// per batch size. 64 rows use 896 of SQLite's 32766 parameters.
const insertChunk = 64

const shareColumnCount = 14

// insertShares returns an INSERT for n shares that reports the sequences it stored:
// INSERT OR IGNORE skips stored sequences, and RETURNING lists only inserted rows.
func insertShares(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT OR IGNORE INTO shares (` + shareColumns + `) VALUES `)
	row := "(" + strings.Repeat("?, ", shareColumnCount-1) + "?)"
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	b.WriteString(" RETURNING seq")
	return b.String()
}

// AddShares implements hashgrid.ShareStore. Summaries and totals count only the rows
// this call inserted, so a batch replayed after a crash changes nothing.
func (db *DB) AddShares(ctx context.Context, shares []hashgrid.Share) error {
	if len(shares) == 0 {
		return nil
	}
	times := make([]int64, len(shares))
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
		times[i] = t
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: add shares: %w", err)
	}
	defer tx.Rollback()
	var full *sql.Stmt // the statement for a full chunk, prepared once per call
	deltas := map[workerKey]*hashgrid.Worker{}
	var total hashgrid.Worker
	inserted := make(map[int64]bool, len(shares))
	args := make([]any, 0, insertChunk*shareColumnCount)
	for start := 0; start < len(shares); start += insertChunk {
		chunk := shares[start:min(start+insertChunk, len(shares))]
		args = args[:0]
		for i := range chunk {
			s := &chunk[i]
			args = append(args, int64(s.Seq), times[start+i], s.Address, s.Worker, s.JobID, s.Height,
				int64(s.Diff>>32), int64(s.Diff&0xffffffff), int64(s.Actual), s.Hash[:], int(s.Result), s.Block,
				s.UserAgent, s.Remote)
		}
		var rows *sql.Rows
		if len(chunk) == insertChunk {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, insertShares(insertChunk)); err != nil {
					return fmt.Errorf("sqlite: add shares: %w", err)
				}
				defer full.Close()
			}
			rows, err = full.QueryContext(ctx, args...)
		} else {
			rows, err = tx.QueryContext(ctx, insertShares(len(chunk)), args...)
		}
		if err != nil {
			return fmt.Errorf("sqlite: add shares %d..%d: %w", chunk[0].Seq, chunk[len(chunk)-1].Seq, err)
		}
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				rows.Close()
				return fmt.Errorf("sqlite: add shares: %w", err)
			}
			inserted[seq] = true
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("sqlite: add shares: %w", err)
		}
	}
	for i := range shares {
		s := &shares[i]
		// Only rows this call inserted are counted, each once even if the batch repeats
		// a sequence (the first copy is the one stored).
		if !inserted[int64(s.Seq)] {
			continue
		}
		delete(inserted, int64(s.Seq))
		k := workerKey{s.Address, s.Worker}
		d := deltas[k]
		if d == nil {
			d = &hashgrid.Worker{Address: s.Address, Name: s.Worker}
			deltas[k] = d
		}
		count(d, s)
		count(&total, s)
	}
	if len(deltas) == 0 {
		return nil
	}
	keys := make([]workerKey, 0, len(deltas))
	for k := range deltas {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b workerKey) int {
		return strings.Compare(a.address+"\x00"+a.name, b.address+"\x00"+b.name)
	})
	for _, k := range keys {
		if err := addWorker(ctx, tx, deltas[k]); err != nil {
			return err
		}
	}
	if err := addTotals(ctx, tx, &total); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: add shares: commit: %w", err)
	}
	return nil
}

func count(w *hashgrid.Worker, s *hashgrid.Share) {
	if s.Result == hashgrid.ShareAccepted {
		w.Accepted++
		w.Work = w.Work.Add(s.Diff)
	} else {
		w.Rejected++
	}
	if s.Time.After(w.LastShare) {
		w.LastShare = s.Time
	}
}

// addWorker adds d's counts to the stored summary. The 128-bit sum is done here, not in
// SQL, whose integers are 64 bits.
func addWorker(ctx context.Context, tx *sql.Tx, d *hashgrid.Worker) error {
	var acc, rej, hi, lo int64
	last := int64(math.MinInt64)
	err := tx.QueryRowContext(ctx, `SELECT accepted, rejected, work_hi, work_lo, last_share
		FROM workers WHERE address = ? AND name = ?`, d.Address, d.Name).Scan(&acc, &rej, &hi, &lo, &last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: worker %s.%s: %w", d.Address, d.Name, err)
	}
	work := hashgrid.Work{Hi: uint64(hi), Lo: uint64(lo)}.Plus(d.Work)
	_, err = tx.ExecContext(ctx, `INSERT INTO workers (address, name, accepted, rejected, work_hi, work_lo, last_share)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (address, name) DO UPDATE SET accepted = excluded.accepted, rejected = excluded.rejected,
			work_hi = excluded.work_hi, work_lo = excluded.work_lo, last_share = excluded.last_share`,
		d.Address, d.Name, acc+int64(d.Accepted), rej+int64(d.Rejected), int64(work.Hi), int64(work.Lo),
		max(last, d.LastShare.UnixNano()))
	if err != nil {
		return fmt.Errorf("sqlite: worker %s.%s: %w", d.Address, d.Name, err)
	}
	return nil
}

func addTotals(ctx context.Context, tx *sql.Tx, d *hashgrid.Worker) error {
	var acc, rej, hi, lo int64
	if err := tx.QueryRowContext(ctx, `SELECT accepted, rejected, work_hi, work_lo FROM totals WHERE id = 1`).
		Scan(&acc, &rej, &hi, &lo); err != nil {
		return fmt.Errorf("sqlite: totals: %w", err)
	}
	work := hashgrid.Work{Hi: uint64(hi), Lo: uint64(lo)}.Plus(d.Work)
	if _, err := tx.ExecContext(ctx, `UPDATE totals SET accepted = ?, rejected = ?, work_hi = ?, work_lo = ? WHERE id = 1`,
		acc+int64(d.Accepted), rej+int64(d.Rejected), int64(work.Hi), int64(work.Lo)); err != nil {
		return fmt.Errorf("sqlite: totals: %w", err)
	}
	return nil
}

// LastSeq implements hashgrid.ShareStore. It reads through the writer connection so
// that it sees every commit AddShares has returned from.
func (db *DB) LastSeq(ctx context.Context) (uint64, error) {
	var seq int64
	if err := db.w.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM shares`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("sqlite: last seq: %w", err)
	}
	return uint64(seq), nil
}

const shareColumns = `seq, time, address, worker, job_id, height, diff_hi, diff_lo, actual, hash, result, block, user_agent, remote`

// Shares implements hashgrid.ShareStore.
func (db *DB) Shares(ctx context.Context, after, upto uint64, limit int) ([]hashgrid.Share, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	return db.queryShares(ctx, `SELECT `+shareColumns+` FROM shares
		WHERE seq > ? AND seq <= ? AND result = 0 ORDER BY seq LIMIT ?`, seqBound(after), seqBound(upto), limit)
}

// SharesFor implements hashgrid.ShareStore; newest means highest sequence.
func (db *DB) SharesFor(ctx context.Context, address string, limit int) ([]hashgrid.Share, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	return db.queryShares(ctx, `SELECT `+shareColumns+` FROM shares
		WHERE address = ? ORDER BY seq DESC LIMIT ?`, address, limit)
}

func (db *DB) queryShares(ctx context.Context, query string, args ...any) ([]hashgrid.Share, error) {
	rows, err := db.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: shares: %w", err)
	}
	defer rows.Close()
	var out []hashgrid.Share
	for rows.Next() {
		var s hashgrid.Share
		var seq, t, hi, lo, actual int64
		var hash []byte
		var result int
		if err := rows.Scan(&seq, &t, &s.Address, &s.Worker, &s.JobID, &s.Height, &hi, &lo, &actual, &hash,
			&result, &s.Block, &s.UserAgent, &s.Remote); err != nil {
			return nil, fmt.Errorf("sqlite: shares: %w", err)
		}
		if len(hash) != len(s.Hash) {
			return nil, fmt.Errorf("sqlite: share %d: hash of %d bytes", seq, len(hash))
		}
		s.Seq = uint64(seq)
		s.Time = loadTime(t)
		s.Diff = hashgrid.Diff(uint64(hi)<<32 | uint64(lo))
		s.Actual = hashgrid.Diff(uint64(actual))
		copy(s.Hash[:], hash)
		s.Result = hashgrid.ShareResult(result)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: shares: %w", err)
	}
	return out, nil
}

// PutBlock implements hashgrid.ShareStore.
func (db *DB) PutBlock(ctx context.Context, b hashgrid.Block) error {
	t, err := storedTime(b.Time)
	if err != nil {
		return fmt.Errorf("sqlite: put block %x: %w", displayHash(b.Hash), err)
	}
	if b.ShareSeq > math.MaxInt64 {
		return fmt.Errorf("sqlite: put block %x: share sequence %d too large", displayHash(b.Hash), b.ShareSeq)
	}
	_, err = db.w.ExecContext(ctx, `INSERT INTO blocks
		(hash, height, prev_hash, time, address, worker, reward, fees, network_diff, status, reason, confirmations, share_seq)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (hash) DO UPDATE SET height = excluded.height, prev_hash = excluded.prev_hash,
			time = excluded.time, address = excluded.address, worker = excluded.worker, reward = excluded.reward,
			fees = excluded.fees, network_diff = excluded.network_diff, status = excluded.status,
			reason = excluded.reason, confirmations = excluded.confirmations, share_seq = excluded.share_seq`,
		b.Hash[:], b.Height, b.PrevHash[:], t, b.Address, b.Worker, b.Reward, b.Fees, b.NetworkDiff,
		int(b.Status), b.Reason, b.Confirmations, int64(b.ShareSeq))
	if err != nil {
		return fmt.Errorf("sqlite: put block %x: %w", displayHash(b.Hash), err)
	}
	return nil
}

// displayHash reverses an internal-order hash into the order block explorers show.
func displayHash(h [32]byte) []byte {
	out := h[:]
	out = slices.Clone(out)
	slices.Reverse(out)
	return out
}

const blockColumns = `hash, height, prev_hash, time, address, worker, reward, fees, network_diff, status, reason, confirmations, share_seq`

// Blocks implements hashgrid.ShareStore; newest means latest found.
func (db *DB) Blocks(ctx context.Context, limit int) ([]hashgrid.Block, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+blockColumns+` FROM blocks ORDER BY time DESC, height DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: blocks: %w", err)
	}
	defer rows.Close()
	var out []hashgrid.Block
	for rows.Next() {
		b, err := scanBlock(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: blocks: %w", err)
	}
	return out, nil
}

// BlockByHash implements hashgrid.ShareStore.
func (db *DB) BlockByHash(ctx context.Context, hash [32]byte) (hashgrid.Block, error) {
	b, err := scanBlock(db.r.QueryRowContext(ctx, `SELECT `+blockColumns+` FROM blocks WHERE hash = ?`, hash[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return hashgrid.Block{}, hashgrid.Errorf(hashgrid.ENOTFOUND, "block %x not found", displayHash(hash))
	}
	return b, err
}

func scanBlock(row interface{ Scan(...any) error }) (hashgrid.Block, error) {
	var b hashgrid.Block
	var hash, prev []byte
	var t, seq int64
	var status int
	err := row.Scan(&hash, &b.Height, &prev, &t, &b.Address, &b.Worker, &b.Reward, &b.Fees, &b.NetworkDiff,
		&status, &b.Reason, &b.Confirmations, &seq)
	if errors.Is(err, sql.ErrNoRows) {
		return b, err
	}
	if err != nil {
		return b, fmt.Errorf("sqlite: block: %w", err)
	}
	if len(hash) != len(b.Hash) || len(prev) != len(b.PrevHash) {
		return b, fmt.Errorf("sqlite: block: hash of %d bytes, previous of %d", len(hash), len(prev))
	}
	copy(b.Hash[:], hash)
	copy(b.PrevHash[:], prev)
	b.Time = loadTime(t)
	b.Status = hashgrid.BlockStatus(status)
	b.ShareSeq = uint64(seq)
	return b, nil
}

// Workers implements hashgrid.ShareStore, ordered by address and name.
func (db *DB) Workers(ctx context.Context, address string) ([]hashgrid.Worker, error) {
	q := `SELECT address, name, accepted, rejected, work_hi, work_lo, last_share FROM workers`
	var args []any
	if address != "" {
		q += ` WHERE address = ?`
		args = append(args, address)
	}
	rows, err := db.r.QueryContext(ctx, q+` ORDER BY address, name`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: workers: %w", err)
	}
	defer rows.Close()
	var out []hashgrid.Worker
	for rows.Next() {
		var w hashgrid.Worker
		var acc, rej, hi, lo, last int64
		if err := rows.Scan(&w.Address, &w.Name, &acc, &rej, &hi, &lo, &last); err != nil {
			return nil, fmt.Errorf("sqlite: workers: %w", err)
		}
		w.Accepted, w.Rejected = uint64(acc), uint64(rej)
		w.Work = hashgrid.Work{Hi: uint64(hi), Lo: uint64(lo)}
		w.LastShare = loadTime(last)
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: workers: %w", err)
	}
	return out, nil
}

// WorkBetween implements hashgrid.ShareStore, ordered by address and name. The
// difficulty halves are summed separately so SQLite's 64-bit SUM stays exact for up to
// 2^31 shares in the window.
func (db *DB) WorkBetween(ctx context.Context, from, to time.Time) ([]hashgrid.Worker, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT address, worker,
			SUM(result = 0), SUM(result <> 0),
			SUM(CASE WHEN result = 0 THEN diff_hi ELSE 0 END),
			SUM(CASE WHEN result = 0 THEN diff_lo ELSE 0 END),
			MAX(time)
		FROM shares WHERE time >= ? AND time < ?
		GROUP BY address, worker ORDER BY address, worker`, boundTime(from), boundTime(to))
	if err != nil {
		return nil, fmt.Errorf("sqlite: work between: %w", err)
	}
	defer rows.Close()
	var out []hashgrid.Worker
	for rows.Next() {
		var w hashgrid.Worker
		var acc, rej, hi, lo, last int64
		if err := rows.Scan(&w.Address, &w.Name, &acc, &rej, &hi, &lo, &last); err != nil {
			return nil, fmt.Errorf("sqlite: work between: %w", err)
		}
		w.Accepted, w.Rejected = uint64(acc), uint64(rej)
		w.Work = workOfHalves(uint64(hi), uint64(lo))
		w.LastShare = loadTime(last)
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: work between: %w", err)
	}
	return out, nil
}

// workOfHalves returns hi·2^32 + lo as 128-bit work.
func workOfHalves(hi, lo uint64) hashgrid.Work {
	return hashgrid.Work{Hi: hi >> 32, Lo: hi << 32}.Plus(hashgrid.Work{Lo: lo})
}

// Totals implements hashgrid.ShareStore.
func (db *DB) Totals(ctx context.Context) (accepted, rejected uint64, work hashgrid.Work, err error) {
	var acc, rej, hi, lo int64
	if err := db.r.QueryRowContext(ctx, `SELECT accepted, rejected, work_hi, work_lo FROM totals WHERE id = 1`).
		Scan(&acc, &rej, &hi, &lo); err != nil {
		return 0, 0, hashgrid.Work{}, fmt.Errorf("sqlite: totals: %w", err)
	}
	return uint64(acc), uint64(rej), hashgrid.Work{Hi: uint64(hi), Lo: uint64(lo)}, nil
}
