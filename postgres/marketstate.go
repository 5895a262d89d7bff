package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/market"
)

// MarketState is the hashrate market's state (market.StateStore) in PostgreSQL, in
// tables named market_*, beside the pool's books: the same answers as
// market.SQLiteState and market.FileStore (the contract tests in storetest run
// against them all).
//
// An order is one row, its record as JSONB beside its account and status, and one
// row per worker that earned on it; a Save upserts the rows of the orders and workers
// that changed, in one transaction. It does not share
// the ledger's transactions: the market posts money under idempotent keys first and
// reconciles its orders with the ledger's entries when it opens (market.StateStore).
type MarketState struct {
	pool *pgxpool.Pool
}

var _ market.StateStore = (*MarketState)(nil)

// marketStateMaxConns bounds the connections a MarketState holds: the market saves
// from one goroutine at a time, and accounts are created beside it.
const marketStateMaxConns = 2

var marketStateMigrations = migrationSet{component: "market", steps: []migration{
	{name: "meta, accounts, orders", sql: `
CREATE TABLE market_meta (
	k TEXT   PRIMARY KEY,
	v BIGINT NOT NULL
);
CREATE TABLE market_accounts (
	id       TEXT   PRIMARY KEY,
	key_hash TEXT   NOT NULL,  -- hex SHA-256 of the key's secret part
	created  BIGINT NOT NULL   -- Unix nanoseconds
);
CREATE TABLE market_orders (
	id      TEXT  PRIMARY KEY,
	account TEXT  NOT NULL,
	status  TEXT  NOT NULL,
	record  JSONB NOT NULL  -- the market.OrderRecord, without seller_num and seller_paid
);
CREATE INDEX market_orders_account ON market_orders (account);
-- An order's per-worker entries, one row per worker, so that a save writes only the
-- workers whose shares or earnings moved.
CREATE TABLE market_order_workers (
	order_id TEXT NOT NULL,
	worker   TEXT NOT NULL,  -- ADDRESS/WORKER
	num      TEXT,           -- seller_num's entry (a decimal integer); NULL when none
	paid     BIGINT,         -- seller_paid's entry, satoshis; NULL when none
	PRIMARY KEY (order_id, worker)
);
`},
}}

// OpenMarketState connects to the database at url and brings the market's tables up
// to date. log may be nil.
func OpenMarketState(ctx context.Context, url string, log *slog.Logger) (*MarketState, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: market state: parse url: %w", err)
	}
	cfg.MaxConns = marketStateMaxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: market state: connect: %w", err)
	}
	if err := migrate(ctx, pool, marketStateMigrations, log.With("subsystem", "postgres")); err != nil {
		pool.Close()
		return nil, err
	}
	return &MarketState{pool: pool}, nil
}

// Close implements market.StateStore.
func (s *MarketState) Close() error {
	s.pool.Close()
	return nil
}

