package client

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
	"github.com/hashgrid/hashgrid/stratum/v2/sv2"
)

// testPool is a minimal V2 responder built from the noise and sv2 packages: the test
// drives each connection message by message, so it can check what the client sends
// and answer in any order.
type testPool struct {
	ln    net.Listener
	auth  *noise.Authority
	id    *noise.Identity
	url   string
	conns chan *peer
}

func startTestPool(tb testing.TB) *testPool {
	tb.Helper()
	auth, err := noise.NewAuthority()
	if err != nil {
		tb.Fatal(err)
	}
	static, err := noise.NewAuthority() // any secp256k1 key serves as the static key
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	cert, err := auth.Certify(static.SecretKey().PubKey(), now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &testPool{ln: ln, auth: auth, id: &noise.Identity{Static: static.SecretKey(), Certificate: cert},
		url: noise.FormatURL(ln.Addr().String(), auth.PublicKey()), conns: make(chan *peer, 4)}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				close(p.conns)
				return
			}
			tap := &tapConn{Conn: nc}
			c, err := noise.Server(tap, noise.ServerConfig{Identity: p.id})
			if err != nil {
				nc.Close()
				continue
			}
			p.conns <- &peer{c: c, tap: tap}
		}
	}()
	tb.Cleanup(func() { ln.Close() })
	return p
}

func (p *testPool) accept(tb testing.TB) *peer {
	tb.Helper()
	select {
	case c := <-p.conns:
		tb.Cleanup(func() { c.c.Close() })
		return c
	case <-time.After(10 * time.Second):
		tb.Fatal("no connection")
	}
	return nil
}

type peer struct {
	c   *noise.Conn
	tap *tapConn
}

func (p *peer) send(tb testing.TB, m sv2.Message) {
	tb.Helper()
	payload, err := m.Encode(nil)
	if err != nil {
		tb.Fatal(err)
	}
	var ext uint16
	if sv2.IsChannelMsg(m.MsgType()) {
		ext = sv2.ChannelMsgBit
	}
	if err := p.c.WriteFrame(ext, m.MsgType(), payload); err != nil {
		tb.Fatal(err)
	}
}

