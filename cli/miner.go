package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/stratum/v2/client"
)

func minerCommand() *Command {
	return &Command{
		Name:  "miner",
		Short: "mine on a Stratum V1 or V2 pool with the CPU",
		Run: func(ctx context.Context, args []string, env Env) error {
			fs := newFlagSet("miner", env)
			var cfg miner.Config
			fs.StringVar(&cfg.URL, "url", "", "pool URL, stratum+tcp://HOST:PORT or stratum2+tcp://HOST:PORT/AUTHORITY_KEY")
			fs.Var(&listFlag{dst: &cfg.Failover}, "failover", "another pool URL, tried when the current one fails (repeatable, tried in order)")
			fs.StringVar(&cfg.User, "user", "", "ADDRESS.WORKER")
			fs.StringVar(&cfg.Password, "password", "x", "password (options such as d=0.01)")
			fs.IntVar(&cfg.Threads, "threads", 1, "hashing threads")
			fs.DurationVar(&cfg.Duration, "duration", 0, "stop after this long (0: until interrupted)")
			fs.BoolVar(&cfg.VersionRoll, "version-rolling", true, "ask for BIP 310 version rolling")
			fs.Float64Var(&cfg.SuggestDiff, "suggest-difficulty", 0, "send mining.suggest_difficulty")
			channel := fs.String("v2-channel", "standard", "channel on stratum2+tcp pools: standard (header-only) or extended")
			level := fs.String("log-level", "info", "debug, info, warn or error")
			err := parseFlags(fs, args)
			if err != nil {
				return err
			}
			if cfg.URL == "" || cfg.User == "" {
				return fmt.Errorf("%w: --url and --user are required", ErrUsage)
			}
			if cfg.V2Channel, err = client.ParseChannelKind(*channel); err != nil {
				return fmt.Errorf("%w: %v", ErrUsage, err)
			}
			log, err := newLogger(env.Stderr, *level)
			if err != nil {
				return err
			}
			cfg.Logger = log
			m, err := miner.New(cfg)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrUsage, err)
			}
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- m.Run(ctx) }()
			tick := time.NewTicker(10 * time.Second)
			defer tick.Stop()
			for {
				select {
				case err := <-done:
					printMinerStats(env, m.Stats(), time.Since(start))
					return err
				case <-tick.C:
					s := m.Stats()
					log.Info("mining", "hashrate_mhs", fmt.Sprintf("%.2f", float64(s.Hashes)/time.Since(start).Seconds()/1e6), "accepted", s.Accepted, "rejected", s.Rejected, "blocks", s.Blocks)
				}
			}
		},
	}
}

func printMinerStats(env Env, s miner.Stats, el time.Duration) {
	fmt.Fprintf(env.Stdout, "hashes %d (%.2f MH/s) accepted %d rejected %d (stale %d) blocks %d errors %d connects %d work %.6g\n",
		s.Hashes, float64(s.Hashes)/el.Seconds()/1e6, s.Accepted, s.Rejected, s.Stale, s.Blocks, s.Errors, s.Connects, s.Work.Float())
}
