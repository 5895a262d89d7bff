package market

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Prometheus descriptions of the market's state, read when scraped.
var (
	descOrders = prometheus.NewDesc("hashgrid_market_orders",
		"Hashrate orders the market holds, by status and kind.", []string{"status", "kind"}, nil)
	descSellers = prometheus.NewDesc("hashgrid_market_seller_connections",
		"Sellers' Stratum connections that are subscribed.", nil, nil)
	descSellerTHs = prometheus.NewDesc("hashgrid_market_seller_speed_ths",
		"Sellers' speed, TH/s, estimated from their valid shares.", nil, nil)
	descDeliveredTHs = prometheus.NewDesc("hashgrid_market_delivered_speed_ths",
		"Speed the buyers' pools accepted over the speed window, TH/s, summed over live orders.", nil, nil)
	descEscrow = prometheus.NewDesc("hashgrid_market_escrow_sat",
		"Buyers' escrow not yet owed to sellers or refunded, sat, over orders not closed.", nil, nil)
	descOrderShares = prometheus.NewDesc("hashgrid_market_order_shares",
		"Seller shares forwarded for the orders the market holds, by the destination's verdict (dropped: valid shares not forwarded).", []string{"result"}, nil)
)

// Collector returns a Prometheus collector of the market's state: its orders, sellers,
// speeds and escrow, read under the market's lock when scraped, so nothing on the
// share path records anything. Order share counts cover the orders the market still
// holds (a closed order is kept for Config.Retention), so they are gauges.
func (m *Market) Collector() prometheus.Collector { return marketCollector{m} }

type marketCollector struct{ m *Market }

func (c marketCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOrders, descSellers, descSellerTHs, descDeliveredTHs, descEscrow, descOrderShares} {
		ch <- d
	}
}

func (c marketCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	type sk struct{ status, kind string }
	orders := map[sk]int{}
	var delivered, sellerSpeed float64
	var escrow int64
	var accepted, rejected, stale, dropped uint64
	m.mu.Lock()
	now := m.cfg.Now()
	for _, o := range m.orders {
		r := o.rec
		orders[sk{r.Status, r.Kind}]++
		accepted += r.Accepted
		rejected += r.Rejected
		stale += r.Stale
		dropped += r.Dropped
		switch r.Status {
		case StatusActive, StatusPaused, StatusPending:
			delivered += o.deliv.rate(now, m.cfg.SpeedWindow)
		}
		if !r.Closed {
			if rest := r.Funded - o.spentLocked() - r.Refunded; rest > 0 {
				escrow += rest
			}
		}
	}
	sellers := len(m.sellers)
	for s := range m.sellers {
		sellerSpeed += s.speed(now)
	}
	m.mu.Unlock()
	for k, n := range orders {
		ch <- prometheus.MustNewConstMetric(descOrders, prometheus.GaugeValue, float64(n), k.status, k.kind)
	}
	ch <- prometheus.MustNewConstMetric(descSellers, prometheus.GaugeValue, float64(sellers))
	ch <- prometheus.MustNewConstMetric(descSellerTHs, prometheus.GaugeValue, sellerSpeed/1e12)
	ch <- prometheus.MustNewConstMetric(descDeliveredTHs, prometheus.GaugeValue, delivered/1e12)
	ch <- prometheus.MustNewConstMetric(descEscrow, prometheus.GaugeValue, float64(escrow))
	for _, r := range []struct {
		name string
		n    uint64
	}{{"accepted", accepted}, {"rejected", rejected}, {"stale", stale}, {"dropped", dropped}} {
		ch <- prometheus.MustNewConstMetric(descOrderShares, prometheus.GaugeValue, float64(r.n), r.name)
	}
}
