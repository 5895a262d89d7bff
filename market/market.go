package market

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/stratum"
)

// HashesPerTHDay is the number of hashes one TH/s delivers in a day: a price in
// satoshis per TH/s per day is a price per HashesPerTHDay hashes.
const HashesPerTHDay = 86_400 * 1_000_000_000_000

var bigK = big.NewInt(HashesPerTHDay)

// Limits on what a buyer may ask for.
const (
	MaxPrice       = 1_000_000_000_000_000 // sat per TH/s per day
	MaxOrders      = 100_000
	MaxAccounts    = 1_000_000
	maxFieldLen    = 256
	maxRateEvents  = 4096
	sellerJobs     = 16 // recent jobs a seller may submit against
	rejectsToPause = 20 // consecutive destination rejections, from at least two sellers, that pause an order
	// sellerRejectsToDrop is how many of one seller's forwarded shares in a row a
	// destination may reject, while it accepts other sellers' shares on the same
	// order, before the market drops that seller: the rejections are its doing.
	sellerRejectsToDrop = 10
)

// DefaultSellerMinDiff is the default floor of a seller's difficulty. A share at
// difficulty 1024 is about 4.4·10^12 hashes: the smallest SHA-256 machine worth
// selling (0.5 TH/s) still sends one every nine seconds, a 200 TH/s machine about 45
// a second, and a CPU cannot make the market hash, store and forward cheap shares.
const DefaultSellerMinDiff = 1024

// Config configures a Market.
type Config struct {
	Network *chaincfg.Params // sellers' payout addresses must belong to it
	// Ledger is the book the market posts to. Sellers' earnings become payable in it
	// (miner:ADDRESS:balance), so it must be the pool's book for the pool's payout
	// engine to pay them; see the package doc.
	Ledger ledger.Book
	// StatePath is the JSON file that holds orders (money is in the ledger). Accounts
	// are appended, one JSON line each, to AccountsPath, which defaults to StatePath
	// with "-accounts.jsonl" for its ".json".
	StatePath    string
	AccountsPath string
	FeeBps       int64 // market fee in basis points of what buyers pay; default 200
	// SellerExtranonce2Size is the extranonce2 size given to sellers; the destination's
	// extranonce2 must be at least 4 bytes larger. Default 4.
	SellerExtranonce2Size int
	SellerShareInterval   time.Duration // seller vardiff aims at one share per interval; default 5s
	// SellerMinDiff is the floor of every seller's difficulty: mining.suggest_difficulty
	// and vardiff never go below it. A destination whose own difficulty is lower gives
	// its sellers that difficulty instead (every share then goes to the destination).
	// Default DefaultSellerMinDiff.
	SellerMinDiff   float64
	SellerStartDiff float64 // a seller's first difficulty; at least SellerMinDiff, which is the default
	// MaxSharesPerSellerJob bounds the duplicate set a seller connection's extranonce1
	// has on one job. A seller that reaches it has its further shares on that job
	// refused as stale (nothing unrecorded is ever accepted) until the next job.
	// Default 4096.
	MaxSharesPerSellerJob int
	// UpstreamInFlight bounds the shares forwarded to one destination connection and
	// not yet answered. Forwarding never holds up a seller: a share that finds the
	// bound reached is not forwarded (the order counts it as dropped). Default 64.
	UpstreamInFlight int
	RouteInterval    time.Duration // routing runs at least this often; default 1s
	SettleInterval   time.Duration // charges are posted this often; default 1s
	UpstreamTimeout  time.Duration // dial and reply timeout towards destinations; default 10s
	JobTimeout       time.Duration // a destination that sends no job this long after connecting pauses its order; default 15s
	SpeedWindow      time.Duration // window of "current" speeds; default 60s
	SampleSize       int           // delivered shares kept per order for audit; default 256
	// SpeedBucket and SpeedHistory shape an order's delivered speed over time (kept in
	// memory only): default one-minute buckets over three hours.
	SpeedBucket  time.Duration
	SpeedHistory time.Duration
	MinPrice     int64 // lowest contract quote; default 1
	// MinOrderBudget is the smallest budget a spot order may be placed with, in
	// satoshis: an order must be able to pay for some delivery. Default 1000.
	MinOrderBudget int64
	// A spot order's price may fall at most once per PriceDecreaseInterval (default
	// 10 minutes), by at most MaxPriceDecreaseBps of the price (default 1000, 10%):
	// sellers routed at a price are not repriced under their feet, and a buyer cannot
	// outbid everyone for a moment and then drop to the floor. Raising is free.
	PriceDecreaseInterval time.Duration
	MaxPriceDecreaseBps   int64
	// AllowPrivateDestinations lets buyers' orders point at loopback, private,
	// link-local and other non-public addresses (tests, demos, a private farm). Off,
	// such destinations are refused when placed and when dialled.
	AllowPrivateDestinations bool
	// Resolver resolves destination host names; default the system resolver.
	Resolver func(ctx context.Context, host string) ([]netip.Addr, error)
	Limits   stratum.Limits
	Logger   *slog.Logger
	Now      func() time.Time
}

