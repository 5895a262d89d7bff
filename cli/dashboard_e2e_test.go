package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/node/regtest"
)

// chromiumPath is where Debian's chromium package puts the browser (scripts/deps.sh
// installs it).
const chromiumPath = "/usr/bin/chromium"

// browser starts a headless Chromium with a fresh profile and returns a tab context.
func browser(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	exe := chromiumPath
	if _, err := os.Stat(exe); err != nil {
		p, lerr := exec.LookPath("chromium")
		if lerr != nil {
			t.Fatalf("no Chromium at %s or on PATH: run scripts/test (it installs Debian's chromium package) or apt-get install chromium", chromiumPath)
		}
		exe = p
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancelTimeout()
		cancelTab()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	return ctx, func() { cancelTimeout(); cancelTab(); cancelAlloc() }
}

// poll evaluates a JavaScript condition until it is true.
func poll(t *testing.T, ctx context.Context, d time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		// A short poll at a time: a navigation in between destroys the page's
		// JavaScript context, which fails the poll without meaning the condition is false.
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(time.Second), chromedp.WithPollingInterval(100*time.Millisecond)))
		if err == nil {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("waiting %s for %s: %v\npage text:\n%s", d, what, err, tail(html, 3000))
		}
	}
}

// screenshot saves a full-page PNG in screenshotDir.
func screenshot(t *testing.T, ctx context.Context, width, height int64, name string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		t.Fatalf("viewport: %v", err)
	}
	// Let the chart redraw for the new width.
	poll(t, ctx, 5*time.Second, "chart at width "+fmt.Sprint(width),
		fmt.Sprintf(`(() => { const s = document.querySelector('#chart svg'); return !!s && Math.abs(s.viewBox.baseVal.width - Math.max(280, document.getElementById('chart').clientWidth)) < 2 })()`))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := screenshotDir(t)
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s (%d bytes)", filepath.Join(dir, name), len(png))
}

// updateScreenshotsEnv, set to 1, makes the browser tests write their screenshots
// over the tracked ones in docs/screenshots (a deliberate refresh of the README's
// pictures); otherwise they go to the test's artifact directory, kept with
// go test -artifacts and removed after the test otherwise.
const updateScreenshotsEnv = "HASHGRID_UPDATE_SCREENSHOTS"

func screenshotDir(t *testing.T) string {
	t.Helper()
	if os.Getenv(updateScreenshotsEnv) != "1" {
		return t.ArtifactDir()
	}
	dir := filepath.Join(docsDir(), "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// docsDir is the repository's docs directory.
func docsDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "docs")
}

