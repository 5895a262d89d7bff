package payout

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/hashgrid/hashgrid"
)

// State is the payout service's own state: what the ledger cannot say by itself. It
// holds the window parameters behind every commitment the pool handed out, the PPS
// rate of each height, the PPS consumer's position and sub-satoshi carries, which
// window each credited block commits to, and payout batches. Money is never here:
// amounts owed live in the ledger only.
//
// SQLiteState (the default, a file in the data directory) and postgres.PayoutState
// implement it; the contract tests in storetest run against both. Whatever a method
// does not say it overwrites, it writes once: the first window, rate or block window
// recorded under a key stays, so that a step replayed after a crash comes out the same.
type State interface {
	// PoolID returns the random id of this pool's books, created on first use; every
	// process sharing the state gets the same one.
	PoolID(ctx context.Context) (string, error)

	// PutWindow records p under its commitment, created at Unix nanoseconds created;
	// a commitment already recorded is left as it is.
	PutWindow(ctx context.Context, p WindowParams, created int64) error
	// Window returns the parameters recorded under c; ENOTFOUND if none are.
	Window(ctx context.Context, c Hash32) (WindowParams, error)
	// PruneWindows deletes up to limit windows created before before (Unix
	// nanoseconds), except those a block window names and those in keep, and returns
	// how many it deleted.
	PruneWindows(ctx context.Context, before int64, keep []Hash32, limit int) (int, error)

	// PutRate records r unless a rate at r.Height or above is recorded: a height
	// below one recorded is never added later.
	PutRate(ctx context.Context, r Rate) error
	// Rate returns the rate for a share at height: the one recorded at that height
	// or, if none was, at the nearest lower height (the lowest recorded, for a height
	// below all), with Fees the average of the recorded fees of up to feeWindow
	// heights at or below the rate's. ok is false while no rate at or above height
	// exists yet, since one may still be recorded.
	Rate(ctx context.Context, height int64, feeWindow int) (r Rate, ok bool, err error)

	// PPSState returns the PPS consumer's position and every miner's sub-satoshi
	// carry (in units of 2^-32 satoshi) after the share at cursor. started is false
	// before the consumer first saved its position.
	PPSState(ctx context.Context) (cursor uint64, started bool, carries map[string]uint64, err error)
	// PPSCursor is PPSState without the carries.
	PPSCursor(ctx context.Context) (cursor uint64, started bool, err error)
	// SavePPS sets the cursor and the carries in changed, all or none.
	SavePPS(ctx context.Context, cursor uint64, changed map[string]uint64) error

	// NextBatch returns the number after the highest batch recorded, 1 for none.
	NextBatch(ctx context.Context) (int64, error)
	// PutBatch records a new batch; a batch of that number already recorded is an
	// error, and nothing changes.
	PutBatch(ctx context.Context, b Batch) error
	// SetBatch sets batch n's status and txid.
	SetBatch(ctx context.Context, n int64, st BatchStatus, txid string) error
	// Batches returns the batches by number, only those in status new if onlyOpen.
	Batches(ctx context.Context, onlyOpen bool) ([]Batch, error)

	// PutBlockWindow records that the coinbase of the block hash commits to c; a
	// block already recorded is left as it is.
	PutBlockWindow(ctx context.Context, hash, c Hash32) error
	// BlockWindow returns the commitment recorded for the block hash; ENOTFOUND if
	// none is.
	BlockWindow(ctx context.Context, hash Hash32) (Hash32, error)

	Close() error
}

// db is the service's view of its State: it checks what comes back.
type db struct{ st State }

func (d *db) close() error                                        { return d.st.Close() }
func (d *db) poolID(ctx context.Context) (string, error)          { return d.st.PoolID(ctx) }
func (d *db) putRate(ctx context.Context, r Rate) error           { return d.st.PutRate(ctx, r) }
func (d *db) nextBatch(ctx context.Context) (int64, error)        { return d.st.NextBatch(ctx) }
func (d *db) putBatch(ctx context.Context, b Batch) error         { return d.st.PutBatch(ctx, b) }
func (d *db) ppsCursor(ctx context.Context) (uint64, bool, error) { return d.st.PPSCursor(ctx) }

func (d *db) putWindow(ctx context.Context, p WindowParams, now int64) error {
	return d.st.PutWindow(ctx, p, now)
}

// window returns the parameters behind c, checking that they hash to it.
func (d *db) window(ctx context.Context, c Hash32) (WindowParams, error) {
	p, err := d.st.Window(ctx, c)
	if err != nil {
		return WindowParams{}, err
	}
	if p.Commitment() != c {
		return WindowParams{}, fmt.Errorf("payout: stored window %s does not hash to its commitment", c)
	}
	return p, nil
}

