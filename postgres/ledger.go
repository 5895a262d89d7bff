package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
)

// Ledger is package ledger's append-only, double-entry book in PostgreSQL: the same
// methods, types, limits and errors (the contract tests in storetest run against
// both), with its guarantees held by the database itself, whoever writes to it:
//
//   - entries and postings are append-only: triggers refuse UPDATE, DELETE and
//     TRUNCATE of ledger_entries and ledger_postings;
//   - every entry balances: a constraint trigger, deferred to commit, refuses an entry
//     whose postings do not sum to zero or number fewer than two;
//   - balances follow postings only: a trigger on ledger_postings adds each posting to
//     ledger_balances, and ledger_balances refuses any other write;
//   - an idempotency key is UNIQUE, so two processes posting one key race safely.
//
// NonNegative accounts are checked in the posting transaction after the balances
// are updated, while their rows are locked, so that concurrent entries cannot
// overdraw them, exactly as ledger.Post does.
type Ledger struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

var _ ledger.Book = (*Ledger)(nil)

// maxEntriesList is ledger.Ledger's bound on Entries.
const maxEntriesList = 10_000

var ledgerMigrations = migrationSet{component: "ledger", steps: []migration{
	{name: "entries, postings, balances, append-only and balance triggers", sql: `
CREATE TABLE ledger_entries (
	id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	key  TEXT   NOT NULL UNIQUE,
	time BIGINT NOT NULL,  -- Unix nanoseconds
	memo TEXT   NOT NULL
);
CREATE TABLE ledger_postings (
	entry_id BIGINT NOT NULL REFERENCES ledger_entries (id),
	account  TEXT   NOT NULL,
	amount   BIGINT NOT NULL CHECK (amount <> 0),  -- satoshis
	PRIMARY KEY (entry_id, account)
);
CREATE INDEX ledger_postings_account ON ledger_postings (account, entry_id);
CREATE TABLE ledger_balances (
	account TEXT   PRIMARY KEY,
	balance BIGINT NOT NULL
);

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'ledger: % is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
	FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
	FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE OR DELETE ON ledger_postings
	FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_postings_no_truncate BEFORE TRUNCATE ON ledger_postings
	FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- Each posting moves its account's balance, in the same transaction.
CREATE FUNCTION ledger_post_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO ledger_balances (account, balance) VALUES (NEW.account, NEW.amount)
	ON CONFLICT (account) DO UPDATE SET balance = ledger_balances.balance + EXCLUDED.balance;
	RETURN NULL;
END $$;
CREATE TRIGGER ledger_postings_balance AFTER INSERT ON ledger_postings
	FOR EACH ROW EXECUTE FUNCTION ledger_post_balance();

-- Balances are written by that trigger only (depth 2), never directly.
CREATE FUNCTION ledger_balances_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF pg_trigger_depth() < 2 THEN
		RAISE EXCEPTION 'ledger: balances change only through postings: % refused', TG_OP USING ERRCODE = 'restrict_violation';
	END IF;
	IF TG_OP = 'DELETE' THEN
		RAISE EXCEPTION 'ledger: balances are never deleted' USING ERRCODE = 'restrict_violation';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER ledger_balances_guard BEFORE INSERT OR UPDATE OR DELETE ON ledger_balances
	FOR EACH ROW EXECUTE FUNCTION ledger_balances_guard();
CREATE TRIGGER ledger_balances_no_truncate BEFORE TRUNCATE ON ledger_balances
	FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- At commit, every entry a transaction posted to sums to zero over at least two postings.
CREATE FUNCTION ledger_entry_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
	total numeric;
BEGIN
	SELECT count(*), COALESCE(sum(amount), 0) INTO n, total FROM ledger_postings WHERE entry_id = NEW.entry_id;
	IF n < 2 OR total <> 0 THEN
		RAISE EXCEPTION 'ledger: entry % does not balance: % postings summing to %', NEW.entry_id, n, total
			USING ERRCODE = 'check_violation';
	END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entry_balances();
`},
}}

// OpenLedger connects to the database at url and brings the ledger's schema up to
// date. now is the clock entries are stamped with (time.Now if nil); log may be nil.
func OpenLedger(ctx context.Context, url string, now func() time.Time, log *slog.Logger) (*Ledger, error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: ledger: parse url: %w", err)
	}
	cfg.MaxConns = MaxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: ledger: connect: %w", err)
	}
	if err := migrate(ctx, pool, ledgerMigrations, log.With("subsystem", "postgres")); err != nil {
		pool.Close()
		return nil, err
	}
	return &Ledger{pool: pool, now: now}, nil
}

