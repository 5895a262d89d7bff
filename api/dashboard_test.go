package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/alert"
	"github.com/hashgrid/hashgrid/api"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/sqlite"
)

const (
	addrA      = "bcrt1qalpha0000000000000000000000000000000"
	addrB      = "bcrt1qbeta00000000000000000000000000000000"
	adminToken = "tok-SECRET-8c1f7a55e2"
)

type fakePool struct{}

func (fakePool) Stats() pool.Stats {
	return pool.Stats{Height: 201, NetworkDiff: 4.656542373906925e-10, PrevHash: "00ab", LastTemplate: time.Now(), Connections: 2, Authorized: 2}
}

type fakeNode struct{}

func (fakeNode) Status() node.Status {
	return node.Status{Nodes: []node.NodeHealth{{URL: "http://***@127.0.0.1:18334", Up: true, Latency: 2 * time.Millisecond}}}
}

type fakeSessions struct {
	mu     sync.Mutex
	kicked []string
}

func (f *fakeSessions) Sessions() []pool.SessionInfo {
	return []pool.SessionInfo{
		{ID: "00000001", IP: "127.0.0.1", UserAgent: "bitaxe/2.1", Address: addrA, Workers: []string{"rig1"}, Difficulty: 0.5, ConnectedAt: time.Now().Add(-time.Minute)},
		{ID: "00000002", IP: "127.0.0.2", UserAgent: "cpuminer", Address: addrB, Workers: []string{""}, Difficulty: 0.01, ConnectedAt: time.Now().Add(-time.Minute)},
	}
}

func (f *fakeSessions) TemplateInfo() (int, int64, int64) { return 3, 2400, 5000012345 }

func (f *fakeSessions) Kick(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kicked = append(f.kicked, id)
	return id == "00000001"
}

type fakeBanner struct{ bans []string }

func (b *fakeBanner) Ban(ip string, d time.Duration) { b.bans = append(b.bans, ip) }

