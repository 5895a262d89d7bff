// Package pgtest gives tests outside package postgres a database of their own on the
// test PostgreSQL server, as package postgres's own tests have: the server named by
// HASHGRID_TEST_POSTGRES, else Debian's on 127.0.0.1:5432 with trust authentication.
// Without -short a test fails, never skips, when there is none.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// fallbackURL is tried when HASHGRID_TEST_POSTGRES is unset.
const fallbackURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// dbPrefix starts the names of the databases tests create, followed by the Unix time
// of their creation (FreshDatabase drops those left over an hour old).
const dbPrefix = "hashgrid_test_"

// ServerURL returns the URL of the server tests create their databases on.
func ServerURL(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("-short: skipping tests that need PostgreSQL")
	}
	if u := os.Getenv("HASHGRID_TEST_POSTGRES"); u != "" {
		return u
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:5432", time.Second)
	if err == nil {
		c.Close()
		return fallbackURL
	}
	tb.Fatalf("no PostgreSQL for the tests: HASHGRID_TEST_POSTGRES is unset and nothing answers on 127.0.0.1:5432; " +
		"run scripts/test, which starts one (or set HASHGRID_TEST_POSTGRES=postgres://USER@HOST:PORT/DB)")
	return ""
}

// FreshDatabase creates a database for one test and drops it when the test ends; it
// returns the database's URL.
func FreshDatabase(tb testing.TB) string {
	tb.Helper()
	admin := ServerURL(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	dropStale(ctx, tb, conn)
	var b [6]byte
	rand.Read(b[:])
	name := fmt.Sprintf("%s%d_%s", dbPrefix, time.Now().Unix(), hex.EncodeToString(b[:]))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			tb.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		tb.Fatalf("test server URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// dropStale drops databases tests created more than an hour ago: those of a test run
// killed before its cleanup ran.
func dropStale(ctx context.Context, tb testing.TB, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, dbPrefix)
	if err != nil {
		tb.Fatalf("list test databases: %v", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatalf("list test databases: %v", err)
	}
	for _, name := range names {
		stamp, _, _ := strings.Cut(strings.TrimPrefix(name, dbPrefix), "_")
		created, err := strconv.ParseInt(stamp, 10, 64)
		if err != nil || time.Since(time.Unix(created, 0)) < time.Hour {
			continue
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Logf("drop stale test database %s: %v", name, err)
		}
	}
}
