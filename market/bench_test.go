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
	n := s.nonce.Add(1)
	err := s.cli.Submit(context.Background(), &stratum.Submit{Worker: s.user, JobID: s.w.Notify.JobID,
		Extranonce2: strings.Repeat("00", s.en2), NTime: s.w.Notify.NTime, Nonce: fmt.Sprintf("%08x", n)})
	var se *stratum.Error
	if errors.As(err, &se) && se.Code == stratum.ErrCodeLowDifficulty {
		return nil
	}
	return err
}

func benchSetup(b *testing.B) (*fakeDest, *testMarket) {
	dest := startDest(b, benchDiff)
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

// BenchmarkForwardMarket is the same round trip through the market: the difference
// to BenchmarkForwardDirect is the latency the market adds.
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

func benchThroughput(b *testing.B, url, user string) {
	const conns = 16
	subs := make([]*submitter, conns)
	for i := range subs {
		subs[i] = newSubmitter(b, url, user)
	}
	var next atomic.Int64
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
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "shares/s")
}

// BenchmarkThroughputDirect: 16 connections submitting straight to the destination.
func BenchmarkThroughputDirect(b *testing.B) {
	dest, _ := benchSetup(b)
	benchThroughput(b, dest.url(), "bench")
}

// BenchmarkThroughputMarket: 16 seller connections through the market, all routed to
// one order and so over one upstream connection.
func BenchmarkThroughputMarket(b *testing.B) {
	_, tm := benchSetup(b)
	benchThroughput(b, "stratum+tcp://"+tm.addr, regtest.TestAddress()+".bench")
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
