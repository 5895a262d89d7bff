package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/market"
	"github.com/hashgrid/hashgrid/postgres"
	"github.com/hashgrid/hashgrid/stratum"
)

// MarketConfig is the configuration of `hashgrid market`.
type MarketConfig struct {
	Stratum   string
	StratumV2 string // sellers' Stratum V2 port HOST:PORT, "" for none; its keys in Data/v2
	API       string
	Data      string // the market's state and ledger when it shares no pool's book
	// PoolData is the data directory of the pool whose book (PoolData/ledger.db) the
	// market posts to, and Postgres the URL of the pool's PostgreSQL books: with
	// either, sellers' earnings are paid by the pool's payout engine, and the market's
	// state (accounts, orders) is kept in the same database (a market.json in Data,
	// from an earlier run, is imported once). With neither, the market keeps a book
	// of its own and market.json in Data, and no payout engine pays from that book.
	PoolData            string
	Postgres            string
	Network             string
	FeeBps              int64
	SellerShareInterval time.Duration
	SellerStartDiff     float64
	// Zero means the market's default for each (see market.Config).
	SellerMinDiff         float64
	MaxSharesPerSellerJob int
	UpstreamInFlight      int
	MaxUpstreamsPerOrder  int
	MinOrderBudget        int64
	ContractPremiumBps    int64
	PriceDecreaseInterval time.Duration
	MaxPriceDecreaseBps   int64
	MaxConnsPerIP         int
	LogLevel              string
	// AllowPrivateDestinations lets orders point at loopback and private addresses.
	AllowPrivateDestinations bool
	// SpeedBucket is the width of an order's delivered-speed history; default a minute.
	SpeedBucket time.Duration
	// ComputeInterval is compute leasing's metered interval (package compute); default a minute.
	ComputeInterval time.Duration
	// AdminToken authorizes deposits and the admin's view of an order's shares; from
	// --admin-token-file or $HASHGRID_MARKET_ADMIN_TOKEN, never a flag's value (flags
	// show in process listings).
	AdminToken string
	Now        func() time.Time
}

// Secrets of the market's command line, read from the environment.
const (
	envMarketAdminToken = "HASHGRID_MARKET_ADMIN_TOKEN"
	envMarketAPIKey     = "HASHGRID_MARKET_API_KEY"
)

// MarketReady tells a caller where a started market listens.
type MarketReady struct {
	Stratum   string
	StratumV2 string // host:port of the sellers' Stratum V2 port; "" without --stratum-v2
	V2URL     string // stratum2+tcp://HOST:PORT/AUTHORITY_KEY to give V2 sellers
	API       string
	Market    *market.Market
	Ledger    ledger.Book
}

func marketCommand() *Command {
	return &Command{
		Name:  "market",
		Short: "run the hashrate market, or audit an order's delivered shares",
		Run: func(ctx context.Context, args []string, env Env) error {
			if len(args) > 0 && args[0] == "audit" {
				return runMarketAudit(ctx, args[1:], env)
			}
			cfg, err := parseMarketFlags(args, env)
			if err != nil {
				return err
			}
			return RunMarket(ctx, cfg, env, nil)
		},
	}
}

