// Package postgres implements hashgrid.ShareStore and package ledger's book on
// PostgreSQL (pgx v5), for a pool whose books live in a database server rather than in
// SQLite files.
//
// Store answers exactly as package sqlite does (the contract tests in storetest run
// against both) and keeps shares the same way, because a row per share costs the
// server a heap tuple and an index entry each, which bounds one writer well below the
// rate a busy pool needs: a row of share_blocks holds the shares of one AddShares
// batch (at most MaxBlockShares), each encoded with the share codec
// (hashgrid.Share.MarshalBinary), beside the columns queries select blocks by. The
// server compresses a block with LZ4 where it has it (store migration 3): a block is
// then about a fifth of its size, and so are the TOAST rows, their index entries and
// the WAL each batch writes. Blocks'
// sequence ranges never overlap; a batch filling gaps in a stored block is merged with
// it. share_block_addresses lists the blocks holding each address, for SharesFor.
// work_minutes holds each worker's summary of every minute, so that WorkBetween reads
// shares only for the partial minutes at its window's edges. AddShares holds an
// advisory lock for its transaction: one writer at a time, across processes, as the
// accounting process is meant to be.
//
// Difficulty is fixed point: 128-bit work and the best share of a minute are NUMERIC,
// summed by the database exactly; nothing summed or paid on is a float.
//
// Ledger keeps package ledger's guarantees in the database itself (see Ledger).
//
// Schemas are versioned: Open and OpenLedger apply the migrations the database lacks,
// each in its own transaction, recorded in schema_migrations by component, under an
// advisory lock so that processes starting together apply each step once.
//
// Retention is sqlite's: Prune deletes the oldest raw shares, a prefix of the
// sequence, Rollup folds old minutes into work_hours, Summaries reads both, and
// Retention runs them periodically (see retention.go).
//
// PayoutState and AlertOutbox keep the payout service's state and the alert outbox,
// each in tables of its own with its own migrations.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hashgrid/hashgrid"
)

// MaxConns bounds the connections a Store holds to the server.
const MaxConns = 8

// migrationLock is the advisory lock key Open holds while migrating ("hgrd").
const migrationLock = 0x68677264

// Store is a ShareStore in a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
	log  *slog.Logger
}

var _ hashgrid.ShareStore = (*Store)(nil)

// Open connects to the database at url (postgres://user@host:port/db?...) and brings
// its schema up to date. log may be nil.
func Open(ctx context.Context, url string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse url: %w", err)
	}
	cfg.MaxConns = MaxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s := &Store{pool: pool, log: log.With("subsystem", "postgres")}
	if err := migrate(ctx, pool, storeMigrations, s.log); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the store's connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// A migration is one step of a schema, applied in its own transaction. Never edit one
// that has shipped: append a new one.
type migration struct {
	name string
	sql  string
}

// migrationSet names a list of migrations; each set (the share store, the ledger)
// keeps its own versions in schema_migrations.
type migrationSet struct {
	component string
	steps     []migration
}

var storeMigrations = migrationSet{component: "store", steps: []migration{
	{name: "share blocks, workers, totals, minutes, blocks", sql: `
CREATE TABLE share_blocks (
	first_seq BIGINT  PRIMARY KEY,  -- lowest Seq in the block
	last_seq  BIGINT  NOT NULL,     -- highest; blocks' [first_seq, last_seq] never overlap
	min_time  BIGINT  NOT NULL,     -- Unix nanoseconds of the earliest share
	max_time  BIGINT  NOT NULL,     -- and of the latest
	count     INTEGER NOT NULL,     -- shares in the block
	data      BYTEA   NOT NULL      -- in Seq order, each a uvarint length and hashgrid.Share.MarshalBinary
);
-- Blocks are written once and read whole: compressing them costs more than it saves.
ALTER TABLE share_blocks ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE UNIQUE INDEX share_blocks_last_seq ON share_blocks (last_seq);
CREATE INDEX share_blocks_max_time ON share_blocks (max_time);

-- The distinct addresses of each block, for SharesFor; deleted with their block.
CREATE TABLE share_block_addresses (
	address   TEXT   NOT NULL,
	first_seq BIGINT NOT NULL,      -- share_blocks.first_seq
	PRIMARY KEY (address, first_seq)
);

CREATE TABLE workers (
	address    TEXT    NOT NULL,
	name       TEXT    NOT NULL,
	accepted   BIGINT  NOT NULL,
	rejected   BIGINT  NOT NULL,
	work       NUMERIC(40, 0) NOT NULL,  -- hashgrid.Work, 128 bits
	last_share BIGINT  NOT NULL,         -- Unix nanoseconds
	PRIMARY KEY (address, name)
);

CREATE TABLE totals (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	accepted BIGINT  NOT NULL,
	rejected BIGINT  NOT NULL,
	work     NUMERIC(40, 0) NOT NULL
);
INSERT INTO totals VALUES (1, 0, 0, 0);

CREATE TABLE work_minutes (
	minute     BIGINT  NOT NULL,         -- floor(time / 1 minute), time in Unix nanoseconds
	address    TEXT    NOT NULL,
	worker     TEXT    NOT NULL,
	accepted   BIGINT  NOT NULL,
	rejected   BIGINT  NOT NULL,
	work       NUMERIC(40, 0) NOT NULL,
	last_share BIGINT  NOT NULL,
	best       NUMERIC(20, 0) NOT NULL,  -- highest Actual of an accepted share; 0 if none
	PRIMARY KEY (minute, address, worker)
);

CREATE TABLE blocks (
	hash          BYTEA   PRIMARY KEY,
	height        BIGINT  NOT NULL,
	prev_hash     BYTEA   NOT NULL,
	time          BIGINT  NOT NULL,  -- Unix nanoseconds
	address       TEXT    NOT NULL,
	worker        TEXT    NOT NULL,
	reward        BIGINT  NOT NULL,  -- satoshis
	fees          BIGINT  NOT NULL,  -- satoshis
	network_diff  DOUBLE PRECISION NOT NULL,  -- for display; never summed or paid on
	status        SMALLINT NOT NULL,
	reason        TEXT    NOT NULL,
	confirmations BIGINT  NOT NULL,
	share_seq     BIGINT  NOT NULL   -- no foreign key: a block can be stored before its share
);
CREATE INDEX blocks_time ON blocks (time, height);
`},
	retentionMigration,
	compressionMigration,
}}

