package cli

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid/node/regtest"
)

// TestExamplePoolConfig parses examples/pool.toml as `hashgrid pool --config` does and
// checks that flags override it and that the result validates.
func TestExamplePoolConfig(t *testing.T) {
	var stderr bytes.Buffer
	env := Env{Stderr: &stderr}
	cfg, err := parsePoolFlags([]string{"--config", "../examples/pool.toml", "--stratum", "127.0.0.1:0"}, env)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, stderr.String())
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if cfg.Stratum != "127.0.0.1:0" || cfg.API != "127.0.0.1:8080" || cfg.Network != "regtest" || len(cfg.Nodes) != 1 {
		t.Errorf("config %+v", cfg)
	}
	if cfg.ShareInterval != 5*time.Second || cfg.PayoutScheme != "pplns" || cfg.PoolFeeBps != 100 || cfg.AlertWorkerQuiet != 10*time.Minute {
		t.Errorf("settings not read: share interval %v scheme %q fee %d quiet %v", cfg.ShareInterval, cfg.PayoutScheme, cfg.PoolFeeBps, cfg.AlertWorkerQuiet)
	}
	// Flags win over the file, for the settings added by later packages too.
	cfg, err = parsePoolFlags([]string{"--config", "../examples/pool.toml", "--payout-scheme", "pps", "--pool-fee-bps", "5", "--alert-reject-rate", "0.2"}, env)
	if err != nil || cfg.PayoutScheme != "pps" || cfg.PoolFeeBps != 5 || cfg.AlertRejectRate != 0.2 {
		t.Errorf("flags over file: %v scheme %q fee %d reject %v", err, cfg.PayoutScheme, cfg.PoolFeeBps, cfg.AlertRejectRate)
	}
	// An unknown key is an error, not a silently ignored setting.
	if _, err := parsePoolFlags([]string{"--config", "testdata/unknown-key.toml"}, env); err == nil {
		t.Error("a config with an unknown key was accepted")
	}
}

// writeFile writes content to name in a new temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// minimalPoolTOML is the least a pool's file needs to say.
func minimalPoolTOML() string {
	return "nodes = [\"http://u:p@127.0.0.1:18443\"]\nnetwork = \"regtest\"\npayout_address = \"" + regtest.TestAddress() + "\"\n"
}

