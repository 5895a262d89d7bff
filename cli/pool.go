package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/alert"
	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/postgres"
	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stream"
)

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

// PoolReady tells a caller (the demo, tests) where a started pool listens.
type PoolReady struct {
	Stratum      string   // host:port of the first Stratum port
	StratumPorts []string // host:port of every Stratum port, in the configuration's order
	API          string   // host:port
	StratumV2    string   // host:port of the Stratum V2 port; "" without --stratum-v2
	V2URL        string   // stratum2+tcp://HOST:PORT/AUTHORITY_KEY to give V2 miners
	Pool         *pool.Pool
	Store        hashgrid.ShareStore
}

// RunPool runs the pool until ctx ends. ready, when not nil, is called once the
// listeners are open.
func RunPool(ctx context.Context, cfg PoolConfig, env Env, ready func(PoolReady)) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	log, err := newFormatLogger(env.Stderr, cfg.LogLevel, cfg.LogFormat)
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

	base := &poolBase{cfg: cfg, env: env, log: log, params: params, reg: reg, metrics: metrics, clients: clients, nodes: nodes}
	switch cfg.Role {
	case RoleFrontEnd:
		return runFrontEnd(ctx, base, ready)
	case RoleAccounting:
		return runAccounting(ctx, base, ready)
	}
	store, err := openStore(ctx, cfg, log)
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
	// Rejected shares are sampled (stream.RejectSampling); Close writes the counts it
	// holds, and runs before the log closes.
	shares := stream.NewShareSink(shareLog, stream.RejectSampling{Logger: log.With("component", "rejects")})
	defer shares.Close()

	// With --postgres the alerts' outbox is in the same database as the books.
	var outbox alert.Outbox
	if cfg.Postgres != "" {
		ob, err := postgres.OpenAlertOutbox(ctx, cfg.Postgres, log)
		if err != nil {
			return err
		}
		outbox = ob
	}
	alerts, err := alert.Open(alert.Config{
		Outbox: outbox, Dir: cfg.Data, WebhookURL: cfg.AlertWebhook, Source: store, Node: nodes,
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
	mask, err := cfg.versionMask()
	if err != nil {
		return err
	}
	p, err := pool.New(pool.Config{
		Network:         params,
		Tag:             cfg.Tag,
		StartDiff:       cfg.StartDiff,
		MinDiff:         cfg.MinDiff,
		ShareInterval:   cfg.ShareInterval,
		Extranonce2Size: cfg.Extranonce2Size,
		VersionMask:     mask,
		Limits:          stratumLimits(cfg),
		Outputs:         outputs,
		Logger:          log.With("component", "pool"),
		Metrics:         metrics,
		OnBlock:         func() { alerts.Poke(); payouts.Notify() },
		// 'hashgrid registry anchor -coinbase' writes it to anchor the registry here.
		CommitmentFile: filepath.Join(cfg.Data, pool.CommitmentFileName),
	}, nodes, shares, store)
	if err != nil {
		return err
	}

	listeners, al, err := listenAll(cfg)
	if err != nil {
		return err
	}
	var v2 *v2Port
	if cfg.StratumV2 != "" {
		if v2, err = startV2(cfg.StratumV2, cfg.Data, p.Server(), cfg.MaxConnsPerIP, log.With("component", "stratum-v2")); err != nil {
			closeAll(listeners)
			al.Close()
			return err
		}
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
	wg.Go(func() { feedTemplates(runCtx, nodes, p, log) })
	tracker := &pool.Tracker{Chain: nodes, Store: store, Interval: cfg.TrackInterval, Logger: log.With("component", "tracker"),
		OnChange: func(hashgrid.Block, hashgrid.BlockStatus) { alerts.Poke(); payouts.Notify() }}
	wg.Go(func() { alerts.Run(runCtx) })
	wg.Go(func() { tracker.Run(runCtx) })
	wg.Go(func() { payouts.run(runCtx, log) })
	wg.Go(func() { runRetention(runCtx, cfg, store, payouts, log) })
	var addrs []string
	for _, l := range listeners {
		addrs = append(addrs, l.Addr().String())
		wg.Go(func() {
			if err := p.Serve(l); err != nil {
				log.Error("stratum", "err", err, "listen", l.Addr().String())
			}
		})
	}
	wg.Go(func() {
		if err := apiSrv.Serve(al); err != nil {
			log.Error("api", "err", err)
		}
	})
	for i, l := range listeners {
		log.Info("stratum listening", "listen", addrs[i], "tls", l.tls, "start_difficulty", l.startDiff)
	}
	log.Info("pool running", "network", params.Name, "stratum", addrs[0], "api", "http://"+al.Addr().String(), "nodes", len(clients))
	if ready != nil {
		v2Addr, v2URL := v2.fields()
		ready(PoolReady{Stratum: addrs[0], StratumPorts: addrs, StratumV2: v2Addr, V2URL: v2URL, API: al.Addr().String(), Pool: p, Store: store})
	}

	<-ctx.Done()
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	v2.shutdown(shutCtx)
	p.Shutdown(shutCtx)
	shares.Close() // its last counts, for the consumer to store below
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

// stratumListener is one open Stratum port.
type stratumListener struct {
	net.Listener
	tls       bool
	startDiff float64
}

// listenStratum opens every Stratum port of cfg: TLS ports with the operator's
// certificate, and ports with a start difficulty of their own marked so that the pool
// starts their connections there.
func listenStratum(cfg PoolConfig) ([]stratumListener, error) {
	ports, err := cfg.Ports()
	if err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	var out []stratumListener
	for _, p := range ports {
		if p.TLS && tlsConfig == nil {
			cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
			if err != nil {
				closeAll(out)
				return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
			}
			tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
		l, err := net.Listen("tcp", p.Listen)
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("stratum listen: %w", err)
		}
		if p.TLS {
			l = tls.NewListener(l, tlsConfig)
		}
		out = append(out, stratumListener{Listener: stratum.WithStartDifficulty(l, p.StartDiff), tls: p.TLS, startDiff: p.StartDiff})
	}
	return out, nil
}

// listenAll opens the Stratum ports and the HTTP port of cfg.
func listenAll(cfg PoolConfig) ([]stratumListener, net.Listener, error) {
	listeners, err := listenStratum(cfg)
	if err != nil {
		return nil, nil, err
	}
	al, err := net.Listen("tcp", cfg.API)
	if err != nil {
		closeAll(listeners)
		return nil, nil, fmt.Errorf("api listen: %w", err)
	}
	return listeners, al, nil
}

// feedTemplates hands the nodes' templates to the pool until ctx ends.
func feedTemplates(ctx context.Context, nodes *node.Set, p *pool.Pool, log *slog.Logger) {
	nodes.Watch(ctx, func(t *node.Template, newTip bool) {
		if err := p.UpdateTemplate(t, newTip); err != nil {
			log.Error("template refused", "err", err, "height", t.Height)
		}
	})
}

func closeAll(ls []stratumListener) {
	for _, l := range ls {
		l.Close()
	}
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
