package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/payout"
)

// PayoutState is the payout service's own state (payout.State) in PostgreSQL: the
// same answers as payout.SQLiteState (the contract tests in storetest run against
// both), in tables named payout_*.
//
// Two accounting processes may open it, one leading: what is written once (windows,
// rates, block windows, the pool id) is written with ON CONFLICT DO NOTHING, so the
// first write wins whoever makes it; PutRate holds a lock on payout_rates for its
// transaction, so that no height below one recorded is ever added; a batch number is
// a primary key, so two runs cannot record the same batch.
type PayoutState struct {
	pool *pgxpool.Pool
}

var _ payout.State = (*PayoutState)(nil)

// payoutMaxConns bounds the connections a PayoutState holds: the service writes from
// one goroutine per loop.
const payoutMaxConns = 4

var payoutMigrations = migrationSet{component: "payout", steps: []migration{
	{name: "meta, windows, rates, block windows, carries, batches", sql: `
CREATE TABLE payout_meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE payout_windows (
	commitment TEXT   PRIMARY KEY,  -- hex of payout.WindowParams.Commitment
	params     TEXT   NOT NULL,     -- the parameters as JSON
	created    BIGINT NOT NULL      -- Unix nanoseconds
);
CREATE INDEX payout_windows_created ON payout_windows (created);
CREATE TABLE payout_rates (
	height  BIGINT PRIMARY KEY,
	subsidy BIGINT NOT NULL,  -- satoshis
	fees    BIGINT NOT NULL,  -- satoshis: this height's first template's own fees
	bits    BIGINT NOT NULL
);
CREATE TABLE payout_block_windows (
	hash       TEXT PRIMARY KEY,
	commitment TEXT NOT NULL
);
CREATE INDEX payout_block_windows_commitment ON payout_block_windows (commitment);
CREATE TABLE payout_carries (
	address TEXT   PRIMARY KEY,
	carry   BIGINT NOT NULL  -- 2^-32 satoshi, stored as the bits of a uint64
);
CREATE TABLE payout_batches (
	n       BIGINT PRIMARY KEY,
	created BIGINT NOT NULL,  -- Unix seconds
	items   TEXT   NOT NULL,  -- JSON
	status  TEXT   NOT NULL,
	txid    TEXT   NOT NULL DEFAULT ''
);
`},
}}

// OpenPayoutState connects to the database at url and brings the payout tables up to
// date. log may be nil.
func OpenPayoutState(ctx context.Context, url string, log *slog.Logger) (*PayoutState, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: payout state: parse url: %w", err)
	}
	cfg.MaxConns = payoutMaxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: payout state: connect: %w", err)
	}
	if err := migrate(ctx, pool, payoutMigrations, log.With("subsystem", "postgres")); err != nil {
		pool.Close()
		return nil, err
	}
	return &PayoutState{pool: pool}, nil
}

// Close closes the state's connections.
func (d *PayoutState) Close() error {
	d.pool.Close()
	return nil
}

// PoolID implements payout.State.
func (d *PayoutState) PoolID(ctx context.Context) (string, error) {
	var id string
	// DO UPDATE (to the same value) rather than DO NOTHING: it waits for a concurrent
	// first insert and returns its row, where a separate SELECT would not see it.
	err := d.pool.QueryRow(ctx, `INSERT INTO payout_meta (key, value) VALUES ('pool_id', $1)
		ON CONFLICT (key) DO UPDATE SET value = payout_meta.value RETURNING value`, payout.NewPoolID()).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("postgres: payout: pool id: %w", err)
	}
	return id, nil
}

// PutWindow implements payout.State.
func (d *PayoutState) PutWindow(ctx context.Context, p payout.WindowParams, created int64) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("postgres: payout: store window: %w", err)
	}
	if _, err := d.pool.Exec(ctx, `INSERT INTO payout_windows (commitment, params, created) VALUES ($1, $2, $3)
		ON CONFLICT (commitment) DO NOTHING`, p.Commitment().String(), string(b), created); err != nil {
		return fmt.Errorf("postgres: payout: store window: %w", err)
	}
	return nil
}

// Window implements payout.State.
func (d *PayoutState) Window(ctx context.Context, c payout.Hash32) (payout.WindowParams, error) {
	var s string
	err := d.pool.QueryRow(ctx, `SELECT params FROM payout_windows WHERE commitment = $1`, c.String()).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return payout.WindowParams{}, payout.NoWindow(c)
	}
	if err != nil {
		return payout.WindowParams{}, fmt.Errorf("postgres: payout: window: %w", err)
	}
	return payout.DecodeWindow(c, []byte(s))
}

