package miner

import (
	"context"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/bench"
)

// TestMinerSharesAccepted mines against hashgrid's pool (on a synthetic template at
// mainnet difficulty, so no share is a block) with and without BIP 310 version rolling.
// Every share the miner finds must be accepted: the miner and the pool build coinbase,
// merkle root and header the same way, byte for byte.
func TestMinerSharesAccepted(t *testing.T) {
	s, err := bench.StartServer(context.Background(), bench.ServerConfig{Listen: "127.0.0.1:0", Data: t.TempDir(), Txs: 300})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, roll := range []bool{false, true} {
		m, err := New(Config{URL: "stratum+tcp://" + s.Addr, User: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.t", Password: "d=0.00005", VersionRoll: roll, Duration: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		st := m.Stats()
		t.Logf("version rolling %v: %+v", roll, st)
		if st.Accepted < 3 || st.Rejected != 0 || st.Errors != 0 || st.Blocks != 0 {
			t.Errorf("version rolling %v: %+v, want several accepted shares and nothing else", roll, st)
		}
	}
}

func TestDeposit(t *testing.T) {
	tests := []struct{ v, mask, want uint32 }{
		{0, 0x1fffe000, 0},
		{1, 0x1fffe000, 0x00002000},
		{3, 0x1fffe000, 0x00006000},
		{0xffff, 0x1fffe000, 0x1fffe000},
		{5, 0x00f0f000, 0x00005000},
	}
	for _, tt := range tests {
		if got := deposit(tt.v, tt.mask); got != tt.want {
			t.Errorf("deposit(%x, %08x) = %08x, want %08x", tt.v, tt.mask, got, tt.want)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []Config{{URL: "http://x:1", User: "u"}, {URL: "stratum+tcp://x", User: "u"}, {URL: "stratum+tcp://x:1"}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