func (c *Config) defaults() {
	if c.FeeBps == 0 {
		c.FeeBps = 200
	}
	if c.SellerExtranonce2Size == 0 {
		c.SellerExtranonce2Size = 4
	}
	if c.SellerShareInterval == 0 {
		c.SellerShareInterval = 5 * time.Second
	}
	if c.SellerMinDiff == 0 {
		c.SellerMinDiff = DefaultSellerMinDiff
	}
	if c.SellerStartDiff == 0 {
		c.SellerStartDiff = c.SellerMinDiff
	}
	if c.MaxSharesPerSellerJob == 0 {
		c.MaxSharesPerSellerJob = 4096
	}
	if c.UpstreamInFlight == 0 {
		c.UpstreamInFlight = 64
	}
	if c.RouteInterval == 0 {
		c.RouteInterval = time.Second
	}
	if c.SettleInterval == 0 {
		c.SettleInterval = time.Second
	}
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = 10 * time.Second
	}
	if c.JobTimeout == 0 {
		c.JobTimeout = 15 * time.Second
	}
	if c.SpeedWindow == 0 {
		c.SpeedWindow = 60 * time.Second
	}
	if c.SpeedBucket == 0 {
		c.SpeedBucket = time.Minute
	}
	if c.SpeedHistory == 0 {
		c.SpeedHistory = 3 * time.Hour
	}
	if c.SampleSize == 0 {
		c.SampleSize = 256
	}
	if c.MinPrice == 0 {
		c.MinPrice = 1
	}
	if c.MinOrderBudget == 0 {
		c.MinOrderBudget = 1000
	}
	if c.PriceDecreaseInterval == 0 {
		c.PriceDecreaseInterval = 10 * time.Minute
	}
	if c.MaxPriceDecreaseBps == 0 {
		c.MaxPriceDecreaseBps = 1000
	}
	if c.AccountsPath == "" {
		c.AccountsPath = strings.TrimSuffix(c.StatePath, ".json") + "-accounts.jsonl"
	}
	if c.Resolver == nil {
		c.Resolver = defaultResolver
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Network == nil {
		return errors.New("market: no network")
	}
	if c.Ledger == nil {
		return errors.New("market: no ledger")
	}
	if c.StatePath == "" {
		return errors.New("market: no state path")
	}
	if c.FeeBps < 0 || c.FeeBps >= 10_000 {
		return fmt.Errorf("market: fee %d bps out of range 0..9999", c.FeeBps)
	}
	if !(c.SellerMinDiff > 0) || math.IsInf(c.SellerMinDiff, 0) {
		return fmt.Errorf("market: seller minimum difficulty %g must be a positive number", c.SellerMinDiff)
	}
	if !(c.SellerStartDiff >= c.SellerMinDiff) || math.IsInf(c.SellerStartDiff, 0) {
		return fmt.Errorf("market: seller start difficulty %g is below the seller minimum difficulty %g", c.SellerStartDiff, c.SellerMinDiff)
	}
	if c.MinOrderBudget < 1 || c.PriceDecreaseInterval < 0 || c.MaxPriceDecreaseBps < 1 || c.MaxPriceDecreaseBps > 10_000 {
		return errors.New("market: MinOrderBudget must be positive and MaxPriceDecreaseBps in 1..10000")
	}
	if c.MaxSharesPerSellerJob < 1 || c.UpstreamInFlight < 1 {
		return errors.New("market: MaxSharesPerSellerJob and UpstreamInFlight must be at least 1")
	}
	if c.SellerExtranonce2Size < 2 || c.SellerExtranonce2Size > 8 {
		return fmt.Errorf("market: seller extranonce2 size %d out of range 2..8", c.SellerExtranonce2Size)
	}
	return nil
}

