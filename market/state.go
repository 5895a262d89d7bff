package market

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashgrid/hashgrid/ledger"
)

// StateStore keeps what the market knows that the ledger does not: buyers' accounts,
// orders (their terms, status and delivery counters; their money fields are what the
// ledger's entries say, see reconcile) and the id counter.
//
// FileStore (a JSON file and an accounts journal in the market's data directory) is
// the default; SQLiteState keeps it in the SQLite file of the ledger the market posts
// to, and postgres.MarketState in the pool's PostgreSQL. The contract tests in
// storetest run against all three.
//
// A store in the ledger's own database (SettleStore: SQLiteState in the ledger's
// file, postgres.MarketState beside postgres.Ledger) writes each settlement's entries
// and its order's record in one transaction. Other stores do not share the ledger's
// transactions: the market posts money first, under idempotent keys, and saves the
// order after. Either way, when it opens the market reads each order's escrow entries
// newer than the order's LastEntry and its settlements past SettleSeq, so a crash
// between a posting and the save that follows (or a ledger written by another
// process) loses nothing and counts nothing twice.
type StateStore interface {
	// Load returns everything stored: an empty State for a new store.
	Load(ctx context.Context) (State, error)
	// Save applies u at once: an interrupted Save leaves all of it or none.
	Save(ctx context.Context, u Update) error
	Close() error
}

// SettleStore is a StateStore that holds the market's ledger in its own database.
type SettleStore interface {
	StateStore
	// Holds reports whether book is the ledger in the store's database.
	Holds(book ledger.Book) bool
	// PostAndSave posts txs to that ledger, dated now, and saves what update makes of
	// their entries, in one transaction: all of it or none.
	PostAndSave(ctx context.Context, txs []ledger.Tx, now time.Time, update func([]ledger.Entry) Update) ([]ledger.Entry, error)
}

// State is a StateStore's content.
type State struct {
	Accounts []*Account
	Orders   []*OrderRecord
	NextID   uint64
}

// Empty reports whether s holds nothing: a store never written to.
func (s State) Empty() bool {
	return len(s.Accounts) == 0 && len(s.Orders) == 0 && s.NextID == 0
}

// Update is one Save: the orders that changed, replaced whole; the orders to forget
// (placed, then their funding failed); accounts to add, which a store keeps for good;
// and the id counter, which a store only raises. A FileStore does not rewrite its
// file for the counter of an update that only adds accounts: the market raises the
// counter past every stored account's and order's id when it opens.
//
// Workers says, for an order in Orders, which of its workers' entries (SellerNum,
// SellerPaid) changed since the order was last saved: a database store writes those
// workers' rows only, so that an order with many sellers is not rewritten whole every
// second. An order that Workers does not name has all its workers written; a store
// may always write them all (FileStore does).
type Update struct {
	Orders   []*OrderRecord
	Workers  map[string][]string
	Deleted  []string
	Accounts []*Account
	NextID   uint64
}

// ChangedWorkers returns the workers of r whose entries u says changed, and whether
// u names r at all: when it does not, every worker of r is to be written.
func (u Update) ChangedWorkers(r *OrderRecord) (workers []string, named bool) {
	ws, ok := u.Workers[r.ID]
	if ok {
		return ws, true
	}
	seen := map[string]bool{}
	for k := range r.SellerNum {
		seen[k] = true
	}
	for k := range r.SellerPaid {
		seen[k] = true
	}
	return slices.Sorted(maps.Keys(seen)), false
}

// WithoutWorkers returns a copy of r without its per-worker maps, for a store that
// keeps them in rows of their own.
func (r *OrderRecord) WithoutWorkers() *OrderRecord {
	c := *r
	c.SellerNum, c.SellerPaid = nil, nil
	return &c
}

func (u Update) empty() bool {
	return len(u.Orders) == 0 && len(u.Deleted) == 0 && len(u.Accounts) == 0
}

// clone returns a copy of r that shares nothing with it, for a store to write while
// the market changes r.
func (r *OrderRecord) clone() *OrderRecord {
	c := *r
	c.SellerNum = maps.Clone(r.SellerNum)
	c.SellerPaid = maps.Clone(r.SellerPaid)
	c.Segments = slices.Clone(r.Segments)
	if r.Offer != nil {
		o := *r.Offer
		c.Offer = &o
	}
	return &c
}

