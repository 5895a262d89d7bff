package api

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/alert"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/stratum/v2/bridge"
)

// The dashboard is one page (web/index.html with its script and style, embedded: no
// CDN, nothing fetched from elsewhere, so it works offline) that reads the JSON below
// and follows /api/v1/events, a server-sent event stream of snapshots. The page for an
// address is the same page at /address/{address}.

//go:embed web
var webFS embed.FS

// Sessions gives the live Stratum connections (the *pool.Pool).
type Sessions interface {
	Sessions() []pool.SessionInfo
	TemplateInfo() (txs int, weight int64, reward int64)
}

// Kicker closes a connection by session ID (the *pool.Pool).
type Kicker interface {
	Kick(id string) bool
}

// Banner bans an IP (the pool's *stratum.Server).
type Banner interface {
	Ban(ip string, d time.Duration)
}

// AlertSettings are the alert thresholds and recent alerts (the *alert.Monitor).
type AlertSettings interface {
	Settings() alert.Settings
	SetSettings(alert.Settings) error
	Recent(ctx context.Context, limit int) ([]alert.Record, error)
}

// DashboardConfig wires the dashboard, the public-pool style endpoints and the admin
// actions. Every field is optional.
type DashboardConfig struct {
	Sessions Sessions
	Kicker   Kicker
	Banner   Banner
	Alerts   AlertSettings
	// AdminToken enables the admin actions for requests carrying
	// "Authorization: Bearer TOKEN". Empty disables them. It is never logged or shown.
	AdminToken string
	// LiveInterval is the time between two snapshots on the event stream; default 2s.
	LiveInterval time.Duration
	// ChartBucket and ChartSpan shape the hashrate history; default 1m over 3h.
	ChartBucket time.Duration
	ChartSpan   time.Duration
	// Started is when the pool started (public-pool's uptime); default when New ran.
	Started time.Time
}

// Limits of the dashboard.
const (
	maxAddressLen    = 100 // longest address accepted in a path
	snapshotBlocks   = 25  // blocks in a snapshot
	addressShares    = 30  // recent shares on an address page
	bestShareScan    = 500 // recent shares scanned for a best difficulty
	maxLiveStreams   = 256 // concurrent event streams
	snapshotCacheMax = 512 // cached snapshots (one per address asked for)
	historyCacheMax  = 100_000
)

// dashboard holds the dashboard's state: caches shared by every viewer.
type dashboard struct {
	s   *Server
	cfg DashboardConfig

	streams chan struct{} // semaphore of live event streams

	mu    sync.Mutex
	snaps map[string]cachedSnap // by address ("" for the pool)
	hist  map[histKey]float64   // completed history buckets: hashes per second
	info  cachedJSON            // /api/info, which scans recent shares
}

type cachedSnap struct {
	at   time.Time
	snap Snapshot
}

type cachedJSON struct {
	at time.Time
	v  any
}

// routes registers the dashboard's, the compatible API's and the admin handlers.
func (s *Server) dashboardRoutes() {
	cfg := s.cfg.Dashboard
	if cfg.LiveInterval == 0 {
		cfg.LiveInterval = 2 * time.Second
	}
	if cfg.ChartBucket == 0 {
		cfg.ChartBucket = time.Minute
	}
	if cfg.ChartSpan == 0 {
		cfg.ChartSpan = 3 * time.Hour
	}
	if cfg.Started.IsZero() {
		cfg.Started = s.cfg.Now()
	}
	d := &dashboard{s: s, cfg: cfg, streams: make(chan struct{}, maxLiveStreams),
		snaps: map[string]cachedSnap{}, hist: map[histKey]float64{}}
	static, _ := fs.Sub(webFS, "web")
	files := http.FileServerFS(static)
	s.mux.HandleFunc("GET /{$}", d.page)
	s.mux.HandleFunc("GET /address/{address}", d.page)
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", withHeaders(files)))
	s.mux.HandleFunc("GET /api/v1/dashboard", d.handleSnapshot)
	s.mux.HandleFunc("GET /api/v1/events", d.handleEvents)
	s.mux.HandleFunc("GET /api/v1/history", d.handleHistory)
	s.mux.HandleFunc("GET /api/v1/address/{address}", d.handleAddress)
	d.compatRoutes()
	d.adminRoutes()
}

// withHeaders marks static files as cacheable for a short time and forbids sniffing.
func withHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

