// Package api is hashgrid's HTTP interface: JSON endpoints under /api/v1, /healthz,
// Prometheus /metrics, the live dashboard and public-pool compatible endpoints. Errors are mapped from hashgrid.Error codes
// to HTTP statuses in one place (writeError); clients see safe messages only.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pool"
)

// PoolStats is what the API reads from the running pool.
type PoolStats interface {
	Stats() pool.Stats
}

// NodeStatus reports the node adapter's health.
type NodeStatus interface {
	Status() node.Status
}

// Config wires the API to the running services. Store and Pool are required.
type Config struct {
	Store   hashgrid.ShareStore
	Pool    PoolStats
	Node    NodeStatus // optional
	Network string
	Metrics http.Handler // optional; served at /metrics
	Logger  *slog.Logger
	Now     func() time.Time
	// HashrateWindow is the period over which hashrates are estimated; default 10m.
	HashrateWindow time.Duration
	// Dashboard wires the live dashboard, the public-pool style endpoints and the
	// admin actions (dashboard.go, compat.go, admin.go).
	Dashboard DashboardConfig
	// Payouts, when set, serves the miner, payout and block window endpoints (payouts.go).
	Payouts PayoutService
}

// Server serves the API.
type Server struct {
	cfg     Config
	mux     *hashgrid.Mux
	hs      *http.Server
	started time.Time // the pool's start (Dashboard.Started), for young pools' hashrates
	rates   rates
}

// New returns an API server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HashrateWindow == 0 {
		cfg.HashrateWindow = 10 * time.Minute
	}
	s := &Server{cfg: cfg, mux: hashgrid.NewMux(cfg.Logger), started: cfg.Dashboard.Started}
	if s.started.IsZero() {
		s.started = cfg.Now()
	}
	s.mux.HandleFunc("GET /api/v1/pool", s.handlePool)
	s.mux.HandleFunc("GET /api/v1/workers/{address}", s.handleWorkers)
	s.mux.HandleFunc("GET /api/v1/blocks", s.handleBlocks)
	s.mux.HandleFunc("GET /api/v1/blocks/{hash}", s.handleBlock)
	s.mux.HandleFunc("GET /healthz", s.handleHealth)
	s.mux.HandleFunc("GET "+hashgrid.OpenAPIPath, hashgrid.ServeOpenAPI)
	if cfg.Metrics != nil {
		s.mux.Handle("GET /metrics", cfg.Metrics)
	}
	s.dashboardRoutes()
	s.registerPayoutRoutes()
	s.hs = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	return s
}

// Handler returns the API's handler, for tests and for mounting elsewhere. What no
// route takes is answered in the one error shape too.
func (s *Server) Handler() http.Handler { return s.mux }

// Patterns returns every route pattern registered, for the OpenAPI document's test.
func (s *Server) Patterns() []string { return s.mux.Patterns() }

// Handle adds a route (used by other services sharing the listener).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Serve serves on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the server gracefully.
func (s *Server) Shutdown(ctx context.Context) error { return s.hs.Shutdown(ctx) }

// PoolInfo is the reply of GET /api/v1/pool.
type PoolInfo struct {
	Network           string  `json:"network"`
	Height            int64   `json:"height"` // height of the block being mined
	NetworkDifficulty float64 `json:"network_difficulty"`
	PrevHash          string  `json:"prev_hash"`
	Connections       int     `json:"connections"`
	WorkersOnline     int     `json:"workers_online"`
	Hashrate          float64 `json:"hashrate"` // hashes per second, over hashrate_span_seconds
	HashrateWindow    int64   `json:"hashrate_window_seconds"`
	// HashrateSpan is the time the hashrates really cover: the window, or less while
	// the pool is younger than the window.
	HashrateSpan int64 `json:"hashrate_span_seconds"`
	// NetworkHashrate is estimated from the difficulty and the time the last
	// network_hashrate_blocks blocks took (0 blocks: assuming 600 s per block).
	NetworkHashrate       float64 `json:"network_hashrate"`
	NetworkHashrateBlocks int     `json:"network_hashrate_blocks"`
	// NetworkHashrateFrom says what network_hashrate is: "blocks" (measured over
	// network_hashrate_blocks), "difficulty" (600 s a block assumed) or "pool" (the
	// pool's own hashrate, when the estimate was below it).
	NetworkHashrateFrom string  `json:"network_hashrate_from"`
	SharesAccepted      uint64  `json:"shares_accepted"`
	SharesRejected      uint64  `json:"shares_rejected"`
	AcceptedWork        float64 `json:"accepted_work"` // sum of accepted share difficulty
	BlocksFound         int     `json:"blocks_found"`
	LastTemplate        string  `json:"last_template,omitempty"`
}

