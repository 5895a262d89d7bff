package market

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/hashgrid/hashgrid/ledger"
)

// SQLiteState is the market's state in tables named market_* of a SQLite file: the
// ledger's own file (ledger.db), so that a market on the pool's book keeps one file
// to back up. It takes its own connection, waiting for the ledger's writers as the
// ledger's connections wait for each other (busy_timeout, immediate transactions), and
// writes a settlement's ledger entries and its order's rows in one transaction of
// that connection (SettleStore) when the market's ledger is this file.
//
// An order is one row, its record as JSON beside its account and status, and one row
// per worker that earned on it; a Save writes the rows of the orders and workers that
// changed and nothing else, in one transaction.
type SQLiteState struct {
	path string
	db   *sql.DB
}

var _ StateStore = (*SQLiteState)(nil)

// A stateMigration is one step of the market's schema, applied in its own
// transaction and recorded in schema_migrations under the component "market". Never
// edit one that has shipped: append a new one.
type stateMigration struct {
	name string
	sql  string
}

var sqliteStateMigrations = []stateMigration{
	{name: "meta, accounts, orders", sql: `
CREATE TABLE market_meta (
	k TEXT PRIMARY KEY,
	v INTEGER NOT NULL
);
CREATE TABLE market_accounts (
	id       TEXT    PRIMARY KEY,
	key_hash TEXT    NOT NULL,  -- hex SHA-256 of the key's secret part
	created  INTEGER NOT NULL   -- Unix nanoseconds
);
CREATE TABLE market_orders (
	id      TEXT PRIMARY KEY,
	account TEXT NOT NULL,
	status  TEXT NOT NULL,
	record  TEXT NOT NULL  -- the OrderRecord as JSON, without seller_num and seller_paid
);
CREATE INDEX market_orders_account ON market_orders (account);
-- An order's per-worker entries, one row per worker, so that a save writes only the
-- workers whose shares or earnings moved.
CREATE TABLE market_order_workers (
	order_id TEXT NOT NULL,
	worker   TEXT NOT NULL,  -- ADDRESS/WORKER
	num      TEXT,           -- seller_num's entry (a decimal integer); NULL when none
	paid     INTEGER,        -- seller_paid's entry, satoshis; NULL when none
	PRIMARY KEY (order_id, worker)
);
`},
}

// OpenSQLiteState opens the SQLite file at path (the ledger's ledger.db, or a file of
// its own), creating it if needed, and brings the market's tables up to date.
func OpenSQLiteState(ctx context.Context, path string) (*SQLiteState, error) {
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("market: invalid state path %q", path)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("market: state %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	s := &SQLiteState{path: path, db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *SQLiteState) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component  TEXT    NOT NULL,
		version    INTEGER NOT NULL,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL,  -- Unix seconds
		PRIMARY KEY (component, version))`); err != nil {
		return fmt.Errorf("market: schema_migrations: %w", err)
	}
	for {
		done, err := s.migrateOne(ctx)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the next step, if any. The version is read inside the write
// transaction, so two processes opening one file apply each step once.
func (s *SQLiteState) migrateOne(ctx context.Context) (done bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("market: migrate: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = 'market'`).Scan(&version); err != nil {
		return false, fmt.Errorf("market: migrate: read version: %w", err)
	}
	if version > len(sqliteStateMigrations) {
		return false, fmt.Errorf("market: state schema version %d is newer than this program's %d", version, len(sqliteStateMigrations))
	}
	if version == len(sqliteStateMigrations) {
		return true, nil
	}
	m := sqliteStateMigrations[version]
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, fmt.Errorf("market: migrate to %d (%s): %w", version+1, m.name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (component, version, name, applied_at) VALUES ('market', ?, ?, ?)`,
		version+1, m.name, time.Now().Unix()); err != nil {
		return false, fmt.Errorf("market: migrate to %d: %w", version+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("market: migrate to %d: commit: %w", version+1, err)
	}
	return false, nil
}

// SchemaVersion returns the number of the market's migrations applied.
func (s *SQLiteState) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = 'market'`).Scan(&v)
	return v, err
}

// Close closes the store's connection.
func (s *SQLiteState) Close() error { return s.db.Close() }