// Ledger account names.
func acctBuyer(id string) string  { return "market:buyer:" + id }
func acctEscrow(id string) string { return "market:escrow:" + id }
func acctSeller(k string) string  { return "market:seller:" + k }

// acctPayable is a payout address's balance in the pool's payout engine
// (payout.MinerAccount(addr, "balance")): the engine pays what stands there above its
// threshold. The name is repeated here rather than imported so that the market does
// not depend on the payout engine; cli's end-to-end test pays through it.
func acctPayable(addr string) string { return "miner:" + addr + ":balance" }

// payableTx moves what a settlement credited to sellers' per-worker accounts into
// their addresses' payable balances. It is keyed by the settlement it follows and
// posted in the same transaction, so that a per-worker account holds nothing between
// entries, and a retry posts the same pair or nothing.
func payableTx(settleKey, memo string, credits []ledger.Posting) (ledger.Tx, bool) {
	var ps []ledger.Posting
	for _, c := range credits {
		k, ok := strings.CutPrefix(c.Account, "market:seller:")
		if !ok || c.Amount <= 0 {
			continue
		}
		addr, _, _ := strings.Cut(k, "/")
		ps = append(ps, ledger.Posting{Account: c.Account, Amount: -c.Amount}, ledger.Posting{Account: acctPayable(addr), Amount: c.Amount})
	}
	if len(ps) == 0 {
		return ledger.Tx{}, false
	}
	return ledger.Tx{Key: "market:payable:" + strings.TrimPrefix(settleKey, "market:settle:"), Memo: memo, Postings: ps,
		NonNegative: sellerAccounts(ps)}, true
}

func sellerAccounts(ps []ledger.Posting) []string {
	var out []string
	for _, p := range ps {
		if strings.HasPrefix(p.Account, "market:seller:") {
			out = append(out, p.Account)
		}
	}
	return out
}

const (
	acctFees = "market:fees"
	// acctVariance carries the difference between what sellers earn (every valid
	// share at the market's difficulty) and what buyers pay for it (the shares the
	// destinations accept at theirs), less the fee: negative when the market has paid
	// sellers for more work than destinations accepted.
	acctVariance = "market:variance"
	acctDeposits = "market:deposits" // money that came in from outside; negative
)

// Account is a buyer.
type Account struct {
	ID      string    `json:"id"`
	KeyHash string    `json:"key_hash"` // hex SHA-256 of the key's secret part
	Created time.Time `json:"created"`
}

// state is what StatePath holds. Accounts are in the accounts journal; state files
// written before it existed hold them here, and are moved to it when read.
type state struct {
	Accounts map[string]*Account     `json:"accounts,omitempty"`
	Orders   map[string]*OrderRecord `json:"orders"`
	NextID   uint64                  `json:"next_id"`
}