// TestPoolConfigMerge checks the one order a configuration is filled in: defaults,
// then the file, then the flags the user gave.
func TestPoolConfigMerge(t *testing.T) {
	env := Env{Stderr: &bytes.Buffer{}}
	def := DefaultPoolConfig()

	// A minimal file keeps every default it does not name: the payout thresholds
	// above all, which a file once reset to 0 (every 1-sat balance paid as dust).
	minimal := writeFile(t, "minimal.toml", minimalPoolTOML()+"payout_scheme = \"pplns\"\n")
	cfg, err := parsePoolFlags([]string{"--config", minimal}, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	if cfg.PayoutThreshold != defaultPayoutThreshold || cfg.CoinbaseThreshold != defaultCoinbaseThreshold ||
		cfg.PPLNSWindow != defaultPPLNSWindow || cfg.PayoutInterval != defaultPayoutInterval {
		t.Errorf("minimal file: payout threshold %d coinbase threshold %d window %g interval %v, want the defaults %d %d %g %v",
			cfg.PayoutThreshold, cfg.CoinbaseThreshold, cfg.PPLNSWindow, cfg.PayoutInterval,
			defaultPayoutThreshold, defaultCoinbaseThreshold, defaultPPLNSWindow, defaultPayoutInterval)
	}
	if cfg.Stratum != def.Stratum || cfg.API != def.API || cfg.Data != def.Data || cfg.Tag != def.Tag || cfg.LogLevel != def.LogLevel {
		t.Errorf("minimal file: listen %q api %q data %q tag %q level %q, want the defaults", cfg.Stratum, cfg.API, cfg.Data, cfg.Tag, cfg.LogLevel)
	}
	pc, err := cfg.payoutConfig(mustParams(t, "regtest"))
	if err != nil {
		t.Fatal(err)
	}
	if pc.PayoutThreshold != defaultPayoutThreshold || pc.Split.DirectMin != defaultCoinbaseThreshold {
		t.Errorf("payout service gets threshold %d, coinbase minimum %d", pc.PayoutThreshold, pc.Split.DirectMin)
	}

	// The file wins over a default, an explicit 0 included; a flag wins over the file;
	// a repeated flag replaces the file's list instead of adding to it.
	file := writeFile(t, "pool.toml", minimalPoolTOML()+
		"coinbase_threshold = 0\npayout_threshold = 5000\ntag = \"/file/\"\napi = \"127.0.0.1:9999\"\nzmq = [\"tcp://127.0.0.1:28332\"]\n")
	cfg, err = parsePoolFlags([]string{"--config", file, "--payout-threshold", "7000", "--node", "http://a:b@127.0.0.1:1", "--node", "http://c:d@127.0.0.1:2"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CoinbaseThreshold != 0 || cfg.Tag != "/file/" || cfg.API != "127.0.0.1:9999" || len(cfg.ZMQ) != 1 {
		t.Errorf("file over defaults: coinbase threshold %d tag %q api %q zmq %v", cfg.CoinbaseThreshold, cfg.Tag, cfg.API, cfg.ZMQ)
	}
	if cfg.PayoutThreshold != 7000 {
		t.Errorf("flag over file: payout threshold %d, want 7000", cfg.PayoutThreshold)
	}
	if strings.Join(cfg.Nodes, " ") != "http://a:b@127.0.0.1:1 http://c:d@127.0.0.1:2" {
		t.Errorf("--node twice over the file's nodes: %v", cfg.Nodes)
	}
	// Work shape: the file's, then the flag's; unset keeps the pool's defaults.
	shaped := writeFile(t, "shaped.toml", minimalPoolTOML()+"extranonce2_size = 4\nversion_mask = \"00ffe000\"\n")
	cfg, err = parsePoolFlags([]string{"--config", shaped, "--extranonce2-size", "6"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := cfg.versionMask(); err != nil || m != 0x00ffe000 || cfg.Extranonce2Size != 6 {
		t.Errorf("extranonce2 size %d, version mask %08x (%v): want 6 and 00ffe000", cfg.Extranonce2Size, m, err)
	}
	// Flags alone start from the same defaults.
	cfg, err = parsePoolFlags([]string{"--node", "http://u:p@127.0.0.1:1"}, env)
	if err != nil || cfg.PayoutThreshold != defaultPayoutThreshold || cfg.API != def.API {
		t.Errorf("flags alone: %v, payout threshold %d api %q", err, cfg.PayoutThreshold, cfg.API)
	}
}

func mustParams(t *testing.T, name string) *chaincfg.Params {
	t.Helper()
	p, err := networkParams(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPoolConfigInvalid checks that bad values, from a file or a flag, stop the pool
// with an error naming the setting.
func TestPoolConfigInvalid(t *testing.T) {
	tests := []struct {
		name  string
		toml  string
		flags []string
		want  string
	}{
		{"negative start difficulty", "start_difficulty = -1\n", nil, "--start-difficulty -1"},
		{"start below min", "start_difficulty = 0.5\nmin_difficulty = 1.0\n", nil, "below --min-difficulty"},
		{"negative share interval", "", []string{"--share-interval", "-5s"}, "--share-interval -5s is negative"},
		{"api without port", "api = \"127.0.0.1\"\n", nil, `--api "127.0.0.1"`},
		{"stratum without port", "", []string{"--stratum", "3333"}, `"3333": want HOST:PORT`},
		{"stratum bad difficulty", "", []string{"--stratum", ":3334=fast"}, `start difficulty "fast"`},
		{"tls port without a certificate", "", []string{"--stratum-tls", ":3443"}, "--stratum-tls needs --tls-cert and --tls-key"},
		{"stratum table with an unknown key", "[[stratum]]\nlisten = \":3334\"\nstart_diff = 5\n", nil, `unknown setting "start_diff"`},
		{"stratum port twice", "", []string{"--stratum", ":3333", "--stratum", ":3333=4"}, "given twice"},
		{"stratum v2 without port", "stratum_v2 = \"3336\"\n", nil, `--stratum-v2 "3336"`},
		{"stratum v2 on the V1 port", "", []string{"--stratum", ":3333", "--stratum-v2", ":3333"}, "also a Stratum V1 port"},
		{"bad log level", "log_level = \"loud\"\n", nil, `log level "loud"`},
		{"bad log format", "", []string{"--log-format", "xml"}, `unknown log format "xml"`},
		{"negative conns", "max_conns_per_ip = -1\n", nil, "--max-conns-per-ip -1"},
		{"negative payout threshold", "payout_scheme = \"pplns\"\npayout_threshold = -1\n", nil, "negative payout threshold"},
		{"tag too long", "tag = \"" + strings.Repeat("x", 200) + "\"\n", nil, "--tag is 200 bytes"},
		{"wrong type", "payout_threshold = \"lots\"\n", nil, "payout_threshold"},
		{"unknown role", "", []string{"--role", "boss"}, `--role "boss"`},
		{"frontend without nats", "", []string{"--role", "frontend", "--frontend", "1"}, "--role frontend needs --nats"},
		{"frontend without number", "", []string{"--role", "frontend", "--nats", "nats://127.0.0.1:4222"}, "needs --frontend"},
		{"frontend number too big", "", []string{"--role", "frontend", "--nats", "nats://127.0.0.1:4222", "--frontend", "256"}, "needs --frontend"},
		{"accounting without postgres", "", []string{"--role", "accounting", "--nats", "nats://127.0.0.1:4222"}, "needs --nats and --postgres"},
		{"nats on one process", "", []string{"--nats", "nats://127.0.0.1:4222"}, "--nats is for --role frontend"},
		{"two replicas", "role = \"accounting\"\nnats = [\"nats://127.0.0.1:4222\"]\npostgres = \"postgres://u@h/db\"\nnats_replicas = 2\n", nil, "--nats-replicas 2"},
		{"share stream kept ten minutes", "role = \"accounting\"\nnats = [\"nats://127.0.0.1:4222\"]\npostgres = \"postgres://u@h/db\"\n", []string{"--nats-max-age", "10m"}, "--nats-max-age 10m0s"},
		{"bad ack", "", []string{"--role", "frontend", "--frontend", "2", "--nats", "nats://127.0.0.1:4222", "--ack", "later"}, `--ack "later"`},
		{"bad postgres url", "", []string{"--postgres", "mysql://x"}, "want a postgres://"},
		{"extranonce2 too small", "extranonce2_size = 1\n", nil, "--extranonce2-size 1"},
		{"extranonce2 too large", "", []string{"--extranonce2-size", "17"}, "--extranonce2-size 17"},
		{"version mask outside BIP 320", "version_mask = \"ffffffff\"\n", nil, `--version-mask "ffffffff"`},
		{"version mask not hex", "", []string{"--version-mask", "wide"}, `--version-mask "wide"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, "pool.toml", minimalPoolTOML()+tt.toml)
			cfg, err := parsePoolFlags(append([]string{"--config", file}, tt.flags...), Env{Stderr: &bytes.Buffer{}})
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// TestPoolSecrets checks that the admin token and node passwords can be kept out of
// the command line: from a file or the environment, a value given directly first.
func TestPoolSecrets(t *testing.T) {
	tokenFile := writeFile(t, "token", "s3cret-token\n")
	pwFile := writeFile(t, "rpcpass", "rpc-pw\n")
	envOf := func(kv ...string) Env {
		return Env{Stderr: &bytes.Buffer{}, Getenv: func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}}
	}
	base := []string{"--node", "http://hashgrid@127.0.0.1:18443", "--node", "http://other:own@127.0.0.1:18444"}

	cfg, err := parsePoolFlags(append(base, "--admin-token-file", tokenFile, "--node-password-file", pwFile), envOf(envAdminToken, "from-env"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminToken != "s3cret-token" {
		t.Errorf("admin token from file: %q", cfg.AdminToken)
	}
	if cfg.Nodes[0] != "http://hashgrid:rpc-pw@127.0.0.1:18443" || cfg.Nodes[1] != "http://other:own@127.0.0.1:18444" {
		t.Errorf("node password from file: %v (a URL's own password is kept)", cfg.Nodes)
	}
	cfg, err = parsePoolFlags(base, envOf(envAdminToken, "from-env", envNodePassword, "env-pw"))
	if err != nil || cfg.AdminToken != "from-env" || cfg.Nodes[0] != "http://hashgrid:env-pw@127.0.0.1:18443" {
		t.Errorf("from the environment: %v token %q nodes %v", err, cfg.AdminToken, cfg.Nodes)
	}
	// The same keys in a TOML file.
	file := writeFile(t, "pool.toml", "nodes = [\"http://hashgrid@127.0.0.1:18443\"]\nnetwork = \"regtest\"\npayout_address = \""+regtest.TestAddress()+
		"\"\nadmin_token_file = \""+tokenFile+"\"\nnode_password_file = \""+pwFile+"\"\n")
	cfg, err = parsePoolFlags([]string{"--config", file}, envOf())
	if err != nil || cfg.AdminToken != "s3cret-token" || cfg.Nodes[0] != "http://hashgrid:rpc-pw@127.0.0.1:18443" {
		t.Errorf("from TOML *_file keys: %v token %q nodes %v", err, cfg.AdminToken, cfg.Nodes)
	}
	// Ambiguity and unreadable files are errors, and never print the secret.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{append(base, "--admin-token", "x", "--admin-token-file", tokenFile), "given twice"},
		{append(base, "--admin-token-file", filepath.Join(t.TempDir(), "missing")), "--admin-token-file"},
		{append(base, "--admin-token-file", writeFile(t, "empty", "\n")), "is empty"},
		{[]string{"--node", "http://127.0.0.1:18443", "--node-password-file", pwFile}, "names no user"},
	} {
		_, err := parsePoolFlags(tt.args, envOf())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want it to mention %q", tt.args, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "rpc-pw") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// TestPoolListenDefaults checks that the operator's surfaces (API, dashboard, admin
// actions, /metrics) listen on loopback by default and Stratum on every interface.
func TestPoolListenDefaults(t *testing.T) {
	cfg, err := parsePoolFlags([]string{"--node", "http://u:p@127.0.0.1:1"}, Env{Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(cfg.API)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		t.Errorf("API listens on %q by default, want a loopback address", cfg.API)
	}
	if host, _, _ := net.SplitHostPort(cfg.Stratum); host != "" {
		t.Errorf("Stratum listens on %q by default, want every interface", cfg.Stratum)
	}
}

// TestStratumPortsConfig checks that several Stratum ports, each with its own start
// difficulty, and TLS ports come from flags and from the file alike.
func TestStratumPortsConfig(t *testing.T) {
	env := Env{Stderr: &bytes.Buffer{}}
	want := []StratumPort{{Listen: ":3333"}, {Listen: ":3334", StartDiff: 5000}, {Listen: "0.0.0.0:3443", StartDiff: 64, TLS: true}}
	check := func(name string, cfg PoolConfig, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := cfg.Ports()
		if err != nil || len(got) != len(want) {
			t.Fatalf("%s: ports %+v, %v; want %+v", name, got, err, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: port %d is %+v, want %+v", name, i, got[i], want[i])
			}
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	cfg, err := parsePoolFlags([]string{"--node", "http://u:p@127.0.0.1:1", "--network", "regtest", "--payout-address", regtest.TestAddress(),
		"--stratum", ":3333", "--stratum", ":3334=5000", "--stratum-tls", "0.0.0.0:3443=64", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, env)
	check("flags", cfg, err)

	file := writeFile(t, "pool.toml", minimalPoolTOML()+"tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n"+
		"[[stratum]]\nlisten = \":3333\"\n[[stratum]]\nlisten = \":3334\"\nstart_difficulty = 5000\n"+
		"[[stratum]]\nlisten = \"0.0.0.0:3443\"\nstart_difficulty = 64\ntls = true\n")
	cfg, err = parsePoolFlags([]string{"--config", file}, env)
	check("[[stratum]] tables", cfg, err)

	// --stratum replaces the file's plain ports and keeps its TLS ones.
	cfg, err = parsePoolFlags([]string{"--config", file, "--stratum", "127.0.0.1:4000=2"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := cfg.Ports(); len(got) != 2 || got[0] != (StratumPort{Listen: "127.0.0.1:4000", StartDiff: 2}) || !got[1].TLS {
		t.Errorf("--stratum over the file's tables: %+v", got)
	}
	// One address, as before.
	cfg, err = parsePoolFlags([]string{"--config", writeFile(t, "one.toml", minimalPoolTOML()+"stratum = \":3999\"\n")}, env)
	if got, _ := cfg.Ports(); err != nil || len(got) != 1 || got[0].Listen != ":3999" {
		t.Errorf("stratum = \":3999\": %+v, %v", got, err)
	}
}

// TestStratumV2Config checks that --stratum-v2 and the TOML key stratum_v2 both set
// the V2 port, the flag over the file.
func TestStratumV2Config(t *testing.T) {
	file := writeFile(t, "pool.toml", minimalPoolTOML()+"stratum_v2 = \":3336\"\n")
	env := Env{Stderr: &bytes.Buffer{}}
	cfg, err := parsePoolFlags([]string{"--config", file}, env)
	if err != nil || cfg.Validate() != nil || cfg.StratumV2 != ":3336" {
		t.Fatalf("from the file: %v, %q", err, cfg.StratumV2)
	}
	cfg, err = parsePoolFlags([]string{"--config", file, "--stratum-v2", "127.0.0.1:4444"}, env)
	if err != nil || cfg.StratumV2 != "127.0.0.1:4444" {
		t.Fatalf("flag over the file: %v, %q", err, cfg.StratumV2)
	}
}
