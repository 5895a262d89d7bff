package market

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid"
)

// maxBodyBytes bounds a request body.
const maxBodyBytes = 64 << 10

// WorkerView is one seller worker's record.
type WorkerView struct {
	Worker       string  `json:"worker"`
	Online       bool    `json:"online"`
	Valid        uint64  `json:"shares_valid"` // valid at the market's difficulty: each earns
	ValidWork    float64 `json:"valid_work"`
	Accepted     uint64  `json:"shares_accepted"`
	Rejected     uint64  `json:"shares_rejected"`
	Stale        uint64  `json:"shares_stale"`
	Invalid      uint64  `json:"shares_invalid"`
	AcceptedWork float64 `json:"accepted_work"`
	Earned       int64   `json:"earned"` // posted to the ledger by settlements, satoshis
	LastShare    string  `json:"last_share,omitempty"`
}

// SellerView is GET /api/v1/sellers/{address}.
type SellerView struct {
	Address string `json:"address"`
	Earned  int64  `json:"earned"` // all the address's workers have earned at the market, satoshis
	// Payable, Pending and Paid are the address's balances in the payout engine's
	// book, in satoshis: what waits for the payout threshold (market earnings and,
	// when the address also mines at the pool, its pool earnings alike), what is in a
	// payout batch not yet sent, and what payout transactions sent. The payouts
	// themselves, with their transactions, are the pool's GET /api/v1/payouts.
	Payable int64        `json:"payable"`
	Pending int64        `json:"pending"`
	Paid    int64        `json:"paid"`
	Workers []WorkerView `json:"workers"`
}

// Seller returns a payout address's workers, earnings and payout balances.
func (m *Market) Seller(ctx context.Context, addr string) (SellerView, error) {
	v := SellerView{Address: addr, Workers: []WorkerView{}}
	for _, b := range []struct {
		kind string
		dst  *int64
	}{{"balance", &v.Payable}, {"pending", &v.Pending}, {"paid", &v.Paid}} {
		n, err := m.led.Balance(ctx, "miner:"+addr+":"+b.kind)
		if err != nil {
			return SellerView{}, err
		}
		*b.dst = n
	}
	prefix := addr + "/"
	seen := map[string]bool{}
	m.mu.Lock()
	for k, w := range m.workers {
		name, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		seen[k] = true
		wv := WorkerView{Worker: name, Online: w.Conns > 0, Valid: w.Valid, ValidWork: w.ValidWork.Float(), Accepted: w.Accepted, Rejected: w.Rejected, Stale: w.Stale,
			Invalid: w.Invalid, AcceptedWork: w.Work.Float(), Earned: m.earned[k]}
		if !w.Last.IsZero() {
			wv.LastShare = w.Last.UTC().Format(time.RFC3339Nano)
		}
		v.Workers = append(v.Workers, wv)
	}
	for k, e := range m.earned {
		if name, ok := strings.CutPrefix(k, prefix); ok && !seen[k] {
			v.Workers = append(v.Workers, WorkerView{Worker: name, Earned: e})
		}
	}
	m.mu.Unlock()
	for _, w := range v.Workers {
		v.Earned += w.Earned
	}
	if len(v.Workers) == 0 {
		return v, hashgrid.Errorf(hashgrid.ENOTFOUND, "no seller %q", addr)
	}
	sort.Slice(v.Workers, func(i, j int) bool { return v.Workers[i].Worker < v.Workers[j].Worker })
	return v, nil
}

// HTTPConfig configures the API handler.
type HTTPConfig struct {
	// AdminToken authorizes POST /api/v1/admin/deposits and the unmasked view of an
	// order's shares; empty disables both.
	AdminToken string
	// AccountsPerHour and AccountBurst bound POST /api/v1/accounts per remote address
	// (an IPv4 address, or an IPv6 /64): a bucket of AccountBurst refilled at
	// AccountsPerHour. Defaults 10 and 5. The address is the TCP peer's: behind a
	// reverse proxy every buyer shares the proxy's bucket (forwarded headers are not
	// trusted, since anyone can send them).
	AccountsPerHour float64
	AccountBurst    int
	Logger          *slog.Logger
	Now             func() time.Time

	// Compute, when not nil, serves the compute-leasing API (package compute) under
	// /api/v1/compute/, authenticated by the market's API keys.
	Compute http.Handler
	// Metrics, when not nil, is served at GET /metrics (Prometheus).
	Metrics http.Handler
}

type api struct {
	m         *Market
	cfg       HTTPConfig
	log       *slog.Logger
	mux       *hashgrid.Mux
	adminHash [sha256.Size]byte
	accounts  *addrLimiter
}