// FileStore is the market's state in files: orders and the id counter in a JSON
// file, rewritten whole (to a temporary file, fsynced, renamed) by every Save that
// changes an order; accounts one JSON line each in a journal, appended and fsynced.
// It suits a market with a data directory of its own and few orders; a busy market
// belongs in a database (SQLiteState, postgres.MarketState), where a Save writes the
// changed orders' rows only.
type FileStore struct {
	path, accountsPath string
	log                *slog.Logger

	mu     sync.Mutex
	orders map[string]json.RawMessage
	nextID uint64
	acctF  *os.File // the accounts journal, open for appending; nil once closed
}

var _ StateStore = (*FileStore)(nil)

// fileState is what a FileStore's state file holds. State files written before the
// accounts journal existed hold the accounts too; Load moves them to the journal.
type fileState struct {
	Accounts map[string]*Account        `json:"accounts,omitempty"`
	Orders   map[string]json.RawMessage `json:"orders"`
	NextID   uint64                     `json:"next_id"`
}

// AccountsPathFor is the accounts journal beside the state file path.
func AccountsPathFor(path string) string {
	return strings.TrimSuffix(path, ".json") + "-accounts.jsonl"
}

// OpenFileStore opens the state file path (which need not exist) and the accounts
// journal accountsPath ("" for AccountsPathFor(path)), creating the journal.
func OpenFileStore(path, accountsPath string, log *slog.Logger) (*FileStore, error) {
	if accountsPath == "" {
		accountsPath = AccountsPathFor(path)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f, err := os.OpenFile(accountsPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("market: accounts: %w", err)
	}
	return &FileStore{path: path, accountsPath: accountsPath, log: log, orders: map[string]json.RawMessage{}, acctF: f}, nil
}

// Close closes the accounts journal.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acctF == nil {
		return nil
	}
	err := s.acctF.Close()
	s.acctF = nil
	if err != nil {
		return fmt.Errorf("market: accounts: %w", err)
	}
	return nil
}

// Load reads the state file and the accounts journal. A last journal line without its
// newline is what a crash mid-append leaves: it is cut off (its key was never
// returned).
func (s *FileStore) Load(ctx context.Context) (State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acctF == nil {
		return State{}, errors.New("market: state store closed")
	}
	var fs fileState
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return State{}, fmt.Errorf("market: state: %w", err)
	default:
		if err := json.Unmarshal(b, &fs); err != nil {
			return State{}, fmt.Errorf("market: state %s: %w", s.path, err)
		}
	}
	var st State
	s.orders, s.nextID = map[string]json.RawMessage{}, fs.NextID
	ids := slices.Sorted(maps.Keys(fs.Orders))
	for _, id := range ids {
		var rec OrderRecord
		if err := json.Unmarshal(fs.Orders[id], &rec); err != nil {
			return State{}, fmt.Errorf("market: state %s: order %s: %w", s.path, id, err)
		}
		rec.ID = id
		s.orders[id] = fs.Orders[id]
		st.Orders = append(st.Orders, &rec)
	}
	st.NextID = fs.NextID
	accts, err := s.readJournalLocked()
	if err != nil {
		return State{}, err
	}
	// Accounts of a state file from before the journal move to the journal; the next
	// rewrite leaves them out of the state file.
	var move []*Account
	for _, id := range slices.Sorted(maps.Keys(fs.Accounts)) {
		if _, ok := accts[id]; !ok {
			move = append(move, fs.Accounts[id])
			accts[id] = fs.Accounts[id]
		}
	}
	if err := s.appendLocked(move); err != nil {
		return State{}, err
	}
	if len(move) > 0 {
		if err := s.rewriteLocked(s.orders, s.nextID); err != nil {
			return State{}, err
		}
	}
	for _, id := range slices.Sorted(maps.Keys(accts)) {
		st.Accounts = append(st.Accounts, accts[id])
	}
	return st, nil
}

