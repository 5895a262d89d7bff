package market

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
)

const testAdmin = "admin-SECRET-5e0c7a"

// request sends method path with a bearer token to the handler h on a real server.
func request(t *testing.T, base, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// checkSharesAccess holds GET /api/v1/orders/{id}/shares to its rules on an order
// that has delivered samples: no key, no shares; another buyer's key, no such order;
// the buyer's key, every sample with the sellers hidden behind pseudonyms; the admin
// token, the sellers' workers.
func checkSharesAccess(t *testing.T, tm *testMarket, acct, key, id string, samples []ShareSample) {
	t.Helper()
	srv := httptest.NewServer(NewHandler(tm.Market, HTTPConfig{AdminToken: testAdmin}))
	defer srv.Close()
	path := "/api/v1/orders/" + id + "/shares"
	if st, b := request(t, srv.URL, "GET", path, "", nil); st != http.StatusUnauthorized {
		t.Errorf("shares without a key: %d %s", st, b)
	}
	_, other := tm.buyer(t, 1)
	if st, b := request(t, srv.URL, "GET", path, other, nil); st != http.StatusNotFound {
		t.Errorf("shares with another buyer's key: %d %s", st, b)
	}
	st, b := request(t, srv.URL, "GET", path, key, nil)
	if st != http.StatusOK {
		t.Fatalf("shares with the buyer's key: %d %s", st, b)
	}
	var got []ShareSample
	if err := json.Unmarshal(b, &got); err != nil || len(got) != len(samples) {
		t.Fatalf("buyer got %d samples (%v), want %d", len(got), err, len(samples))
	}
	names := map[string]string{}
	for i, s := range got {
		if !strings.HasPrefix(s.Worker, "seller-") {
			t.Fatalf("sample %d names its seller %q", i, s.Worker)
		}
		if prev, ok := names[samples[i].Worker]; ok && prev != s.Worker {
			t.Errorf("seller %s has two pseudonyms in one order", samples[i].Worker)
		}
		names[samples[i].Worker] = s.Worker
	}
	for w := range names {
		addr, _, _ := strings.Cut(w, ".")
		if bytes.Contains(b, []byte(addr)) {
			t.Errorf("the buyer's shares show seller address %s", addr)
		}
	}
	if rep := Audit(got); rep.Valid != len(got) {
		t.Errorf("buyer's samples: %d of %d verify", rep.Valid, len(got))
	}
	if p := tm.pseudonym(id+"x", samples[0].Worker); p == names[samples[0].Worker] {
		t.Errorf("a seller's pseudonym is the same on two orders")
	}
	st, b = request(t, srv.URL, "GET", path, testAdmin, nil)
	var adm []ShareSample
	if st != http.StatusOK || json.Unmarshal(b, &adm) != nil || len(adm) == 0 || adm[0].Worker != samples[0].Worker {
		t.Errorf("shares with the admin token: %d %.200s", st, b)
	}
}

// lockedWriter lets the market's goroutines log into one buffer.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func newTestLogger(w io.Writer, mu *sync.Mutex) *slog.Logger {
	return slog.New(slog.NewTextHandler(lockedWriter{mu: mu, w: w}, nil))
}

// TestDestinationPolicy refuses destinations that resolve to loopback, private,
// link-local, multicast, unspecified and other non-public addresses, with one
// message that tells the buyer nothing about why.
func TestDestinationPolicy(t *testing.T) {
	names := map[string][]netip.Addr{
		"inside.example":  {netip.MustParseAddr("10.1.2.3")},
		"mixed.example":   {netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("127.0.0.1")},
		"nowhere.example": nil,
	}
	tm := startMarket(t, func(c *Config) {
		c.AllowPrivateDestinations = false
		c.Resolver = func(ctx context.Context, host string) ([]netip.Addr, error) {
			if a, ok := names[host]; ok && a != nil {
				return a, nil
			}
			return nil, errors.New("no such host")
		}
	})
	acct, _ := tm.buyer(t, 1_000_000)
	for _, host := range []string{"127.0.0.1", "127.8.9.10", "[::1]", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
		"[fe80::1]", "224.0.0.1", "[ff02::1]", "0.0.0.0", "[::]", "100.64.0.1", "[::ffff:127.0.0.1]", "[fd00::1]",
		"[64:ff9b::a00:1]", "[2002:7f00:1::1]", "255.255.255.255", "inside.example", "mixed.example", "nowhere.example"} {
		_, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: "stratum+tcp://" + host + ":3333", PoolUser: "u", Price: 1, Budget: 10})
		if err == nil {
			t.Errorf("an order to %s was placed", host)
			continue
		}
		if hashgrid.ErrorMessage(err) != hashgrid.ErrorMessage(errDestRefused) {
			t.Errorf("%s: buyer told %q", host, hashgrid.ErrorMessage(err))
		}
	}
	for _, a := range []string{"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "203.0.113.9", "64:ff9b::808:808"} {
		if !publicAddr(netip.MustParseAddr(a)) {
			t.Errorf("%s is refused as not public", a)
		}
	}
	if b, _ := tm.led.Balance(context.Background(), acctBuyer(acct)); b != 1_000_000 {
		t.Errorf("refused orders moved money: balance %d", b)
	}
}

