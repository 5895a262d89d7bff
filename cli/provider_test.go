package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid/compute"
)

// TestProviderCommand runs `hashgrid provider` against `hashgrid market`: the offer
// appears in the market's compute offers with what the machine has, and the agent
// prints its leases and earnings when it stops; `hashgrid provider status` prints them
// too.
func TestProviderCommand(t *testing.T) {
	mr, stop := startMarket(t, MarketConfig{Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(), Network: "regtest", LogLevel: "warn",
		ComputeInterval: time.Second})
	defer stop()
	_, key, err := mr.Market.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := address.NewAddressWitnessPubKeyHash(bytes.Repeat([]byte{3}, 20), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + mr.API
	if err := Run(context.Background(), []string{"provider", "--market", base, "--key", keyFile, "--payout-address", a.EncodeAddress(), "--job-log", "jobs.jsonl"},
		nil, nil, io.Discard, io.Discard); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--device-group") {
		t.Errorf("--job-log without --device-group: %v, want a usage error naming it", err)
	}
	jobLog := filepath.Join(t.TempDir(), "jobs.jsonl")
	args := []string{"provider", "--market", base, "--key", keyFile, "--payout-address", a.EncodeAddress(), "--name", "box", "--price", "5", "--cores", "1",
		"--job-log", jobLog, "--device-group", "cpu-a"}

	ctx, cancel := context.WithCancel(context.Background())
	var out, logs bytes.Buffer
	var mu sync.Mutex
	done := make(chan error, 1)
	go func() { done <- Run(ctx, args, nil, nil, lockedWriter{&mu, &out}, lockedWriter{&mu, &logs}) }()
	var offer compute.Offer
	deadline := time.Now().Add(30 * time.Second)
	for offer.Provider == "" {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no offer at the market; provider log:\n%s", logs.String())
		}
		offers, err := (&compute.Client{Base: base}).Offers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range offers {
			if o.Name == "box" {
				offer = o
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if offer.Resources.Cores != 1 || offer.Price != 5 || offer.Resources.Memory == 0 {
		t.Errorf("offer %+v: want 1 core at 5 sat/core-hour with the machine's memory", offer)
	}
	// The market's /metrics counts the provider and its core.
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`hashgrid_compute_providers{state="online"} 1`, `hashgrid_compute_cores{use="offered"} 1`,
		`hashgrid_compute_cores{use="leased"} 0`, "hashgrid_market_escrow_sat 0", "hashgrid_market_seller_connections 0"} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("provider: %v", err)
	}
	mu.Lock()
	printed := out.String()
	mu.Unlock()
	if !strings.Contains(printed, "provider "+offer.Provider+" (box)") || !strings.Contains(printed, "earned 0 sat") {
		t.Errorf("the agent printed no status at its end:\n%s", printed)
	}
	// The job log is opened for appending (a lease writes its record there: see
	// compute/provider's end-to-end test).
	if _, err := os.Stat(jobLog); err != nil {
		t.Errorf("--job-log: %v", err)
	}

	var st bytes.Buffer
	if err := Run(context.Background(), []string{"provider", "status", "--market", base, "--key", keyFile, "--id", offer.Provider}, nil, nil, &st, &st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.String(), "provider "+offer.Provider) || !strings.Contains(st.String(), "LEASE") {
		t.Errorf("provider status printed:\n%s", st.String())
	}

	for _, bad := range [][]string{
		{"provider", "--market", base, "--payout-address", a.EncodeAddress()}, // no key
		{"provider", "--market", base, "--key", keyFile},                      // no payout address
		{"provider", "status", "--market", base, "--key", keyFile},            // no id
	} {
		if err := Run(context.Background(), bad, nil, nil, &st, &st); !errors.Is(err, ErrUsage) {
			t.Errorf("%q: %v, want a usage error", bad, err)
		}
	}
}
