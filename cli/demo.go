package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/node/regtest"
)

func demoCommand() *Command {
	return &Command{
		Name:  "demo",
		Short: "run everything on embedded defaults: a regtest btcd, the pool, a CPU miner",
		Run: func(ctx context.Context, args []string, env Env) error {
			fs := newFlagSet("demo", env)
			stratumAddr := fs.String("stratum", "127.0.0.1:3333", "Stratum listen address")
			apiAddr := fs.String("api", "127.0.0.1:8080", "HTTP listen address")
			dir := fs.String("data", "", "data directory (default: a new temporary directory)")
			threads := fs.Int("threads", 1, "CPU miner threads")
			level := fs.String("log-level", "info", "debug, info, warn or error")
			scheme := fs.String("payout-scheme", "pplns", "pplns, pps, fpps, solo, or none (the coinbase pays the demo's address, no books)")
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			return runDemo(ctx, env, demoConfig{Stratum: *stratumAddr, API: *apiAddr, Data: *dir, Threads: *threads, LogLevel: *level, PayoutScheme: *scheme}, nil)
		},
	}
}

type demoConfig struct {
	Stratum, API, Data string
	Threads            int
	LogLevel           string
	// PayoutScheme is the pool's; "none" runs it without books. The demo keeps books by
	// default so that its dashboard shows earnings and 'hashgrid verify' has a window to
	// recompute.
	PayoutScheme string
}

// runDemo starts btcd on regtest, the pool on it and a CPU miner pointed at the pool.
func runDemo(ctx context.Context, env Env, dc demoConfig, ready func(PoolReady, *regtest.Node)) error {
	log, err := newLogger(env.Stderr, dc.LogLevel)
	if err != nil {
		return err
	}
	if dc.Data == "" {
		d, err := os.MkdirTemp("", "hashgrid-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dc.Data = d
	}
	btcd, err := regtest.Start(ctx, regtest.Options{Dir: filepath.Join(dc.Data, "btcd"), Logger: log.With("component", "btcd")})
	if err != nil {
		return fmt.Errorf("start btcd: %w", err)
	}
	defer btcd.Stop()
	addr := regtest.TestAddress()
	cfg := PoolConfig{
		Nodes: []string{btcd.RPCURL()}, Network: "regtest", PayoutAddress: addr,
		Stratum: dc.Stratum, API: dc.API, Data: filepath.Join(dc.Data, "pool"), Tag: "/hashgrid-demo/", LogLevel: dc.LogLevel,
	}
	if dc.PayoutScheme != "none" {
		cfg.PayoutScheme = dc.PayoutScheme
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return RunPool(ctx, cfg, env, func(r PoolReady) {
		fmt.Fprintf(env.Stdout, "hashgrid demo: pool status at http://%s  (stratum+tcp://%s, payout %s)\n", r.API, r.Stratum, addr)
		m, err := miner.New(miner.Config{URL: "stratum+tcp://" + r.Stratum, User: addr + ".demo", Threads: dc.Threads, VersionRoll: true, Logger: log.With("component", "miner")})
		if err != nil {
			log.Error("miner", "err", err)
			cancel()
			return
		}
		wg.Go(func() { m.Run(ctx) })
		if ready != nil {
			ready(r, btcd)
		}
	})
}
