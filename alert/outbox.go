package alert

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// The outbox keeps, in one SQLite file:
//   - seen: every event ID ever queued (or, on the first check, remembered as
//     history), so that no event is announced twice;
//   - conditions: the conditions open now (a quiet worker, a node down), so that an
//     episode is announced once however long it lasts, and again only after it ended;
//   - outbox: the alerts, with delivery attempts, until they are delivered.
const schema = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, at INTEGER NOT NULL, permanent INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS conditions (key TEXT PRIMARY KEY, since INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	id TEXT NOT NULL UNIQUE,
	kind TEXT NOT NULL,
	body BLOB NOT NULL,
	created INTEGER NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	next_try INTEGER NOT NULL,
	delivered INTEGER,
	last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered, next_try);
`

type outbox struct{ db *sql.DB }

func openOutbox(dir string) (*outbox, error) {
	path := filepath.Join(dir, "alerts.db")
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("alert: invalid outbox path %q", path)
	}
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("alert: open %s: %w", path, err)
	}
	// One connection: the monitor is one goroutine, and the API reads rarely.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("alert: open %s: %w", path, err)
	}
	return &outbox{db: db}, nil
}

func (o *outbox) close() error { return o.db.Close() }

func (o *outbox) baselined(ctx context.Context) (bool, error) {
	var v string
	err := o.db.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = 'baseline'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("alert: outbox: %w", err)
	}
	return true, nil
}

func (o *outbox) setBaselined(ctx context.Context) error {
	_, err := o.db.ExecContext(ctx, `INSERT OR IGNORE INTO meta (k, v) VALUES ('baseline', '1')`)
	if err != nil {
		return fmt.Errorf("alert: outbox: %w", err)
	}
	return nil
}

// add records ev in one transaction: the open condition cond (when not ""), the ID as
// seen, and unless quiet the alert to deliver. It reports whether the event is new.
func (o *outbox) add(ctx context.Context, id, cond string, since int64, ev Event, quiet bool, now time.Time) (added bool, err error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return false, fmt.Errorf("alert: encode: %w", err)
	}
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("alert: outbox: %w", err)
	}
	defer tx.Rollback()
	if cond != "" {
		res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO conditions (key, since) VALUES (?, ?)`, cond, since)
		if err != nil {
			return false, fmt.Errorf("alert: outbox: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return false, nil // this episode is already open (and was announced)
		}
	}
	res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO seen (id, at, permanent) VALUES (?, ?, ?)`, id, now.UnixNano(), cond == "")
	if err != nil {
		return false, fmt.Errorf("alert: outbox: %w", err)
	}
	n, _ := res.RowsAffected()
	if n == 1 && !quiet {
		_, err = tx.ExecContext(ctx, `INSERT INTO outbox (id, kind, body, created, next_try) VALUES (?, ?, ?, ?, ?)`,
			id, string(ev.Kind), body, now.UnixNano(), now.UnixNano())
		if err != nil {
			return false, fmt.Errorf("alert: outbox: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("alert: outbox: %w", err)
	}
	return n == 1, nil
}

// clear closes the condition key, so that its next episode is announced.
func (o *outbox) clear(ctx context.Context, key string) error {
	if _, err := o.db.ExecContext(ctx, `DELETE FROM conditions WHERE key = ?`, key); err != nil {
		return fmt.Errorf("alert: outbox: %w", err)
	}
	return nil
}

type pending struct {
	seq      int64
	id       string
	body     []byte
	attempts int
}

func (o *outbox) due(ctx context.Context, now time.Time) ([]pending, error) {
	rows, err := o.db.QueryContext(ctx, `SELECT seq, id, body, attempts FROM outbox
		WHERE delivered IS NULL AND next_try <= ? ORDER BY seq LIMIT ?`, now.UnixNano(), deliverBatch)
	if err != nil {
		return nil, fmt.Errorf("alert: outbox: %w", err)
	}
	defer rows.Close()
	var out []pending
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.seq, &p.id, &p.body, &p.attempts); err != nil {
			return nil, fmt.Errorf("alert: outbox: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func (o *outbox) delivered(ctx context.Context, seq int64, now time.Time) error {
	_, err := o.db.ExecContext(ctx, `UPDATE outbox SET delivered = ?, attempts = attempts + 1, last_error = '' WHERE seq = ?`, now.UnixNano(), seq)
	if err != nil {
		return fmt.Errorf("alert: outbox: %w", err)
	}
	return nil
}

func (o *outbox) failed(ctx context.Context, seq int64, next time.Time, msg string) error {
	if len(msg) > maxErrorText {
		msg = msg[:maxErrorText]
	}
	_, err := o.db.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ? WHERE seq = ?`, next.UnixNano(), msg, seq)
	if err != nil {
		return fmt.Errorf("alert: outbox: %w", err)
	}
	return nil
}

