// Package ledger is hashgrid's one append-only, double-entry book of money. Pool payouts
// and market escrow both post to it. Every change of a balance is an entry whose
// postings sum to zero; balances are derived from postings (a running total is kept in
// the same transaction for speed and checked against the postings by Check). Entries are
// never updated or deleted: a correction is a new entry.
//
// Every entry carries an idempotency key. Posting the same key again with the same
// postings returns the first entry and changes nothing, so a retry after a crash or a
// timeout can never pay twice; the same key with different postings is a conflict.
//
// Amounts are int64 satoshis. The store is SQLite (one file); the SQL is plain enough for
// PostgreSQL, which a later issue wires in.
package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/hashgrid/hashgrid"
)

// Limits on what an entry may hold.
const (
	MaxKeyLen      = 200
	MaxAccountLen  = 200
	MaxMemoLen     = 500
	MaxPostings    = 10_000 // a PPLNS block may credit many miners in one entry
	MaxAbsAmount   = 21_000_000 * 100_000_000
	maxEntriesList = 10_000
)

// Posting moves Amount satoshis into Account (negative: out of it).
type Posting struct {
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
}

// Entry is one balanced change of the books.
type Entry struct {
	ID       int64     `json:"id"`
	Key      string    `json:"key"`
	Time     time.Time `json:"time"`
	Memo     string    `json:"memo"`
	Postings []Posting `json:"postings"`
}

// Tx is an entry to post.
type Tx struct {
	Key      string
	Memo     string
	Postings []Posting
	// NonNegative lists accounts whose balance must not go below zero after this entry
	// (an escrow, a buyer's balance). The check and the write are one transaction, so
	// concurrent entries cannot overdraw an account.
	NonNegative []string
}

// ErrInsufficient is returned (wrapped in a hashgrid.Error with code ECONFLICT) when
// an entry would take a NonNegative account below zero.
var ErrInsufficient = errors.New("insufficient balance")

// Book is the ledger as its users (payouts, the market) call it. *Ledger keeps it in
// SQLite on one machine; postgres.Ledger keeps it in PostgreSQL, where the database
// itself enforces the append-only and non-negative rules. storetest.Ledger is the
// contract both must pass.
type Book interface {
	// Post appends tx; posting a key again returns the entry already stored when its
	// postings are the same, and an ECONFLICT error when they differ.
	Post(ctx context.Context, tx Tx) (Entry, error)
	// PostAll posts txs in one transaction: all or none.
	PostAll(ctx context.Context, txs []Tx) ([]Entry, error)
	Entry(ctx context.Context, key string) (Entry, error)
	Balance(ctx context.Context, account string) (int64, error)
	Balances(ctx context.Context, prefix string) (map[string]int64, error)
	Entries(ctx context.Context, account string, limit int) ([]Entry, error)
	// Check verifies that every entry balances and no NonNegative account is below zero.
	Check(ctx context.Context) error
	Close() error
}

var _ Book = (*Ledger)(nil)

// Ledger is the book in one SQLite file.
type Ledger struct {
	path string
	db   *sql.DB
	mu   sync.Mutex // one writer: SQLite's own rule, kept explicit
	now  func() time.Time
}

// Open opens (creating if needed) the ledger in the SQLite file at path.
func Open(path string, now func() time.Time) (*Ledger, error) {
	if now == nil {
		now = time.Now
	}
	// Several processes may post to one file (the pool and `hashgrid market`):
	// _txlock=immediate takes the write lock when a transaction begins, so a writer
	// waits for another (busy_timeout) instead of failing with SQLITE_BUSY when its
	// first read turns into a write.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("ledger: open: %w", err)
	}
	db.SetMaxOpenConns(1)
	l := &Ledger{path: path, db: db, now: now}
	if err := l.migrate(context.Background()); err != nil {
		db.Close()
		return nil, err
	}
	return l, nil
}

// Close closes the database.
func (l *Ledger) Close() error { return l.db.Close() }

// Path is the ledger's database file, as given to Open.
func (l *Ledger) Path() string { return l.path }