func (d *dashboard) page(w http.ResponseWriter, r *http.Request) {
	if a := r.PathValue("address"); a != "" && !validAddress(a) {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad address"))
		return
	}
	b, err := webFS.ReadFile("web/index.html")
	if err != nil {
		d.s.writeError(w, r, err)
		return
	}
	b = d.withSnapshot(r.Context(), b, r.PathValue("address"))
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// Everything the page loads comes from here; no inline script.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	w.Write(b)
}

// snapshotMark is where the page carries its first snapshot.
const snapshotMark = `<script type="application/json" id="snapshot"></script>`

// withSnapshot puts the current snapshot into the page, so that it shows the pool at
// once instead of waiting for its event stream to connect. It is data, not script
// (the page's Content-Security-Policy runs only /static/app.js), and encoding/json
// escapes <, > and & so that no value can close the element. Without a snapshot
// (the store failing) the page is served as it is and waits for the stream.
func (d *dashboard) withSnapshot(ctx context.Context, page []byte, addr string) []byte {
	snap, err := d.snapshot(ctx, addr)
	if err != nil {
		d.s.cfg.Logger.Warn("page snapshot", "err", err)
		return page
	}
	js, err := json.Marshal(snap)
	if err != nil {
		return page
	}
	filled := `<script type="application/json" id="snapshot">` + string(js) + `</script>`
	return bytes.Replace(page, []byte(snapshotMark), []byte(filled), 1)
}

