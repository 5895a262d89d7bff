package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestLeaderTakeover: one process leads, a second waits; when the first gives up, and
// when its session is killed (as a killed process's would end), the waiting one leads.
func TestLeaderTakeover(t *testing.T) {
	url := freshDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	role := "test-" + t.Name() + time.Now().Format("150405.000000000")

	a, err := Lead(ctx, url, role, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	got := make(chan *Leader, 1)
	go func() {
		b, err := Lead(ctx, url, role, nil, func() { close(waited) })
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	<-waited
	select {
	case <-got:
		t.Fatal("two leaders at once")
	case <-time.After(2 * LeaderPoll):
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	var b *Leader
	select {
	case b = <-got:
	case <-time.After(5 * LeaderPoll):
		t.Fatal("the waiting process did not take over after the leader gave up")
	}

	// Kill b's session from outside: b learns it lost, and a third process leads.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var pid int
	if err := b.conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Lost():
	case <-time.After(5 * LeaderPoll):
		t.Fatal("a leader whose session was killed was not told")
	}
	c, err := Lead(ctx, url, role, nil, func() { t.Error("the lock of a killed session was still held") })
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	b.Close()
}
