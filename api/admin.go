package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/alert"
	"github.com/hashgrid/hashgrid/pool"
)

// Admin actions (ban, kick, settings) need "Authorization: Bearer TOKEN" with the
// token the operator configured. Without a configured token they are refused. The
// token is compared in constant time and never logged or echoed.

// Limits of the admin API.
const (
	maxAdminBody = 4 << 10
	maxBan       = 365 * 24 * time.Hour
	alertList    = 100
)

func (d *dashboard) adminRoutes() {
	m := d.s.mux
	m.HandleFunc("GET /api/v1/admin/sessions", d.admin(d.handleAdminSessions))
	m.HandleFunc("POST /api/v1/admin/kick", d.admin(d.handleKick))
	m.HandleFunc("POST /api/v1/admin/ban", d.admin(d.handleBan))
	m.HandleFunc("GET /api/v1/admin/settings", d.admin(d.handleGetSettings))
	m.HandleFunc("PUT /api/v1/admin/settings", d.admin(d.handlePutSettings))
	m.HandleFunc("GET /api/v1/admin/alerts", d.admin(d.handleAlerts))
}

// admin wraps h with the token check.
func (d *dashboard) admin(h http.HandlerFunc) http.HandlerFunc {
	return d.s.requireAdmin(d.cfg.AdminToken, h)
}

// requireAdmin wraps h with the admin token check: "Authorization: Bearer TOKEN",
// compared in constant time. With no token configured every admin request is refused.
func (s *Server) requireAdmin(token string, h http.HandlerFunc) http.HandlerFunc {
	var want [32]byte
	enabled := token != ""
	if enabled {
		want = sha256.Sum256([]byte(token))
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !enabled {
			s.writeError(w, r, hashgrid.Errorf(hashgrid.EUNAUTHORIZED, "admin actions are disabled: no admin token configured"))
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Hashing first makes the comparison independent of the token's length too.
		got := sha256.Sum256([]byte(tok))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hashgrid admin"`)
			s.writeError(w, r, hashgrid.Errorf(hashgrid.EUNAUTHORIZED, "admin token required"))
			return
		}
		h(w, r)
	}
}

// readBody decodes a small JSON body, refusing unknown fields.
func readBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return hashgrid.Errorf(hashgrid.EINVALID, "bad request body: %v", err)
	}
	return nil
}

func (d *dashboard) handleAdminSessions(w http.ResponseWriter, r *http.Request) {
	out := []pool.SessionInfo{}
	if d.cfg.Sessions != nil {
		out = append(out, d.cfg.Sessions.Sessions()...)
	}
	writeJSON(w, http.StatusOK, out)
}

// KickRequest is the body of POST /api/v1/admin/kick.
type KickRequest struct {
	Session string `json:"session"`
}

func (d *dashboard) handleKick(w http.ResponseWriter, r *http.Request) {
	var req KickRequest
	if err := readBody(r, &req); err != nil {
		d.s.writeError(w, r, err)
		return
	}
	if d.cfg.Kicker == nil {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EUNAVAILABLE, "no pool to kick from"))
		return
	}
	if !d.cfg.Kicker.Kick(req.Session) {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.ENOTFOUND, "no open session %q", req.Session))
		return
	}
	d.s.cfg.Logger.Info("admin: session kicked", "session", req.Session)
	writeJSON(w, http.StatusOK, map[string]string{"kicked": req.Session})
}

// BanRequest is the body of POST /api/v1/admin/ban.
type BanRequest struct {
	IP      string `json:"ip"`
	Seconds int64  `json:"seconds"`
}

func (d *dashboard) handleBan(w http.ResponseWriter, r *http.Request) {
	var req BanRequest
	if err := readBody(r, &req); err != nil {
		d.s.writeError(w, r, err)
		return
	}
	ip := net.ParseIP(req.IP)
	if ip == nil {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad ip %q", req.IP))
		return
	}
	dur := time.Duration(req.Seconds) * time.Second
	if req.Seconds <= 0 || dur > maxBan {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "seconds must be between 1 and %d", int64(maxBan/time.Second)))
		return
	}
	if d.cfg.Banner == nil {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EUNAVAILABLE, "no pool to ban from"))
		return
	}
	d.cfg.Banner.Ban(ip.String(), dur)
	d.s.cfg.Logger.Info("admin: ip banned", "ip", ip.String(), "for", dur)
	writeJSON(w, http.StatusOK, map[string]any{"banned": ip.String(), "seconds": req.Seconds})
}

// SettingsBody is GET and PUT /api/v1/admin/settings: the alert thresholds.
type SettingsBody struct {
	WorkerQuietSeconds  int64   `json:"worker_quiet_seconds"`
	RejectRate          float64 `json:"reject_rate"`
	RejectWindowSeconds int64   `json:"reject_window_seconds"`
	RejectMinShares     int     `json:"reject_min_shares"`
}

func settingsBody(s alert.Settings) SettingsBody {
	return SettingsBody{WorkerQuietSeconds: int64(s.WorkerQuiet / time.Second), RejectRate: s.RejectRate,
		RejectWindowSeconds: int64(s.RejectWindow / time.Second), RejectMinShares: s.RejectMinShares}
}

func (d *dashboard) handleGetSettings(w http.ResponseWriter, r *http.Request) {
	if d.cfg.Alerts == nil {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EUNAVAILABLE, "alerts are not running"))
		return
	}
	writeJSON(w, http.StatusOK, settingsBody(d.cfg.Alerts.Settings()))
}

func (d *dashboard) handlePutSettings(w http.ResponseWriter, r *http.Request) {
	if d.cfg.Alerts == nil {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EUNAVAILABLE, "alerts are not running"))
		return
	}
	var b SettingsBody
	if err := readBody(r, &b); err != nil {
		d.s.writeError(w, r, err)
		return
	}
	const maxSeconds = 365 * 24 * 3600
	if b.WorkerQuietSeconds < 0 || b.WorkerQuietSeconds > maxSeconds || b.RejectWindowSeconds < 0 || b.RejectWindowSeconds > maxSeconds {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "durations must be between 0 and %d seconds", maxSeconds))
		return
	}
	s := alert.Settings{WorkerQuiet: time.Duration(b.WorkerQuietSeconds) * time.Second, RejectRate: b.RejectRate,
		RejectWindow: time.Duration(b.RejectWindowSeconds) * time.Second, RejectMinShares: b.RejectMinShares}
	if err := d.cfg.Alerts.SetSettings(s); err != nil {
		d.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, settingsBody(d.cfg.Alerts.Settings()))
}

func (d *dashboard) handleAlerts(w http.ResponseWriter, r *http.Request) {
	if d.cfg.Alerts == nil {
		writeJSON(w, http.StatusOK, []alert.Record{})
		return
	}
	recs, err := d.cfg.Alerts.Recent(r.Context(), alertList)
	if err != nil {
		d.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, recs)
}
