package node_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/node/regtest"
)

// badNode is an HTTP server that misbehaves the way a broken node does.
func badNode(t *testing.T, kind string) *node.Client {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch kind {
		case "hang":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "empty":
		case "lie":
			// Valid JSON-RPC, but a template whose transaction does not match its txid.
			id := strings.SplitN(strings.SplitN(string(body), `"id":`, 2)[1], ",", 2)[0]
			if strings.Contains(string(body), "getbestblockhash") {
				io.WriteString(w, `{"result":"`+strings.Repeat("ab", 32)+`","error":null,"id":`+id+`}`)
				return
			}
			io.WriteString(w, `{"result":{"version":536870912,"previousblockhash":"`+strings.Repeat("ab", 32)+`","transactions":[],"coinbasevalue":99999999999,"bits":"207fffff","curtime":1700000000,"mintime":1,"height":5},"error":null,"id":`+id+`}`)
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	c, err := node.NewClient(strings.Replace(srv.URL, "http://", "http://u:p@", 1), node.WithTimeout(300*time.Millisecond), node.WithLongPollTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestWatchFailsOverFromBadNode(t *testing.T) {
	for _, kind := range []string{"hang", "empty", "lie"} {
		t.Run(kind, func(t *testing.T) {
			good := regtest.StartT(t)
			ctx := testContext(t)
			s := newSet(t, node.SetOptions{PollInterval: 100 * time.Millisecond, ProbeTimeout: 300 * time.Millisecond, MinBackoff: 100 * time.Millisecond}, badNode(t, kind), good.Client())
			best, _ := good.Client().BestBlockHash(ctx)
			ch := watch(t, s)
			d := next(t, ch, 5*time.Second, func(d delivery) bool { return true })
			if d.t.PrevHash != best {
				t.Fatalf("template on %s, want the good node's tip %s", d.t.PrevHash, best)
			}
			hs, err := good.Client().Generate(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			next(t, ch, 2*time.Second, func(d delivery) bool { return d.t.PrevHash == hs[0] && d.newTip })
			st := s.Status()
			if !st.Degraded || st.Nodes[0].Up || st.Nodes[0].LastError == "" {
				t.Fatalf("status %+v, want degraded with node 0 down", st)
			}
			t.Logf("node 0 error: %s", st.Nodes[0].LastError)
		})
	}
}

func BenchmarkRegtestGetBlockTemplate(b *testing.B) {
	for _, txs := range []int{0, 50} {
		b.Run(map[int]string{0: "empty", 50: "50tx"}[txs], func(b *testing.B) {
			n := regtest.StartT(b)
			ctx := testContext(b)
			c := n.Client()
			if txs > 0 {
				if _, err := c.Generate(ctx, 100+txs); err != nil {
					b.Fatal(err)
				}
				for h := int64(1); h <= int64(txs); h++ {
					spendCoinbase(b, ctx, c, h, 1000+h)
				}
			}
			durs := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				tmpl, err := c.BlockTemplate(ctx, "")
				if err != nil {
					b.Fatal(err)
				}
				durs = append(durs, time.Since(start))
				if len(tmpl.Transactions) != txs {
					b.Fatalf("%d transactions, want %d", len(tmpl.Transactions), txs)
				}
			}
			b.StopTimer()
			slices.Sort(durs)
			b.ReportMetric(float64(durs[len(durs)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds()), "p99-µs")
		})
	}
}
