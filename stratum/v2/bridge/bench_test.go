package bridge_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/bench"
	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stratum/v2/bridge"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
	"github.com/hashgrid/hashgrid/stratum/v2/sv2"
)

// Figures for docs/benchmarks.md:
//
//	go test ./stratum/v2/bridge -run '^$' -bench . -benchtime 20000x
//	go test ./stratum/v2/bridge -run 'TestWireBytes|TestIdleMemory' -v
//
// BenchmarkShares{V1,V2} put the same load on the pool, over its own V1 port and
// through the bridge: benchConns connections, each with benchInFlight shares awaiting
// their answer, at the smallest difficulty (every share is hashed and checked but
// nearly all are accepted).

const (
	benchConns    = 50
	benchInFlight = 8
)

// nullSink accepts every share at once, as a share stream with nothing behind it.
type nullSink struct{ n atomic.Uint64 }

func (s *nullSink) Record(_ *hashgrid.Share, done func(uint64, error)) { done(s.n.Add(1), nil) }

// countConn counts the bytes a client reads and writes.
type countConn struct {
	net.Conn
	r, w atomic.Int64
}

func (c *countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.r.Add(int64(n))
	return n, err
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.w.Add(int64(n))
	return n, err
}

func (c *countConn) bytes() int64 { return c.r.Load() + c.w.Load() }

// v2conn is a raw V2 client for benchmarks (no *testing.T inside).
type v2conn struct {
	cc *countConn
	nx *noise.Conn
}

func dialV2(addr string, key noise.AuthorityKey) (*v2conn, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	cc := &countConn{Conn: nc}
	nx, err := noise.Client(cc, noise.ClientConfig{Authority: key})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &v2conn{cc: cc, nx: nx}, nil
}

func (v *v2conn) send(m sv2.Message) error {
	p, err := m.Encode(nil)
	if err != nil {
		return err
	}
	var ext uint16
	if sv2.IsChannelMsg(m.MsgType()) {
		ext = sv2.ChannelMsgBit
	}
	return v.nx.WriteFrame(ext, m.MsgType(), p)
}

func (v *v2conn) recv() (sv2.Message, error) {
	h, p, err := v.nx.ReadFrame()
	if err != nil {
		return nil, err
	}
	return sv2.Decode(sv2.Header{ExtensionType: h.ExtensionType, MsgType: h.MsgType, Length: h.Length}, p)
}

// until reads messages until one of type want.
func (v *v2conn) until(want uint8) (sv2.Message, error) {
	for {
		m, err := v.recv()
		if err != nil {
			return nil, err
		}
		if m.MsgType() == want {
			return m, nil
		}
		if m.MsgType() == sv2.TypeOpenMiningChannelError || m.MsgType() == sv2.TypeSetupConnectionError {
			return nil, fmt.Errorf("got %s %+v", sv2.Name(m.MsgType()), m)
		}
	}
}

func (v *v2conn) setup() error {
	if err := v.send(setupMsg()); err != nil {
		return err
	}
	_, err := v.until(sv2.TypeSetupConnectionSuccess)
	return err
}

// openStandard opens a standard channel and returns it with its first job.
func (v *v2conn) openStandard(worker string) (standard, error) {
	var s standard
	if err := v.send(&sv2.OpenStandardMiningChannel{RequestID: 1, UserIdentity: payAddr + "." + worker, NominalHashRate: 1e12, MaxTarget: maxTarget()}); err != nil {
		return s, err
	}
	m, err := v.until(sv2.TypeOpenStandardMiningChannelSuccess)
	if err != nil {
		return s, err
	}
	s.open = m.(*sv2.OpenStandardMiningChannelSuccess)
	if m, err = v.until(sv2.TypeNewMiningJob); err != nil {
		return s, err
	}
	s.job = m.(*sv2.NewMiningJob)
	if m, err = v.until(sv2.TypeSetNewPrevHash); err != nil {
		return s, err
	}
	s.tip = m.(*sv2.SetNewPrevHash)
	return s, nil
}

func benchEnv(b *testing.B) *env {
	b.Helper()
	d, err := strconv.ParseFloat(bench.BenchDiff, 64)
	if err != nil {
		b.Fatal(err)
	}
	return startWith(b, bridge.Limits{}, hashgrid.DiffFromFloat(d), &nullSink{}, true)
}

