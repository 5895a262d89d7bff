package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hashgrid/hashgrid/alert"
)

// AlertOutbox is the alert outbox (alert.Outbox) in PostgreSQL, in tables named
// alert_*: the same answers as alert.SQLiteOutbox (the contract tests in storetest
// run against both).
//
// Monitors in several processes may share it. An event is queued once whoever adds
// it: Add inserts the condition and the seen ID with ON CONFLICT DO NOTHING, so a
// second process adding the same event waits for the first's transaction and then
// finds it there. Claim takes the oldest due alert with FOR UPDATE SKIP LOCKED and
// moves its next try past the lease in the same statement, so two monitors never
// hold one alert at once; a monitor that dies holding one leaves it to be claimed
// again when the lease ends. An alert marked delivered is never claimed again, by
// any process, across restarts.
type AlertOutbox struct {
	pool *pgxpool.Pool
}

var _ alert.Outbox = (*AlertOutbox)(nil)

// alertMaxConns bounds the connections an AlertOutbox holds: one monitor goroutine
// and the API's reads.
const alertMaxConns = 2

var alertMigrations = migrationSet{component: "alert", steps: []migration{
	{name: "meta, seen, conditions, outbox", sql: `
CREATE TABLE alert_meta (
	k TEXT PRIMARY KEY,
	v TEXT NOT NULL
);
CREATE TABLE alert_seen (
	id        TEXT    PRIMARY KEY,
	at        BIGINT  NOT NULL,  -- Unix nanoseconds
	permanent BOOLEAN NOT NULL   -- a block's: never pruned
);
CREATE TABLE alert_conditions (
	key   TEXT   PRIMARY KEY,
	since BIGINT NOT NULL  -- Unix nanoseconds
);
CREATE TABLE alert_outbox (
	seq        BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id         TEXT    NOT NULL UNIQUE,
	kind       TEXT    NOT NULL,
	body       BYTEA   NOT NULL,   -- the event as JSON
	created    BIGINT  NOT NULL,   -- Unix nanoseconds
	attempts   INTEGER NOT NULL DEFAULT 0,
	next_try   BIGINT  NOT NULL,   -- Unix nanoseconds; a claim moves it past its lease
	delivered  BIGINT,             -- Unix nanoseconds; NULL until delivered
	last_error TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX alert_outbox_pending ON alert_outbox (next_try, seq) WHERE delivered IS NULL;
CREATE INDEX alert_outbox_delivered ON alert_outbox (delivered) WHERE delivered IS NOT NULL;
`},
}}

// OpenAlertOutbox connects to the database at url and brings the alert tables up to
// date. log may be nil.
func OpenAlertOutbox(ctx context.Context, url string, log *slog.Logger) (*AlertOutbox, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: alert outbox: parse url: %w", err)
	}
	cfg.MaxConns = alertMaxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: alert outbox: connect: %w", err)
	}
	if err := migrate(ctx, pool, alertMigrations, log.With("subsystem", "postgres")); err != nil {
		pool.Close()
		return nil, err
	}
	return &AlertOutbox{pool: pool}, nil
}

// Close implements alert.Outbox.
func (o *AlertOutbox) Close() error {
	o.pool.Close()
	return nil
}

