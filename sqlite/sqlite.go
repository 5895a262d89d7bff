// Package sqlite implements hashgrid.ShareStore on an embedded SQLite database
// (modernc.org/sqlite, pure Go).
//
// All writes go through one connection, so transactions never contend for SQLite's
// single write lock inside the process; reads use a separate pool of read-only
// connections, which WAL mode lets run beside the writer. Commits are fsynced
// (synchronous=FULL): the share stream is pruned up to what the store holds, so what
// the store has committed must survive a power cut.
//
// Shares are kept in blocks, not one row each: a row of share_blocks holds the shares
// of one AddShares batch (or a chunk of one, within MaxBlockShares, MaxBlockBytes and
// MaxBlockTimeSpan) encoded with the share codec (hashgrid.Share.MarshalBinary), with
// the columns queries select blocks by: first_seq, last_seq, min_time, max_time and
// count. Blocks' sequence ranges never overlap, so Shares reads consecutive blocks in
// order; SharesFor reads the blocks share_block_addresses lists for an address (one row
// per address and block) and decodes only that address's shares. WorkBetween reads the
// whole minutes of its window from work_minutes, which holds each worker's summary of
// every minute (the minute is the share's Unix nanoseconds divided by 60e9, rounded
// down), kept by AddShares in the same transaction; only the shares of the partial
// minutes at the window's edges are read from the blocks overlapping them, filtered by
// their own times, and only the fields summed are read. Its cost thus grows with the
// workers and minutes of the window and the shares of at most two partial minutes, not
// with all the shares in it. Adding a batch costs a few statements (prepared once, when
// the store opens) whatever its size; a query pays for reading whole blocks. A share the codec cannot encode (a string over its limit, such as
// hashgrid.MaxShareAddressLen) is refused as EINVALID; the pool never builds one.
//
// 128-bit work is stored exactly as two 64-bit integer columns and summed in Go, never
// as floats.
//
// Raw shares are not kept forever: Prune deletes the oldest share blocks, in bounded
// transactions, up to what the caller says is still needed (see Retention), and gives
// the pages back to the file system by incremental vacuum. What is pruned is always a
// prefix of the sequence, recorded in the retention row: LastSeq still answers the
// highest sequence ever stored, and AddShares skips a replayed share below the prefix
// as already stored, so the stream is never replayed twice into the summaries. The
// summaries (workers, totals, and work_minutes with each minute's best share) are
// never pruned: they are what remains of pruned shares. Minutes older than the raw
// shares (and than Retention.MinuteSummaries) are rolled up into work_hours (Rollup),
// so that what is kept for ever grows by the worker-hour.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
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

	stmts map[string]*sql.Stmt // prepared on w: writeQueries

	// pruned is the retention row's pruned_seq. Only the writer changes it, in Prune,
	// after its commit; AddShares reads it inside its transaction, which holds the one
	// writer connection, so the two never interleave.
	pruned atomic.Uint64

	readOnly bool // OpenReadOnly: w and r are the same read-only handle
}

var _ hashgrid.ShareStore = (*DB)(nil)

// Open opens or creates the database at path and brings its schema up to date.
func Open(path string) (*DB, error) {
	return open(path, migrations)
}

