package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/power"
	"github.com/hashgrid/hashgrid/power/backtest"
	"github.com/hashgrid/hashgrid/power/controller"
	"github.com/hashgrid/hashgrid/power/ercot"
)

func powerCommand() *Command {
	return &Command{
		Name:  "power",
		Short: "energy-aware fleet control: power run|plan|backtest",
		Run: func(ctx context.Context, args []string, env Env) error {
			if len(args) == 0 {
				fmt.Fprintln(env.Stderr, "usage: hashgrid power run|plan|backtest [flags]")
				return fmt.Errorf("%w: power needs run, plan or backtest", ErrUsage)
			}
			switch args[0] {
			case "run":
				return powerRun(ctx, args[1:], env)
			case "plan":
				return powerPlan(args[1:], env)
			case "backtest":
				return powerBacktest(args[1:], env)
			case "-h", "--help", "help":
				fmt.Fprintln(env.Stderr, "usage: hashgrid power run|plan|backtest [flags]")
				return nil
			}
			return fmt.Errorf("%w: unknown power subcommand %q", ErrUsage, args[0])
		},
	}
}

// loadPrices reads a price file for the zone given by flag, or by the config.
func loadPrices(path, zoneFlag string, cfg *power.Config) ([]power.Interval, string, error) {
	zs := cfg.Zone
	if zoneFlag != "" {
		zs = zoneFlag
	}
	z, err := power.ParseZone(zs)
	if err != nil {
		return nil, "", fmt.Errorf("%w: --zone: %v", ErrUsage, err)
	}
	ivs, err := ercot.ReadFile(path, z)
	return ivs, z.String(), err
}

// loadEarlier reads the prices published before a backtest that starts at start: they
// must end with the interval just before it, since the strategies read history by
// position (the same interval a day before, and so on).
func loadEarlier(path, zoneFlag string, cfg *power.Config, start time.Time) ([]power.Price, error) {
	ivs, _, err := loadPrices(path, zoneFlag, cfg)
	if err != nil {
		return nil, fmt.Errorf("--earlier: %w", err)
	}
	if last := ivs[len(ivs)-1]; !last.End().Equal(start) {
		return nil, fmt.Errorf("%w: --earlier %s ends at %s, but --prices starts at %s (US Central, the files' time): the earlier prices must end where the backtest starts",
			ErrUsage, path, central(last.End()), central(start))
	}
	return power.PricesOf(ivs), nil
}

// central formats t as the price files write it: US Central time.
func central(t time.Time) string { return power.InCentral(t).Format("2006-01-02 15:04 MST") }

