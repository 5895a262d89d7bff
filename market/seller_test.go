package market

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
)

// rawSeller is a seller written against the wire: it mines its own shares (so a test
// can replay, hold back or roll them) and times each answer.
type rawSeller struct {
	t    testing.TB
	nc   net.Conn
	user string
	sid  string
	en1  []byte
	en2  int
	// enSub: subscribed to mining.set_extranonce, which it then follows; otherwise it
	// ignores it, as a miner that did not subscribe does.
	enSub bool

	mu      sync.Mutex
	pending float64 // difficulty for the next job
	diff    float64 // difficulty of job
	job     *stratum.Notify
	jobs    chan struct{} // a job arrived
	nextID  uint64
	replies map[uint64]chan *stratum.Message
	en2Next uint64
	done    chan struct{} // the market closed the connection
}

func dialSeller(t testing.TB, addr, user string, resume string) *rawSeller {
	t.Helper()
	return dialSellerWith(t, addr, user, resume, false)
}

// dialSellerWith is dialSeller; with enSub the seller subscribes to
// mining.set_extranonce and mines with the extranonce1 it is sent.
func dialSellerWith(t testing.TB, addr, user string, resume string, enSub bool) *rawSeller {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &rawSeller{t: t, nc: nc, user: user, enSub: enSub, jobs: make(chan struct{}, 64), replies: map[uint64]chan *stratum.Message{}, done: make(chan struct{})}
	t.Cleanup(func() { nc.Close(); <-s.done })
	go s.read()
	if enSub {
		if res, serr := s.call("mining.extranonce.subscribe", []byte("[]")); serr != nil || string(res) != "true" {
			t.Fatalf("extranonce.subscribe: %s %v", res, serr)
		}
	}
	params := []string{"rawseller/1"}
	if resume != "" {
		params = append(params, resume)
	}
	p, _ := json.Marshal(params)
	res, serr := s.call("mining.subscribe", p)
	if serr != nil {
		t.Fatalf("subscribe: %v", serr)
	}
	var sub []json.RawMessage
	var en1 string
	if json.Unmarshal(res, &sub) != nil || len(sub) < 3 || json.Unmarshal(sub[1], &en1) != nil || json.Unmarshal(sub[2], &s.en2) != nil {
		t.Fatalf("subscribe result %s", res)
	}
	s.sid = en1
	s.en1, _ = hex.DecodeString(en1)
	p, _ = json.Marshal([]string{user, "x"})
	if res, serr := s.call("mining.authorize", p); serr != nil || string(res) != "true" {
		t.Fatalf("authorize: %s %v", res, serr)
	}
	return s
}

func (s *rawSeller) read() {
	defer close(s.done)
	r := bufio.NewReader(s.nc)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		m, err := stratum.ParseMessage(line)
		if err != nil {
			continue
		}
		s.mu.Lock()
		switch {
		case m.Method == "mining.set_difficulty":
			var p []float64
			if json.Unmarshal(m.Params, &p) == nil && len(p) == 1 {
				s.pending = p[0]
			}
		case m.Method == "mining.set_extranonce" && s.enSub:
			var p []json.RawMessage
			var en1 string
			if json.Unmarshal(m.Params, &p) == nil && len(p) == 2 && json.Unmarshal(p[0], &en1) == nil {
				s.en1, _ = hex.DecodeString(en1)
				json.Unmarshal(p[1], &s.en2)
			}
		case m.Method == "mining.notify":
			if n, err := stratum.ParseNotify(m.Params); err == nil {
				s.job, s.diff = n, s.pending
				select {
				case s.jobs <- struct{}{}:
				default:
				}
			}
		case !m.IsRequest():
			id, _ := strconv.ParseUint(string(m.ID), 10, 64)
			if ch := s.replies[id]; ch != nil {
				ch <- m
				delete(s.replies, id)
			}
		}
		s.mu.Unlock()
	}
}