// migrate applies the steps of set the database lacks. Each runs in its own
// transaction with its row of schema_migrations, under a transaction-scoped advisory
// lock, and the version is read again under the lock, so concurrent Opens apply each
// step once.
func migrate(ctx context.Context, pool *pgxpool.Pool, set migrationSet, log *slog.Logger) error {
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component  TEXT        NOT NULL,
		version    INTEGER     NOT NULL,
		name       TEXT        NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
		PRIMARY KEY (component, version))`); err != nil {
		// Two processes may race to create it; the loser's error is a unique violation.
		if _, err2 := pool.Exec(ctx, `SELECT 1 FROM schema_migrations LIMIT 0`); err2 != nil {
			return fmt.Errorf("postgres: schema_migrations: %w", err)
		}
	}
	for {
		done, err := migrateOne(ctx, pool, set, log)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the next step of set, if any; done reports there was none.
func migrateOne(ctx context.Context, pool *pgxpool.Pool, set migrationSet, log *slog.Logger) (done bool, err error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("postgres: migrate %s: %w", set.component, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
		return false, fmt.Errorf("postgres: migrate %s: lock: %w", set.component, err)
	}
	var version int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = $1`,
		set.component).Scan(&version); err != nil {
		return false, fmt.Errorf("postgres: migrate %s: read version: %w", set.component, err)
	}
	if version > len(set.steps) {
		return false, fmt.Errorf("postgres: %s schema version %d is newer than this program's %d", set.component, version, len(set.steps))
	}
	if version == len(set.steps) {
		return true, nil
	}
	m := set.steps[version]
	if _, err := tx.Exec(ctx, m.sql); err != nil {
		return false, fmt.Errorf("postgres: migrate %s to %d (%s): %w", set.component, version+1, m.name, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)`,
		set.component, version+1, m.name); err != nil {
		return false, fmt.Errorf("postgres: migrate %s to %d: %w", set.component, version+1, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("postgres: migrate %s to %d: commit: %w", set.component, version+1, err)
	}
	log.Info("schema migrated", "component", set.component, "version", version+1, "name", m.name)
	return false, nil
}

// SchemaVersion returns the number of the store's migrations applied.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = $1`,
		storeMigrations.component).Scan(&v); err != nil {
		return 0, fmt.Errorf("postgres: schema version: %w", err)
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
		return fmt.Errorf("postgres: limit %d must be positive", limit)
	}
	return nil
}

// two32 is 2^32 as NUMERIC text, for recombining halves in SQL.
const two32 = "4294967296"

var mask64 = new(big.Int).SetUint64(math.MaxUint64)

// parseWork reads a NUMERIC's text as 128-bit work.
func parseWork(text string) (hashgrid.Work, error) {
	n, ok := new(big.Int).SetString(text, 10)
	if !ok || n.Sign() < 0 || n.BitLen() > 128 {
		return hashgrid.Work{}, fmt.Errorf("work %q is not a 128-bit count", text)
	}
	lo := new(big.Int).And(n, mask64).Uint64()
	hi := new(big.Int).Rsh(n, 64).Uint64()
	return hashgrid.Work{Hi: hi, Lo: lo}, nil
}

// displayHash reverses an internal-order hash into the order block explorers show.
func displayHash(h [32]byte) []byte {
	out := slices.Clone(h[:])
	slices.Reverse(out)
	return out
}

