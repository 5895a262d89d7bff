package compute

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid"
)

// maxBodyBytes bounds a request body other than an order's.
const maxBodyBytes = 2*MaxOutputBytes + 64<<10

type api struct {
	b   *Book
	log *slog.Logger
}

// NewHandler returns the compute API, to be served under /api/v1/compute/ by the
// market's HTTP server (market.HTTPConfig.Compute). Tenants and providers
// authenticate with their market API key, "Authorization: Bearer KEY".
func NewHandler(b *Book) *hashgrid.Mux {
	a := &api{b: b, log: b.log}
	mux := hashgrid.NewMux(b.log)
	mux.HandleFunc("GET /api/v1/compute/offers", a.offers)
	mux.HandleFunc("GET /api/v1/compute/leases", a.liveLeases)
	mux.HandleFunc("POST /api/v1/compute/orders", a.auth(a.placeOrder))
	mux.HandleFunc("GET /api/v1/compute/orders", a.auth(a.listOrders))
	mux.HandleFunc("GET /api/v1/compute/orders/{id}", a.auth(a.getOrder))
	mux.HandleFunc("GET /api/v1/compute/orders/{id}/offers", a.auth(a.orderOffers))
	mux.HandleFunc("POST /api/v1/compute/orders/{id}/accept", a.auth(a.accept))
	mux.HandleFunc("POST /api/v1/compute/orders/{id}/cancel", a.auth(a.cancel))
	mux.HandleFunc("GET /api/v1/compute/orders/{id}/outputs", a.auth(a.outputs))
	mux.HandleFunc("GET /api/v1/compute/orders/{id}/log", a.auth(a.orderLog))
	mux.HandleFunc("POST /api/v1/compute/providers", a.auth(a.register))
	mux.HandleFunc("GET /api/v1/compute/providers/{id}", a.auth(a.provider))
	mux.HandleFunc("GET /api/v1/compute/providers/{id}/work", a.auth(a.work))
	mux.HandleFunc("POST /api/v1/compute/leases/{id}/usage", a.auth(a.usage))
	mux.HandleFunc("POST /api/v1/compute/leases/{id}/results", a.auth(a.result))
	mux.HandleFunc("POST /api/v1/compute/orders/{id}/requests", a.auth(a.request))
	mux.HandleFunc("GET /api/v1/compute/orders/{id}/requests/{rid}", a.auth(a.requestStatus))
	mux.HandleFunc("GET /api/v1/compute/leases/{id}/requests", a.auth(a.serviceRequests))
	mux.HandleFunc("POST /api/v1/compute/leases/{id}/responses", a.auth(a.serviceRespond))
	return mux
}

type authed func(w http.ResponseWriter, r *http.Request, account string)

func (a *api) auth(h authed) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			a.fail(w, r, hashgrid.Errorf(hashgrid.EUNAUTHORIZED, "missing API key (Authorization: Bearer KEY)"))
			return
		}
		acct, err := a.b.cfg.Accounts.Authenticate(strings.TrimSpace(key))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		h(w, r, acct)
	}
}

func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	hashgrid.WriteHTTPError(w, r, a.log, err)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func decode(r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return hashgrid.Errorf(hashgrid.EINVALID, "request body: %v", err)
	}
	return nil
}

// reply answers v, or err in the one error shape of every hashgrid service.
func (a *api) reply(w http.ResponseWriter, r *http.Request, code int, v any, err error) {
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, code, v)
}

func (a *api) offers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.b.Offers())
}

