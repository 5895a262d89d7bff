package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/alert"
	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/cluster"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/natsstream"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/postgres"
	"github.com/hashgrid/hashgrid/sqlite"
	"github.com/hashgrid/hashgrid/stream"
)

// Roles of `hashgrid pool`.
const (
	RoleAll        = "all"
	RoleFrontEnd   = "frontend"
	RoleAccounting = "accounting"
)

// defaultNATSMaxAge is how long the share stream keeps shares unless told otherwise: a
// week for the accounting processes to be down without losing any, a bounded disk.
const defaultNATSMaxAge = 7 * 24 * time.Hour

// maxFrontEnds bounds --frontend: the front-end number is part of every extranonce1
// and job id the front-end hands out (pool.Config.FrontEnd).
const maxFrontEnds = pool.MaxFrontEnds

func (c *PoolConfig) validateCluster() error {
	// A configuration built literally (tests, the demo) leaves these unset.
	if c.Role == "" {
		c.Role = RoleAll
	}
	if c.NATSReplicas == 0 {
		c.NATSReplicas = 1
	}
	if c.Ack == "" {
		c.Ack = "replicated"
	}
	switch c.Role {
	case RoleAll:
		if len(c.NATS) > 0 {
			return errors.New("--nats is for --role frontend and accounting; a one-process pool keeps its share stream on disk")
		}
		if c.FrontEnd != 0 {
			return errors.New("--frontend is for --role frontend")
		}
	case RoleFrontEnd:
		if len(c.NATS) == 0 {
			return errors.New("--role frontend needs --nats")
		}
		if c.FrontEnd < 1 || c.FrontEnd > maxFrontEnds {
			return fmt.Errorf("--role frontend needs --frontend, a number from 1 to %d unique in the pool", maxFrontEnds)
		}
		if c.Postgres != "" {
			return errors.New("--postgres is for --role accounting (a front-end keeps no books)")
		}
	case RoleAccounting:
		if len(c.NATS) == 0 || c.Postgres == "" {
			return errors.New("--role accounting needs --nats and --postgres")
		}
		if c.FrontEnd != 0 {
			return errors.New("--frontend is for --role frontend")
		}
	default:
		return fmt.Errorf("--role %q: want all, frontend or accounting", c.Role)
	}
	for _, u := range c.NATS {
		if !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			return fmt.Errorf("--nats %q: want nats://HOST:PORT", u)
		}
	}
	if c.NATSMaxAge < 0 || (c.Role != RoleAll && c.NATSMaxAge > 0 && c.NATSMaxAge < time.Hour) {
		return fmt.Errorf("--nats-max-age %s: want at least 1h (0: keep shares for ever)", c.NATSMaxAge)
	}
	if c.NATSReplicas != 1 && c.NATSReplicas != 3 {
		return fmt.Errorf("--nats-replicas %d: want 1 or 3", c.NATSReplicas)
	}
	if _, err := natsstream.ParseAckMode(c.Ack); err != nil {
		return fmt.Errorf("--ack %q: want replicated or local", c.Ack)
	}
	if c.Postgres != "" && !strings.HasPrefix(c.Postgres, "postgres://") && !strings.HasPrefix(c.Postgres, "postgresql://") {
		return errors.New("--postgres: want a postgres://USER@HOST:PORT/DB URL")
	}
	return nil
}

// poolBase is what every role starts from: configuration, logger, metrics, nodes.
type poolBase struct {
	cfg     PoolConfig
	env     Env
	log     *slog.Logger
	params  *chaincfg.Params
	reg     *prometheus.Registry
	metrics *pool.Metrics
	clients []*node.Client
	nodes   *node.Set
}

func (b *poolBase) metricsHandler() http.Handler {
	return promhttp.HandlerFor(b.reg, promhttp.HandlerOpts{})
}

// books are the store and, with a payout scheme, the ledger, in SQLite files of the
// data directory or in PostgreSQL.
func openStore(ctx context.Context, cfg PoolConfig, log *slog.Logger) (hashgrid.ShareStore, error) {
	if cfg.Postgres != "" {
		return postgres.Open(ctx, cfg.Postgres, log.With("component", "postgres"))
	}
	return sqlite.Open(filepath.Join(cfg.Data, "hashgrid.db"))
}