func (d *db) rate(ctx context.Context, height int64, feeWindow int) (Rate, bool, error) {
	return d.st.Rate(ctx, height, feeWindow)
}

func (d *db) ppsState(ctx context.Context) (uint64, bool, map[string]uint64, error) {
	return d.st.PPSState(ctx)
}

func (d *db) savePPS(ctx context.Context, cursor uint64, changed map[string]uint64) error {
	return d.st.SavePPS(ctx, cursor, changed)
}

func (d *db) setBatch(ctx context.Context, n int64, st BatchStatus, txid string) error {
	return d.st.SetBatch(ctx, n, st, txid)
}

func (d *db) batches(ctx context.Context, onlyOpen bool) ([]Batch, error) {
	return d.st.Batches(ctx, onlyOpen)
}

func (d *db) putBlockWindow(ctx context.Context, hash, c Hash32) error {
	return d.st.PutBlockWindow(ctx, hash, c)
}

func (d *db) blockWindow(ctx context.Context, hash Hash32) (Hash32, error) {
	return d.st.BlockWindow(ctx, hash)
}

// SQLiteState is the payout State in a SQLite file: payout.db in the data directory.
type SQLiteState struct{ sql *sql.DB }

var _ State = (*SQLiteState)(nil)

// OpenSQLiteState opens (creating if needed) the state in the SQLite file at path.
func OpenSQLiteState(path string) (*SQLiteState, error) {
	s, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("payout: open %s: %w", path, err)
	}
	s.SetMaxOpenConns(1)
	_, err = s.Exec(`
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS windows (commitment TEXT PRIMARY KEY, params TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rates (height INTEGER PRIMARY KEY, subsidy INTEGER NOT NULL, fees INTEGER NOT NULL, bits INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS block_windows (hash TEXT PRIMARY KEY, commitment TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS carries (address TEXT PRIMARY KEY, carry INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches (n INTEGER PRIMARY KEY, created INTEGER NOT NULL, items TEXT NOT NULL, status TEXT NOT NULL, txid TEXT NOT NULL DEFAULT '');
`)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("payout: schema: %w", err)
	}
	return &SQLiteState{s}, nil
}

// Close closes the file.
func (d *SQLiteState) Close() error { return d.sql.Close() }

func (d *SQLiteState) meta(ctx context.Context, key string) (string, error) {
	var v string
	err := d.sql.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// NewPoolID returns a fresh random pool id, for a State's PoolID to record on first use.
func NewPoolID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// PoolID implements State. The id marks the pool's wallet transactions so that a
// payout is recognised after a crash.
func (d *SQLiteState) PoolID(ctx context.Context) (string, error) {
	if _, err := d.sql.ExecContext(ctx, `INSERT OR IGNORE INTO meta(key, value) VALUES ('pool_id', ?)`, NewPoolID()); err != nil {
		return "", fmt.Errorf("payout: pool id: %w", err)
	}
	return d.meta(ctx, "pool_id")
}

// PutWindow implements State.
func (d *SQLiteState) PutWindow(ctx context.Context, p WindowParams, created int64) error {
	b, _ := json.Marshal(p)
	_, err := d.sql.ExecContext(ctx, `INSERT OR IGNORE INTO windows(commitment, params, created) VALUES (?, ?, ?)`, p.Commitment().String(), string(b), created)
	if err != nil {
		return fmt.Errorf("payout: store window: %w", err)
	}
	return nil
}

// Window implements State.
func (d *SQLiteState) Window(ctx context.Context, c Hash32) (WindowParams, error) {
	var s string
	err := d.sql.QueryRowContext(ctx, `SELECT params FROM windows WHERE commitment = ?`, c.String()).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return WindowParams{}, NoWindow(c)
	}
	if err != nil {
		return WindowParams{}, fmt.Errorf("payout: window: %w", err)
	}
	return DecodeWindow(c, []byte(s))
}

// NoWindow is the error of a State's Window for a commitment it does not hold.
func NoWindow(c Hash32) error {
	return hashgrid.Errorf(hashgrid.ENOTFOUND, "payout: no window with commitment %s", c)
}

// DecodeWindow decodes the parameters a State stored (as JSON) under c.
func DecodeWindow(c Hash32, data []byte) (WindowParams, error) {
	var p WindowParams
	if err := json.Unmarshal(data, &p); err != nil {
		return WindowParams{}, fmt.Errorf("payout: window %s: %w", c, err)
	}
	return p, nil
}