// Market is a running market.
type Market struct {
	cfg Config
	log *slog.Logger
	led ledger.Book
	srv *stratum.Server

	mu      sync.Mutex
	st      state
	orders  map[string]*order
	sellers map[*seller]struct{}
	workers map[string]*workerStats // "address/worker"
	// earned is what each worker ("address/worker") has earned in all, as posted by
	// settlements: the sum over orders of their SellerPaid.
	earned map[string]int64
	dirty  bool

	saveMu   sync.Mutex // one writer of StatePath
	settleMu sync.Mutex // one settlement at a time: two would plan the same key with other amounts
	acctMu   sync.Mutex // one writer of the accounts journal
	acctF    *os.File   // the accounts journal, open for appending
	pseudo   [32]byte   // key of the per-order seller pseudonyms buyers see
	jobSeq   atomic.Uint64
	kickc    chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New opens the market's state and reconciles it with the ledger.
func New(cfg Config) (*Market, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Market{
		cfg: cfg, log: cfg.Logger, led: cfg.Ledger,
		st:      state{Accounts: map[string]*Account{}, Orders: map[string]*OrderRecord{}},
		orders:  map[string]*order{},
		sellers: map[*seller]struct{}{},
		workers: map[string]*workerStats{},
		earned:  map[string]int64{},
		kickc:   make(chan struct{}, 1),
		ctx:     ctx, cancel: cancel,
	}
	if _, err := rand.Read(m.pseudo[:]); err != nil {
		cancel()
		return nil, fmt.Errorf("market: pseudonym key: %w", err)
	}
	err := m.load()
	if err == nil {
		err = m.makePayable(context.Background())
	}
	if err != nil {
		cancel()
		if m.acctF != nil {
			m.acctF.Close()
		}
		return nil, err
	}
	srv, err := stratum.NewServer(stratum.Config{
		Extranonce2Size: cfg.SellerExtranonce2Size,
		Limits:          cfg.Limits,
		Logger:          cfg.Logger.With("component", "stratum"),
		Now:             cfg.Now,
	}, sellerSide{m})
	if err != nil {
		cancel()
		return nil, err
	}
	m.srv = srv
	return m, nil
}

// Start runs the router and the settler, and connects live orders to their pools.
func (m *Market) Start() {
	m.mu.Lock()
	for _, o := range m.orders {
		m.ensureUpstreamLocked(o)
	}
	m.mu.Unlock()
	m.wg.Go(m.routeLoop)
	m.wg.Go(m.settleLoop)
}

// Serve accepts sellers on l until Shutdown.
func (m *Market) Serve(l net.Listener) error { return m.srv.Serve(l) }

// Server returns the sellers' Stratum server.
func (m *Market) Server() *stratum.Server { return m.srv }

// Shutdown closes sellers' connections and upstreams, posts the last charges and saves
// the state.
func (m *Market) Shutdown(ctx context.Context) error {
	err := m.srv.Shutdown(ctx)
	m.cancel()
	m.mu.Lock()
	for _, o := range m.orders {
		if o.up != nil {
			o.up.close()
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
	m.settle(context.Background())
	if serr := m.save(); serr != nil && err == nil {
		err = serr
	}
	m.acctMu.Lock()
	if m.acctF != nil {
		if cerr := m.acctF.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("market: accounts: %w", cerr)
		}
		m.acctF = nil
	}
	m.acctMu.Unlock()
	return err
}

func (m *Market) kick() {
	select {
	case m.kickc <- struct{}{}:
	default:
	}
}

func (m *Market) newIDLocked(prefix string) string {
	m.st.NextID++
	m.dirty = true
	return prefix + strconv.FormatUint(m.st.NextID, 10)
}

// --- accounts and keys ---

// CreateAccount opens a buyer account and returns its API key. The key is shown once:
// only a hash of its secret part is kept. The account is one line appended to the
// accounts journal (and fsynced) before the key is returned; the state file is not
// rewritten.
func (m *Market) CreateAccount() (id, key string, err error) {
	var secret [24]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", "", fmt.Errorf("market: key: %w", err)
	}
	s := hex.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(s))
	m.mu.Lock()
	if len(m.st.Accounts) >= MaxAccounts {
		m.mu.Unlock()
		return "", "", hashgrid.Errorf(hashgrid.EUNAVAILABLE, "account limit reached")
	}
	// Not marked dirty: load raises NextID past every journalled account, so the
	// counter needs no save of its own.
	m.st.NextID++
	id = "a" + strconv.FormatUint(m.st.NextID, 10)
	m.mu.Unlock()
	a := &Account{ID: id, KeyHash: hex.EncodeToString(sum[:]), Created: m.cfg.Now().UTC()}
	if err := m.appendAccounts(a); err != nil {
		return "", "", err
	}
	m.mu.Lock()
	m.st.Accounts[id] = a
	m.mu.Unlock()
	return id, "hgk_" + id + "_" + s, nil
}

