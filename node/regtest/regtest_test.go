package regtest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/node/regtest"
)

func TestStartRestart(t *testing.T) {
	n := regtest.StartT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := n.Client().ChainInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Chain != "regtest" || info.Blocks != 1 {
		t.Fatalf("chain %q blocks %d, want regtest 1", info.Chain, info.Blocks)
	}
	if _, err := n.Client().Generate(ctx, 3); err != nil {
		t.Fatal(err)
	}
	addr := n.RPCAddr()
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if n.RPCAddr() != addr {
		t.Fatalf("rpc address %s after restart, want %s", n.RPCAddr(), addr)
	}
	info, err = n.Client().ChainInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Blocks != 1 {
		t.Fatalf("blocks after restart %d, want 1 (btcd deletes regtest chain)", info.Blocks)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if n.Running() {
		t.Fatal("still running after Stop")
	}
	if _, err := n.Client().ChainInfo(ctx); err == nil {
		t.Fatal("RPC answers after Stop")
	}
}

func TestMissingBinary(t *testing.T) {
	_, err := regtest.Start(context.Background(), regtest.Options{Dir: t.TempDir(), Binary: "btcd-does-not-exist"})
	if err == nil || !strings.Contains(err.Error(), "btcd not found") {
		t.Fatalf("err %v, want btcd not found", err)
	}
}

func TestAddresses(t *testing.T) {
	if got := regtest.TestAddress(); !strings.HasPrefix(got, "bcrt1q") {
		t.Errorf("TestAddress() = %q, want bcrt1q…", got)
	}
	if got := regtest.TestAddressP2PKH(); got[0] != 'm' && got[0] != 'n' {
		t.Errorf("TestAddressP2PKH() = %q, want m… or n…", got)
	}
}
