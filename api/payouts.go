package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/payout"
)

// PayoutService is what the API reads from the payout service.
type PayoutService interface {
	Miner(ctx context.Context, addr string) (payout.MinerView, error)
	Payouts(ctx context.Context, addr string) ([]payout.PayoutView, error)
	BlockWindow(ctx context.Context, hash chainhash.Hash, after uint64, limit int) (payout.WindowView, error)
}

// maxPayoutAddressLen bounds an address in a path or query.
const maxPayoutAddressLen = 100

// registerPayoutRoutes adds the payout endpoints when a payout service is configured.
func (s *Server) registerPayoutRoutes() {
	if s.cfg.Payouts == nil {
		return
	}
	s.mux.HandleFunc("GET /api/v1/miners/{address}", s.handleMiner)
	s.mux.HandleFunc("GET /api/v1/payouts", s.handlePayouts)
	s.mux.HandleFunc("GET /api/v1/blocks/{hash}/window", s.handleBlockWindow)
	if pm, ok := s.cfg.Payouts.(PayoutMarker); ok {
		s.mux.HandleFunc("POST /api/v1/admin/payouts/{batch}/paid", s.requireAdmin(s.cfg.Dashboard.AdminToken, func(w http.ResponseWriter, r *http.Request) {
			s.handleMarkPaid(w, r, pm)
		}))
	}
}

// PayoutMarker is implemented by a payout service whose exported batches an operator
// signs and broadcasts elsewhere: it records the transaction that paid a batch.
type PayoutMarker interface {
	MarkPaid(ctx context.Context, batch int64, txid string) error
}

// handleMarkPaid records that an exported payout batch was paid: body {"txid": "…"}.
func (s *Server) handleMarkPaid(w http.ResponseWriter, r *http.Request, pm PayoutMarker) {
	n, err := strconv.ParseInt(r.PathValue("batch"), 10, 64)
	if err != nil || n <= 0 {
		s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "batch must be a positive number"))
		return
	}
	var body struct {
		TxID string `json:"txid"`
	}
	if err := readBody(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := pm.MarkPaid(r.Context(), n, body.TxID); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"batch": n, "txid": body.TxID, "status": "paid"})
}

// MinerInfo is the reply of GET /api/v1/miners/{address}: shares and hashrate from
// the store, earnings from the ledger.
type MinerInfo struct {
	Address  string `json:"address"`
	Accepted uint64 `json:"shares_accepted"`
	Rejected uint64 `json:"shares_rejected"`
	// Hashrate is estimated from accepted work over hashrate_window_seconds.
	Hashrate       float64 `json:"hashrate"`
	HashrateWindow int64   `json:"hashrate_window_seconds"`
	payout.MinerView
}

func (s *Server) handleMiner(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	addr := r.PathValue("address")
	if addr == "" || len(addr) > maxPayoutAddressLen {
		s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad address"))
		return
	}
	all, err := s.cfg.Store.Workers(ctx, addr)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := MinerInfo{Address: addr, HashrateWindow: int64(s.cfg.HashrateWindow / time.Second)}
	for _, wk := range all {
		out.Accepted += wk.Accepted
		out.Rejected += wk.Rejected
	}
	now := s.cfg.Now()
	from, to, span := s.rateWindow(ctx, now)
	recent, err := s.cfg.Store.WorkBetween(ctx, from, to)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, wk := range recent {
		if wk.Address == addr {
			out.Hashrate += wk.Work.Hashes() / span.Seconds()
		}
	}
	mv, err := s.cfg.Payouts.Miner(ctx, addr)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(all) == 0 && mv.Balances.Earned == 0 {
		s.writeError(w, r, hashgrid.Errorf(hashgrid.ENOTFOUND, "nothing known of %s", addr))
		return
	}
	out.MinerView = mv
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handlePayouts(w http.ResponseWriter, r *http.Request) {
	addr := r.URL.Query().Get("address")
	if len(addr) > maxPayoutAddressLen {
		s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad address"))
		return
	}
	ps, err := s.cfg.Payouts.Payouts(r.Context(), addr)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

func (s *Server) handleBlockWindow(w http.ResponseWriter, r *http.Request) {
	hs := r.PathValue("hash")
	h, err := chainhash.NewHashFromStr(hs)
	if err != nil || len(hs) != 64 {
		s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad block hash"))
		return
	}
	q := r.URL.Query()
	var after uint64
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad after %q", v))
			return
		}
	}
	limit := payout.MaxWindowPage
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit <= 0 || limit > payout.MaxWindowPage {
			s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "limit must be 1..%d", payout.MaxWindowPage))
			return
		}
	}
	v, err := s.cfg.Payouts.BlockWindow(r.Context(), *h, after, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