// isTerminal reports whether w is a terminal, where a progress bar redrawn in place
// belongs; a file or a pipe gets none (a character device counts as a terminal: that
// also takes in /dev/null, where the bar is lost unseen).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func powerBacktest(args []string, env Env) error {
	fs := newFlagSet("power backtest", env)
	prices := fs.String("prices", "", "price file (wide or ERCOT published layout)")
	zone := fs.String("zone", "", "settlement point, e.g. LZ_WEST or LZ_WEST/LZEW (default: the config's)")
	cfgPath := fs.String("config", "", "site configuration (TOML)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	chart := fs.String("chart", "", "write an SVG chart of price and the policy's site load here")
	energyOut := fs.String("energy-out", "", "append the policy's energy lines to DIR/energy.jsonl (or to FILE.jsonl)")
	eff := fs.Float64("efficiency", 0, "rescale every mode so the first runs at this many J/TH")
	quiet := fs.Bool("quiet", false, "no progress bar (there is none unless stderr is a terminal)")
	earlierPath := fs.String("earlier", "", "prices of the same zone published just before --prices (e.g. the year before): the strategies start having seen them; they are not accounted")
	extend := fs.Bool("extend-economics", false, "on dates the [[economics]] table does not cover, reuse its first or last row (default: refuse, naming the gap)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *prices == "" || *cfgPath == "" {
		return fmt.Errorf("%w: --prices and --config are required", ErrUsage)
	}
	cfg, err := power.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *eff > 0 {
		power.SetEfficiency(cfg, *eff)
	}
	ivs, zs, err := loadPrices(*prices, *zone, cfg)
	if err != nil {
		return err
	}
	cfg.ExtendEconomics = *extend
	noteExtended(env.Stderr, "power backtest", cfg, ivs)
	sc, err := power.NewScenario(cfg, ivs)
	if err != nil {
		return err
	}
	if *earlierPath != "" {
		if sc.Earlier, err = loadEarlier(*earlierPath, *zone, cfg, ivs[0].Start); err != nil {
			return err
		}
	}
	opt := backtest.Options{}
	if !*quiet && isTerminal(env.Stderr) {
		opt.Progress = env.Stderr
	}
	var ef *os.File
	if *energyOut != "" {
		ef, err = openEnergy(*energyOut)
		if err != nil {
			return err
		}
		defer ef.Close()
		opt.Energy = ef
	}
	rep, err := backtest.Run(sc, zs, opt)
	if err != nil {
		return err
	}
	if ef != nil {
		if err := ef.Close(); err != nil {
			return fmt.Errorf("energy-out: %w", err)
		}
	}
	if *chart != "" {
		pol, err := sc.Simulate(power.NewPolicy(), nil)
		if err != nil {
			return err
		}
		f, err := os.Create(*chart)
		if err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		title := fmt.Sprintf("%s %s: price and policy site load", cfg.Name, zs)
		if err := backtest.WriteSVG(f, sc, backtest.SiteLoadMW(sc, pol), title); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("chart: %w", err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteText(env.Stdout)
}

// noteExtended says on w which prices --extend-economics priced with a row of the
// [[economics]] table that does not cover them, so that an extension is never silent.
func noteExtended(w io.Writer, cmd string, cfg *power.Config, ivs []power.Interval) {
	from, until, ok := cfg.EconomicsCovered()
	if !cfg.ExtendEconomics || !ok || len(ivs) == 0 {
		return
	}
	const day, minute = "2006-01-02", "2006-01-02 15:04"
	first, last := ivs[0].Start, ivs[len(ivs)-1].Start
	if first.Before(from) {
		fmt.Fprintf(w, "%s: --extend-economics: prices from %s UTC up to %s 00:00 UTC priced with the first [[economics]] row (from %s)\n",
			cmd, first.UTC().Format(minute), from.Format(day), cfg.Economics[0].From)
	}
	if !last.Before(until) {
		beyond := until
		if first.After(beyond) {
			beyond = first
		}
		fmt.Fprintf(w, "%s: --extend-economics: prices from %s UTC to %s UTC priced with the last [[economics]] row (from %s), which ends on %s\n",
			cmd, beyond.UTC().Format(minute), last.UTC().Format(minute), cfg.Economics[len(cfg.Economics)-1].From, until.AddDate(0, 0, -1).Format(day))
	}
}

// openEnergy opens the energy.jsonl to append to: path itself if it ends in .jsonl,
// else path/energy.jsonl.
func openEnergy(path string) (*os.File, error) {
	if !strings.HasSuffix(path, ".jsonl") {
		if err := os.MkdirAll(path, 0o755); err != nil {
			return nil, fmt.Errorf("energy: %w", err)
		}
		path = filepath.Join(path, "energy.jsonl")
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("energy: %w", err)
	}
	return f, nil
}

func powerPlan(args []string, env Env) error {
	fs := newFlagSet("power plan", env)
	prices := fs.String("prices", "", "price file (wide or ERCOT published layout)")
	zone := fs.String("zone", "", "settlement point (default: the config's)")
	cfgPath := fs.String("config", "", "site configuration (TOML)")
	asJSON := fs.Bool("json", false, "print the plan as JSON")
	extend := fs.Bool("extend-economics", false, "on dates the [[economics]] table does not cover, reuse its first or last row (default: refuse, naming the gap)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *prices == "" || *cfgPath == "" {
		return fmt.Errorf("%w: --prices and --config are required", ErrUsage)
	}
	cfg, err := power.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	ivs, _, err := loadPrices(*prices, *zone, cfg)
	if err != nil {
		return err
	}
	cfg.ExtendEconomics = *extend
	noteExtended(env.Stderr, "power plan", cfg, ivs)
	p, err := backtest.PlanSplits(cfg, ivs)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	}
	return p.WriteText(env.Stdout)
}

func powerRun(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("power run", env)
	cfgPath := fs.String("config", "", "site configuration (TOML)")
	nodeURL := fs.String("node", "", "bitcoind/btcd JSON-RPC URL (the pool's node) for the difficulty, subsidy and fees (default: [bitcoin] node, else the configured difficulty and fees)")
	btcUSD := fs.Float64("btc-usd", 0, "the BTC price in US dollars (default: [bitcoin] price_url, else btc_usd)")
	pricesFile := fs.String("prices", "", "replay this price file instead of [prices]")
	pricesURL := fs.String("prices-url", "", "poll this URL instead of [prices]")
	speed := fs.Float64("speed", 0, "replay speed factor (default: [prices] speed)")
	from := fs.String("from", "", "replay from this market time (RFC 3339; default: the first interval)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return fmt.Errorf("%w: --config is required", ErrUsage)
	}
	cfg, err := power.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", ErrUsage, err)
	}
	log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: lv}))
	zone, err := power.ParseZone(cfg.Zone)
	if err != nil {
		return err
	}
	if *pricesFile != "" {
		cfg.Prices.File, cfg.Prices.URL = *pricesFile, ""
	}
	if *pricesURL != "" {
		cfg.Prices.URL, cfg.Prices.File = *pricesURL, ""
	}
	if *speed > 0 {
		cfg.Prices.Speed = *speed
	}
	var feed controller.Feed
	switch {
	case cfg.Prices.URL != "":
		feed = &ercot.Poller{URL: cfg.Prices.URL, Zone: zone, Client: &http.Client{Timeout: ercot.FeedTimeout}}
	case cfg.Prices.File != "":
		ivs, err := ercot.ReadFile(cfg.Prices.File, zone)
		if err != nil {
			return err
		}
		var at time.Time
		if *from != "" {
			if at, err = time.Parse(time.RFC3339, *from); err != nil {
				return fmt.Errorf("%w: --from: %v", ErrUsage, err)
			}
		}
		r, err := ercot.NewReplay(ivs, cfg.Prices.Speed, at, time.Now())
		if err != nil {
			return err
		}
		feed = r
	default:
		return fmt.Errorf("config: [prices] needs url or file (or --prices / --prices-url)")
	}
	opts := controller.Options{Config: cfg, Feed: feed, Logger: log, Report: env.Stdout}
	if u := firstNonEmpty(*nodeURL, cfg.Bitcoin.Node); u != "" {
		nc, err := node.NewClient(u)
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		opts.Chain = controller.NodeChain{Client: nc}
	} else if !(cfg.Bitcoin.Difficulty > 0) {
		return fmt.Errorf("config: [bitcoin] difficulty or a --node is required")
	}
	if *btcUSD < 0 {
		return fmt.Errorf("%w: --btc-usd must not be negative", ErrUsage)
	}
	if *btcUSD > 0 {
		cfg.Bitcoin.BTCUSD, cfg.Bitcoin.PriceURL = *btcUSD, ""
	}
	if cfg.Bitcoin.PriceURL != "" {
		opts.BTCPrice = httpBTCPrice{url: cfg.Bitcoin.PriceURL}
	} else if !(cfg.Bitcoin.BTCUSD > 0) {
		return fmt.Errorf("config: [bitcoin] btc_usd or price_url is required")
	}
	dataDir := cfg.DataDir
	if dataDir == "" {
		dataDir = "."
	}
	ef, err := openEnergy(dataDir)
	if err != nil {
		return err
	}
	defer ef.Close()
	opts.Energy = ef
	ctl, err := controller.New(opts)
	if err != nil {
		return err
	}
	for _, g := range cfg.Groups {
		if cc := g.Compute; cc != nil {
			log.Info("group can lease compute", "group", g.Name, "market", cc.Market, "agents", len(cc.Controls), "cores", cc.Cores,
				"watts", cc.Watts, "window", cc.Window.Duration, "drain", cc.Drain.Duration)
		}
	}
	log.Info("power run", "site", cfg.Name, "zone", zone.String(), "machines", cfg.MachineCount(), "energy", filepath.Join(dataDir, "energy.jsonl"))
	return ctl.Run(ctx)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// httpBTCPrice reads {"usd": N} or a bare number from a URL.
type httpBTCPrice struct{ url string }

func (h httpBTCPrice) BTCUSD(ctx context.Context) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return 0, fmt.Errorf("btc price: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("btc price: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return 0, fmt.Errorf("btc price: %w", err)
	}
	var obj struct {
		USD *float64 `json:"usd"`
	}
	if json.Unmarshal(body, &obj) == nil && obj.USD != nil {
		return *obj.USD, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(body)), 64)
	if err != nil {
		return 0, fmt.Errorf("btc price: want {\"usd\": N} or a number")
	}
	return v, nil
}
