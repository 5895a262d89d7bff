package cli

import (
	"net"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/market"
	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
	"github.com/hashgrid/hashgrid/stratum/v2/sv2"
)

// v2Miner is a Stratum V2 test client.
type v2Miner struct {
	t  *testing.T
	nc net.Conn
	nx *noise.Conn
}

// dialV2Miner connects to a stratum2+tcp URL, trusting the key it names.
func dialV2Miner(t *testing.T, url string) *v2Miner {
	t.Helper()
	hostPort, key, err := noise.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.DialTimeout("tcp", hostPort, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nx, err := noise.Client(nc, noise.ClientConfig{Authority: key})
	if err != nil {
		t.Fatal(err)
	}
	return &v2Miner{t: t, nc: nc, nx: nx}
}

func (m *v2Miner) send(msg sv2.Message) {
	m.t.Helper()
	p, err := msg.Encode(nil)
	if err != nil {
		m.t.Fatal(err)
	}
	var ext uint16
	if sv2.IsChannelMsg(msg.MsgType()) {
		ext = sv2.ChannelMsgBit
	}
	if err := m.nx.WriteFrame(ext, msg.MsgType(), p); err != nil {
		m.t.Fatal(err)
	}
}

func (m *v2Miner) recv(d time.Duration) sv2.Message {
	m.t.Helper()
	m.nc.SetReadDeadline(time.Now().Add(d))
	h, p, err := m.nx.ReadFrame()
	if err != nil {
		m.t.Fatal(err)
	}
	msg, err := sv2.Decode(sv2.Header{ExtensionType: h.ExtensionType, MsgType: h.MsgType, Length: h.Length}, p)
	if err != nil {
		m.t.Fatal(err)
	}
	return msg
}

// TestMarketStratumV2Seller runs the market with --stratum-v2 in front of a pool on
// btcd: a V2 seller opens a standard channel, gets the order's work through the
// bridge, and its shares are accepted and counted for the order.
func TestMarketStratumV2Seller(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	btcd := regtest.StartT(t)
	addr := regtest.TestAddress()
	p, stopPool := startPool(t, PoolConfig{Nodes: []string{btcd.RPCURL()}, Network: "regtest", PayoutAddress: addr,
		Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(), LogLevel: "warn"})
	defer stopPool()
	// 2^-31: about half of all headers meet a seller's target.
	const sellerDiff = 4.656612873077393e-10
	mr, stopMarket := startMarket(t, MarketConfig{Stratum: "127.0.0.1:0", StratumV2: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(),
		Network: "regtest", LogLevel: "info", AdminToken: "e2e-admin", AllowPrivateDestinations: true,
		SellerMinDiff: sellerDiff, SellerStartDiff: sellerDiff})
	defer stopMarket()
	if mr.V2URL == "" || mr.StratumV2 == "" {
		t.Fatalf("market ready without its V2 port: %+v", mr)
	}
	c := marketClient{t: t, base: "http://" + mr.API}
	var buyer market.AccountCreated
	c.must("POST", "/api/v1/accounts", "", nil, &buyer)
	c.must("POST", "/api/v1/admin/deposits", "e2e-admin", market.DepositRequest{Account: buyer.ID, Amount: 5_000_000_000, Reference: "v2"}, nil)
	var order market.OrderView
	c.must("POST", "/api/v1/orders", buyer.APIKey, market.OrderRequest{PoolURL: "stratum+tcp://" + p.Stratum, PoolUser: addr + ".bought",
		PoolPassword: "d=0.0002", Price: 1_000_000_000_000_000, Budget: 4_000_000_000}, &order)

	m := dialV2Miner(t, mr.V2URL)
	m.send(&sv2.SetupConnection{Protocol: sv2.ProtocolMining, MinVersion: 2, MaxVersion: 2, Vendor: "e2e", Firmware: "seller"})
	if _, ok := m.recv(10 * time.Second).(*sv2.SetupConnectionSuccess); !ok {
		t.Fatal("no SetupConnection.Success")
	}
	var all sv2.U256
	for i := range all {
		all[i] = 0xff
	}
	m.send(&sv2.OpenStandardMiningChannel{RequestID: 1, UserIdentity: addr + ".v2seller", NominalHashRate: 1e6, MaxTarget: all})
	var (
		target sv2.U256
		jobs   = map[uint32]*sv2.NewMiningJob{}
		job    *sv2.NewMiningJob // the newest active job
		tip    *sv2.SetNewPrevHash
	)
	// handle follows the work as the market hands it out; it reports a share's answer.
	handle := func(msg sv2.Message) (answered, ok bool) {
		switch msg := msg.(type) {
		case *sv2.OpenStandardMiningChannelSuccess:
			target = msg.Target
		case *sv2.SetTarget:
			target = msg.MaximumTarget
		case *sv2.NewMiningJob:
			jobs[msg.JobID] = msg
			if msg.MinNTime.Set && tip != nil {
				job = msg
			}
		case *sv2.SetNewPrevHash:
			tip, job = msg, jobs[msg.JobID]
		case *sv2.OpenMiningChannelError:
			t.Fatalf("channel refused: %s", msg.ErrorCode)
		case *sv2.SubmitSharesSuccess:
			return true, true
		case *sv2.SubmitSharesError:
			if msg.ErrorCode != sv2.CodeStaleShare {
				t.Fatalf("share refused: %s", msg.ErrorCode)
			}
			return true, false // the work moved on meanwhile
		}
		return false, false
	}
	for job == nil {
		handle(m.recv(60 * time.Second))
	}
	accepted, stale := 0, 0
	for seq, nonce := uint32(1), uint32(0); accepted < 5; nonce++ {
		sub := &sv2.SubmitSharesStandard{ChannelID: job.ChannelID, SequenceNumber: seq, JobID: job.JobID, Nonce: nonce, NTime: tip.MinNTime, Version: job.Version}
		var hdr [80]byte
		sv2.StandardHeader(&hdr, sub, &job.MerkleRoot, tip)
		h := pow.DoubleSHA256(hdr[:])
		if !pow.HashTarget(&h).LE(target.Target()) {
			continue
		}
		m.send(sub)
		seq++
		for {
			answered, ok := handle(m.recv(30 * time.Second))
			if !answered {
				continue
			}
			if ok {
				accepted++
			} else if stale++; stale > 10 {
				t.Fatalf("%d shares stale, %d accepted", stale, accepted)
			}
			break
		}
	}
	t.Logf("%d shares accepted, %d stale as the work moved on", accepted, stale)
	waitFor(t, 30*time.Second, "the V2 seller on the order", func() bool { return c.sellers(order.ID) == 1 })
}