// PutBlock implements hashgrid.ShareStore.
func (s *Store) PutBlock(ctx context.Context, b hashgrid.Block) error {
	t, err := storedTime(b.Time)
	if err != nil {
		return fmt.Errorf("postgres: put block %x: %w", displayHash(b.Hash), err)
	}
	if b.ShareSeq > math.MaxInt64 {
		return fmt.Errorf("postgres: put block %x: share sequence %d too large", displayHash(b.Hash), b.ShareSeq)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO blocks
		(hash, height, prev_hash, time, address, worker, reward, fees, network_diff, status, reason, confirmations, share_seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (hash) DO UPDATE SET height = excluded.height, prev_hash = excluded.prev_hash,
			time = excluded.time, address = excluded.address, worker = excluded.worker, reward = excluded.reward,
			fees = excluded.fees, network_diff = excluded.network_diff, status = excluded.status,
			reason = excluded.reason, confirmations = excluded.confirmations, share_seq = excluded.share_seq`,
		b.Hash[:], b.Height, b.PrevHash[:], t, b.Address, b.Worker, b.Reward, b.Fees, b.NetworkDiff,
		int16(b.Status), b.Reason, b.Confirmations, int64(b.ShareSeq))
	if err != nil {
		return fmt.Errorf("postgres: put block %x: %w", displayHash(b.Hash), err)
	}
	return nil
}

const blockColumns = `hash, height, prev_hash, time, address, worker, reward, fees, network_diff, status, reason, confirmations, share_seq`

// Blocks implements hashgrid.ShareStore; newest means latest found.
func (s *Store) Blocks(ctx context.Context, limit int) ([]hashgrid.Block, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+blockColumns+` FROM blocks ORDER BY time DESC, height DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: blocks: %w", err)
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
		return nil, fmt.Errorf("postgres: blocks: %w", err)
	}
	return out, nil
}

// BlockByHash implements hashgrid.ShareStore.
func (s *Store) BlockByHash(ctx context.Context, hash [32]byte) (hashgrid.Block, error) {
	b, err := scanBlock(s.pool.QueryRow(ctx, `SELECT `+blockColumns+` FROM blocks WHERE hash = $1`, hash[:]))
	if errors.Is(err, pgx.ErrNoRows) {
		return hashgrid.Block{}, hashgrid.Errorf(hashgrid.ENOTFOUND, "block %x not found", displayHash(hash))
	}
	return b, err
}

func scanBlock(row pgx.Row) (hashgrid.Block, error) {
	var b hashgrid.Block
	var hash, prev []byte
	var t, seq int64
	var status int16
	err := row.Scan(&hash, &b.Height, &prev, &t, &b.Address, &b.Worker, &b.Reward, &b.Fees, &b.NetworkDiff,
		&status, &b.Reason, &b.Confirmations, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return b, err
	}
	if err != nil {
		return b, fmt.Errorf("postgres: block: %w", err)
	}
	if len(hash) != len(b.Hash) || len(prev) != len(b.PrevHash) {
		return b, fmt.Errorf("postgres: block: hash of %d bytes, previous of %d", len(hash), len(prev))
	}
	copy(b.Hash[:], hash)
	copy(b.PrevHash[:], prev)
	b.Time = loadTime(t)
	b.Status = hashgrid.BlockStatus(status)
	b.ShareSeq = uint64(seq)
	return b, nil
}

// Workers implements hashgrid.ShareStore, ordered by address and name.
func (s *Store) Workers(ctx context.Context, address string) ([]hashgrid.Worker, error) {
	q := `SELECT address, name, accepted, rejected, work::text, last_share FROM workers`
	var args []any
	if address != "" {
		q += ` WHERE address = $1`
		args = append(args, address)
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY address COLLATE "C", name COLLATE "C"`, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: workers: %w", err)
	}
	defer rows.Close()
	var out []hashgrid.Worker
	for rows.Next() {
		var w hashgrid.Worker
		var acc, rej, last int64
		var work string
		if err := rows.Scan(&w.Address, &w.Name, &acc, &rej, &work, &last); err != nil {
			return nil, fmt.Errorf("postgres: workers: %w", err)
		}
		if w.Work, err = parseWork(work); err != nil {
			return nil, fmt.Errorf("postgres: workers: %w", err)
		}
		w.Accepted, w.Rejected = uint64(acc), uint64(rej)
		w.LastShare = loadTime(last)
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: workers: %w", err)
	}
	return out, nil
}

// Totals implements hashgrid.ShareStore.
func (s *Store) Totals(ctx context.Context) (accepted, rejected uint64, work hashgrid.Work, err error) {
	var acc, rej int64
	var w string
	if err := s.pool.QueryRow(ctx, `SELECT accepted, rejected, work::text FROM totals WHERE id = 1`).
		Scan(&acc, &rej, &w); err != nil {
		return 0, 0, hashgrid.Work{}, fmt.Errorf("postgres: totals: %w", err)
	}
	if work, err = parseWork(w); err != nil {
		return 0, 0, hashgrid.Work{}, fmt.Errorf("postgres: totals: %w", err)
	}
	return uint64(acc), uint64(rej), work, nil
}