func openLedger(ctx context.Context, cfg PoolConfig, log *slog.Logger) (ledger.Book, error) {
	if cfg.Postgres != "" {
		return postgres.OpenLedger(ctx, cfg.Postgres, nil, log.With("component", "ledger"))
	}
	return ledger.Open(filepath.Join(cfg.Data, "ledger.db"), nil)
}

// connectNATS connects to the JetStream servers, reconnecting for ever.
func connectNATS(cfg PoolConfig, name string, log *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(strings.Join(cfg.NATS, ","),
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "server", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return nil, fmt.Errorf("--nats: %w", err)
	}
	return nc, nil
}

// frontEndName is the front-end's name in NATS subjects and message ids.
func frontEndName(n int) string { return fmt.Sprintf("fe%d", n) }

// runFrontEnd serves Stratum and publishes every share and found block to JetStream.
// It keeps no books: its HTTP port serves /metrics and /healthz only.
func runFrontEnd(ctx context.Context, b *poolBase, ready func(PoolReady)) error {
	cfg, log := b.cfg, b.log
	name := frontEndName(cfg.FrontEnd)
	nc, err := connectNATS(cfg, "hashgrid "+name, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	ack, _ := natsstream.ParseAckMode(cfg.Ack)
	opts := natsstream.Options{FrontEnd: name, Replicas: cfg.NATSReplicas, MaxAge: cfg.NATSMaxAge, Logger: log.With("component", "natsstream")}

	// The share stream: straight to JetStream, or through a local log and a shipper.
	var src stream.Stream
	var shipped func() error // waits for the shipper at shutdown
	switch ack {
	case natsstream.AckReplicated:
		ns, err := natsstream.Open(ctx, nc, opts)
		if err != nil {
			return err
		}
		defer ns.Close()
		src = ns
	case natsstream.AckLocal:
		l, err := stream.Open(filepath.Join(cfg.Data, "shares"), stream.Options{Logger: log.With("component", "stream")})
		if err != nil {
			return err
		}
		defer l.Close()
		sh, err := natsstream.NewShipper(ctx, nc, l, filepath.Join(cfg.Data, "shipped.json"), opts)
		if err != nil {
			return err
		}
		shipCtx, stopShip := context.WithCancel(context.Background())
		defer stopShip()
		done := make(chan error, 1)
		go func() { done <- sh.Run(shipCtx) }()
		shipped = func() error {
			// Ship what the miners were told was accepted before stopping.
			deadline := time.Now().Add(10 * time.Second)
			for sh.Shipped() < l.LastSeq() && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			stopShip()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		}
		src = l
	}
	shares := stream.NewShareSink(src, stream.RejectSampling{Logger: log.With("component", "rejects")})
	defer shares.Close()
	blocks, err := cluster.OpenBlockSink(ctx, nc, name, cfg.NATSReplicas, log.With("component", "blocks"))
	if err != nil {
		return err
	}
	defer blocks.Close()

	outputs, stopOutputs, err := frontEndOutputs(ctx, b, nc)
	if err != nil {
		return err
	}
	defer stopOutputs()
	mask, err := cfg.versionMask()
	if err != nil {
		return err
	}
	p, err := pool.New(pool.Config{
		Network: b.params, Tag: cfg.Tag, StartDiff: cfg.StartDiff, MinDiff: cfg.MinDiff,
		ShareInterval: cfg.ShareInterval, Extranonce2Size: cfg.Extranonce2Size, VersionMask: mask, Limits: stratumLimits(cfg), Outputs: outputs,
		Logger: log.With("component", "pool"), Metrics: b.metrics, FrontEnd: cfg.FrontEnd,
	}, b.nodes, shares, blocks)
	if err != nil {
		return err
	}
	listeners, al, err := listenAll(cfg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", b.metricsHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !nc.IsConnected() {
			http.Error(w, "nats: not connected", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { feedTemplates(runCtx, b.nodes, p, log) })
	wg.Go(func() {
		if err := cluster.PublishStats(runCtx, nc, cfg.NATSReplicas, name, p.Stats, log); err != nil {
			log.Error("front-end status", "err", err)
		}
	})
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
		if err := hs.Serve(al); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http", "err", err)
		}
	})
	log.Info("front-end running", "frontend", name, "network", b.params.Name, "stratum", addrs[0], "http", "http://"+al.Addr().String(), "ack", ack.String(), "replicas", cfg.NATSReplicas)
	if ready != nil {
		ready(PoolReady{Stratum: addrs[0], StratumPorts: addrs, API: al.Addr().String(), Pool: p})
	}
	<-ctx.Done()
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	p.Shutdown(shutCtx)
	shares.Close()
	hs.Shutdown(shutCtx)
	stop()
	wg.Wait()
	if shipped != nil {
		if err := shipped(); err != nil {
			log.Error("shipper", "err", err)
		}
	}
	return nil
}