func (l *Ledger) migrate(ctx context.Context) error {
	_, err := l.db.ExecContext(ctx, `
CREATE TABLE IF NOT EXISTS entries (
	id   INTEGER PRIMARY KEY AUTOINCREMENT,
	key  TEXT NOT NULL UNIQUE,
	time INTEGER NOT NULL,
	memo TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS postings (
	entry_id INTEGER NOT NULL REFERENCES entries(id),
	account  TEXT NOT NULL,
	amount   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS postings_account ON postings(account, entry_id);
CREATE INDEX IF NOT EXISTS postings_entry ON postings(entry_id);
CREATE TABLE IF NOT EXISTS balances (
	account TEXT PRIMARY KEY,
	balance INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS entries_append_only_u BEFORE UPDATE ON entries BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_append_only_d BEFORE DELETE ON entries BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS postings_append_only_u BEFORE UPDATE ON postings BEGIN SELECT RAISE(ABORT, 'ledger postings are append-only'); END;
CREATE TRIGGER IF NOT EXISTS postings_append_only_d BEFORE DELETE ON postings BEGIN SELECT RAISE(ABORT, 'ledger postings are append-only'); END;
`)
	if err != nil {
		return fmt.Errorf("ledger: schema: %w", err)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return hashgrid.Errorf(hashgrid.EINVALID, "ledger: "+format, args...)
}

// normalize checks tx and merges postings to the same account, sorted by account, so
// that equal entries compare equal.
func normalize(tx Tx) ([]Posting, error) {
	if tx.Key == "" || len(tx.Key) > MaxKeyLen {
		return nil, invalid("key must be 1..%d bytes", MaxKeyLen)
	}
	if len(tx.Memo) > MaxMemoLen {
		return nil, invalid("memo longer than %d bytes", MaxMemoLen)
	}
	if len(tx.Postings) < 2 || len(tx.Postings) > MaxPostings {
		return nil, invalid("entry %q needs 2..%d postings, has %d", tx.Key, MaxPostings, len(tx.Postings))
	}
	sum := map[string]int64{}
	var total int64
	for _, p := range tx.Postings {
		if p.Account == "" || len(p.Account) > MaxAccountLen || strings.TrimSpace(p.Account) != p.Account {
			return nil, invalid("bad account name %q", p.Account)
		}
		if p.Amount == 0 || p.Amount > MaxAbsAmount || p.Amount < -MaxAbsAmount {
			return nil, invalid("entry %q: amount %d out of range", tx.Key, p.Amount)
		}
		sum[p.Account] += p.Amount
		total += p.Amount
	}
	if total != 0 {
		return nil, invalid("entry %q does not balance: postings sum to %d", tx.Key, total)
	}
	out := make([]Posting, 0, len(sum))
	for a, v := range sum {
		if v != 0 {
			out = append(out, Posting{a, v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
	if len(out) < 2 {
		return nil, invalid("entry %q moves nothing", tx.Key)
	}
	return out, nil
}

// Post appends tx. Posting a key again returns the existing entry when its postings
// are the same, and a conflict error when they differ.
func (l *Ledger) Post(ctx context.Context, tx Tx) (Entry, error) {
	ps, err := normalize(tx)
	if err != nil {
		return Entry{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	stx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: begin: %w", err)
	}
	defer stx.Rollback()
	if prev, err := entryByKey(ctx, stx, tx.Key); err == nil {
		if !samePostings(prev.Postings, ps) {
			return Entry{}, hashgrid.Errorf(hashgrid.ECONFLICT, "ledger: key %q already posted with other amounts", tx.Key)
		}
		return prev, nil
	} else if !errors.Is(err, sql.ErrNoRows) {
		return Entry{}, err
	}
	now := l.now().UTC()
	res, err := stx.ExecContext(ctx, `INSERT INTO entries(key, time, memo) VALUES (?, ?, ?)`, tx.Key, now.UnixNano(), tx.Memo)
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: insert entry: %w", err)
	}
	id, _ := res.LastInsertId()
	for _, p := range ps {
		if _, err := stx.ExecContext(ctx, `INSERT INTO postings(entry_id, account, amount) VALUES (?, ?, ?)`, id, p.Account, p.Amount); err != nil {
			return Entry{}, fmt.Errorf("ledger: insert posting: %w", err)
		}
		if _, err := stx.ExecContext(ctx, `INSERT INTO balances(account, balance) VALUES (?, ?) ON CONFLICT(account) DO UPDATE SET balance = balance + excluded.balance`, p.Account, p.Amount); err != nil {
			return Entry{}, fmt.Errorf("ledger: balance: %w", err)
		}
	}
	for _, a := range tx.NonNegative {
		var bal int64
		if err := stx.QueryRowContext(ctx, `SELECT balance FROM balances WHERE account = ?`, a).Scan(&bal); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return Entry{}, fmt.Errorf("ledger: balance: %w", err)
		}
		if bal < 0 {
			return Entry{}, &hashgrid.Error{Code: hashgrid.ECONFLICT, Message: fmt.Sprintf("ledger: %s would go %d below zero", a, -bal), Err: ErrInsufficient}
		}
	}
	if err := stx.Commit(); err != nil {
		return Entry{}, fmt.Errorf("ledger: commit: %w", err)
	}
	return Entry{ID: id, Key: tx.Key, Time: now, Memo: tx.Memo, Postings: ps}, nil
}

func samePostings(a, b []Posting) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

func entryByKey(ctx context.Context, q querier, key string) (Entry, error) {
	var e Entry
	var t int64
	if err := q.QueryRowContext(ctx, `SELECT id, key, time, memo FROM entries WHERE key = ?`, key).Scan(&e.ID, &e.Key, &t, &e.Memo); err != nil {
		return Entry{}, err
	}
	e.Time = time.Unix(0, t).UTC()
	ps, err := postingsOf(ctx, q, e.ID)
	e.Postings = ps
	return e, err
}

func postingsOf(ctx context.Context, q querier, id int64) ([]Posting, error) {
	rows, err := q.QueryContext(ctx, `SELECT account, amount FROM postings WHERE entry_id = ? ORDER BY account`, id)
	if err != nil {
		return nil, fmt.Errorf("ledger: postings: %w", err)
	}
	defer rows.Close()
	var ps []Posting
	for rows.Next() {
		var p Posting
		if err := rows.Scan(&p.Account, &p.Amount); err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, rows.Err()
}

// Entry returns the entry posted under key, or an error wrapping hashgrid.ErrNotFound.
func (l *Ledger) Entry(ctx context.Context, key string) (Entry, error) {
	e, err := entryByKey(ctx, l.db, key)
	if errors.Is(err, sql.ErrNoRows) {
		return Entry{}, hashgrid.Errorf(hashgrid.ENOTFOUND, "ledger: no entry %q", key)
	}
	return e, err
}

// Balance returns an account's balance (0 for an account never posted to).
func (l *Ledger) Balance(ctx context.Context, account string) (int64, error) {
	var bal int64
	err := l.db.QueryRowContext(ctx, `SELECT balance FROM balances WHERE account = ?`, account).Scan(&bal)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: balance: %w", err)
	}
	return bal, nil
}

// Balances returns the balances of every account whose name starts with prefix.
func (l *Ledger) Balances(ctx context.Context, prefix string) (map[string]int64, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT account, balance FROM balances WHERE substr(account, 1, ?) = ?`, len(prefix), prefix)
	if err != nil {
		return nil, fmt.Errorf("ledger: balances: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var a string
		var b int64
		if err := rows.Scan(&a, &b); err != nil {
			return nil, err
		}
		out[a] = b
	}
	return out, rows.Err()
}

// Entries returns the entries that touch account, newest first, at most limit.
func (l *Ledger) Entries(ctx context.Context, account string, limit int) ([]Entry, error) {
	if limit <= 0 || limit > maxEntriesList {
		limit = maxEntriesList
	}
	rows, err := l.db.QueryContext(ctx, `SELECT e.id, e.key, e.time, e.memo FROM entries e
		WHERE e.id IN (SELECT entry_id FROM postings WHERE account = ?) ORDER BY e.id DESC LIMIT ?`, account, limit)
	if err != nil {
		return nil, fmt.Errorf("ledger: entries: %w", err)
	}
	var out []Entry
	for rows.Next() {
		var e Entry
		var t int64
		if err := rows.Scan(&e.ID, &e.Key, &t, &e.Memo); err != nil {
			rows.Close()
			return nil, err
		}
		e.Time = time.Unix(0, t).UTC()
		out = append(out, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Postings, err = postingsOf(ctx, l.db, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Check verifies the books: every entry balances, all postings sum to zero, and every
// kept balance equals the sum of its account's postings. It returns the first problem.
func (l *Ledger) Check(ctx context.Context) error {
	var n int64
	if err := l.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT entry_id FROM postings GROUP BY entry_id HAVING SUM(amount) != 0)`).Scan(&n); err != nil {
		return fmt.Errorf("ledger: check: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("ledger: %d entries do not balance", n)
	}
	rows, err := l.db.QueryContext(ctx, `SELECT b.account, b.balance, COALESCE((SELECT SUM(amount) FROM postings p WHERE p.account = b.account), 0) FROM balances b`)
	if err != nil {
		return fmt.Errorf("ledger: check: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a string
		var kept, sum int64
		if err := rows.Scan(&a, &kept, &sum); err != nil {
			return err
		}
		if kept != sum {
			return fmt.Errorf("ledger: account %s keeps %d, its postings sum to %d", a, kept, sum)
		}
	}
	return rows.Err()
}
