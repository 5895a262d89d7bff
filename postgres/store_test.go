package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/storetest"
)

// fallbackURL is Debian's PostgreSQL on its default port with trust authentication,
// tried when HASHGRID_TEST_POSTGRES is unset so that go test ./... works from a plain
// checkout on a machine that runs one.
const fallbackURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// serverURL returns the URL of the server tests create their databases on. The tests
// need one: without -short they fail, never skip, when none is there.
func serverURL(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping tests that need PostgreSQL")
	}
	if u := os.Getenv("HASHGRID_TEST_POSTGRES"); u != "" {
		return u
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:5432", time.Second)
	if err == nil {
		c.Close()
		return fallbackURL
	}
	t.Fatalf("no PostgreSQL for the tests: HASHGRID_TEST_POSTGRES is unset and nothing answers on 127.0.0.1:5432; " +
		"run scripts/test, which starts one (or set HASHGRID_TEST_POSTGRES=postgres://USER@HOST:PORT/DB)")
	return ""
}

// testDBPrefix starts the names of the databases tests create, which go on with the
// Unix time of their creation.
const testDBPrefix = "hashgrid_test_"

// dropStale drops databases tests created more than an hour ago: those of a test run
// killed before its cleanup ran.
func dropStale(ctx context.Context, t testing.TB, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, testDBPrefix)
	if err != nil {
		t.Fatalf("list test databases: %v", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("list test databases: %v", err)
	}
	for _, name := range names {
		stamp, _, _ := strings.Cut(strings.TrimPrefix(name, testDBPrefix), "_")
		created, err := strconv.ParseInt(stamp, 10, 64)
		if err != nil || time.Since(time.Unix(created, 0)) < time.Hour {
			continue
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("drop stale test database %s: %v", name, err)
		}
	}
}

// freshDatabase creates a database of its own for one test on the test server and
// drops it when the test ends; it returns the database's URL.
func freshDatabase(t testing.TB) string {
	t.Helper()
	admin := serverURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	dropStale(ctx, t, conn)
	var b [6]byte
	rand.Read(b[:])
	name := fmt.Sprintf("%s%d_%s", testDBPrefix, time.Now().Unix(), hex.EncodeToString(b[:]))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("test server URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), freshDatabase(t), nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestContract runs the ShareStore contract that sqlite runs too.
func TestContract(t *testing.T) {
	storetest.ShareStore(t, func(tb testing.TB) hashgrid.ShareStore { return openStore(tb) })
}

// BenchmarkAddShares measures one writer adding shares in batches of
// storetest.BenchBatch into a fresh database on the test server.
func BenchmarkAddShares(b *testing.B) {
	storetest.AddSharesBenchmark(b, func(tb testing.TB) hashgrid.ShareStore { return openStore(tb) })
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
