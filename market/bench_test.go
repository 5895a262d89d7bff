package market

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/stratum"
)

// benchDiff is 2^-32: every hash meets it, so shares cost no hashing and the
// benchmarks measure the protocol path (market: re-hash, reserve, forward, settle).
const benchDiff = 1.0 / (1 << 32)

// submitter sends shares with fresh nonces on one connection.
type submitter struct {
	cli   *stratum.Client
	w     stratum.Work
	user  string
	nonce atomic.Uint32
	en2   int
}

func newSubmitter(b *testing.B, url, user string) *submitter {
	b.Helper()
	cli, err := stratum.Dial(context.Background(), stratum.ClientConfig{URL: url, User: user})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cli.Close() })
	var w stratum.Work
	select {
	case w = <-cli.Updates():
	case <-time.After(10 * time.Second):
		b.Fatal("no job")
	}
	return &submitter{cli: cli, w: w, user: user, en2: w.Extranonce2Size}
}

// submit sends one share. About one hash in 65536 misses difficulty 2^-32 (its
// target is 0xFFFF·2^240); those low-difficulty answers are part of the load, not
// failures.
func (s *submitter) submit() error {
	_, err := s.submitLow()
	return err
}

// submitLow is submit, also telling whether the share was refused as low-difficulty
// (and so not forwarded).
func (s *submitter) submitLow() (low bool, err error) {
	n := s.nonce.Add(1)
	err = s.cli.Submit(context.Background(), &stratum.Submit{Worker: s.user, JobID: s.w.Notify.JobID,
		Extranonce2: strings.Repeat("00", s.en2), NTime: s.w.Notify.NTime, Nonce: fmt.Sprintf("%08x", n)})
	var se *stratum.Error
	if errors.As(err, &se) && se.Code == stratum.ErrCodeLowDifficulty {
		return true, nil
	}
	return false, err
}

func benchSetup(b *testing.B) (*fakeDest, *testMarket) { return benchSetupWith(b, nil) }

func benchSetupWith(b *testing.B, set func(*fakeDest)) (*fakeDest, *testMarket) {
	dest := startDestWith(b, benchDiff, 8, set)
	tm := startMarket(b, func(c *Config) {
		c.SellerMinDiff, c.SellerStartDiff = benchDiff, benchDiff
		c.MaxSharesPerSellerJob = 1 << 22 // the benchmarks submit every share on one job
	})
	acct, _ := tm.buyer(b, 1_000_000_000)
	if _, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: dest.url(), PoolUser: "bench", Price: 1, Budget: 1_000_000_000}); err != nil {
		b.Fatal(err)
	}
	return dest, tm
}

// BenchmarkForwardDirect is one share's round trip straight to the destination.
func BenchmarkForwardDirect(b *testing.B) {
	dest, _ := benchSetup(b)
	s := newSubmitter(b, dest.url(), "bench")
	b.ResetTimer()
	for b.Loop() {
		if err := s.submit(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkForwardMarket is the seller's round trip through the market: the market
// answers once it has checked the share, without waiting for the destination.
func BenchmarkForwardMarket(b *testing.B) {
	_, tm := benchSetup(b)
	s := newSubmitter(b, "stratum+tcp://"+tm.addr, regtest.TestAddress()+".bench")
	b.ResetTimer()
	for b.Loop() {
		if err := s.submit(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkForwardDelivered is one share from the seller's submit until the
// destination has accepted it through the market: the difference to
// BenchmarkForwardDirect is the latency the market adds to a forwarded share.
func BenchmarkForwardDelivered(b *testing.B) {
	accepted := make(chan struct{}, 1)
	_, tm := benchSetupWith(b, func(d *fakeDest) { d.onAccept = accepted })
	s := newSubmitter(b, "stratum+tcp://"+tm.addr, regtest.TestAddress()+".bench")
	b.ResetTimer()
	for b.Loop() {
		low, err := s.submitLow()
		if err != nil {
			b.Fatal(err)
		}
		if low {
			continue
		}
		select {
		case <-accepted:
		case <-time.After(10 * time.Second):
			b.Fatal("the destination accepted nothing")
		}
	}
}

// benchThroughput submits b.N shares on 16 connections and reports the shares
// answered per second and, from delivered (the destination's count of accepted
// shares), the shares per second the destination accepted.
func benchThroughput(b *testing.B, url, user string, delivered func() uint64) {
	const conns = 16
	subs := make([]*submitter, conns)
	for i := range subs {
		subs[i] = newSubmitter(b, url, user)
	}
	var next atomic.Int64
	d0 := delivered()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := s.submit(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(b.N)/el, "shares/s")
	b.ReportMetric(float64(delivered()-d0)/el, "delivered/s")
}

// BenchmarkThroughputDirect: 16 connections submitting straight to the destination.
func BenchmarkThroughputDirect(b *testing.B) {
	dest, _ := benchSetup(b)
	benchThroughput(b, dest.url(), "bench", func() uint64 { n, _ := dest.stats("bench"); return n })
}

// BenchmarkThroughputMarket: 16 seller connections through the market, all routed to
// one order and so over one upstream connection.
func BenchmarkThroughputMarket(b *testing.B) {
	dest, tm := benchSetup(b)
	benchThroughput(b, "stratum+tcp://"+tm.addr, regtest.TestAddress()+".bench", func() uint64 { n, _ := dest.stats("bench"); return n })
	var dropped uint64
	tm.mu.Lock()
	for _, o := range tm.orders {
		dropped += o.rec.Dropped
	}
	tm.mu.Unlock()
	b.ReportMetric(float64(dropped)/float64(b.N), "dropped/share")
}

// BenchmarkSellerMemory opens idle seller connections (raw TCP, handshake only, no
// client-side buffers) and reports heap and stack growth per connection.
func BenchmarkSellerMemory(b *testing.B) {
	_, tm := benchSetup(b)
	const n = 500
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		conns := make([]net.Conn, 0, n)
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp", tm.addr)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(c, `{"id":1,"method":"mining.subscribe","params":["bench"]}`+"\n"+`{"id":2,"method":"mining.authorize","params":["%s.m%d","x"]}`+"\n", regtest.TestAddress(), i)
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				if strings.Contains(line, "mining.notify") {
					break
				}
			}
			conns = append(conns, c)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		grown := (after.HeapInuse + after.StackInuse) - (before.HeapInuse + before.StackInuse)
		b.ReportMetric(float64(grown)/n, "B/conn")
		for _, c := range conns {
			c.Close()
		}
		waitFor(b, 10*time.Second, "connections closed", func() bool { return tm.Server().NumConns() == 0 })
		b.StartTimer()
	}
}

// BenchmarkCreateAccount opens accounts in a market that already holds 2,000: each is
// one fsynced line appended to the accounts journal, whatever the number before it.
func BenchmarkCreateAccount(b *testing.B) {
	tm := startMarket(b, nil)
	for range 2000 {
		if _, _, err := tm.CreateAccount(); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, _, err := tm.CreateAccount(); err != nil {
			b.Fatal(err)
		}
	}
}