// frontEndOutputs is a front-end's coinbase layout. Under SOLO, PPS and FPPS it needs
// nothing from the books; under PPLNS it follows the layout the accounting leader
// publishes (cluster.Layouts), which carries the window's commitment.
func frontEndOutputs(ctx context.Context, b *poolBase, nc *nats.Conn) (pool.OutputFunc, func(), error) {
	cfg := b.cfg
	noop := func() {}
	single, err := pool.SingleAddress(cfg.PayoutAddress, b.params)
	if err != nil {
		return nil, noop, err
	}
	switch cfg.PayoutScheme {
	case "", "pps", "fpps":
		return single, noop, nil
	case "solo":
		pc, err := cfg.payoutConfig(b.params)
		if err != nil {
			return nil, noop, err
		}
		return payout.SoloOutputs(pc), noop, nil
	}
	pc, err := cfg.payoutConfig(b.params)
	if err != nil {
		return nil, noop, err
	}
	lctx, stop := context.WithCancel(ctx)
	lay, err := cluster.FollowLayout(lctx, nc, cfg.NATSReplicas, b.log.With("component", "layout"))
	if err != nil {
		stop()
		return nil, noop, err
	}
	return payout.LayoutOutputs(pc, lay.Current), stop, nil
}

// swapHandler serves the handler last stored: the standby page until this process
// leads, then the API.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }
func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// errLeadershipLost ends an accounting process that lost its lock's session: a
// supervisor (systemd) starts it again, and it waits its turn.
var errLeadershipLost = errors.New("accounting: leadership lost (the database session holding the lock failed)")