// parseMarketFlags fills a MarketConfig from the command line and the environment.
// The sellers' Stratum port listens on every interface; the HTTP API, which carries
// buyers' keys and the admin's deposits, on loopback unless --api says otherwise.
func parseMarketFlags(args []string, env Env) (MarketConfig, error) {
	fs := newFlagSet("market", env)
	cfg := MarketConfig{Network: "mainnet", LogLevel: "info"}
	var tokenFile, postgresFile string
	fs.StringVar(&cfg.Stratum, "stratum", ":3334", "Stratum listen address for sellers")
	fs.StringVar(&cfg.StratumV2, "stratum-v2", "", "Stratum V2 listen address for sellers (encrypted, binary; keys in DATA/v2, the URL printed at start)")
	fs.StringVar(&cfg.API, "api", "127.0.0.1:8081", "HTTP API listen address (buyers' page and API; give :8081 to serve every interface)")
	fs.StringVar(&cfg.Data, "data", "market-data", "data directory (state and ledger, unless --pool-data or --postgres, which hold both; a market.json here is imported into them once)")
	fs.StringVar(&cfg.PoolData, "pool-data", "", "the pool's data directory: post to its ledger.db, so that the pool's payout engine pays sellers (the pool runs with --payout-scheme)")
	fs.StringVar(&cfg.Postgres, "postgres", "", "postgres://USER@HOST:PORT/DB of the pool's PostgreSQL books, instead of --pool-data (a password here shows in process listings: prefer --postgres-file or $"+envPostgres+")")
	fs.StringVar(&postgresFile, "postgres-file", "", "file holding the --postgres URL")
	fs.StringVar(&cfg.Network, "network", cfg.Network, "network of sellers' payout addresses: regtest, signet, testnet or mainnet")
	fs.Int64Var(&cfg.FeeBps, "fee-bps", 200, "market fee in basis points of what buyers pay")
	fs.DurationVar(&cfg.SellerShareInterval, "seller-share-interval", 0, "seller vardiff target time between shares (default 5s)")
	fs.Float64Var(&cfg.SellerStartDiff, "seller-start-difficulty", 0, "first difficulty of a seller, at least --seller-min-difficulty (default: --seller-min-difficulty)")
	fs.Float64Var(&cfg.SellerMinDiff, "seller-min-difficulty", 0, fmt.Sprintf("floor of every seller's difficulty (default %d; lower only where the destination's difficulty is lower)", market.DefaultSellerMinDiff))
	fs.IntVar(&cfg.MaxSharesPerSellerJob, "max-shares-per-seller-job", 0, "shares one seller connection may submit on one job before further ones are refused (default 4096)")
	fs.IntVar(&cfg.UpstreamInFlight, "upstream-in-flight", 0, "shares forwarded to one destination and not yet answered; more are not forwarded (default 64)")
	fs.IntVar(&cfg.MaxUpstreamsPerOrder, "max-upstreams-per-order", 0, "connections an order may open to a destination whose extranonce2 is too small to share, one per seller beside its own (default 16)")
	fs.Int64Var(&cfg.MinOrderBudget, "min-order-budget", 0, "smallest budget of a spot order, in sat (default 1000)")
	fs.Int64Var(&cfg.ContractPremiumBps, "contract-premium-bps", 0, "what a contract pays over the spot orders it pushes out, in basis points of their price (default 500)")
	fs.DurationVar(&cfg.PriceDecreaseInterval, "price-decrease-interval", 0, "a spot order's price may fall at most once per interval (default 10m)")
	fs.Int64Var(&cfg.MaxPriceDecreaseBps, "max-price-decrease-bps", 0, "most a spot order's price may fall at once, in basis points of the price (default 1000)")
	fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", 0, "seller connections allowed from one IP (default 2048)")
	fs.BoolVar(&cfg.AllowPrivateDestinations, "allow-private-destinations", false, "let orders point at loopback, private and link-local addresses (tests, demos, a private farm)")
	fs.StringVar(&tokenFile, "admin-token-file", "", "file holding the admin token for deposits (or $"+envMarketAdminToken+"; neither: deposits disabled)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.DurationVar(&cfg.ComputeInterval, "compute-interval", 0, "compute leases are metered and settled this often (default 1m)")
	if err := parseFlags(fs, args); err != nil {
		return cfg, err
	}
	getenv := env.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	tok, err := secret("admin token", "", "", tokenFile, "--admin-token-file", getenv(envMarketAdminToken))
	if err != nil {
		return cfg, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	cfg.AdminToken = tok
	if cfg.Postgres, err = secret("PostgreSQL URL", cfg.Postgres, "--postgres", postgresFile, "--postgres-file", getenv(envPostgres)); err != nil {
		return cfg, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if err := cfg.validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// validate checks what flags can get wrong, naming the flag. Zero leaves a setting
// at the market's default; the market checks again what it defaults.
func (c *MarketConfig) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrUsage}, args...)...)
	}
	if c.StratumV2 != "" {
		if _, _, err := net.SplitHostPort(c.StratumV2); err != nil {
			return bad("--stratum-v2 %q: want HOST:PORT or :PORT", c.StratumV2)
		}
	}
	switch {
	case c.PoolData != "" && c.Postgres != "":
		return bad("--pool-data and --postgres both name the pool's book: give one")
	case c.Postgres != "" && !strings.HasPrefix(c.Postgres, "postgres://") && !strings.HasPrefix(c.Postgres, "postgresql://"):
		return bad("--postgres: want a postgres://USER@HOST:PORT/DB URL")
	case c.FeeBps < 0 || c.FeeBps >= 10_000:
		return bad("--fee-bps %d: want 0..9999", c.FeeBps)
	case c.SellerMinDiff < 0 || math.IsNaN(c.SellerMinDiff) || math.IsInf(c.SellerMinDiff, 0):
		return bad("--seller-min-difficulty %g: want a positive number", c.SellerMinDiff)
	case c.SellerStartDiff < 0 || math.IsNaN(c.SellerStartDiff) || math.IsInf(c.SellerStartDiff, 0):
		return bad("--seller-start-difficulty %g: want a positive number", c.SellerStartDiff)
	case c.SellerStartDiff > 0 && c.SellerStartDiff < c.minDiff():
		return bad("--seller-start-difficulty %g is below the seller minimum difficulty %g", c.SellerStartDiff, c.minDiff())
	case c.MaxSharesPerSellerJob < 0:
		return bad("--max-shares-per-seller-job %d: want 0 (the default) or more", c.MaxSharesPerSellerJob)
	case c.UpstreamInFlight < 0:
		return bad("--upstream-in-flight %d: want 0 (the default) or more", c.UpstreamInFlight)
	case c.MaxUpstreamsPerOrder < 0:
		return bad("--max-upstreams-per-order %d: want 0 (the default) or more", c.MaxUpstreamsPerOrder)
	case c.MinOrderBudget < 0:
		return bad("--min-order-budget %d: want 0 (the default) or more sat", c.MinOrderBudget)
	case c.ContractPremiumBps < 0 || c.ContractPremiumBps > 100_000:
		return bad("--contract-premium-bps %d: want 0 (the default) to 100000", c.ContractPremiumBps)
	case c.PriceDecreaseInterval < 0:
		return bad("--price-decrease-interval %s: want 0 or more", c.PriceDecreaseInterval)
	case c.MaxPriceDecreaseBps < 0 || c.MaxPriceDecreaseBps > 10_000:
		return bad("--max-price-decrease-bps %d: want 0 (the default) to 10000", c.MaxPriceDecreaseBps)
	case c.SellerShareInterval < 0:
		return bad("--seller-share-interval %s: want 0 (the default) or more", c.SellerShareInterval)
	case c.MaxConnsPerIP < 0:
		return bad("--max-conns-per-ip %d: want 0 or more", c.MaxConnsPerIP)
	}
	return nil
}