// TestDestinationRebinding: a name that resolved to a public address when the order
// was placed and to loopback when the market dials is not dialled.
func TestDestinationRebinding(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	})
	defer func() { l.Close(); wg.Wait() }()
	var calls atomic.Int32
	tm := startMarket(t, func(c *Config) {
		c.AllowPrivateDestinations = false
		c.Resolver = func(ctx context.Context, host string) ([]netip.Addr, error) {
			if calls.Add(1) == 1 {
				return []netip.Addr{netip.MustParseAddr("198.51.100.7")}, nil
			}
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
	})
	acct, _ := tm.buyer(t, 1_000_000)
	_, port, _ := net.SplitHostPort(l.Addr().String())
	o, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: "stratum+tcp://pool.example:" + port, PoolUser: "u", Price: 1, Budget: 1000})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the order paused", func() bool { return tm.view(t, acct, o.ID).Status == StatusPaused })
	if v := tm.view(t, acct, o.ID); v.Reason != reasonUnreachable {
		t.Errorf("reason %q", v.Reason)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the market connected %d times to a name that turned to loopback", n)
	}
}

// TestUnreachableReasonGeneric: what the dial found is logged, and the buyer hears
// only that the destination is unreachable (no "connection refused" against a
// timeout, which would map the operator's network).
func TestUnreachableReasonGeneric(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	var logs bytes.Buffer
	var logMu sync.Mutex
	tm := startMarket(t, func(c *Config) { c.Logger = newTestLogger(&logs, &logMu) })
	acct, _ := tm.buyer(t, 1_000_000)
	o, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: "stratum+tcp://" + addr, PoolUser: "u", Price: 1, Budget: 1000})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the order paused", func() bool { return tm.view(t, acct, o.ID).Status == StatusPaused })
	v := tm.view(t, acct, o.ID)
	if v.Reason != reasonUnreachable {
		t.Errorf("buyer told %q, want %q", v.Reason, reasonUnreachable)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("the log lacks the dial's detail:\n%s", logs.String())
	}
}

// TestSmallExtranonceReason: a destination whose extranonce2 is smaller than the
// sellers' (so not even a connection per seller can serve it) pauses the order with
// a reason that says so, the one detail a buyer can act on.
func TestSmallExtranonceReason(t *testing.T) {
	dest := startDestEN2(t, 0.0003, 2)
	tm := startMarket(t, nil)
	acct, _ := tm.buyer(t, 1_000_000)
	o, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: dest.url(), PoolUser: "u", Price: 1, Budget: 1000})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the order paused", func() bool { return tm.view(t, acct, o.ID).Status == StatusPaused })
	if r, want := tm.view(t, acct, o.ID).Reason, "destination gives 2 bytes of extranonce2; the market needs at least 4"; r != want {
		t.Errorf("reason %q, want %q", r, want)
	}
}