func (a *api) placeOrder(w http.ResponseWriter, r *http.Request, acct string) {
	var req OrderRequest
	if err := decode(r, MaxOrderBytes, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.b.PlaceOrder(r.Context(), acct, req)
	a.reply(w, r, http.StatusCreated, v, err)
}

func (a *api) listOrders(w http.ResponseWriter, r *http.Request, acct string) {
	writeJSON(w, http.StatusOK, a.b.Orders(acct))
}

func (a *api) getOrder(w http.ResponseWriter, r *http.Request, acct string) {
	v, err := a.b.Order(acct, r.PathValue("id"))
	a.reply(w, r, http.StatusOK, v, err)
}

func (a *api) orderOffers(w http.ResponseWriter, r *http.Request, acct string) {
	v, err := a.b.OrderOffers(acct, r.PathValue("id"))
	a.reply(w, r, http.StatusOK, v, err)
}

// AcceptRequest is POST /api/v1/compute/orders/{id}/accept; an empty provider takes
// the cheapest offer that fits.
type AcceptRequest struct {
	Provider string `json:"provider"`
}

func (a *api) accept(w http.ResponseWriter, r *http.Request, acct string) {
	var req AcceptRequest
	if err := decode(r, maxBodyBytes, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.b.Accept(acct, r.PathValue("id"), req.Provider)
	a.reply(w, r, http.StatusOK, v, err)
}

func (a *api) cancel(w http.ResponseWriter, r *http.Request, acct string) {
	v, err := a.b.Cancel(r.Context(), acct, r.PathValue("id"))
	a.reply(w, r, http.StatusOK, v, err)
}

func (a *api) outputs(w http.ResponseWriter, r *http.Request, acct string) {
	v, err := a.b.Outputs(acct, r.PathValue("id"))
	a.reply(w, r, http.StatusOK, v, err)
}

func (a *api) orderLog(w http.ResponseWriter, r *http.Request, acct string) {
	v, err := a.b.Log(acct, r.PathValue("id"))
	a.reply(w, r, http.StatusOK, v, err)
}

func (a *api) register(w http.ResponseWriter, r *http.Request, acct string) {
	var req ProviderRequest
	if err := decode(r, maxBodyBytes, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.b.Register(acct, req)
	a.reply(w, r, http.StatusOK, v, err)
}

func (a *api) provider(w http.ResponseWriter, r *http.Request, acct string) {
	v, err := a.b.Provider(r.Context(), acct, r.PathValue("id"))
	a.reply(w, r, http.StatusOK, v, err)
}

// waitParam is the wait_ms query parameter, at most MaxWait; def when absent.
func waitParam(r *http.Request, def time.Duration) (time.Duration, error) {
	s := r.URL.Query().Get("wait_ms")
	if s == "" {
		return def, nil
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms < 0 {
		return 0, hashgrid.Errorf(hashgrid.EINVALID, "wait_ms: want milliseconds")
	}
	return time.Duration(min(ms, MaxWait.Milliseconds())) * time.Millisecond, nil
}

func (a *api) work(w http.ResponseWriter, r *http.Request, acct string) {
	wait, err := waitParam(r, 0)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.b.Work(r.Context(), acct, r.PathValue("id"), wait)
	a.reply(w, r, http.StatusOK, v, err)
}

func (a *api) usage(w http.ResponseWriter, r *http.Request, acct string) {
	var rep UsageReport
	if err := decode(r, maxBodyBytes, &rep); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.b.Report(r.Context(), acct, r.PathValue("id"), rep)
	a.reply(w, r, http.StatusOK, v, err)
}

func (a *api) result(w http.ResponseWriter, r *http.Request, acct string) {
	var res UnitResult
	if err := decode(r, maxBodyBytes, &res); err != nil {
		a.fail(w, r, err)
		return
	}
	err := a.b.Result(r.Context(), acct, r.PathValue("id"), res)
	a.reply(w, r, http.StatusOK, struct{}{}, err)
}

// maxRequestBody bounds POST .../requests: the body in base64, and the JSON around it.
const maxRequestBody = MaxRequestBytes/3*4 + 4 + 1024

// maxResponseBody bounds POST .../responses likewise.
const maxResponseBody = MaxResponseBytes/3*4 + 4 + 4096

// requestReply answers a request's view: 200 once answered (done or failed), 202
// while it still waits.
func (a *api) requestReply(w http.ResponseWriter, r *http.Request, v RequestView, err error) {
	code := http.StatusOK
	if v.Status == RequestQueued || v.Status == RequestDelivered {
		code = http.StatusAccepted
	}
	a.reply(w, r, code, v, err)
}

func (a *api) request(w http.ResponseWriter, r *http.Request, acct string) {
	wait, err := waitParam(r, MaxWait)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var req ServiceRequest
	if err := decode(r, maxRequestBody, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.b.Request(r.Context(), acct, r.PathValue("id"), req.Body, wait)
	a.requestReply(w, r, v, err)
}

func (a *api) requestStatus(w http.ResponseWriter, r *http.Request, acct string) {
	wait, err := waitParam(r, 0)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.b.RequestStatus(r.Context(), acct, r.PathValue("id"), r.PathValue("rid"), wait)
	a.requestReply(w, r, v, err)
}

func (a *api) serviceRequests(w http.ResponseWriter, r *http.Request, acct string) {
	wait, err := waitParam(r, 0)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.b.ServiceRequests(r.Context(), acct, r.PathValue("id"), wait)
	a.reply(w, r, http.StatusOK, v, err)
}

func (a *api) serviceRespond(w http.ResponseWriter, r *http.Request, acct string) {
	var resp ServiceResponse
	if err := decode(r, maxResponseBody, &resp); err != nil {
		a.fail(w, r, err)
		return
	}
	err := a.b.ServiceRespond(acct, r.PathValue("id"), resp)
	a.reply(w, r, http.StatusOK, struct{}{}, err)
}

func (a *api) liveLeases(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.b.LiveLeases())
}