// PruneWindows implements State.
func (d *SQLiteState) PruneWindows(ctx context.Context, before int64, keep []Hash32, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("payout: prune windows: limit %d must be positive", limit)
	}
	args := []any{before}
	q := `DELETE FROM windows WHERE rowid IN (SELECT rowid FROM windows WHERE created < ?
		AND commitment NOT IN (SELECT commitment FROM block_windows)`
	if len(keep) > 0 {
		q += ` AND commitment NOT IN (?` + strings.Repeat(", ?", len(keep)-1) + `)`
		for _, c := range keep {
			args = append(args, c.String())
		}
	}
	q += ` LIMIT ?)`
	r, err := d.sql.ExecContext(ctx, q, append(args, limit)...)
	if err != nil {
		return 0, fmt.Errorf("payout: prune windows: %w", err)
	}
	n, err := r.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("payout: prune windows: %w", err)
	}
	return int(n), nil
}

// Rate is what one share at a height is paid from under PPS and FPPS.
type Rate struct {
	Height  int64
	Subsidy int64  // coinbase value minus fees of the first template at the height
	Fees    int64  // FPPS: average fees of the recent templates, including this one
	Bits    uint32 // network target
}

// PutRate implements State: the first rate seen for a height stays; later templates at
// the height do not change it, so that credits replayed after a crash come out the same.
func (d *SQLiteState) PutRate(ctx context.Context, r Rate) error {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("payout: rate: %w", err)
	}
	defer tx.Rollback()
	var n int
	// A height at or below one already recorded is never added later: the rate of a
	// height without one is the nearest lower, and that must not change.
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM rates WHERE height >= ?`, r.Height).Scan(&n); err != nil || n > 0 {
		return err
	}
	// The fees column is this template's own fees; FPPS averages them on read.
	if _, err := tx.ExecContext(ctx, `INSERT INTO rates(height, subsidy, fees, bits) VALUES (?, ?, ?, ?)`, r.Height, r.Subsidy, r.Fees, int64(r.Bits)); err != nil {
		return fmt.Errorf("payout: rate: %w", err)
	}
	return tx.Commit()
}

// Rate implements State. A height without a rate is one that fell between a template
// and its record in a crash.
func (d *SQLiteState) Rate(ctx context.Context, height int64, feeWindow int) (Rate, bool, error) {
	var r Rate
	var bits int64
	err := d.sql.QueryRowContext(ctx, `SELECT height, subsidy, bits FROM rates WHERE height <= ? ORDER BY height DESC LIMIT 1`, height).Scan(&r.Height, &r.Subsidy, &bits)
	if errors.Is(err, sql.ErrNoRows) {
		// A share below every recorded height (mined on a template from before the
		// first record): the lowest rate. No lower height is ever added later.
		err = d.sql.QueryRowContext(ctx, `SELECT height, subsidy, bits FROM rates ORDER BY height LIMIT 1`).Scan(&r.Height, &r.Subsidy, &bits)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return Rate{}, false, nil
	}
	if err != nil {
		return Rate{}, false, fmt.Errorf("payout: rate: %w", err)
	}
	if r.Height < height {
		var n int
		if err := d.sql.QueryRowContext(ctx, `SELECT COUNT(*) FROM rates WHERE height > ?`, height).Scan(&n); err != nil {
			return Rate{}, false, fmt.Errorf("payout: rate: %w", err)
		}
		if n == 0 {
			return Rate{}, false, nil
		}
	}
	r.Bits = uint32(bits)
	var sum, cnt int64
	if err := d.sql.QueryRowContext(ctx, `SELECT COALESCE(SUM(f), 0), COUNT(*) FROM (SELECT fees AS f FROM rates WHERE height <= ? ORDER BY height DESC LIMIT ?)`,
		r.Height, feeWindow).Scan(&sum, &cnt); err != nil {
		return Rate{}, false, fmt.Errorf("payout: rate: %w", err)
	}
	if cnt > 0 {
		r.Fees = sum / cnt
	}
	return r, true, nil
}

// PPSCursor implements State.
func (d *SQLiteState) PPSCursor(ctx context.Context) (cursor uint64, started bool, err error) {
	v, err := d.meta(ctx, "pps_cursor")
	if err != nil {
		return 0, false, fmt.Errorf("payout: pps cursor: %w", err)
	}
	if v == "" {
		return 0, false, nil
	}
	if cursor, err = strconv.ParseUint(v, 10, 64); err != nil {
		return 0, false, fmt.Errorf("payout: pps cursor %q: %w", v, err)
	}
	return cursor, true, nil
}

// PPSState implements State.
func (d *SQLiteState) PPSState(ctx context.Context) (cursor uint64, started bool, carries map[string]uint64, err error) {
	cur, started, err := d.PPSCursor(ctx)
	if err != nil {
		return 0, false, nil, err
	}
	rows, err := d.sql.QueryContext(ctx, `SELECT address, carry FROM carries`)
	if err != nil {
		return 0, false, nil, fmt.Errorf("payout: carries: %w", err)
	}
	defer rows.Close()
	carries = map[string]uint64{}
	for rows.Next() {
		var a string
		var c int64
		if err := rows.Scan(&a, &c); err != nil {
			return 0, false, nil, err
		}
		carries[a] = uint64(c)
	}
	return cur, started, carries, rows.Err()
}

// SavePPS implements State.
func (d *SQLiteState) SavePPS(ctx context.Context, cursor uint64, changed map[string]uint64) error {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("payout: pps state: %w", err)
	}
	defer tx.Rollback()
	for a, c := range changed {
		if _, err := tx.ExecContext(ctx, `INSERT INTO carries(address, carry) VALUES (?, ?) ON CONFLICT(address) DO UPDATE SET carry = excluded.carry`, a, int64(c)); err != nil {
			return fmt.Errorf("payout: carry: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES ('pps_cursor', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, strconv.FormatUint(cursor, 10)); err != nil {
		return fmt.Errorf("payout: pps cursor: %w", err)
	}
	return tx.Commit()
}

// Batch is one payout run's list of payments.
type Batch struct {
	N       int64       `json:"batch"`
	Created int64       `json:"created_unix"`
	Items   []BatchItem `json:"items"`
	Status  BatchStatus `json:"status"`
	TxID    string      `json:"txid,omitempty"`
	Network string      `json:"network,omitempty"`
}

// BatchItem pays Amount satoshis to Address.
type BatchItem struct {
	Address string `json:"address"`
	Amount  int64  `json:"amount_sat"`
}

// BatchStatus follows a batch from creation to payment.
type BatchStatus string

// Batch statuses.
const (
	BatchNew      BatchStatus = "new"      // recorded; balances may not be debited yet
	BatchExported BatchStatus = "exported" // written for the operator to sign; pending
	BatchSent     BatchStatus = "sent"     // the wallet sent it; TxID set
)

// PutBatch implements State.
func (d *SQLiteState) PutBatch(ctx context.Context, b Batch) error {
	items, _ := json.Marshal(b.Items)
	_, err := d.sql.ExecContext(ctx, `INSERT INTO batches(n, created, items, status) VALUES (?, ?, ?, ?)`, b.N, b.Created, string(items), string(b.Status))
	if err != nil {
		return fmt.Errorf("payout: batch %d: %w", b.N, err)
	}
	return nil
}

// SetBatch implements State.
func (d *SQLiteState) SetBatch(ctx context.Context, n int64, st BatchStatus, txid string) error {
	_, err := d.sql.ExecContext(ctx, `UPDATE batches SET status = ?, txid = ? WHERE n = ?`, string(st), txid, n)
	if err != nil {
		return fmt.Errorf("payout: batch %d: %w", n, err)
	}
	return nil
}

// Batches implements State.
func (d *SQLiteState) Batches(ctx context.Context, onlyOpen bool) ([]Batch, error) {
	q := `SELECT n, created, items, status, txid FROM batches ORDER BY n`
	if onlyOpen {
		q = `SELECT n, created, items, status, txid FROM batches WHERE status = 'new' ORDER BY n`
	}
	rows, err := d.sql.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("payout: batches: %w", err)
	}
	defer rows.Close()
	var out []Batch
	for rows.Next() {
		var b Batch
		var items, st string
		if err := rows.Scan(&b.N, &b.Created, &items, &st, &b.TxID); err != nil {
			return nil, err
		}
		b.Status = BatchStatus(st)
		if err := json.Unmarshal([]byte(items), &b.Items); err != nil {
			return nil, fmt.Errorf("payout: batch %d items: %w", b.N, err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// NextBatch implements State.
func (d *SQLiteState) NextBatch(ctx context.Context) (int64, error) {
	var n int64
	err := d.sql.QueryRowContext(ctx, `SELECT COALESCE(MAX(n), 0) + 1 FROM batches`).Scan(&n)
	return n, err
}

// PutBlockWindow implements State.
func (d *SQLiteState) PutBlockWindow(ctx context.Context, hash, c Hash32) error {
	_, err := d.sql.ExecContext(ctx, `INSERT OR IGNORE INTO block_windows(hash, commitment) VALUES (?, ?)`, hash.String(), c.String())
	if err != nil {
		return fmt.Errorf("payout: block window: %w", err)
	}
	return nil
}

// BlockWindow implements State.
func (d *SQLiteState) BlockWindow(ctx context.Context, hash Hash32) (Hash32, error) {
	var s string
	err := d.sql.QueryRowContext(ctx, `SELECT commitment FROM block_windows WHERE hash = ?`, hash.String()).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return Hash32{}, hashgrid.Errorf(hashgrid.ENOTFOUND, "no PPLNS window recorded for block %s", hash)
	}
	if err != nil {
		return Hash32{}, fmt.Errorf("payout: block window: %w", err)
	}
	var c Hash32
	return c, c.UnmarshalText([]byte(s))
}
