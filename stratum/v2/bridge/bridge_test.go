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
	sink  pool.ShareSink
	srv   *bridge.Server
	addr  string // the bridge's
	v1    string // the pool's own V1 port, when asked for
	key   noise.AuthorityKey
	drops chan string
}

// start serves a regtest pool on the benchmark template and a bridge to it on
// loopback, until the test ends.
func start(t *testing.T, lim bridge.Limits) *env {
	t.Helper()
	return startWith(t, lim, testDiff, &sink{}, false)
}

// startWith serves a pool whose only difficulty is diff, recording shares in sk, with
// a bridge to it and, with v1, its own V1 port.
func startWith(t testing.TB, lim bridge.Limits, diff hashgrid.Diff, sk pool.ShareSink, v1 bool, opts ...func(*pool.Config)) *env {
	t.Helper()
	out, err := pool.SingleAddress(payAddr, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	d := diff.Float()
	e := &env{sink: sk, drops: make(chan string, 100)}
	pc := pool.Config{
		Network: &chaincfg.RegressionNetParams, Outputs: out,
		StartDiff: d, MinDiff: d, MaxDiff: d, MaxJobShares: 1 << 22,
	}
	for _, o := range opts {
		o(&pc)
	}
	e.pool, err = pool.New(pc, nil, e.sink, nil)
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
	if v1 {
		l1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		e.v1 = l1.Addr().String()
		go e.pool.Serve(l1)
	}
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
	for _, sh := range e.sink.(*sink).recorded() {
		counts[sh.Result]++
		if sh.UserAgent != "sv2/testvendor/fw2" || !strings.HasPrefix(sh.Remote, "127.0.0.1:") || sh.Worker != "rig1" {
			t.Fatalf("share recorded as %q from %q worker %q", sh.UserAgent, sh.Remote, sh.Worker)
		}
	}
	if counts[hashgrid.ShareAccepted] != 9 || counts[hashgrid.ShareLowDiff] != 8 {
		t.Fatalf("recorded %v, want 9 accepted and 8 low", counts)
	}
}

func TestExtendedChannel(t *testing.T) {
	e := start(t, bridge.Limits{})
	m := dial(t, e)
	m.setup()
	m.send(&sv2.OpenExtendedMiningChannel{RequestID: 1, UserIdentity: payAddr + ".ext", NominalHashRate: 1e9, MaxTarget: maxTarget(), MinExtranonceSize: 4})
	open := expect[*sv2.OpenExtendedMiningChannelSuccess](m)
	if open.ExtranonceSize != 8 || len(open.ExtranoncePrefix) != 4 {
		t.Fatalf("extranonce size %d and prefix %x, want the V1 8 and a 4-byte extranonce1", open.ExtranonceSize, open.ExtranoncePrefix)
	}
	job := expect[*sv2.NewExtendedMiningJob](m)
	tip := expect[*sv2.SetNewPrevHash](m)
	if job.MinNTime.Set || tip.JobID != job.JobID || !job.VersionRollingAllowed || len(job.MerklePath) == 0 {
		t.Fatalf("job %+v tip %+v", job, tip)
	}
	tgt := open.Target.Target()
	var buf []byte
	find := func(seq uint32, en2 []byte, valid bool) *sv2.SubmitSharesExtended {
		for nonce := uint32(1); ; nonce++ {
			sub := &sv2.SubmitSharesExtended{
				ChannelID: open.ChannelID, SequenceNumber: seq, JobID: job.JobID,
				Nonce: nonce, NTime: tip.MinNTime + 1, Version: job.Version | 0x00ff0000, Extranonce: en2,
			}
			var hdr [80]byte
			buf = sv2.ExtendedHeader(&hdr, sub, job, open.ExtranoncePrefix, tip, buf)
			h := pow.DoubleSHA256(hdr[:])
			if pow.HashTarget(&h).LE(tgt) == valid {
				return sub
			}
		}
	}
	for i := range 8 {
		en2 := []byte{byte(i), 1, 2, 3, 4, 5, 6, 7}
		m.send(find(uint32(2*i), en2, true))
		if ok := expect[*sv2.SubmitSharesSuccess](m); ok.LastSequenceNumber != uint32(2*i) {
			t.Fatalf("success %+v", ok)
		}
		m.send(find(uint32(2*i+1), en2, false))
		if e := expect[*sv2.SubmitSharesError](m); e.ErrorCode != sv2.CodeDifficultyTooLow {
			t.Fatalf("low share: %+v", e)
		}
	}
	m.send(find(50, []byte{1, 2, 3}, true))
	if e := expect[*sv2.SubmitSharesError](m); e.ErrorCode != sv2.CodeBadExtranonceSize {
		t.Fatalf("short extranonce: %+v", e)
	}
	// A standard share names an extended channel: not its kind.
	m.send(&sv2.SubmitSharesStandard{ChannelID: open.ChannelID, SequenceNumber: 51, JobID: job.JobID})
	if e := expect[*sv2.SubmitSharesError](m); e.ErrorCode != sv2.CodeInvalidChannelID {
		t.Fatalf("standard share on an extended channel: %+v", e)
	}

	m.send(&sv2.OpenExtendedMiningChannel{RequestID: 2, UserIdentity: payAddr + ".ext", MaxTarget: maxTarget(), MinExtranonceSize: 9})
	if e := expect[*sv2.OpenMiningChannelError](m); e.RequestID != 2 || e.ErrorCode != sv2.CodeMinExtranonceSizeTooLarge {
		t.Fatalf("min extranonce 9: %+v", e)
	}
}

// TestNewBlock checks that a new template on a new previous block reaches a channel as
// a future job and SetNewPrevHash, and that shares on the old job are then stale.
func TestNewBlock(t *testing.T) {
	e := start(t, bridge.Limits{})
	m := dial(t, e)
	m.setup()
	s := m.openStandard(1, "w")
	var nonce uint32
	old := s.share(1, &nonce, true)
	if err := e.pool.UpdateTemplate(bench.Template(900_001, 10), true); err != nil {
		t.Fatal(err)
	}
	job := expect[*sv2.NewMiningJob](m)
	tip := expect[*sv2.SetNewPrevHash](m)
	if job.MinNTime.Set || tip.JobID != job.JobID || tip.PrevHash == s.tip.PrevHash {
		t.Fatalf("after a new block: job %+v, tip %+v (old tip %v)", job, tip, s.tip.PrevHash)
	}
	m.send(old)
	if e := expect[*sv2.SubmitSharesError](m); e.ErrorCode != sv2.CodeStaleShare {
		t.Fatalf("share on the old job: %+v", e)
	}
	s.job, s.tip = job, tip
	m.send(s.share(2, &nonce, true))
	expect[*sv2.SubmitSharesSuccess](m)
}

func TestSetupRefused(t *testing.T) {
	e := start(t, bridge.Limits{})
	tests := []struct {
		name  string
		edit  func(*sv2.SetupConnection)
		flags uint32
		code  string
	}{
		{"protocol", func(s *sv2.SetupConnection) { s.Protocol = sv2.ProtocolTemplateDistribution }, 0, sv2.CodeUnsupportedProtocol},
		{"version", func(s *sv2.SetupConnection) { s.MinVersion, s.MaxVersion = 3, 4 }, 0, "protocol-version-mismatch"},
		{"work selection", func(s *sv2.SetupConnection) { s.Flags |= sv2.FlagRequiresWorkSelection }, sv2.FlagRequiresWorkSelection, sv2.CodeUnsupportedFeatureFlags},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := dial(t, e)
			msg := setupMsg()
			tt.edit(msg)
			m.send(msg)
			got := expect[*sv2.SetupConnectionError](m)
			if got.ErrorCode != tt.code || got.Flags != tt.flags {
				t.Fatalf("got %+v, want flags %#x code %s", got, tt.flags, tt.code)
			}
			if _, err := m.read(); err == nil {
				t.Fatal("connection still open after SetupConnection.Error")
			}
		})
	}
	// Anything before SetupConnection drops the peer.
	m := dial(t, e)
	m.send(&sv2.OpenStandardMiningChannel{RequestID: 1, UserIdentity: payAddr})
	if msg, err := m.read(); err == nil {
		t.Fatalf("got %s before setup, want the connection dropped", sv2.Name(msg.MsgType()))
	}
}