// runAccounting waits for the accounting lock, then copies the share and block
// streams into PostgreSQL, tracks blocks, pays and serves the API until ctx ends.
// While another process leads, its HTTP port answers /healthz with 503 "standby" and
// serves /metrics.
func runAccounting(ctx context.Context, b *poolBase, ready func(PoolReady)) error {
	cfg, log := b.cfg, b.log
	nc, err := connectNATS(cfg, "hashgrid accounting", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	al, err := net.Listen("tcp", cfg.API)
	if err != nil {
		return fmt.Errorf("api listen: %w", err)
	}
	var handler swapHandler
	standby := http.NewServeMux()
	standby.Handle("GET /metrics", b.metricsHandler())
	standby.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "standby: another accounting process leads", http.StatusServiceUnavailable)
	})
	handler.set(standby)
	hs := &http.Server{Handler: &handler, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(al)
	defer hs.Close()

	leader, err := postgres.Lead(ctx, cfg.Postgres, RoleAccounting, log.With("component", "leader"), nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer leader.Close()
	log.Info("leading accounting")
	lctx, stopLeading := context.WithCancel(ctx)
	defer stopLeading()
	var lost atomic.Bool
	go func() {
		select {
		case <-leader.Lost():
			lost.Store(true)
			stopLeading()
		case <-lctx.Done():
		}
	}()

	store, err := openStore(lctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	stats, err := cluster.WatchStats(lctx, nc, cfg.NATSReplicas, log)
	if err != nil {
		return err
	}
	outbox, err := postgres.OpenAlertOutbox(lctx, cfg.Postgres, log)
	if err != nil {
		return err
	}
	alerts, err := alert.Open(alert.Config{
		Outbox: outbox, Dir: cfg.Data, WebhookURL: cfg.AlertWebhook, Source: store, Node: b.nodes,
		Settings: cfg.alertSettings(), Interval: cfg.AlertInterval, Logger: log.With("component", "alert"),
	})
	if err != nil {
		return err
	}
	defer alerts.Close()
	payouts, err := openPayouts(cfg, b.params, store, b.clients, log)
	if err != nil {
		return err
	}
	defer payouts.Close()
	shares, err := natsstream.Open(lctx, nc, natsstream.Options{FrontEnd: "accounting", Replicas: cfg.NATSReplicas, MaxAge: cfg.NATSMaxAge, Logger: log.With("component", "natsstream")})
	if err != nil {
		return err
	}
	defer shares.Close()
	last, err := store.LastSeq(lctx)
	if err != nil {
		return err
	}

	apiSrv := api.New(api.Config{
		Store: store, Pool: stats, Node: b.nodes, Network: b.params.Name,
		Metrics: b.metricsHandler(), Logger: log.With("component", "api"),
		Dashboard: api.DashboardConfig{Alerts: alerts, AdminToken: cfg.AdminToken},
		Payouts:   payouts.api(),
	})
	handler.set(apiSrv.Handler())

	// A consumer that stops ends the process with its error, so that its supervisor
	// starts it again and the leadership passes on meanwhile.
	var fatalMu sync.Mutex
	var fatal error
	fail := func(what string, err error) {
		log.Error(what+" stopped", "err", err)
		fatalMu.Lock()
		fatal = errors.Join(fatal, fmt.Errorf("accounting: %s: %w", what, err))
		fatalMu.Unlock()
		stopLeading()
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		err := stream.Tailer{Batch: postgres.ConsumerBatch, ReadAhead: true, Logger: log.With("component", "tail")}.Run(lctx, shares, last, stream.StoreShares(lctx, store))
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, stream.ErrClosed) {
			fail("share stream consumer", err)
		}
	})
	wg.Go(func() {
		err := cluster.CopyBlocks(lctx, nc, cfg.NATSReplicas, store, log.With("component", "blocks"), func(hashgrid.Block) {
			alerts.Poke()
			payouts.Notify()
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			fail("block stream consumer", err)
		}
	})
	tracker := &pool.Tracker{Chain: b.nodes, Store: store, Interval: cfg.TrackInterval, Logger: log.With("component", "tracker"),
		OnChange: func(hashgrid.Block, hashgrid.BlockStatus) { alerts.Poke(); payouts.Notify() }}
	wg.Go(func() { tracker.Run(lctx) })
	wg.Go(func() { alerts.Run(lctx) })
	wg.Go(func() { payouts.run(lctx, log) })
	wg.Go(func() { runRetention(lctx, cfg, store, payouts, log) })
	if payouts != nil {
		// The payout service learns each height's reward (PPS) and lays out the PPLNS
		// coinbase from the templates, as the front-ends' pools would ask it to.
		pub := cluster.NewLayoutPublisher(nc, cfg.NATSReplicas, log.With("component", "layout"))
		wg.Go(func() {
			b.nodes.Watch(lctx, func(t *node.Template, newTip bool) {
				if _, _, err := payouts.Outputs(t, t.CoinbaseValue, ""); err != nil {
					log.Error("payout layout", "err", err, "height", t.Height)
					return
				}
				if l, ok := payouts.Layout(); ok {
					if err := pub.Publish(lctx, l); err != nil && lctx.Err() == nil {
						log.Warn("publish payout layout", "err", err)
					}
				}
			})
		})
	}
	log.Info("accounting running", "network", b.params.Name, "api", "http://"+al.Addr().String(), "from_seq", last)
	if ready != nil {
		ready(PoolReady{API: al.Addr().String(), Store: store})
	}
	<-lctx.Done()
	log.Info("shutting down")
	wg.Wait()
	if lost.Load() && ctx.Err() == nil {
		return errLeadershipLost
	}
	fatalMu.Lock()
	defer fatalMu.Unlock()
	return fatal
}
