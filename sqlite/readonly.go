package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
)

// storeTables are the tables a share store of the current schema has; a file without
// them is not one.
var storeTables = []string{"share_blocks", "share_block_addresses", "work_minutes", "work_hours", "workers", "totals", "blocks", "retention"}

// OpenReadOnly opens an existing share store for reading only, for tools that read
// a pool's store beside it (registry import-pool). It never creates, migrates or
// otherwise writes the file: a missing file, a SQLite file that is not a hashgrid share
// store (another program's, or the pool's alerts.db) and a store of another schema
// version are refused, each with an error saying which, and left untouched. Reads go
// through the same methods as on a store opened with Open; writes fail. Reading a
// store in WAL mode needs its WAL index: SQLite creates hashgrid.db-shm beside the
// store if the pool is not running, as the pool itself does.
func OpenReadOnly(path string) (*DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite: invalid database path %q", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("sqlite: open %s: not a file", path)
	}
	// First the schema. Without a WAL beside it the file holds every commit, and is
	// opened immutable: SQLite takes no lock and creates no file beside it (a reader
	// of a WAL database otherwise creates its index, the -shm file), so a file that
	// is refused is left exactly as it was. With a WAL (a writer has it open, and has
	// made its index), the WAL's commits count too.
	dsn := "file:" + path + "?mode=ro&immutable=1"
	if _, err := os.Stat(path + "-wal"); err == nil {
		dsn = "file:" + path + fmt.Sprintf("?mode=ro&_pragma=busy_timeout(%d)", BusyTimeout.Milliseconds())
	}
	chk, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	err = checkStore(context.Background(), chk, path)
	chk.Close()
	if err != nil {
		return nil, err
	}
	// Then for reading, read-only but with locks, so that a running pool's commits
	// are seen whole.
	r, err := sql.Open("sqlite", "file:"+path+fmt.Sprintf("?mode=ro&_pragma=busy_timeout(%d)&_pragma=query_only(1)",
		BusyTimeout.Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(MaxReaders)
	r.SetMaxIdleConns(MaxReaders)
	db := &DB{path: path, w: r, r: r, readOnly: true}
	st, err := db.Pruned(context.Background())
	if err != nil {
		r.Close()
		return nil, err
	}
	db.pruned.Store(st.Seq)
	return db, nil
}

// checkStore fails unless the database at path is a share store of this program's
// schema version.
func checkStore(ctx context.Context, r *sql.DB, path string) error {
	var version int
	if err := r.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("sqlite: %s is not a SQLite database hashgrid can read: %w", path, err)
	}
	rows, err := r.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		return fmt.Errorf("sqlite: %s is not a SQLite database hashgrid can read: %w", path, err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fmt.Errorf("sqlite: %s: %w", path, err)
		}
		have[name] = true
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("sqlite: %s: %w", path, err)
	}
	if !have["share_blocks"] && !have["shares"] {
		return fmt.Errorf("sqlite: %s is not a hashgrid share store (it has no share tables; the pool's store is hashgrid.db in its data directory)", path)
	}
	switch {
	case version > len(migrations):
		return fmt.Errorf("sqlite: %s: schema version %d is newer than this program's %d", path, version, len(migrations))
	case version < len(migrations):
		return fmt.Errorf("sqlite: %s: share store of schema version %d, this program reads %d: run this version's pool on it once to upgrade it",
			path, version, len(migrations))
	}
	for _, t := range storeTables {
		if !have[t] {
			return fmt.Errorf("sqlite: %s is not a hashgrid share store (no table %s)", path, t)
		}
	}
	return nil
}