// call sends a request and waits for its answer.
func (s *rawSeller) call(method string, params []byte) (json.RawMessage, *stratum.Error) {
	s.t.Helper()
	s.mu.Lock()
	s.nextID++
	id := s.nextID
	ch := make(chan *stratum.Message, 1)
	s.replies[id] = ch
	s.mu.Unlock()
	if _, err := s.nc.Write(stratum.AppendRequest(nil, id, method, params)); err != nil {
		s.t.Fatalf("%s: %v", method, err)
	}
	select {
	case m := <-ch:
		return m.Result, m.Error
	case <-s.done:
		s.t.Fatalf("%s: the market closed the connection", method)
	case <-time.After(20 * time.Second):
		s.t.Fatalf("%s: no answer", method)
	}
	return nil, nil
}

// waitJob waits until the seller has a job.
func (s *rawSeller) waitJob() {
	s.t.Helper()
	waitFor(s.t, 20*time.Second, "a job for the raw seller", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.job != nil && s.diff > 0
	})
}

// mine finds a share on the current job at its difficulty, with ntime rolled forward
// by roll seconds.
func (s *rawSeller) mine(roll uint32) *stratum.Submit {
	s.t.Helper()
	s.mu.Lock()
	n, diff := s.job, s.diff
	s.en2Next++
	en2n := s.en2Next
	en1, en2Size := s.en1, s.en2
	s.mu.Unlock()
	j, err := n.Decode()
	if err != nil {
		s.t.Fatal(err)
	}
	tgt := pow.DiffTarget(hashgrid.DiffFromFloat(diff))
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], en2n)
	en2 := make([]byte, en2Size)
	copy(en2, buf[8-min(8, en2Size):])
	cb := append(append(append(append([]byte(nil), j.Coinb1...), en1...), en2...), j.Coinb2...)
	root := pow.MerkleRoot(pow.DoubleSHA256(cb), j.Branch)
	ntime := j.NTime + roll
	var hdr [80]byte
	for nonce := uint32(0); ; nonce++ {
		pow.Header(&hdr, j.Version, &j.Prev, &root, ntime, j.Bits, nonce)
		h := pow.DoubleSHA256(hdr[:])
		if pow.Meets(&h, tgt) {
			return &stratum.Submit{Worker: s.user, JobID: j.ID, Extranonce2: hex.EncodeToString(en2),
				NTime: fmt.Sprintf("%08x", ntime), Nonce: fmt.Sprintf("%08x", nonce)}
		}
		if nonce == ^uint32(0) {
			s.t.Fatal("no share in the nonce range")
		}
	}
}

// submit sends a share and returns the market's answer and how long it took.
func (s *rawSeller) submit(sub *stratum.Submit) (*stratum.Error, time.Duration) {
	s.t.Helper()
	start := time.Now()
	res, serr := s.call("mining.submit", sub.MarshalParams())
	el := time.Since(start)
	if serr == nil && string(res) != "true" {
		s.t.Fatalf("submit answered %s", res)
	}
	return serr, el
}

func (s *rawSeller) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func workerOf(tm *testMarket, key string) workerStats {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if w := tm.workers[key]; w != nil {
		return *w
	}
	return workerStats{}
}

// rawMarket is a market whose sellers get exactly the destination's difficulty d, so
// that every share a raw seller mines is forwarded.
func rawMarket(t testing.TB, d float64, tweak func(*Config)) *testMarket {
	return startMarket(t, func(c *Config) {
		c.SellerMinDiff, c.SellerStartDiff = d, d
		c.SellerShareInterval = time.Hour // vardiff asks for more than the destination's difficulty: sellers get that
		if tweak != nil {
			tweak(c)
		}
	})
}