// newServer runs the API over a real SQLite store holding shares of two addresses
// and two blocks.
func newServer(t *testing.T, mon *alert.Monitor) (*httptest.Server, *fakeSessions, *fakeBanner) {
	t.Helper()
	store, err := sqlite.Open(filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	now := time.Now()
	var shares []hashgrid.Share
	for i := range 40 {
		sh := hashgrid.Share{Seq: uint64(i + 1), Time: now.Add(-time.Duration(40-i) * 5 * time.Second), Address: addrA, Worker: "rig1",
			JobID: "1", Height: 201, Diff: hashgrid.DiffOne / 2, Actual: hashgrid.DiffOne * hashgrid.Diff(i+1) / 4, UserAgent: "bitaxe/2.1", Remote: "127.0.0.1:5000"}
		if i%10 == 9 {
			sh.Result = hashgrid.ShareLowDiff
		}
		if i%2 == 1 {
			sh.Address, sh.Worker, sh.UserAgent = addrB, "", "cpuminer"
		}
		shares = append(shares, sh)
	}
	if err := store.AddShares(context.Background(), shares); err != nil {
		t.Fatal(err)
	}
	for i, st := range []hashgrid.BlockStatus{hashgrid.BlockAccepted, hashgrid.BlockRejected} {
		b := hashgrid.Block{Height: int64(199 + i), Time: now.Add(-time.Minute), Address: addrA, Worker: "rig1", Reward: 5000000000, Status: st, Confirmations: 2}
		b.Hash[0] = byte(i + 1)
		if err := store.PutBlock(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	sess, ban := &fakeSessions{}, &fakeBanner{}
	cfg := api.Config{Store: store, Pool: fakePool{}, Node: fakeNode{}, Network: "regtest",
		Dashboard: api.DashboardConfig{Sessions: sess, Kicker: sess, Banner: ban, AdminToken: adminToken, LiveInterval: 100 * time.Millisecond}}
	if mon != nil {
		cfg.Dashboard.Alerts = mon
	}
	srv := httptest.NewServer(api.New(cfg).Handler())
	t.Cleanup(srv.Close)
	return srv, sess, ban
}

func get(t *testing.T, url string) (int, []byte, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

// jsonType names a decoded JSON value's type.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "?"
}

// shape checks that obj has exactly the fields of want, each of its JSON type.
func shape(t *testing.T, what string, obj any, want map[string]string) {
	t.Helper()
	m, ok := obj.(map[string]any)
	if !ok {
		t.Fatalf("%s: got %s, want an object", what, jsonType(obj))
	}
	var got, exp []string
	for k := range m {
		got = append(got, k)
	}
	for k := range want {
		exp = append(exp, k)
	}
	sort.Strings(got)
	sort.Strings(exp)
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("%s fields: got %v, want %v", what, got, exp)
	}
	for k, typ := range want {
		if v, ok := m[k]; ok && jsonType(v) != typ {
			t.Errorf("%s.%s: got %s (%v), want %s", what, k, jsonType(v), v, typ)
		}
	}
}

func decode(t *testing.T, url string) any {
	t.Helper()
	code, body, h := get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: content type %q", url, ct)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return v
}

// The shapes public-pool's API answers with (field names and JSON types), which
// devices and dashboards written for it read.
var (
	ppBlock     = map[string]string{"height": "number", "minerAddress": "string", "worker": "string", "sessionId": "string"}
	ppUserAgent = map[string]string{"userAgent": "string", "count": "number", "bestDifficulty": "number", "totalHashRate": "number"}
	ppHighScore = map[string]string{"updatedAt": "string", "bestDifficulty": "number", "bestDifficultyUserAgent": "string"}
	ppWorker    = map[string]string{"sessionId": "string", "name": "string", "bestDifficulty": "string", "hashRate": "number", "startTime": "string", "lastSeen": "string"}
	ppChart     = map[string]string{"label": "string", "data": "number"}
)

func TestCompatPublicPool(t *testing.T) {
	srv, _, _ := newServer(t, nil)

	info := decode(t, srv.URL+"/api/info")
	shape(t, "info", info, map[string]string{"blockData": "array", "userAgents": "array", "highScores": "array", "uptime": "string"})
	im := info.(map[string]any)
	if bd := im["blockData"].([]any); len(bd) != 1 {
		t.Errorf("info.blockData: %d blocks, want 1 (the rejected one is left out)", len(bd))
	} else {
		shape(t, "info.blockData[0]", bd[0], ppBlock)
		if h := bd[0].(map[string]any)["height"]; h != 199.0 {
			t.Errorf("block height %v, want 199", h)
		}
	}
	uas := im["userAgents"].([]any)
	if len(uas) != 2 {
		t.Fatalf("userAgents: %v", uas)
	}
	for _, ua := range uas {
		shape(t, "info.userAgents[]", ua, ppUserAgent)
	}
	hs := im["highScores"].([]any)
	if len(hs) != 2 {
		t.Fatalf("highScores: %v, want one per address", hs)
	}
	for _, h := range hs {
		shape(t, "info.highScores[]", h, ppHighScore)
	}
	// The best accepted share: i=38 (addrA; i=39 is rejected) met 39/4.
	if best := hs[0].(map[string]any)["bestDifficulty"]; best != 9.75 {
		t.Errorf("best difficulty %v, want 9.75", best)
	}
	if _, err := time.Parse(time.RFC3339, im["uptime"].(string)); err != nil {
		t.Errorf("uptime: %v", err)
	}

	pl := decode(t, srv.URL+"/api/pool")
	shape(t, "pool", pl, map[string]string{"totalHashRate": "number", "blockHeight": "number", "totalMiners": "number", "blocksFound": "array", "fee": "number"})
	pm := pl.(map[string]any)
	if pm["blockHeight"] != 200.0 || pm["totalMiners"] != 2.0 || !(pm["totalHashRate"].(float64) > 0) {
		t.Errorf("pool: %v", pm)
	}
	for _, b := range pm["blocksFound"].([]any) {
		shape(t, "pool.blocksFound[]", b, ppBlock)
	}

	nw := decode(t, srv.URL+"/api/network")
	shape(t, "network", nw, map[string]string{"blocks": "number", "currentblockweight": "number", "currentblocktx": "number",
		"difficulty": "number", "networkhashps": "number", "pooledtx": "number", "chain": "string", "warnings": "string"})
	if nm := nw.(map[string]any); nm["chain"] != "regtest" || nm["blocks"] != 200.0 || nm["currentblocktx"] != 3.0 {
		t.Errorf("network: %v", nm)
	}

	cl := decode(t, srv.URL+"/api/client/"+addrA)
	shape(t, "client", cl, map[string]string{"bestDifficulty": "number", "workersCount": "number", "workers": "array"})
	cm := cl.(map[string]any)
	ws := cm["workers"].([]any)
	if cm["workersCount"] != 1.0 || len(ws) != 1 {
		t.Fatalf("client: %v", cm)
	}
	shape(t, "client.workers[0]", ws[0], ppWorker)
	w0 := ws[0].(map[string]any)
	if w0["name"] != "rig1" || w0["sessionId"] != "00000001" || w0["bestDifficulty"] != "9.75" || !(w0["hashRate"].(float64) > 0) {
		t.Errorf("client worker: %v", w0)
	}
	for _, f := range []string{"startTime", "lastSeen"} {
		if _, err := time.Parse(time.RFC3339, w0[f].(string)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// An address nobody mines to has the same shape, empty.
	shape(t, "client (unknown)", decode(t, srv.URL+"/api/client/bcrt1qnobody"), map[string]string{"bestDifficulty": "number", "workersCount": "number", "workers": "array"})

	for _, u := range []string{"/api/info/chart", "/api/client/" + addrA + "/chart"} {
		pts, ok := decode(t, srv.URL+u).([]any)
		if !ok || len(pts) != 143 {
			t.Fatalf("%s: %d points, want 143 ten-minute buckets", u, len(pts))
		}
		shape(t, u+"[0]", pts[0], ppChart)
		if _, err := time.Parse(time.RFC3339, pts[0].(map[string]any)["label"].(string)); err != nil {
			t.Errorf("%s label: %v", u, err)
		}
	}
	if code, _, _ := get(t, srv.URL+"/api/client/bad%20addr"); code != http.StatusBadRequest {
		t.Errorf("bad address: %d, want 400", code)
	}
}

func TestDashboardSnapshotAndStream(t *testing.T) {
	srv, _, _ := newServer(t, nil)
	var snap api.Snapshot
	if err := json.Unmarshal(mustGet(t, srv.URL+"/api/v1/dashboard?address="+addrA), &snap); err != nil {
		t.Fatal(err)
	}
	if len(snap.Workers) != 2 || !snap.Workers[0].Online || snap.Workers[0].Difficulty != 0.5 {
		t.Errorf("workers: %+v", snap.Workers)
	}
	var rig api.WorkerView
	for _, w := range snap.Workers {
		if w.Address == addrA {
			rig = w
		}
	}
	// addrA sent i = 0, 2, ..., 38: 20 shares, of which i = 9, 19, 29, 39 are odd (addrB):
	// none rejected for A.
	if rig.Accepted != 20 || rig.Rejected != 0 || rig.LastShare == "" || rig.UserAgent != "bitaxe/2.1" {
		t.Errorf("worker A: %+v", rig)
	}
	if snap.Address == nil || snap.Address.Accepted != 20 || len(snap.Address.Blocks) != 2 || len(snap.Address.Shares) != 20 || snap.Address.BestDifficulty != 9.75 {
		t.Errorf("address view: %+v", snap.Address)
	}
	if len(snap.Blocks) != 2 || snap.Template.Transactions != 3 || !snap.Node.OK || snap.Point.Hashrate <= 0 {
		t.Errorf("snapshot: blocks %d template %+v node %+v point %+v", len(snap.Blocks), snap.Template, snap.Node, snap.Point)
	}

	// The stream sends snapshots again and again.
	resp, err := http.Get(srv.URL + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	n := 0
	deadline := time.Now().Add(5 * time.Second)
	for n < 3 && time.Now().Before(deadline) {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			var s api.Snapshot
			if err := json.Unmarshal([]byte(data), &s); err != nil {
				t.Fatalf("event data: %v", err)
			}
			n++
		}
	}
	if n < 3 {
		t.Errorf("got %d snapshots in 5s, want 3", n)
	}

	var hist api.HistoryReply
	if err := json.Unmarshal(mustGet(t, srv.URL+"/api/v1/history"), &hist); err != nil {
		t.Fatal(err)
	}
	if hist.Bucket != 60 || len(hist.Points) != 180 {
		t.Fatalf("history: bucket %d, %d points", hist.Bucket, len(hist.Points))
	}
	var recent float64
	for _, p := range hist.Points[len(hist.Points)-5:] {
		recent += p.Hashrate
	}
	if recent <= 0 {
		t.Errorf("history shows no hashrate in the last minutes: %+v", hist.Points[len(hist.Points)-5:])
	}

	code, body, h := get(t, srv.URL+"/")
	if code != 200 || !strings.Contains(string(body), `id="chart"`) || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("page: %d, csp %q", code, h.Get("Content-Security-Policy"))
	}
	if code, _, _ := get(t, srv.URL+"/address/"+addrA); code != 200 {
		t.Errorf("address page: %d", code)
	}
	for _, f := range []string{"app.js", "style.css", "icon.svg"} {
		if code, body, _ := get(t, srv.URL+"/static/"+f); code != 200 || len(body) == 0 {
			t.Errorf("static %s: %d", f, code)
		}
	}
	// The page loads nothing from elsewhere. (Its first snapshot is data shown as
	// text, such as a node's redacted URL, not something the page loads.)
	for _, f := range []string{"/", "/static/app.js", "/static/style.css"} {
		_, body, _ := get(t, srv.URL+f)
		body = snapshotData.ReplaceAll(body, nil)
		if strings.Contains(string(body), "http://") || strings.Contains(string(body), "https://") {
			for _, l := range strings.Split(string(body), "\n") {
				if strings.Contains(l, "://") && !strings.Contains(l, "http://www.w3.org/2000/svg") {
					t.Errorf("%s refers to another site: %s", f, strings.TrimSpace(l))
				}
			}
		}
	}
}

func mustGet(t *testing.T, url string) []byte {
	t.Helper()
	code, body, _ := get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	return body
}

func do(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDashboardAdminNeedsToken(t *testing.T) {
	mon, err := alert.Open(alert.Config{Dir: t.TempDir(), Source: emptySource{}})
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	srv, sess, ban := newServer(t, mon)
	actions := []struct{ method, path, body string }{
		{"GET", "/api/v1/admin/sessions", ""},
		{"POST", "/api/v1/admin/kick", `{"session":"00000001"}`},
		{"POST", "/api/v1/admin/ban", `{"ip":"127.0.0.9","seconds":60}`},
		{"GET", "/api/v1/admin/settings", ""},
		{"PUT", "/api/v1/admin/settings", `{"worker_quiet_seconds":300,"reject_rate":0.05,"reject_window_seconds":600,"reject_min_shares":20}`},
		{"GET", "/api/v1/admin/alerts", ""},
	}
	for _, a := range actions {
		for _, tok := range []string{"", "wrong", adminToken + "x", adminToken[:len(adminToken)-1]} {
			if code, body := do(t, a.method, srv.URL+a.path, tok, a.body); code != http.StatusUnauthorized || strings.Contains(body, adminToken) {
				t.Errorf("%s %s with token %q: %d %s, want 401", a.method, a.path, tok, code, body)
			}
		}
	}
	if len(sess.kicked) != 0 || len(ban.bans) != 0 || mon.Settings().WorkerQuiet != 0 {
		t.Fatalf("an unauthorized request acted: kicked %v bans %v", sess.kicked, ban.bans)
	}
	for _, a := range actions {
		if code, body := do(t, a.method, srv.URL+a.path, adminToken, a.body); code != http.StatusOK || strings.Contains(body, adminToken) {
			t.Errorf("%s %s with the token: %d %s", a.method, a.path, code, body)
		}
	}
	if len(sess.kicked) != 1 || len(ban.bans) != 1 || ban.bans[0] != "127.0.0.9" {
		t.Errorf("kicked %v bans %v", sess.kicked, ban.bans)
	}
	if s := mon.Settings(); s.WorkerQuiet != 5*time.Minute || s.RejectRate != 0.05 {
		t.Errorf("settings after PUT: %+v", s)
	}
	for _, bad := range []struct{ method, path, body string }{
		{"POST", "/api/v1/admin/ban", `{"ip":"not an ip","seconds":60}`},
		{"POST", "/api/v1/admin/ban", `{"ip":"127.0.0.1","seconds":0}`},
		{"POST", "/api/v1/admin/kick", `{"session":"nope"}`},
		{"POST", "/api/v1/admin/kick", `{"sesion":"00000001"}`},
		{"PUT", "/api/v1/admin/settings", `{"reject_rate":2}`},
	} {
		if code, body := do(t, bad.method, srv.URL+bad.path, adminToken, bad.body); code != http.StatusBadRequest && code != http.StatusNotFound {
			t.Errorf("%s %s %s: %d %s, want 400 or 404", bad.method, bad.path, bad.body, code, body)
		}
	}
}

// TestDashboardNoSecrets reads every public page and endpoint and checks the admin
// token appears in none.
func TestDashboardNoSecrets(t *testing.T) {
	srv, _, _ := newServer(t, nil)
	for _, p := range []string{"/", "/address/" + addrA, "/static/app.js", "/api/v1/pool", "/api/v1/dashboard", "/api/v1/dashboard?address=" + addrA,
		"/api/v1/address/" + addrA, "/api/v1/history", "/api/v1/workers/" + addrA, "/api/v1/blocks", "/healthz",
		"/api/info", "/api/pool", "/api/network", "/api/client/" + addrA, "/api/info/chart"} {
		_, body, _ := get(t, srv.URL+p)
		if strings.Contains(string(body), adminToken) {
			t.Errorf("%s shows the admin token", p)
		}
	}
}

type emptySource struct{}

func (emptySource) Blocks(context.Context, int) ([]hashgrid.Block, error)      { return nil, nil }
func (emptySource) Workers(context.Context, string) ([]hashgrid.Worker, error) { return nil, nil }
func (emptySource) WorkBetween(context.Context, time.Time, time.Time) ([]hashgrid.Worker, error) {
	return nil, nil
}
