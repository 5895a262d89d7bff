package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/alert"
	"github.com/hashgrid/hashgrid/pool"
)

// PoolConfig is the configuration of `hashgrid pool`. It is filled in one order only:
// DefaultPoolConfig, then the TOML file of --config, then the flags the user gave, then
// the secrets read from files or the environment (readSecrets). Tests build it literally.
//
// A zero difficulty, share interval, poll or track interval means "the default of the
// package that uses it" (pool, node), which may depend on the network; the CLI does not
// repeat those defaults.
type PoolConfig struct {
	Nodes         []string `toml:"nodes"` // http://USER:PASS@HOST:PORT; several = failover
	ZMQ           []string `toml:"zmq"`   // tcp://HOST:PORT of Bitcoin Core's zmqpubhashblock
	Network       string   `toml:"network"`
	PayoutAddress string   `toml:"payout_address"`
	// Stratum is the first Stratum port, HOST:PORT[=START_DIFFICULTY]; StratumPorts
	// are more, plain or TLS. In TOML both are `stratum`: one address, or [[stratum]]
	// tables of listen, start_difficulty and tls.
	Stratum      string        `toml:"-"`
	StratumPorts []StratumPort `toml:"-"`
	// StratumV2 is the Stratum V2 port HOST:PORT (package stratum/v2/bridge), "" for
	// none; its keys live in Data/v2.
	StratumV2     string        `toml:"stratum_v2"`
	TLSCert       string        `toml:"tls_cert"` // PEM certificate (chain) of the TLS ports
	TLSKey        string        `toml:"tls_key"`  // PEM private key of the TLS ports
	API           string        `toml:"api"`      // also serves /metrics: loopback unless told otherwise
	Data          string        `toml:"data"`
	Tag           string        `toml:"tag"`
	StartDiff     float64       `toml:"start_difficulty"`
	MinDiff       float64       `toml:"min_difficulty"`
	ShareInterval time.Duration `toml:"share_interval"`
	// Extranonce2Size and VersionMask shape the work miners roll: 0 and "" keep the
	// pool's defaults (8 bytes; BIP 310 mask 1fffe000). A smaller extranonce2 or a
	// narrower mask suits miners or proxies that need them.
	Extranonce2Size int           `toml:"extranonce2_size"`
	VersionMask     string        `toml:"version_mask"` // hex, within 1fffe000
	PollInterval    time.Duration `toml:"poll_interval"`
	TrackInterval   time.Duration `toml:"track_interval"` // how often found blocks are checked on the node
	MaxConnsPerIP   int           `toml:"max_conns_per_ip"`
	LogLevel        string        `toml:"log_level"`
	LogFormat       string        `toml:"log_format"` // text or json; empty: hashgrid's --log-format or $HASHGRID_LOG_FORMAT

	// Alerts (see package alert): a webhook, and the thresholds.
	AlertWebhook     string        `toml:"alert_webhook"`
	AlertWorkerQuiet time.Duration `toml:"alert_worker_quiet"`
	AlertRejectRate  float64       `toml:"alert_reject_rate"`
	AlertInterval    time.Duration `toml:"alert_interval"` // between alert checks; default 10s

	// Secrets. Each is taken from, in order: its own setting (flag or key, which a
	// process listing shows), a file named by the *_file setting, the environment.
	//
	// AdminToken enables the API's admin actions (ban, kick, settings); else
	// admin_token_file, else $HASHGRID_ADMIN_TOKEN.
	AdminToken     string `toml:"admin_token"`
	AdminTokenFile string `toml:"admin_token_file"`
	// NodePasswordFile holds the RPC password for every node (and wallet) URL that
	// names a user but no password; else $HASHGRID_NODE_PASSWORD.
	NodePasswordFile string `toml:"node_password_file"`

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

	// ShareRetention is how long raw shares are kept at least (cli/retention.go); 0
	// keeps them for ever.
	ShareRetention time.Duration `toml:"share_retention"`

	// Across machines (cli/cluster.go, docs/guides/cluster.md). Role "all" is the
	// one-process pool; "frontend" serves Stratum and publishes shares and blocks to
	// NATS JetStream; "accounting" copies them into PostgreSQL, tracks blocks, pays and
	// serves the API, one process leading and any others waiting.
	Role string `toml:"role"`
	// Postgres keeps the books (shares, blocks, ledger) in PostgreSQL instead of the
	// SQLite files of the data directory. It may hold a password: else postgres_file,
	// else $HASHGRID_POSTGRES.
	Postgres     string   `toml:"postgres"`
	PostgresFile string   `toml:"postgres_file"`
	NATS         []string `toml:"nats"`          // nats://HOST:PORT of the JetStream servers
	NATSReplicas int      `toml:"nats_replicas"` // replicas of the share stream: 1 or 3
	FrontEnd     int      `toml:"frontend"`      // this front-end's number, 1 to pool.MaxFrontEnds
	Ack          string   `toml:"ack"`           // when a miner hears "accepted": replicated or local
	// NATSMaxAge is how long the JetStream share stream keeps a share: the accounting
	// process copies it into PostgreSQL within seconds, so this is how long accounting
	// may be down without losing shares. Every process of a pool must give the same
	// value: each sets the stream's limit when it starts.
	NATSMaxAge time.Duration `toml:"nats_max_age"`
}