// appendAccounts writes accounts to the journal, one JSON line each, and fsyncs it.
func (m *Market) appendAccounts(as ...*Account) error {
	var b []byte
	for _, a := range as {
		line, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("market: accounts: %w", err)
		}
		b = append(append(b, line...), '\n')
	}
	m.acctMu.Lock()
	defer m.acctMu.Unlock()
	if m.acctF == nil {
		return hashgrid.Errorf(hashgrid.EUNAVAILABLE, "market is shut down")
	}
	if _, err := m.acctF.Write(b); err != nil {
		return fmt.Errorf("market: accounts: %w", err)
	}
	if err := m.acctF.Sync(); err != nil {
		return fmt.Errorf("market: accounts: %w", err)
	}
	return nil
}

// loadAccounts reads the accounts journal into m.st.Accounts and opens it for
// appending. A last line without its newline is what a crash mid-append leaves: it is
// cut off (its key was never returned).
func (m *Market) loadAccounts() error {
	f, err := os.OpenFile(m.cfg.AccountsPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("market: accounts: %w", err)
	}
	m.acctF = f
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("market: accounts: %w", err)
	}
	whole := bytes.LastIndexByte(b, '\n') + 1
	if whole < len(b) {
		m.log.Warn("accounts journal: cutting off a torn last line", "path", m.cfg.AccountsPath, "bytes", len(b)-whole)
		if err := f.Truncate(int64(whole)); err != nil {
			return fmt.Errorf("market: accounts: %w", err)
		}
	}
	if _, err := f.Seek(int64(whole), io.SeekStart); err != nil {
		return fmt.Errorf("market: accounts: %w", err)
	}
	for n, line := range bytes.Split(b[:whole], []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		var a Account
		if err := json.Unmarshal(line, &a); err != nil || a.ID == "" {
			return fmt.Errorf("market: accounts %s: line %d: not an account", m.cfg.AccountsPath, n+1)
		}
		m.st.Accounts[a.ID] = &a
		if num, err := strconv.ParseUint(strings.TrimPrefix(a.ID, "a"), 10, 64); err == nil && num > m.st.NextID {
			m.st.NextID = num
		}
	}
	return nil
}

var errBadKey = hashgrid.Errorf(hashgrid.EUNAUTHORIZED, "invalid API key")

// Authenticate returns the account a key belongs to. The secret is compared in
// constant time; the same error is returned whatever was wrong.
func (m *Market) Authenticate(key string) (string, error) {
	rest, ok := strings.CutPrefix(key, "hgk_")
	if !ok {
		return "", errBadKey
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) > maxFieldLen {
		return "", errBadKey
	}
	sum := sha256.Sum256([]byte(secret))
	got := hex.EncodeToString(sum[:])
	m.mu.Lock()
	a := m.st.Accounts[id]
	want := ""
	if a != nil {
		want = a.KeyHash
	}
	m.mu.Unlock()
	if a == nil {
		// Compare anyway so that an unknown id takes as long as a wrong secret.
		subtle.ConstantTimeCompare([]byte(got), []byte(got))
		return "", errBadKey
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return "", errBadKey
	}
	return id, nil
}

