package payout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pool"
)

// Config configures the payout service.
type Config struct {
	Scheme      Scheme
	Network     *chaincfg.Params
	PoolAddress string        // the pool's own address: fee, dust and balances held for miners
	Window      hashgrid.Diff // PPLNS: N, the window as a multiple of network difficulty
	Split       SplitParams   // fee, coinbase threshold, direct outputs
	// PayoutThreshold is the balance at which a miner is paid by a payout batch.
	PayoutThreshold int64
	// Funding is the capital the operator declares for PPS/FPPS: with the blocks found,
	// the most the scheme may ever credit.
	Funding int64
	// FeeWindow is how many recent heights' template fees FPPS averages; default 144.
	FeeWindow int
	// Wallet, when set, sends payout batches; otherwise they are exported to ExportDir.
	Wallet    Wallet
	ExportDir string
	// SnapshotInterval is how often new shares are read from the store: the PPLNS window
	// is cut and committed, PPS/FPPS shares credited; default 1s.
	SnapshotInterval time.Duration
	// Interval is how often found blocks are reconciled with the ledger; default 10s.
	Interval time.Duration
	// PayoutInterval is how often balances are paid out; 0 disables the payout loop.
	PayoutInterval time.Duration
	Logger         *slog.Logger
	Now            func() time.Time
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if _, err := ParseScheme(string(c.Scheme)); err != nil {
		return err
	}
	if c.Network == nil {
		return errors.New("payout: no network")
	}
	if _, err := pool.AddressScript(c.PoolAddress, c.Network); err != nil {
		return fmt.Errorf("payout: pool address: %s", hashgrid.ErrorMessage(err))
	}
	if err := c.Split.Validate(); err != nil {
		return err
	}
	if c.Scheme == PPLNS && c.Window == 0 {
		return errors.New("payout: PPLNS window must be above zero")
	}
	if c.PayoutThreshold < 0 {
		return fmt.Errorf("payout: negative payout threshold %d", c.PayoutThreshold)
	}
	if c.Funding < 0 || c.Funding > maxSatoshi {
		return fmt.Errorf("payout: funding %d out of range", c.Funding)
	}
	if c.FeeWindow < 0 {
		return fmt.Errorf("payout: negative fee window %d", c.FeeWindow)
	}
	if c.Wallet == nil && c.ExportDir == "" && c.PayoutInterval > 0 {
		return errors.New("payout: payouts need a wallet or an export directory")
	}
	return nil
}

