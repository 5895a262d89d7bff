package pool_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid/bench"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/stratum"
)

// Environment of BenchmarkSoloNewTipTCP's client process.
const (
	soloClientPool  = "HASHGRID_SOLO_CLIENT_POOL"  // pool address; set only in the child
	soloClientConns = "HASHGRID_SOLO_CLIENT_CONNS" // connections, one SOLO address each
)

// soloResult is what the client process reports: the latest time one of its
// connections read the clean notify of the new tip, and how many did.
type soloResult struct {
	LastNotifyUnixNano int64 `json:"last_notify_unix_nano"`
	Received           int   `json:"received"`
}

// BenchmarkSoloNewTipTCP measures a SOLO pool's new tip end to end: a 3,000-transaction
// template, HASHGRID_SOLO_CONNS connections (default 10,000), each authorized with its
// own payout address, held by a second process (one process cannot hold both ends
// of 10,000 sockets under a 20,000 descriptor limit). It reports the time from the
// call to UpdateTemplate to the last connection's read of the clean notify, which
// includes the client's own reading on a shared machine: an upper bound. The pool
// process's CPU time over UpdateTemplate (which returns once every line is written)
// is reported too: on a loaded machine it says more than the wall time.
func BenchmarkSoloNewTipTCP(b *testing.B) {
	conns := 10_000
	if v := os.Getenv("HASHGRID_SOLO_CONNS"); v != "" {
		var err error
		if conns, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	addrs := soloAddresses(b, conns)
	scripts := make(map[string][]byte, len(addrs)+1)
	for _, a := range append(addrs, soloPoolAddress) {
		sc, err := pool.AddressScript(a, &chaincfg.MainNetParams)
		if err != nil {
			b.Fatal(err)
		}
		scripts[a] = sc
	}
	// HASHGRID_SOLO_SHARED=1 gives every connection the one shared layout (as PPLNS
	// does), the same run's baseline.
	shared := os.Getenv("HASHGRID_SOLO_SHARED") == "1"
	var mu sync.Mutex // the OutputFunc is called from broadcast workers too
	solo := func(tmpl *node.Template, value int64, finder string) ([]pool.Output, string, error) {
		mu.Lock()
		defer mu.Unlock()
		if finder == "" || shared {
			return []pool.Output{{Value: value, Script: scripts[soloPoolAddress]}}, "", nil
		}
		return []pool.Output{{Value: value, Script: scripts[finder]}}, finder, nil
	}
	p, err := pool.New(pool.Config{Network: &chaincfg.MainNetParams, Outputs: solo,
		Limits: stratum.Limits{MaxConns: conns + 16, MaxConnsPerIP: conns + 16}}, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	h := int64(900_000)
	if err := p.UpdateTemplate(bench.Template(h, 3000), true); err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go p.Serve(l)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	}()
	var worst, worstCPU time.Duration
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkSoloClient$", "-test.benchtime=1x")
		cmd.Env = append(os.Environ(), soloClientPool+"="+l.Addr().String(), soloClientConns+"="+strconv.Itoa(conns))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		br := bufio.NewReader(out)
		var res soloResult
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				cmd.Wait()
				b.Fatalf("client: %v\n%s", err, stderr.Bytes())
			}
			if string(line) == "READY\n" {
				break
			}
		}
		h++
		tmpl := bench.Template(h, 3000)
		u0, start := bench.ProcessUsage(), time.Now()
		if err := p.UpdateTemplate(tmpl, true); err != nil {
			b.Fatal(err)
		}
		cpu := bench.ProcessUsage().Sub(u0).CPU
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				cmd.Wait()
				b.Fatalf("client: %v\n%s", err, stderr.Bytes())
			}
			if json.Unmarshal(line, &res) == nil && res.Received > 0 {
				break
			}
		}
		io.Copy(io.Discard, br)
		cmd.Wait()
		if res.Received != conns {
			b.Fatalf("%d of %d connections got the new tip", res.Received, conns)
		}
		el := time.Unix(0, res.LastNotifyUnixNano).Sub(start)
		worst = max(worst, el)
		worstCPU = max(worstCPU, cpu)
		b.Logf("%d SOLO connections: last notify %v after the new template; broadcast %v; pool CPU %v", conns, el, p.Stats().LastBroadcast, cpu)
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "ms-to-last-notify")
	b.ReportMetric(float64(worstCPU.Microseconds())/1000, "pool-cpu-ms")
}

// BenchmarkSoloClient is BenchmarkSoloNewTipTCP's client process; run alone it skips.
func BenchmarkSoloClient(b *testing.B) {
	addr := os.Getenv(soloClientPool)
	if addr == "" {
		b.Skip("the client process of BenchmarkSoloNewTipTCP")
	}
	conns, err := strconv.Atoi(os.Getenv(soloClientConns))
	if err != nil {
		b.Fatal(err)
	}
	addrs := soloAddresses(b, conns)
	ready := make(chan *bufio.Reader, conns)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				failed.Store(err)
				return
			}
			fmt.Fprintf(nc, `{"id":1,"method":"mining.subscribe","params":["solo/1"]}`+"\n"+`{"id":2,"method":"mining.authorize","params":["%s.w","x"]}`+"\n", addrs[i])
			br := bufio.NewReader(nc)
			for {
				line, err := br.ReadBytes('\n')
				if err != nil {
					failed.Store(err)
					return
				}
				if bytes.Contains(line, []byte(`"method":"mining.notify"`)) {
					break
				}
			}
			ready <- br
		})
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	close(ready)
	var last atomic.Int64
	var got atomic.Int64
	var rd sync.WaitGroup
	for br := range ready {
		rd.Go(func() {
			for {
				line, err := br.ReadBytes('\n')
				if err != nil {
					return
				}
				if bytes.Contains(line, []byte(`"method":"mining.notify"`)) && bytes.HasSuffix(line, []byte("true]}\n")) {
					now := time.Now().UnixNano()
					for {
						l := last.Load()
						if now <= l || last.CompareAndSwap(l, now) {
							break
						}
					}
					got.Add(1)
					return
				}
			}
		})
	}
	fmt.Println("READY")
	done := make(chan struct{})
	go func() { rd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
	}
	r, _ := json.Marshal(soloResult{LastNotifyUnixNano: last.Load(), Received: int(got.Load())})
	fmt.Println(string(r))
}
