package miner

import (
	"context"
	"net"
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

// TestFailover: the miner starts on a pool that is down, mines on the next one, and
// when that one stops, goes on to the third; every share it found was answered.
func TestFailover(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "stratum+tcp://" + dead.Addr().String()
	dead.Close()
	var pools []*bench.Server
	for range 2 {
		s, err := bench.StartServer(context.Background(), bench.ServerConfig{Listen: "127.0.0.1:0", Data: t.TempDir(), Txs: 10})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		pools = append(pools, s)
	}
	m, err := New(Config{URL: deadURL, Failover: []string{"stratum+tcp://" + pools[0].Addr, "stratum+tcp://" + pools[1].Addr},
		User: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.t", Password: "d=0.00005", MaxRetryWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	wait := func(what string, cond func(Stats) bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond(m.Stats()) {
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("timed out waiting for %s: %+v", what, m.Stats())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("shares on the second pool", func(s Stats) bool { return s.Connects == 1 && s.Accepted >= 3 })
	pools[0].Close()
	before := m.Stats().Accepted
	wait("shares on the third pool", func(s Stats) bool { return s.Connects == 2 && s.Accepted >= before+3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Rejected != 0 {
		t.Errorf("%+v: shares rejected", st)
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
	for _, c := range []Config{{URL: "http://x:1", User: "u"}, {URL: "stratum+tcp://x", User: "u"}, {URL: "stratum+tcp://x:1"}, {URL: "stratum+tcp://x:1", User: "u", Failover: []string{"http://x:2"}},
		{URL: "stratum2+tcp://x:1", User: "u"}, {URL: "stratum2+tcp://x:1/notakey", User: "u"}, {URL: "stratum+tcp://x:1", User: "u", Failover: []string{"stratum2+tcp://x/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh"}}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