func (c *Config) defaults() {
	if c.FeeWindow == 0 {
		c.FeeWindow = 144
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = time.Second
	}
	if c.Interval == 0 {
		c.Interval = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// BlockSource fetches a block from the chain, for its coinbase.
type BlockSource interface {
	Block(ctx context.Context, hash chainhash.Hash) (*wire.MsgBlock, error)
}

// Service runs a payout scheme over a pool's shares and blocks.
type Service struct {
	cfg    Config
	log    *slog.Logger
	led    ledger.Book
	store  hashgrid.ShareStore
	chain  BlockSource
	db     *db
	poolID string
	script []byte

	bits    atomic.Uint32 // network target of the latest template
	bitsSet chan struct{} // closed once bits is known
	once    sync.Once

	mu      sync.Mutex
	live    liveWindow
	loaded  bool // live was rebuilt from the store
	dirty   bool
	cutBits uint32
	lastCut time.Time
	cur     atomic.Pointer[committed] // the window the next coinbase commits to

	outMu    sync.Mutex
	outCache outCache
	scripts  map[string][]byte
	rateMu   sync.Mutex
	rateAt   int64 // highest height whose PPS rate is recorded

	wake chan struct{}
	seen map[chainhash.Hash]hashgrid.BlockStatus

	startMu sync.Mutex
	starts  map[chainhash.Hash]blockWindowRef // each found block's commitment; see RetainFrom
}

// committed is a cut window whose parameters are durable: a coinbase may commit to it.
type committed struct {
	params     WindowParams
	commitment Hash32
	weights    []Weight
}

type outCache struct {
	c     *committed
	value int64
	outs  []pool.Output
}

// Open opens the service's state in the SQLite file dbPath (see OpenWith) and returns
// the service. Start it with Run.
func Open(cfg Config, dbPath string, led ledger.Book, store hashgrid.ShareStore, chain BlockSource) (*Service, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	st, err := OpenSQLiteState(dbPath)
	if err != nil {
		return nil, err
	}
	s, err := OpenWith(cfg, st, led, store, chain)
	if err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

// OpenWith returns the service keeping its state in st, which it owns from then on:
// Close closes it. If OpenWith fails, st is left open. Start the service with Run.
func OpenWith(cfg Config, st State, led ledger.Book, store hashgrid.ShareStore, chain BlockSource) (*Service, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if st == nil {
		return nil, errors.New("payout: no state")
	}
	script, _ := pool.AddressScript(cfg.PoolAddress, cfg.Network)
	d := &db{st: st}
	id, err := d.poolID(context.Background())
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, log: cfg.Logger, led: led, store: store, chain: chain, db: d, poolID: id, script: script,
		bitsSet: make(chan struct{}), scripts: map[string][]byte{}, wake: make(chan struct{}, 1),
		seen: map[chainhash.Hash]hashgrid.BlockStatus{}, starts: map[chainhash.Hash]blockWindowRef{}}, nil
}

// Close closes the service's state. Call it after Run returned.
func (s *Service) Close() error { return s.db.close() }

// Scheme returns the configured scheme.
func (s *Service) Scheme() Scheme { return s.cfg.Scheme }

// Notify asks the service to look at found blocks now (a block was found or changed
// status). It never blocks.
func (s *Service) Notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Outputs is the pool's OutputFunc for the configured scheme. It is called with the
// pool's lock held on every template and job: it reads the latest committed window and
// does no I/O, except under PPS/FPPS once per new height to record the rate.
func (s *Service) Outputs(tmpl *node.Template, value int64, finder string) ([]pool.Output, string, error) {
	s.bits.Store(tmpl.Bits)
	s.once.Do(func() { close(s.bitsSet) })
	switch s.cfg.Scheme {
	case SOLO:
		if finder == "" {
			return []pool.Output{{Value: value, Script: s.script}}, "", nil
		}
		fs, err := s.scriptOf(finder)
		if err != nil {
			return nil, "", err
		}
		return soloOutputs(value, fs, s.script, s.cfg.Split.FeeBps), finder, nil
	case PPS, FPPS:
		if err := s.recordRate(tmpl); err != nil {
			return nil, "", err
		}
		return []pool.Output{{Value: value, Script: s.script}}, "", nil
	}
	c := s.cur.Load()
	if c == nil {
		// No share yet: nothing to split, the pool keeps this block.
		return []pool.Output{{Value: value, Script: s.script}}, "", nil
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if s.outCache.c == c && s.outCache.value == value {
		return s.outCache.outs, "", nil
	}
	outs, err := pplnsOutputs(c, value, s.script, s.scriptOf)
	if err != nil {
		return nil, "", err
	}
	s.outCache = outCache{c: c, value: value, outs: outs}
	return outs, "", nil
}

func (s *Service) scriptOf(addr string) ([]byte, error) {
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	if sc, ok := s.scripts[addr]; ok {
		return sc, nil
	}
	sc, err := pool.AddressScript(addr, s.cfg.Network)
	if err != nil {
		return nil, err
	}
	if len(s.scripts) > 100_000 {
		clear(s.scripts)
	}
	s.scripts[addr] = sc
	return sc, nil
}

func (s *Service) recordRate(t *node.Template) error {
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	if t.Height <= s.rateAt {
		return nil
	}
	fees := t.TotalFees()
	r := Rate{Height: t.Height, Subsidy: t.CoinbaseValue - fees, Fees: fees, Bits: t.Bits}
	if err := s.db.putRate(context.Background(), r); err != nil {
		return err
	}
	s.rateAt = t.Height
	return nil
}

// Run runs the scheme until ctx ends: the PPLNS window or the PPS crediting, the block
// reconciliation and the payout loop. Every goroutine is waited for.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	switch s.cfg.Scheme {
	case PPLNS:
		wg.Go(func() { errc <- s.runWindow(ctx) })
	case PPS, FPPS:
		wg.Go(func() { errc <- s.runPPS(ctx) })
	}
	wg.Go(func() { errc <- s.runBlocks(ctx) })
	if s.cfg.PayoutInterval > 0 {
		wg.Go(func() { errc <- s.runPayouts(ctx) })
	}
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		if err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Service) runBlocks(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("payout: reconcile blocks", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-s.wake:
		}
	}
}

func (s *Service) runPayouts(ctx context.Context) error {
	t := time.NewTicker(s.cfg.PayoutInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if _, err := s.PayoutRun(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("payout run", "err", err)
		}
	}
}