// StratumPort is one Stratum listener.
type StratumPort struct {
	Listen    string  // HOST:PORT
	StartDiff float64 // first difficulty of its connections; 0: the pool's
	TLS       bool    // Stratum over TLS, with --tls-cert and --tls-key
}

// parseStratumPort reads HOST:PORT[=START_DIFFICULTY].
func parseStratumPort(v string, tls bool) (StratumPort, error) {
	addr, d, hasDiff := strings.Cut(v, "=")
	p := StratumPort{Listen: addr, TLS: tls}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return p, fmt.Errorf("%q: want HOST:PORT or :PORT, then =START_DIFFICULTY if the port has its own", v)
	}
	if hasDiff {
		f, err := strconv.ParseFloat(d, 64)
		if err != nil || !(f > 0) || math.IsInf(f, 0) {
			return p, fmt.Errorf("%q: start difficulty %q is not a positive number", v, d)
		}
		p.StartDiff = f
	}
	return p, nil
}

// stratumFlag is --stratum or --stratum-tls: repeatable, and its first use replaces
// the ports of its kind that the file named.
type stratumFlag struct {
	c   *PoolConfig
	tls bool
	set bool
}

func (f *stratumFlag) String() string {
	if f == nil || f.c == nil {
		return ""
	}
	var out []string
	if !f.tls && f.c.Stratum != "" {
		out = append(out, f.c.Stratum)
	}
	for _, p := range f.c.StratumPorts {
		if p.TLS == f.tls {
			s := p.Listen
			if p.StartDiff > 0 {
				s += "=" + strconv.FormatFloat(p.StartDiff, 'g', -1, 64)
			}
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}

func (f *stratumFlag) Set(v string) error {
	p, err := parseStratumPort(v, f.tls)
	if err != nil {
		return err
	}
	if !f.set {
		f.set = true
		kept := f.c.StratumPorts[:0:0]
		for _, q := range f.c.StratumPorts {
			if q.TLS != f.tls {
				kept = append(kept, q)
			}
		}
		f.c.StratumPorts = kept
		if !f.tls {
			f.c.Stratum = ""
		}
	}
	if !f.tls && f.c.Stratum == "" {
		f.c.Stratum = v
		return nil
	}
	f.c.StratumPorts = append(f.c.StratumPorts, p)
	return nil
}

// stratumKey is the TOML `stratum` setting: one address, or an array of tables.
type stratumKey struct {
	ports []StratumPort
}

func (k *stratumKey) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		p, err := parseStratumPort(v, false)
		if err != nil {
			return fmt.Errorf("stratum %v", err)
		}
		k.ports = []StratumPort{p}
		return nil
	case []map[string]any:
		for i, t := range v {
			p, err := stratumTable(t)
			if err != nil {
				return fmt.Errorf("[[stratum]] %d: %v", i+1, err)
			}
			k.ports = append(k.ports, p)
		}
		return nil
	}
	return fmt.Errorf("stratum: want \"HOST:PORT\" or [[stratum]] tables, not %T", v)
}