// TestSlowDestinationDoesNotHoldSellers: a destination that takes 1.5 s per answer.
// The seller's shares are answered at once all the same, at most UpstreamInFlight of
// them are out at the destination, the rest are counted as dropped on the order, and
// every share is accounted for once the destination has answered.
func TestSlowDestinationDoesNotHoldSellers(t *testing.T) {
	const d = 0.00003
	dest := startDestWith(t, d, 8, func(f *fakeDest) { f.delay = 1500 * time.Millisecond })
	tm := rawMarket(t, d, func(c *Config) { c.UpstreamInFlight = 2; c.UpstreamTimeout = 10 * time.Second })
	acct, _ := tm.buyer(t, 100_000_000)
	o, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: dest.url(), PoolUser: "slow", Price: 1_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	s := dialSeller(t, tm.addr, regtest.TestAddress()+".raw", "")
	s.waitJob()
	const n = 10
	var subs []*stratum.Submit
	for range n {
		subs = append(subs, s.mine(0))
	}
	for i, sub := range subs {
		serr, el := s.submit(sub)
		if serr != nil {
			t.Fatalf("share %d: %v", i, serr)
		}
		if el > 500*time.Millisecond {
			t.Errorf("share %d answered after %s: the seller waited on the destination", i, el)
		}
	}
	if v := tm.view(t, acct, o.ID); v.SharesDropped < n-4 {
		t.Errorf("%d shares dropped, want at least %d with 2 in flight at 1.5 s each", v.SharesDropped, n-4)
	}
	waitFor(t, 15*time.Second, "every forwarded share answered", func() bool {
		v := tm.view(t, acct, o.ID)
		return v.SharesAccepted+v.SharesDropped+v.SharesStale+v.SharesRejected == n
	})
	if acc, _ := dest.stats("slow"); acc != tm.view(t, acct, o.ID).SharesAccepted || acc == 0 {
		t.Errorf("destination accepted %d, market counted %d", acc, tm.view(t, acct, o.ID).SharesAccepted)
	}
}

// TestDuplicatesAndFullShareSet: a replayed share is refused before it counts for
// anything; a seller that fills its share set on a job has further shares refused,
// and replays stay refused, also from a new connection that resumes its extranonce1.
func TestDuplicatesAndFullShareSet(t *testing.T) {
	const d = 0.00003
	dest := startDest(t, d)
	tm := rawMarket(t, d, func(c *Config) { c.MaxSharesPerSellerJob = 4 })
	acct, _ := tm.buyer(t, 100_000_000)
	if _, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: dest.url(), PoolUser: "dups", Price: 1_000_000_000_000_000, Budget: 10_000_000}); err != nil {
		t.Fatal(err)
	}
	user := regtest.TestAddress() + ".replay"
	s := dialSeller(t, tm.addr, user, "")
	s.waitJob()
	var subs []*stratum.Submit
	for range 5 {
		subs = append(subs, s.mine(0))
	}
	want := func(sub *stratum.Submit, code int, what string) {
		t.Helper()
		serr, _ := s.submit(sub)
		switch {
		case code == 0 && serr != nil:
			t.Errorf("%s: %v, want accepted", what, serr)
		case code != 0 && (serr == nil || serr.Code != code):
			t.Errorf("%s: %v, want error %d", what, serr, code)
		}
	}
	want(subs[0], 0, "first share")
	want(subs[0], stratum.ErrCodeDuplicate, "the first share again")
	for i := 1; i < 4; i++ {
		want(subs[i], 0, fmt.Sprintf("share %d", i))
	}
	want(subs[4], stratum.ErrCodeJobNotFound, "a fifth share with the set full")
	want(subs[2], stratum.ErrCodeDuplicate, "a replay with the set full")
	key := regtest.TestAddress() + "/replay"
	w := workerOf(tm, key)
	if w.Invalid != 2 || w.Stale != 1 {
		t.Errorf("worker counted %d invalid, %d stale; want 2 and 1", w.Invalid, w.Stale)
	}
	waitFor(t, 10*time.Second, "four shares at the destination", func() bool { n, _ := dest.stats("dups"); return n == 4 })

	// Reconnect, resuming the extranonce1: the job's set is still there.
	sid := s.sid
	s.nc.Close()
	<-s.done
	waitFor(t, 5*time.Second, "the old connection gone", func() bool { return tm.Server().NumConns() == 0 })
	s2 := dialSeller(t, tm.addr, user, sid)
	if s2.sid != sid {
		t.Fatalf("extranonce1 %s not resumed (got %s)", sid, s2.sid)
	}
	s2.waitJob()
	for i, sub := range subs[:4] {
		if serr, _ := s2.submit(sub); serr == nil || serr.Code != stratum.ErrCodeDuplicate {
			t.Errorf("replay %d on a resumed connection: %v, want duplicate", i, serr)
		}
	}
	if n, _ := dest.stats("dups"); n != 4 {
		t.Errorf("destination accepted %d shares, want 4", n)
	}
}

