package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/alert"
	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/sqlite"
	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stream"
)

// PoolConfig is the configuration of `hashgrid pool`, from flags or a TOML file.
type PoolConfig struct {
	Nodes         []string      `toml:"nodes"` // http://USER:PASS@HOST:PORT; several = failover
	ZMQ           []string      `toml:"zmq"`   // tcp://HOST:PORT of Bitcoin Core's zmqpubhashblock
	Network       string        `toml:"network"`
	PayoutAddress string        `toml:"payout_address"`
	Stratum       string        `toml:"stratum"`
	API           string        `toml:"api"`
	Data          string        `toml:"data"`
	Tag           string        `toml:"tag"`
	StartDiff     float64       `toml:"start_difficulty"`
	MinDiff       float64       `toml:"min_difficulty"`
	ShareInterval time.Duration `toml:"share_interval"`
	PollInterval  time.Duration `toml:"poll_interval"`
	TrackInterval time.Duration `toml:"track_interval"` // how often found blocks are checked on the node
	MaxConnsPerIP int           `toml:"max_conns_per_ip"`
	LogLevel      string        `toml:"log_level"`

	// Alerts (see package alert): a webhook, and the thresholds.
	AlertWebhook     string        `toml:"alert_webhook"`
	AlertWorkerQuiet time.Duration `toml:"alert_worker_quiet"`
	AlertRejectRate  float64       `toml:"alert_reject_rate"`
	AlertInterval    time.Duration `toml:"alert_interval"` // between alert checks; default 10s
	// AdminToken enables the API's admin actions (ban, kick, settings). Prefer the
	// HASHGRID_ADMIN_TOKEN environment variable: flags show in process listings.
	AdminToken string `toml:"admin_token"`

	// Payouts (package payout; cli/payout.go). An empty scheme keeps the old behaviour:
	// the whole coinbase pays --payout-address and no books are kept.
	PayoutScheme      string        `toml:"payout_scheme"`      // pplns, pps, fpps or solo
	PPLNSWindow       float64       `toml:"pplns_window"`       // N, as a multiple of network difficulty
	PoolFeeBps        int64         `toml:"pool_fee_bps"`       // pool fee in basis points
	CoinbaseThreshold int64         `toml:"coinbase_threshold"` // sat: PPLNS credits paid in the coinbase
	PayoutThreshold   int64         `toml:"payout_threshold"`   // sat: balances paid by a payout batch
	PayoutInterval    time.Duration `toml:"payout_interval"`
	PPSFunding        int64         `toml:"pps_funding"` // sat the operator backs PPS/FPPS with
	Wallet            string        `toml:"wallet"`      // Bitcoin Core wallet RPC for sendmany
}

// networkParams maps --network to btcd's parameters.
func networkParams(name string) (*chaincfg.Params, error) {
	switch name {
	case "mainnet", "main":
		return &chaincfg.MainNetParams, nil
	case "testnet", "testnet3", "test":
		return &chaincfg.TestNet3Params, nil
	case "signet":
		return &chaincfg.SigNetParams, nil
	case "regtest":
		return &chaincfg.RegressionNetParams, nil
	}
	return nil, fmt.Errorf("unknown network %q (want regtest, signet, testnet or mainnet)", name)
}

// Validate checks the configuration before anything starts.
func (c *PoolConfig) Validate() error {
	if len(c.Nodes) == 0 {
		return errors.New("no --node given")
	}
	params, err := networkParams(c.Network)
	if err != nil {
		return err
	}
	if c.PayoutAddress == "" {
		return errors.New("no --payout-address given")
	}
	if _, err := pool.AddressScript(c.PayoutAddress, params); err != nil {
		return fmt.Errorf("--payout-address: %s", hashgrid.ErrorMessage(err))
	}
	if c.Data == "" {
		return errors.New("no --data directory given")
	}
	if err := c.alertSettings().Validate(); err != nil {
		return fmt.Errorf("--alert-*: %s", strings.TrimPrefix(err.Error(), "alert: "))
	}
	if c.AlertWebhook != "" && !strings.HasPrefix(c.AlertWebhook, "http://") && !strings.HasPrefix(c.AlertWebhook, "https://") {
		return errors.New("--alert-webhook must be an http:// or https:// URL")
	}
	if err := c.validatePayouts(params); err != nil {
		return err
	}
	return nil
}