func (m *Market) accountExists(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Accounts[id] != nil
}

// Deposit credits a buyer's balance with money that arrived from outside. ref makes
// it idempotent: the same reference credits once.
func (m *Market) Deposit(ctx context.Context, account string, amount int64, ref string) error {
	if !m.accountExists(account) {
		return hashgrid.Errorf(hashgrid.ENOTFOUND, "no account %q", account)
	}
	if amount <= 0 || amount > ledger.MaxAbsAmount {
		return hashgrid.Errorf(hashgrid.EINVALID, "deposit amount must be 1..%d satoshis", int64(ledger.MaxAbsAmount))
	}
	if ref == "" || len(ref) > maxFieldLen {
		return hashgrid.Errorf(hashgrid.EINVALID, "deposit reference must be 1..%d bytes", maxFieldLen)
	}
	_, err := m.led.Post(ctx, ledger.Tx{
		Key:  "market:deposit:" + ref,
		Memo: "deposit to " + account,
		Postings: []ledger.Posting{
			{Account: acctDeposits, Amount: -amount},
			{Account: acctBuyer(account), Amount: amount},
		},
	})
	return err
}

// Balance returns a buyer's free balance (not in any escrow).
func (m *Market) Balance(ctx context.Context, account string) (int64, error) {
	return m.led.Balance(ctx, acctBuyer(account))
}

// --- persistence ---