// TestSellerDifficultyFloor: a seller that suggests a tiny difficulty gets the floor.
func TestSellerDifficultyFloor(t *testing.T) {
	var c Config
	c.defaults()
	if c.SellerMinDiff != DefaultSellerMinDiff || c.SellerStartDiff != DefaultSellerMinDiff {
		t.Errorf("default floor %g, start %g; want %g", c.SellerMinDiff, c.SellerStartDiff, float64(DefaultSellerMinDiff))
	}
	bad := Config{Network: c.Network, SellerMinDiff: 1, SellerStartDiff: 0.001}
	bad.defaults()
	bad.Ledger, bad.StatePath = c.Ledger, "x"
	if err := bad.Validate(); err == nil {
		t.Error("a start difficulty below the floor was accepted")
	}

	// The destination's difficulty is above the floor, and the network's above that:
	// the seller's own difficulty applies.
	dest := startDestWith(t, 2, 8, func(f *fakeDest) { f.bits = 0x1a00ffff })
	tm := startMarket(t, func(c *Config) { c.SellerMinDiff, c.SellerStartDiff = 0.01, 0.5 })
	acct, _ := tm.buyer(t, 100_000_000)
	if _, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: dest.url(), PoolUser: "floor", Price: 1_000_000_000_000_000, Budget: 10_000_000}); err != nil {
		t.Fatal(err)
	}
	s := dialSeller(t, tm.addr, regtest.TestAddress()+".tiny", "")
	s.waitJob()
	if _, serr := s.call("mining.suggest_difficulty", []byte("[0.000001]")); serr != nil {
		t.Fatal(serr)
	}
	s.mu.Lock()
	s.job = nil
	s.mu.Unlock()
	dest.newJob(true) // the suggestion applies from the next job
	s.waitJob()
	s.mu.Lock()
	got := s.diff
	s.mu.Unlock()
	if got < 0.01 || got > 0.0100001 { // a Diff counts whole hashes: 0.01 is not exact

		t.Errorf("seller that suggested 1e-6 works at %g, want the floor 0.01", got)
	}
}

// TestRejectsAttributedToSeller: a destination that allows no ntime rolling rejects
// one seller's rolled shares. On its own that seller cannot pause the order; once
// other sellers' shares are accepted, it is the one dropped, and the order runs on.
// The same on a destination with 4 bytes of extranonce2, where each seller has its
// own connection.
func TestRejectsAttributedToSeller(t *testing.T) {
	t.Run("shared", func(t *testing.T) { testRejectsAttributed(t, 8) })
	t.Run("per-seller", func(t *testing.T) { testRejectsAttributed(t, 4) })
}

