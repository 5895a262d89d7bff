package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Leader election. Several accounting processes may run against one database; one of
// them leads (consumes the share stream, tracks blocks, pays) and the others wait. The
// leader holds a session-level advisory lock on a connection of its own: PostgreSQL
// releases it when that session ends, which a killed process's closed socket ends at
// once, so a waiting process takes over within LeaderPoll.
//
// A leader that loses its connection (the database restarted, the network broke) is
// told through Lost and must stop working; until it notices, within LeaderPoll, a new
// leader may already run. Everything the leader writes is idempotent (shares by their
// stream sequence, ledger entries by key), so that overlap cannot count or pay twice.

// LeaderPoll is how often a waiting process tries the lock and a leader checks that
// its session is alive.
const LeaderPoll = time.Second

// Leader is a held leadership.
type Leader struct {
	conn *pgx.Conn
	key  int64
	lost chan struct{}
	stop chan struct{}
	done chan struct{}
}

// LockKey is the advisory lock key of a role name.
func LockKey(role string) int64 {
	h := fnv.New64a()
	h.Write([]byte("hashgrid:" + role))
	return int64(h.Sum64())
}

// Lead blocks until this process holds the lock of role (or ctx ends), then returns
// the leadership. waiting, if not nil, is called once if the lock is held by another
// process when first tried.
func Lead(ctx context.Context, url, role string, log *slog.Logger, waiting func()) (*Leader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := LockKey(role)
	told := false
	for {
		l, err := tryLead(ctx, url, key)
		if err == nil && l != nil {
			go l.watch(log)
			return l, nil
		}
		if err != nil {
			log.Warn("leader election: database unavailable", "role", role, "err", err)
		} else if !told {
			told = true
			log.Info("another process leads; waiting", "role", role)
			if waiting != nil {
				waiting()
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(LeaderPoll):
		}
	}
}

// tryLead opens a session and tries the lock once: a Leader, or nil if another
// session holds it.
func tryLead(ctx context.Context, url string, key int64) (*Leader, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, url)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(cctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("postgres: advisory lock: %w", err)
	}
	if !ok {
		conn.Close(context.Background())
		return nil, nil
	}
	return &Leader{conn: conn, key: key, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// watch pings the session until Close, closing lost when it fails.
func (l *Leader) watch(log *slog.Logger) {
	defer close(l.done)
	t := time.NewTicker(LeaderPoll)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), LeaderPoll)
		err := l.conn.Ping(ctx)
		cancel()
		if err != nil {
			log.Error("leadership lost: the lock's session failed", "err", err)
			close(l.lost)
			return
		}
	}
}

// Lost is closed when the session holding the lock has failed: the caller must stop
// leading.
func (l *Leader) Lost() <-chan struct{} { return l.lost }

// Close gives the leadership up.
func (l *Leader) Close() error {
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, l.key)
	select {
	case <-l.lost:
		err = nil // the session is gone, and its lock with it
	default:
	}
	return errors.Join(err, l.conn.Close(ctx))
}
