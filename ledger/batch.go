package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/hashgrid/hashgrid"
)

// MaxBatch bounds how many entries PostAll writes in one transaction.
const MaxBatch = 10_000

// PostAll posts several entries in one transaction: all of them or none. Each entry is
// idempotent by its key exactly as with Post (an entry already posted with the same
// postings is returned as it was; other postings under its key are a conflict), and
// NonNegative accounts are checked after each entry. It exists for callers that credit
// many small amounts (a PPS credit per share), where one commit per entry would bound
// the rate by the disk's fsyncs.
func (l *Ledger) PostAll(ctx context.Context, txs []Tx) ([]Entry, error) {
	if err := checkBatch(txs); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	stx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("ledger: begin: %w", err)
	}
	defer stx.Rollback()
	out, err := PostAllTx(ctx, stx, txs, l.now().UTC())
	if err != nil {
		return nil, err
	}
	if err := stx.Commit(); err != nil {
		return nil, fmt.Errorf("ledger: commit: %w", err)
	}
	return out, nil
}

// checkBatch checks a batch's size and that no key comes twice.
func checkBatch(txs []Tx) error {
	if len(txs) > MaxBatch {
		return invalid("batch of %d entries, at most %d", len(txs), MaxBatch)
	}
	seen := make(map[string]bool, len(txs))
	for _, tx := range txs {
		if seen[tx.Key] {
			return invalid("batch posts key %q twice", tx.Key)
		}
		seen[tx.Key] = true
	}
	return nil
}

// PostAllTx writes txs as PostAll does, dated now, inside stx: a transaction the
// caller opened on the ledger's database file (with _txlock=immediate, as Open does,
// so that it holds the write lock from its start) and commits. It lets another store
// in the same file write its own rows in the same transaction as the entries, all or
// none: the market saves an order's state with its settlement.
func PostAllTx(ctx context.Context, stx *sql.Tx, txs []Tx, now time.Time) ([]Entry, error) {
	if err := checkBatch(txs); err != nil {
		return nil, err
	}
	out := make([]Entry, len(txs))
	for i, tx := range txs {
		ps, err := normalize(tx)
		if err != nil {
			return nil, err
		}
		if prev, err := entryByKey(ctx, stx, tx.Key); err == nil {
			if !samePostings(prev.Postings, ps) {
				return nil, hashgrid.Errorf(hashgrid.ECONFLICT, "ledger: key %q already posted with other amounts", tx.Key)
			}
			out[i] = prev
			continue
		} else if !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		res, err := stx.ExecContext(ctx, `INSERT INTO entries(key, time, memo) VALUES (?, ?, ?)`, tx.Key, now.UnixNano(), tx.Memo)
		if err != nil {
			return nil, fmt.Errorf("ledger: insert entry: %w", err)
		}
		id, _ := res.LastInsertId()
		for _, p := range ps {
			if _, err := stx.ExecContext(ctx, `INSERT INTO postings(entry_id, account, amount) VALUES (?, ?, ?)`, id, p.Account, p.Amount); err != nil {
				return nil, fmt.Errorf("ledger: insert posting: %w", err)
			}
			if _, err := stx.ExecContext(ctx, `INSERT INTO balances(account, balance) VALUES (?, ?) ON CONFLICT(account) DO UPDATE SET balance = balance + excluded.balance`, p.Account, p.Amount); err != nil {
				return nil, fmt.Errorf("ledger: balance: %w", err)
			}
		}
		for _, a := range tx.NonNegative {
			var bal int64
			if err := stx.QueryRowContext(ctx, `SELECT balance FROM balances WHERE account = ?`, a).Scan(&bal); err != nil && !errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("ledger: balance: %w", err)
			}
			if bal < 0 {
				return nil, &hashgrid.Error{Code: hashgrid.ECONFLICT, Message: fmt.Sprintf("ledger: entry %q: %s would go %d below zero", tx.Key, a, -bal), Err: ErrInsufficient}
			}
		}
		out[i] = Entry{ID: id, Key: tx.Key, Time: now, Memo: tx.Memo, Postings: ps}
	}
	return out, nil
}