func testRejectsAttributed(t *testing.T, en2 int) {
	const d = 0.00003
	dest := startDestWith(t, d, en2, func(f *fakeDest) { f.strictNTime = true })
	tm := rawMarket(t, d, nil)
	acct, _ := tm.buyer(t, 100_000_000)
	o, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: dest.url(), PoolUser: "strict", Price: 1_000_000_000_000_000, Budget: 50_000_000})
	if err != nil {
		t.Fatal(err)
	}
	bad := dialSellerWith(t, tm.addr, regtest.TestAddress()+".roller", "", true)
	bad.waitJob()
	if n := dedicatedOf(tm, o.ID); en2 < 8 && n != 1 {
		t.Fatalf("%d sellers' own connections, want 1", n)
	}
	for range rejectsToPause + 5 {
		if serr, _ := bad.submit(bad.mine(1)); serr != nil {
			t.Fatalf("rolled share refused by the market: %v", serr)
		}
	}
	waitFor(t, 10*time.Second, "the rolled shares rejected", func() bool { return dest.rejects() >= rejectsToPause+5 })
	waitFor(t, 5*time.Second, "the rejections booked", func() bool {
		return workerOf(tm, regtest.TestAddress()+"/roller").Rejected == rejectsToPause+5
	})
	if v := tm.view(t, acct, o.ID); v.Status != StatusActive {
		t.Fatalf("one seller's rejected shares made the order %s (%s)", v.Status, v.Reason)
	}

	startSellers(t, tm.addr, sellerUsers()...)
	waitFor(t, 30*time.Second, "other sellers' shares accepted", func() bool { return tm.view(t, acct, o.ID).SharesAccepted >= 5 })
	bad.waitJob()
	for i := 0; i < sellerRejectsToDrop+5 && !bad.closed(); i++ {
		bad.nc.Write(stratum.AppendRequest(nil, uint64(1000+i), "mining.submit", bad.mine(1).MarshalParams()))
	}
	waitFor(t, 10*time.Second, "the rolling seller dropped", bad.closed)
	if v := tm.view(t, acct, o.ID); v.Status != StatusActive {
		t.Errorf("order %s (%s) after the rolling seller was dropped", v.Status, v.Reason)
	}
	if w := workerOf(tm, regtest.TestAddress()+"/rig1"); w.Rejected != 0 || w.Accepted == 0 {
		t.Errorf("a good seller has %d rejected, %d accepted", w.Rejected, w.Accepted)
	}
}

// TestLyingDestinationPausesOrder: a destination that rejects every seller's valid
// shares is the destination's problem: the order pauses and says so.
func TestLyingDestinationPausesOrder(t *testing.T) {
	dest := startDestWith(t, 0.0003, 8, func(f *fakeDest) { f.rejectAll = true })
	tm := startMarket(t, nil)
	acct, _ := tm.buyer(t, 100_000_000)
	o, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: dest.url(), PoolUser: "liar", Price: 1_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	startSellers(t, tm.addr, sellerUsers()...)
	waitFor(t, 60*time.Second, "order paused", func() bool { return tm.view(t, acct, o.ID).Status == StatusPaused })
	v := tm.view(t, acct, o.ID)
	if v.SharesAccepted != 0 || v.Spent != 0 || v.SharesRejected < rejectsToPause {
		t.Errorf("accepted %d, spent %d, rejected %d", v.SharesAccepted, v.Spent, v.SharesRejected)
	}
	if want := "destination rejected"; len(v.Reason) < len(want) || v.Reason[:len(want)] != want {
		t.Errorf("reason %q", v.Reason)
	}
}

