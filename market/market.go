package market

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/big"
	"net"
	"net/netip"
	"slices"
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

// Prices are in satoshis per PH/s per day: a price p pays p satoshis for the
// 8.64e19 hashes (HashesPerPHDay) one PH/s delivers in a day. At a hashprice near
// 50,000 sat per PH/s per day one satoshi is a tick of 0.002%, fine enough for a
// book; a price per TH/s, as before, had ticks of 2%. Speeds (limits, contracts,
// views) stay in TH/s, the size of one machine.
//
// PriceUnit names the unit in every order record, so that records from before it
// (sat per TH/s per day, no unit) are converted once when loaded.
const PriceUnit = "sat/PH/day"

// HashesPerPHDay is the number of hashes one PH/s delivers in a day, as a decimal
// string: it does not fit an int64.
const HashesPerPHDay = "86400000000000000000"

var bigK, _ = new(big.Int).SetString(HashesPerPHDay, 10)

// Limits on what a buyer may ask for.
const (
	MaxPrice       = 1_000_000_000_000_000_000 // sat per PH/s per day
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
	// Store keeps accounts and orders (money is in the ledger); see StateStore. When
	// nil, the market opens a FileStore on StatePath and AccountsPath and closes it at
	// Shutdown; a Store given here is the caller's to close.
	Store StateStore
	// StatePath is the JSON file that holds orders when Store is nil. Accounts are
	// appended, one JSON line each, to AccountsPath, which defaults to StatePath with
	// "-accounts.jsonl" for its ".json". With a Store, StatePath (if not "") names such
	// a file to import into the Store once, when the Store is empty: a market moving
	// from its JSON file to a database.
	StatePath    string
	AccountsPath string
	FeeBps       int64 // market fee in basis points of what buyers pay; default 200
	// SellerExtranonce2Size is the extranonce2 size given to sellers. A destination
	// whose extranonce2 is at least 4 bytes larger is shared by all of an order's
	// sellers over one connection; one whose extranonce2 is smaller, but at least this
	// size, gets one connection per seller (see MaxUpstreamsPerOrder); a smaller one
	// pauses its order. Default 4.
	SellerExtranonce2Size int
	// MaxUpstreamsPerOrder bounds the connections an order has open to its destination
	// when that destination's extranonce2 is too small to share: the first one, which
	// keeps the order live, and one per seller routed to it (each seller's own
	// extranonce1 from the destination, sent with mining.set_extranonce). At the bound,
	// further sellers go to other orders or wait. Connections still answering shares
	// of a seller that left are not counted. Default 16.
	MaxUpstreamsPerOrder int
	SellerShareInterval  time.Duration // seller vardiff aims at one share per interval; default 5s
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
	// SlicePeriod and MinSlice shape time-sliced routing: a seller faster than the
	// room an order has left spends that share of every SlicePeriod on it (default
	// 30s) and the rest on orders below, so an order smaller than one seller still
	// fills. A slice shorter than MinSlice (default 3s) is not given: each move costs
	// the seller the work in flight on its old job.
	SlicePeriod     time.Duration
	MinSlice        time.Duration
	SettleInterval  time.Duration // charges are posted this often; default 1s
	UpstreamTimeout time.Duration // dial and reply timeout towards destinations; default 10s
	JobTimeout      time.Duration // a destination that sends no job this long after connecting pauses its order; default 15s
	SpeedWindow     time.Duration // window of "current" speeds; default 60s
	SampleSize      int           // delivered shares kept per order for audit; default 256
	// SpeedBucket and SpeedHistory shape an order's delivered speed over time (kept in
	// memory only): default one-minute buckets over three hours.
	SpeedBucket  time.Duration
	SpeedHistory time.Duration
	MinPrice     int64 // lowest contract quote; default 1
	// ContractPremiumBps is what a contract pays over the spot orders it pushes out,
	// in basis points of their price, for hashrate reserved ahead: default 500 (5%).
	ContractPremiumBps int64
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
	if c.MaxUpstreamsPerOrder == 0 {
		c.MaxUpstreamsPerOrder = 16
	}
	if c.RouteInterval == 0 {
		c.RouteInterval = time.Second
	}
	if c.SettleInterval == 0 {
		c.SettleInterval = time.Second
	}
	if c.SlicePeriod == 0 {
		c.SlicePeriod = 30 * time.Second
	}
	if c.MinSlice == 0 {
		c.MinSlice = 3 * time.Second
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
	if c.ContractPremiumBps == 0 {
		c.ContractPremiumBps = 500
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
	if c.AccountsPath == "" && c.StatePath != "" {
		c.AccountsPath = AccountsPathFor(c.StatePath)
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
	if c.Store == nil && c.StatePath == "" {
		return errors.New("market: no state store or state path")
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
	if c.MaxSharesPerSellerJob < 1 || c.UpstreamInFlight < 1 || c.MaxUpstreamsPerOrder < 1 {
		return errors.New("market: MaxSharesPerSellerJob, UpstreamInFlight and MaxUpstreamsPerOrder must be at least 1")
	}
	if c.ContractPremiumBps < 0 || c.ContractPremiumBps > 100_000 {
		return fmt.Errorf("market: contract premium %d bps out of range 0..100000", c.ContractPremiumBps)
	}
	if c.MinSlice <= 0 || c.SlicePeriod < 2*c.MinSlice {
		return fmt.Errorf("market: slice period %v must be at least twice the minimum slice %v", c.SlicePeriod, c.MinSlice)
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

// state is the market's state in memory, in the shape of a FileStore's file.
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
	// dirty says the next save has something to write: an order marked changed
	// (changedLocked), an order in deleted, or the id counter past savedNext.
	dirty     bool
	deleted   []string
	savedNext uint64
	closed    bool // Shutdown saved the last state: nothing more is written

	store      StateStore
	ownStore   bool        // opened by New from StatePath: closed by Shutdown
	settler    SettleStore // the store, when it holds the ledger: settlements save their order with their entries
	saveMu     sync.Mutex  // one save at a time, so that saves reach the store in order
	settleMu   sync.Mutex  // one settlement at a time: two would plan the same key with other amounts
	contractMu sync.Mutex  // one contract purchase at a time (BuyContract)
	pseudo     [32]byte    // key of the per-order seller pseudonyms buyers see
	jobSeq     atomic.Uint64
	kickc      chan struct{}

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
	m.store = cfg.Store
	if m.store == nil {
		fs, err := OpenFileStore(cfg.StatePath, cfg.AccountsPath, cfg.Logger)
		if err != nil {
			cancel()
			return nil, err
		}
		m.store, m.ownStore = fs, true
	}
	if ss, ok := m.store.(SettleStore); ok && ss.Holds(m.led) {
		m.settler = ss
	}
	err := m.load()
	if err == nil {
		err = m.makePayable(context.Background())
	}
	if err != nil {
		cancel()
		if m.ownStore {
			m.store.Close()
		}
		return nil, err
	}
	srv, err := stratum.NewServer(stratum.Config{
		Extranonce2Size: cfg.SellerExtranonce2Size,
		// Sellers on a destination whose extranonce2 is too small to share are given
		// the extranonce1 of their own connection to it.
		ExtranonceSubscribe: true,
		Limits:              cfg.Limits,
		Logger:              cfg.Logger.With("component", "stratum"),
		Now:                 cfg.Now,
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
	m.saveMu.Lock()
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.saveMu.Unlock()
	if m.ownStore {
		if cerr := m.store.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
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
// only a hash of its secret part is kept. The account is in the store (a line
// appended to the FileStore's journal, or a row) before the key is returned; no
// order is written.
func (m *Market) CreateAccount() (id, key string, err error) {
	var secret [24]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", "", fmt.Errorf("market: key: %w", err)
	}
	s := hex.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(s))
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return "", "", errShutDown
	}
	if len(m.st.Accounts) >= MaxAccounts {
		m.mu.Unlock()
		return "", "", hashgrid.Errorf(hashgrid.EUNAVAILABLE, "account limit reached")
	}
	// Not marked dirty: the account's row carries the counter, and load raises
	// NextID past every stored account.
	m.st.NextID++
	next := m.st.NextID
	id = "a" + strconv.FormatUint(next, 10)
	m.mu.Unlock()
	a := &Account{ID: id, KeyHash: hex.EncodeToString(sum[:]), Created: m.cfg.Now().UTC()}
	if err := m.store.Save(context.Background(), Update{Accounts: []*Account{a}, NextID: next}); err != nil {
		return "", "", err
	}
	m.mu.Lock()
	m.st.Accounts[id] = a
	m.mu.Unlock()
	return id, "hgk_" + id + "_" + s, nil
}

var errShutDown = hashgrid.Errorf(hashgrid.EUNAVAILABLE, "market is shut down")

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
	ctx := context.Background()
	if !m.ownStore && m.cfg.StatePath != "" {
		st, err := ImportFile(ctx, m.store, m.cfg.StatePath, m.cfg.AccountsPath, m.log)
		if err != nil {
			return err
		}
		if !st.Empty() {
			m.log.Info("market state imported from its JSON file into the state store, once: the file is no longer read or written",
				"path", m.cfg.StatePath, "accounts", len(st.Accounts), "orders", len(st.Orders), "next_id", st.NextID)
		}
	}
	st, err := m.store.Load(ctx)
	if err != nil {
		return err
	}
	m.st.NextID = st.NextID
	for _, a := range st.Accounts {
		m.st.Accounts[a.ID] = a
		m.raiseNextID(a.ID, "a")
	}
	m.savedNext = m.st.NextID
	for _, rec := range st.Orders {
		id := rec.ID
		converted := rec.PriceUnit == ""
		o, err := restoreOrder(rec)
		if err != nil {
			return fmt.Errorf("market: state: order %s: %w", id, err)
		}
		if converted {
			// Its price and numerators changed unit: the record and every worker's
			// row are written again, together, by the next save; until then the
			// store holds the old unit throughout and converts again if reloaded.
			m.changedLocked(o)
			for k := range o.sellerNum {
				o.workerChangedLocked(k)
			}
		}
		for k, v := range rec.SellerPaid {
			m.earned[k] += v
		}
		// What the ledger adds is marked changed, for the next save.
		if err := m.reconcile(ctx, o); err != nil {
			return err
		}
		m.raiseNextID(id, "o")
		m.st.Orders[id] = rec
		m.orders[id] = o
	}
	return nil
}

// raiseNextID raises the id counter past id (prefix and a number): ids are never
// handed out twice, whatever a crash left unsaved.
func (m *Market) raiseNextID(id, prefix string) {
	if num, err := strconv.ParseUint(strings.TrimPrefix(id, prefix), 10, 64); err == nil && num > m.st.NextID {
		m.st.NextID = num
	}
}

// workerChangedLocked marks a worker's entries of o to be written by the next save.
func (o *order) workerChangedLocked(k string) {
	if o.changedWorkers == nil {
		o.changedWorkers = map[string]struct{}{}
	}
	o.changedWorkers[k] = struct{}{}
}

// changedLocked marks o to be written by the next save.
func (m *Market) changedLocked(o *order) {
	o.changed = true
	m.dirty = true
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
	for _, p := range applyToRecord(o.rec, e) {
		m.earned[p.Account] += p.Amount
		o.workerChangedLocked(p.Account)
	}
	m.changedLocked(o)
}

// applyToRecord applies a ledger entry of r's to r, and returns what it credited each
// worker (Account is the worker's key).
func applyToRecord(r *OrderRecord, e ledger.Entry) []ledger.Posting {
	var esc int64
	for _, p := range e.Postings {
		if p.Account == acctEscrow(r.ID) {
			esc = p.Amount
		}
	}
	var workers []ledger.Posting
	switch {
	case strings.HasPrefix(e.Key, "market:settle:"):
		r.Charged += -esc
		r.SettleSeq++
		for _, p := range e.Postings {
			if k, ok := strings.CutPrefix(p.Account, "market:seller:"); ok {
				r.SellerPaid[k] += p.Amount
				workers = append(workers, ledger.Posting{Account: k, Amount: p.Amount})
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
	return workers
}

// save writes what changed since the last save to the store: the orders marked
// changed, those deleted and the id counter. Orders are copied under m.mu and written
// outside it, so that sellers' shares do not wait for the store.
func (m *Market) save() error {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	m.mu.Lock()
	u := Update{Workers: map[string][]string{}}
	for _, o := range m.orders {
		if o.changed {
			o.snapshotLocked()
			u.Orders = append(u.Orders, o.rec.clone())
			u.Workers[o.rec.ID] = slices.Sorted(maps.Keys(o.changedWorkers))
			o.changed, o.changedWorkers = false, nil
		}
	}
	u.Deleted, m.deleted = m.deleted, nil
	u.NextID = m.st.NextID
	m.dirty = false
	closed := m.closed
	m.mu.Unlock()
	if u.empty() && u.NextID == m.savedNext {
		return nil
	}
	var err error = errShutDown
	if !closed {
		err = m.store.Save(context.Background(), u)
	}
	if err != nil {
		// Marked again, for the next save to retry.
		m.mu.Lock()
		for _, r := range u.Orders {
			if o := m.orders[r.ID]; o != nil {
				o.changed = true
				for _, k := range u.Workers[r.ID] {
					o.workerChangedLocked(k)
				}
			}
		}
		m.deleted = append(u.Deleted, m.deleted...)
		m.dirty = true
		m.mu.Unlock()
		return err
	}
	m.savedNext = u.NextID
	return nil
}
