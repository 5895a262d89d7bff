package bridge_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/bench"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum/v2/bridge"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
	"github.com/hashgrid/hashgrid/stratum/v2/sv2"
)

// payAddr is a regtest address: user identities are payAddr.WORKER.
const payAddr = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"

// testDiff is the pool's only difficulty in these tests: 2^-31, whose target about
// half of all headers meet, so that a test finds valid and low shares alike in a few
// hashes.
var testDiff = hashgrid.Diff(2)

// sink records the pool's accepted shares.
type sink struct {
	mu     sync.Mutex
	shares []hashgrid.Share
}

func (s *sink) Record(sh *hashgrid.Share, done func(uint64, error)) {
	s.mu.Lock()
	s.shares = append(s.shares, *sh)
	n := len(s.shares)
	s.mu.Unlock()
	done(uint64(n), nil)
}

func (s *sink) recorded() []hashgrid.Share {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]hashgrid.Share(nil), s.shares...)
}

type env struct {
	pool  *pool.Pool
	sink  *sink
	srv   *bridge.Server
	addr  string
	key   noise.AuthorityKey
	drops chan string
}

// start serves a regtest pool on the benchmark template and a bridge to it on
// loopback, until the test ends.
func start(t *testing.T, lim bridge.Limits) *env {
	t.Helper()
	out, err := pool.SingleAddress(payAddr, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	d := testDiff.Float()
	e := &env{sink: &sink{}, drops: make(chan string, 100)}
	e.pool, err = pool.New(pool.Config{
		Network: &chaincfg.RegressionNetParams, Outputs: out,
		StartDiff: d, MinDiff: d, MaxDiff: d,
	}, nil, e.sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.pool.UpdateTemplate(bench.Template(900_000, 10), true); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	auth, err := noise.LoadOrCreateAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, err := noise.LoadOrCreateIdentity(dir, auth, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	e.key = auth.PublicKey()
	e.srv, err = bridge.NewServer(e.pool.Server(), bridge.Config{
		Identity: id,
		Limits:   lim,
		OnDrop: func(r string) {
			select {
			case e.drops <- r:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = l.Addr().String()
	go e.srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("bridge shutdown: %v", err)
		}
		e.pool.Shutdown(ctx)
	})
	return e
}

// waitDrop waits for the bridge to drop a peer for reason.
func (e *env) waitDrop(t *testing.T, reason string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r := <-e.drops:
			if r == reason {
				return
			}
		case <-deadline:
			t.Fatalf("no drop for %q", reason)
		}
	}
}

// miner is a V2 test client over the noise transport.
type miner struct {
	t  *testing.T
	nx *noise.Conn
}

func dial(t *testing.T, e *env) *miner {
	t.Helper()
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nx, err := noise.Client(nc, noise.ClientConfig{Authority: e.key})
	if err != nil {
		t.Fatal(err)
	}
	return &miner{t: t, nx: nx}
}

func (m *miner) send(msg sv2.Message) {
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

// recv reads the next message, failing the test after 10 s.
func (m *miner) recv() sv2.Message {
	m.t.Helper()
	msg, err := m.read()
	if err != nil {
		m.t.Fatal(err)
	}
	return msg
}

func (m *miner) read() (sv2.Message, error) {
	m.nx.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	h, p, err := m.nx.ReadFrame()
	if err != nil {
		return nil, err
	}
	return sv2.Decode(sv2.Header{ExtensionType: h.ExtensionType, MsgType: h.MsgType, Length: h.Length}, p)
}

func expect[T sv2.Message](m *miner) T {
	m.t.Helper()
	msg := m.recv()
	v, ok := msg.(T)
	if !ok {
		var want T
		m.t.Fatalf("got %s %+v, want %s", sv2.Name(msg.MsgType()), msg, sv2.Name(want.MsgType()))
	}
	return v
}

func setupMsg() *sv2.SetupConnection {
	return &sv2.SetupConnection{
		Protocol: sv2.ProtocolMining, MinVersion: 2, MaxVersion: 2,
		Flags:        sv2.FlagRequiresVersionRolling,
		EndpointHost: "127.0.0.1", EndpointPort: 3336,
		Vendor: "testvendor", HardwareVersion: "hw1", Firmware: "fw2", DeviceID: "d1",
	}
}

func (m *miner) setup() {
	m.t.Helper()
	m.send(setupMsg())
	if s := expect[*sv2.SetupConnectionSuccess](m); s.UsedVersion != 2 {
		m.t.Fatalf("used version %d, want 2", s.UsedVersion)
	}
}

// maxTarget is a max_target that limits nothing.
func maxTarget() sv2.U256 {
	var u sv2.U256
	for i := range u {
		u[i] = 0xff
	}
	return u
}

// standard is an open standard channel and its current job.
type standard struct {
	open *sv2.OpenStandardMiningChannelSuccess
	job  *sv2.NewMiningJob
	tip  *sv2.SetNewPrevHash
}

func (m *miner) openStandard(reqID uint32, worker string) standard {
	m.t.Helper()
	m.send(&sv2.OpenStandardMiningChannel{RequestID: reqID, UserIdentity: payAddr + "." + worker, NominalHashRate: 1e6, MaxTarget: maxTarget()})
	var s standard
	s.open = expect[*sv2.OpenStandardMiningChannelSuccess](m)
	if s.open.RequestID != reqID {
		m.t.Fatalf("request id %d, want %d", s.open.RequestID, reqID)
	}
	if g := expect[*sv2.SetGroupChannel](m); g.GroupChannelID != s.open.GroupChannelID || !contains(g.ChannelIDs, s.open.ChannelID) {
		m.t.Fatalf("SetGroupChannel %+v, want group %d with channel %d", g, s.open.GroupChannelID, s.open.ChannelID)
	}
	s.job = expect[*sv2.NewMiningJob](m)
	if s.job.ChannelID != s.open.ChannelID || s.job.MinNTime.Set {
		m.t.Fatalf("first job %+v: want a future job on channel %d", s.job, s.open.ChannelID)
	}
	s.tip = expect[*sv2.SetNewPrevHash](m)
	if s.tip.JobID != s.job.JobID {
		m.t.Fatalf("SetNewPrevHash for job %d, want %d", s.tip.JobID, s.job.JobID)
	}
	return s
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// share returns a standard share on s's job that meets its target (valid) or not,
// hashing nonces from *nonce on.
func (s standard) share(seq uint32, nonce *uint32, valid bool) *sv2.SubmitSharesStandard {
	tgt := s.open.Target.Target()
	for {
		*nonce++
		sub := &sv2.SubmitSharesStandard{
			ChannelID: s.open.ChannelID, SequenceNumber: seq, JobID: s.job.JobID,
			Nonce: *nonce, NTime: s.tip.MinNTime, Version: s.job.Version | 0x00002000,
		}
		var hdr [80]byte
		sv2.StandardHeader(&hdr, sub, &s.job.MerkleRoot, s.tip)
		h := pow.DoubleSHA256(hdr[:])
		if pow.HashTarget(&h).LE(tgt) == valid {
			return sub
		}
	}
}

func TestStandardChannel(t *testing.T) {
	e := start(t, bridge.Limits{})
	m := dial(t, e)
	m.setup()
	s := m.openStandard(7, "rig1")
	if got := s.open.Target; got != sv2.DiffU256(testDiff) {
		t.Fatalf("target %x, want that of difficulty %v", got, testDiff.Float())
	}
	var nonce uint32
	seq := uint32(0)
	// Several of each, so that a wrong merkle root (which makes the pool's verdict a
	// coin toss) cannot pass by chance.
	for range 8 {
		seq++
		m.send(s.share(seq, &nonce, true))
		if ok := expect[*sv2.SubmitSharesSuccess](m); ok.LastSequenceNumber != seq || ok.NewSubmitsAcceptedCount != 1 || ok.NewSharesSum != uint64(testDiff) {
			t.Fatalf("success %+v, want sequence %d, 1 share of %d", ok, seq, testDiff)
		}
		seq++
		m.send(s.share(seq, &nonce, false))
		if e := expect[*sv2.SubmitSharesError](m); e.SequenceNumber != seq || e.ErrorCode != sv2.CodeDifficultyTooLow {
			t.Fatalf("error %+v, want %s for sequence %d", e, sv2.CodeDifficultyTooLow, seq)
		}
	}
	// The same share again.
	dup := s.share(100, &nonce, true)
	m.send(dup)
	expect[*sv2.SubmitSharesSuccess](m)
	dup.SequenceNumber = 101
	m.send(dup)
	if e := expect[*sv2.SubmitSharesError](m); e.ErrorCode != sv2.CodeDuplicateShare {
		t.Fatalf("duplicate: %+v", e)
	}

	bad := s.share(200, &nonce, true)
	bad.ChannelID = 99
	m.send(bad)
	if e := expect[*sv2.SubmitSharesError](m); e.ChannelID != 99 || e.ErrorCode != sv2.CodeInvalidChannelID {
		t.Fatalf("wrong channel: %+v", e)
	}
	bad = s.share(201, &nonce, true)
	bad.JobID = 12345
	m.send(bad)
	if e := expect[*sv2.SubmitSharesError](m); e.ErrorCode != sv2.CodeInvalidJobID {
		t.Fatalf("unknown job: %+v", e)
	}
	bad = s.share(202, &nonce, true)
	bad.Version ^= 1 << 2 // not a rollable bit
	m.send(bad)
	if e := expect[*sv2.SubmitSharesError](m); e.ErrorCode != sv2.CodeInvalidNonRollableVersionBit {
		t.Fatalf("version: %+v", e)
	}

	// The shares went down the V1 path: recorded with the V2 user agent and the
	// miner's own address.
	counts := map[hashgrid.ShareResult]int{}
	for _, sh := range e.sink.recorded() {
		counts[sh.Result]++
		if sh.UserAgent != "sv2/testvendor/fw2" || !strings.HasPrefix(sh.Remote, "127.0.0.1:") || sh.Worker != "rig1" {
			t.Fatalf("share recorded as %q from %q worker %q", sh.UserAgent, sh.Remote, sh.Worker)
		}
	}
	if counts[hashgrid.ShareAccepted] != 9 || counts[hashgrid.ShareLowDiff] != 8 {
		t.Fatalf("recorded %v, want 9 accepted and 8 low", counts)
	}
}
