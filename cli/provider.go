package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/compute/provider"
	"github.com/hashgrid/hashgrid/compute/sandbox"
)

// providerCommand is `hashgrid provider`: the agent that leases this machine's spare
// compute through a market (package compute/provider), and `hashgrid provider
// status`, which shows a provider's leases and earnings.
func providerCommand() *Command {
	return &Command{
		Name:  "provider",
		Short: "lease this machine's spare compute through a market, or show a provider's leases and earnings",
		Run: func(ctx context.Context, args []string, env Env) error {
			if len(args) > 0 && args[0] == "status" {
				return runProviderStatus(ctx, args[1:], env)
			}
			return runProvider(ctx, args, env)
		},
	}
}

// marketKey reads a market API key (what names whose) from --key FILE or
// $HASHGRID_MARKET_API_KEY.
func marketKey(file, what string, env Env) (string, error) {
	getenv := env.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	key, err := secret("API key", "", "", file, "--key", getenv(envMarketAPIKey))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if key == "" {
		return "", fmt.Errorf("%w: give --key FILE holding %s (or $%s)", ErrUsage, what, envMarketAPIKey)
	}
	return key, nil
}

func runProvider(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("provider", env)
	marketURL := fs.String("market", "http://127.0.0.1:8081", "the market's API base URL")
	keyFile := fs.String("key", "", "file holding the market API key of the provider's account (or $"+envMarketAPIKey+")")
	host, _ := os.Hostname()
	name := fs.String("name", host, "the provider's name at the market (one offer per account and name)")
	addr := fs.String("payout-address", "", "address the payout engine pays earnings to")
	price := fs.Int64("price", 0, "price floor, sat per core-hour of CPU time")
	memPrice := fs.Int64("mem-price", 0, "price floor, sat per GiB-hour of memory held")
	cores := fs.Int("cores", 0, "cores offered (default: every core the machine has)")
	memMiB := fs.Uint64("memory-mib", 0, "memory offered, MiB (default: all the machine has)")
	// Every unit starts a child that compiles the module; a cache shared by the
	// sandbox's children compiles each module once per machine.
	defCache := ""
	if d, err := os.UserCacheDir(); err == nil {
		defCache = filepath.Join(d, "hashgrid", "wasm")
	}
	cacheDir := fs.String("cache-dir", defCache, "directory where the sandbox keeps compiled modules (empty: compile every run)")
	ociMode := fs.String("oci", "auto", "run OCI image jobs under runc: auto (when runc is installed, this is root and a probe container runs), on (fail without), off")
	defOCIDir := ""
	if d, err := os.UserCacheDir(); err == nil {
		defOCIDir = filepath.Join(d, "hashgrid", "oci")
	}
	ociDir := fs.String("oci-dir", defOCIDir, "directory for OCI images (unpacked, cached by digest) and containers' bundles")
	ociCacheGiB := fs.Int64("oci-cache-gib", 20, "most GiB of unpacked images kept in --oci-dir")
	var insecure []string
	fs.Func("insecure-registry", "a registry HOST[:PORT] that images may be fetched from over plain HTTP (repeatable; every other registry: HTTPS only)", func(v string) error {
		if v == "" || strings.ContainsAny(v, "/ ") {
			return fmt.Errorf("give a registry host or host:port")
		}
		insecure = append(insecure, v)
		return nil
	})
	jobLogPath := fs.String("job-log", "", "append each finished lease to this file as a job record for `hashgrid registry import-jobs` (CPU time metered, outputs' SHA-256)")
	group := fs.String("device-group", "", "with --job-log: the registry device group this machine belongs to")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	control := fs.String("control", "", "serve the control endpoint a power controller pauses and resumes the offer through: PORT (on loopback, 127.0.0.1) or HOST:PORT (no authentication: keep it on the site's management network); default none")
	paused := fs.Bool("paused", false, "start with the offer paused (registered, taking no new leases until resumed through --control)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *ociMode != "auto" && *ociMode != "on" && *ociMode != "off" {
		return fmt.Errorf("%w: --oci is auto, on or off", ErrUsage)
	}
	if *ociCacheGiB < 1 {
		return fmt.Errorf("%w: --oci-cache-gib must be at least 1", ErrUsage)
	}
	if *paused && *control == "" {
		return fmt.Errorf("%w: --paused needs --control, or nothing could resume the offer", ErrUsage)
	}
	if (*jobLogPath == "") != (*group == "") {
		return fmt.Errorf("%w: --job-log and --device-group go together", ErrUsage)
	}
	var jobLog io.Writer
	if *jobLogPath != "" {
		f, err := os.OpenFile(*jobLogPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("provider: --job-log: %w", err)
		}
		defer f.Close()
		jobLog = f
	}
	key, err := marketKey(*keyFile, "the market API key of the provider's account", env)
	if err != nil {
		return err
	}
	if *addr == "" {
		return fmt.Errorf("%w: give --payout-address", ErrUsage)
	}
	log, err := newLogger(env.Stderr, *logLevel)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("provider: sandbox executable: %w", err)
	}
	var ociJobs *provider.OCI
	if *ociMode != "off" {
		var err error
		ociJobs, err = provider.DiscoverOCI(ctx, provider.OCIConfig{Dir: *ociDir, InsecureRegistries: insecure, CacheBytes: *ociCacheGiB << 30,
			Logger: log.With("component", "oci")})
		switch {
		case err != nil && *ociMode == "on":
			return fmt.Errorf("provider: --oci on: %w", err)
		case err != nil:
			log.Info("OCI image jobs off", "reason", err)
		default:
			log.Info("OCI image jobs on", "runc", ociJobs.Runtime.Runc(), "dir", *ociDir)
		}
	}
	c := &compute.Client{Base: *marketURL, Key: key, HTTP: &http.Client{Timeout: compute.MaxWait + 30*time.Second}}
	a, err := provider.New(provider.Config{Client: c, Name: *name, PayoutAddress: *addr, Price: *price, MemPrice: *memPrice,
		Resources: compute.Resources{Cores: *cores, Memory: *memMiB << 20},
		Runner:    sandbox.Runner{Exe: exe, Args: []string{"sandbox-exec"}, CacheDir: *cacheDir},
		OCI:       ociJobs,
		JobLog:    jobLog, DeviceGroup: *group, Paused: *paused,
		Logger: log.With("component", "provider")})
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if *control != "" {
		if _, err := a.ServeControl(runCtx, *control); err != nil {
			return err
		}
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	// Every few minutes, and at the end, the provider's leases and earnings.
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			if v, serr := a.Status(sctx); serr == nil {
				printProvider(env, v)
			}
			scancel()
			return err
		case <-t.C:
			if v, err := a.Status(ctx); err == nil {
				printProvider(env, v)
			}
		}
	}
}