func (p *peer) recv(tb testing.TB) sv2.Message {
	tb.Helper()
	p.c.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	h, payload, err := p.c.ReadFrame()
	if err != nil {
		tb.Fatal(err)
	}
	m, err := sv2.Decode(sv2.Header{ExtensionType: h.ExtensionType, MsgType: h.MsgType, Length: h.Length}, payload)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// open answers SetupConnection and the channel's opening as a pool would, checking
// what the client asked for.
func (p *peer) open(tb testing.TB, kind ChannelKind, target sv2.U256, prefix []byte, enSize uint16) {
	tb.Helper()
	setup, ok := p.recv(tb).(*sv2.SetupConnection)
	if !ok {
		tb.Fatal("first message is not SetupConnection")
	}
	wantFlags := uint32(0)
	if kind == Standard {
		wantFlags = sv2.FlagRequiresStandardJobs
	}
	if setup.Protocol != sv2.ProtocolMining || setup.MinVersion != 2 || setup.MaxVersion != 2 || setup.Flags != wantFlags {
		tb.Fatalf("SetupConnection %+v, want mining protocol version 2 with flags %#x", setup, wantFlags)
	}
	p.send(tb, &sv2.SetupConnectionSuccess{UsedVersion: 2})
	switch m := p.recv(tb).(type) {
	case *sv2.OpenStandardMiningChannel:
		if kind != Standard || m.UserIdentity != "miner.1" {
			tb.Fatalf("got %+v, want a standard channel for miner.1", m)
		}
		p.send(tb, &sv2.OpenStandardMiningChannelSuccess{RequestID: m.RequestID, ChannelID: 7, Target: target, ExtranoncePrefix: prefix})
	case *sv2.OpenExtendedMiningChannel:
		if kind != Extended || m.UserIdentity != "miner.1" || m.MinExtranonceSize != 4 {
			tb.Fatalf("got %+v, want an extended channel for miner.1 with 4 extranonce bytes", m)
		}
		p.send(tb, &sv2.OpenExtendedMiningChannelSuccess{RequestID: m.RequestID, ChannelID: 7, Target: target, ExtranonceSize: enSize, ExtranoncePrefix: prefix})
	default:
		tb.Fatalf("got %s, want a channel opening", sv2.Name(m.MsgType()))
	}
}

type dialResult struct {
	c   *Client
	err error
}

func dialAsync(cfg Config) <-chan dialResult {
	r := make(chan dialResult, 1)
	go func() {
		c, err := Dial(context.Background(), cfg)
		r <- dialResult{c, err}
	}()
	return r
}

func waitDial(tb testing.TB, r <-chan dialResult) *Client {
	tb.Helper()
	select {
	case d := <-r:
		if d.err != nil {
			tb.Fatal(d.err)
		}
		tb.Cleanup(func() { d.c.Close() })
		return d.c
	case <-time.After(10 * time.Second):
		tb.Fatal("Dial did not return")
	}
	return nil
}

func nextWork(tb testing.TB, c *Client) Work {
	tb.Helper()
	select {
	case w, ok := <-c.Updates():
		if !ok {
			tb.Fatalf("updates closed: %v", c.Err())
		}
		return w
	case <-time.After(10 * time.Second):
		tb.Fatal("no work")
	}
	return Work{}
}

func hash(b byte) chainhash.Hash {
	var h chainhash.Hash
	for i := range h {
		h[i] = b + byte(i)
	}
	return h
}

// TestStandardChannel: a future job started by SetNewPrevHash becomes work with the
// job's root and version and the tip's prev hash, nbits and ntime; a job on the same
// tip replaces it; a batched success and a rejection in between reach the right shares.
func TestStandardChannel(t *testing.T) {
	pool := startTestPool(t)
	dr := dialAsync(Config{URL: pool.url, User: "miner.1"})
	p := pool.accept(t)
	target := sv2.DiffU256(hashgrid.DiffFromFloat(0.001))
	p.open(t, Standard, target, []byte{1, 2, 3, 4}, 0)
	c := waitDial(t, dr)
	if c.ChannelID() != 7 {
		t.Errorf("channel %d, want 7", c.ChannelID())
	}

	p.send(t, &sv2.NewMiningJob{ChannelID: 7, JobID: 1, Version: 0x20000000, MerkleRoot: hash(1)})
	p.send(t, &sv2.SetNewPrevHash{ChannelID: 7, JobID: 1, PrevHash: hash(2), MinNTime: 1700000000, NBits: 0x207fffff})
	w := nextWork(t, c)
	want := Work{Channel: Standard, ChannelID: 7, JobID: 1, Version: 0x20000000, VersionRolling: true, PrevHash: hash(2),
		NBits: 0x207fffff, NTime: 1700000000, Target: target, MerkleRoot: hash(1)}
	if !equalWork(w, want) {
		t.Fatalf("work %+v\nwant %+v", w, want)
	}
	p.send(t, &sv2.NewMiningJob{ChannelID: 7, JobID: 2, MinNTime: sv2.Some[uint32](1700000005), Version: 0x20000000, MerkleRoot: hash(3)})
	w = nextWork(t, c)
	if w.JobID != 2 || w.MerkleRoot != hash(3) || w.NTime != 1700000005 || w.PrevHash != hash(2) {
		t.Fatalf("second job: %+v", w)
	}

	verdicts := make(chan error, 3)
	for i := range 3 {
		go func() {
			verdicts <- c.Submit(context.Background(), Share{JobID: 2, Nonce: uint32(i), NTime: 1700000005, Version: 0x20002000})
		}()
		s, ok := p.recv(t).(*sv2.SubmitSharesStandard)
		if !ok || s.ChannelID != 7 || s.SequenceNumber != uint32(i+1) || s.JobID != 2 || s.Nonce != uint32(i) || s.Version != 0x20002000 {
			t.Fatalf("share %d: got %+v", i, s)
		}
	}
	p.send(t, &sv2.SubmitSharesError{ChannelID: 7, SequenceNumber: 2, ErrorCode: sv2.CodeStaleShare})
	p.send(t, &sv2.SubmitSharesSuccess{ChannelID: 7, LastSequenceNumber: 3, NewSubmitsAcceptedCount: 2, NewSharesSum: 2})
	var accepted, stale int
	for range 3 {
		err := <-verdicts
		var se *ShareError
		switch {
		case err == nil:
			accepted++
		case errors.As(err, &se) && se.Code == sv2.CodeStaleShare && se.Sequence == 2:
			stale++
		default:
			t.Errorf("verdict %v", err)
		}
	}
	if accepted != 2 || stale != 1 {
		t.Errorf("%d accepted, %d stale, want 2 and 1", accepted, stale)
	}
}

func equalWork(a, b Work) bool {
	return a.Channel == b.Channel && a.ChannelID == b.ChannelID && a.JobID == b.JobID && a.Version == b.Version &&
		a.VersionRolling == b.VersionRolling && a.PrevHash == b.PrevHash && a.NBits == b.NBits && a.NTime == b.NTime &&
		a.Target == b.Target && a.MerkleRoot == b.MerkleRoot && bytes.Equal(a.CoinbasePrefix, b.CoinbasePrefix) &&
		bytes.Equal(a.CoinbaseSuffix, b.CoinbaseSuffix) && bytes.Equal(a.ExtranoncePrefix, b.ExtranoncePrefix) &&
		a.ExtranonceSize == b.ExtranonceSize && len(a.MerklePath) == len(b.MerklePath)
}

// TestExtendedChannel: an extended job carries the coinbase parts, merkle path and the
// channel's extranonce prefix and size; SetTarget re-issues the work with the new
// target; a share carries its extranonce.
func TestExtendedChannel(t *testing.T) {
	pool := startTestPool(t)
	dr := dialAsync(Config{URL: pool.url, User: "miner.1", Channel: Extended, MinExtranonceSize: 4})
	p := pool.accept(t)
	target := sv2.DiffU256(hashgrid.DiffFromFloat(1))
	p.open(t, Extended, target, []byte{9, 9}, 6)
	c := waitDial(t, dr)

	job := &sv2.NewExtendedMiningJob{ChannelID: 7, JobID: 5, Version: 0x20000000, VersionRollingAllowed: false,
		MerklePath: []chainhash.Hash{hash(4), hash(5)}, CoinbaseTxPrefix: []byte("prefix"), CoinbaseTxSuffix: []byte("suffix")}
	p.send(t, job)
	p.send(t, &sv2.SetNewPrevHash{ChannelID: 7, JobID: 5, PrevHash: hash(6), MinNTime: 42, NBits: 0x1d00ffff})
	w := nextWork(t, c)
	want := Work{Channel: Extended, ChannelID: 7, JobID: 5, Version: 0x20000000, PrevHash: hash(6), NBits: 0x1d00ffff, NTime: 42,
		Target: target, CoinbasePrefix: []byte("prefix"), CoinbaseSuffix: []byte("suffix"), ExtranoncePrefix: []byte{9, 9},
		ExtranonceSize: 6, MerklePath: job.MerklePath}
	if !equalWork(w, want) || w.MerklePath[1] != hash(5) {
		t.Fatalf("work %+v\nwant %+v", w, want)
	}
	// The hasher's root is the job's root over prefix, extranonce prefix, extranonce, suffix.
	en := []byte{1, 2, 3, 4, 5, 6}
	root, _ := job.MerkleRoot(nil, w.ExtranoncePrefix, en)
	var hdr [80]byte
	sub := &sv2.SubmitSharesExtended{Version: w.Version, NTime: w.NTime, Nonce: 77, Extranonce: en}
	sv2.ExtendedHeader(&hdr, sub, job, w.ExtranoncePrefix, &sv2.SetNewPrevHash{PrevHash: w.PrevHash, NBits: w.NBits}, nil)
	if !bytes.Equal(hdr[36:68], root[:]) {
		t.Fatal("the work's coinbase parts do not give the pool's merkle root")
	}

	newTarget := sv2.DiffU256(hashgrid.DiffFromFloat(2))
	p.send(t, &sv2.SetTarget{ChannelID: 7, MaximumTarget: newTarget})
	if w := nextWork(t, c); w.Target != newTarget || w.JobID != 5 {
		t.Fatalf("after SetTarget: %+v", w)
	}
	verdict := make(chan error, 1)
	go func() {
		verdict <- c.Submit(context.Background(), Share{JobID: 5, Nonce: 77, NTime: 42, Version: 0x20000000, Extranonce: en})
	}()
	s, ok := p.recv(t).(*sv2.SubmitSharesExtended)
	if !ok || s.SequenceNumber != 1 || !bytes.Equal(s.Extranonce, en) || s.Nonce != 77 {
		t.Fatalf("got %+v", s)
	}
	p.send(t, &sv2.SubmitSharesSuccess{ChannelID: 7, LastSequenceNumber: 1, NewSubmitsAcceptedCount: 1, NewSharesSum: 2})
	if err := <-verdict; err != nil {
		t.Fatal(err)
	}
}

// TestWrongAuthority: a URL with another authority's key is refused at the handshake,
// with an error that names the certificate.
func TestWrongAuthority(t *testing.T) {
	pool := startTestPool(t)
	other, err := noise.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Dial(context.Background(), Config{URL: noise.FormatURL(pool.ln.Addr().String(), other.PublicKey()), User: "miner.1"})
	if !errors.Is(err, noise.ErrCertificate) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Dial with the wrong authority key: %v, want a certificate error", err)
	}
}

