package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// dirState returns the names and contents of the files in dir.
func dirState(tb testing.TB, dir string) map[string][]byte {
	tb.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func checkUnchanged(tb testing.TB, what string, before, after map[string][]byte) {
	tb.Helper()
	for name, b := range before {
		if !bytes.Equal(after[name], b) {
			tb.Fatalf("%s: %s changed", what, name)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			tb.Fatalf("%s: %s appeared", what, name)
		}
	}
}

// TestOpenReadOnly opens a store beside a closed and a running writer and checks that
// it reads what was committed, cannot write, and leaves a closed store's files as they
// were.
func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "hashgrid.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.AddShares(ctx, testShares()); err != nil {
		t.Fatal(err)
	}
	want, err := db.WorkBetween(ctx, t0, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}

	// Beside the running writer.
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatalf("OpenReadOnly beside the writer: %v", err)
	}
	got, err := ro.WorkBetween(ctx, t0, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	checkWorkers(t, "WorkBetween read-only beside the writer", got, want)
	more := testShares()[:1]
	more[0].Seq = 100
	if err := ro.AddShares(ctx, more); err == nil {
		t.Fatal("AddShares through a read-only store: got nil error")
	}
	if _, err := ro.Prune(ctx, t0.Add(time.Hour), 1<<62, 1); err == nil {
		t.Fatal("Prune through a read-only store: got nil error")
	}
	ro.Close()
	db.Close()

	// The writer closed: the store is not written.
	before := dirState(t, dir)
	ro, err = OpenReadOnly(path)
	if err != nil {
		t.Fatalf("OpenReadOnly of a closed store: %v", err)
	}
	got, err = ro.WorkBetween(ctx, t0, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	checkWorkers(t, "WorkBetween read-only", got, want)
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if after := dirState(t, dir); !bytes.Equal(after["hashgrid.db"], before["hashgrid.db"]) {
		t.Fatal("read-only open of a closed store changed it")
	}
}

// TestOpenReadOnlyRefuses checks that a file that is not a share store of this
// schema is refused with an error naming the reason, and neither created nor changed:
// a missing file, another program's SQLite database (the pool's alerts.db), a file
// that is not SQLite, and a store of an older schema version.
func TestOpenReadOnlyRefuses(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenReadOnly(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: got %v, want not exist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("OpenReadOnly created a missing file")
	}

	// Another SQLite database in WAL mode, as the alert package keeps alerts.db.
	alerts := filepath.Join(dir, "alerts", "alerts.db")
	os.Mkdir(filepath.Dir(alerts), 0o755)
	raw, err := sql.Open("sqlite", alerts+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`CREATE TABLE pending (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO pending (body) VALUES ('x')`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	before := dirState(t, filepath.Dir(alerts))
	if _, err := OpenReadOnly(alerts); err == nil || !strings.Contains(err.Error(), "not a hashgrid share store") {
		t.Fatalf("alerts.db: got %v, want not a share store", err)
	}
	checkUnchanged(t, "refused alerts.db", before, dirState(t, filepath.Dir(alerts)))

	// The same while its program has it open, with a WAL beside it.
	raw, err = sql.Open("sqlite", alerts+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`INSERT INTO pending (body) VALUES ('y')`); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(alerts + "-wal"); err != nil {
		t.Fatalf("alerts.db open with no WAL beside it: %v", err)
	}
	if _, err := OpenReadOnly(alerts); err == nil || !strings.Contains(err.Error(), "not a hashgrid share store") {
		t.Fatalf("alerts.db in use: got %v, want not a share store", err)
	}
	var tables int
	if err := raw.QueryRow(`SELECT COUNT(*) FROM sqlite_master`).Scan(&tables); err != nil || tables != 1 {
		t.Fatalf("alerts.db holds %d schema objects after the refused open (%v), want its 1 table", tables, err)
	}

	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte(strings.Repeat("not a database\n", 100)), 0o644)
	if _, err := OpenReadOnly(text); err == nil || !strings.Contains(err.Error(), "not a SQLite database") {
		t.Fatalf("text file: got %v", err)
	}

	oldPath := filepath.Join(dir, "old", "hashgrid.db")
	os.Mkdir(filepath.Dir(oldPath), 0o755)
	old, err := open(oldPath, migrations[:3])
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	before = dirState(t, filepath.Dir(oldPath))
	if _, err := OpenReadOnly(oldPath); err == nil || !strings.Contains(err.Error(), "schema version 3") {
		t.Fatalf("older store: got %v, want its schema version named", err)
	}
	checkUnchanged(t, "refused older store", before, dirState(t, filepath.Dir(oldPath)))
	if !slices.Contains(storeTables, "share_blocks") {
		t.Fatal("storeTables lacks share_blocks")
	}
}
