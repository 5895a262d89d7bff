package cli

import (
	"strings"
	"testing"

	"github.com/hashgrid/hashgrid/node/regtest"
)

// TestPayoutConfigValidate checks that bad payout settings stop the pool at start-up
// with an error naming the setting.
func TestPayoutConfigValidate(t *testing.T) {
	good := PoolConfig{Nodes: []string{"http://u:p@127.0.0.1:1"}, Network: "regtest", PayoutAddress: regtest.TestAddress(), Data: t.TempDir(),
		Stratum: "127.0.0.1:0", API: "127.0.0.1:0", LogLevel: "info",
		PayoutScheme: "pplns", PPLNSWindow: 2, PoolFeeBps: 150, CoinbaseThreshold: 1_000_000, PayoutThreshold: 100_000}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, s := range []string{"pps", "fpps", "solo", ""} {
		c := good
		c.PayoutScheme = s
		if err := c.Validate(); err != nil {
			t.Errorf("scheme %q: %v", s, err)
		}
	}
	tests := []struct {
		name string
		edit func(*PoolConfig)
		want string
	}{
		{"unknown scheme", func(c *PoolConfig) { c.PayoutScheme = "prop" }, `unknown scheme "prop"`},
		{"negative fee", func(c *PoolConfig) { c.PoolFeeBps = -1 }, "fee -1 bps out of range"},
		{"fee above 100%", func(c *PoolConfig) { c.PoolFeeBps = 10_001 }, "fee 10001 bps out of range"},
		{"mainnet address on regtest", func(c *PoolConfig) { c.PayoutAddress = "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2" }, "--payout-address"},
		{"negative window", func(c *PoolConfig) { c.PPLNSWindow = -2 }, "--pplns-window -2 out of range"},
		{"negative coinbase threshold", func(c *PoolConfig) { c.CoinbaseThreshold = -5 }, "negative coinbase threshold"},
		{"negative payout threshold", func(c *PoolConfig) { c.PayoutThreshold = -5 }, "negative payout threshold"},
		{"negative funding", func(c *PoolConfig) { c.PayoutScheme = "pps"; c.PPSFunding = -1 }, "funding -1 out of range"},
		{"wallet not a URL", func(c *PoolConfig) { c.Wallet = "127.0.0.1:8332" }, "--wallet must be"},
	}
	for _, tt := range tests {
		c := good
		tt.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tt.name, err, tt.want)
		}
	}
}

// TestPayoutFlags checks that the payout flags reach the configuration.
func TestPayoutFlags(t *testing.T) {
	cfg, err := parsePoolFlags([]string{"--node", "http://u:p@127.0.0.1:1", "--payout-scheme", "fpps", "--pool-fee-bps", "200",
		"--pplns-window", "4", "--pps-funding", "500000000", "--payout-threshold", "12345"}, Env{Stderr: &strings.Builder{}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PayoutScheme != "fpps" || cfg.PoolFeeBps != 200 || cfg.PPLNSWindow != 4 || cfg.PPSFunding != 500000000 || cfg.PayoutThreshold != 12345 {
		t.Errorf("parsed %+v", cfg)
	}
}

func TestVerifyUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--address", "x", "--api", "http://127.0.0.1:1"},
		{"--block", strings.Repeat("0", 64), "--api", "http://127.0.0.1:1"},
		{"--block", strings.Repeat("0", 64), "--address", "x", "--api", "ftp://x"},
	} {
		if _, err := runPayoutCLI(t, verifyCommand(), args...); err == nil || !strings.Contains(err.Error(), "usage") {
			t.Errorf("verify %v: err = %v, want a usage error", args, err)
		}
	}
}
