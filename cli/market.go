package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/market"
	"github.com/hashgrid/hashgrid/stratum"
)

// MarketConfig is the configuration of `hashgrid market`.
type MarketConfig struct {
	Stratum             string
	API                 string
	Data                string
	Network             string
	FeeBps              int64
	SellerShareInterval time.Duration
	SellerStartDiff     float64
	MaxConnsPerIP       int
	LogLevel            string
	// AdminToken authorizes deposits; from HASHGRID_MARKET_ADMIN_TOKEN, never a flag
	// (flags show in process listings).
	AdminToken string
	Now        func() time.Time
}

// MarketReady tells a caller where a started market listens.
type MarketReady struct {
	Stratum string
	API     string
	Market  *market.Market
	Ledger  *ledger.Ledger
}

func marketCommand() *Command {
	return &Command{
		Name:  "market",
		Short: "run the hashrate market, or audit an order's delivered shares",
		Run: func(ctx context.Context, args []string, env Env) error {
			if len(args) > 0 && args[0] == "audit" {
				return runMarketAudit(ctx, args[1:], env)
			}
			fs := newFlagSet("market", env)
			cfg := MarketConfig{Network: "mainnet", LogLevel: "info"}
			fs.StringVar(&cfg.Stratum, "stratum", ":3334", "Stratum listen address for sellers")
			fs.StringVar(&cfg.API, "api", ":8081", "HTTP API listen address")
			fs.StringVar(&cfg.Data, "data", "market-data", "data directory (ledger and state)")
			fs.StringVar(&cfg.Network, "network", cfg.Network, "network of sellers' payout addresses: regtest, signet, testnet or mainnet")
			fs.Int64Var(&cfg.FeeBps, "fee-bps", 200, "market fee in basis points of what buyers pay")
			fs.DurationVar(&cfg.SellerShareInterval, "seller-share-interval", 0, "seller vardiff target time between shares (default 5s)")
			fs.Float64Var(&cfg.SellerStartDiff, "seller-start-difficulty", 0, "first difficulty of a seller (default 0.001)")
			fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", 0, "seller connections allowed from one IP (default 2048)")
			fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			if env.Getenv != nil {
				cfg.AdminToken = env.Getenv("HASHGRID_MARKET_ADMIN_TOKEN")
			}
			return RunMarket(ctx, cfg, env, nil)
		},
	}
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
	log, err := newLogger(env.Stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	led, err := ledger.Open(filepath.Join(cfg.Data, "ledger.db"), cfg.Now)
	if err != nil {
		return err
	}
	defer led.Close()
	m, err := market.New(market.Config{
		Network: params, Ledger: led, StatePath: filepath.Join(cfg.Data, "market.json"),
		FeeBps: cfg.FeeBps, SellerShareInterval: cfg.SellerShareInterval, SellerStartDiff: cfg.SellerStartDiff,
		Limits: stratum.Limits{MaxConnsPerIP: cfg.MaxConnsPerIP, WriteTimeout: 2 * time.Second},
		Logger: log.With("component", "market"), Now: cfg.Now,
	})
	if err != nil {
		return err
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
	m.Start()
	apiCtx, stopAPI := context.WithCancel(context.Background())
	defer stopAPI()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := m.Serve(sl); err != nil {
			log.Error("stratum", "err", err)
		}
	})
	h := market.NewHandler(m, market.HTTPConfig{AdminToken: cfg.AdminToken, Logger: log.With("component", "api")})
	wg.Go(func() {
		if err := market.Serve(apiCtx, al, h); err != nil {
			log.Error("api", "err", err)
		}
	})
	log.Info("market running", "network", params.Name, "stratum", sl.Addr().String(), "api", "http://"+al.Addr().String(), "deposits", cfg.AdminToken != "")
	if ready != nil {
		ready(MarketReady{Stratum: sl.Addr().String(), API: al.Addr().String(), Market: m, Ledger: led})
	}
	<-ctx.Done()
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = m.Shutdown(shutCtx)
	stopAPI()
	wg.Wait()
	return err
}

// runMarketAudit fetches an order's sample of delivered shares and re-hashes them.
func runMarketAudit(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("market audit", env)
	apiURL := fs.String("api", "http://127.0.0.1:8081", "market API base URL")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	var order string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		order, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if order == "" {
		return fmt.Errorf("%w: usage: hashgrid market audit ORDER [--api URL]", ErrUsage)
	}
	u := strings.TrimRight(*apiURL, "/") + "/api/v1/orders/" + url.PathEscape(order) + "/shares"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%w: --api: %v", ErrUsage, err)
	}
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
