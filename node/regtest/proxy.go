package regtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a loopback HTTP proxy in front of a node's RPC that makes the node misbehave
// on demand, the way real nodes do: answer that it is downloading blocks (-10), warming
// up (-28) or not connected (-9), refuse the credentials, or be unreachable. Fail-over
// tests put one in front of a real btcd.
type Proxy struct {
	target string // http://HOST:PORT of the node
	user   string
	pass   string
	srv    *http.Server
	l      net.Listener
	client *http.Client
	wg     sync.WaitGroup

	mode     atomic.Value // Mode
	requests atomic.Int64
	methods  sync.Map // method name -> *atomic.Int64
}

// Mode is how a Proxy answers.
type Mode struct {
	// Code, when not 0, is a JSON-RPC error code answered to every call (Message with it).
	Code    int
	Message string
	// Methods, when not empty, limits Code to these methods; others pass through.
	Methods []string
	// HTTPStatus, when not 0, is answered with an empty body (401: refused credentials).
	HTTPStatus int
	// Down closes every connection without an answer, as a dead node's port would.
	Down bool
}

// Pass forwards every call.
var Pass = Mode{}

// Modes of real nodes that are alive but cannot serve.
var (
	InitialDownload = Mode{Code: -10, Message: "Bitcoin is downloading blocks..."}
	Warmup          = Mode{Code: -28, Message: "Loading banlist..."}
	NotConnected    = Mode{Code: -9, Message: "Bitcoin is not connected"}
	Unauthorized    = Mode{HTTPStatus: http.StatusUnauthorized}
	Down            = Mode{Down: true}
)

// StartProxy starts a proxy in front of n's RPC that passes every call until told
// otherwise. It is closed when the test ends.
func StartProxy(tb testing.TB, n *Node) *Proxy {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{
		target: "http://" + n.RPCAddr(), user: n.opts.RPCUser, pass: n.opts.RPCPass, l: l,
		client: &http.Client{Transport: &http.Transport{Proxy: nil}},
	}
	p.mode.Store(Pass)
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
	p.wg.Go(func() { _ = p.srv.Serve(l) })
	tb.Cleanup(func() {
		_ = p.srv.Close()
		p.wg.Wait()
		p.client.CloseIdleConnections()
	})
	return p
}

// URL returns http://USER:PASS@127.0.0.1:PORT of the proxy, with the node's credentials.
func (p *Proxy) URL() string { return "http://" + p.user + ":" + p.pass + "@" + p.l.Addr().String() }

// Set changes how the proxy answers from the next call on.
func (p *Proxy) Set(m Mode) { p.mode.Store(m) }

// Requests returns how many calls reached the proxy.
func (p *Proxy) Requests() int64 { return p.requests.Load() }

// Calls returns how many calls of method reached the proxy, answered or not.
func (p *Proxy) Calls(method string) int64 {
	if v, ok := p.methods.Load(method); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// maxProxyBody bounds a request the proxy reads: a submitblock of a full block is
// about 8 MB of hex.
const maxProxyBody = 32 << 20

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	m := p.mode.Load().(Mode)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxProxyBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	_ = json.Unmarshal(body, &req)
	v, _ := p.methods.LoadOrStore(req.Method, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	if m.Down {
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				_ = c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	if m.HTTPStatus != 0 {
		w.WriteHeader(m.HTTPStatus)
		return
	}
	if m.Code != 0 && (len(m.Methods) == 0 || contains(m.Methods, req.Method)) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"result":null,"error":{"code":%d,"message":%q},"id":%s}`, m.Code, m.Message, orNull(req.ID))
		return
	}
	out, err := http.NewRequestWithContext(r.Context(), http.MethodPost, p.target, bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	resp, err := p.client.Do(out)
	if err != nil {
		// The node behind is gone: look like it, a closed connection.
		panic(http.ErrAbortHandler)
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func orNull(id json.RawMessage) string {
	if len(id) == 0 {
		return "null"
	}
	return string(id)
}
