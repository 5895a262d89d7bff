package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"path/filepath"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/postgres"
)

// Payout defaults for flags.
const (
	defaultPPLNSWindow       = 2.0           // N: twice the network difficulty
	defaultCoinbaseThreshold = 1_000_000     // 0.01 BTC: paid by the block's own coinbase
	defaultPayoutThreshold   = 100_000       // 0.001 BTC: paid by a payout batch
	defaultPayoutInterval    = time.Hour     // how often balances are paid out
	defaultMaxDirectOutputs  = 50            // coinbase outputs paying miners
	maxPPLNSWindow           = float64(1e9)  // far above any sensible N; below Diff's limit
	minPPLNSWindow           = float64(1e-6) // below this the window holds no share
)

// payoutConfig turns the pool's settings into the payout service's.
func (c *PoolConfig) payoutConfig(params *chaincfg.Params) (payout.Config, error) {
	scheme, err := payout.ParseScheme(c.PayoutScheme)
	if err != nil {
		return payout.Config{}, errors.New(trimPrefix(err))
	}
	n := c.PPLNSWindow
	if n == 0 {
		n = defaultPPLNSWindow
	}
	if math.IsNaN(n) || n < minPPLNSWindow || n > maxPPLNSWindow {
		return payout.Config{}, fmt.Errorf("--pplns-window %g out of range %g..%g", n, minPPLNSWindow, maxPPLNSWindow)
	}
	iv := c.PayoutInterval
	if iv == 0 {
		iv = defaultPayoutInterval
	}
	if iv < 0 {
		return payout.Config{}, fmt.Errorf("--payout-interval %s is negative", iv)
	}
	pc := payout.Config{
		Scheme: scheme, Network: params, PoolAddress: c.PayoutAddress, Window: hashgrid.DiffFromFloat(n),
		Split:           payout.SplitParams{FeeBps: c.PoolFeeBps, DirectMin: c.CoinbaseThreshold, MaxDirect: defaultMaxDirectOutputs},
		PayoutThreshold: c.PayoutThreshold, Funding: c.PPSFunding, PayoutInterval: iv,
		ExportDir: filepath.Join(c.Data, "payouts"), Interval: c.TrackInterval,
	}
	if c.Wallet != "" {
		u, err := url.Parse(c.Wallet)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return payout.Config{}, errors.New("--wallet must be an http:// or https:// wallet RPC URL")
		}
	}
	if err := pc.Validate(); err != nil {
		return payout.Config{}, errors.New(trimPrefix(err))
	}
	return pc, nil
}

func trimPrefix(err error) string {
	s := err.Error()
	if len(s) > len("payout: ") && s[:len("payout: ")] == "payout: " {
		return s[len("payout: "):]
	}
	return s
}

// validatePayouts checks the payout settings at start-up.
func (c *PoolConfig) validatePayouts(params *chaincfg.Params) error {
	if c.PayoutScheme == "" {
		return nil
	}
	if _, err := c.payoutConfig(params); err != nil {
		return fmt.Errorf("payouts: %v", err)
	}
	return nil
}

// payouts is the running payout service with the ledger it owns.
type payouts struct {
	*payout.Service
	led ledger.Book
}

// openPayouts opens the ledger and the payout service, or returns nil when no
// scheme is configured.
func openPayouts(cfg PoolConfig, params *chaincfg.Params, store hashgrid.ShareStore, clients []*node.Client, log *slog.Logger) (*payouts, error) {
	if cfg.PayoutScheme == "" {
		return nil, nil
	}
	pc, err := cfg.payoutConfig(params)
	if err != nil {
		return nil, err
	}
	pc.Logger = log.With("component", "payout")
	if cfg.Wallet != "" {
		wc, err := node.NewClient(cfg.Wallet)
		if err != nil {
			return nil, fmt.Errorf("--wallet: %w", err)
		}
		pc.Wallet = payout.CoreWallet{RPC: wc}
	}
	led, err := openLedger(context.Background(), cfg, log)
	if err != nil {
		return nil, err
	}
	st, err := openPayoutState(cfg)
	if err != nil {
		led.Close()
		return nil, err
	}
	svc, err := payout.OpenWith(pc, st, led, store, chainBlocks(clients))
	if err != nil {
		st.Close()
		led.Close()
		return nil, err
	}
	return &payouts{Service: svc, led: led}, nil
}

// openPayoutState opens the payout service's own state: payout.db in the data
// directory (a PostgreSQL pool would pass postgres.PayoutState instead).
func openPayoutState(cfg PoolConfig) (payout.State, error) {
	if cfg.Postgres != "" {
		return postgres.OpenPayoutState(context.Background(), cfg.Postgres, nil)
	}
	return payout.OpenSQLiteState(filepath.Join(cfg.Data, "payout.db"))
}

// Close closes the service and its ledger.
func (p *payouts) Close() error {
	if p == nil {
		return nil
	}
	return errors.Join(p.Service.Close(), p.led.Close())
}

// Notify wakes the service's block reconciliation; a nil service ignores it.
func (p *payouts) Notify() {
	if p != nil {
		p.Service.Notify()
	}
}

// api returns the API's view of the service (nil when there is none).
func (p *payouts) api() api.PayoutService {
	if p == nil {
		return nil
	}
	return p.Service
}

// run runs the service until ctx ends.
func (p *payouts) run(ctx context.Context, log *slog.Logger) {
	if p == nil {
		return
	}
	if err := p.Service.Run(ctx); err != nil {
		log.Error("payouts stopped", "err", err)
	}
}

// chainBlocks reads blocks from the first node that has them.
type chainBlocks []*node.Client

// maxBlockHex bounds a block read for its coinbase (4 MB of weight, as hex).
const maxBlockHex = 2 * 4_000_000

func (cs chainBlocks) Block(ctx context.Context, h chainhash.Hash) (*wire.MsgBlock, error) {
	var errs []error
	for _, c := range cs {
		blk, err := fetchBlock(ctx, c, h)
		if err == nil {
			return blk, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func fetchBlock(ctx context.Context, c *node.Client, h chainhash.Hash) (*wire.MsgBlock, error) {
	var hexBlock string
	if err := c.Call(ctx, "getblock", []any{h.String(), 0}, &hexBlock); err != nil {
		return nil, fmt.Errorf("getblock %s: %w", h, err)
	}
	if len(hexBlock) > maxBlockHex {
		return nil, fmt.Errorf("getblock %s: %d hex digits, more than a block can hold", h, len(hexBlock))
	}
	raw, err := hex.DecodeString(hexBlock)
	if err != nil {
		return nil, fmt.Errorf("getblock %s: %w", h, err)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("getblock %s: %w", h, err)
	}
	if blk.BlockHash() != h {
		return nil, fmt.Errorf("getblock %s: node returned block %s", h, blk.BlockHash())
	}
	return &blk, nil
}
