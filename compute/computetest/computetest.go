// Package computetest starts what compute leasing's end-to-end tests need: a market
// with its compute book on a SQLite ledger, served over HTTP on loopback, and a
// sandbox runner that re-enters the test binary as the sandbox's child. It is used by
// the tests of compute/provider and power/controller, which run real agents against
// it.
package computetest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"net/http/httptest"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/compute/sandbox"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/market"
)

// ChildEnv, set to "1", makes a test binary the sandbox's child (see Main), as
// `hashgrid sandbox-exec` is in the real binary.
const ChildEnv = "HASHGRID_SANDBOX_CHILD"

// Main is a test package's TestMain: the sandbox's child when ChildEnv says so,
// otherwise the tests.
func Main(m *testing.M) {
	if os.Getenv(ChildEnv) == "1" {
		os.Exit(sandbox.ChildMain(os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// Market is a market with compute leasing on loopback.
type Market struct {
	Market *market.Market
	Ledger *ledger.Ledger
	Book   *compute.Book
	Base   string         // the HTTP API's base URL
	Runner sandbox.Runner // runs the sandbox's child from this test binary (see Main)
}

// Start starts a market and its compute book (cfg without Ledger, Accounts and
// Network, which it fills in: regtest), serves both over HTTP on loopback, and stops
// them when the test ends.
func Start(t testing.TB, cfg compute.Config) *Market {
	t.Helper()
	dir := t.TempDir()
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	m, err := market.New(market.Config{Network: &chaincfg.RegressionNetParams, Ledger: led, StatePath: filepath.Join(dir, "market.json")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	cfg.Ledger, cfg.Accounts, cfg.Network = led, m, &chaincfg.RegressionNetParams
	b, err := compute.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	t.Cleanup(b.Close)
	srv := httptest.NewServer(market.NewHandler(m, market.HTTPConfig{Compute: compute.NewHandler(b)}))
	t.Cleanup(srv.Close)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &Market{Market: m, Ledger: led, Book: b, Base: srv.URL,
		Runner: sandbox.Runner{Exe: exe, Env: []string{ChildEnv + "=1"}, CacheDir: filepath.Join(dir, "wasm-cache")}}
}

// Account opens a market account holding deposit satoshis.
func (m *Market) Account(t testing.TB, deposit int64) (id, key string) {
	t.Helper()
	id, key, err := m.Market.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	if deposit > 0 {
		if err := m.Market.Deposit(context.Background(), id, deposit, "deposit-"+id); err != nil {
			t.Fatal(err)
		}
	}
	return id, key
}

// PayAddr is a regtest P2WPKH address whose key hash is 20 bytes of i.
func PayAddr(t testing.TB, i byte) string {
	a, err := address.NewAddressWitnessPubKeyHash(bytes.Repeat([]byte{i}, 20), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	return a.EncodeAddress()
}

// Log writes what an agent logs to the test's log.
type Log struct{ T testing.TB }

func (w Log) Write(p []byte) (int, error) {
	w.T.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// WaitFor polls cond every 50 ms until it holds, and fails the test after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
