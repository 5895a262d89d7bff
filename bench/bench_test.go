package bench

import (
	"context"
	"github.com/hashgrid/hashgrid/stratum"
	"testing"
	"time"
)

// TestLoadAgainstBenchPool runs the three load modes at small scale against the
// benchmark pool, so the tools recorded in docs/benchmarks.md keep working.
func TestLoadAgainstBenchPool(t *testing.T) {
	ctx := context.Background()
	s, err := StartServer(ctx, ServerConfig{Listen: "127.0.0.1:0", Data: t.TempDir(), Txs: 100, MaxConn: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg := LoadConfig{URL: "stratum+tcp://" + s.Addr, User: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.t", Password: "d=" + BenchDiff, Conns: 8, InFlight: 4, Duration: time.Second}
	res, err := Submit(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted < 100 || res.Rejected > res.Accepted/100 || res.P99ms <= 0 {
		t.Errorf("submit run: %+v", res)
	}
	// Every accepted share reached the store.
	deadline := time.Now().Add(10 * time.Second)
	for {
		acc, _, _, err := s.books.store.Totals(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if acc >= res.Accepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store has %d accepted shares, the load client was told %d", acc, res.Accepted)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Notify mode: every held connection receives the next tip's clean job, dated by
	// the reader's clock, and by the kernel's receive time with settling readers.
	for _, opt := range []LoadConfig{{}, {RxTimestamps: true, Settle: 100 * time.Millisecond}} {
		hctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		ready := make(chan struct{})
		done := make(chan Result, 1)
		go func() {
			hc := LoadConfig{URL: cfg.URL, User: cfg.User, Password: cfg.Password, Conns: 50, RxTimestamps: opt.RxTimestamps, Settle: opt.Settle}
			r, err := Hold(hctx, hc, true, func() { close(ready) })
			if err != nil {
				t.Error(err)
			}
			done <- r
		}()
		<-ready
		if opt.RxTimestamps {
			// The kernel switches receive timestamps on a moment after a socket asks.
			time.Sleep(200 * time.Millisecond)
		}
		t0 := s.NewTip()
		r := <-done
		cancel()
		if r.NotifyReceived != 50 || r.NotifyUnstamped != 0 || r.LastNotifyUnixNano < t0.UnixNano() || r.LastNotifyUnixNano > time.Now().UnixNano() {
			t.Errorf("notify run %+v: %+v (t0 %d)", opt, r, t0.UnixNano())
		}
		if el := time.Duration(r.LastNotifyUnixNano - t0.UnixNano()); opt.Settle > 0 && el >= opt.Settle {
			t.Errorf("notify run %+v: last notify at %v, after the readers' settle time: dated by the read, not the kernel", opt, el)
		}
		t.Logf("%+v: 50 connections got the new tip within %v", opt, time.Duration(r.LastNotifyUnixNano-t0.UnixNano()))
	}
}

func TestQuickReply(t *testing.T) {
	tests := []struct {
		line         string
		id           uint64
		accepted, ok bool
	}{
		{`{"id":12,"result":true,"error":null}` + "\n", 12, true, true},
		{`{"id":13,"result":false,"error":[23,"Low difficulty share",null]}` + "\n", 13, false, true},
		{`{"reject-reason":"Above target","result":false,"error":null,"id":7}` + "\n", 7, false, true},
		{`{"result":true,"error":null,"id":2}` + "\n", 2, true, true},
		{`{"params":[1],"id":null,"method":"mining.set_difficulty"}` + "\n", 0, false, false},
		{`{"id":5,"method":"client.reconnect","params":[]}` + "\n", 0, false, false},
		{`{"result":[1,2],"error":null,"id":9}` + "\n", 0, false, false},
		{`{"result":true,"id":"x"}` + "\n", 0, false, false},
	}
	for _, tt := range tests {
		id, accepted, ok := quickReply([]byte(tt.line))
		if id != tt.id || accepted != tt.accepted || ok != tt.ok {
			t.Errorf("quickReply(%q) = %d, %v, %v; want %d, %v, %v", tt.line, id, accepted, ok, tt.id, tt.accepted, tt.ok)
		}
	}
}

func TestIsCleanNotify(t *testing.T) {
	tests := []struct {
		line string
		want bool
	}{
		// hashgrid
		{`{"id":null,"method":"mining.notify","params":["1f","00","01","02",["aa","bb"],"20000000","17034219","6553f100",true]}`, true},
		{`{"id":null,"method":"mining.notify","params":["1f","00","01","02",["aa","bb"],"20000000","17034219","6553f100",false]}`, false},
		// ckpool 0.9.9's key order
		{`{"params":["6","00","01","02",[],"20000000","207fffff","6553f100",true],"id":null,"method":"mining.notify"}`, true},
		{`{"params":["6","00","01","02",[],"20000000","207fffff","6553f100",false],"id":null,"method":"mining.notify"}`, false},
		{`{"id":4,"result":true,"error":null}`, false},
		{`{"id":null,"method":"mining.set_difficulty","params":[1]}`, false},
	}
	for _, tt := range tests {
		if got := isCleanNotify([]byte(tt.line)); got != tt.want {
			t.Errorf("isCleanNotify(%s) = %v, want %v", tt.line, got, tt.want)
		}
	}
}

func TestAppendSubmit(t *testing.T) {
	got := string(appendSubmit(nil, 101, "a.w", "1f", "0000000000000007", "6553f100", 0x00ab0c0d))
	want := `{"id":101,"method":"mining.submit","params":["a.w","1f","0000000000000007","6553f100","00ab0c0d"]}` + "\n"
	if got != want {
		t.Errorf("appendSubmit = %q, want %q", got, want)
	}
	if _, err := stratum.ParseMessage([]byte(got)); err != nil {
		t.Errorf("line does not parse: %v", err)
	}
}

// TestProcessUsage: burning CPU shows in the process's usage. The spin is bounded by
// the usage it must show, not by wall time: on a machine shared with other loads a
// fixed wall-clock spin may be given little CPU.
func TestProcessUsage(t *testing.T) {
	u0 := ProcessUsage()
	deadline := time.Now().Add(30 * time.Second)
	x := 0
	for ProcessUsage().Sub(u0).CPU < 20*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("30 s of spinning (%d loops) showed %v of CPU by getrusage", x, ProcessUsage().Sub(u0).CPU)
		}
		for range 10000 {
			x++
		}
	}
}