func BenchmarkHandshake(b *testing.B) {
	e := benchEnv(b)
	b.ResetTimer()
	for range b.N {
		v, err := dialV2(e.addr, e.key)
		if err != nil {
			b.Fatal(err)
		}
		v.nx.Close()
	}
}

// latencies collects per-share latencies from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d...)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B, elapsed time.Duration, wire int64) {
	slices.Sort(l.d)
	if len(l.d) == 0 {
		b.Fatal("no shares answered")
	}
	b.ReportMetric(float64(len(l.d))/elapsed.Seconds(), "shares/s")
	b.ReportMetric(float64(l.d[len(l.d)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(l.d[len(l.d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(wire)/float64(len(l.d)), "wire-B/share")
}

func BenchmarkSharesV2(b *testing.B) {
	e := benchEnv(b)
	conns := make([]*v2conn, benchConns)
	chans := make([]standard, benchConns)
	for i := range conns {
		v, err := dialV2(e.addr, e.key)
		if err != nil {
			b.Fatal(err)
		}
		defer v.nx.Close()
		if err := v.setup(); err != nil {
			b.Fatal(err)
		}
		if chans[i], err = v.openStandard(fmt.Sprintf("b%d", i)); err != nil {
			b.Fatal(err)
		}
		conns[i] = v
	}
	per := max(b.N/benchConns, 1)
	var lat latencies
	var rejected atomic.Int64
	var wire atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, v := range conns {
		s := chans[i]
		wg.Go(func() {
			before := v.cc.bytes()
			sent := make([]time.Time, per)
			own := make([]time.Duration, 0, per)
			sem := make(chan struct{}, benchInFlight)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for len(own) < per {
					m, err := v.recv()
					if err != nil {
						b.Error(err)
						return
					}
					var seq uint32
					switch m := m.(type) {
					case *sv2.SubmitSharesSuccess:
						seq = m.LastSequenceNumber
					case *sv2.SubmitSharesError:
						seq = m.SequenceNumber
						rejected.Add(1)
					default:
						continue
					}
					own = append(own, time.Since(sent[seq]))
					<-sem
				}
			}()
			for n := range per {
				sem <- struct{}{}
				sent[n] = time.Now()
				err := v.send(&sv2.SubmitSharesStandard{ChannelID: s.open.ChannelID, SequenceNumber: uint32(n), JobID: s.job.JobID,
					Nonce: uint32(n), NTime: s.tip.MinNTime, Version: s.job.Version})
				if err != nil {
					b.Error(err)
					break
				}
			}
			<-done
			lat.add(own)
			wire.Add(v.cc.bytes() - before)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	lat.report(b, elapsed, wire.Load())
	b.ReportMetric(float64(rejected.Load()), "rejected")
}

func BenchmarkSharesV1(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	type v1conn struct {
		user string
		c    *stratum.Client
		cc   *countConn
		work stratum.Work
	}
	conns := make([]v1conn, benchConns)
	for i := range conns {
		nc, err := net.Dial("tcp", e.v1)
		if err != nil {
			b.Fatal(err)
		}
		cc := &countConn{Conn: nc}
		user := fmt.Sprintf("%s.b%d", payAddr, i)
		c, err := stratum.NewClient(ctx, cc, stratum.ClientConfig{User: user, Password: "x"})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = v1conn{user: user, c: c, cc: cc, work: <-c.Updates()}
	}
	per := max(b.N/benchConns, 1)
	var lat latencies
	var rejected, wire atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, v := range conns {
		_, en2Size := v.c.Extranonce()
		wg.Go(func() {
			before := v.cc.bytes()
			var next atomic.Int64
			var inner sync.WaitGroup
			for range benchInFlight {
				inner.Go(func() {
					var own []time.Duration
					for {
						n := next.Add(1) - 1
						if n >= int64(per) {
							break
						}
						en2 := make([]byte, en2Size)
						sub := &stratum.Submit{Worker: v.user, JobID: v.work.Notify.JobID, Extranonce2: hex.EncodeToString(en2),
							NTime: v.work.Notify.NTime, Nonce: fmt.Sprintf("%08x", uint32(n))}
						t0 := time.Now()
						if err := v.c.Submit(ctx, sub); err != nil {
							rejected.Add(1)
						}
						own = append(own, time.Since(t0))
					}
					lat.add(own)
				})
			}
			inner.Wait()
			wire.Add(v.cc.bytes() - before)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	lat.report(b, elapsed, wire.Load())
	b.ReportMetric(float64(rejected.Load()), "rejected")
}