func stratumTable(t map[string]any) (StratumPort, error) {
	var p StratumPort
	for key, v := range t {
		switch key {
		case "listen":
			s, ok := v.(string)
			if !ok {
				return p, errors.New("listen: want a string")
			}
			p.Listen = s
		case "start_difficulty":
			switch f := v.(type) {
			case float64:
				p.StartDiff = f
			case int64:
				p.StartDiff = float64(f)
			default:
				return p, errors.New("start_difficulty: want a number")
			}
			if !(p.StartDiff > 0) || math.IsInf(p.StartDiff, 0) {
				return p, fmt.Errorf("start_difficulty %v: want a positive number", v)
			}
		case "tls":
			b, ok := v.(bool)
			if !ok {
				return p, errors.New("tls: want true or false")
			}
			p.TLS = b
		default:
			return p, fmt.Errorf("unknown setting %q (want listen, start_difficulty, tls)", key)
		}
	}
	if _, _, err := net.SplitHostPort(p.Listen); err != nil {
		return p, fmt.Errorf("listen %q: want HOST:PORT or :PORT", p.Listen)
	}
	return p, nil
}

// Ports returns every Stratum port: the first (Stratum), then StratumPorts.
func (c *PoolConfig) Ports() ([]StratumPort, error) {
	var out []StratumPort
	if c.Stratum != "" {
		p, err := parseStratumPort(c.Stratum, false)
		if err != nil {
			return nil, fmt.Errorf("--stratum %v", err)
		}
		out = append(out, p)
	}
	return append(out, c.StratumPorts...), nil
}

// Default listen addresses. Stratum listens on every interface because miners must
// reach it; the API (dashboard, admin actions, /metrics) is the operator's and listens
// on loopback unless the operator names another address.
const (
	defaultStratumListen = ":3333"
	defaultAPIListen     = "127.0.0.1:8080"
)

// Environment variables read for secrets.
const (
	envAdminToken   = "HASHGRID_ADMIN_TOKEN"
	envNodePassword = "HASHGRID_NODE_PASSWORD"
	envPostgres     = "HASHGRID_POSTGRES"
)

// maxSecretFile bounds a secret file: a password or token, not a document.
const maxSecretFile = 4 << 10

// DefaultPoolConfig is where every pool configuration starts.
func DefaultPoolConfig() PoolConfig {
	return PoolConfig{
		Network:           "mainnet",
		Stratum:           defaultStratumListen,
		API:               defaultAPIListen,
		Data:              "data",
		Tag:               "/hashgrid/",
		LogLevel:          "info",
		PPLNSWindow:       defaultPPLNSWindow,
		CoinbaseThreshold: defaultCoinbaseThreshold,
		PayoutThreshold:   defaultPayoutThreshold,
		PayoutInterval:    defaultPayoutInterval,
		ShareRetention:    defaultShareRetention,
		Role:              RoleAll,
		NATSReplicas:      1,
		NATSMaxAge:        defaultNATSMaxAge,
		Ack:               "replicated",
	}
}

// listFlag is a repeatable flag. Its first use replaces the list (from the defaults or
// the file); later uses append.
type listFlag struct {
	dst *[]string
	set bool
}

func (l *listFlag) String() string {
	if l == nil || l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		*l.dst, l.set = nil, true
	}
	*l.dst = append(*l.dst, v)
	return nil
}