// TestBadPeersDropped checks that a bad frame, a failed handshake and an unknown user
// cost only their own connection.
func TestBadPeersDropped(t *testing.T) {
	e := start(t, bridge.Limits{HandshakeTimeout: 2 * time.Second})
	good := dial(t, e)
	good.setup()
	s := good.openStandard(1, "good")

	// A frame of an unknown message type after setup.
	bad := dial(t, e)
	bad.setup()
	if err := bad.nx.WriteFrame(0, 0x7e, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	e.waitDrop(t, "bad_frame")
	if msg, err := bad.read(); err == nil {
		t.Fatalf("got %s after a bad frame, want the connection dropped", sv2.Name(msg.MsgType()))
	}

	// A frame over the size limit.
	big := dial(t, e)
	big.setup()
	if err := big.nx.WriteFrame(0, sv2.TypeSetupConnection, make([]byte, 5000)); err != nil {
		t.Fatal(err)
	}
	e.waitDrop(t, "bad_frame")

	// Bytes that are not a handshake, then silence.
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	e.waitDrop(t, "handshake")

	// A tampered frame: one byte of the encrypted stream flipped.
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	flip := &flipConn{Conn: raw}
	nx, err := noise.Client(flip, noise.ClientConfig{Authority: e.key})
	if err != nil {
		t.Fatal(err)
	}
	flip.armed = true
	p, _ := setupMsg().Encode(nil)
	nx.WriteFrame(0, sv2.TypeSetupConnection, p)
	e.waitDrop(t, "bad_frame")

	// An unknown user is refused its channel, not its connection.
	good2 := dial(t, e)
	good2.setup()
	good2.send(&sv2.OpenStandardMiningChannel{RequestID: 9, UserIdentity: "not-an-address.x", MaxTarget: maxTarget()})
	if e := expect[*sv2.OpenMiningChannelError](good2); e.RequestID != 9 || e.ErrorCode != sv2.CodeUnknownUser {
		t.Fatalf("unknown user: %+v", e)
	}
	good2.openStandard(10, "fine")

	// The first miner was never disturbed.
	var nonce uint32
	good.send(s.share(1, &nonce, true))
	expect[*sv2.SubmitSharesSuccess](good)
}

// flipConn flips the last byte of its first write once armed.
type flipConn struct {
	net.Conn
	armed, done bool
}

func (f *flipConn) Write(b []byte) (int, error) {
	if f.armed && !f.done {
		f.done = true
		b = append([]byte(nil), b...)
		b[len(b)-1] ^= 1
	}
	return f.Conn.Write(b)
}

func TestChannelLimitAndClose(t *testing.T) {
	e := start(t, bridge.Limits{MaxChannels: 2})
	m := dial(t, e)
	m.setup()
	a := m.openStandard(1, "a")
	b := m.openStandard(2, "b")
	if a.open.GroupChannelID != b.open.GroupChannelID || a.open.ChannelID == b.open.ChannelID {
		t.Fatalf("channels %d and %d in groups %d and %d: want one group", a.open.ChannelID, b.open.ChannelID, a.open.GroupChannelID, b.open.GroupChannelID)
	}
	m.send(&sv2.OpenStandardMiningChannel{RequestID: 3, UserIdentity: payAddr + ".c", MaxTarget: maxTarget()})
	if e := expect[*sv2.OpenMiningChannelError](m); e.RequestID != 3 || e.ErrorCode != "too-many-channels" {
		t.Fatalf("third channel: %+v", e)
	}
	m.send(&sv2.UpdateChannel{ChannelID: 77, NominalHashRate: 1, MaximumTarget: maxTarget()})
	if e := expect[*sv2.UpdateChannelError](m); e.ChannelID != 77 || e.ErrorCode != sv2.CodeInvalidChannelID {
		t.Fatalf("update of no channel: %+v", e)
	}
	m.send(&sv2.UpdateChannel{ChannelID: a.open.ChannelID, NominalHashRate: -1, MaximumTarget: maxTarget()})
	if e := expect[*sv2.UpdateChannelError](m); e.ErrorCode != sv2.CodeInvalidNominalHashrate {
		t.Fatalf("negative hash rate: %+v", e)
	}
	m.send(&sv2.CloseChannel{ChannelID: a.open.ChannelID, ReasonCode: "bye"})
	var nonce uint32
	m.send(a.share(1, &nonce, true))
	if e := expect[*sv2.SubmitSharesError](m); e.ErrorCode != sv2.CodeInvalidChannelID {
		t.Fatalf("share on a closed channel: %+v", e)
	}
	// Closing freed a place.
	m.openStandard(4, "d")
	waitFor(t, func() bool { return len(e.pool.Sessions()) == 2 })

	// The pool kicks one channel's V1 connection: the miner is told with CloseChannel.
	for _, si := range e.pool.Sessions() {
		if si.Workers[0] == "b" {
			e.pool.Kick(si.ID)
		}
	}
	if c := expect[*sv2.CloseChannel](m); c.ChannelID != b.open.ChannelID {
		t.Fatalf("CloseChannel for %d, want %d", c.ChannelID, b.open.ChannelID)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUpdateChannelRaisesTarget checks that an UpdateChannel whose max_target the
// channel's target exceeds makes the pool raise the difficulty (V1
// mining.suggest_difficulty), which reaches the miner as SetTarget before a job.
func TestUpdateChannelRaisesTarget(t *testing.T) {
	e := startWith(t, bridge.Limits{}, testDiff, &sink{}, false, func(c *pool.Config) { c.MaxDiff = 1 })
	m := dial(t, e)
	m.setup()
	s := m.openStandard(1, "up")
	want := sv2.DiffU256(8 * testDiff)
	m.send(&sv2.UpdateChannel{ChannelID: s.open.ChannelID, NominalHashRate: 1e6, MaximumTarget: want})
	st := expect[*sv2.SetTarget](m)
	if st.ChannelID != s.open.ChannelID || st.MaximumTarget != want {
		t.Fatalf("SetTarget %+v, want target %x", st, want)
	}
	job := expect[*sv2.NewMiningJob](m)
	if !job.MinNTime.Set || job.JobID == s.job.JobID {
		t.Fatalf("job after SetTarget: %+v, want a new active job", job)
	}
	// A share meeting the old target but not the new one is now too low.
	s.open.Target, s.job = want, job
	var nonce uint32
	for {
		sub := s.share(2, &nonce, false) // fails the new target
		var hdr [80]byte
		sv2.StandardHeader(&hdr, sub, &job.MerkleRoot, s.tip)
		h := pow.DoubleSHA256(hdr[:])
		if pow.HashTarget(&h).LE(sv2.DiffU256(testDiff).Target()) {
			m.send(sub)
			break
		}
	}
	if e := expect[*sv2.SubmitSharesError](m); e.ErrorCode != sv2.CodeDifficultyTooLow {
		t.Fatalf("share under the raised difficulty: %+v", e)
	}
}
