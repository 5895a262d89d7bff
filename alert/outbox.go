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

// Outbox is where a Monitor keeps what it announced and what it still has to
// deliver:
//   - seen: every event ID ever queued (or, on the first check, remembered as
//     history), so that no event is announced twice;
//   - conditions: the conditions open now (a quiet worker, a node down), so that an
//     episode is announced once however long it lasts, and again only after it ended;
//   - the alerts, with delivery attempts, until they are delivered.
//
// SQLiteOutbox (alerts.db in the data directory, the default) and
// postgres.AlertOutbox implement it; the contract tests in storetest run against both.
//
// Several monitors may share one outbox (two accounting processes on one PostgreSQL):
// Add queues an event once whoever adds it, and Claim hands a due alert to one caller
// only until the claim expires, so that an alert is not delivered twice unless its
// deliverer dies between the webhook's answer and Delivered.
type Outbox interface {
	// Baselined reports whether SetBaselined was called: the first check, which
	// remembers what is already there as history, is done.
	Baselined(ctx context.Context) (bool, error)
	SetBaselined(ctx context.Context) error
	// Add records a in one transaction: the open condition a.Condition (when not ""),
	// a.ID as seen, and unless a.Quiet the alert to deliver, due at once. It reports
	// whether the event is new: false, and nothing changes, if the condition is open
	// already or the ID was seen.
	Add(ctx context.Context, a NewAlert) (added bool, err error)
	// Clear closes the condition key, so that its next episode is announced.
	Clear(ctx context.Context, key string) error
	// Claim returns the oldest undelivered alert due at now and makes it due again
	// only at until, so that no other caller claims it meanwhile; ok is false if none
	// is due.
	Claim(ctx context.Context, now, until time.Time) (e Entry, ok bool, err error)
	// Delivered marks the alert seq delivered at at and counts the attempt.
	Delivered(ctx context.Context, seq int64, at time.Time) error
	// Failed counts a failed attempt of the alert seq, keeps msg as its last error
	// and makes it due again at next.
	Failed(ctx context.Context, seq int64, next time.Time, msg string) error
	// Prune drops alerts delivered before before, and the IDs of conditions (not the
	// permanent ones: blocks) seen before before whose alert is gone.
	Prune(ctx context.Context, before time.Time) error
	// Recent returns the newest alerts, newest first, at most limit.
	Recent(ctx context.Context, limit int) ([]Entry, error)
	Close() error
}

// NewAlert is an event for Outbox.Add.
type NewAlert struct {
	ID        string
	Condition string // the condition the event opens; "" for a one-off event (a block), whose ID is kept for good
	Since     int64  // when the condition began, Unix nanoseconds
	Kind      string
	Body      []byte // the Event as JSON, as it is delivered
	Quiet     bool   // remember the ID without queueing the alert
	At        time.Time
}

// Entry is one alert as an Outbox keeps it.
type Entry struct {
	Seq       int64
	ID        string
	Kind      string
	Body      []byte
	Created   time.Time
	Attempts  int
	Delivered time.Time // zero until delivered
	LastError string
}

// claimLease is how long a claimed alert is not handed out again: longer than one
// webhook POST (sendTimeout) and the commit after it.
const claimLease = 2 * sendTimeout

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

// SQLiteOutbox is the Outbox in one SQLite file, alerts.db in a directory.
type SQLiteOutbox struct{ db *sql.DB }

var _ Outbox = (*SQLiteOutbox)(nil)

// OpenSQLiteOutbox opens (creating if needed) the outbox alerts.db in dir.
func OpenSQLiteOutbox(dir string) (*SQLiteOutbox, error) {
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
	return &SQLiteOutbox{db: db}, nil
}

// Close implements Outbox.
func (o *SQLiteOutbox) Close() error { return o.db.Close() }

