package stratum

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRejectRoundTrip: 50 connections, each with one submit in flight (a miner
// that waits for each answer, as a load client pacing its submits does), every submit
// answered as a low-difficulty reject. It reports the server's replies per second;
// with -cpuprofile, where a reply's time goes.
func BenchmarkRejectRoundTrip(b *testing.B) {
	_, _, addr, _ := startVerdictServer(b, Limits{}, nil)
	const conns = 50
	var wg sync.WaitGroup
	per := b.N/conns + 1
	line := []byte(`{"id":7,"method":"mining.submit","params":["low.a","1","0000000000000000","6b14f331","00000000"]}` + "\n")
	ready := make(chan *bufio.ReadWriter, conns)
	for range conns {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		rw := bufio.NewReadWriter(bufio.NewReader(nc), bufio.NewWriter(nc))
		fmt.Fprintf(rw, `{"id":1,"method":"mining.subscribe","params":["b/1"]}`+"\n"+`{"id":2,"method":"mining.authorize","params":["low.a","x"]}`+"\n")
		rw.Flush()
		for range 2 {
			if _, err := rw.ReadSlice('\n'); err != nil {
				b.Fatal(err)
			}
		}
		ready <- rw
	}
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	for range conns {
		rw := <-ready
		wg.Go(func() {
			for range per {
				rw.Write(line)
				rw.Flush()
				for {
					l, err := rw.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(l) > 8 && string(l[:8]) == `{"id":7,` {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano()+ru.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(per*conns), "cpu-ns/op")
}
