package natsstream

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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

// BenchmarkShip measures how fast a Shipper moves a local log's backlog of 128-byte
// records into JetStream (R1, R3): in ack mode local it must outpace the appends.
func BenchmarkShip(b *testing.B) {
	rec := make([]byte, 128)
	for _, backend := range []string{"R1", "R3"} {
		b.Run(backend, func(b *testing.B) {
			var nc *nats.Conn
			opts := Options{FrontEnd: "bench"}
			if backend == "R1" {
				nc = connect(b, startServer(b))
			} else {
				nodes := startCluster(b, 3)
				nc = connect(b, nodes...)
				opts.Replicas = 3
				open(b, nc, opts).Close() // waits for the cluster to form
			}
			log, err := stream.Open(b.TempDir(), stream.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer log.Close()
			done := make(chan struct{})
			answered := 0
			for range b.N {
				log.AppendAsync(rec, func(_ uint64, err error) {
					if err != nil {
						b.Error(err)
					}
					if answered++; answered == b.N {
						close(done)
					}
				})
			}
			<-done
			sh, err := NewShipper(context.Background(), nc, log, filepath.Join(b.TempDir(), "pos"), opts)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			b.ResetTimer()
			start := time.Now()
			go func() { ran <- sh.Run(ctx) }()
			for sh.Shipped() < uint64(b.N) {
				time.Sleep(time.Millisecond) // polling the shipper's progress
			}
			el := time.Since(start)
			b.StopTimer()
			cancel()
			if err := <-ran; !errors.Is(err, context.Canceled) {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
		})
	}
}