// validAddress accepts what may be a Bitcoin address: ASCII letters and digits.
// Whether it is one of this network is not the dashboard's question.
func validAddress(a string) bool {
	if a == "" || len(a) > maxAddressLen {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// Snapshot is what the dashboard shows at one moment: the reply of
// GET /api/v1/dashboard and each "snapshot" event of /api/v1/events.
type Snapshot struct {
	Time     string        `json:"time"`
	Pool     PoolInfo      `json:"pool"`
	Node     NodeView      `json:"node"`
	Template TemplateView  `json:"template"`
	Workers  []WorkerView  `json:"workers"`
	Blocks   []BlockInfo   `json:"blocks"`
	Address  *AddressView  `json:"address,omitempty"`
	Point    HashratePoint `json:"point"` // the pool's hashrate now, for the chart
	// Payouts is true when the pool runs a payout scheme (GET /api/v1/miners/{address}
	// and /api/v1/payouts are served).
	Payouts bool `json:"payouts"`
}

// NodeView is the node's health as the dashboard shows it. URLs carry no credentials.
type NodeView struct {
	OK    bool       `json:"ok"`
	Nodes []NodeItem `json:"nodes"`
}

// NodeItem is one node.
type NodeItem struct {
	URL       string  `json:"url"`
	Up        bool    `json:"up"`
	LatencyMS float64 `json:"latency_ms"`
	LastError string  `json:"last_error,omitempty"`
}

// TemplateView is the block being mined.
type TemplateView struct {
	Transactions int   `json:"transactions"`
	Weight       int64 `json:"weight"`
	Reward       int64 `json:"reward_sat"`
}

// WorkerView is one worker (address.name) with its live connection, if any, and its
// shares over the hashrate window.
type WorkerView struct {
	Address    string  `json:"address"`
	Name       string  `json:"name"`
	Online     bool    `json:"online"`      // has an open connection
	Sessions   int     `json:"sessions"`    // open connections
	Difficulty float64 `json:"difficulty"`  // current share difficulty (highest of its connections)
	Hashrate   float64 `json:"hashrate"`    // hashes per second over the window
	Accepted   uint64  `json:"accepted"`    // over the window
	Rejected   uint64  `json:"rejected"`    // over the window
	RejectRate float64 `json:"reject_rate"` // rejected / (accepted + rejected) over the window
	LastShare  string  `json:"last_share,omitempty"`
	UserAgent  string  `json:"user_agent,omitempty"`
	Protocol   string  `json:"protocol,omitempty"` // of its open connections: "v1", "v2" (Stratum V2), or "v1+v2"
	Since      string  `json:"connected_since,omitempty"`
}

// protocolOf returns the Stratum version of a connection from its user agent: the V2
// bridge opens its V1 connections with bridge.UserAgentPrefix.
func protocolOf(userAgent string) string {
	if strings.HasPrefix(userAgent, bridge.UserAgentPrefix) {
		return "v2"
	}
	return "v1"
}

// addProtocol merges the protocol of one more connection into a worker's.
func addProtocol(have, userAgent string) string {
	p := protocolOf(userAgent)
	switch have {
	case "", p:
		return p
	}
	return "v1+v2"
}

// HashratePoint is one point of the hashrate chart.
type HashratePoint struct {
	T        int64   `json:"t"` // Unix milliseconds
	Hashrate float64 `json:"h"` // hashes per second
}

func (d *dashboard) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	addr := r.URL.Query().Get("address")
	if addr != "" && !validAddress(addr) {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad address"))
		return
	}
	snap, err := d.snapshot(r.Context(), addr)
	if err != nil {
		d.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, snap)
}

// snapshot returns the current snapshot, cached for half the live interval so that
// many viewers cost the store one query set.
func (d *dashboard) snapshot(ctx context.Context, addr string) (Snapshot, error) {
	now := d.s.cfg.Now()
	d.mu.Lock()
	c, ok := d.snaps[addr]
	d.mu.Unlock()
	if ok && now.Sub(c.at) < d.cfg.LiveInterval/2 && !now.Before(c.at) {
		return c.snap, nil
	}
	snap, err := d.build(ctx, addr, now)
	if err != nil {
		return Snapshot{}, err
	}
	d.mu.Lock()
	if len(d.snaps) >= snapshotCacheMax {
		clear(d.snaps)
	}
	d.snaps[addr] = cachedSnap{at: now, snap: snap}
	d.mu.Unlock()
	return snap, nil
}

func (d *dashboard) build(ctx context.Context, addr string, now time.Time) (Snapshot, error) {
	info, err := d.s.poolInfo(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	snap := Snapshot{Time: now.UTC().Format(time.RFC3339), Pool: info, Point: HashratePoint{T: now.UnixMilli(), Hashrate: info.Hashrate},
		Payouts: d.s.cfg.Payouts != nil}
	snap.Node = d.nodeView()
	if d.cfg.Sessions != nil {
		txs, weight, reward := d.cfg.Sessions.TemplateInfo()
		snap.Template = TemplateView{Transactions: txs, Weight: weight, Reward: reward}
	}
	if snap.Workers, err = d.workers(ctx, "", now); err != nil {
		return Snapshot{}, err
	}
	blocks, err := d.s.cfg.Store.Blocks(ctx, snapshotBlocks)
	if err != nil {
		return Snapshot{}, err
	}
	snap.Blocks = make([]BlockInfo, 0, len(blocks))
	for _, b := range blocks {
		snap.Blocks = append(snap.Blocks, blockInfo(b))
	}
	if addr != "" {
		av, err := d.address(ctx, addr, now)
		if err != nil {
			return Snapshot{}, err
		}
		snap.Address = &av
	}
	return snap, nil
}

func (d *dashboard) nodeView() NodeView {
	nv := NodeView{OK: true, Nodes: []NodeItem{}}
	if d.s.cfg.Node == nil {
		return nv
	}
	st := d.s.cfg.Node.Status()
	nv.OK = !st.Degraded
	for _, n := range st.Nodes {
		nv.Nodes = append(nv.Nodes, NodeItem{URL: n.URL, Up: n.Up, LatencyMS: float64(n.Latency) / float64(time.Millisecond), LastError: n.LastError})
	}
	return nv
}

// workers merges the live connections with the shares of the hashrate window, for
// one address or ("") all.
func (d *dashboard) workers(ctx context.Context, addr string, now time.Time) ([]WorkerView, error) {
	from, to, span := d.s.rateWindow(ctx, now)
	recent, err := d.s.cfg.Store.WorkBetween(ctx, from, to)
	if err != nil {
		return nil, err
	}
	type key struct{ a, n string }
	by := map[key]*WorkerView{}
	get := func(a, n string) *WorkerView {
		k := key{a, n}
		if v, ok := by[k]; ok {
			return v
		}
		v := &WorkerView{Address: a, Name: n}
		by[k] = v
		return v
	}
	for _, wk := range recent {
		if addr != "" && wk.Address != addr {
			continue
		}
		v := get(wk.Address, wk.Name)
		v.Accepted, v.Rejected = wk.Accepted, wk.Rejected
		v.Hashrate = wk.Work.Hashes() / span.Seconds()
		if n := wk.Accepted + wk.Rejected; n > 0 {
			v.RejectRate = float64(wk.Rejected) / float64(n)
		}
		if !wk.LastShare.IsZero() {
			v.LastShare = wk.LastShare.UTC().Format(time.RFC3339)
		}
	}
	if d.cfg.Sessions != nil {
		for _, si := range d.cfg.Sessions.Sessions() {
			if addr != "" && si.Address != addr {
				continue
			}
			for _, n := range si.Workers {
				v := get(si.Address, n)
				v.Online = true
				v.Sessions++
				v.Difficulty = max(v.Difficulty, si.Difficulty)
				v.UserAgent = si.UserAgent
				v.Protocol = addProtocol(v.Protocol, si.UserAgent)
				since := si.ConnectedAt.UTC().Format(time.RFC3339)
				if v.Since == "" || since < v.Since {
					v.Since = since
				}
			}
		}
	}
	out := make([]WorkerView, 0, len(by))
	for _, v := range by {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Online != out[j].Online {
			return out[i].Online
		}
		if out[i].Address != out[j].Address {
			return out[i].Address < out[j].Address
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// AddressView is one miner's page: GET /api/v1/address/{address}.
type AddressView struct {
	Address string `json:"address"`
	// Known is false when the pool has nothing of the address: no share, no open
	// connection, no block (the figures below are then all zero).
	Known          bool         `json:"known"`
	Hashrate       float64      `json:"hashrate"`
	Accepted       uint64       `json:"shares_accepted"` // all time
	Rejected       uint64       `json:"shares_rejected"` // all time
	AcceptedWork   float64      `json:"accepted_work"`
	BestDifficulty float64      `json:"best_difficulty"` // among the recent shares
	Workers        []WorkerView `json:"workers"`
	Shares         []ShareView  `json:"recent_shares"`
	Blocks         []BlockInfo  `json:"blocks"`
}

// ShareView is one recent share.
type ShareView struct {
	Time       string  `json:"time"`
	Worker     string  `json:"worker"`
	Difficulty float64 `json:"difficulty"`
	Actual     float64 `json:"actual_difficulty"`
	Result     string  `json:"result"`
	Block      bool    `json:"block,omitempty"`
}

func (d *dashboard) handleAddress(w http.ResponseWriter, r *http.Request) {
	addr := r.PathValue("address")
	if !validAddress(addr) {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad address"))
		return
	}
	av, err := d.address(r.Context(), addr, d.s.cfg.Now())
	if err != nil {
		d.s.writeError(w, r, err)
		return
	}
	if !av.Known {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.ENOTFOUND, "no shares or connections from %s", addr))
		return
	}
	writeJSON(w, http.StatusOK, av)
}

func (d *dashboard) address(ctx context.Context, addr string, now time.Time) (AddressView, error) {
	av := AddressView{Address: addr, Shares: []ShareView{}, Blocks: []BlockInfo{}}
	all, err := d.s.cfg.Store.Workers(ctx, addr)
	if err != nil {
		return av, err
	}
	var work hashgrid.Work
	for _, wk := range all {
		av.Accepted += wk.Accepted
		av.Rejected += wk.Rejected
		work = work.Plus(wk.Work)
	}
	av.AcceptedWork = work.Float()
	if av.Workers, err = d.workers(ctx, addr, now); err != nil {
		return av, err
	}
	for _, v := range av.Workers {
		av.Hashrate += v.Hashrate
	}
	shares, err := d.s.cfg.Store.SharesFor(ctx, addr, bestShareScan)
	if err != nil {
		return av, err
	}
	for i, sh := range shares {
		if sh.Result == hashgrid.ShareAccepted {
			av.BestDifficulty = max(av.BestDifficulty, sh.Actual.Float())
		}
		if i < addressShares {
			av.Shares = append(av.Shares, ShareView{Time: sh.Time.UTC().Format(time.RFC3339Nano), Worker: sh.Worker,
				Difficulty: sh.Diff.Float(), Actual: sh.Actual.Float(), Result: sh.Result.String(), Block: sh.Block})
		}
	}
	blocks, err := d.s.cfg.Store.Blocks(ctx, trackedBlocks)
	if err != nil {
		return av, err
	}
	for _, b := range blocks {
		if b.Address == addr {
			av.Blocks = append(av.Blocks, blockInfo(b))
		}
	}
	av.Known = len(av.Workers) > 0 || av.Accepted > 0 || av.Rejected > 0 || len(av.Blocks) > 0
	return av, nil
}

// trackedBlocks bounds the blocks scanned for one address's finds.
const trackedBlocks = 1000

// handleEvents streams snapshots as server-sent events until the client leaves or
// the server shuts down.
func (d *dashboard) handleEvents(w http.ResponseWriter, r *http.Request) {
	addr := r.URL.Query().Get("address")
	if addr != "" && !validAddress(addr) {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad address"))
		return
	}
	select {
	case d.streams <- struct{}{}:
		defer func() { <-d.streams }()
	default:
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EUNAVAILABLE, "too many live viewers; reload later"))
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// Tell the browser how soon to come back after a drop.
	fmt.Fprintf(w, "retry: %d\n\n", (2 * d.cfg.LiveInterval).Milliseconds())
	tick := time.NewTicker(d.cfg.LiveInterval)
	defer tick.Stop()
	ctx := r.Context()
	for {
		// The server's WriteTimeout is meant for ordinary replies; a stream extends
		// its deadline before each write.
		rc.SetWriteDeadline(time.Now().Add(d.cfg.LiveInterval + 30*time.Second))
		snap, err := d.snapshot(ctx, addr)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.s.cfg.Logger.Warn("live snapshot", "err", err)
			fmt.Fprintf(w, "event: problem\ndata: %s\n\n", mustJSON(hashgrid.ErrorReply{Error: hashgrid.ErrorBody{Code: hashgrid.ErrorCode(err), Message: hashgrid.ErrorMessage(err)}}))
		} else {
			fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", mustJSON(snap))
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own plain structs are encoded here; a failure is a programming error
		// that the client sees as an empty object rather than a dropped stream.
		return []byte("{}")
	}
	return b
}

// histKey names one completed history bucket.
type histKey struct {
	addr   string
	bucket time.Duration
	start  int64 // Unix nanoseconds
}

// HistoryReply is GET /api/v1/history.
type HistoryReply struct {
	Bucket int64           `json:"bucket_seconds"`
	Points []HashratePoint `json:"points"` // bucket start times; the last bucket may be partial
}

func (d *dashboard) handleHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	addr := q.Get("address")
	if addr != "" && !validAddress(addr) {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad address"))
		return
	}
	pts, err := d.history(r.Context(), addr, d.cfg.ChartBucket, d.cfg.ChartSpan)
	if err != nil {
		d.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, HistoryReply{Bucket: int64(d.cfg.ChartBucket / time.Second), Points: pts})
}

// historyLag is how long after a bucket ends its shares are taken to be all stored
// (the share stream's consumer lags the pool by milliseconds).
const historyLag = 5 * time.Second

// history returns the hashrate per bucket over span, oldest first. Completed buckets
// are computed once and cached; the current one is rated over its elapsed time.
func (d *dashboard) history(ctx context.Context, addr string, bucket, span time.Duration) ([]HashratePoint, error) {
	if bucket <= 0 || span < bucket {
		return nil, errors.New("api: bad history shape")
	}
	now := d.s.cfg.Now()
	end := now.Truncate(bucket)
	start := end.Add(-span + bucket)
	var out []HashratePoint
	for t := start; !t.After(end); t = t.Add(bucket) {
		k := histKey{addr, bucket, t.UnixNano()}
		complete := !t.Add(bucket + historyLag).After(now)
		if complete {
			d.mu.Lock()
			v, ok := d.hist[k]
			d.mu.Unlock()
			if ok {
				out = append(out, HashratePoint{T: t.UnixMilli(), Hashrate: v})
				continue
			}
		}
		to := t.Add(bucket)
		length := bucket
		if to.After(now) {
			length = now.Sub(t)
		}
		ws, err := d.s.cfg.Store.WorkBetween(ctx, t, to)
		if err != nil {
			return nil, err
		}
		var work hashgrid.Work
		for _, wk := range ws {
			if addr == "" || wk.Address == addr {
				work = work.Plus(wk.Work)
			}
		}
		rate := 0.0
		if length > 0 {
			rate = work.Hashes() / length.Seconds()
		}
		if complete {
			d.mu.Lock()
			if len(d.hist) >= historyCacheMax {
				clear(d.hist)
			}
			d.hist[k] = rate
			d.mu.Unlock()
		}
		out = append(out, HashratePoint{T: t.UnixMilli(), Hashrate: rate})
	}
	return out, nil
}

// parseSeconds reads a positive whole number of seconds.
func parseSeconds(s string) (time.Duration, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > 10*365*24*3600 {
		return 0, fmt.Errorf("%q is not a positive number of seconds", s)
	}
	return time.Duration(n) * time.Second, nil
}
