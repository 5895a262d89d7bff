package hashgrid

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
)

// httpStatus maps each error code to its HTTP status: the one table, used by the
// pool's API and the market's alike.
var httpStatus = map[string]int{
	ECONFLICT:     http.StatusConflict,
	EINVALID:      http.StatusBadRequest,
	ENOTALLOWED:   http.StatusMethodNotAllowed,
	ENOTFOUND:     http.StatusNotFound,
	ERATELIMITED:  http.StatusTooManyRequests,
	EUNAUTHORIZED: http.StatusUnauthorized,
	EUNAVAILABLE:  http.StatusServiceUnavailable,
	EINTERNAL:     http.StatusInternalServerError,
}

// HTTPStatus returns the HTTP status of an error code; unknown codes are internal errors.
func HTTPStatus(code string) int {
	if st, ok := httpStatus[code]; ok {
		return st
	}
	return http.StatusInternalServerError
}

// ErrorReply is the one JSON shape in which every hashgrid HTTP service answers an
// error: {"error":{"code":"not_found","message":"no shares from …"}}.
type ErrorReply struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody is the inside of an ErrorReply: a code of the catalogue and a message
// safe to show to clients.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteHTTPError answers err in the one error shape, with the status of its code.
// Internal errors are logged with their detail; the client sees only "internal error".
func WriteHTTPError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := ErrorCode(err)
	if code == "" {
		code = EINTERNAL
	}
	st := HTTPStatus(code)
	if st == http.StatusInternalServerError && log != nil {
		log.Error("http", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(st)
	json.NewEncoder(w).Encode(ErrorReply{Error: ErrorBody{Code: code, Message: ErrorMessage(err)}})
}

// ParseErrorReply reads an error answered by a hashgrid service back into an *Error,
// for clients such as verify and market audit; ok is false if body is not one.
func ParseErrorReply(body []byte) (e *Error, ok bool) {
	var rep ErrorReply
	if json.Unmarshal(body, &rep) != nil || rep.Error.Code == "" {
		return nil, false
	}
	return &Error{Code: rep.Error.Code, Message: rep.Error.Message}, true
}

// Mux is an http.ServeMux that remembers the patterns registered on it (so that a
// test can hold the OpenAPI document against the real route table) and answers what
// the mux itself refuses, a path no route matches (404) or a method the path's routes
// do not take (405, with Allow), in the one error shape instead of plain text.
type Mux struct {
	mux *http.ServeMux
	log *slog.Logger

	mu       sync.Mutex
	patterns []string
}

// NewMux returns an empty Mux; log receives internal errors (nil: none).
func NewMux(log *slog.Logger) *Mux { return &Mux{mux: http.NewServeMux(), log: log} }

// Handle registers h for pattern, as http.ServeMux.Handle does.
func (m *Mux) Handle(pattern string, h http.Handler) {
	m.mux.Handle(pattern, h)
	m.mu.Lock()
	m.patterns = append(m.patterns, pattern)
	m.mu.Unlock()
}

// HandleFunc registers f for pattern, as http.ServeMux.HandleFunc does.
func (m *Mux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(f))
}

// Patterns returns the registered patterns in registration order.
func (m *Mux) Patterns() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.patterns...)
}

func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := m.mux.Handler(r)
	if pattern != "" {
		m.mux.ServeHTTP(w, r)
		return
	}
	// Let the mux decide between 404, 405 and its redirects, then speak for it.
	c := &statusCapture{header: http.Header{}}
	h.ServeHTTP(c, r)
	switch c.status {
	case http.StatusNotFound:
		WriteHTTPError(w, r, m.log, Errorf(ENOTFOUND, "no route %s %s", r.Method, r.URL.Path))
	case http.StatusMethodNotAllowed:
		allow := c.header.Get("Allow")
		w.Header().Set("Allow", allow)
		WriteHTTPError(w, r, m.log, Errorf(ENOTALLOWED, "method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
	default:
		m.mux.ServeHTTP(w, r)
	}
}

// statusCapture records the status and headers a handler writes and drops its body.
type statusCapture struct {
	header http.Header
	status int
}

func (c *statusCapture) Header() http.Header { return c.header }
func (c *statusCapture) WriteHeader(st int) {
	if c.status == 0 {
		c.status = st
	}
}
func (c *statusCapture) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return len(b), nil
}