// bindPoolFlags defines the pool's flags on fs, each writing into c and showing c's
// current value as its default. It returns the --config flag's value.
func bindPoolFlags(fs *flag.FlagSet, c *PoolConfig) *string {
	configFile := fs.String("config", "", "TOML file with the same settings (see examples/pool.toml); flags given override it")
	fs.Var(&listFlag{dst: &c.Nodes}, "node", "node RPC URL http://USER:PASS@HOST:PORT (repeat for failover; the password may come from --node-password-file)")
	fs.Var(&listFlag{dst: &c.ZMQ}, "zmq", "Bitcoin Core zmqpubhashblock endpoint tcp://HOST:PORT (repeatable)")
	fs.StringVar(&c.Network, "network", c.Network, "regtest, signet, testnet or mainnet")
	fs.StringVar(&c.PayoutAddress, "payout-address", c.PayoutAddress, "address the coinbase pays")
	fs.Var(&stratumFlag{c: c}, "stratum", "Stratum port HOST:PORT[=START_DIFFICULTY], on all interfaces by default: miners must reach it (repeat for more ports)")
	fs.Var(&stratumFlag{c: c, tls: true}, "stratum-tls", "Stratum over TLS port HOST:PORT[=START_DIFFICULTY], with --tls-cert and --tls-key (repeatable)")
	fs.StringVar(&c.StratumV2, "stratum-v2", c.StratumV2, "Stratum V2 port HOST:PORT (encrypted, binary; keys in DATA/v2, the URL for miners printed at start)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate (chain) for the --stratum-tls ports")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key for the --stratum-tls ports")
	fs.StringVar(&c.API, "api", c.API, "HTTP listen address of the API, dashboard and /metrics (loopback by default)")
	fs.StringVar(&c.Data, "data", c.Data, "data directory (share stream and database)")
	fs.StringVar(&c.Tag, "tag", c.Tag, "text written into every coinbase")
	fs.Float64Var(&c.StartDiff, "start-difficulty", c.StartDiff, "first difficulty of a connection (0: the pool's default for the network)")
	fs.Float64Var(&c.MinDiff, "min-difficulty", c.MinDiff, "lowest vardiff difficulty (0: the pool's default for the network)")
	fs.DurationVar(&c.ShareInterval, "share-interval", c.ShareInterval, "vardiff target time between shares (0: the pool's default)")
	fs.IntVar(&c.Extranonce2Size, "extranonce2-size", c.Extranonce2Size, "bytes of extranonce2 miners roll, 2 to 16 (0: the pool's default, 8)")
	fs.StringVar(&c.VersionMask, "version-mask", c.VersionMask, "BIP 310 version bits miners may roll, hex within 1fffe000 (default 1fffe000)")
	fs.DurationVar(&c.PollInterval, "poll-interval", c.PollInterval, "how often to poll the node for a new tip (0: the node package's default)")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP, "connections allowed from one IP (0: the Stratum server's default)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json (default: hashgrid --log-format, else $HASHGRID_LOG_FORMAT, else text)")
	fs.StringVar(&c.PayoutScheme, "payout-scheme", c.PayoutScheme, "pplns, pps, fpps or solo (empty: the coinbase pays --payout-address, no books)")
	fs.Float64Var(&c.PPLNSWindow, "pplns-window", c.PPLNSWindow, "PPLNS window N as a multiple of network difficulty")
	fs.Int64Var(&c.PoolFeeBps, "pool-fee-bps", c.PoolFeeBps, "pool fee in basis points (100 = 1%)")
	fs.Int64Var(&c.CoinbaseThreshold, "coinbase-threshold", c.CoinbaseThreshold, "PPLNS credits of at least this many sat are paid by the block's coinbase (0: none)")
	fs.Int64Var(&c.PayoutThreshold, "payout-threshold", c.PayoutThreshold, "balances of at least this many sat are paid out")
	fs.DurationVar(&c.PayoutInterval, "payout-interval", c.PayoutInterval, "how often balances are paid out")
	fs.Int64Var(&c.PPSFunding, "pps-funding", c.PPSFunding, "sat the operator backs PPS/FPPS credits with, beyond the blocks found")
	fs.DurationVar(&c.ShareRetention, "share-retention", c.ShareRetention, "keep raw shares at least this long, and while payouts and verify need them (0: for ever)")
	fs.StringVar(&c.Wallet, "wallet", c.Wallet, "Bitcoin Core wallet RPC URL for sendmany (default: export payout batches to DATA/payouts)")
	fs.StringVar(&c.AlertWebhook, "alert-webhook", c.AlertWebhook, "URL alerts are POSTed to as JSON (they are logged either way)")
	fs.DurationVar(&c.AlertWorkerQuiet, "alert-worker-quiet", c.AlertWorkerQuiet, "alert when a worker sends no share for this long (0: never)")
	fs.Float64Var(&c.AlertRejectRate, "alert-reject-rate", c.AlertRejectRate, "alert when the reject rate over 10 minutes is above this fraction (0: never)")
	fs.StringVar(&c.AdminToken, "admin-token", c.AdminToken, "token for the API's admin actions; shows in process listings: prefer --admin-token-file or $"+envAdminToken+" (empty everywhere: admin actions disabled)")
	fs.StringVar(&c.AdminTokenFile, "admin-token-file", c.AdminTokenFile, "file holding the admin token")
	fs.StringVar(&c.Role, "role", c.Role, "all (one process), frontend (Stratum, publishing to --nats) or accounting (--nats into --postgres, leader-elected)")
	fs.StringVar(&c.Postgres, "postgres", c.Postgres, "postgres://USER@HOST:PORT/DB: keep the books in PostgreSQL (a password here shows in process listings: prefer --postgres-file or $"+envPostgres+")")
	fs.StringVar(&c.PostgresFile, "postgres-file", c.PostgresFile, "file holding the --postgres URL")
	fs.Var(&listFlag{dst: &c.NATS}, "nats", "NATS server nats://HOST:PORT of the JetStream cluster (repeatable)")
	fs.IntVar(&c.NATSReplicas, "nats-replicas", c.NATSReplicas, "replicas of the share stream: 1 or 3")
	fs.DurationVar(&c.NATSMaxAge, "nats-max-age", c.NATSMaxAge, "how long the share stream keeps a share: how long accounting may be down without losing any (the same in every process of the pool)")
	fs.IntVar(&c.FrontEnd, "frontend", c.FrontEnd, "this front-end's number (--role frontend), unique in the pool")
	fs.StringVar(&c.Ack, "ack", c.Ack, "when a front-end answers a share: replicated (the JetStream publish is acknowledged) or local (fsynced here, then shipped)")
	fs.StringVar(&c.NodePasswordFile, "node-password-file", c.NodePasswordFile, "file holding the RPC password of every --node and --wallet URL that names a user but no password (else $"+envNodePassword+")")
	return configFile
}

