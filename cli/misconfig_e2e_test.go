package cli

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/node/regtest"
)

// TestMisconfigurationIsReported runs a pool without a payout scheme on a real btcd and
// checks that what a newcomer gets wrong is said plainly: verify against a pool with no
// payout scheme, verify with an address that is not one, and a miner whose user the
// pool refuses (it must stop with an error, not retry until its duration ends, and the
// pool must log the refusal).
func TestMisconfigurationIsReported(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	btcd := regtest.StartT(t)
	var mu sync.Mutex
	var poolLog bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	readyc, errc := make(chan PoolReady, 1), make(chan error, 1)
	go func() {
		errc <- RunPool(ctx, PoolConfig{
			Nodes: []string{btcd.RPCURL()}, Network: "regtest", PayoutAddress: regtest.TestAddress(),
			Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(), Tag: "/misconfig/", LogLevel: "info",
		}, Env{Stdout: &bytes.Buffer{}, Stderr: lockedWriter{&mu, &poolLog}}, func(r PoolReady) { readyc <- r })
	}()
	var r PoolReady
	select {
	case r = <-readyc:
	case err := <-errc:
		t.Fatalf("pool: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("pool did not start")
	}
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("pool: %v", err)
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("pool log (tail):\n%s", tail(poolLog.String(), 4000))
			mu.Unlock()
		}
	}()
	api := "http://" + r.API
	block := strings.Repeat("0", 63) + "1"

	code, _, stderr := runMain(t, nil, "verify", "--api", api, "--block", block, "--address", "notanaddress")
	if code == 0 || !strings.Contains(stderr, "--address") || !strings.Contains(stderr, `invalid address "notanaddress"`) {
		t.Errorf("verify --address notanaddress: exit %d, want a non-zero exit naming the bad address:\n%s", code, stderr)
	}
	code, _, stderr = runMain(t, nil, "verify", "--api", api, "--block", block, "--address", regtest.TestAddress())
	if code == 0 || !strings.Contains(stderr, "runs no payout scheme") {
		t.Errorf("verify on a pool without payouts: exit %d, want it to say the pool runs no payout scheme:\n%s", code, stderr)
	}

	start := time.Now()
	code, _, stderr = runMain(t, nil, "miner", "--url", "stratum+tcp://"+r.Stratum, "--user", "notanaddress.rig1", "--duration", "60s")
	if el := time.Since(start); code == 0 || el > 30*time.Second || !strings.Contains(stderr, "refused to authorize") {
		t.Errorf("miner with an invalid address: exit %d after %s, want a quick non-zero exit saying why:\n%s", code, el.Round(time.Millisecond), tail(stderr, 2000))
	}
	waitFor(t, 10*time.Second, "the pool to log the refusal", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(poolLog.String(), "authorization refused") && strings.Contains(poolLog.String(), "notanaddress.rig1")
	})
}