func (c *PoolConfig) alertSettings() alert.Settings {
	return alert.Settings{WorkerQuiet: c.AlertWorkerQuiet, RejectRate: c.AlertRejectRate}
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func poolCommand() *Command {
	return &Command{
		Name:  "pool",
		Short: "run a Stratum V1 mining pool on a bitcoind or btcd node",
		Run: func(ctx context.Context, args []string, env Env) error {
			cfg, err := parsePoolFlags(args, env)
			if err != nil {
				return err
			}
			return RunPool(ctx, cfg, env, nil)
		},
	}
}

func parsePoolFlags(args []string, env Env) (PoolConfig, error) {
	fs := newFlagSet("pool", env)
	cfg := PoolConfig{Network: "mainnet", Stratum: ":3333", API: ":8080", Data: "data", LogLevel: "info", Tag: "/hashgrid/"}
	var nodes, zmq stringList
	configFile := fs.String("config", "", "TOML file with the same settings (flags given override it)")
	fs.Var(&nodes, "node", "node RPC URL http://USER:PASS@HOST:PORT (repeat for failover)")
	fs.Var(&zmq, "zmq", "Bitcoin Core zmqpubhashblock endpoint tcp://HOST:PORT (repeatable)")
	fs.StringVar(&cfg.Network, "network", cfg.Network, "regtest, signet, testnet or mainnet")
	fs.StringVar(&cfg.PayoutAddress, "payout-address", "", "address the coinbase pays")
	fs.StringVar(&cfg.Stratum, "stratum", cfg.Stratum, "Stratum listen address")
	fs.StringVar(&cfg.API, "api", cfg.API, "HTTP listen address")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "data directory (share stream and database)")
	fs.StringVar(&cfg.Tag, "tag", cfg.Tag, "text written into every coinbase")
	fs.Float64Var(&cfg.StartDiff, "start-difficulty", 0, "first difficulty of a connection (default 0.001)")
	fs.Float64Var(&cfg.MinDiff, "min-difficulty", 0, "lowest vardiff difficulty (default 1e-6)")
	fs.DurationVar(&cfg.ShareInterval, "share-interval", 0, "vardiff target time between shares (default 5s)")
	fs.DurationVar(&cfg.PollInterval, "poll-interval", 0, "how often to poll the node for a new tip (default from node package)")
	fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", 0, "connections allowed from one IP (default 2048)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.PayoutScheme, "payout-scheme", "", "pplns, pps, fpps or solo (empty: the coinbase pays --payout-address, no books)")
	fs.Float64Var(&cfg.PPLNSWindow, "pplns-window", defaultPPLNSWindow, "PPLNS window N as a multiple of network difficulty")
	fs.Int64Var(&cfg.PoolFeeBps, "pool-fee-bps", 0, "pool fee in basis points (100 = 1%)")
	fs.Int64Var(&cfg.CoinbaseThreshold, "coinbase-threshold", defaultCoinbaseThreshold, "PPLNS credits of at least this many sat are paid by the block's coinbase (0: none)")
	fs.Int64Var(&cfg.PayoutThreshold, "payout-threshold", defaultPayoutThreshold, "balances of at least this many sat are paid out")
	fs.DurationVar(&cfg.PayoutInterval, "payout-interval", defaultPayoutInterval, "how often balances are paid out")
	fs.Int64Var(&cfg.PPSFunding, "pps-funding", 0, "sat the operator backs PPS/FPPS credits with, beyond the blocks found")
	fs.StringVar(&cfg.Wallet, "wallet", "", "Bitcoin Core wallet RPC URL for sendmany (default: export payout batches to DATA/payouts)")
	fs.StringVar(&cfg.AlertWebhook, "alert-webhook", "", "URL alerts are POSTed to as JSON (they are logged either way)")
	fs.DurationVar(&cfg.AlertWorkerQuiet, "alert-worker-quiet", 0, "alert when a worker sends no share for this long (0: never)")
	fs.Float64Var(&cfg.AlertRejectRate, "alert-reject-rate", 0, "alert when the reject rate over 10 minutes is above this fraction (0: never)")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "token for the API's admin actions (default $HASHGRID_ADMIN_TOKEN; empty disables them)")
	if err := parseFlags(fs, args); err != nil {
		return cfg, err
	}
	if *configFile != "" {
		var fileCfg PoolConfig
		md, err := toml.DecodeFile(*configFile, &fileCfg)
		if err != nil {
			return cfg, fmt.Errorf("config %s: %w", *configFile, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			return cfg, fmt.Errorf("config %s: unknown setting %q", *configFile, und[0].String())
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		merged := fileCfg
		override := func(name string, apply func()) {
			if set[name] {
				apply()
			}
		}
		override("network", func() { merged.Network = cfg.Network })
		override("payout-address", func() { merged.PayoutAddress = cfg.PayoutAddress })
		override("stratum", func() { merged.Stratum = cfg.Stratum })
		override("api", func() { merged.API = cfg.API })
		override("data", func() { merged.Data = cfg.Data })
		override("tag", func() { merged.Tag = cfg.Tag })
		override("start-difficulty", func() { merged.StartDiff = cfg.StartDiff })
		override("min-difficulty", func() { merged.MinDiff = cfg.MinDiff })
		override("share-interval", func() { merged.ShareInterval = cfg.ShareInterval })
		override("poll-interval", func() { merged.PollInterval = cfg.PollInterval })
		override("max-conns-per-ip", func() { merged.MaxConnsPerIP = cfg.MaxConnsPerIP })
		override("log-level", func() { merged.LogLevel = cfg.LogLevel })
		override("payout-scheme", func() { merged.PayoutScheme = cfg.PayoutScheme })
		override("pplns-window", func() { merged.PPLNSWindow = cfg.PPLNSWindow })
		override("pool-fee-bps", func() { merged.PoolFeeBps = cfg.PoolFeeBps })
		override("coinbase-threshold", func() { merged.CoinbaseThreshold = cfg.CoinbaseThreshold })
		override("payout-threshold", func() { merged.PayoutThreshold = cfg.PayoutThreshold })
		override("payout-interval", func() { merged.PayoutInterval = cfg.PayoutInterval })
		override("pps-funding", func() { merged.PPSFunding = cfg.PPSFunding })
		override("wallet", func() { merged.Wallet = cfg.Wallet })
		override("alert-webhook", func() { merged.AlertWebhook = cfg.AlertWebhook })
		override("alert-worker-quiet", func() { merged.AlertWorkerQuiet = cfg.AlertWorkerQuiet })
		override("alert-reject-rate", func() { merged.AlertRejectRate = cfg.AlertRejectRate })
		override("admin-token", func() { merged.AdminToken = cfg.AdminToken })
		if merged.AdminToken == "" && env.Getenv != nil {
			merged.AdminToken = env.Getenv("HASHGRID_ADMIN_TOKEN")
		}
		for k, def := range map[*string]string{&merged.Network: "mainnet", &merged.Stratum: ":3333", &merged.API: ":8080", &merged.Data: "data", &merged.LogLevel: "info"} {
			if *k == "" {
				*k = def
			}
		}
		if len(nodes) > 0 {
			merged.Nodes = nodes
		}
		if len(zmq) > 0 {
			merged.ZMQ = zmq
		}
		return merged, nil
	}
	cfg.Nodes, cfg.ZMQ = nodes, zmq
	if cfg.AdminToken == "" && env.Getenv != nil {
		cfg.AdminToken = env.Getenv("HASHGRID_ADMIN_TOKEN")
	}
	return cfg, nil
}

func newLogger(w interface{ Write([]byte) (int, error) }, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// PoolReady tells a caller (the demo, tests) where a started pool listens.
type PoolReady struct {
	Stratum string // host:port
	API     string // host:port
	Pool    *pool.Pool
	Store   hashgrid.ShareStore
}

// RunPool runs the pool until ctx ends. ready, when not nil, is called once the
// listeners are open.
func RunPool(ctx context.Context, cfg PoolConfig, env Env, ready func(PoolReady)) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	log, err := newLogger(env.Stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	params, _ := networkParams(cfg.Network)
	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := pool.NewMetrics(reg)
	rpcDur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "hashgrid_node_rpc_seconds", Help: "Node RPC latency by method.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"method"})
	rpcErr := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hashgrid_node_rpc_errors_total", Help: "Node RPC errors by method.",
	}, []string{"method"})
	reg.MustRegister(rpcDur, rpcErr)
	observe := func(method string, d time.Duration, err error) {
		rpcDur.WithLabelValues(method).Observe(d.Seconds())
		if err != nil {
			rpcErr.WithLabelValues(method).Inc()
		}
	}

	var clients []*node.Client
	for _, u := range cfg.Nodes {
		c, err := node.NewClient(u, node.WithObserver(observe))
		if err != nil {
			return fmt.Errorf("--node: %w", err)
		}
		clients = append(clients, c)
	}
	nodes, err := node.NewSet(clients, node.SetOptions{Logger: log.With("component", "node"), ZMQ: cfg.ZMQ, PollInterval: cfg.PollInterval})
	if err != nil {
		return err
	}
	if err := nodes.CheckNetwork(ctx, params.Name); err != nil {
		return err
	}

	store, err := sqlite.Open(filepath.Join(cfg.Data, "hashgrid.db"))
	if err != nil {
		return err
	}
	defer store.Close()
	last, err := store.LastSeq(ctx)
	if err != nil {
		return err
	}
	shareLog, err := stream.Open(filepath.Join(cfg.Data, "shares"), stream.Options{FirstSeq: last + 1, Logger: log.With("component", "stream")})
	if err != nil {
		return err
	}
	defer shareLog.Close()

	alerts, err := alert.Open(alert.Config{
		Dir: cfg.Data, WebhookURL: cfg.AlertWebhook, Source: store, Node: nodes,
		Settings: cfg.alertSettings(), Interval: cfg.AlertInterval, Logger: log.With("component", "alert"),
	})
	if err != nil {
		return err
	}
	defer alerts.Close()

	outputs, err := pool.SingleAddress(cfg.PayoutAddress, params)
	if err != nil {
		return err
	}
	payouts, err := openPayouts(cfg, params, store, clients, log)
	if err != nil {
		return err
	}
	defer payouts.Close()
	if payouts != nil {
		outputs = payouts.Outputs
	}
	p, err := pool.New(pool.Config{
		Network:       params,
		Tag:           cfg.Tag,
		StartDiff:     cfg.StartDiff,
		MinDiff:       cfg.MinDiff,
		ShareInterval: cfg.ShareInterval,
		Limits:        stratumLimits(cfg),
		Outputs:       outputs,
		Logger:        log.With("component", "pool"),
		Metrics:       metrics,
		OnBlock:       func() { alerts.Poke(); payouts.Notify() },
	}, nodes, stream.ShareSink{S: shareLog}, store)
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
	apiSrv := api.New(api.Config{
		Store: store, Pool: p, Node: nodes, Network: params.Name,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Logger: log.With("component", "api"),
		Dashboard: api.DashboardConfig{Sessions: p, Kicker: p, Banner: p.Server(), Alerts: alerts, AdminToken: cfg.AdminToken},
		Payouts:   payouts.api(),
	})

	// Every goroutine below is owned here and waited for before the store closes.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	tailCtx, stopTail := context.WithCancel(context.Background())
	defer stopTail()
	wg.Go(func() {
		err := stream.Tailer{Logger: log.With("component", "tail")}.Run(tailCtx, shareLog, last, pruneAfter(shareLog, stream.StoreShares(tailCtx, store), time.Minute, log))
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, stream.ErrClosed) {
			log.Error("share stream consumer stopped", "err", err)
		}
	})
	wg.Go(func() {
		nodes.Watch(runCtx, func(t *node.Template, newTip bool) {
			if err := p.UpdateTemplate(t, newTip); err != nil {
				log.Error("template refused", "err", err, "height", t.Height)
			}
		})
	})
	tracker := &pool.Tracker{Chain: nodes, Store: store, Interval: cfg.TrackInterval, Logger: log.With("component", "tracker"),
		OnChange: func(hashgrid.Block, hashgrid.BlockStatus) { alerts.Poke(); payouts.Notify() }}
	wg.Go(func() { alerts.Run(runCtx) })
	wg.Go(func() { tracker.Run(runCtx) })
	wg.Go(func() { payouts.run(runCtx, log) })
	wg.Go(func() {
		if err := p.Serve(sl); err != nil {
			log.Error("stratum", "err", err)
		}
	})
	wg.Go(func() {
		if err := apiSrv.Serve(al); err != nil {
			log.Error("api", "err", err)
		}
	})
	log.Info("pool running", "network", params.Name, "stratum", sl.Addr().String(), "api", "http://"+al.Addr().String(), "nodes", len(clients))
	if ready != nil {
		ready(PoolReady{Stratum: sl.Addr().String(), API: al.Addr().String(), Pool: p, Store: store})
	}

	<-ctx.Done()
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	p.Shutdown(shutCtx)
	apiSrv.Shutdown(shutCtx)
	stop()
	// Let the consumer catch up with every acknowledged share before closing.
	for shutCtx.Err() == nil {
		if s, err := store.LastSeq(shutCtx); err != nil || s >= shareLog.LastSeq() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopTail()
	wg.Wait()
	return nil
}

func stratumLimits(cfg PoolConfig) stratum.Limits {
	return stratum.Limits{MaxConnsPerIP: cfg.MaxConnsPerIP}
}

// pruneAfter wraps the store consumer: once a batch is stored, segments holding only
// stored records are removed, at most once per interval. The store is the stream's
// only consumer; a consumer added later must hold pruning back to what it has read.
func pruneAfter(l *stream.Log, store func([]stream.Record) error, every time.Duration, log *slog.Logger) func([]stream.Record) error {
	var last time.Time
	return func(recs []stream.Record) error {
		if err := store(recs); err != nil {
			return err
		}
		if len(recs) > 0 && time.Since(last) >= every {
			last = time.Now()
			if _, err := l.Prune(recs[len(recs)-1].Seq + 1); err != nil {
				log.Warn("prune share stream", "err", err)
			}
		}
		return nil
	}
}