func (s *Server) handlePool(w http.ResponseWriter, r *http.Request) {
	info, err := s.poolInfo(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) poolInfo(ctx context.Context) (PoolInfo, error) {
	st := s.cfg.Pool.Stats()
	acc, rej, work, err := s.cfg.Store.Totals(ctx)
	if err != nil {
		return PoolInfo{}, err
	}
	now := s.cfg.Now()
	from, to, span := s.rateWindow(ctx, now)
	recent, err := s.cfg.Store.WorkBetween(ctx, from, to)
	if err != nil {
		return PoolInfo{}, err
	}
	var rw hashgrid.Work
	online := 0
	for _, wk := range recent {
		rw = rw.Plus(wk.Work)
		if wk.Accepted > 0 {
			online++
		}
	}
	blocks, err := s.cfg.Store.Blocks(ctx, 1000)
	if err != nil {
		return PoolInfo{}, err
	}
	found := 0
	for _, b := range blocks {
		if b.Status != hashgrid.BlockRejected {
			found++
		}
	}
	info := PoolInfo{
		Network:           s.cfg.Network,
		Height:            st.Height,
		NetworkDifficulty: st.NetworkDiff,
		PrevHash:          st.PrevHash,
		Connections:       st.Connections,
		WorkersOnline:     online,
		Hashrate:          rw.Hashes() / span.Seconds(),
		HashrateWindow:    int64(s.cfg.HashrateWindow / time.Second),
		HashrateSpan:      int64(span / time.Second),
		SharesAccepted:    acc,
		SharesRejected:    rej,
		AcceptedWork:      work.Float(),
		BlocksFound:       found,
	}
	info.NetworkHashrate, info.NetworkHashrateBlocks = s.networkHashrate(ctx, now, st.NetworkDiff)
	info.NetworkHashrateFrom = "blocks"
	if info.NetworkHashrateBlocks == 0 {
		info.NetworkHashrateFrom = "difficulty"
	}
	// The pool is part of the network: a network estimate below the pool's own
	// measured rate is known to be low (on regtest nearly every share is a block, so
	// blocks say little of the work spent), and the pool's rate is the better bound.
	if info.Hashrate > info.NetworkHashrate {
		info.NetworkHashrate, info.NetworkHashrateFrom = info.Hashrate, "pool"
	}
	if !st.LastTemplate.IsZero() {
		info.LastTemplate = st.LastTemplate.UTC().Format(time.RFC3339)
	}
	return info, nil
}

// WorkerInfo is one worker in GET /api/v1/workers/{address}.
type WorkerInfo struct {
	Name      string  `json:"name"`
	Accepted  uint64  `json:"shares_accepted"`
	Rejected  uint64  `json:"shares_rejected"`
	Work      float64 `json:"accepted_work"`
	Hashrate  float64 `json:"hashrate"`
	LastShare string  `json:"last_share,omitempty"`
	Protocol  string  `json:"protocol,omitempty"` // of its open connections: "v1", "v2" (Stratum V2), or "v1+v2"; none offline
}

// AddressInfo is the reply of GET /api/v1/workers/{address}.
type AddressInfo struct {
	Address  string       `json:"address"`
	Accepted uint64       `json:"shares_accepted"`
	Rejected uint64       `json:"shares_rejected"`
	Hashrate float64      `json:"hashrate"`
	Workers  []WorkerInfo `json:"workers"`
}

func (s *Server) handleWorkers(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	addr := r.PathValue("address")
	if addr == "" || len(addr) > 100 {
		s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad address"))
		return
	}
	all, err := s.cfg.Store.Workers(ctx, addr)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(all) == 0 {
		s.writeError(w, r, hashgrid.Errorf(hashgrid.ENOTFOUND, "no shares from %s", addr))
		return
	}
	now := s.cfg.Now()
	from, to, span := s.rateWindow(ctx, now)
	recent, err := s.cfg.Store.WorkBetween(ctx, from, to)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rate := map[string]float64{}
	for _, wk := range recent {
		if wk.Address == addr {
			rate[wk.Name] = wk.Work.Hashes() / span.Seconds()
		}
	}
	proto := map[string]string{}
	if sp := s.cfg.Dashboard.Sessions; sp != nil {
		for _, si := range sp.Sessions() {
			if si.Address == addr {
				for _, n := range si.Workers {
					proto[n] = addProtocol(proto[n], si.UserAgent)
				}
			}
		}
	}
	out := AddressInfo{Address: addr, Workers: []WorkerInfo{}}
	for _, wk := range all {
		wi := WorkerInfo{Name: wk.Name, Accepted: wk.Accepted, Rejected: wk.Rejected, Work: wk.Work.Float(), Hashrate: rate[wk.Name], Protocol: proto[wk.Name]}
		if !wk.LastShare.IsZero() {
			wi.LastShare = wk.LastShare.UTC().Format(time.RFC3339Nano)
		}
		out.Accepted += wk.Accepted
		out.Rejected += wk.Rejected
		out.Hashrate += wi.Hashrate
		out.Workers = append(out.Workers, wi)
	}
	writeJSON(w, http.StatusOK, out)
}

// BlockInfo is one block in GET /api/v1/blocks.
type BlockInfo struct {
	Hash          string  `json:"hash"`
	Height        int64   `json:"height"`
	Time          string  `json:"time"`
	Finder        string  `json:"finder"`
	Worker        string  `json:"worker"`
	Reward        int64   `json:"reward_sat"`
	Fees          int64   `json:"fees_sat"`
	NetworkDiff   float64 `json:"network_difficulty"`
	Status        string  `json:"status"`
	Reason        string  `json:"reason,omitempty"`
	Confirmations int64   `json:"confirmations"`
	ShareSeq      uint64  `json:"share_seq"`
}

func blockInfo(b hashgrid.Block) BlockInfo {
	return BlockInfo{
		Hash: chainhash.Hash(b.Hash).String(), Height: b.Height, Time: b.Time.UTC().Format(time.RFC3339),
		Finder: b.Address, Worker: b.Worker, Reward: b.Reward, Fees: b.Fees, NetworkDiff: b.NetworkDiff,
		Status: b.Status.String(), Reason: b.Reason, Confirmations: b.Confirmations, ShareSeq: b.ShareSeq,
	}
}

func (s *Server) handleBlocks(w http.ResponseWriter, r *http.Request) {
	blocks, err := s.cfg.Store.Blocks(r.Context(), 500)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]BlockInfo, 0, len(blocks))
	for _, b := range blocks {
		out = append(out, blockInfo(b))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleBlock(w http.ResponseWriter, r *http.Request) {
	h, err := chainhash.NewHashFromStr(r.PathValue("hash"))
	if err != nil || len(r.PathValue("hash")) != 64 {
		s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad block hash"))
		return
	}
	b, err := s.cfg.Store.BlockByHash(r.Context(), *h)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, blockInfo(b))
}