// parsePoolFlags builds the pool's configuration from its command line: the defaults,
// then the --config file, then the flags the user gave, then the secrets.
func parsePoolFlags(args []string, env Env) (PoolConfig, error) {
	cfg := DefaultPoolConfig()
	fs := newFlagSet("pool", env)
	configFile := bindPoolFlags(fs, &cfg)
	if err := parseFlags(fs, args); err != nil {
		return cfg, err
	}
	if *configFile != "" {
		fileCfg := DefaultPoolConfig()
		if err := decodePoolFile(*configFile, &fileCfg); err != nil {
			return cfg, err
		}
		// The flags the user gave, and only those, go over the file: the flag package
		// calls Set only for flags present in args, so parsing the same args again onto
		// the file's values applies exactly the set that fs.Visit would list, repeated
		// flags (--node) included.
		again := flag.NewFlagSet("pool", flag.ContinueOnError)
		again.SetOutput(io.Discard)
		bindPoolFlags(again, &fileCfg)
		if err := again.Parse(args); err != nil {
			return cfg, fmt.Errorf("%w: %v", ErrUsage, err)
		}
		cfg = fileCfg
	}
	if err := cfg.readSecrets(env.Getenv); err != nil {
		return cfg, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return cfg, nil
}

// decodePoolFile reads a TOML file over c: keys the file lacks keep c's values.
func decodePoolFile(path string, c *PoolConfig) error {
	md, err := toml.DecodeFile(path, c)
	if err != nil {
		return fmt.Errorf("%w: config %s: %v", ErrUsage, path, err)
	}
	// `stratum` is one address or [[stratum]] tables: read on its own.
	var ports struct {
		Stratum *stratumKey `toml:"stratum"`
	}
	if _, err := toml.DecodeFile(path, &ports); err != nil {
		return fmt.Errorf("%w: config %s: %v", ErrUsage, path, err)
	}
	for _, k := range md.Undecoded() {
		if k[0] != "stratum" {
			return fmt.Errorf("%w: config %s: unknown setting %q", ErrUsage, path, k.String())
		}
	}
	if ports.Stratum != nil {
		c.Stratum, c.StratumPorts = "", nil
		for _, p := range ports.Stratum.ports {
			if c.Stratum == "" && !p.TLS {
				c.Stratum = p.Listen
				if p.StartDiff > 0 {
					c.Stratum += "=" + strconv.FormatFloat(p.StartDiff, 'g', -1, 64)
				}
				continue
			}
			c.StratumPorts = append(c.StratumPorts, p)
		}
	}
	return nil
}

// readSecrets fills the admin token and node passwords from their files or the
// environment (getenv may be nil).
func (c *PoolConfig) readSecrets(getenv func(string) string) error {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	tok, err := secret("admin token", c.AdminToken, "--admin-token", c.AdminTokenFile, "--admin-token-file", getenv(envAdminToken))
	if err != nil {
		return err
	}
	c.AdminToken = tok
	if c.Postgres, err = secret("PostgreSQL URL", c.Postgres, "--postgres", c.PostgresFile, "--postgres-file", getenv(envPostgres)); err != nil {
		return err
	}
	pw, err := secret("node password", "", "", c.NodePasswordFile, "--node-password-file", getenv(envNodePassword))
	if err != nil || pw == "" {
		return err
	}
	nodes := make([]string, len(c.Nodes))
	for i, u := range c.Nodes {
		if nodes[i], err = withPassword(u, pw); err != nil {
			return fmt.Errorf("--node: %v", err)
		}
	}
	c.Nodes = nodes
	if c.Wallet != "" {
		if c.Wallet, err = withPassword(c.Wallet, pw); err != nil {
			return fmt.Errorf("--wallet: %v", err)
		}
	}
	return nil
}

// secret picks a secret's value: given directly, else read from file, else from the
// environment.
func secret(what, value, valueFlag, file, fileFlag, env string) (string, error) {
	switch {
	case value != "" && file != "":
		return "", fmt.Errorf("%s given twice: %s and %s", what, valueFlag, fileFlag)
	case value != "":
		return value, nil
	case file != "":
		return readSecretFile(file, fileFlag)
	}
	return env, nil
}

// readSecretFile reads a secret from the first line of a file.
func readSecretFile(path, flagName string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s: %s is larger than %d bytes", flagName, path, maxSecretFile)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("%s: %s is empty", flagName, path)
	}
	return line, nil
}

