package compute

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Prometheus descriptions of the compute book's state, read when scraped.
var (
	descProviders = prometheus.NewDesc("hashgrid_compute_providers",
		"Providers registered, by state: online (reported within MissedReports intervals), paused (online, taking no new leases), offline, or marked (caught returning wrong results).", []string{"state"}, nil)
	descCores = prometheus.NewDesc("hashgrid_compute_cores",
		"Cores of online, unmarked, unpaused providers: offered in all, and held by running or pending leases.", []string{"use"}, nil)
	descLeases = prometheus.NewDesc("hashgrid_compute_leases",
		"Leases the book holds (closed orders' for Config.Retention), by kind and status.", []string{"kind", "status"}, nil)
	descComputeOrders = prometheus.NewDesc("hashgrid_compute_orders",
		"Orders the book holds (closed ones for Config.Retention), by status.", []string{"status"}, nil)
	descComputeEscrow = prometheus.NewDesc("hashgrid_compute_escrow_sat",
		"Tenants' escrow not yet charged or refunded, sat, over orders not closed.", nil, nil)
	descCharged = prometheus.NewDesc("hashgrid_compute_charged_sat",
		"What the book's orders were charged for metered work, sat.", nil, nil)
	descServiceRequests = prometheus.NewDesc("hashgrid_compute_service_requests",
		"Requests to the services the book holds, by result: served, failed, or waiting (queued or at the provider).", []string{"result"}, nil)
)

// Collector returns a Prometheus collector of the book's state: providers, cores
// offered and leased, leases and orders by status, escrow. It reads the state under
// the book's lock when scraped. Counts cover what the book holds in memory (closed
// orders for Config.Retention), so they are gauges.
func (b *Book) Collector() prometheus.Collector { return bookCollector{b} }

type bookCollector struct{ b *Book }

func (c bookCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descProviders, descCores, descLeases, descComputeOrders, descComputeEscrow, descCharged, descServiceRequests} {
		ch <- d
	}
}

func (c bookCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	var online, paused, offline, marked, offered, held int
	type ks struct{ kind, status string }
	leases := map[ks]int{}
	orders := map[string]int{}
	var escrow, charged int64
	var served, failed, waiting int64
	b.mu.Lock()
	for _, p := range b.providers {
		switch {
		case p.marked:
			marked++
		case b.online(p) && p.paused:
			paused++
		case b.online(p):
			online++
			offered += p.res.Cores
			held += p.usedCores
		default:
			offline++
		}
	}
	for _, l := range b.leases {
		leases[ks{l.kind, l.status}]++
	}
	for _, o := range b.orders {
		orders[o.status]++
		if s := o.svc; s != nil {
			served += s.served
			failed += s.failed
			waiting += int64(len(s.queue) + len(s.inflight))
		}
		charged += o.charged
		if !o.closed {
			escrow += max(o.funded-o.charged-o.refunded, 0)
		}
	}
	b.mu.Unlock()
	for _, s := range []struct {
		state string
		n     int
	}{{"online", online}, {"paused", paused}, {"offline", offline}, {"marked", marked}} {
		ch <- prometheus.MustNewConstMetric(descProviders, prometheus.GaugeValue, float64(s.n), s.state)
	}
	ch <- prometheus.MustNewConstMetric(descCores, prometheus.GaugeValue, float64(offered), "offered")
	ch <- prometheus.MustNewConstMetric(descCores, prometheus.GaugeValue, float64(held), "leased")
	for k, n := range leases {
		ch <- prometheus.MustNewConstMetric(descLeases, prometheus.GaugeValue, float64(n), k.kind, k.status)
	}
	for s, n := range orders {
		ch <- prometheus.MustNewConstMetric(descComputeOrders, prometheus.GaugeValue, float64(n), s)
	}
	ch <- prometheus.MustNewConstMetric(descComputeEscrow, prometheus.GaugeValue, float64(escrow))
	ch <- prometheus.MustNewConstMetric(descCharged, prometheus.GaugeValue, float64(charged))
	for _, r := range []struct {
		result string
		n      int64
	}{{"served", served}, {"failed", failed}, {"waiting", waiting}} {
		ch <- prometheus.MustNewConstMetric(descServiceRequests, prometheus.GaugeValue, float64(r.n), r.result)
	}
}