// PruneWindows implements payout.State.
func (d *PayoutState) PruneWindows(ctx context.Context, before int64, keep []payout.Hash32, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("postgres: payout: prune windows: limit %d must be positive", limit)
	}
	ks := make([]string, len(keep))
	for i, c := range keep {
		ks[i] = c.String()
	}
	tag, err := d.pool.Exec(ctx, `DELETE FROM payout_windows WHERE commitment IN (
		SELECT w.commitment FROM payout_windows w WHERE w.created < $1
			AND NOT EXISTS (SELECT 1 FROM payout_block_windows b WHERE b.commitment = w.commitment)
			AND NOT (w.commitment = ANY ($2))
		LIMIT $3)`, before, ks, limit)
	if err != nil {
		return 0, fmt.Errorf("postgres: payout: prune windows: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// PutRate implements payout.State.
func (d *PayoutState) PutRate(ctx context.Context, r payout.Rate) error {
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: payout: rate: %w", err)
	}
	defer tx.Rollback(ctx)
	// Another process's rate for a higher height, committed between the check and the
	// insert, would leave this lower one added later: the lock orders the two.
	if _, err := tx.Exec(ctx, `LOCK TABLE payout_rates IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return fmt.Errorf("postgres: payout: rate: %w", err)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO payout_rates (height, subsidy, fees, bits)
		SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM payout_rates WHERE height >= $1)`,
		r.Height, r.Subsidy, r.Fees, int64(r.Bits))
	if err != nil {
		return fmt.Errorf("postgres: payout: rate: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return nil
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: payout: rate: %w", err)
	}
	return nil
}

// Rate implements payout.State.
func (d *PayoutState) Rate(ctx context.Context, height int64, feeWindow int) (payout.Rate, bool, error) {
	var r payout.Rate
	var bits int64
	var higher bool
	// The rate at height or the nearest lower, else the lowest; and whether any
	// height above exists.
	err := d.pool.QueryRow(ctx, `SELECT height, subsidy, bits, EXISTS (SELECT 1 FROM payout_rates WHERE height > $1)
		FROM (
			(SELECT height, subsidy, bits, 0 AS pick FROM payout_rates WHERE height <= $1 ORDER BY height DESC LIMIT 1)
			UNION ALL
			(SELECT height, subsidy, bits, 1 FROM payout_rates ORDER BY height LIMIT 1)
		) r ORDER BY pick LIMIT 1`, height).Scan(&r.Height, &r.Subsidy, &bits, &higher)
	if errors.Is(err, pgx.ErrNoRows) {
		return payout.Rate{}, false, nil
	}
	if err != nil {
		return payout.Rate{}, false, fmt.Errorf("postgres: payout: rate: %w", err)
	}
	if r.Height < height && !higher {
		return payout.Rate{}, false, nil
	}
	r.Bits = uint32(bits)
	var sum, cnt int64
	if err := d.pool.QueryRow(ctx, `SELECT COALESCE(SUM(fees), 0)::BIGINT, COUNT(*) FROM
		(SELECT fees FROM payout_rates WHERE height <= $1 ORDER BY height DESC LIMIT $2) f`,
		r.Height, max(feeWindow, 0)).Scan(&sum, &cnt); err != nil {
		return payout.Rate{}, false, fmt.Errorf("postgres: payout: rate: %w", err)
	}
	if cnt > 0 {
		r.Fees = sum / cnt
	}
	return r, true, nil
}

// PPSCursor implements payout.State.
func (d *PayoutState) PPSCursor(ctx context.Context) (uint64, bool, error) {
	var v string
	err := d.pool.QueryRow(ctx, `SELECT value FROM payout_meta WHERE key = 'pps_cursor'`).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("postgres: payout: pps cursor: %w", err)
	}
	c, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("postgres: payout: pps cursor %q: %w", v, err)
	}
	return c, true, nil
}

// PPSState implements payout.State.
func (d *PayoutState) PPSState(ctx context.Context) (uint64, bool, map[string]uint64, error) {
	tx, err := d.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, false, nil, fmt.Errorf("postgres: payout: pps state: %w", err)
	}
	defer tx.Rollback(ctx)
	var v *string
	if err := tx.QueryRow(ctx, `SELECT (SELECT value FROM payout_meta WHERE key = 'pps_cursor')`).Scan(&v); err != nil {
		return 0, false, nil, fmt.Errorf("postgres: payout: pps cursor: %w", err)
	}
	var cursor uint64
	if v != nil {
		if cursor, err = strconv.ParseUint(*v, 10, 64); err != nil {
			return 0, false, nil, fmt.Errorf("postgres: payout: pps cursor %q: %w", *v, err)
		}
	}
	rows, err := tx.Query(ctx, `SELECT address, carry FROM payout_carries`)
	if err != nil {
		return 0, false, nil, fmt.Errorf("postgres: payout: carries: %w", err)
	}
	carries := map[string]uint64{}
	var a string
	var c int64
	if _, err := pgx.ForEachRow(rows, []any{&a, &c}, func() error {
		carries[a] = uint64(c)
		return nil
	}); err != nil {
		return 0, false, nil, fmt.Errorf("postgres: payout: carries: %w", err)
	}
	return cursor, v != nil, carries, nil
}

