package pool

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hashgrid/hashgrid"
)

// Metrics are the pool's Prometheus collectors. A nil *Metrics records nothing.
type Metrics struct {
	conns       prometheus.Gauge
	shares      *prometheus.CounterVec
	drops       *prometheus.CounterVec
	broadcastS  prometheus.Histogram
	blocks      *prometheus.CounterVec
	recordFails prometheus.Counter
	work        prometheus.Counter
}

// NewMetrics registers the pool's collectors with r.
func NewMetrics(r prometheus.Registerer) *Metrics {
	m := &Metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hashgrid_stratum_authorized_connections",
			Help: "Stratum connections that have subscribed and authorized.",
		}),
		shares: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hashgrid_shares_total",
			Help: "Shares submitted, by result.",
		}, []string{"result"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hashgrid_stratum_dropped_total",
			Help: "Peers dropped or refused, by reason.",
		}, []string{"reason"}),
		broadcastS: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hashgrid_job_broadcast_seconds",
			Help:    "Time to send a new job to every connected miner.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		blocks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hashgrid_blocks_total",
			Help: "Blocks found, by the node's verdict.",
		}, []string{"status"}),
		recordFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hashgrid_share_record_failures_total",
			Help: "Accepted shares the share stream could not make durable (answered as errors).",
		}),
	}
	m.work = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hashgrid_accepted_work_total",
		Help: "Sum of the difficulty of accepted shares; rate(...) * 2^32 is the pool hashrate in H/s.",
	})
	r.MustRegister(m.conns, m.shares, m.drops, m.broadcastS, m.blocks, m.recordFails, m.work)
	return m
}

func (m *Metrics) connAuthorized() {
	if m != nil {
		m.conns.Inc()
	}
}

func (m *Metrics) connClosed() {
	if m != nil {
		m.conns.Dec()
	}
}

func (m *Metrics) share(r hashgrid.ShareResult) {
	if m != nil {
		m.shares.WithLabelValues(r.String()).Inc()
	}
}

func (m *Metrics) acceptedWork(d hashgrid.Diff) {
	if m != nil {
		m.work.Add(d.Float())
	}
}

func (m *Metrics) drop(reason string) {
	if m != nil {
		m.drops.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) broadcast(d time.Duration) {
	if m != nil {
		m.broadcastS.Observe(d.Seconds())
	}
}

func (m *Metrics) block(s hashgrid.BlockStatus) {
	if m != nil {
		m.blocks.WithLabelValues(s.String()).Inc()
	}
}

func (m *Metrics) recordFailed() {
	if m != nil {
		m.recordFails.Inc()
	}
}
