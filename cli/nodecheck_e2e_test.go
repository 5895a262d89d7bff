package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/node/regtest"
)

// A pool pointed at a node it cannot use for a reason only the operator can fix does
// not start: wrong credentials, or --network mainnet against a regtest node.
func TestPoolRefusesMisconfiguredNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	btcd := regtest.StartT(t)
	wrongPass := strings.Replace(btcd.RPCURL(), ":regtest@", ":wrong@", 1)
	for _, tc := range []struct {
		name, node, network, address, want string
	}{
		{"wrong password", wrongPass, "regtest", regtest.TestAddress(), "credentials"},
		{"mainnet against regtest", btcd.RPCURL(), "mainnet", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", `follows chain "regtest"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var logs bytes.Buffer
			start := time.Now()
			err := RunPool(ctx, PoolConfig{
				Nodes: []string{tc.node}, Network: tc.network, PayoutAddress: tc.address,
				Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(), LogLevel: "info",
			}, Env{Stdout: &logs, Stderr: &logs}, func(PoolReady) { t.Error("the pool started") })
			if !errors.Is(err, node.ErrMisconfigured) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("RunPool: %v, want a misconfiguration error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "wrong@") || strings.Contains(logs.String(), "wrong@") {
				t.Errorf("the password leaks: %v\n%s", err, logs.String())
			}
			t.Logf("refused in %s: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
}