// open is Open with the migrations to apply, which tests shorten to build a database
// as an older program left it.
func open(path string, ms []migration) (*DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite: invalid database path %q", path)
	}
	pragmas := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)",
		BusyTimeout.Milliseconds())
	// auto_vacuum takes effect only on a database without tables: new stores are made
	// incremental, so that pruning can give pages back (see Prune). journal_size_limit
	// truncates the WAL after a checkpoint, so that a burst of writes (a prune) does not
	// leave it at its high-water mark.
	w, err := sql.Open("sqlite", path+"?"+pragmas+"&_pragma=auto_vacuum(incremental)&_pragma=journal_mode(WAL)"+
		fmt.Sprintf("&_pragma=journal_size_limit(%d)", walSizeLimit)+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	db := &DB{path: path, w: w}
	if err := db.migrate(context.Background(), ms); err != nil {
		w.Close()
		return nil, err
	}
	if len(ms) == len(migrations) { // tests open older schemas, without these tables
		if db.stmts, err = prepareWrites(context.Background(), w); err != nil {
			w.Close()
			return nil, err
		}
		st, err := db.retentionState(context.Background(), w)
		if err != nil {
			closeStmts(db.stmts)
			w.Close()
			return nil, err
		}
		db.pruned.Store(st.Seq)
	}
	r, err := sql.Open("sqlite", path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		closeStmts(db.stmts)
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
	if db.readOnly {
		return db.r.Close()
	}
	return errors.Join(db.r.Close(), closeStmts(db.stmts), db.w.Close())
}

// A migration is SQL, then optionally a Go step for what SQL cannot do (re-encoding
// rows), run in the same transaction.
type migration struct {
	sql  string
	step func(ctx context.Context, tx *sql.Tx) error
}

// migrations are applied in order, each in its own transaction together with the new
// user_version; a database's user_version is the number applied. Never edit one that
// has shipped: append a new one.
var migrations = []migration{
	// 1: shares, worker summaries, pool totals, blocks.
	{sql: `
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
`},
	// 2: shares kept in blocks, one row per batch or chunk of one; the rows of
	// migration 1's shares table are moved into blocks and the table dropped.
	{sql: `
CREATE TABLE share_blocks (
	first_seq INTEGER PRIMARY KEY,  -- lowest Seq in the block
	last_seq  INTEGER NOT NULL,     -- highest; blocks' [first_seq, last_seq] never overlap
	min_time  INTEGER NOT NULL,     -- Unix nanoseconds; max_time - min_time <= MaxBlockTimeSpan
	max_time  INTEGER NOT NULL,
	count     INTEGER NOT NULL,     -- shares in the block
	data      BLOB    NOT NULL      -- blockFormat
);
CREATE UNIQUE INDEX share_blocks_last_seq ON share_blocks (last_seq);
CREATE INDEX share_blocks_time ON share_blocks (min_time, max_time);

-- The distinct addresses of each block, for SharesFor. No foreign key: rows are
-- deleted with their block, by address, in the same transaction.
CREATE TABLE share_block_addresses (
	address   TEXT    NOT NULL,
	first_seq INTEGER NOT NULL,     -- share_blocks.first_seq
	PRIMARY KEY (address, first_seq)
) WITHOUT ROWID;
`, step: moveSharesToBlocks},
	// 3: per-minute worker summaries, so that WorkBetween decodes only the shares of
	// the partial minutes at the edges of its window; filled from share_blocks.
	{sql: `
CREATE TABLE work_minutes (
	minute     INTEGER NOT NULL,     -- floor(time / 1 minute), time in Unix nanoseconds
	address    TEXT    NOT NULL,
	worker     TEXT    NOT NULL,
	accepted   INTEGER NOT NULL,
	rejected   INTEGER NOT NULL,
	work_hi    INTEGER NOT NULL,     -- hashgrid.Work words, bits as signed integers
	work_lo    INTEGER NOT NULL,
	last_share INTEGER NOT NULL,     -- Unix nanoseconds
	PRIMARY KEY (minute, address, worker)
) WITHOUT ROWID;
`, step: fillWorkMinutes},
	// 4: retention. Raw shares are pruned oldest first (see Prune); the retention row
	// records how far, and work_minutes, which is never pruned, gains each worker's best
	// share of the minute, filled from share_blocks.
	{sql: `
CREATE TABLE retention (
	id            INTEGER PRIMARY KEY CHECK (id = 1),
	pruned_seq    INTEGER NOT NULL,  -- every share with Seq <= pruned_seq is pruned; 0 if none
	pruned_time   INTEGER NOT NULL,  -- Unix nanoseconds: latest time of a pruned share; 0 if none
	pruned_shares INTEGER NOT NULL,  -- shares pruned, in all
	pruned_blocks INTEGER NOT NULL   -- rows of share_blocks pruned, in all
);
INSERT INTO retention VALUES (1, 0, 0, 0, 0);
ALTER TABLE work_minutes ADD COLUMN best INTEGER NOT NULL DEFAULT 0; -- highest Actual of an accepted share; Diff bits as a signed integer
`, step: fillBest},
	// 5: summaries by the hour, for what is older than the raw shares (see Rollup).
	{sql: `
CREATE TABLE work_hours (
	hour       INTEGER NOT NULL,     -- floor(time / 1 hour), time in Unix nanoseconds
	address    TEXT    NOT NULL,
	worker     TEXT    NOT NULL,
	accepted   INTEGER NOT NULL,
	rejected   INTEGER NOT NULL,
	work_hi    INTEGER NOT NULL,     -- hashgrid.Work words, bits as signed integers
	work_lo    INTEGER NOT NULL,
	last_share INTEGER NOT NULL,     -- Unix nanoseconds
	best       INTEGER NOT NULL,     -- highest Actual of an accepted share; Diff bits as a signed integer
	PRIMARY KEY (hour, address, worker)
) WITHOUT ROWID;
ALTER TABLE retention ADD COLUMN rolled_until INTEGER; -- a minute on an hour: work_minutes below it are in work_hours; NULL if none
`},
}

func (db *DB) migrate(ctx context.Context, ms []migration) error {
	var version int
	if err := db.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("sqlite: %s: read schema version: %w", db.path, err)
	}
	if version > len(ms) {
		return fmt.Errorf("sqlite: %s: schema version %d is newer than this program's %d", db.path, version, len(ms))
	}
	for v := version; v < len(ms); v++ {
		tx, err := db.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqlite: migrate to %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, ms[v].sql); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migrate to %d: %w", v+1, err)
		}
		if step := ms[v].step; step != nil {
			if err := step(ctx, tx); err != nil {
				tx.Rollback()
				return fmt.Errorf("sqlite: migrate to %d: %w", v+1, err)
			}
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

// Totals implements hashgrid.ShareStore.
func (db *DB) Totals(ctx context.Context) (accepted, rejected uint64, work hashgrid.Work, err error) {
	var acc, rej, hi, lo int64
	if err := db.r.QueryRowContext(ctx, `SELECT accepted, rejected, work_hi, work_lo FROM totals WHERE id = 1`).
		Scan(&acc, &rej, &hi, &lo); err != nil {
		return 0, 0, hashgrid.Work{}, fmt.Errorf("sqlite: totals: %w", err)
	}
	return uint64(acc), uint64(rej), hashgrid.Work{Hi: uint64(hi), Lo: uint64(lo)}, nil
}