// prune drops delivered condition alerts and their IDs once they are old. Block IDs
// are kept for good: blocks stay in the store, and forgetting one would announce it
// again.
func (o *outbox) prune(ctx context.Context, now time.Time) error {
	cut := now.Add(-keepDelivered).UnixNano()
	if _, err := o.db.ExecContext(ctx, `DELETE FROM outbox WHERE delivered IS NOT NULL AND delivered < ?`, cut); err != nil {
		return fmt.Errorf("alert: outbox: %w", err)
	}
	if _, err := o.db.ExecContext(ctx, `DELETE FROM seen WHERE permanent = 0 AND at < ? AND id NOT IN (SELECT id FROM outbox)`, cut); err != nil {
		return fmt.Errorf("alert: outbox: %w", err)
	}
	return nil
}

// Record is one alert as kept in the outbox, for the admin API.
type Record struct {
	Event     Event      `json:"event"`
	Attempts  int        `json:"attempts"`
	Delivered *time.Time `json:"delivered,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}

// Recent returns the newest alerts in the outbox, newest first.
func (m *Monitor) Recent(ctx context.Context, limit int) ([]Record, error) {
	rows, err := m.ob.db.QueryContext(ctx, `SELECT body, attempts, delivered, last_error FROM outbox ORDER BY seq DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("alert: outbox: %w", err)
	}
	defer rows.Close()
	out := []Record{}
	for rows.Next() {
		var r Record
		var body []byte
		var del sql.NullInt64
		if err := rows.Scan(&body, &r.Attempts, &del, &r.LastError); err != nil {
			return nil, fmt.Errorf("alert: outbox: %w", err)
		}
		if err := json.Unmarshal(body, &r.Event); err != nil {
			return nil, fmt.Errorf("alert: outbox: %w", err)
		}
		if del.Valid {
			t := time.Unix(0, del.Int64).UTC()
			r.Delivered = &t
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Deliver sends the alerts that are due, oldest first, and returns how many were
// delivered. Without a webhook every alert counts as delivered once logged. It stops
// at the first failure: the next alert would most likely fail the same way.
func (m *Monitor) Deliver(ctx context.Context) (int, error) {
	now := m.cfg.Now()
	due, err := m.ob.due(ctx, now)
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, p := range due {
		if m.cfg.WebhookURL != "" {
			if err := m.post(ctx, p); err != nil {
				wait := m.backoff(p.attempts)
				m.log.Warn("alert not delivered; will retry", "id", p.id, "attempt", p.attempts+1, "retry_in", wait, "err", err)
				if ferr := m.ob.failed(ctx, p.seq, m.cfg.Now().Add(wait), err.Error()); ferr != nil {
					return sent, ferr
				}
				return sent, nil
			}
		}
		if err := m.ob.delivered(ctx, p.seq, m.cfg.Now()); err != nil {
			return sent, err
		}
		sent++
	}
	if sent > 0 {
		return sent, m.ob.prune(ctx, now)
	}
	return sent, nil
}

func (m *Monitor) backoff(attempts int) time.Duration {
	d := m.cfg.RetryMin
	for i := 0; i < attempts && d < m.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, m.cfg.RetryMax)
}

// post sends one alert. Errors never carry the URL.
func (m *Monitor) post(ctx context.Context, p pending) error {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.cfg.WebhookURL, bytes.NewReader(p.body))
	if err != nil {
		return errors.New("webhook: bad URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "hashgrid-alert")
	req.Header.Set("Idempotency-Key", p.id)
	resp, err := m.cfg.HTTPClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook: HTTP %d", resp.StatusCode)
	}
	return nil
}