func (m *Market) load() error {
	b, err := os.ReadFile(m.cfg.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return m.loadAccounts()
	}
	if err != nil {
		return fmt.Errorf("market: state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("market: state %s: %w", m.cfg.StatePath, err)
	}
	if st.Accounts == nil {
		st.Accounts = map[string]*Account{}
	}
	if st.Orders == nil {
		st.Orders = map[string]*OrderRecord{}
	}
	old := st.Accounts
	st.Accounts = map[string]*Account{}
	m.st = st
	if err := m.loadAccounts(); err != nil {
		return err
	}
	// Accounts of a state file from before the journal move to the journal; the next
	// save leaves them out of the state file.
	var move []*Account
	for id, a := range old {
		if m.st.Accounts[id] == nil {
			move = append(move, a)
			m.st.Accounts[id] = a
		}
	}
	if len(move) > 0 {
		sort.Slice(move, func(i, j int) bool { return move[i].ID < move[j].ID })
		if err := m.appendAccounts(move...); err != nil {
			return err
		}
		m.dirty = true
	}
	for id, rec := range st.Orders {
		o, err := restoreOrder(rec)
		if err != nil {
			return fmt.Errorf("market: state: order %s: %w", id, err)
		}
		for k, v := range rec.SellerPaid {
			m.earned[k] += v
		}
		if err := m.reconcile(context.Background(), o); err != nil {
			return err
		}
		m.orders[id] = o
	}
	return nil
}

// reconcile applies ledger entries of an order's escrow that are newer than what the
// state file knew (a crash between a post and the save that follows it).
func (m *Market) reconcile(ctx context.Context, o *order) error {
	es, err := m.led.Entries(ctx, acctEscrow(o.rec.ID), 1000)
	if err != nil {
		return err
	}
	for i := len(es) - 1; i >= 0; i-- {
		e := es[i]
		if e.ID <= o.rec.LastEntry {
			continue
		}
		m.applyEntry(o, e)
	}
	// A settlement that charged nothing (sellers paid out of market:variance while
	// the destination accepted nothing) has no escrow posting: follow the
	// settlements' keys too, or the next one would reuse this key with other amounts
	// and be refused for ever.
	for {
		e, err := m.led.Entry(ctx, settleKey(o.rec.ID, o.rec.SettleSeq))
		if hashgrid.ErrorCode(err) == hashgrid.ENOTFOUND {
			return nil
		}
		if err != nil {
			return err
		}
		m.applyEntry(o, e)
	}
}

func settleKey(order string, seq uint64) string {
	return fmt.Sprintf("market:settle:%s:%d", order, seq)
}

// makePayable moves what per-worker seller accounts hold into their addresses'
// payable balances. Settlements do that in the same transaction, so only earnings
// posted before they did (by an older hashgrid) are found here. The entry is keyed by
// the last entry that touched the account: the balance at that entry is fixed, so a
// retry posts the same amounts or finds the account empty.
func (m *Market) makePayable(ctx context.Context) error {
	bals, err := m.led.Balances(ctx, "market:seller:")
	if err != nil {
		return fmt.Errorf("market: seller balances: %w", err)
	}
	keys := make([]string, 0, len(bals))
	for a, b := range bals {
		if b > 0 {
			keys = append(keys, a)
		}
	}
	sort.Strings(keys)
	for _, a := range keys {
		es, err := m.led.Entries(ctx, a, 1)
		if err != nil {
			return fmt.Errorf("market: seller entries: %w", err)
		}
		if len(es) == 0 {
			continue
		}
		k := strings.TrimPrefix(a, "market:seller:")
		addr, _, _ := strings.Cut(k, "/")
		ps := []ledger.Posting{{Account: a, Amount: -bals[a]}, {Account: acctPayable(addr), Amount: bals[a]}}
		if _, err := m.led.Post(ctx, ledger.Tx{Key: fmt.Sprintf("market:payable:%s:upto:%d", k, es[0].ID),
			Memo: "earlier market earnings of " + k + " made payable", Postings: ps, NonNegative: []string{a}}); err != nil {
			return fmt.Errorf("market: earnings of %s: %w", k, err)
		}
		m.log.Info("earlier market earnings made payable", "worker", k, "sat", bals[a])
	}
	return nil
}

// applyEntry updates an order's money fields from one of its escrow's entries.
func (m *Market) applyEntry(o *order, e ledger.Entry) {
	r := o.rec
	var esc int64
	for _, p := range e.Postings {
		if p.Account == acctEscrow(r.ID) {
			esc = p.Amount
		}
	}
	switch {
	case strings.HasPrefix(e.Key, "market:settle:"):
		r.Charged += -esc
		r.SettleSeq++
		for _, p := range e.Postings {
			if k, ok := strings.CutPrefix(p.Account, "market:seller:"); ok {
				r.SellerPaid[k] += p.Amount
				m.earned[k] += p.Amount
			}
			switch p.Account {
			case acctFees:
				r.FeePosted += p.Amount
			case acctVariance:
				r.VariancePosted += p.Amount
			}
		}
	case strings.HasPrefix(e.Key, "market:refund:"):
		r.Refunded += -esc
	default: // funding, refills
		r.Funded += esc
	}
	if e.ID > r.LastEntry {
		r.LastEntry = e.ID
	}
}

// save writes the state atomically (temporary file, fsync, rename).
func (m *Market) save() error {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	m.mu.Lock()
	for _, o := range m.orders {
		o.snapshotLocked()
	}
	b, err := json.MarshalIndent(&state{Orders: m.st.Orders, NextID: m.st.NextID}, "", " ")
	m.dirty = false
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("market: state: %w", err)
	}
	dir := filepath.Dir(m.cfg.StatePath)
	f, err := os.CreateTemp(dir, ".market-state-*")
	if err != nil {
		return fmt.Errorf("market: state: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("market: state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("market: state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("market: state: %w", err)
	}
	if err := os.Rename(f.Name(), m.cfg.StatePath); err != nil {
		return fmt.Errorf("market: state: %w", err)
	}
	return nil
}
