package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashgrid/hashgrid/stratum/v2/client"
)

// SubmitV2 runs the submit benchmark over Stratum V2 with the same load shape as
// Submit: Conns connections (here each with one standard channel, opened at DialRate)
// keep InFlight shares outstanding for Duration, each share a fresh nonce on the
// channel's present job. The pool must hand the channel a difficulty almost any header
// meets (ServerConfig.FixedDiff = BenchDiff), since a V2 miner has no password option
// to ask for one. Unlike Submit's single pipelined loop per connection, each in-flight
// slot is a goroutine calling client.Submit: a V2 client gets one verdict per
// sequence number, and this is how a V2 miner's submitter is written.
//
// BytesUp and BytesDown count what crossed the TCP connections during the run (after
// the handshakes), so per share they are the frames' sizes as sent, MACs included.
func SubmitV2(ctx context.Context, cfg LoadConfig) (Result, error) {
	if cfg.InFlight <= 0 {
		cfg.InFlight = 1
	}
	rate := cfg.DialRate
	if rate == 0 {
		rate = 2000
	}
	start := time.Now()
	type v2conn struct {
		c     *client.Client
		cnt   *countConn
		work  atomic.Pointer[client.Work]
		nonce atomic.Uint32
	}
	conns := make([]*v2conn, cfg.Conns)
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				c.c.Close()
			}
		}
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := range conns {
		<-tick.C
		vc := &v2conn{}
		c, err := client.Dial(ctx, client.Config{URL: cfg.URL, User: cfg.userOf(i), Vendor: "hashgrid-bench",
			MaxPending: cfg.InFlight, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d net.Dialer
				nc, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				vc.cnt = &countConn{Conn: nc}
				return vc.cnt, nil
			}})
		if err != nil {
			closeAll()
			return Result{}, fmt.Errorf("connect: %w", err)
		}
		vc.c = c
		select {
		case w, ok := <-c.Updates():
			if !ok {
				closeAll()
				return Result{}, fmt.Errorf("connect: %w", c.Err())
			}
			vc.work.Store(&w)
		case <-time.After(30 * time.Second):
			closeAll()
			return Result{}, fmt.Errorf("connect: no job in 30s")
		}
		conns[i] = vc
	}
	defer closeAll()
	res := Result{Conns: len(conns), ConnectSecs: time.Since(start).Seconds()}
	var up0, down0 uint64
	for _, c := range conns {
		up0 += c.cnt.up.Load()
		down0 += c.cnt.down.Load()
	}

	var submits, accepted, rejected atomic.Uint64
	var mu sync.Mutex
	var lat []int64 // microseconds
	dropped := make([]atomic.Bool, len(conns))
	t0 := time.Now()
	runCtx, cancel := context.WithDeadline(ctx, t0.Add(cfg.Duration))
	defer cancel()
	var wg sync.WaitGroup
	for ci, c := range conns {
		// Newer work as the pool sends it.
		wg.Go(func() {
			for {
				select {
				case w, ok := <-c.c.Updates():
					if !ok {
						return
					}
					c.work.Store(&w)
				case <-runCtx.Done():
					return
				}
			}
		})
		for range cfg.InFlight {
			wg.Go(func() {
				var mine []int64
				defer func() {
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				}()
				for runCtx.Err() == nil {
					w := c.work.Load()
					s := client.Share{JobID: w.JobID, Nonce: c.nonce.Add(1), NTime: w.NTime, Version: w.Version}
					submits.Add(1)
					sent := time.Now()
					// The verdict is awaited past the run's end, as Submit drains.
					sctx, scancel := context.WithTimeout(ctx, drainWait+10*time.Second)
					err := c.c.Submit(sctx, s)
					scancel()
					var se *client.ShareError
					switch {
					case err == nil:
						accepted.Add(1)
					case errors.As(err, &se):
						rejected.Add(1)
					default:
						dropped[ci].Store(true)
						return
					}
					mine = append(mine, time.Since(sent).Microseconds())
				}
			})
		}
	}
	wg.Wait()
	el := time.Since(t0).Seconds()
	for i, c := range conns {
		if dropped[i].Load() {
			res.Dropped++
		}
		res.BytesUp += c.cnt.up.Load()
		res.BytesDown += c.cnt.down.Load()
	}
	res.BytesUp -= up0
	res.BytesDown -= down0
	slices.Sort(lat)
	res.Submits, res.Accepted, res.Rejected = submits.Load(), accepted.Load(), rejected.Load()
	res.Seconds = el
	res.PerSecond = float64(res.Accepted+res.Rejected) / el
	if len(lat) > 0 {
		res.P50ms = float64(lat[len(lat)/2]) / 1000
		res.P99ms = float64(lat[len(lat)*99/100]) / 1000
		res.MaxMs = float64(lat[len(lat)-1]) / 1000
	}
	return res, nil
}

// countConn counts the bytes a connection carries each way.
type countConn struct {
	net.Conn
	up, down atomic.Uint64
}

func (c *countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.down.Add(uint64(n))
	return n, err
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.up.Add(uint64(n))
	return n, err
}
