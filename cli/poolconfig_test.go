package cli

import (
	"bytes"
	"testing"
	"time"
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
	if cfg.Stratum != "127.0.0.1:0" || cfg.API != ":8080" || cfg.Network != "regtest" || len(cfg.Nodes) != 1 {
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