// Load implements market.StateStore.
func (s *MarketState) Load(ctx context.Context) (market.State, error) {
	var st market.State
	var next int64
	err := s.pool.QueryRow(ctx, `SELECT v FROM market_meta WHERE k = 'next_id'`).Scan(&next)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return market.State{}, fmt.Errorf("postgres: market state: %w", err)
	}
	st.NextID = uint64(next)
	rows, err := s.pool.Query(ctx, `SELECT id, key_hash, created FROM market_accounts ORDER BY id`)
	if err != nil {
		return market.State{}, fmt.Errorf("postgres: market state: accounts: %w", err)
	}
	for rows.Next() {
		var a market.Account
		var created int64
		if err := rows.Scan(&a.ID, &a.KeyHash, &created); err != nil {
			rows.Close()
			return market.State{}, fmt.Errorf("postgres: market state: accounts: %w", err)
		}
		a.Created = time.Unix(0, created).UTC()
		st.Accounts = append(st.Accounts, &a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return market.State{}, fmt.Errorf("postgres: market state: accounts: %w", err)
	}
	rows, err = s.pool.Query(ctx, `SELECT id, record FROM market_orders`)
	if err != nil {
		return market.State{}, fmt.Errorf("postgres: market state: orders: %w", err)
	}
	byID := map[string]*market.OrderRecord{}
	for rows.Next() {
		var id string
		var b []byte
		if err := rows.Scan(&id, &b); err != nil {
			rows.Close()
			return market.State{}, fmt.Errorf("postgres: market state: orders: %w", err)
		}
		r, err := market.DecodeOrderRow(id, b)
		if err != nil {
			rows.Close()
			return market.State{}, fmt.Errorf("postgres: %w", err)
		}
		byID[id] = r
		st.Orders = append(st.Orders, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return market.State{}, fmt.Errorf("postgres: market state: orders: %w", err)
	}
	rows, err = s.pool.Query(ctx, `SELECT order_id, worker, num, paid FROM market_order_workers`)
	if err != nil {
		return market.State{}, fmt.Errorf("postgres: market state: order workers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, w string
		var num *string
		var paid *int64
		if err := rows.Scan(&id, &w, &num, &paid); err != nil {
			return market.State{}, fmt.Errorf("postgres: market state: order workers: %w", err)
		}
		if r := byID[id]; r != nil {
			if num != nil {
				r.SellerNum[w] = *num
			}
			if paid != nil {
				r.SellerPaid[w] = *paid
			}
		}
	}
	if err := rows.Err(); err != nil {
		return market.State{}, fmt.Errorf("postgres: market state: order workers: %w", err)
	}
	sort.Slice(st.Orders, func(i, j int) bool { return orderNum(st.Orders[i].ID) < orderNum(st.Orders[j].ID) })
	return st, nil
}

// orderNum is the number in an order's id ("o17"): ids sort in the order they were
// handed out.
func orderNum(id string) uint64 {
	n, _ := strconv.ParseUint(strings.TrimPrefix(id, "o"), 10, 64)
	return n
}

// Save implements market.StateStore: one transaction, its statements sent as one
// batch.
func (s *MarketState) Save(ctx context.Context, u market.Update) error {
	b, err := marketStateBatch(u)
	if err != nil || b.Len() == 0 {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: market state: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("postgres: market state: save: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: market state: commit: %w", err)
	}
	return nil
}

var _ market.SettleStore = (*MarketState)(nil)

// Holds reports whether book is a Ledger in this store's database (same host, port
// and database).
func (s *MarketState) Holds(book ledger.Book) bool {
	l, ok := book.(*Ledger)
	if !ok {
		return false
	}
	a, b := s.pool.Config().ConnConfig, l.pool.Config().ConnConfig
	return a.Host == b.Host && a.Port == b.Port && a.Database == b.Database
}

// PostAndSave posts txs to the ledger in this database and saves what update makes
// of their entries, in one transaction.
func (s *MarketState) PostAndSave(ctx context.Context, txs []ledger.Tx, now time.Time, update func([]ledger.Entry) market.Update) ([]ledger.Entry, error) {
	norm, err := normalizeBatch(txs)
	if err != nil {
		return nil, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: market state: %w", err)
	}
	defer tx.Rollback(ctx)
	es, err := postAll(ctx, tx, txs, norm, now.UTC())
	if err != nil {
		return nil, err
	}
	b, err := marketStateBatch(update(es))
	if err != nil {
		return nil, err
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, fmt.Errorf("postgres: market state: save: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("postgres: market state: commit: %w", err)
	}
	return es, nil
}

// marketStateBatch is the statements that write u.
func marketStateBatch(u market.Update) (*pgx.Batch, error) {
	var b pgx.Batch
	for _, r := range u.Orders {
		rec, err := json.Marshal(r.WithoutWorkers())
		if err != nil {
			return nil, fmt.Errorf("postgres: market state: order %s: %w", r.ID, err)
		}
		b.Queue(`INSERT INTO market_orders (id, account, status, record) VALUES ($1, $2, $3, $4)
			ON CONFLICT (id) DO UPDATE SET account = EXCLUDED.account, status = EXCLUDED.status, record = EXCLUDED.record`,
			r.ID, r.Account, r.Status, string(rec))
		ws, named := u.ChangedWorkers(r)
		if !named {
			b.Queue(`DELETE FROM market_order_workers WHERE order_id = $1`, r.ID)
		}
		for _, w := range ws {
			num, okN := r.SellerNum[w]
			paid, okP := r.SellerPaid[w]
			if !okN && !okP {
				b.Queue(`DELETE FROM market_order_workers WHERE order_id = $1 AND worker = $2`, r.ID, w)
				continue
			}
			var np *string
			var pp *int64
			if okN {
				np = &num
			}
			if okP {
				pp = &paid
			}
			b.Queue(`INSERT INTO market_order_workers (order_id, worker, num, paid) VALUES ($1, $2, $3, $4)
				ON CONFLICT (order_id, worker) DO UPDATE SET num = EXCLUDED.num, paid = EXCLUDED.paid`, r.ID, w, np, pp)
		}
	}
	if len(u.Deleted) > 0 {
		b.Queue(`DELETE FROM market_orders WHERE id = ANY($1)`, u.Deleted)
		b.Queue(`DELETE FROM market_order_workers WHERE order_id = ANY($1)`, u.Deleted)
	}
	for _, a := range u.Accounts {
		b.Queue(`INSERT INTO market_accounts (id, key_hash, created) VALUES ($1, $2, $3)`, a.ID, a.KeyHash, a.Created.UnixNano())
	}
	if u.NextID > 0 {
		if u.NextID > 1<<63-1 {
			return nil, fmt.Errorf("postgres: market state: next id %d out of range", u.NextID)
		}
		b.Queue(`INSERT INTO market_meta (k, v) VALUES ('next_id', $1)
			ON CONFLICT (k) DO UPDATE SET v = GREATEST(market_meta.v, EXCLUDED.v)`, int64(u.NextID))
	}
	return &b, nil
}