// TestRefused: SetupConnection.Error and OpenMiningChannel.Error end Dial with a
// RefusedError carrying the pool's code.
func TestRefused(t *testing.T) {
	pool := startTestPool(t)
	dr := dialAsync(Config{URL: pool.url, User: "miner.1"})
	p := pool.accept(t)
	p.recv(t)
	p.send(t, &sv2.SetupConnectionError{Flags: sv2.FlagRequiresStandardJobs, ErrorCode: sv2.CodeUnsupportedFeatureFlags})
	var re *RefusedError
	if d := <-dr; !errors.As(d.err, &re) || re.Code != sv2.CodeUnsupportedFeatureFlags || re.Flags != sv2.FlagRequiresStandardJobs {
		t.Fatalf("setup refused: %v", d.err)
	}

	dr = dialAsync(Config{URL: pool.url, User: "miner.1"})
	p = pool.accept(t)
	p.recv(t)
	p.send(t, &sv2.SetupConnectionSuccess{UsedVersion: 2})
	m := p.recv(t).(*sv2.OpenStandardMiningChannel)
	p.send(t, &sv2.OpenMiningChannelError{RequestID: m.RequestID, ErrorCode: sv2.CodeUnknownUser})
	if d := <-dr; !errors.As(d.err, &re) || re.Code != sv2.CodeUnknownUser {
		t.Fatalf("channel refused: %v", d.err)
	}
}

