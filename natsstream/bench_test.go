package natsstream

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/stream"
)

// BenchmarkAppendAsync measures AppendAsync of 128-byte records (about one encoded share)
// with at most inflight appends unanswered at a time, as that many miners waiting for
// their replies would hold: on the local stream.Log (group-committed fsync) and on
// JetStream at R1 (one embedded server) and R3 (three embedded servers on loopback, in
// this process), with the servers' default fsync every two minutes and, "-sync", with
// every write fsynced. It reports appends/s over wall time and the latency from AppendAsync
// to its callback.
func BenchmarkAppendAsync(b *testing.B) {
	rec := make([]byte, 128)
	for _, backend := range []string{"log", "R1", "R1-sync", "R3", "R3-sync"} {
		for _, inflight := range []int{1, 200} {
			b.Run(fmt.Sprintf("%s/inflight=%d", backend, inflight), func(b *testing.B) {
				var s stream.Stream
				switch backend {
				case "log":
					l, err := stream.Open(b.TempDir(), stream.Options{})
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { l.Close() })
					s = l
				case "R1":
					s = open(b, connect(b, startServer(b)), Options{FrontEnd: "bench"})
				case "R1-sync":
					s = open(b, connect(b, startServer(b, syncAlways)), Options{FrontEnd: "bench"})
				case "R3":
					nodes := startCluster(b, 3)
					s = open(b, connect(b, nodes...), Options{FrontEnd: "bench", Replicas: 3})
				case "R3-sync":
					nodes := startCluster(b, 3, syncAlways)
					s = open(b, connect(b, nodes...), Options{FrontEnd: "bench", Replicas: 3})
				}
				benchAppendAsync(b, s, rec, inflight)
			})
		}
	}
}

func benchAppendAsync(b *testing.B, s stream.Stream, rec []byte, inflight int) {
	lat := make([]time.Duration, b.N)
	slots := make(chan struct{}, inflight)
	finished := make(chan struct{})
	answered := 0 // only the stream's one acknowledging goroutine touches it
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		slots <- struct{}{}
		t0 := time.Now()
		s.AppendAsync(rec, func(_ uint64, err error) {
			if err != nil {
				b.Error(err)
			}
			lat[i] = time.Since(t0)
			<-slots
			if answered++; answered == b.N {
				close(finished)
			}
		})
	}
	<-finished
	el := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/el.Seconds(), "appends/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
