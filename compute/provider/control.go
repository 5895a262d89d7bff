package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/compute"
)

// The control endpoint is how a power controller (power/controller) moves the
// machine between mining and leasing. It has no authentication: it listens on
// loopback unless given a host (`hashgrid provider --control PORT` or HOST:PORT), and
// an address off the machine belongs on the site's management network only.
//
//	GET  /control/status    ControlStatus: paused or offering, the leases running here, the market's view
//	POST /control/pause     take no new leases (the market is told before the reply) → ControlStatus
//	POST /control/resume    offer again → ControlStatus
//	POST /control/release   hand back the running leases now (only while paused) → ControlStatus
//
// Requests carry no body. Every reply that touches the market waits for it at most
// ControlMarketTimeout.

// ControlListenAddr resolves the address the control endpoint listens on: a port
// alone ("8094" or ":8094") means loopback, 127.0.0.1:PORT; a host must be given to
// listen anywhere else.
func ControlListenAddr(s string) (string, error) {
	if s != "" && strings.Trim(s, "0123456789") == "" {
		s = ":" + s
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || port == "" {
		return "", fmt.Errorf("provider: control address %q: want PORT, :PORT or HOST:PORT", s)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// ControlMarketTimeout bounds the market call one control request makes.
const ControlMarketTimeout = 10 * time.Second

// ControlStatus is the agent's state as the control endpoint reports it.
type ControlStatus struct {
	Provider string   `json:"provider"` // the id at the market; empty until registered
	Paused   bool     `json:"paused"`   // what the agent asks of the market
	Running  []string `json:"running"`  // leases whose units run on this machine now
	// Market is the provider as the market keeps it (its paused flag, leases and
	// earnings); nil when the market could not be read, with MarketError saying why.
	Market      *compute.ProviderView `json:"market,omitempty"`
	MarketError string                `json:"market_error,omitempty"`
}

// ControlHandler returns the control endpoint's routes.
func (a *Agent) ControlHandler() http.Handler {
	mux := hashgrid.NewMux(a.log)
	mux.HandleFunc("GET /control/status", func(w http.ResponseWriter, r *http.Request) {
		a.writeStatus(w, r, nil)
	})
	mux.HandleFunc("POST /control/pause", func(w http.ResponseWriter, r *http.Request) { a.setPaused(w, r, true) })
	mux.HandleFunc("POST /control/resume", func(w http.ResponseWriter, r *http.Request) { a.setPaused(w, r, false) })
	mux.HandleFunc("POST /control/release", func(w http.ResponseWriter, r *http.Request) {
		ids, err := a.Release()
		if err != nil {
			hashgrid.WriteHTTPError(w, r, a.log, hashgrid.Errorf(hashgrid.ECONFLICT, "%v", err))
			return
		}
		if len(ids) > 0 {
			a.log.Info("leases handed back by the controller", "leases", strings.Join(ids, ","))
		}
		a.writeStatus(w, r, nil)
	})
	return mux
}

func (a *Agent) setPaused(w http.ResponseWriter, r *http.Request, paused bool) {
	ctx, cancel := context.WithTimeout(r.Context(), ControlMarketTimeout)
	defer cancel()
	v, err := a.SetPaused(ctx, paused)
	if err != nil {
		hashgrid.WriteHTTPError(w, r, a.log, hashgrid.Errorf(hashgrid.EUNAVAILABLE, "market: %v", err))
		return
	}
	a.log.Info("offer paused by the controller", "paused", paused, "provider", v.ID)
	a.writeStatus(w, r, &v)
}

// writeStatus answers the agent's status; v is the market's view when the caller has
// just read it.
func (a *Agent) writeStatus(w http.ResponseWriter, r *http.Request, v *compute.ProviderView) {
	st := ControlStatus{Provider: a.ID(), Paused: a.Paused(), Running: a.Running()}
	slices.Sort(st.Running)
	switch {
	case v != nil:
		st.Market = v
	case st.Provider == "":
		st.MarketError = "not registered yet"
	default:
		ctx, cancel := context.WithTimeout(r.Context(), ControlMarketTimeout)
		defer cancel()
		mv, err := a.Status(ctx)
		if err != nil {
			st.MarketError = err.Error()
		} else {
			st.Market = &mv
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(st)
}

// ServeControl serves the control endpoint on addr until ctx ends. It returns once
// the listener is bound (its address in the result), serving in the background.
func (a *Agent) ServeControl(ctx context.Context, addr string) (net.Addr, error) {
	addr, err := ControlListenAddr(addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("provider: control: %w", err)
	}
	srv := &http.Server{Handler: a.ControlHandler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: ControlMarketTimeout + 10*time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Warn("control endpoint", "err", err)
		}
	}()
	a.log.Info("control endpoint", "addr", ln.Addr().String())
	return ln.Addr(), nil
}

// maxControlReply bounds a control reply read by ControlClient (the market's view
// lists every lease the provider held, so it can be long).
const maxControlReply = 32 << 20

// ControlClient calls a provider agent's control endpoint.
type ControlClient struct {
	Base string // http://HOST:PORT
	HTTP *http.Client
}

// NewControlClient returns a client of the control endpoint at addr (host:port, or a
// URL), with a timeout per call.
func NewControlClient(addr string, timeout time.Duration) (*ControlClient, error) {
	if addr == "" {
		return nil, errors.New("provider: control: empty address")
	}
	base := addr
	if !strings.Contains(addr, "://") {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("provider: control address %q: %w", addr, err)
		}
		base = "http://" + addr
	}
	return &ControlClient{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{Timeout: timeout}}, nil
}

func (c *ControlClient) call(ctx context.Context, method, path string) (ControlStatus, error) {
	var st ControlStatus
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, nil)
	if err != nil {
		return st, fmt.Errorf("provider control: %w", err)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return st, fmt.Errorf("provider control %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxControlReply))
	if err != nil {
		return st, fmt.Errorf("provider control %s: %w", c.Base, err)
	}
	if resp.StatusCode/100 != 2 {
		if e, ok := hashgrid.ParseErrorReply(b); ok {
			return st, fmt.Errorf("provider control %s %s: %w", c.Base, path, e)
		}
		return st, fmt.Errorf("provider control %s %s: %s", c.Base, path, resp.Status)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("provider control %s: reply: %w", c.Base, err)
	}
	return st, nil
}

// Status reads the agent's state.
func (c *ControlClient) Status(ctx context.Context) (ControlStatus, error) {
	return c.call(ctx, http.MethodGet, "/control/status")
}

// Pause asks the agent to take no new leases.
func (c *ControlClient) Pause(ctx context.Context) (ControlStatus, error) {
	return c.call(ctx, http.MethodPost, "/control/pause")
}

// Resume asks the agent to offer again.
func (c *ControlClient) Resume(ctx context.Context) (ControlStatus, error) {
	return c.call(ctx, http.MethodPost, "/control/resume")
}

// Release asks the agent to hand back its running leases.
func (c *ControlClient) Release(ctx context.Context) (ControlStatus, error) {
	return c.call(ctx, http.MethodPost, "/control/release")
}
