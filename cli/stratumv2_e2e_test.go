package cli

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
	"github.com/hashgrid/hashgrid/stratum/v2/sv2"
)

// TestPoolStratumV2 runs the pool on a real btcd with --stratum-v2: the URL it reports
// names its port and authority key, a V2 client that trusts that key opens a standard
// channel and gets a job, the pool sees the worker with its V2 user agent, a client
// given another key refuses the server, and the key survives a restart.
func TestPoolStratumV2(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	btcd := regtest.StartT(t)
	data := t.TempDir()
	cfg := PoolConfig{
		Nodes: []string{btcd.RPCURL()}, Network: "regtest", PayoutAddress: regtest.TestAddress(),
		Stratum: "127.0.0.1:0", StratumV2: "127.0.0.1:0", API: "127.0.0.1:0", Data: data, LogLevel: "info",
	}
	r, stopPool := startPool(t, cfg)
	hostPort, key, err := noise.ParseURL(r.V2URL)
	if err != nil || hostPort != r.StratumV2 {
		t.Fatalf("V2 URL %q (port %q): %v", r.V2URL, r.StratumV2, err)
	}

	nc, err := net.DialTimeout("tcp", r.StratumV2, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nx, err := noise.Client(nc, noise.ClientConfig{Authority: key})
	if err != nil {
		t.Fatal(err)
	}
	send := func(m sv2.Message) {
		t.Helper()
		p, err := m.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		var ext uint16
		if sv2.IsChannelMsg(m.MsgType()) {
			ext = sv2.ChannelMsgBit
		}
		if err := nx.WriteFrame(ext, m.MsgType(), p); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(want uint8) sv2.Message {
		t.Helper()
		nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		h, p, err := nx.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		m, err := sv2.Decode(sv2.Header{ExtensionType: h.ExtensionType, MsgType: h.MsgType, Length: h.Length}, p)
		if err != nil || m.MsgType() != want {
			t.Fatalf("got %s (%v), want %s", sv2.Name(h.MsgType), err, sv2.Name(want))
		}
		return m
	}
	send(&sv2.SetupConnection{Protocol: sv2.ProtocolMining, MinVersion: 2, MaxVersion: 2, Vendor: "e2e", Firmware: "1"})
	recv(sv2.TypeSetupConnectionSuccess)
	var all sv2.U256
	for i := range all {
		all[i] = 0xff
	}
	send(&sv2.OpenStandardMiningChannel{RequestID: 1, UserIdentity: regtest.TestAddress() + ".v2", NominalHashRate: 1e6, MaxTarget: all})
	recv(sv2.TypeOpenStandardMiningChannelSuccess)
	recv(sv2.TypeSetGroupChannel)
	recv(sv2.TypeNewMiningJob)
	recv(sv2.TypeSetNewPrevHash)
	found := false
	for _, s := range r.Pool.Sessions() {
		found = found || strings.HasPrefix(s.UserAgent, "sv2/e2e/1")
	}
	if !found {
		t.Errorf("no pool session with the V2 user agent: %+v", r.Pool.Sessions())
	}

	other, err := noise.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	nc2, err := net.DialTimeout("tcp", r.StratumV2, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	if _, err := noise.Client(nc2, noise.ClientConfig{Authority: other.PublicKey()}); err == nil {
		t.Error("a client given another authority key accepted the pool")
	}
	stopPool()

	r2, stop2 := startPool(t, cfg)
	defer stop2()
	if _, key2, err := noise.ParseURL(r2.V2URL); err != nil || key2 != key {
		t.Errorf("after a restart the URL is %q (%v), want authority key %s", r2.V2URL, err, key)
	}
}