func runProviderStatus(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("provider status", env)
	marketURL := fs.String("market", "http://127.0.0.1:8081", "the market's API base URL")
	keyFile := fs.String("key", "", "file holding the market API key of the provider's account (or $"+envMarketAPIKey+")")
	id := fs.String("id", "", "the provider's id (printed by `hashgrid provider` when it registers)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *id == "" {
		return fmt.Errorf("%w: give --id", ErrUsage)
	}
	key, err := marketKey(*keyFile, "the market API key of the provider's account", env)
	if err != nil {
		return err
	}
	c := &compute.Client{Base: *marketURL, Key: key, HTTP: &http.Client{Timeout: 30 * time.Second}}
	v, err := c.Provider(ctx, *id)
	if err != nil {
		return err
	}
	printProvider(env, v)
	return nil
}

// printProvider writes a provider's offer, earnings and leases.
func printProvider(env Env, v compute.ProviderView) {
	rts := "wasm"
	if len(v.Resources.Runtimes) > 0 {
		rts = strings.Join(v.Resources.Runtimes, ",")
	}
	fmt.Fprintf(env.Stdout, "provider %s (%s): %d cores, %d MiB, %d GPUs, runtimes %s at %d sat/core-hour, %d sat/GiB-hour; online %t, marked %t, paused %t\n",
		v.ID, v.Name, v.Resources.Cores, v.Resources.Memory>>20, len(v.Resources.GPUs), rts, v.Price, v.MemPrice, v.Online, v.Marked, v.Paused)
	fmt.Fprintf(env.Stdout, "earned %d sat (payable to %s: %d sat), held for spot checks %d sat\n", v.Earned, v.PayoutAddress, v.Payable, v.Held)
	tw := tabwriter.NewWriter(env.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "LEASE\tORDER\tKIND\tSTATUS\tUNITS\tCPU\tWALL\tCHARGED\tSETTLED")
	for _, l := range v.Leases {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%d\t%s\n", l.ID, l.Order, l.Kind, l.Status, l.Done, l.Units,
			time.Duration(l.CPUMS)*time.Millisecond, time.Duration(l.WallMS)*time.Millisecond, l.Charged, l.Settled)
	}
	tw.Flush()
}