// TestSellersEarnPerValidShare: a seller works at a difficulty far below the
// destination's. It earns every valid share at the market's difficulty, whether or
// not a share reached the destination; the buyer pays only for what the destination
// accepted; the variance account carries the difference, and the ledger balances to
// the satoshi.
func TestSellersEarnPerValidShare(t *testing.T) {
	const sellerDiff, destDiff = 0.00003, 0.03 // one seller share in a thousand meets the destination's
	dest := startDestWith(t, destDiff, 8, func(f *fakeDest) { f.bits = 0x1a00ffff })
	tm := rawMarket(t, sellerDiff, nil)
	ctx := context.Background()
	acct, _ := tm.buyer(t, 100_000_000)
	const price = 1_000_000_000_000_000_000 // sat per PH/s per day: a share of 0.00003 earns about 1,460 sat
	o, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: dest.url(), PoolUser: "big", Price: price, Budget: 50_000_000})
	if err != nil {
		t.Fatal(err)
	}
	s := dialSeller(t, tm.addr, regtest.TestAddress()+".small", "")
	s.waitJob()
	const n = 12
	for range n {
		if serr, _ := s.submit(s.mine(0)); serr != nil {
			t.Fatal(serr)
		}
	}
	key := regtest.TestAddress() + "/small"
	waitFor(t, 10*time.Second, "every forwarded share answered", func() bool {
		tm.mu.Lock()
		defer tm.mu.Unlock()
		return tm.orders[o.ID].reserved.Sign() == 0
	})
	tm.settle(ctx)
	w := workerOf(tm, key)
	if w.Valid != n {
		t.Fatalf("worker counted %d valid shares, want %d", w.Valid, n)
	}
	earned := earnedOf(t, tm.led, key)
	var work hashgrid.Work
	for range n {
		work = work.Add(hashgrid.DiffFromFloat(sellerDiff))
	}
	if w.ValidWork != work {
		t.Errorf("worker's valid work %v, want %v", w.ValidWork.Float(), work.Float())
	}
	if want := chargeFor(price, work, 10_000-200); earned != want || want == 0 {
		t.Errorf("seller earned %d, want %d for %d valid shares", earned, want, n)
	}
	_, accepted := dest.stats("big")
	v := tm.view(t, acct, o.ID)
	if want := chargeFor(price, accepted, 10_000); v.Spent != want {
		t.Errorf("buyer charged %d, want %d for the destination's accepted work", v.Spent, want)
	}
	fees, _ := tm.led.Balance(ctx, acctFees)
	variance, _ := tm.led.Balance(ctx, acctVariance)
	if earned+fees+variance != v.Spent {
		t.Errorf("earned %d + fees %d + variance %d != charged %d", earned, fees, variance, v.Spent)
	}
	if err := tm.led.Check(ctx); err != nil {
		t.Fatal(err)
	}
	sv, err := tm.Seller(ctx, regtest.TestAddress())
	if err != nil || len(sv.Workers) != 1 || sv.Workers[0].Valid != n || sv.Workers[0].Earned != earned || sv.Earned != earned {
		t.Errorf("seller view %+v (%v)", sv, err)
	}
	// What the seller earned is payable by the pool's payout engine, at its address.
	if payable, _ := tm.led.Balance(ctx, acctPayable(regtest.TestAddress())); payable != earned || sv.Payable != earned {
		t.Errorf("payable %d (view %d), want the %d earned", payable, sv.Payable, earned)
	}
	t.Logf("earned %d, charged %d (%d destination shares), fees %d, variance %d", earned, v.Spent, v.SharesAccepted, fees, variance)
}

