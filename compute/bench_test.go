package compute_test

import (
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/compute"
)

// BenchmarkSettle measures how many leases per second the market settles from
// order to close, against its SQLite ledger: the escrow funded, the lease fetched,
// one metered interval reported and settled, the outputs taken, the earnings
// released and made payable, the leftover refunded. With spot checks a second
// provider's check lease is settled as well (two leases per order).
func BenchmarkSettle(b *testing.B) {
	for _, verified := range []bool{false, true} {
		name := "unverified"
		if verified {
			name = "spot-checked"
		}
		b.Run(name, func(b *testing.B) {
			f := newFixture(b, compute.Config{Rand: func(int) int { return 0 }})
			tenant, _ := f.account(int64(b.N+1) * 10_000)
			ps := []testProvider{f.provider("a", 1, satPerMS), f.provider("b", 2, 2*satPerMS)}
			b.ResetTimer()
			for range b.N {
				o := f.order(tenant, 1, 10_000, !verified)
				f.clk.Add(10 * time.Millisecond)
				for _, p := range ps {
					for _, w := range f.work(p) {
						f.result(p, w.ID, 0, "out")
						f.report(p, w.ID, compute.UsageReport{Seq: 1, CPUNS: 5e6, WallNS: 5e6, Final: true})
					}
				}
				if v := f.orderView(tenant, o.ID); !v.Closed {
					b.Fatalf("order %+v not closed", v)
				}
			}
			b.StopTimer()
			leases := b.N
			if verified {
				leases *= 2
			}
			b.ReportMetric(float64(leases)/b.Elapsed().Seconds(), "leases/s")
			f.checkBooks(map[string]int64{tenant: int64(b.N+1) * 10_000})
		})
	}
}