// TestAccountsAppendOnly: creating an account appends one line to the accounts
// journal and leaves the state file alone; accounts, keys and ids survive a restart,
// a torn last line, and a state file from before the journal.
func TestAccountsAppendOnly(t *testing.T) {
	dir := t.TempDir()
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	statePath := filepath.Join(dir, "market.json")
	open := func() *Market {
		t.Helper()
		m, err := New(Config{Network: &chaincfg.RegressionNetParams, Ledger: led, StatePath: statePath, AllowPrivateDestinations: true})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	shut := func(m *Market) {
		t.Helper()
		if err := m.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	m := open()
	id0, _, err := m.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.PlaceOrder(context.Background(), id0, OrderRequest{PoolURL: "stratum+tcp://127.0.0.1:1", PoolUser: "u", Price: 1, Budget: 1}); err == nil {
		t.Fatal("an unfunded order was placed")
	}
	before, _ := os.ReadFile(statePath)
	var statBefore os.FileInfo
	statBefore, _ = os.Stat(statePath)
	keys := map[string]string{}
	for range 50 {
		id, key, err := m.CreateAccount()
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = key
	}
	after, _ := os.ReadFile(statePath)
	statAfter, _ := os.Stat(statePath)
	if !bytes.Equal(before, after) || (statBefore != nil) != (statAfter != nil) || (statAfter != nil && !statAfter.ModTime().Equal(statBefore.ModTime())) {
		t.Errorf("creating accounts rewrote the state file")
	}
	journal := strings.TrimSuffix(statePath, ".json") + "-accounts.jsonl"
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte{'\n'}); n != 51 {
		t.Errorf("journal has %d lines, want 51", n)
	}
	shut(m)
	if st, _ := os.ReadFile(statePath); bytes.Contains(st, []byte("key_hash")) {
		t.Errorf("the state file holds accounts: %s", st)
	}

	// A crash mid-append leaves a torn line: it is cut off, and what follows is whole.
	f, _ := os.OpenFile(journal, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"a999","key_ha`)
	f.Close()
	m = open()
	for id, key := range keys {
		if got, err := m.Authenticate(key); err != nil || got != id {
			t.Fatalf("after restart, %s's key gives %q, %v", id, got, err)
		}
	}
	id, key, err := m.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	if _, dup := keys[id]; dup || id == id0 {
		t.Fatalf("a new account reuses id %s", id)
	}
	keys[id] = key
	shut(m)

	// A state file from before the journal: its accounts move to the journal.
	os.Remove(journal)
	old := state{Accounts: map[string]*Account{}, Orders: map[string]*OrderRecord{}, NextID: 7}
	sum := sha256.Sum256([]byte("s3cret"))
	old.Accounts["a7"] = &Account{ID: "a7", KeyHash: fmt.Sprintf("%x", sum), Created: time.Now().UTC()}
	ob, _ := json.Marshal(old)
	os.WriteFile(statePath, ob, 0o600)
	m = open()
	shut(m)
	m = open()
	defer shut(m)
	if got, err := m.Authenticate("hgk_a7_s3cret"); err != nil || got != "a7" {
		t.Errorf("an account of the old state file: %q, %v", got, err)
	}
	if st, _ := os.ReadFile(statePath); bytes.Contains(st, []byte("key_hash")) {
		t.Errorf("the state file still holds accounts: %s", st)
	}
}

// TestAccountRateLimit: POST /api/v1/accounts takes AccountBurst accounts from one
// address, then answers 429 in the one error shape until the bucket refills; another
// address is not affected.
func TestAccountRateLimit(t *testing.T) {
	tm := startMarket(t, nil)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv := httptest.NewServer(NewHandler(tm.Market, HTTPConfig{AccountsPerHour: 2, AccountBurst: 3, Now: clock}))
	defer srv.Close()
	from := func(local string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	post := func(c *http.Client) (int, []byte) {
		t.Helper()
		resp, err := c.Post(srv.URL+"/api/v1/accounts", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	a, b := from("127.0.0.1"), from("127.0.0.2")
	for i := range 3 {
		if st, body := post(a); st != http.StatusCreated {
			t.Fatalf("account %d: %d %s", i, st, body)
		}
	}
	st, body := post(a)
	if st != http.StatusTooManyRequests {
		t.Fatalf("fourth account from one address: %d %s", st, body)
	}
	if e, ok := hashgrid.ParseErrorReply(body); !ok || e.Code != hashgrid.ERATELIMITED {
		t.Errorf("429 body %s", body)
	}
	if st, body := post(b); st != http.StatusCreated {
		t.Errorf("another address: %d %s", st, body)
	}
	mu.Lock()
	now = now.Add(31 * time.Minute) // one account's worth at 2 an hour
	mu.Unlock()
	if st, body := post(a); st != http.StatusCreated {
		t.Errorf("after the bucket refilled: %d %s", st, body)
	}
	if st, _ := post(a); st != http.StatusTooManyRequests {
		t.Errorf("the refill gave more than one account: %d", st)
	}
	for _, c := range []struct{ in, want string }{
		{"192.0.2.1:5555", "192.0.2.1"}, {"[2001:db8:1:2:3:4:5:6]:80", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:80", "2001:db8:1:2::/64"}, {"[::ffff:192.0.2.1]:1", "192.0.2.1"},
	} {
		if got := limitKey(c.in); got != c.want {
			t.Errorf("limitKey(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

// TestAddrLimiterBounded: the limiter remembers at most its named number of
// addresses, forgets refilled ones first, and refuses new ones rather than grow.
func TestAddrLimiterBounded(t *testing.T) {
	now := time.Now()
	l := newAddrLimiter(1, 1, 3, func() time.Time { return now })
	for _, k := range []string{"a", "b", "c"} {
		if !l.allow(k) {
			t.Fatalf("%s refused", k)
		}
	}
	if l.allow("d") {
		t.Error("a fourth address was tracked past the bound")
	}
	now = now.Add(2 * time.Second)
	if !l.allow("d") || len(l.b) > 3 {
		t.Errorf("refilled addresses were not forgotten: %d tracked", len(l.b))
	}
}

// TestAdminTokenTiming: checking the admin token takes as long for a guess of the
// wrong length as for one of the right length (a length-first comparison answers the
// former at once, which tells an attacker the token's length).
func TestAdminTokenTiming(t *testing.T) {
	tm := startMarket(t, nil)
	token := strings.Repeat("k", 256<<10)
	h := NewHandler(tm.Market, HTTPConfig{AdminToken: token})
	timeOf := func(guess string) time.Duration {
		best := time.Hour
		for range 60 {
			req := httptest.NewRequest("POST", "/api/v1/admin/deposits", strings.NewReader(`{}`))
			req.Header.Set("Authorization", "Bearer "+guess)
			w := httptest.NewRecorder()
			start := time.Now()
			h.ServeHTTP(w, req)
			if el := time.Since(start); el < best {
				best = el
			}
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("a wrong token: status %d", w.Code)
			}
		}
		return best
	}
	same := timeOf(strings.Repeat("k", len(token)-1) + "x")
	longer := timeOf(strings.Repeat("k", len(token)) + "x")
	t.Logf("wrong token of the right length: %s; one byte longer: %s", same, longer)
	if longer < same/4 || same < longer/4 {
		t.Errorf("the check's time depends on the guess's length matching: %s against %s", same, longer)
	}
}

// TestSpeedHistory: an order's delivered speed per bucket, gaps as zero, only the
// completed buckets, to its owner only.
func TestSpeedHistory(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	tm := startMarket(t, func(c *Config) {
		c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		c.SpeedBucket = time.Minute
		c.SpeedHistory = 5 * time.Minute
	})
	acct, _ := tm.buyer(t, 1_000_000)
	other, _ := tm.buyer(t, 1)
	o, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: "stratum+tcp://127.0.0.1:1", PoolUser: "u", Price: 1, Budget: 1000})
	if err != nil {
		t.Fatal(err)
	}
	const th = 1e12 * 60 // one TH/s for a minute
	tm.mu.Lock()
	ord := tm.orders[o.ID]
	for _, d := range []struct {
		at     time.Duration
		hashes float64
	}{{10 * time.Second, th}, {50 * time.Second, th}, {3*time.Minute + 5*time.Second, th / 2}, {7 * time.Minute, th}} {
		ord.recordSpeedLocked(now.Add(d.at), d.hashes, time.Minute, 6)
	}
	tm.mu.Unlock()
	mu.Lock()
	now = now.Add(7*time.Minute + 30*time.Second)
	mu.Unlock()
	h, err := tm.SpeedHistory(acct, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Shown: the completed buckets of the last five minutes, 03:06 to 03:10.
	want := []float64{0, 0.5, 0, 0, 0}
	if len(h.Points) != len(want) {
		t.Fatalf("points %+v, want %d", h.Points, len(want))
	}
	for i, p := range h.Points {
		if p.Speed != want[i] || !p.Time.Equal(now.Truncate(time.Minute).Add(time.Duration(i-5)*time.Minute)) {
			t.Errorf("point %d: %+v, want %g TH/s", i, p, want[i])
		}
	}
	if _, err := tm.SpeedHistory(other, o.ID); err == nil {
		t.Error("another buyer reads the order's speed")
	}
}