// Load implements StateStore.
func (s *SQLiteState) Load(ctx context.Context) (State, error) {
	var st State
	err := s.db.QueryRowContext(ctx, `SELECT v FROM market_meta WHERE k = 'next_id'`).Scan(&st.NextID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return State{}, fmt.Errorf("market: state: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, key_hash, created FROM market_accounts ORDER BY id`)
	if err != nil {
		return State{}, fmt.Errorf("market: state: accounts: %w", err)
	}
	for rows.Next() {
		var a Account
		var created int64
		if err := rows.Scan(&a.ID, &a.KeyHash, &created); err != nil {
			rows.Close()
			return State{}, fmt.Errorf("market: state: accounts: %w", err)
		}
		a.Created = time.Unix(0, created).UTC()
		st.Accounts = append(st.Accounts, &a)
	}
	if err := rows.Close(); err != nil {
		return State{}, fmt.Errorf("market: state: accounts: %w", err)
	}
	rows, err = s.db.QueryContext(ctx, `SELECT id, record FROM market_orders`)
	if err != nil {
		return State{}, fmt.Errorf("market: state: orders: %w", err)
	}
	byID := map[string]*OrderRecord{}
	for rows.Next() {
		var id, rec string
		if err := rows.Scan(&id, &rec); err != nil {
			rows.Close()
			return State{}, fmt.Errorf("market: state: orders: %w", err)
		}
		r, err := DecodeOrderRow(id, []byte(rec))
		if err != nil {
			rows.Close()
			return State{}, err
		}
		byID[id] = r
		st.Orders = append(st.Orders, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return State{}, fmt.Errorf("market: state: orders: %w", err)
	}
	rows, err = s.db.QueryContext(ctx, `SELECT order_id, worker, num, paid FROM market_order_workers`)
	if err != nil {
		return State{}, fmt.Errorf("market: state: order workers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, w string
		var num sql.NullString
		var paid sql.NullInt64
		if err := rows.Scan(&id, &w, &num, &paid); err != nil {
			return State{}, fmt.Errorf("market: state: order workers: %w", err)
		}
		if r := byID[id]; r != nil {
			if num.Valid {
				r.SellerNum[w] = num.String
			}
			if paid.Valid {
				r.SellerPaid[w] = paid.Int64
			}
		}
	}
	if err := rows.Err(); err != nil {
		return State{}, fmt.Errorf("market: state: order workers: %w", err)
	}
	sortOrders(st.Orders)
	return st, nil
}

// DecodeOrderRow decodes an order row's record (one written from WithoutWorkers),
// with empty per-worker maps for its worker rows to fill.
func DecodeOrderRow(id string, b []byte) (*OrderRecord, error) {
	var r OrderRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("market: state: order %s: %w", id, err)
	}
	if r.ID != id {
		return nil, fmt.Errorf("market: state: order row %s holds order %q", id, r.ID)
	}
	r.SellerNum, r.SellerPaid = map[string]string{}, map[string]int64{}
	return &r, nil
}

// Save implements StateStore: one transaction.
func (s *SQLiteState) Save(ctx context.Context, u Update) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("market: state: %w", err)
	}
	defer tx.Rollback()
	if err := s.saveIn(ctx, tx, u); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("market: state: commit: %w", err)
	}
	return nil
}

// Holds reports whether book is the ledger in this store's own database file.
func (s *SQLiteState) Holds(book ledger.Book) bool {
	l, ok := book.(*ledger.Ledger)
	if !ok {
		return false
	}
	a, err1 := filepath.Abs(s.path)
	b, err2 := filepath.Abs(l.Path())
	return err1 == nil && err2 == nil && a == b
}

// PostAndSave posts txs to the ledger in this store's file and saves what update
// makes of their entries, in one transaction.
func (s *SQLiteState) PostAndSave(ctx context.Context, txs []ledger.Tx, now time.Time, update func([]ledger.Entry) Update) ([]ledger.Entry, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("market: state: %w", err)
	}
	defer tx.Rollback()
	es, err := ledger.PostAllTx(ctx, tx, txs, now.UTC())
	if err != nil {
		return nil, err
	}
	if err := s.saveIn(ctx, tx, update(es)); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("market: state: commit: %w", err)
	}
	return es, nil
}

// saveIn writes u in tx.
func (s *SQLiteState) saveIn(ctx context.Context, tx *sql.Tx, u Update) error {
	recs := make([][]byte, len(u.Orders))
	for i, r := range u.Orders {
		b, err := json.Marshal(r.WithoutWorkers())
		if err != nil {
			return fmt.Errorf("market: state: order %s: %w", r.ID, err)
		}
		recs[i] = b
	}
	for i, r := range u.Orders {
		if _, err := tx.ExecContext(ctx, `INSERT INTO market_orders (id, account, status, record) VALUES (?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET account = excluded.account, status = excluded.status, record = excluded.record`,
			r.ID, r.Account, r.Status, string(recs[i])); err != nil {
			return fmt.Errorf("market: state: order %s: %w", r.ID, err)
		}
		ws, named := u.ChangedWorkers(r)
		if !named {
			if _, err := tx.ExecContext(ctx, `DELETE FROM market_order_workers WHERE order_id = ?`, r.ID); err != nil {
				return fmt.Errorf("market: state: order %s: %w", r.ID, err)
			}
		}
		for _, w := range ws {
			num, okN := r.SellerNum[w]
			paid, okP := r.SellerPaid[w]
			var err error
			if !okN && !okP {
				_, err = tx.ExecContext(ctx, `DELETE FROM market_order_workers WHERE order_id = ? AND worker = ?`, r.ID, w)
			} else {
				_, err = tx.ExecContext(ctx, `INSERT INTO market_order_workers (order_id, worker, num, paid) VALUES (?, ?, ?, ?)
					ON CONFLICT (order_id, worker) DO UPDATE SET num = excluded.num, paid = excluded.paid`,
					r.ID, w, sql.NullString{String: num, Valid: okN}, sql.NullInt64{Int64: paid, Valid: okP})
			}
			if err != nil {
				return fmt.Errorf("market: state: order %s worker %s: %w", r.ID, w, err)
			}
		}
	}
	for _, id := range u.Deleted {
		if _, err := tx.ExecContext(ctx, `DELETE FROM market_orders WHERE id = ?`, id); err != nil {
			return fmt.Errorf("market: state: order %s: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM market_order_workers WHERE order_id = ?`, id); err != nil {
			return fmt.Errorf("market: state: order %s: %w", id, err)
		}
	}
	for _, a := range u.Accounts {
		if _, err := tx.ExecContext(ctx, `INSERT INTO market_accounts (id, key_hash, created) VALUES (?, ?, ?)`,
			a.ID, a.KeyHash, a.Created.UnixNano()); err != nil {
			return fmt.Errorf("market: state: account %s: %w", a.ID, err)
		}
	}
	if u.NextID > 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO market_meta (k, v) VALUES ('next_id', ?)
			ON CONFLICT (k) DO UPDATE SET v = max(v, excluded.v)`, int64(u.NextID)); err != nil {
			return fmt.Errorf("market: state: next id: %w", err)
		}
	}
	return nil
}