// minDiff is the seller minimum difficulty the market will use.
func (c *MarketConfig) minDiff() float64 {
	if c.SellerMinDiff > 0 {
		return c.SellerMinDiff
	}
	return market.DefaultSellerMinDiff
}

// RunMarket runs the market until ctx ends. ready, when not nil, is called once the
// listeners are open.
func RunMarket(ctx context.Context, cfg MarketConfig, env Env, ready func(MarketReady)) error {
	params, err := networkParams(cfg.Network)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if cfg.Data == "" {
		return fmt.Errorf("%w: no --data directory given", ErrUsage)
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log, err := newLogger(env.Stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	// The pool's book, opened as the pool opens it; without one, a book of the
	// market's own in its data directory.
	book := PoolConfig{Data: cfg.PoolData, Postgres: cfg.Postgres}
	shared := book.Data != "" || book.Postgres != ""
	if !shared {
		book.Data = cfg.Data
	} else if book.Data != "" {
		// A mistyped directory would otherwise start a new, empty book that no payout
		// engine reads, while the log says sellers are paid.
		if _, err := os.Stat(filepath.Join(book.Data, "ledger.db")); err != nil {
			return fmt.Errorf("%w: --pool-data %s: no ledger.db there: give the data directory of a pool that runs with --payout-scheme (%v)", ErrUsage, book.Data, err)
		}
	}
	led, err := openLedger(ctx, book, log)
	if err != nil {
		return err
	}
	defer led.Close()
	// The market's state goes where its book is: in the pool's PostgreSQL, or in the
	// pool's ledger.db; a market on a book of its own keeps market.json in Data. A
	// market.json left in Data by an earlier run is imported into the database once.
	var store market.StateStore
	switch {
	case cfg.Postgres != "":
		if store, err = postgres.OpenMarketState(ctx, cfg.Postgres, log.With("component", "market-state")); err != nil {
			return err
		}
	case shared:
		if store, err = market.OpenSQLiteState(ctx, filepath.Join(book.Data, "ledger.db")); err != nil {
			return err
		}
	}
	if store != nil {
		defer store.Close()
	}
	m, err := market.New(market.Config{
		Network: params, Ledger: led, Store: store, StatePath: filepath.Join(cfg.Data, "market.json"),
		FeeBps: cfg.FeeBps, SellerShareInterval: cfg.SellerShareInterval, SellerStartDiff: cfg.SellerStartDiff,
		SellerMinDiff: cfg.SellerMinDiff, MaxSharesPerSellerJob: cfg.MaxSharesPerSellerJob, UpstreamInFlight: cfg.UpstreamInFlight,
		MaxUpstreamsPerOrder: cfg.MaxUpstreamsPerOrder, MinOrderBudget: cfg.MinOrderBudget, ContractPremiumBps: cfg.ContractPremiumBps, PriceDecreaseInterval: cfg.PriceDecreaseInterval, MaxPriceDecreaseBps: cfg.MaxPriceDecreaseBps,
		Limits: stratum.Limits{MaxConnsPerIP: cfg.MaxConnsPerIP, WriteTimeout: 2 * time.Second},
		Logger: log.With("component", "market"), Now: cfg.Now, AllowPrivateDestinations: cfg.AllowPrivateDestinations,
		SpeedBucket: cfg.SpeedBucket,
	})
	if err != nil {
		return err
	}
	// Compute leasing shares the market's book and accounts: tenants pay from their
	// market balance, providers are paid like sellers.
	cb, err := compute.New(compute.Config{Ledger: led, Accounts: m, Network: params, FeeBps: cfg.FeeBps, Interval: cfg.ComputeInterval,
		Logger: log.With("component", "compute"), Now: cfg.Now})
	if err != nil {
		return err
	}
	switch {
	case cfg.Postgres != "":
		log.Info("sellers are paid by the pool's payout engine", "book", "postgres", "state", "postgres")
	case shared:
		log.Info("sellers are paid by the pool's payout engine", "book", filepath.Join(cfg.PoolData, "ledger.db"), "state", filepath.Join(cfg.PoolData, "ledger.db"))
	default:
		log.Warn("sellers' earnings are NOT payable: the market keeps a book of its own, which no payout engine pays from; "+
			"give --pool-data (the pool's data directory) or --postgres to share the pool's book", "book", filepath.Join(cfg.Data, "ledger.db"))
	}
	sl, err := net.Listen("tcp", cfg.Stratum)
	if err != nil {
		return fmt.Errorf("stratum listen: %w", err)
	}
	al, err := net.Listen("tcp", cfg.API)
	if err != nil {
		sl.Close()
		return fmt.Errorf("api listen: %w", err)
	}
	var v2 *v2Port
	if cfg.StratumV2 != "" {
		if v2, err = startV2(cfg.StratumV2, cfg.Data, m.Server(), cfg.MaxConnsPerIP, log.With("component", "stratum-v2")); err != nil {
			sl.Close()
			al.Close()
			return err
		}
	}
	m.Start()
	cb.Start()
	defer cb.Close()
	apiCtx, stopAPI := context.WithCancel(context.Background())
	defer stopAPI()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := m.Serve(sl); err != nil {
			log.Error("stratum", "err", err)
		}
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), m.Collector(), cb.Collector())
	h := market.NewHandler(m, market.HTTPConfig{AdminToken: cfg.AdminToken, Logger: log.With("component", "api"), Compute: compute.NewHandler(cb),
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	wg.Go(func() {
		if err := market.Serve(apiCtx, al, h); err != nil {
			log.Error("api", "err", err)
		}
	})
	log.Info("market running", "network", params.Name, "stratum", sl.Addr().String(), "api", "http://"+al.Addr().String(), "deposits", cfg.AdminToken != "",
		"private_destinations", cfg.AllowPrivateDestinations)
	if ready != nil {
		v2Addr, v2URL := v2.fields()
		ready(MarketReady{Stratum: sl.Addr().String(), StratumV2: v2Addr, V2URL: v2URL, API: al.Addr().String(), Market: m, Ledger: led})
	}
	<-ctx.Done()
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	v2.shutdown(shutCtx)
	err = m.Shutdown(shutCtx)
	stopAPI()
	wg.Wait()
	return err
}

// runMarketAudit fetches an order's sample of delivered shares and re-hashes them.
// The order's buyer runs it with their API key (or the operator with the admin token).
func runMarketAudit(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("market audit", env)
	apiURL := fs.String("api", "http://127.0.0.1:8081", "market API base URL")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	keyFile := fs.String("key-file", "", "file holding the order's buyer API key or the admin token (or $"+envMarketAPIKey+")")
	const usage = "usage: hashgrid market audit ORDER [--api URL] [--key-file FILE] [--json]"
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: %s", ErrUsage, usage)
	}
	order := pos[0]
	getenv := env.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	key, err := secret("API key", "", "", *keyFile, "--key-file", getenv(envMarketAPIKey))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if key == "" {
		return fmt.Errorf("%w: an order's shares are shown to its buyer only: give --key-file or $%s (%s)", ErrUsage, envMarketAPIKey, usage)
	}
	u := strings.TrimRight(*apiURL, "/") + "/api/v1/orders/" + url.PathEscape(order) + "/shares"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%w: --api: %v", ErrUsage, err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if e, ok := hashgrid.ParseErrorReply(body); ok {
			msg = e.Message
		}
		return fmt.Errorf("audit: %s: %s", resp.Status, msg)
	}
	var samples []market.ShareSample
	if err := json.Unmarshal(body, &samples); err != nil {
		return fmt.Errorf("audit: shares: %w", err)
	}
	rep := market.Audit(samples)
	if *asJSON {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(env.Stdout, "%s\n", b)
	} else {
		fmt.Fprintf(env.Stdout, "order %s: %d shares sampled, %d re-hash and meet their difficulty\n", order, rep.Shares, rep.Valid)
		fmt.Fprintf(env.Stdout, "delivered work %.6g (difficulty units), %.6g hashes", rep.AcceptedWork, rep.Hashes)
		if rep.Speed > 0 {
			fmt.Fprintf(env.Stdout, ", %.6g H/s from %s to %s", rep.Speed, rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339))
		}
		fmt.Fprintln(env.Stdout)
		for _, p := range rep.Problems {
			fmt.Fprintf(env.Stdout, "  %s\n", p)
		}
	}
	if len(rep.Problems) > 0 {
		return errors.New("audit: some shares do not verify")
	}
	return nil
}

// parseInterspersed parses flags given before, between or after positional
// arguments, and returns the positional ones in order. A lone "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", ErrUsage, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at the first non-flag, or after "--", which it drops.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
