package bridge_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/stratum/v2/bridge"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
)

// Environment of the helper process that holds the clients of
// BenchmarkIdleConnMemory, so that their memory is not counted as the server's.
const (
	envClientsAddr = "HASHGRID_V2_CLIENTS_ADDR"
	envClientsKey  = "HASHGRID_V2_CLIENTS_KEY"
	envClientsN    = "HASHGRID_V2_CLIENTS_N"
	envClientsOpen = "HASHGRID_V2_CLIENTS_OPEN" // "1": each opens a standard channel
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(envClientsAddr); addr != "" {
		os.Exit(holdClients(addr))
	}
	os.Exit(m.Run())
}

// holdClients connects the helper's clients, says "ready" and holds them until its
// standard input closes.
func holdClients(addr string) int {
	key, err := noise.ParseAuthorityKey(os.Getenv(envClientsKey))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n, _ := strconv.Atoi(os.Getenv(envClientsN))
	var conns []*v2conn
	for i := range n {
		v, err := dialV2(addr, key)
		if err == nil {
			err = v.setup()
		}
		if err == nil && os.Getenv(envClientsOpen) == "1" {
			_, err = v.openStandard(fmt.Sprintf("idle%d", i))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "client", i, err)
			return 1
		}
		conns = append(conns, v)
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n')
	for _, v := range conns {
		v.nx.Close()
	}
	return 0
}

// heapAfterGC returns the live heap, the goroutine stacks in use and the goroutine
// count.
func heapAfterGC() (heap, stack uint64, goroutines int) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse, runtime.NumGoroutine()
}

// BenchmarkIdleConnMemory reports the server's heap, goroutine stacks and goroutines
// per idle V2 connection (after SetupConnection) and per idle V2 connection with one
// standard channel open (its V1 connection into the pool included), 1,000 of each,
// with the clients in another process. It ignores b.N: run it with -benchtime 1x.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 1000
	// With the pool's V1 port served, as in production: the V1 server's poller then
	// waits on idle channels' V1 connections without a goroutine each.
	e := startWith(b, bridge.Limits{}, testDiff, &nullSink{}, true)
	for _, open := range []string{"0", "1"} {
		heap0, stack0, g0 := heapAfterGC()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envClientsAddr+"="+e.addr, envClientsKey+"="+e.key.String(),
			envClientsN+"="+strconv.Itoa(n), envClientsOpen+"="+open)
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
			b.Fatalf("helper: %q %v", line, err)
		}
		waitForTB(b, func() bool {
			return e.srv.NumConns() == n && (open == "0" || len(e.pool.Sessions()) == n)
		})
		heap1, stack1, g1 := heapAfterGC()
		what := "conn"
		if open == "1" {
			what = "channel"
		}
		b.ReportMetric(float64(heap1-heap0)/n, "heap-B/"+what)
		b.ReportMetric(float64(stack1-stack0)/n, "stack-B/"+what)
		b.ReportMetric(float64(g1-g0)/n, "goroutines/"+what)
		stdin.Close()
		cmd.Wait()
		waitForTB(b, func() bool { return e.srv.NumConns() == 0 && len(e.pool.Sessions()) == 0 })
	}
}

func waitForTB(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met in 60 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