// withPassword adds pw to an RPC URL that names a user but no password. A URL with
// its own password keeps it.
func withPassword(raw, pw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url's error repeats the URL, which may hold a password.
		return "", errors.New("not a URL")
	}
	if u.User == nil {
		return "", fmt.Errorf("%s://%s names no user for the password (want http://USER@HOST:PORT)", u.Scheme, u.Host)
	}
	if _, has := u.User.Password(); has {
		return raw, nil
	}
	u.User = url.UserPassword(u.User.Username(), pw)
	return u.String(), nil
}

// Validate checks the configuration before anything starts. Its errors name the flag
// (the TOML key is the flag's name with '_' for '-').
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
	if _, _, err := net.SplitHostPort(c.API); err != nil {
		return fmt.Errorf("--api %q: want HOST:PORT or :PORT", c.API)
	}
	ports, err := c.Ports()
	if err != nil {
		return err
	}
	if len(ports) == 0 {
		return errors.New("no --stratum port given")
	}
	seen := map[string]bool{}
	hasTLS := false
	for _, p := range ports {
		if _, port, _ := net.SplitHostPort(p.Listen); seen[p.Listen] && port != "0" {
			return fmt.Errorf("Stratum port %s given twice", p.Listen)
		}
		seen[p.Listen] = true
		hasTLS = hasTLS || p.TLS
	}
	if c.StratumV2 != "" {
		if _, port, err := net.SplitHostPort(c.StratumV2); err != nil {
			return fmt.Errorf("--stratum-v2 %q: want HOST:PORT or :PORT", c.StratumV2)
		} else if seen[c.StratumV2] && port != "0" {
			return fmt.Errorf("--stratum-v2 %s is also a Stratum V1 port", c.StratumV2)
		}
	}
	if hasTLS && (c.TLSCert == "" || c.TLSKey == "") {
		return errors.New("--stratum-tls needs --tls-cert and --tls-key")
	}
	if !hasTLS && (c.TLSCert != "" || c.TLSKey != "") {
		return errors.New("--tls-cert and --tls-key are for --stratum-tls ports, and none is given")
	}
	if len(c.Tag) > pool.MaxTagBytes {
		return fmt.Errorf("--tag is %d bytes, longer than %d", len(c.Tag), pool.MaxTagBytes)
	}
	if c.Extranonce2Size != 0 && (c.Extranonce2Size < 2 || c.Extranonce2Size > 16) {
		return fmt.Errorf("--extranonce2-size %d: want 2 to 16 bytes, or 0 for the pool's default", c.Extranonce2Size)
	}
	if _, err := c.versionMask(); err != nil {
		return err
	}
	for _, d := range []struct {
		flag string
		v    float64
	}{{"--start-difficulty", c.StartDiff}, {"--min-difficulty", c.MinDiff}} {
		if math.IsNaN(d.v) || math.IsInf(d.v, 0) || d.v < 0 {
			return fmt.Errorf("%s %g: want a positive difficulty, or 0 for the pool's default", d.flag, d.v)
		}
	}
	if c.StartDiff > 0 && c.MinDiff > 0 && c.StartDiff < c.MinDiff {
		return fmt.Errorf("--start-difficulty %g is below --min-difficulty %g", c.StartDiff, c.MinDiff)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--share-interval", c.ShareInterval}, {"--poll-interval", c.PollInterval}, {"track_interval", c.TrackInterval},
		{"alert_interval", c.AlertInterval}, {"--payout-interval", c.PayoutInterval}, {"--share-retention", c.ShareRetention}} {
		if d.v < 0 {
			return fmt.Errorf("%s %s is negative", d.flag, d.v)
		}
	}
	if c.MaxConnsPerIP < 0 {
		return fmt.Errorf("--max-conns-per-ip %d is negative", c.MaxConnsPerIP)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("--log-level: %v", err)
	}
	if err := checkLogFormat(c.LogFormat); err != nil {
		return fmt.Errorf("--log-format: %v", err)
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
	return c.validateCluster()
}

func (c *PoolConfig) alertSettings() alert.Settings {
	return alert.Settings{WorkerQuiet: c.AlertWorkerQuiet, RejectRate: c.AlertRejectRate}
}

// versionMask parses VersionMask: 0 when unset (the pool's default).
func (c *PoolConfig) versionMask() (uint32, error) {
	if c.VersionMask == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(c.VersionMask, "0x"), 16, 32)
	if err != nil || v == 0 || uint32(v)&^pool.DefaultVersionMask != 0 {
		return 0, fmt.Errorf("--version-mask %q: want non-zero hex bits within %08x", c.VersionMask, pool.DefaultVersionMask)
	}
	return uint32(v), nil
}
