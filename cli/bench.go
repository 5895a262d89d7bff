package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hashgrid/hashgrid/bench"
	"github.com/hashgrid/hashgrid/natsstream"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
)

func benchCommand() *Command {
	return &Command{
		Name:  "bench",
		Short: "load tools: 'bench stratum' loads any Stratum V1 pool (or a V2 one, submit mode); 'bench pool' runs a benchmark pool",
		Run: func(ctx context.Context, args []string, env Env) error {
			if len(args) == 0 {
				return fmt.Errorf("%w: bench stratum|pool", ErrUsage)
			}
			switch args[0] {
			case "-h", "-help", "--help", "help":
				fmt.Fprint(env.Stderr, "usage: hashgrid bench stratum|pool [flags]\n\n"+
					"  stratum  load any Stratum V1 pool, or a V2 one (stratum2+tcp://, submit mode)\n  pool     run a benchmark pool (--stratum-v2 serves V2 too)\n\n"+
					"Run 'hashgrid bench stratum -h' or 'hashgrid bench pool -h' for their flags.\n")
				return flag.ErrHelp
			case "stratum":
				return benchStratum(ctx, args[1:], env)
			case "pool":
				return benchPool(ctx, args[1:], env)
			}
			return fmt.Errorf("%w: unknown bench %q (want stratum or pool)", ErrUsage, args[0])
		},
	}
}