// NewHandler returns the market's HTTP API. Buyers authenticate with
// "Authorization: Bearer KEY"; keys and the admin token are never logged.
func NewHandler(m *Market, cfg HTTPConfig) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AccountsPerHour <= 0 {
		cfg.AccountsPerHour = 10
	}
	if cfg.AccountBurst <= 0 {
		cfg.AccountBurst = 5
	}
	a := &api{m: m, cfg: cfg, log: cfg.Logger, mux: hashgrid.NewMux(cfg.Logger), adminHash: sha256.Sum256([]byte(cfg.AdminToken)),
		accounts: newAddrLimiter(cfg.AccountsPerHour/3600, cfg.AccountBurst, maxLimitedAddrs, cfg.Now)}
	a.mux.HandleFunc("GET /{$}", a.page)
	a.mux.HandleFunc("GET /static/{file}", a.static)
	a.mux.HandleFunc("GET /api/v1/orders/{id}/speed", a.auth(a.speed))
	a.mux.HandleFunc("GET "+hashgrid.OpenAPIPath, hashgrid.ServeOpenAPI)
	a.mux.HandleFunc("GET /api/v1/orderbook", a.orderbook)
	a.mux.HandleFunc("GET /api/v1/orders/{id}/shares", a.shares)
	a.mux.HandleFunc("GET /api/v1/sellers/{address}", a.seller)
	a.mux.HandleFunc("GET /api/v1/contracts/quote", a.quote)
	a.mux.HandleFunc("POST /api/v1/accounts", a.createAccount)
	a.mux.HandleFunc("POST /api/v1/admin/deposits", a.deposit)
	a.mux.HandleFunc("GET /api/v1/account", a.auth(a.account))
	a.mux.HandleFunc("GET /api/v1/orders", a.auth(a.listOrders))
	a.mux.HandleFunc("POST /api/v1/orders", a.auth(a.placeOrder))
	a.mux.HandleFunc("GET /api/v1/orders/{id}", a.auth(a.getOrder))
	a.mux.HandleFunc("PATCH /api/v1/orders/{id}", a.auth(a.editOrder))
	a.mux.HandleFunc("POST /api/v1/orders/{id}/{action}", a.auth(a.orderAction))
	a.mux.HandleFunc("POST /api/v1/contracts", a.auth(a.buyContract))
	a.mux.HandleFunc("POST /api/v1/contracts/{id}/transfer", a.auth(a.offerTransfer))
	a.mux.HandleFunc("POST /api/v1/contracts/{id}/accept", a.auth(a.acceptTransfer))
	if cfg.Metrics != nil {
		a.mux.Handle("GET /metrics", cfg.Metrics)
	}
	if pc, ok := cfg.Compute.(interface{ Patterns() []string }); ok {
		// Each of its routes, not the subtree, so that Patterns lists them all (the
		// OpenAPI test checks them against the document) and the market's mux answers
		// unknown paths and methods below /api/v1/compute/ as it does its own.
		for _, p := range pc.Patterns() {
			a.mux.Handle(p, cfg.Compute)
		}
	} else if cfg.Compute != nil {
		a.mux.Handle("/api/v1/compute/", cfg.Compute)
	}
	return a.mux
}

// Serve runs h on l until ctx ends, then shuts it down.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// fail answers err in the one error shape of every hashgrid service.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	hashgrid.WriteHTTPError(w, r, a.log, err)
}

// tokenEqual compares a presented secret with the SHA-256 of the expected one. Both
// sides are hashed first, so the comparison takes the same time whatever the expected
// secret's length and whichever byte differs.
func tokenEqual(got string, want [sha256.Size]byte) bool {
	g := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(g[:], want[:]) == 1
}

// isAdmin reports whether the request carries the admin token.
func (a *api) isAdmin(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && a.cfg.AdminToken != "" && tokenEqual(strings.TrimSpace(tok), a.adminHash)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return hashgrid.Errorf(hashgrid.EINVALID, "request body: %v", err)
	}
	return nil
}

type authed func(w http.ResponseWriter, r *http.Request, account string)

func (a *api) auth(h authed) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			a.fail(w, r, hashgrid.Errorf(hashgrid.EUNAUTHORIZED, "missing API key (Authorization: Bearer KEY)"))
			return
		}
		acct, err := a.m.Authenticate(strings.TrimSpace(key))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		h(w, r, acct)
	}
}

func (a *api) orderbook(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.m.OrderBook())
}

// shares answers the order's buyer (the owner of any of its segments) with the
// samples delivered to them, sellers named by a per-order pseudonym; the admin token
// sees every sample with the sellers' workers.
func (a *api) shares(w http.ResponseWriter, r *http.Request) {
	if a.isAdmin(r) {
		s, err := a.m.Shares(r.PathValue("id"))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, s)
		return
	}
	a.auth(func(w http.ResponseWriter, r *http.Request, acct string) {
		s, err := a.m.SharesFor(acct, r.PathValue("id"))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, s)
	})(w, r)
}

