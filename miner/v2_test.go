package miner

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/bench"
	"github.com/hashgrid/hashgrid/stratum/v2/client"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
)

// startV2Pool runs hashgrid's benchmark pool with Stratum V2 served through the bridge
// at a fixed difficulty a CPU finds shares at, and returns it and its stratum2+tcp URL.
func startV2Pool(t *testing.T) (*bench.Server, string) {
	t.Helper()
	s, err := bench.StartServer(context.Background(), bench.ServerConfig{Listen: "127.0.0.1:0", Data: t.TempDir(), Txs: 300,
		FixedDiff: 0.00005, V2Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, s.V2URL
}

// TestMinerV2SharesAccepted mines through the V2 bridge on hashgrid's pool (mainnet
// difficulty, so no share is a block) on a standard channel (header-only: the pool's
// merkle root) and on an extended one (the miner builds the coinbase), with and
// without version rolling, on two threads. Every share must be accepted: the miner's
// header is the pool's, byte for byte.
func TestMinerV2SharesAccepted(t *testing.T) {
	_, url := startV2Pool(t)
	for _, kind := range []client.ChannelKind{client.Standard, client.Extended} {
		for _, roll := range []bool{false, true} {
			m, err := New(Config{URL: url, User: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.v2", Password: "d=0.00005",
				V2Channel: kind, VersionRoll: roll, Threads: 2, Duration: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			st := m.Stats()
			t.Logf("%s channel, version rolling %v: %+v", kind, roll, st)
			if st.Accepted < 3 || st.Rejected != 0 || st.Errors != 0 || st.Blocks != 0 || st.Connects != 1 {
				t.Errorf("%s channel, version rolling %v: %+v, want several accepted shares on one connection and nothing else", kind, roll, st)
			}
		}
	}
}

// TestMinerV2WrongAuthority: a URL whose key is not the pool's authority stops the
// miner with the certificate error instead of mining for an impostor.
func TestMinerV2WrongAuthority(t *testing.T) {
	_, url := startV2Pool(t)
	host, _, err := noise.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	other, err := noise.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{URL: noise.FormatURL(host, other.PublicKey()), User: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.v2", Duration: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = m.Run(context.Background())
	if !errors.Is(err, noise.ErrCertificate) {
		t.Fatalf("Run: %v, want the certificate refused", err)
	}
	if st := m.Stats(); st.Connects != 0 || st.Hashes != 0 {
		t.Errorf("%+v: mined for the impostor", st)
	}
}

// TestFailoverMixed: a failover list may mix V1 and V2 URLs; the miner goes from a V1
// pool that is down to the V2 one and mines there.
func TestFailoverMixed(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "stratum+tcp://" + dead.Addr().String()
	dead.Close()
	_, url := startV2Pool(t)
	m, err := New(Config{URL: deadURL, Failover: []string{url}, User: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.mixed",
		Duration: 3 * time.Second, MaxRetryWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Connects != 1 || st.Accepted == 0 || st.Rejected != 0 {
		t.Errorf("%+v: want shares accepted on the V2 pool after the dead V1 one", st)
	}
}
