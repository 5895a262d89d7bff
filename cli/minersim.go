package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid/power/minersim"
)

func minersimCommand() *Command {
	return &Command{
		Name:  "minersim",
		Short: "run a fleet of emulated ASICs speaking the cgminer/LuxOS API",
		Run: func(ctx context.Context, args []string, env Env) error {
			fs := newFlagSet("minersim", env)
			count := fs.Int("count", 4, "number of miners")
			host := fs.String("host", "127.0.0.1", "listen host")
			base := fs.Int("base-port", 14028, "miner i listens on base-port+i (0: free ports)")
			profiles := fs.String("profiles", "default:100:3450,eco:80:2240", "power profiles name:TH/s:watts, comma-separated")
			sleepW := fs.Float64("sleep-watts", 15, "draw while curtailed")
			boot := fs.Duration("boot", 0, "time from wakeup to hashing")
			ignore := fs.String("ignore", "", "indexes of miners that ignore commands, comma-separated")
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			var ps []minersim.Profile
			for _, p := range strings.Split(*profiles, ",") {
				f := strings.Split(p, ":")
				if len(f) != 3 {
					return fmt.Errorf("%w: --profiles: %q: want name:ths:watts", ErrUsage, p)
				}
				ths, err1 := strconv.ParseFloat(f[1], 64)
				w, err2 := strconv.ParseFloat(f[2], 64)
				if err1 != nil || err2 != nil {
					return fmt.Errorf("%w: --profiles: %q: want numbers", ErrUsage, p)
				}
				ps = append(ps, minersim.Profile{Name: f[0], THs: ths, Watts: w})
			}
			log, err := newLogger(env.Stderr, "info")
			if err != nil {
				return err
			}
			fleet, err := minersim.Start(minersim.Config{Count: *count, Host: *host, BasePort: *base, Profiles: ps,
				SleepWatts: *sleepW, Boot: *boot, Logger: log})
			if err != nil {
				return err
			}
			if *ignore != "" {
				for _, s := range strings.Split(*ignore, ",") {
					i, err := strconv.Atoi(strings.TrimSpace(s))
					if err != nil || i < 0 || i >= *count {
						fleet.Close()
						return fmt.Errorf("%w: --ignore: %q: want an index in 0..%d", ErrUsage, s, *count-1)
					}
					fleet.SetIgnore(i, true)
				}
			}
			addrs := fleet.Addrs()
			fmt.Fprintf(env.Stdout, "minersim: %d miners on %s .. %s\n", len(addrs), addrs[0], addrs[len(addrs)-1])
			fmt.Fprintf(env.Stdout, "endpoints = [%s]\n", quoteJoin(addrs))
			tick := time.NewTicker(10 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					fleet.Close()
					return ctx.Err()
				case <-tick.C:
					var on int
					var watts, ghs float64
					for _, s := range fleet.States() {
						if !s.Asleep {
							on++
						}
						watts += s.Watts
						ghs += s.GHs
					}
					log.Info("fleet", "running", on, "of", len(addrs), "kW", watts/1000, "TH/s", ghs/1000)
				}
			}
		},
	}
}

func quoteJoin(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