// TestScreenshotsStayOutOfDocs: a test run leaves the tracked screenshots alone
// unless asked to refresh them.
func TestScreenshotsStayOutOfDocs(t *testing.T) {
	docs, err := filepath.Abs(docsDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(updateScreenshotsEnv, "")
	if dir, _ := filepath.Abs(screenshotDir(t)); strings.HasPrefix(dir, docs) {
		t.Errorf("screenshots go to %s without %s=1", dir, updateScreenshotsEnv)
	}
	t.Setenv(updateScreenshotsEnv, "1")
	if dir, _ := filepath.Abs(screenshotDir(t)); dir != filepath.Join(docs, "screenshots") {
		t.Errorf("with %s=1 screenshots go to %s, want %s", updateScreenshotsEnv, dir, filepath.Join(docs, "screenshots"))
	}
}

// TestDashboardBrowser drives the dashboard in a real headless Chromium against a pool
// on btcd (regtest) with CPU miners: the chart draws, a new worker appears within
// seconds of connecting, a found block appears, and the address page shows the miner.
// It saves desktop and phone screenshots (see screenshotDir), and checks no page
// shows a worker's password or the admin token.
func TestDashboardBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd and Chromium")
	}
	const password, token = "pw-SECRET-41d7c2", "admin-SECRET-93be10"
	btcd := regtest.StartT(t)
	r, stopPool := startPool(t, PoolConfig{
		Nodes: []string{btcd.RPCURL()}, Network: "regtest", PayoutAddress: regtest.TestAddress(),
		Stratum: "127.0.0.1:0", API: "127.0.0.1:0", Data: t.TempDir(), Tag: "/dash/",
		PollInterval: 100 * time.Millisecond, TrackInterval: 300 * time.Millisecond, ShareInterval: time.Second,
		AdminToken: token, AlertInterval: 300 * time.Millisecond, LogLevel: "info",
		// Payouts on, so that the address page has an earnings panel to show.
		PayoutScheme: "pplns",
	})
	defer stopPool()
	base := "http://" + r.API

	mctx, stopMiners := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopMiners(); wg.Wait() }()
	startMiner := func(user string) {
		m, err := miner.New(miner.Config{URL: "stratum+tcp://" + r.Stratum, User: user, Password: password, MaxRetryWait: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { m.Run(mctx) })
	}
	first := regtest.TestAddress()
	startMiner(first + ".rig1")

	ctx, cancel := browser(t)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 20*time.Second, "the live stream", `document.getElementById('live').classList.contains('on')`)
	poll(t, ctx, 30*time.Second, "the first worker", fmt.Sprintf(`!!document.querySelector('#workers tr[data-worker=%q]')`, first+".rig1"))

	// A worker that connects now shows up within seconds, without a reload.
	second := regtest.TestAddressP2PKH()
	startMiner(second + ".phone")
	start := time.Now()
	poll(t, ctx, 10*time.Second, "the new worker", fmt.Sprintf(`!!document.querySelector('#workers tr[data-worker=%q] .dot.on')`, second+".phone"))
	t.Logf("new worker shown %s after it connected", time.Since(start).Round(time.Millisecond))

	poll(t, ctx, 120*time.Second, "a found block", `!!document.querySelector('#blocks tr[data-hash][data-status="accepted"]')`)
	poll(t, ctx, 30*time.Second, "a chart line with points and a non-zero hashrate",
		`(() => { const p = document.querySelector('#chart path.line'); return !!p && Number(p.dataset.points) >= 3 && /[1-9]/.test(document.getElementById('c-hashrate').textContent) })()`)
	hashText, _ := chromedp.Run(ctx, chromedp.Text("#c-hashrate"))
	t.Logf("pool hashrate shown: %s", hashText)
	screenshot(t, ctx, 1280, 900, "dashboard-desktop.png")
	noRawObjects(t, ctx, "the pool page at 1280 px")
	screenshot(t, ctx, 390, 844, "dashboard-phone.png")
	noRawObjects(t, ctx, "the pool page at 390 px")
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('c-nethash').textContent`)); !regexp.MustCompile(`[1-9]`).MatchString(strings.Split(n, " over")[0]) {
		t.Errorf("network hashrate shown as %q", n)
	}

	// The address page: typed into the search box, as a miner would.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900), chromedp.SendKeys("#search-input", first), chromedp.Click("#search button")); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 10*time.Second, "the address page", fmt.Sprintf(`document.querySelector('#address-view')?.dataset.address === %q && !document.getElementById('address-view').hidden`, first))
	poll(t, ctx, 15*time.Second, "the miner's worker on its page", `!!document.querySelector('#workers tr[data-worker$=".rig1"] .dot.on') && document.querySelectorAll('#shares tbody tr:not(.empty)').length > 0`)
	poll(t, ctx, 10*time.Second, "the earnings panel answered", `document.getElementById('earnings').textContent.trim().length > 0`)
	// The block found above is credited to the miner: the panel shows it as a row.
	poll(t, ctx, 60*time.Second, "a block credit in the earnings panel", `!!document.querySelector('#earnings tr[data-kind="block"]')`)
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#workers tr[data-worker*="phone"]').length`)); n != 0 {
		t.Errorf("the address page lists another address's worker")
	}
	screenshot(t, ctx, 1280, 900, "address-desktop.png")
	noRawObjects(t, ctx, "the address page at 1280 px")
	screenshot(t, ctx, 390, 844, "address-phone.png")
	noRawObjects(t, ctx, "the address page at 390 px")

	// An address the pool never heard of says so, rather than showing zeros.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(base+"/address/bcrt1qnobodyminedhere")); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 10*time.Second, "'nothing known' for an unknown address",
		`!document.getElementById('a-unknown').hidden && document.getElementById('a-cards').hidden && /Nothing known/.test(document.body.innerText)`)
	noRawObjects(t, ctx, "an unknown address's page")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/address/"+first)); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 10*time.Second, "the address page again", `!!document.querySelector('#workers tr[data-worker$=".rig1"]')`)

	// No page or endpoint shows the miners' password or the admin token.
	html, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{password, token} {
		if strings.Contains(html, secret) {
			t.Errorf("the address page shows %q", secret)
		}
	}
	paths := []string{"/", "/address/" + first, "/api/v1/pool", "/api/v1/dashboard", "/api/v1/dashboard?address=" + first,
		"/api/v1/address/" + first, "/api/v1/workers/" + first, "/api/v1/blocks", "/api/v1/history", "/healthz", "/metrics",
		"/api/info", "/api/pool", "/api/network", "/api/client/" + first, "/api/info/chart"}
	for _, p := range paths {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, secret := range []string{password, token} {
			if strings.Contains(string(body), secret) {
				t.Errorf("%s shows %q", p, secret)
			}
		}
	}
	// The Grafana dashboard in docs/ reads metrics this pool exports. Counters that only
	// appear after a drop or an error are exempt from being present.
	checkGrafana(t, base+"/metrics", map[string]bool{"hashgrid_stratum_dropped_total": true, "hashgrid_node_rpc_errors_total": true, "hashgrid_share_record_failures_total": true})

	// The admin session list (with the token) has the miners, but no password either.
	req, _ := http.NewRequest("GET", base+"/api/v1/admin/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), first) || strings.Contains(string(body), password) {
		t.Errorf("admin sessions: %d %s", resp.StatusCode, tail(string(body), 500))
	}
}

// rawObject matches what a page shows when it dumps an API reply instead of placing
// its figures: JSON, a stringified object, or a ledger entry key.
var rawObject = regexp.MustCompile(`\{"|\[object Object\]|\bblock:[0-9a-f]{8,}|:credit\b|\bundefined\b|\bNaN\b`)

// noRawObjects fails the test if the visible text of the page shows a raw object.
func noRawObjects(t *testing.T, ctx context.Context, where string) {
	t.Helper()
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatal(err)
	}
	if m := rawObject.FindAllString(text, 5); m != nil {
		t.Errorf("%s shows raw data %q:\n%s", where, m, tail(text, 3000))
	}
}

// checkGrafana checks docs/grafana/hashgrid.json is a dashboard whose queries name
// only metrics that the pool at metricsURL exports (or the listed event-only ones).
func checkGrafana(t *testing.T, metricsURL string, eventOnly map[string]bool) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(docsDir(), "grafana", "hashgrid.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana dashboard: %v", err)
	}
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	exported, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	name := regexp.MustCompile(`\b(hashgrid|process|go)_[a-z_]+`)
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries++
			for _, m := range name.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(m, "_bucket")
				if !eventOnly[base] && !strings.Contains(string(exported), "\n"+m) {
					t.Errorf("grafana panel %q queries %s, which /metrics does not export", p.Title, m)
				}
			}
		}
	}
	if queries < 10 {
		t.Errorf("grafana dashboard has %d queries", queries)
	}
}