// benchStratum is the load client. It prints one JSON result line; in idle and notify
// modes it first prints "READY" once every connection is authorized and has work.
func benchStratum(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("bench stratum", env)
	var cfg bench.LoadConfig
	mode := fs.String("mode", "submit", "submit (throughput and latency), idle (hold connections until stdin closes), notify (await one clean notify on every connection)")
	fs.StringVar(&cfg.URL, "url", "", "pool URL, stratum+tcp://HOST:PORT, or stratum2+tcp://HOST:PORT/KEY (submit mode, standard channels; the pool must set the difficulty: bench pool --fixed-diff)")
	fs.StringVar(&cfg.User, "user", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.bench", "user to authorize")
	fs.StringVar(&cfg.Password, "password", "d="+bench.BenchDiff, "password (hashgrid reads d=DIFF as a fixed difficulty)")
	fs.IntVar(&cfg.Conns, "conns", 200, "connections")
	fs.IntVar(&cfg.InFlight, "inflight", 4, "submits outstanding per connection")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "submit mode: how long")
	fs.IntVar(&cfg.DialRate, "dial-rate", 2000, "new connections per second")
	timeout := fs.Duration("timeout", 2*time.Minute, "notify mode: how long to wait")
	fs.BoolVar(&cfg.RxTimestamps, "rx-timestamps", false, "notify mode (Linux): date each notify by the kernel's receive time (SO_TIMESTAMPNS), not by when the client read it")
	fs.DurationVar(&cfg.Settle, "settle", 0, "notify mode (Linux): a reader seeing input after a quiet spell waits D before reading it, not competing with the pool while it writes (use with --rx-timestamps)")
	fs.BoolVar(&cfg.SoloUsers, "solo-users", false, "authorize each connection with a payout address of its own (against bench pool --solo: one coinbase per connection)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the load client to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if stop, err := startCPUProfile(*cpuprofile); err != nil {
		return err
	} else {
		defer stop()
	}
	if cfg.URL == "" {
		return fmt.Errorf("%w: --url is required", ErrUsage)
	}
	var res bench.Result
	var err error
	v2 := strings.HasPrefix(cfg.URL, noise.URLScheme+"://")
	switch {
	case v2 && *mode == "submit":
		res, err = bench.SubmitV2(ctx, cfg)
	case v2:
		return fmt.Errorf("%w: over Stratum V2 only submit mode is implemented", ErrUsage)
	}
	switch *mode {
	case "submit":
		if !v2 {
			res, err = bench.Submit(ctx, cfg)
		}
	case "idle", "notify":
		hctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if *mode == "notify" {
			var c2 context.CancelFunc
			hctx, c2 = context.WithTimeout(hctx, *timeout)
			defer c2()
		}
		res, err = bench.Hold(hctx, cfg, *mode == "notify", func() {
			fmt.Fprintln(env.Stdout, "READY")
			if *mode == "idle" {
				go func() {
					// Hold until the controller closes stdin.
					bufio.NewReader(env.Stdin).ReadString('\n')
					cancel()
				}()
			}
		})
	default:
		return fmt.Errorf("%w: unknown mode %q", ErrUsage, *mode)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(env.Stdout).Encode(res)
}

// benchPool runs the benchmark pool. It prints {"addr":..,"pid":..}, then answers
// commands on stdin, one per line: "tip" (install a new tip; prints {"t0":UnixNano,...}
// with the broadcast's duration, CPU time and context switches), "stats" (shares
// answered, connections, peers dropped by reason, whether 127.0.0.1 is banned, CPU
// time used),
// "mem" (prints heap+stack in use after GC, RSS, and connections), "backlog" (the share
// stream's and the store's last sequences). EOF stops it.
func benchPool(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("bench pool", env)
	var cfg bench.ServerConfig
	fs.StringVar(&cfg.Listen, "stratum", "127.0.0.1:0", "listen address")
	fs.StringVar(&cfg.Data, "data", "", "data directory (default: a temporary one)")
	fs.IntVar(&cfg.Txs, "txs", 2000, "template transactions (sets the merkle branch length)")
	fs.IntVar(&cfg.MaxConn, "max-conns-per-ip", 20000, "connections allowed from one IP")
	fs.StringVar(&cfg.V2Listen, "stratum-v2", "", "also serve Stratum V2 at this address (prints v2_url)")
	fs.Float64Var(&cfg.FixedDiff, "fixed-diff", 0, "every connection's difficulty, for clients without password options (V2); bench stratum's is "+bench.BenchDiff)
	fs.BoolVar(&cfg.Solo, "solo", false, "lay out coinbases as a SOLO pool does: one per payout address (use bench stratum --solo-users)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the pool to this file")
	var natsURLs []string
	fs.Var(&listFlag{dst: &natsURLs}, "nats", "run as a cluster front-end publishing to this JetStream server nats://HOST:PORT (repeatable) instead of the local log and SQLite")
	ack := fs.String("ack", "replicated", "with --nats: replicated or local, as hashgrid pool --ack")
	fs.IntVar(&cfg.Replicas, "nats-replicas", 1, "with --nats: replicas of the share stream, 1 or 3")
	fs.StringVar(&cfg.FrontEnd, "frontend-name", "bench", "with --nats: the front-end's name in the stream (one per run: a name reused within the stream's duplicate window has its shares dropped as duplicates)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(natsURLs) > 0 {
		mode, err := natsstream.ParseAckMode(*ack)
		if err != nil {
			return fmt.Errorf("%w: --ack %q: want replicated or local", ErrUsage, *ack)
		}
		cfg.Ack = mode
		nc, err := nats.Connect(strings.Join(natsURLs, ","), nats.Name("hashgrid bench pool"), nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("--nats: %w", err)
		}
		defer nc.Close()
		cfg.NATS = nc
	}
	if stop, err := startCPUProfile(*cpuprofile); err != nil {
		return err
	} else {
		defer stop()
	}
	if cfg.Data == "" {
		d, err := os.MkdirTemp("", "hashgrid-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		cfg.Data = d
	}
	s, err := bench.StartServer(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	out := json.NewEncoder(env.Stdout)
	hello := map[string]any{"addr": s.Addr, "pid": os.Getpid()}
	if s.V2URL != "" {
		hello["v2_url"] = s.V2URL
	}
	out.Encode(hello)
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(env.Stdin)
		for sc.Scan() {
			lines <- strings.TrimSpace(sc.Text())
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case l, ok := <-lines:
			if !ok {
				return nil
			}
			switch l {
			case "tip":
				u0 := bench.ProcessUsage()
				t0 := s.NewTip()
				u := bench.ProcessUsage().Sub(u0)
				out.Encode(map[string]any{
					"t0":           t0.UnixNano(),
					"broadcast_ms": float64(s.Pool.Stats().LastBroadcast.Microseconds()) / 1000,
					// What the broadcast cost the pool process.
					"cpu_ms":          float64(u.CPU.Microseconds()) / 1000,
					"csw_voluntary":   u.Voluntary,
					"csw_involuntary": u.Involuntary,
				})
			case "stats":
				// Shares answered so far, open connections and whether the loopback
				// address is banned, with the CPU time the pool process has used: a
				// load run's figures are the difference of two of these.
				st := s.Pool.Stats()
				u := bench.ProcessUsage()
				out.Encode(map[string]any{
					"accepted": st.SharesAccepted, "rejected": st.SharesRejected,
					"conns": s.Pool.Server().NumConns(), "banned": s.Pool.Server().Banned("127.0.0.1"), "drops": s.Drops(),
					"cpu_ms": float64(u.CPU.Microseconds()) / 1000, "unix_nano": time.Now().UnixNano(),
				})
			case "backlog":
				// How far the store consumer is behind the share stream.
				st, sq, err := s.Backlog(ctx)
				if err != nil {
					out.Encode(map[string]any{"error": err.Error()})
					continue
				}
				out.Encode(map[string]any{"stream_last": st, "store_last": sq, "backlog": st - sq})
			case "heap":
				// heap FILE: write a heap profile (after a collection) for go tool pprof.
				out.Encode(map[string]any{"error": "usage: heap FILE"})
			case "mem":
				heap, stack, rss := bench.Memory()
				out.Encode(map[string]any{"heap_stack": heap + stack, "heap": heap, "stack": stack, "rss": rss, "conns": s.Pool.Server().NumConns()})
			case "mem-released":
				// The same after returning freed pages to the OS, as the runtime's
				// scavenger does over time in a long-running pool.
				debug.FreeOSMemory()
				heap, stack, rss := bench.Memory()
				out.Encode(map[string]any{"heap_stack": heap + stack, "heap": heap, "stack": stack, "rss": rss, "conns": s.Pool.Server().NumConns()})
			default:
				if f, ok := strings.CutPrefix(l, "heap "); ok {
					if err := writeHeapProfile(f); err != nil {
						out.Encode(map[string]any{"error": err.Error()})
					} else {
						out.Encode(map[string]any{"heap_profile": f})
					}
					continue
				}
				out.Encode(map[string]any{"error": "unknown command " + l})
			}
		}
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

// startCPUProfile starts a CPU profile into path ("" for none) and returns what stops it.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