// TestTamperedFrame: a frame whose ciphertext was changed on the way ends the
// connection, and a share awaiting its verdict gets an error, never an acceptance.
func TestTamperedFrame(t *testing.T) {
	pool := startTestPool(t)
	dr := dialAsync(Config{URL: pool.url, User: "miner.1"})
	p := pool.accept(t)
	p.open(t, Standard, sv2.DiffU256(hashgrid.DiffFromFloat(1)), nil, 0)
	c := waitDial(t, dr)
	verdict := make(chan error, 1)
	go func() { verdict <- c.Submit(context.Background(), Share{JobID: 1}) }()
	p.recv(t)
	// The pool's SubmitShares.Success, with one byte flipped on the way.
	p.tap.flipNext.Store(true)
	p.send(t, &sv2.SubmitSharesSuccess{ChannelID: 7, LastSequenceNumber: 1, NewSubmitsAcceptedCount: 1, NewSharesSum: 1})
	select {
	case err := <-verdict:
		if err == nil {
			t.Fatal("a share was accepted by a tampered frame")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict")
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection not ended")
	}
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "noise") {
		t.Errorf("Err() = %v, want the decryption failure", err)
	}
}

// tapConn flips one byte of the next write when told to: a man in the middle after the
// handshake.
type tapConn struct {
	net.Conn
	flipNext atomic.Bool
}

func (c *tapConn) Write(b []byte) (int, error) {
	if c.flipNext.CompareAndSwap(true, false) {
		b = bytes.Clone(b)
		b[len(b)-1-noise.MACSize] ^= 0x01 // a payload byte, not the MAC
	}
	return c.Conn.Write(b)
}

// TestDialContext: a pool that completes the handshake and then says nothing holds
// Dial only as long as its context.
func TestDialContext(t *testing.T) {
	pool := startTestPool(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, Config{URL: pool.url, User: "miner.1"})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("Dial against a silent pool: %v after %s, want the context's deadline", err, time.Since(start))
	}
	pool.accept(t)
}
