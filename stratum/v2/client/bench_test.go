package client

import (
	"context"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/stratum/v2/sv2"
)

// serveAuto answers a connection as a pool that accepts everything: setup, a standard
// channel with a job on a tip, and a SubmitShares.Success per share. It returns when
// the client goes away.
func serveAuto(p *peer) {
	read := func() sv2.Message {
		h, payload, err := p.c.ReadFrame()
		if err != nil {
			return nil
		}
		m, err := sv2.Decode(sv2.Header{ExtensionType: h.ExtensionType, MsgType: h.MsgType, Length: h.Length}, payload)
		if err != nil {
			return nil
		}
		return m
	}
	write := func(m sv2.Message) bool {
		payload, _ := m.Encode(nil)
		var ext uint16
		if sv2.IsChannelMsg(m.MsgType()) {
			ext = sv2.ChannelMsgBit
		}
		return p.c.WriteFrame(ext, m.MsgType(), payload) == nil
	}
	defer p.c.Close()
	if read() == nil || !write(&sv2.SetupConnectionSuccess{UsedVersion: 2}) {
		return
	}
	open, ok := read().(*sv2.OpenStandardMiningChannel)
	if !ok || !write(&sv2.OpenStandardMiningChannelSuccess{RequestID: open.RequestID, ChannelID: 1, Target: sv2.DiffU256(hashgrid.DiffFromFloat(1))}) ||
		!write(&sv2.NewMiningJob{ChannelID: 1, JobID: 1, Version: 0x20000000}) ||
		!write(&sv2.SetNewPrevHash{ChannelID: 1, JobID: 1, MinNTime: 1, NBits: 0x1d00ffff}) {
		return
	}
	for {
		s, ok := read().(*sv2.SubmitSharesStandard)
		if !ok || !write(&sv2.SubmitSharesSuccess{ChannelID: 1, LastSequenceNumber: s.SequenceNumber, NewSubmitsAcceptedCount: 1, NewSharesSum: 1}) {
			return
		}
	}
}

// BenchmarkDial connects over loopback: TCP, the Noise handshake (reported alone as
// handshake-ns), SetupConnection and a standard channel with its first work.
func BenchmarkDial(b *testing.B) {
	pool := startTestPool(b)
	go func() {
		for p := range pool.conns {
			go serveAuto(p)
		}
	}()
	var hs time.Duration
	b.ResetTimer()
	for range b.N {
		c, err := Dial(context.Background(), Config{URL: pool.url, User: "miner.1"})
		if err != nil {
			b.Fatal(err)
		}
		<-c.Updates()
		hs += c.HandshakeTime()
		c.Close()
	}
	b.ReportMetric(float64(hs.Nanoseconds())/float64(b.N), "handshake-ns")
}

// BenchmarkSubmit is one share's round trip on an open channel over loopback: frame
// sealed, sent, answered, opened.
func BenchmarkSubmit(b *testing.B) {
	pool := startTestPool(b)
	go func() {
		for p := range pool.conns {
			go serveAuto(p)
		}
	}()
	c, err := Dial(context.Background(), Config{URL: pool.url, User: "miner.1"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	w := <-c.Updates()
	b.ResetTimer()
	for i := range b.N {
		if err := c.Submit(context.Background(), Share{JobID: w.JobID, Nonce: uint32(i), NTime: w.NTime, Version: w.Version}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPendingLimit: with MaxPending shares unanswered, Submit waits for a slot rather
// than growing the client, and gives up with its context.
func TestPendingLimit(t *testing.T) {
	pool := startTestPool(t)
	dr := dialAsync(Config{URL: pool.url, User: "miner.1", MaxPending: 1})
	p := pool.accept(t)
	p.open(t, Standard, sv2.DiffU256(hashgrid.DiffFromFloat(1)), nil, 0)
	c := waitDial(t, dr)
	first := make(chan error, 1)
	go func() { first <- c.Submit(context.Background(), Share{JobID: 1}) }()
	if s := p.recv(t).(*sv2.SubmitSharesStandard); s.SequenceNumber != 1 {
		t.Fatalf("first share: %+v", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := c.Submit(ctx, Share{JobID: 1}); err != context.DeadlineExceeded {
		t.Fatalf("second share with one slot taken: %v, want to wait until the deadline", err)
	}
	p.send(t, &sv2.SubmitSharesSuccess{ChannelID: 7, LastSequenceNumber: 1, NewSubmitsAcceptedCount: 1, NewSharesSum: 1})
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// The slot is free again, and the share that never went out took no sequence number.
	go c.Submit(context.Background(), Share{JobID: 1})
	if s := p.recv(t).(*sv2.SubmitSharesStandard); s.SequenceNumber != 2 {
		t.Fatalf("third share: sequence %d, want 2", s.SequenceNumber)
	}
}