func (s *FileStore) readJournalLocked() (map[string]*Account, error) {
	f := s.acctF
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("market: accounts: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("market: accounts: %w", err)
	}
	whole := bytes.LastIndexByte(b, '\n') + 1
	if whole < len(b) {
		s.log.Warn("accounts journal: cutting off a torn last line", "path", s.accountsPath, "bytes", len(b)-whole)
		if err := f.Truncate(int64(whole)); err != nil {
			return nil, fmt.Errorf("market: accounts: %w", err)
		}
	}
	if _, err := f.Seek(int64(whole), io.SeekStart); err != nil {
		return nil, fmt.Errorf("market: accounts: %w", err)
	}
	out := map[string]*Account{}
	for n, line := range bytes.Split(b[:whole], []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		var a Account
		if err := json.Unmarshal(line, &a); err != nil || a.ID == "" {
			return nil, fmt.Errorf("market: accounts %s: line %d: not an account", s.accountsPath, n+1)
		}
		out[a.ID] = &a
	}
	return out, nil
}

// appendLocked writes accounts to the journal, one JSON line each, and fsyncs it.
func (s *FileStore) appendLocked(as []*Account) error {
	if len(as) == 0 {
		return nil
	}
	var b []byte
	for _, a := range as {
		line, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("market: accounts: %w", err)
		}
		b = append(append(b, line...), '\n')
	}
	if _, err := s.acctF.Write(b); err != nil {
		return fmt.Errorf("market: accounts: %w", err)
	}
	if err := s.acctF.Sync(); err != nil {
		return fmt.Errorf("market: accounts: %w", err)
	}
	return nil
}

// Save appends u's accounts to the journal, then, if any order or the counter
// changed, rewrites the state file. The two are not one transaction: an account
// journalled before a crash that lost the rewrite is still there, and the market
// raises its counter past every account's id when it opens.
func (s *FileStore) Save(ctx context.Context, u Update) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acctF == nil {
		return errors.New("market: state store closed")
	}
	if err := s.appendLocked(u.Accounts); err != nil {
		return err
	}
	// A new account raises the counter without a rewrite: the market raises it past
	// every account's id when it opens.
	if len(u.Orders) == 0 && len(u.Deleted) == 0 && (u.NextID <= s.nextID || len(u.Accounts) > 0) {
		return nil
	}
	next := maps.Clone(s.orders)
	for _, r := range u.Orders {
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("market: state: order %s: %w", r.ID, err)
		}
		next[r.ID] = b
	}
	for _, id := range u.Deleted {
		delete(next, id)
	}
	return s.rewriteLocked(next, max(s.nextID, u.NextID))
}

func (s *FileStore) rewriteLocked(orders map[string]json.RawMessage, nextID uint64) error {
	b, err := json.MarshalIndent(&fileState{Orders: orders, NextID: nextID}, "", " ")
	if err != nil {
		return fmt.Errorf("market: state: %w", err)
	}
	if err := writeFileAtomic(s.path, b); err != nil {
		return fmt.Errorf("market: state: %w", err)
	}
	s.orders, s.nextID = orders, nextID
	return nil
}

// writeFileAtomic replaces path with b: a temporary file, fsynced, renamed.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".market-state-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// ImportFile copies the state of a FileStore at path (with its accounts journal
// accountsPath, "" for the default) into to, in one Save, if to holds nothing yet and
// the file exists. It reports what it copied; copied is false when there was nothing
// to do. The files are left as they were: a store that holds anything is never
// imported into again, so they are not read twice.
func ImportFile(ctx context.Context, to StateStore, path, accountsPath string, log *slog.Logger) (copied State, err error) {
	cur, err := to.Load(ctx)
	if err != nil {
		return State{}, err
	}
	if !cur.Empty() {
		return State{}, nil
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if accountsPath == "" {
			accountsPath = AccountsPathFor(path)
		}
		if _, err := os.Stat(accountsPath); errors.Is(err, os.ErrNotExist) {
			return State{}, nil
		}
	}
	fs, err := OpenFileStore(path, accountsPath, log)
	if err != nil {
		return State{}, err
	}
	defer fs.Close()
	st, err := fs.Load(ctx)
	if err != nil {
		return State{}, err
	}
	if st.Empty() {
		return State{}, nil
	}
	if err := to.Save(ctx, Update{Orders: st.Orders, Accounts: st.Accounts, NextID: st.NextID}); err != nil {
		return State{}, fmt.Errorf("market: import %s: %w", path, err)
	}
	return st, nil
}

// sortOrders puts orders in id order (the order they were placed).
func sortOrders(rs []*OrderRecord) {
	sort.Slice(rs, func(i, j int) bool { return idNum(rs[i].ID) < idNum(rs[j].ID) })
}
