package api_test

import (
	"encoding/json"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/market"
)

const marketAdminToken = "market-admin-SECRET-41d2"

// newMarket serves the market's real HTTP handler over a real ledger; it returns the
// server and the handler (whose Patterns the OpenAPI test reads). The compute API is
// mounted as `hashgrid market` mounts it.
func newMarket(t *testing.T) (*httptest.Server, http.Handler) {
	t.Helper()
	dir := t.TempDir()
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	m, err := market.New(market.Config{Network: &chaincfg.RegressionNetParams, Ledger: led, StatePath: filepath.Join(dir, "market.json")})
	if err != nil {
		t.Fatal(err)
	}
	// Compute leasing on the same book and accounts, as hashgrid market mounts it.
	cb, err := compute.New(compute.Config{Ledger: led, Accounts: m, Network: &chaincfg.RegressionNetParams})
	if err != nil {
		t.Fatal(err)
	}
	cb.Start()
	t.Cleanup(cb.Close)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collector(), cb.Collector())
	h := market.NewHandler(m, market.HTTPConfig{AdminToken: marketAdminToken, Compute: compute.NewHandler(cb),
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, h
}

// TestOneErrorShape asks the pool and the market for errors of every kind they
// answer, their own and their muxes', and wants the one shape from each.
func TestOneErrorShape(t *testing.T) {
	pool, _, _ := newServer(t, nil)
	mkt, _ := newMarket(t)
	for _, tc := range []struct {
		base, method, path, token string
		status                    int
		code                      string
	}{
		{pool.URL, "GET", "/api/v1/blocks/zz", "", 400, "invalid"},
		{pool.URL, "GET", "/api/v1/workers/" + strings.Repeat("x", 101), "", 400, "invalid"},
		{pool.URL, "GET", "/api/v1/workers/bcrt1qnobody", "", 404, "not_found"},
		{pool.URL, "GET", "/api/v1/admin/sessions", "wrong", 401, "unauthorized"},
		{pool.URL, "GET", "/api/v1/no-such-route", "", 404, "not_found"},
		{pool.URL, "DELETE", "/api/v1/pool", "", 405, "method_not_allowed"},
		{mkt.URL, "GET", "/api/v1/account", "", 401, "unauthorized"},
		{mkt.URL, "GET", "/api/v1/sellers/bcrt1qnobody", "", 404, "not_found"},
		{mkt.URL, "GET", "/api/v1/contracts/quote?start=x", "", 400, "invalid"},
		{mkt.URL, "POST", "/api/v1/admin/deposits", "wrong", 401, "unauthorized"},
		{mkt.URL, "GET", "/api/v1/no-such-route", "", 404, "not_found"},
		{mkt.URL, "DELETE", "/api/v1/orderbook", "", 405, "method_not_allowed"},
	} {
		req, _ := http.NewRequest(tc.method, tc.base+tc.path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got map[string]map[string]string
		if err := json.Unmarshal(body, &got); err != nil || len(got) != 1 || len(got["error"]) != 2 || got["error"]["message"] == "" {
			t.Errorf("%s %s: body %s: want exactly {\"error\":{\"code\":…,\"message\":…}}", tc.method, tc.path, body)
			continue
		}
		if resp.StatusCode != tc.status || got["error"]["code"] != tc.code || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: got %d %q (%s), want %d %q", tc.method, tc.path, resp.StatusCode, got["error"]["code"],
				resp.Header.Get("Content-Type"), tc.status, tc.code)
		}
		if _, ok := hashgrid.ParseErrorReply(body); !ok {
			t.Errorf("%s %s: ParseErrorReply refused %s", tc.method, tc.path, body)
		}
	}
}