// Health is the reply of GET /healthz.
type Health struct {
	Status   string       `json:"status"` // ok, degraded
	Problems []string     `json:"problems,omitempty"`
	Node     *node.Status `json:"node,omitempty"`
	HasWork  bool         `json:"has_work"`
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	h := Health{Status: "ok"}
	st := s.cfg.Pool.Stats()
	h.HasWork = !st.LastTemplate.IsZero()
	if !h.HasWork {
		h.Problems = append(h.Problems, "no block template yet")
	}
	if s.cfg.Node != nil {
		ns := s.cfg.Node.Status()
		h.Node = &ns
		if ns.Degraded {
			h.Problems = append(h.Problems, "node degraded")
		}
		for _, n := range ns.Nodes {
			if !n.Up {
				h.Problems = append(h.Problems, "node down: "+n.URL)
			}
		}
	}
	if _, err := s.cfg.Store.LastSeq(r.Context()); err != nil {
		h.Problems = append(h.Problems, "store: "+hashgrid.ErrorMessage(err))
	}
	code := http.StatusOK
	if len(h.Problems) > 0 {
		h.Status = "degraded"
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, h)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// writeError answers err in the one error shape of every hashgrid service
// (hashgrid.WriteHTTPError: the code's status from the catalogue's one table).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	hashgrid.WriteHTTPError(w, r, s.cfg.Logger, err)
}