func (a *api) speed(w http.ResponseWriter, r *http.Request, acct string) {
	h, err := a.m.SpeedHistory(acct, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

func (a *api) seller(w http.ResponseWriter, r *http.Request) {
	addr := r.PathValue("address")
	if addr == "" || len(addr) > 100 {
		a.fail(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad address"))
		return
	}
	v, err := a.m.Seller(r.Context(), addr)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *api) quote(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var req struct {
		Speed float64
		Start time.Time
		End   time.Time
	}
	if err := json.Unmarshal([]byte(`"`+q.Get("start")+`"`), &req.Start); err != nil {
		a.fail(w, r, hashgrid.Errorf(hashgrid.EINVALID, "start: want RFC 3339 time"))
		return
	}
	if err := json.Unmarshal([]byte(`"`+q.Get("end")+`"`), &req.End); err != nil {
		a.fail(w, r, hashgrid.Errorf(hashgrid.EINVALID, "end: want RFC 3339 time"))
		return
	}
	if err := json.Unmarshal([]byte(q.Get("speed")), &req.Speed); err != nil {
		a.fail(w, r, hashgrid.Errorf(hashgrid.EINVALID, "speed: want a number of TH/s"))
		return
	}
	qt, err := a.m.QuoteContract(req.Speed, req.Start, req.End)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, qt)
}

// AccountCreated is the reply to POST /api/v1/accounts; the key is shown only here.
type AccountCreated struct {
	ID     string `json:"id"`
	APIKey string `json:"api_key"`
}

func (a *api) createAccount(w http.ResponseWriter, r *http.Request) {
	if !a.accounts.allow(limitKey(r.RemoteAddr)) {
		w.Header().Set("Retry-After", strconv.Itoa(int(3600/a.cfg.AccountsPerHour)+1))
		a.fail(w, r, hashgrid.Errorf(hashgrid.ERATELIMITED, "too many accounts created from your address; try again later"))
		return
	}
	id, key, err := a.m.CreateAccount()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, AccountCreated{ID: id, APIKey: key})
}

// DepositRequest is POST /api/v1/admin/deposits.
type DepositRequest struct {
	Account   string `json:"account"`
	Amount    int64  `json:"amount"`
	Reference string `json:"reference"`
}

func (a *api) deposit(w http.ResponseWriter, r *http.Request) {
	if !a.isAdmin(r) {
		a.fail(w, r, hashgrid.Errorf(hashgrid.EUNAUTHORIZED, "admin token required"))
		return
	}
	var req DepositRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.m.Deposit(r.Context(), req.Account, req.Amount, req.Reference); err != nil {
		a.fail(w, r, err)
		return
	}
	bal, err := a.m.Balance(r.Context(), req.Account)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, AccountView{ID: req.Account, Balance: bal})
}

// AccountView is GET /api/v1/account.
type AccountView struct {
	ID      string      `json:"id"`
	Balance int64       `json:"balance"`
	Orders  []OrderView `json:"orders,omitempty"`
}

func (a *api) account(w http.ResponseWriter, r *http.Request, acct string) {
	bal, err := a.m.Balance(r.Context(), acct)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, AccountView{ID: acct, Balance: bal, Orders: a.m.Orders(acct)})
}

func (a *api) listOrders(w http.ResponseWriter, r *http.Request, acct string) {
	o := a.m.Orders(acct)
	if o == nil {
		o = []OrderView{}
	}
	writeJSON(w, http.StatusOK, o)
}

func (a *api) placeOrder(w http.ResponseWriter, r *http.Request, acct string) {
	var req OrderRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.m.PlaceOrder(r.Context(), acct, req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (a *api) getOrder(w http.ResponseWriter, r *http.Request, acct string) {
	v, err := a.m.Order(acct, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *api) editOrder(w http.ResponseWriter, r *http.Request, acct string) {
	var e OrderEdit
	if err := decode(r, &e); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.m.EditOrder(acct, r.PathValue("id"), e)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *api) orderAction(w http.ResponseWriter, r *http.Request, acct string) {
	id := r.PathValue("id")
	var v OrderView
	var err error
	switch r.PathValue("action") {
	case "pause":
		v, err = a.m.PauseOrder(acct, id)
	case "resume":
		v, err = a.m.ResumeOrder(acct, id)
	case "cancel":
		v, err = a.m.CancelOrder(acct, id)
	case "refill":
		var req struct {
			Amount int64 `json:"amount"`
		}
		if err = decode(r, &req); err == nil {
			v, err = a.m.RefillOrder(r.Context(), acct, id, req.Amount)
		}
	default:
		err = hashgrid.Errorf(hashgrid.ENOTFOUND, "no action %q (pause, resume, refill, cancel)", r.PathValue("action"))
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *api) buyContract(w http.ResponseWriter, r *http.Request, acct string) {
	var req ContractRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.m.BuyContract(r.Context(), acct, req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

// TransferRequest is POST /api/v1/contracts/{id}/transfer.
type TransferRequest struct {
	To    string `json:"to"`
	Price int64  `json:"price"`
}

func (a *api) offerTransfer(w http.ResponseWriter, r *http.Request, acct string) {
	var req TransferRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.m.OfferTransfer(acct, r.PathValue("id"), req.To, req.Price)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.m.save()
	writeJSON(w, http.StatusOK, v)
}

func (a *api) acceptTransfer(w http.ResponseWriter, r *http.Request, acct string) {
	var d Destination
	if err := decode(r, &d); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.m.AcceptTransfer(r.Context(), acct, r.PathValue("id"), d)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