// SavePPS implements payout.State.
func (d *PayoutState) SavePPS(ctx context.Context, cursor uint64, changed map[string]uint64) error {
	addrs := make([]string, 0, len(changed))
	carries := make([]int64, 0, len(changed))
	for a, c := range changed {
		addrs = append(addrs, a)
		carries = append(carries, int64(c))
	}
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: payout: pps state: %w", err)
	}
	defer tx.Rollback(ctx)
	if len(addrs) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO payout_carries (address, carry) SELECT * FROM unnest($1::TEXT[], $2::BIGINT[])
			ON CONFLICT (address) DO UPDATE SET carry = excluded.carry`, addrs, carries); err != nil {
			return fmt.Errorf("postgres: payout: carry: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO payout_meta (key, value) VALUES ('pps_cursor', $1)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, strconv.FormatUint(cursor, 10)); err != nil {
		return fmt.Errorf("postgres: payout: pps cursor: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: payout: pps state: %w", err)
	}
	return nil
}

// NextBatch implements payout.State.
func (d *PayoutState) NextBatch(ctx context.Context) (int64, error) {
	var n int64
	if err := d.pool.QueryRow(ctx, `SELECT COALESCE(MAX(n), 0) + 1 FROM payout_batches`).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: payout: next batch: %w", err)
	}
	return n, nil
}

// PutBatch implements payout.State.
func (d *PayoutState) PutBatch(ctx context.Context, b payout.Batch) error {
	items, err := json.Marshal(b.Items)
	if err != nil {
		return fmt.Errorf("postgres: payout: batch %d: %w", b.N, err)
	}
	if _, err := d.pool.Exec(ctx, `INSERT INTO payout_batches (n, created, items, status) VALUES ($1, $2, $3, $4)`,
		b.N, b.Created, string(items), string(b.Status)); err != nil {
		return fmt.Errorf("postgres: payout: batch %d: %w", b.N, err)
	}
	return nil
}

// SetBatch implements payout.State.
func (d *PayoutState) SetBatch(ctx context.Context, n int64, st payout.BatchStatus, txid string) error {
	if _, err := d.pool.Exec(ctx, `UPDATE payout_batches SET status = $1, txid = $2 WHERE n = $3`, string(st), txid, n); err != nil {
		return fmt.Errorf("postgres: payout: batch %d: %w", n, err)
	}
	return nil
}

// Batches implements payout.State.
func (d *PayoutState) Batches(ctx context.Context, onlyOpen bool) ([]payout.Batch, error) {
	q := `SELECT n, created, items, status, txid FROM payout_batches ORDER BY n`
	if onlyOpen {
		q = `SELECT n, created, items, status, txid FROM payout_batches WHERE status = 'new' ORDER BY n`
	}
	rows, err := d.pool.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("postgres: payout: batches: %w", err)
	}
	var out []payout.Batch
	var b payout.Batch
	var items, st string
	if _, err := pgx.ForEachRow(rows, []any{&b.N, &b.Created, &items, &st, &b.TxID}, func() error {
		b.Status = payout.BatchStatus(st)
		b.Items = nil
		if err := json.Unmarshal([]byte(items), &b.Items); err != nil {
			return fmt.Errorf("batch %d items: %w", b.N, err)
		}
		out = append(out, b)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: payout: batches: %w", err)
	}
	return out, nil
}

// PutBlockWindow implements payout.State.
func (d *PayoutState) PutBlockWindow(ctx context.Context, hash, c payout.Hash32) error {
	if _, err := d.pool.Exec(ctx, `INSERT INTO payout_block_windows (hash, commitment) VALUES ($1, $2)
		ON CONFLICT (hash) DO NOTHING`, hash.String(), c.String()); err != nil {
		return fmt.Errorf("postgres: payout: block window: %w", err)
	}
	return nil
}

// BlockWindow implements payout.State.
func (d *PayoutState) BlockWindow(ctx context.Context, hash payout.Hash32) (payout.Hash32, error) {
	var s string
	err := d.pool.QueryRow(ctx, `SELECT commitment FROM payout_block_windows WHERE hash = $1`, hash.String()).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return payout.Hash32{}, hashgrid.Errorf(hashgrid.ENOTFOUND, "no PPLNS window recorded for block %s", hash)
	}
	if err != nil {
		return payout.Hash32{}, fmt.Errorf("postgres: payout: block window: %w", err)
	}
	var c payout.Hash32
	if err := c.UnmarshalText([]byte(s)); err != nil {
		return payout.Hash32{}, fmt.Errorf("postgres: payout: block window %s: %w", hash, err)
	}
	return c, nil
}