// TestNarrowDestinationVersionMask: the destination lets the market roll two version
// bits where sellers negotiated sixteen. Sellers are sent mining.set_version_mask, so
// a version-rolling seller's shares stay valid at the destination: accepted there,
// none invalid at the market.
func TestNarrowDestinationVersionMask(t *testing.T) {
	const narrow = 0x00006000
	dest := startDestWith(t, 0.0003, 8, func(f *fakeDest) { f.mask = narrow })
	tm := startMarket(t, nil)
	acct, _ := tm.buyer(t, 100_000_000)
	o, err := tm.PlaceOrder(context.Background(), acct, OrderRequest{PoolURL: dest.url(), PoolUser: "narrow", Price: 1_000_000_000_000_000, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	users := sellerUsers() // the first rolls versions, the second does not
	startSellers(t, tm.addr, users...)
	roller := regtest.TestAddress() + "/rig1"
	waitFor(t, 60*time.Second, "the version-rolling seller's shares accepted", func() bool { return workerOf(tm, roller).Accepted >= 5 })
	if w := workerOf(tm, roller); w.Invalid != 0 || w.Rejected != 0 {
		t.Errorf("version-rolling seller: %d invalid, %d rejected by the destination", w.Invalid, w.Rejected)
	}
	if v := tm.view(t, acct, o.ID); v.Status != StatusActive {
		t.Errorf("order %s (%s)", v.Status, v.Reason)
	}

	// A raw seller that negotiated the wide mask sees the narrow one before its job.
	nc, err := net.Dial("tcp", tm.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "%s%s%s",
		`{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2}]}`+"\n",
		`{"id":2,"method":"mining.subscribe","params":["raw"]}`+"\n",
		`{"id":3,"method":"mining.authorize","params":["`+regtest.TestAddress()+`.raw","x"]}`+"\n")
	r := bufio.NewReader(nc)
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var sawMask bool
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no job: %v", err)
		}
		m, _ := stratum.ParseMessage([]byte(line))
		if m == nil {
			continue
		}
		if m.Method == "mining.set_version_mask" {
			if string(m.Params) != `["00006000"]` {
				t.Errorf("set_version_mask %s, want [\"00006000\"]", m.Params)
			}
			sawMask = true
		}
		if m.Method == "mining.notify" {
			break
		}
	}
	if !sawMask {
		t.Error("the first job came without mining.set_version_mask")
	}
}

// TestSellerMovedBackGetsFreshWork: a seller moved to another order and back, while
// the first order's destination job stayed the same, is sent that job with a later
// ntime. Restarting from its first extranonce2, as miners do on a clean job, it then
// finds new shares rather than repeating the ones it sent before (which the market and
// the destination would refuse as duplicates against an honest seller); a share from
// the earlier sending that arrives late is stale, not invalid.
func TestSellerMovedBackGetsFreshWork(t *testing.T) {
	const d = 0.00003
	destA, destB := startDest(t, d), startDest(t, d)
	tm := rawMarket(t, d, nil)
	acct, _ := tm.buyer(t, 100_000_000)
	ctx := context.Background()
	if _, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: destA.url(), PoolUser: "a", Price: 1_000_000_000_000_000, Budget: 20_000_000}); err != nil {
		t.Fatal(err)
	}
	s := dialSeller(t, tm.addr, regtest.TestAddress()+".back", "")
	s.waitJob()
	jobOf := func() stratum.Notify {
		s.mu.Lock()
		defer s.mu.Unlock()
		return *s.job
	}
	first := jobOf()
	s.mu.Lock()
	s.en2Next = 0
	s.mu.Unlock()
	old := s.mine(0)
	if serr, _ := s.submit(old); serr != nil {
		t.Fatalf("first share: %v", serr)
	}

	b, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: destB.url(), PoolUser: "b", Price: 2_000_000_000_000_000, Budget: 20_000_000})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the seller on the dearer order", func() bool { return jobOf().JobID != first.JobID })
	if _, err := tm.CancelOrder(acct, b.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the seller back on the first order", func() bool { return jobOf().JobID == first.JobID })
	again := jobOf()
	if again.NTime <= first.NTime {
		t.Fatalf("job %s sent again with ntime %s, first sent with %s: the seller would repeat its shares", again.JobID, again.NTime, first.NTime)
	}
	if serr, _ := s.submit(old); serr == nil || serr.Code != errStale.Code {
		t.Errorf("a share mined on the earlier sending: %v, want stale", serr)
	}
	s.mu.Lock()
	s.en2Next = 0 // the miner starts the job it was sent from its first extranonce2
	s.mu.Unlock()
	if serr, _ := s.submit(s.mine(0)); serr != nil {
		t.Errorf("first share on the job sent again: %v", serr)
	}
	if w := workerOf(tm, regtest.TestAddress()+"/back"); w.Invalid != 0 {
		t.Errorf("%d shares counted invalid against the seller", w.Invalid)
	}
	waitFor(t, 10*time.Second, "both shares accepted by the first destination", func() bool {
		n, _ := destA.stats("a")
		return n >= 2
	})
}