// Baselined implements Outbox.
func (o *SQLiteOutbox) Baselined(ctx context.Context) (bool, error) {
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

// SetBaselined implements Outbox.
func (o *SQLiteOutbox) SetBaselined(ctx context.Context) error {
	_, err := o.db.ExecContext(ctx, `INSERT OR IGNORE INTO meta (k, v) VALUES ('baseline', '1')`)
	if err != nil {
		return fmt.Errorf("alert: outbox: %w", err)
	}
	return nil
}

// Add implements Outbox.
func (o *SQLiteOutbox) Add(ctx context.Context, a NewAlert) (added bool, err error) {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("alert: outbox: %w", err)
	}
	defer tx.Rollback()
	if a.Condition != "" {
		res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO conditions (key, since) VALUES (?, ?)`, a.Condition, a.Since)
		if err != nil {
			return false, fmt.Errorf("alert: outbox: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return false, nil // this episode is already open (and was announced)
		}
	}
	res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO seen (id, at, permanent) VALUES (?, ?, ?)`, a.ID, a.At.UnixNano(), a.Condition == "")
	if err != nil {
		return false, fmt.Errorf("alert: outbox: %w", err)
	}
	n, _ := res.RowsAffected()
	if n == 1 && !a.Quiet {
		_, err = tx.ExecContext(ctx, `INSERT INTO outbox (id, kind, body, created, next_try) VALUES (?, ?, ?, ?, ?)`,
			a.ID, a.Kind, a.Body, a.At.UnixNano(), a.At.UnixNano())
		if err != nil {
			return false, fmt.Errorf("alert: outbox: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("alert: outbox: %w", err)
	}
	return n == 1, nil
}

// Clear implements Outbox.
func (o *SQLiteOutbox) Clear(ctx context.Context, key string) error {
	if _, err := o.db.ExecContext(ctx, `DELETE FROM conditions WHERE key = ?`, key); err != nil {
		return fmt.Errorf("alert: outbox: %w", err)
	}
	return nil
}

// Claim implements Outbox.
func (o *SQLiteOutbox) Claim(ctx context.Context, now, until time.Time) (Entry, bool, error) {
	var e Entry
	var created int64
	err := o.db.QueryRowContext(ctx, `UPDATE outbox SET next_try = ? WHERE seq = (SELECT seq FROM outbox
		WHERE delivered IS NULL AND next_try <= ? ORDER BY seq LIMIT 1)
		RETURNING seq, id, kind, body, created, attempts, last_error`, until.UnixNano(), now.UnixNano()).
		Scan(&e.Seq, &e.ID, &e.Kind, &e.Body, &created, &e.Attempts, &e.LastError)
	if errors.Is(err, sql.ErrNoRows) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("alert: outbox: %w", err)
	}
	e.Created = time.Unix(0, created).UTC()
	return e, true, nil
}

// Delivered implements Outbox.
func (o *SQLiteOutbox) Delivered(ctx context.Context, seq int64, at time.Time) error {
	_, err := o.db.ExecContext(ctx, `UPDATE outbox SET delivered = ?, attempts = attempts + 1, last_error = '' WHERE seq = ?`, at.UnixNano(), seq)
	if err != nil {
		return fmt.Errorf("alert: outbox: %w", err)
	}
	return nil
}

// Failed implements Outbox.
func (o *SQLiteOutbox) Failed(ctx context.Context, seq int64, next time.Time, msg string) error {
	_, err := o.db.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ? WHERE seq = ?`, next.UnixNano(), msg, seq)
	if err != nil {
		return fmt.Errorf("alert: outbox: %w", err)
	}
	return nil
}

// Prune implements Outbox.
func (o *SQLiteOutbox) Prune(ctx context.Context, before time.Time) error {
	cut := before.UnixNano()
	if _, err := o.db.ExecContext(ctx, `DELETE FROM outbox WHERE delivered IS NOT NULL AND delivered < ?`, cut); err != nil {
		return fmt.Errorf("alert: outbox: %w", err)
	}
	if _, err := o.db.ExecContext(ctx, `DELETE FROM seen WHERE permanent = 0 AND at < ? AND id NOT IN (SELECT id FROM outbox)`, cut); err != nil {
		return fmt.Errorf("alert: outbox: %w", err)
	}
	return nil
}

// Recent implements Outbox.
func (o *SQLiteOutbox) Recent(ctx context.Context, limit int) ([]Entry, error) {
	limit = max(limit, 0) // SQLite reads a negative LIMIT as none
	rows, err := o.db.QueryContext(ctx, `SELECT seq, id, kind, body, created, attempts, delivered, last_error FROM outbox
		ORDER BY seq DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("alert: outbox: %w", err)
	}
	defer rows.Close()
	out := []Entry{}
	for rows.Next() {
		var e Entry
		var created int64
		var del sql.NullInt64
		if err := rows.Scan(&e.Seq, &e.ID, &e.Kind, &e.Body, &created, &e.Attempts, &del, &e.LastError); err != nil {
			return nil, fmt.Errorf("alert: outbox: %w", err)
		}
		e.Created = time.Unix(0, created).UTC()
		if del.Valid {
			e.Delivered = time.Unix(0, del.Int64).UTC()
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("alert: outbox: %w", err)
	}
	return out, nil
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
	es, err := m.ob.Recent(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(es))
	for _, e := range es {
		r := Record{Attempts: e.Attempts, LastError: e.LastError}
		if err := json.Unmarshal(e.Body, &r.Event); err != nil {
			return nil, fmt.Errorf("alert: outbox: alert %s: %w", e.ID, err)
		}
		if !e.Delivered.IsZero() {
			t := e.Delivered
			r.Delivered = &t
		}
		out = append(out, r)
	}
	return out, nil
}

// Deliver sends the alerts that are due, oldest first, and returns how many were
// delivered. Without a webhook every alert counts as delivered once logged. It stops
// at the first failure: the next alert would most likely fail the same way. Each
// alert is claimed before it is sent (see Outbox.Claim), so that monitors sharing an
// outbox do not both send it.
func (m *Monitor) Deliver(ctx context.Context) (int, error) {
	now := m.cfg.Now()
	sent := 0
	for range deliverBatch {
		p, ok, err := m.ob.Claim(ctx, now, m.cfg.Now().Add(claimLease))
		if err != nil || !ok {
			if sent > 0 && err == nil {
				return sent, m.ob.Prune(ctx, now.Add(-keepDelivered))
			}
			return sent, err
		}
		if m.cfg.WebhookURL != "" {
			if err := m.post(ctx, p); err != nil {
				wait := m.backoff(p.Attempts)
				m.log.Warn("alert not delivered; will retry", "id", p.ID, "attempt", p.Attempts+1, "retry_in", wait, "err", err)
				msg := err.Error()
				if len(msg) > maxErrorText {
					// Cut on a rune: PostgreSQL refuses text that is not UTF-8.
					msg = strings.ToValidUTF8(msg[:maxErrorText], "")
				}
				if ferr := m.ob.Failed(ctx, p.Seq, m.cfg.Now().Add(wait), msg); ferr != nil {
					return sent, ferr
				}
				return sent, nil
			}
		}
		if err := m.ob.Delivered(ctx, p.Seq, m.cfg.Now()); err != nil {
			return sent, err
		}
		sent++
	}
	return sent, m.ob.Prune(ctx, now.Add(-keepDelivered))
}

func (m *Monitor) backoff(attempts int) time.Duration {
	d := m.cfg.RetryMin
	for i := 0; i < attempts && d < m.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, m.cfg.RetryMax)
}

// post sends one alert. Errors never carry the URL.
func (m *Monitor) post(ctx context.Context, p Entry) error {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.cfg.WebhookURL, bytes.NewReader(p.Body))
	if err != nil {
		return errors.New("webhook: bad URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "hashgrid-alert")
	req.Header.Set("Idempotency-Key", p.ID)
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