// Close closes the ledger's connections.
func (l *Ledger) Close() error {
	l.pool.Close()
	return nil
}

func invalid(format string, args ...any) error {
	return hashgrid.Errorf(hashgrid.EINVALID, "ledger: "+format, args...)
}

// normalize applies ledger's rules to tx (package ledger keeps its own copy
// unexported; the contract tests hold the two to the same answers) and merges
// postings to one account, sorted by account, so that equal entries compare equal.
func normalize(tx ledger.Tx) ([]ledger.Posting, error) {
	if tx.Key == "" || len(tx.Key) > ledger.MaxKeyLen {
		return nil, invalid("key must be 1..%d bytes", ledger.MaxKeyLen)
	}
	if len(tx.Memo) > ledger.MaxMemoLen {
		return nil, invalid("memo longer than %d bytes", ledger.MaxMemoLen)
	}
	if len(tx.Postings) < 2 || len(tx.Postings) > ledger.MaxPostings {
		return nil, invalid("entry %q needs 2..%d postings, has %d", tx.Key, ledger.MaxPostings, len(tx.Postings))
	}
	sum := map[string]int64{}
	var total int64
	for _, p := range tx.Postings {
		if p.Account == "" || len(p.Account) > ledger.MaxAccountLen || strings.TrimSpace(p.Account) != p.Account {
			return nil, invalid("bad account name %q", p.Account)
		}
		if p.Amount == 0 || p.Amount > ledger.MaxAbsAmount || p.Amount < -ledger.MaxAbsAmount {
			return nil, invalid("entry %q: amount %d out of range", tx.Key, p.Amount)
		}
		sum[p.Account] += p.Amount
		total += p.Amount
	}
	if total != 0 {
		return nil, invalid("entry %q does not balance: postings sum to %d", tx.Key, total)
	}
	out := make([]ledger.Posting, 0, len(sum))
	for a, v := range sum {
		if v != 0 {
			out = append(out, ledger.Posting{Account: a, Amount: v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
	if len(out) < 2 {
		return nil, invalid("entry %q moves nothing", tx.Key)
	}
	return out, nil
}

// Post appends tx, as ledger.Ledger.Post: posting a key again returns the existing
// entry when its postings are the same, and a conflict error when they differ.
func (l *Ledger) Post(ctx context.Context, tx ledger.Tx) (ledger.Entry, error) {
	out, err := l.PostAll(ctx, []ledger.Tx{tx})
	if err != nil {
		return ledger.Entry{}, err
	}
	return out[0], nil
}

// PostAll posts several entries in one transaction, all or none, as
// ledger.Ledger.PostAll.
func (l *Ledger) PostAll(ctx context.Context, txs []ledger.Tx) ([]ledger.Entry, error) {
	norm, err := normalizeBatch(txs)
	if err != nil {
		return nil, err
	}
	stx, err := l.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("ledger: begin: %w", err)
	}
	defer stx.Rollback(ctx)
	out, err := postAll(ctx, stx, txs, norm, l.now().UTC())
	if err != nil {
		return nil, err
	}
	if err := stx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("ledger: commit: %w", err)
	}
	return out, nil
}

// normalizeBatch checks a batch (its size, no key twice) and normalizes each entry's
// postings.
func normalizeBatch(txs []ledger.Tx) ([][]ledger.Posting, error) {
	if len(txs) > ledger.MaxBatch {
		return nil, invalid("batch of %d entries, at most %d", len(txs), ledger.MaxBatch)
	}
	norm := make([][]ledger.Posting, len(txs))
	seen := make(map[string]bool, len(txs))
	for i, tx := range txs {
		ps, err := normalize(tx)
		if err != nil {
			return nil, err
		}
		if seen[tx.Key] {
			return nil, invalid("batch posts key %q twice", tx.Key)
		}
		seen[tx.Key] = true
		norm[i] = ps
	}
	return norm, nil
}

// postAll writes the entries of txs (norm their normalized postings) in stx with a
// few statements whatever their number: the entries whose keys are new in one INSERT
// (ON CONFLICT DO NOTHING: a concurrent transaction posting a key makes it wait, and
// the key's entry is then read and compared), their postings in another, whose
// trigger moves and locks the balances. NonNegative accounts are then read, locked,
// and checked as they stood after each entry, from their final balance less the
// postings of the entries after it.
func postAll(ctx context.Context, stx pgx.Tx, txs []ledger.Tx, norm [][]ledger.Posting, now time.Time) ([]ledger.Entry, error) {
	keys := make([]string, len(txs))
	times := make([]int64, len(txs))
	memos := make([]string, len(txs))
	for i, tx := range txs {
		keys[i], times[i], memos[i] = tx.Key, now.UnixNano(), tx.Memo
	}
	rows, err := stx.Query(ctx, `INSERT INTO ledger_entries (key, time, memo)
		SELECT k, t, m FROM unnest($1::text[], $2::bigint[], $3::text[]) WITH ORDINALITY AS e(k, t, m, i) ORDER BY i
		ON CONFLICT (key) DO NOTHING RETURNING id, key`, keys, times, memos)
	if err != nil {
		return nil, fmt.Errorf("ledger: insert entries: %w", err)
	}
	ids := map[string]int64{}
	for rows.Next() {
		var id int64
		var key string
		if err := rows.Scan(&id, &key); err != nil {
			rows.Close()
			return nil, fmt.Errorf("ledger: insert entries: %w", err)
		}
		ids[key] = id
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: insert entries: %w", err)
	}
	out := make([]ledger.Entry, len(txs))
	var entryIDs []int64
	var accounts []string
	var amounts []int64
	var guarded []string
	for i, tx := range txs {
		id, ok := ids[tx.Key]
		if !ok {
			prev, err := entryByKey(ctx, stx, tx.Key)
			if err != nil {
				return nil, err
			}
			if !samePostings(prev.Postings, norm[i]) {
				return nil, hashgrid.Errorf(hashgrid.ECONFLICT, "ledger: key %q already posted with other amounts", tx.Key)
			}
			out[i] = prev
			continue
		}
		out[i] = ledger.Entry{ID: id, Key: tx.Key, Time: now, Memo: tx.Memo, Postings: norm[i]}
		for _, p := range norm[i] {
			entryIDs, accounts, amounts = append(entryIDs, id), append(accounts, p.Account), append(amounts, p.Amount)
		}
		guarded = append(guarded, tx.NonNegative...)
	}
	if len(entryIDs) == 0 {
		return out, nil
	}
	// In account order, so the balance rows the trigger locks are too: concurrent
	// entries never deadlock on them.
	if _, err := stx.Exec(ctx, `INSERT INTO ledger_postings (entry_id, account, amount)
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS p(e, a, v) ORDER BY a, e`,
		entryIDs, accounts, amounts); err != nil {
		return nil, fmt.Errorf("ledger: insert postings: %w", err)
	}
	if len(guarded) == 0 {
		return out, nil
	}
	rows, err = stx.Query(ctx, `SELECT account, balance FROM ledger_balances WHERE account = ANY($1) ORDER BY account FOR UPDATE`, guarded)
	if err != nil {
		return nil, fmt.Errorf("ledger: balance: %w", err)
	}
	bal := map[string]int64{}
	for rows.Next() {
		var a string
		var b int64
		if err := rows.Scan(&a, &b); err != nil {
			rows.Close()
			return nil, fmt.Errorf("ledger: balance: %w", err)
		}
		bal[a] = b
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: balance: %w", err)
	}
	// Walk back from the end: bal holds each account's balance after entry i. The
	// first entry that overdraws is the one reported, as a forward walk would.
	var overdrawn error
	for i := len(txs) - 1; i >= 0; i-- {
		tx := txs[i]
		if _, ok := ids[tx.Key]; !ok {
			continue
		}
		for _, a := range tx.NonNegative {
			if b := bal[a]; b < 0 {
				msg := fmt.Sprintf("ledger: %s would go %d below zero", a, -b)
				if len(txs) > 1 {
					msg = fmt.Sprintf("ledger: entry %q: %s would go %d below zero", tx.Key, a, -b)
				}
				overdrawn = &hashgrid.Error{Code: hashgrid.ECONFLICT, Message: msg, Err: ledger.ErrInsufficient}
				break
			}
		}
		for _, p := range norm[i] {
			if _, ok := bal[p.Account]; ok {
				bal[p.Account] -= p.Amount
			}
		}
	}
	if overdrawn != nil {
		return nil, overdrawn
	}
	return out, nil
}

func samePostings(a, b []ledger.Posting) bool {
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
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func entryByKey(ctx context.Context, q querier, key string) (ledger.Entry, error) {
	var e ledger.Entry
	var t int64
	if err := q.QueryRow(ctx, `SELECT id, key, time, memo FROM ledger_entries WHERE key = $1`, key).
		Scan(&e.ID, &e.Key, &t, &e.Memo); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return ledger.Entry{}, hashgrid.Errorf(hashgrid.ENOTFOUND, "ledger: no entry %q", key)
		}
		return ledger.Entry{}, fmt.Errorf("ledger: entry %q: %w", key, err)
	}
	e.Time = time.Unix(0, t).UTC()
	var err error
	e.Postings, err = postingsOf(ctx, q, e.ID)
	return e, err
}

func postingsOf(ctx context.Context, q querier, id int64) ([]ledger.Posting, error) {
	rows, err := q.Query(ctx, `SELECT account, amount FROM ledger_postings WHERE entry_id = $1 ORDER BY account COLLATE "C"`, id)
	if err != nil {
		return nil, fmt.Errorf("ledger: postings: %w", err)
	}
	defer rows.Close()
	var ps []ledger.Posting
	for rows.Next() {
		var p ledger.Posting
		if err := rows.Scan(&p.Account, &p.Amount); err != nil {
			return nil, fmt.Errorf("ledger: postings: %w", err)
		}
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: postings: %w", err)
	}
	return ps, nil
}

// Entry returns the entry posted under key, or an error wrapping hashgrid.ErrNotFound.
func (l *Ledger) Entry(ctx context.Context, key string) (ledger.Entry, error) {
	return entryByKey(ctx, l.pool, key)
}

// Balance returns an account's balance (0 for an account never posted to).
func (l *Ledger) Balance(ctx context.Context, account string) (int64, error) {
	var bal int64
	err := l.pool.QueryRow(ctx, `SELECT balance FROM ledger_balances WHERE account = $1`, account).Scan(&bal)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: balance: %w", err)
	}
	return bal, nil
}

