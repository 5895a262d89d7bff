package bench

import (
	"context"
	"flag"
	"net"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stratum/v2/client"
)

// The V1/V2 comparison's shape; the defaults keep the test short, the flags make it the
// benchmark recorded in docs/benchmarks.md.
var (
	v2Conns    = flag.Int("v2.conns", 4, "TestSubmitV1V2: connections per protocol")
	v2InFlight = flag.Int("v2.inflight", 4, "TestSubmitV1V2: submits outstanding per connection")
	v2Duration = flag.Duration("v2.duration", time.Second, "TestSubmitV1V2: length of each run")
)

// Encrypted V2 frame sizes: the sealed 6-byte header (22 bytes), then the payload and
// its 16-byte MAC.
const (
	v2SubmitStandardWire = 22 + 24 + 16 // SubmitSharesStandard: six U32
)

// TestSubmitV1V2 runs the submit load over V1 and over V2 (standard channels, through
// the bridge) against the same pool with the same shape, and checks that every V2
// share was accepted and cost exactly one SubmitSharesStandard frame upstream. It
// logs shares/s, p99 and bytes per share of both.
func TestSubmitV1V2(t *testing.T) {
	ctx := context.Background()
	s, err := StartServer(ctx, ServerConfig{Listen: "127.0.0.1:0", Data: t.TempDir(), Txs: 300, MaxConn: 1000, FixedDiff: 2.3283064365386963e-10, V2Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v2URL := s.V2URL
	user := "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.t"
	shape := LoadConfig{User: user, Password: "d=" + BenchDiff, Conns: *v2Conns, InFlight: *v2InFlight, Duration: *v2Duration}

	v1 := shape
	v1.URL = "stratum+tcp://" + s.Addr
	r1, err := Submit(ctx, v1)
	if err != nil {
		t.Fatal(err)
	}
	v2 := shape
	v2.URL = v2URL
	r2, err := SubmitV2(ctx, v2)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		name string
		r    Result
	}{{"V1", r1}, {"V2", r2}} {
		n := float64(r.r.Accepted + r.r.Rejected)
		t.Logf("%s: %d conns x %d in flight, %.0f shares/s, p50 %.3f ms, p99 %.3f ms, %.1f bytes up and %.1f down per share (%+v)",
			r.name, shape.Conns, shape.InFlight, r.r.PerSecond, r.r.P50ms, r.r.P99ms, float64(r.r.BytesUp)/n, float64(r.r.BytesDown)/n, r.r)
	}
	if r2.Accepted < 100 || r2.Rejected > r2.Accepted/100 || r2.Dropped != 0 || r2.P99ms <= 0 {
		t.Errorf("V2 run: %+v", r2)
	}
	if want := r2.Submits * v2SubmitStandardWire; r2.BytesUp != want {
		t.Errorf("V2 run: %d bytes upstream for %d shares, want %d (%d each)", r2.BytesUp, r2.Submits, want, v2SubmitStandardWire)
	}
}

// TestJobWireBytes measures what a new tip costs each idle connection on the wire: a
// clean mining.notify on V1, SetNewPrevHash with the job (and any SetTarget) on V2
// standard and extended channels. It checks that every connection got each tip.
func TestJobWireBytes(t *testing.T) {
	ctx := context.Background()
	s, err := StartServer(ctx, ServerConfig{Listen: "127.0.0.1:0", Data: t.TempDir(), Txs: 300, FixedDiff: 1, V2Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v2URL := s.V2URL
	user := "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.t"

	v1, err := dialConn(ctx, s.Addr, user, "x")
	if err != nil {
		t.Fatal(err)
	}
	defer v1.nc.Close()
	v1Tips := make(chan struct{}, 16)
	go func() {
		for {
			line, err := v1.br.ReadBytes('\n')
			if err != nil {
				return
			}
			if m, err := stratum.ParseMessage(line); err == nil && m.Method == "mining.notify" {
				v1.onNotify(m)
				select {
				case <-v1.clean:
					v1Tips <- struct{}{}
				default:
				}
			}
		}
	}()
	type v2c struct {
		c   *client.Client
		cnt *countConn
	}
	var v2s []v2c
	for _, kind := range []client.ChannelKind{client.Standard, client.Extended} {
		var cnt *countConn
		c, err := client.Dial(ctx, client.Config{URL: v2URL, User: user, Channel: kind, MinExtranonceSize: 4,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				cnt = &countConn{Conn: nc}
				return cnt, err
			}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		<-c.Updates()
		v2s = append(v2s, v2c{c, cnt})
	}
	const tips = 5
	time.Sleep(200 * time.Millisecond) // let the first jobs' traffic end before counting
	down0 := []uint64{v1.cnt.down.Load(), v2s[0].cnt.down.Load(), v2s[1].cnt.down.Load()}
	for range tips {
		s.NewTip()
		select {
		case <-v1Tips:
		case <-time.After(10 * time.Second):
			t.Fatal("V1 connection got no clean job")
		}
		for _, v := range v2s {
			deadline := time.After(10 * time.Second)
			for got := false; !got; {
				select {
				case w := <-v.c.Updates():
					got = w.PrevHash != [32]byte{}
				case <-deadline:
					t.Fatal("V2 connection got no job on the new tip")
				}
			}
		}
		time.Sleep(100 * time.Millisecond) // a tip's messages may come in parts
	}
	names := []string{"V1 notify", "V2 standard", "V2 extended"}
	cnts := []*countConn{v1.cnt, v2s[0].cnt, v2s[1].cnt}
	for i, c := range cnts {
		per := float64(c.down.Load()-down0[i]) / tips
		t.Logf("%s: %.1f bytes per new tip", names[i], per)
		if per <= 0 {
			t.Errorf("%s: no bytes per tip", names[i])
		}
	}
	// A standard channel's tip is at least SetNewPrevHash (22+48+16) and a future
	// NewMiningJob (22+45+16).
	if per := (v2s[0].cnt.down.Load() - down0[1]) / tips; per < 86+83 {
		t.Errorf("V2 standard: %d bytes per tip, below SetNewPrevHash and a job", per)
	}
}