// Baselined implements alert.Outbox.
func (o *AlertOutbox) Baselined(ctx context.Context) (bool, error) {
	var ok bool
	if err := o.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM alert_meta WHERE k = 'baseline')`).Scan(&ok); err != nil {
		return false, fmt.Errorf("postgres: alert outbox: %w", err)
	}
	return ok, nil
}

// SetBaselined implements alert.Outbox.
func (o *AlertOutbox) SetBaselined(ctx context.Context) error {
	if _, err := o.pool.Exec(ctx, `INSERT INTO alert_meta (k, v) VALUES ('baseline', '1') ON CONFLICT (k) DO NOTHING`); err != nil {
		return fmt.Errorf("postgres: alert outbox: %w", err)
	}
	return nil
}

// Add implements alert.Outbox.
func (o *AlertOutbox) Add(ctx context.Context, a alert.NewAlert) (bool, error) {
	tx, err := o.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("postgres: alert outbox: %w", err)
	}
	defer tx.Rollback(ctx)
	if a.Condition != "" {
		tag, err := tx.Exec(ctx, `INSERT INTO alert_conditions (key, since) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`,
			a.Condition, a.Since)
		if err != nil {
			return false, fmt.Errorf("postgres: alert outbox: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return false, nil // this episode is already open (and was announced)
		}
	}
	tag, err := tx.Exec(ctx, `INSERT INTO alert_seen (id, at, permanent) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`,
		a.ID, a.At.UnixNano(), a.Condition == "")
	if err != nil {
		return false, fmt.Errorf("postgres: alert outbox: %w", err)
	}
	added := tag.RowsAffected() == 1
	if added && !a.Quiet {
		if _, err := tx.Exec(ctx, `INSERT INTO alert_outbox (id, kind, body, created, next_try) VALUES ($1, $2, $3, $4, $4)`,
			a.ID, a.Kind, a.Body, a.At.UnixNano()); err != nil {
			return false, fmt.Errorf("postgres: alert outbox: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("postgres: alert outbox: %w", err)
	}
	return added, nil
}

// Clear implements alert.Outbox.
func (o *AlertOutbox) Clear(ctx context.Context, key string) error {
	if _, err := o.pool.Exec(ctx, `DELETE FROM alert_conditions WHERE key = $1`, key); err != nil {
		return fmt.Errorf("postgres: alert outbox: %w", err)
	}
	return nil
}

// Claim implements alert.Outbox.
func (o *AlertOutbox) Claim(ctx context.Context, now, until time.Time) (alert.Entry, bool, error) {
	var e alert.Entry
	var created int64
	err := o.pool.QueryRow(ctx, `UPDATE alert_outbox SET next_try = $1 WHERE seq = (
			SELECT seq FROM alert_outbox WHERE delivered IS NULL AND next_try <= $2
			ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING seq, id, kind, body, created, attempts, last_error`, until.UnixNano(), now.UnixNano()).
		Scan(&e.Seq, &e.ID, &e.Kind, &e.Body, &created, &e.Attempts, &e.LastError)
	if errors.Is(err, pgx.ErrNoRows) {
		return alert.Entry{}, false, nil
	}
	if err != nil {
		return alert.Entry{}, false, fmt.Errorf("postgres: alert outbox: %w", err)
	}
	e.Created = time.Unix(0, created).UTC()
	return e, true, nil
}

// Delivered implements alert.Outbox.
func (o *AlertOutbox) Delivered(ctx context.Context, seq int64, at time.Time) error {
	if _, err := o.pool.Exec(ctx, `UPDATE alert_outbox SET delivered = $1, attempts = attempts + 1, last_error = ''
		WHERE seq = $2`, at.UnixNano(), seq); err != nil {
		return fmt.Errorf("postgres: alert outbox: %w", err)
	}
	return nil
}

// Failed implements alert.Outbox.
func (o *AlertOutbox) Failed(ctx context.Context, seq int64, next time.Time, msg string) error {
	if _, err := o.pool.Exec(ctx, `UPDATE alert_outbox SET attempts = attempts + 1, next_try = $1, last_error = $2
		WHERE seq = $3`, next.UnixNano(), msg, seq); err != nil {
		return fmt.Errorf("postgres: alert outbox: %w", err)
	}
	return nil
}

// Prune implements alert.Outbox.
func (o *AlertOutbox) Prune(ctx context.Context, before time.Time) error {
	cut := before.UnixNano()
	if _, err := o.pool.Exec(ctx, `DELETE FROM alert_outbox WHERE delivered IS NOT NULL AND delivered < $1`, cut); err != nil {
		return fmt.Errorf("postgres: alert outbox: %w", err)
	}
	if _, err := o.pool.Exec(ctx, `DELETE FROM alert_seen s WHERE NOT s.permanent AND s.at < $1
		AND NOT EXISTS (SELECT 1 FROM alert_outbox o WHERE o.id = s.id)`, cut); err != nil {
		return fmt.Errorf("postgres: alert outbox: %w", err)
	}
	return nil
}

// Recent implements alert.Outbox.
func (o *AlertOutbox) Recent(ctx context.Context, limit int) ([]alert.Entry, error) {
	limit = max(limit, 0)
	rows, err := o.pool.Query(ctx, `SELECT seq, id, kind, body, created, attempts, delivered, last_error FROM alert_outbox
		ORDER BY seq DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: alert outbox: %w", err)
	}
	out := []alert.Entry{}
	var e alert.Entry
	var created int64
	var del *int64
	if _, err := pgx.ForEachRow(rows, []any{&e.Seq, &e.ID, &e.Kind, &e.Body, &created, &e.Attempts, &del, &e.LastError}, func() error {
		r := e
		r.Body = append([]byte(nil), e.Body...)
		r.Created = time.Unix(0, created).UTC()
		if del != nil {
			r.Delivered = time.Unix(0, *del).UTC()
		} else {
			r.Delivered = time.Time{}
		}
		out = append(out, r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: alert outbox: %w", err)
	}
	return out, nil
}