// Balances returns the balances of every account whose name starts with prefix.
func (l *Ledger) Balances(ctx context.Context, prefix string) (map[string]int64, error) {
	rows, err := l.pool.Query(ctx, `SELECT account, balance FROM ledger_balances WHERE starts_with(account, $1)`, prefix)
	if err != nil {
		return nil, fmt.Errorf("ledger: balances: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var a string
		var b int64
		if err := rows.Scan(&a, &b); err != nil {
			return nil, fmt.Errorf("ledger: balances: %w", err)
		}
		out[a] = b
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: balances: %w", err)
	}
	return out, nil
}

// Entries returns the entries that touch account, newest first, at most limit (at
// most 10,000, also when limit is not positive).
func (l *Ledger) Entries(ctx context.Context, account string, limit int) ([]ledger.Entry, error) {
	if limit <= 0 || limit > maxEntriesList {
		limit = maxEntriesList
	}
	rows, err := l.pool.Query(ctx, `SELECT e.id, e.key, e.time, e.memo FROM ledger_entries e
		JOIN ledger_postings p ON p.entry_id = e.id AND p.account = $1 ORDER BY e.id DESC LIMIT $2`, account, limit)
	if err != nil {
		return nil, fmt.Errorf("ledger: entries: %w", err)
	}
	var out []ledger.Entry
	for rows.Next() {
		var e ledger.Entry
		var t int64
		if err := rows.Scan(&e.ID, &e.Key, &t, &e.Memo); err != nil {
			rows.Close()
			return nil, fmt.Errorf("ledger: entries: %w", err)
		}
		e.Time = time.Unix(0, t).UTC()
		out = append(out, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: entries: %w", err)
	}
	for i := range out {
		if out[i].Postings, err = postingsOf(ctx, l.pool, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Check verifies the books: every entry balances, and every kept balance equals the
// sum of its account's postings. It returns the first problem.
func (l *Ledger) Check(ctx context.Context) error {
	var n int64
	if err := l.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT entry_id FROM ledger_postings
		GROUP BY entry_id HAVING sum(amount) <> 0 OR count(*) < 2) x`).Scan(&n); err != nil {
		return fmt.Errorf("ledger: check: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("ledger: %d entries do not balance", n)
	}
	var account string
	var kept, sum int64
	err := l.pool.QueryRow(ctx, `SELECT b.account, b.balance, COALESCE(p.sum, 0)::bigint FROM ledger_balances b
		LEFT JOIN (SELECT account, sum(amount) AS sum FROM ledger_postings GROUP BY account) p ON p.account = b.account
		WHERE b.balance <> COALESCE(p.sum, 0) LIMIT 1`).Scan(&account, &kept, &sum)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ledger: check: %w", err)
	}
	return fmt.Errorf("ledger: account %s keeps %d, its postings sum to %d", account, kept, sum)
}
