package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/payout"
)

// windowPages answers BlockWindow for one known block and records the paging it was
// asked for.
type windowPages struct {
	known        chainhash.Hash
	after        uint64
	limit        int
	payoutsAddrs []string
}

func (w *windowPages) Miner(ctx context.Context, addr string) (payout.MinerView, error) {
	return payout.MinerView{Address: addr}, nil
}

func (w *windowPages) Payouts(ctx context.Context, addr string) ([]payout.PayoutView, error) {
	w.payoutsAddrs = append(w.payoutsAddrs, addr)
	return []payout.PayoutView{{Batch: 1, Address: "a", Amount: 5}}, nil
}

func (w *windowPages) BlockWindow(ctx context.Context, h chainhash.Hash, after uint64, limit int) (payout.WindowView, error) {
	if h != w.known {
		return payout.WindowView{}, hashgrid.Errorf(hashgrid.ENOTFOUND, "no such block")
	}
	w.after, w.limit = after, limit
	return payout.WindowView{Block: h.String()}, nil
}

func TestPayoutRoutes(t *testing.T) {
	known := chainhash.Hash{1}
	ps := &windowPages{known: known}
	s := &Server{cfg: Config{Payouts: ps}, mux: hashgrid.NewMux(nil)}
	s.registerPayoutRoutes()
	tests := []struct {
		path string
		want int
	}{
		{"/api/v1/blocks/" + known.String() + "/window?after=7&limit=20", http.StatusOK},
		{"/api/v1/blocks/" + known.String() + "/window", http.StatusOK},
		{"/api/v1/blocks/" + chainhash.Hash{2}.String() + "/window", http.StatusNotFound},
		{"/api/v1/blocks/xyz/window", http.StatusBadRequest},
		{"/api/v1/blocks/" + known.String() + "/window?after=-1", http.StatusBadRequest},
		{"/api/v1/blocks/" + known.String() + "/window?limit=0", http.StatusBadRequest},
		{"/api/v1/blocks/" + known.String() + "/window?limit=10001", http.StatusBadRequest},
		{"/api/v1/payouts?address=abc", http.StatusOK},
		{"/api/v1/payouts?address=" + strings.Repeat("a", 101), http.StatusBadRequest},
		{"/api/v1/miners/" + strings.Repeat("a", 101), http.StatusBadRequest},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		s.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
		if rec.Code != tt.want {
			t.Errorf("GET %s = %d, want %d: %s", tt.path, rec.Code, tt.want, rec.Body.String())
		}
		if tt.path == "/api/v1/blocks/"+known.String()+"/window?after=7&limit=20" && (ps.after != 7 || ps.limit != 20) {
			t.Errorf("paging after=%d limit=%d, want 7, 20", ps.after, ps.limit)
		}
	}
	if len(ps.payoutsAddrs) != 1 || ps.payoutsAddrs[0] != "abc" {
		t.Errorf("payouts asked for %v", ps.payoutsAddrs)
	}
	// Without a payout service the routes do not exist.
	bare := &Server{cfg: Config{}, mux: hashgrid.NewMux(nil)}
	bare.registerPayoutRoutes()
	rec := httptest.NewRecorder()
	bare.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/payouts", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("payouts without a service: %d", rec.Code)
	}
}

type marker struct {
	windowPages
	batch int64
	txid  string
}

func (m *marker) MarkPaid(ctx context.Context, batch int64, txid string) error {
	if len(txid) != 64 {
		return hashgrid.Errorf(hashgrid.EINVALID, "txid must be 64 hex digits")
	}
	m.batch, m.txid = batch, txid
	return nil
}

func TestMarkPaidNeedsTokenAndTxid(t *testing.T) {
	m := &marker{}
	s := &Server{cfg: Config{Payouts: m, Dashboard: DashboardConfig{AdminToken: "s3cret-token"}}, mux: hashgrid.NewMux(nil)}
	s.registerPayoutRoutes()
	txid := strings.Repeat("ab", 32)
	post := func(path, tok, body string) int {
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		rec := httptest.NewRecorder()
		s.mux.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := post("/api/v1/admin/payouts/3/paid", "", `{"txid":"`+txid+`"}`); code != http.StatusUnauthorized || m.batch != 0 {
		t.Errorf("without a token: %d, batch %d", code, m.batch)
	}
	if code := post("/api/v1/admin/payouts/3/paid", "wrong", `{"txid":"`+txid+`"}`); code != http.StatusUnauthorized || m.batch != 0 {
		t.Errorf("wrong token: %d", code)
	}
	if code := post("/api/v1/admin/payouts/x/paid", "s3cret-token", `{"txid":"`+txid+`"}`); code != http.StatusBadRequest {
		t.Errorf("bad batch: %d", code)
	}
	if code := post("/api/v1/admin/payouts/3/paid", "s3cret-token", `{"txid":"ab"}`); code != http.StatusBadRequest {
		t.Errorf("bad txid: %d", code)
	}
	if code := post("/api/v1/admin/payouts/3/paid", "s3cret-token", `{"txid":"`+txid+`"}`); code != http.StatusOK || m.batch != 3 || m.txid != txid {
		t.Errorf("mark paid: %d, batch %d txid %s", code, m.batch, m.txid)
	}
}
