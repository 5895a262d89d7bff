package market

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/node/regtest"
)

// kill stops m as a crash would: sellers and upstreams are cut and the loops end,
// but nothing is settled or saved, and the store is left open.
func (m *Market) kill() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.srv.Shutdown(ctx)
	m.cancel()
	m.mu.Lock()
	for _, o := range m.orders {
		if o.up != nil {
			o.up.close()
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
	m.mu.Lock()
	m.closed = true // a crashed process writes nothing more
	m.mu.Unlock()
}

// recordsJSON is each order's record as the market holds it, as JSON.
func (m *Market) recordsJSON(t testing.TB) map[string]string {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]string{}
	for id, o := range m.orders {
		o.snapshotLocked()
		b, err := json.Marshal(o.rec)
		if err != nil {
			t.Fatal(err)
		}
		out[id] = string(b)
	}
	return out
}

func storedJSON(t testing.TB, s StateStore) (map[string]string, State) {
	t.Helper()
	st, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range st.Orders {
		b, _ := json.Marshal(r)
		out[r.ID] = string(b)
	}
	return out, st
}

// RestartTest runs a market on led and the state store open gives, with sellers
// mining through it into a destination pool until settlements are posted; then kills
// it without Shutdown. The store then holds every order exactly as the market last
// held it (every change was saved, none rewritten whole), and a market opened again
// on it has the buyer's account, key and orders; it reconciles a refill and a
// settlement posted to the ledger after the last save. Killed again while shares
// flow, it comes back with every settlement posted before the crash, and carries on
// to a refund that leaves the escrow empty and the books balanced. package market_test runs it on
// PostgreSQL.
func RestartTest(t *testing.T, led ledger.Book, open func() StateStore) {
	ctx := context.Background()
	dest := startDest(t, 0.0003)
	cfg := Config{
		Network: &chaincfg.RegressionNetParams, Ledger: led,
		SellerShareInterval: 500 * time.Millisecond, SellerStartDiff: 0.0002, SellerMinDiff: 1e-6, JobTimeout: 5 * time.Second, UpstreamTimeout: 3 * time.Second,
		SettleInterval: 200 * time.Millisecond, AllowPrivateDestinations: true,
	}
	run := func() (*Market, string, func()) {
		t.Helper()
		c := cfg
		c.Store = open()
		m, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		m.Start()
		var wg sync.WaitGroup
		wg.Go(func() { m.Serve(l) })
		return m, l.Addr().String(), func() { wg.Wait(); c.Store.Close() }
	}
	m, addr, done := run()
	const price = 1_000_000_000_000_000
	const deposit = 50_000_000
	acct, key, err := m.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Deposit(ctx, acct, deposit, "dep-"+acct); err != nil {
		t.Fatal(err)
	}
	o, err := m.PlaceOrder(ctx, acct, OrderRequest{PoolURL: dest.url(), PoolUser: "buyer.one", Price: price, Budget: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	idle, err := m.PlaceOrder(ctx, acct, OrderRequest{PoolURL: "stratum+tcp://127.0.0.1:1", PoolUser: "u", Price: 5, Budget: 1000})
	if err != nil {
		t.Fatal(err)
	}
	limit := 0.5
	if _, err := m.EditOrder(acct, idle.ID, OrderEdit{Limit: &limit}); err != nil {
		t.Fatal(err)
	}

	// mine runs CPU miners as sellers against addr until the returned func is called.
	mine := func(addr string) func() {
		t.Helper()
		mctx, cancel := context.WithCancel(ctx)
		var mwg sync.WaitGroup
		for i, u := range sellerUsers() {
			mn, err := miner.New(miner.Config{URL: "stratum+tcp://" + addr, User: u, VersionRoll: i%2 == 0, MaxRetryWait: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			mwg.Go(func() { mn.Run(mctx) })
		}
		stop := func() { cancel(); mwg.Wait() }
		t.Cleanup(stop)
		return stop
	}
	stopSellers := mine(addr)
	waitFor(t, 120*time.Second, "10 accepted shares and two settlements", func() bool {
		v, _ := m.Order(acct, o.ID)
		_, err := led.Entry(ctx, settleKey(o.ID, 1))
		return v.SharesAccepted >= 10 && err == nil
	})
	stopSellers()
	// Let the shares in flight be answered and settled, and the settle loop save.
	waitFor(t, 20*time.Second, "the market to settle and save everything", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, o := range m.orders {
			if o.changed || o.reserved.Sign() != 0 || o.spentLocked() != o.rec.Charged {
				return false
			}
		}
		return !m.dirty
	})
	m.kill()
	done()
	want := m.recordsJSON(t)

	// The store holds each order as the market last held it: a change that was not
	// marked for saving would differ here.
	s := open()
	got, st := storedJSON(t, s)
	s.Close()
	if len(got) != 2 {
		t.Fatalf("store holds %d orders, want 2", len(got))
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("order %s in the store:\n%s\nin the killed market:\n%s", id, got[id], w)
		}
	}
	if st.NextID < 3 {
		t.Errorf("NextID %d after an account and two orders", st.NextID)
	}

	// Posted, never saved: a refill and a settlement, as a crash between a post and
	// the save after it leaves them.
	m.mu.Lock()
	rec := m.orders[o.ID].rec.clone()
	m.mu.Unlock()
	if _, err := led.Post(ctx, ledger.Tx{Key: "market:fund:" + o.ID + ":" + itoa(rec.FundSeq), Postings: []ledger.Posting{
		{Account: acctBuyer(acct), Amount: -300}, {Account: acctEscrow(o.ID), Amount: 300}}}); err != nil {
		t.Fatal(err)
	}
	k := regtest.TestAddress() + "/extra"
	settle := ledger.Tx{Key: settleKey(o.ID, rec.SettleSeq), Postings: []ledger.Posting{
		{Account: acctEscrow(o.ID), Amount: -500}, {Account: acctFees, Amount: 10}, {Account: acctSeller(k), Amount: 490}}}
	pay, _ := payableTx(settle.Key, "", settle.Postings)
	if _, err := led.PostAll(ctx, []ledger.Tx{settle, pay}); err != nil {
		t.Fatal(err)
	}

	m2, addr2, done2 := run()
	if got, err := m2.Authenticate(key); err != nil || got != acct {
		t.Fatalf("key after restart: %q, %v", got, err)
	}
	id3, _, err := m2.CreateAccount()
	if err != nil || id3 == acct {
		t.Fatalf("a new account after restart: %q, %v (the first was %s)", id3, err, acct)
	}
	m2.mu.Lock()
	r2 := m2.orders[o.ID].rec.clone()
	idle2 := m2.orders[idle.ID].rec.clone()
	m2.mu.Unlock()
	if r2.Funded != rec.Funded+300 || r2.Charged != rec.Charged+500 || r2.SettleSeq != rec.SettleSeq+1 || r2.SellerPaid[k] != 490 {
		t.Errorf("after restart: funded %d charged %d settle seq %d extra seller %d; want %d, %d, %d, 490",
			r2.Funded, r2.Charged, r2.SettleSeq, r2.SellerPaid[k], rec.Funded+300, rec.Charged+500, rec.SettleSeq+1)
	}
	if r2.Accepted != rec.Accepted || r2.Work != rec.Work || r2.Price != price {
		t.Errorf("after restart: %d shares, work %v, price %d; want %d, %v, %d", r2.Accepted, r2.Work.Float(), r2.Price, rec.Accepted, rec.Work.Float(), int64(price))
	}
	if idle2.Limit != limit {
		t.Errorf("the idle order's limit %g, want %g", idle2.Limit, limit)
	}
	for w, paid := range r2.SellerPaid {
		if got := earnedOf(t, led, w); got != paid {
			t.Errorf("seller %s: the order says %d paid, the ledger %d", w, paid, got)
		}
	}
	esc, _ := led.Balance(ctx, acctEscrow(o.ID))
	if esc != r2.Funded-r2.Charged-r2.Refunded {
		t.Errorf("escrow %d, order says %d", esc, r2.Funded-r2.Charged-r2.Refunded)
	}

	// A crash while shares flow: the market opened again finds every settlement
	// posted before it, whatever its last save said.
	stopSellers = mine(addr2)
	waitFor(t, 120*time.Second, "a settlement by the restarted market", func() bool {
		_, err := led.Entry(ctx, settleKey(o.ID, r2.SettleSeq+1))
		return err == nil
	})
	m2.kill()
	stopSellers()
	done2()
	m2, _, done2 = run()
	m2.mu.Lock()
	r3 := m2.orders[o.ID].rec.clone()
	m2.mu.Unlock()
	if r3.SettleSeq < r2.SettleSeq+2 || r3.Charged <= r2.Charged {
		t.Errorf("after a crash mid-flow: settle seq %d, charged %d; want more than %d and %d", r3.SettleSeq, r3.Charged, r2.SettleSeq+1, r2.Charged)
	}
	if esc, _ := led.Balance(ctx, acctEscrow(o.ID)); esc != r3.Funded-r3.Charged-r3.Refunded {
		t.Errorf("after a crash mid-flow: escrow %d, order says %d", esc, r3.Funded-r3.Charged-r3.Refunded)
	}
	earners, _ := led.Balances(ctx, "market:seller:")
	for a := range earners {
		w := strings.TrimPrefix(a, "market:seller:")
		if got := earnedOf(t, led, w); got != r3.SellerPaid[w] {
			t.Errorf("after a crash mid-flow: seller %s earned %d in the ledger, the order says %d", w, got, r3.SellerPaid[w])
		}
	}

	// The restarted market settles on from there: cancelling refunds the rest, once.
	for _, id := range []string{o.ID, idle.ID} {
		if _, err := m2.CancelOrder(acct, id); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "refunds after cancel", func() bool {
		m2.mu.Lock()
		defer m2.mu.Unlock()
		return m2.orders[o.ID].rec.Closed && m2.orders[idle.ID].rec.Closed
	})
	v, _ := m2.Order(acct, o.ID)
	bal, _ := m2.Balance(ctx, acct)
	idleV, _ := m2.Order(acct, idle.ID)
	if esc, _ := led.Balance(ctx, acctEscrow(o.ID)); esc != 0 {
		t.Errorf("escrow %d after the refund", esc)
	}
	if want := deposit - v.Budget + v.Refunded - idleV.Budget + idleV.Refunded; bal != want {
		t.Errorf("balance %d, want %d", bal, want)
	}
	m2.mu.Lock()
	charged := m2.orders[o.ID].rec.Charged
	m2.mu.Unlock()
	if v.Budget-v.Refunded != charged {
		t.Errorf("budget %d − refunded %d ≠ charged %d", v.Budget, v.Refunded, charged)
	}
	if err := led.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	done2()
}

func itoa(n uint64) string { b, _ := json.Marshal(n); return string(b) }

// TestRestartSQLite runs RestartTest on SQLiteState in the ledger's own file.
func TestRestartSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	led, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	RestartTest(t, led, func() StateStore {
		s, err := OpenSQLiteState(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// recordingStore passes saves on to a StateStore and keeps them.
type recordingStore struct {
	StateStore
	mu      sync.Mutex
	updates []Update
}

func (r *recordingStore) Save(ctx context.Context, u Update) error {
	r.mu.Lock()
	r.updates = append(r.updates, u)
	r.mu.Unlock()
	return r.StateStore.Save(ctx, u)
}

func (r *recordingStore) take() []Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.updates
	r.updates = nil
	return u
}

// TestSaveWritesChangedOrdersOnly: with many orders, a save carries the orders that
// changed since the last one, not all of them.
func TestSaveWritesChangedOrdersOnly(t *testing.T) {
	dir := t.TempDir()
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	ss, err := OpenSQLiteState(context.Background(), filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	rs := &recordingStore{StateStore: ss}
	m, err := New(Config{Network: &chaincfg.RegressionNetParams, Ledger: led, Store: rs, AllowPrivateDestinations: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	ctx := context.Background()
	acct, _, _ := m.CreateAccount()
	m.Deposit(ctx, acct, 1_000_000, "d")
	var ids []string
	for range 10 {
		v, err := m.PlaceOrder(ctx, acct, OrderRequest{PoolURL: "stratum+tcp://127.0.0.1:1", PoolUser: "u", Price: 5, Budget: 1000})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	m.save()
	rs.take()
	p := int64(7)
	if _, err := m.EditOrder(acct, ids[3], OrderEdit{Price: &p}); err != nil {
		t.Fatal(err)
	}
	// What a share does to an order between saves: a worker's entry moves.
	m.mu.Lock()
	o := m.orders[ids[6]]
	o.rec.Accepted++
	o.sellerNum["bcrt1qx/r1"] = new(big.Int).Set(bigK)
	o.workerChangedLocked("bcrt1qx/r1")
	m.changedLocked(o)
	m.mu.Unlock()
	if err := m.save(); err != nil {
		t.Fatal(err)
	}
	var saved []string
	workers := map[string][]string{}
	for _, u := range rs.take() {
		for _, r := range u.Orders {
			saved = append(saved, r.ID)
			ws, named := u.ChangedWorkers(r)
			if !named {
				t.Errorf("a save named no workers of %s: all would be rewritten", r.ID)
			}
			workers[r.ID] = ws
		}
	}
	if len(workers[ids[3]]) != 0 || strings.Join(workers[ids[6]], ",") != "bcrt1qx/r1" {
		t.Errorf("saves named workers %v, want none of %s and bcrt1qx/r1 of %s", workers, ids[3], ids[6])
	}
	if strings.Join(saved, ",") != ids[3]+","+ids[6] {
		t.Errorf("saves wrote orders %v, want %s (the edit) and %s (the share)", saved, ids[3], ids[6])
	}
	if err := m.save(); err != nil {
		t.Fatal(err)
	}
	if us := rs.take(); len(us) != 0 {
		t.Errorf("a save with nothing changed wrote %+v", us)
	}
}

// TestImportJSONState: a market that kept its state in market.json, opened on a
// database, imports the file once and says so; opened again, it reads the database
// only, so what changed since the import stays changed.
func TestImportJSONState(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	statePath := filepath.Join(dir, "market.json")
	cfg := Config{Network: &chaincfg.RegressionNetParams, Ledger: led, StatePath: statePath, AllowPrivateDestinations: true}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	acct, key, _ := m.CreateAccount()
	m.Deposit(ctx, acct, 5000, "d1")
	o, err := m.PlaceOrder(ctx, acct, OrderRequest{PoolURL: "stratum+tcp://127.0.0.1:1", PoolUser: "u", Price: 5, Budget: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	fileBefore, _ := readFile(statePath)

	open := func(logs *bytes.Buffer) *Market {
		t.Helper()
		s, err := OpenSQLiteState(ctx, filepath.Join(dir, "ledger.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		c := cfg
		c.Store, c.Logger = s, slog.New(slog.NewTextHandler(logs, nil))
		m, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	var logs bytes.Buffer
	m = open(&logs)
	if !strings.Contains(logs.String(), "imported") || !strings.Contains(logs.String(), "orders=1") {
		t.Errorf("the import is not in the log: %s", logs.String())
	}
	if got, err := m.Authenticate(key); err != nil || got != acct {
		t.Errorf("imported key: %q, %v", got, err)
	}
	if v, err := m.Order(acct, o.ID); err != nil || v.Budget != 1000 {
		t.Errorf("imported order: %+v, %v", v, err)
	}
	if _, err := m.CancelOrder(acct, o.ID); err != nil {
		t.Fatal(err)
	}
	acct2, key2, _ := m.CreateAccount()
	if acct2 == acct {
		t.Fatalf("new account %s reuses an imported id", acct2)
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if after, _ := readFile(statePath); after != fileBefore {
		t.Error("the market on the database wrote market.json")
	}

	logs.Reset()
	m = open(&logs)
	defer m.Shutdown(ctx)
	if strings.Contains(logs.String(), "imported") {
		t.Errorf("imported again: %s", logs.String())
	}
	if v, err := m.Order(acct, o.ID); err != nil || v.Status != StatusCancelled {
		t.Errorf("order after the second start: %+v, %v; want it cancelled, as the database says", v, err)
	}
	for id, k := range map[string]string{acct: key, acct2: key2} {
		if got, err := m.Authenticate(k); err != nil || got != id {
			t.Errorf("key of %s: %q, %v", id, got, err)
		}
	}
}

// TestOldPriceUnitConverted: an order saved before prices per PH/s (no price unit,
// a price per TH/s) is converted once when the market opens: price and numerators a
// thousand times larger, amounts owed and earned unchanged; saved back, it is not
// converted again. Its worker's row, which a save writes only when marked, carries
// the new unit too.
func TestOldPriceUnitConverted(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	led, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	s, err := OpenSQLiteState(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const worker = "bcrt1qexample/rig1"
	old := &OrderRecord{ID: "o7", Kind: KindSpot, Account: "a1", Dest: Destination{URL: "stratum+tcp://127.0.0.1:1", User: "u"},
		Price: 5_000, Status: StatusCancelled, Funded: 1000, ChargeNum: "864000000000000000", // 10 sat at 1/K per TH/s-day
		SellerNum: map[string]string{worker: "432000000000000000"}, SellerPaid: map[string]int64{}}
	if err := s.Save(ctx, Update{Orders: []*OrderRecord{old}, Accounts: []*Account{{ID: "a1"}}, NextID: 7}); err != nil {
		t.Fatal(err)
	}
	open := func() *Market {
		t.Helper()
		m, err := New(Config{Network: &chaincfg.RegressionNetParams, Ledger: led, Store: s, AllowPrivateDestinations: true})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	check := func(m *Market, when string) {
		t.Helper()
		v, err := m.Order("a1", "o7")
		if err != nil {
			t.Fatal(err)
		}
		m.mu.Lock()
		o := m.orders["o7"]
		spent, seller := o.spentLocked(), new(big.Int).Quo(o.sellerNum[worker], bigK).Int64()
		m.mu.Unlock()
		if v.Price != 5_000_000 || spent != 10 || seller != 5 {
			t.Errorf("%s: price %d (want 5000000 sat per PH/s per day), spent %d (want 10), worker's %d (want 5)", when, v.Price, spent, seller)
		}
	}
	m := open()
	check(m, "converted")
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Orders[0]; r.PriceUnit != PriceUnit || r.SellerNum[worker] != "432000000000000000000" {
		t.Errorf("saved back: unit %q, worker's numerator %s", r.PriceUnit, r.SellerNum[worker])
	}
	m = open()
	defer m.Shutdown(ctx)
	check(m, "reopened")
}

// failingSaves is a state store whose ordinary saves fail once fail is set (a full
// disk, say): what still reaches it then comes with settlements.
type failingSaves struct {
	SettleStore
	fail atomic.Bool
}

func (f *failingSaves) Save(ctx context.Context, u Update) error {
	if f.fail.Load() {
		return errors.New("no space left on device")
	}
	return f.SettleStore.Save(ctx, u)
}

// TestSettlementSavesItsOrder runs SettleTest with the state in the ledger's own
// SQLite file.
func TestSettlementSavesItsOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	led, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	SettleTest(t, led, func() SettleStore {
		s, err := OpenSQLiteState(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// SettleTest: with the state in the ledger's own database, each settlement's ledger
// entries and its order's record are written in one transaction. With every ordinary
// save failing, the stored record still agrees with the ledger after the market
// dies: the escrow's charges, the settlements' count and what the workers were
// credited. package market_test runs it on PostgreSQL.
func SettleTest(t *testing.T, led ledger.Book, open func() SettleStore) {
	ctx := context.Background()
	dest := startDest(t, 0.0003)
	s := open()
	t.Cleanup(func() { s.Close() })
	st := &failingSaves{SettleStore: s}
	tm := startMarket(t, func(c *Config) { c.Ledger, c.Store = led, st })
	if tm.settler == nil {
		t.Fatal("a state store in the ledger's database is not used for settlements")
	}
	acct, _ := tm.buyer(t, 100_000_000)
	o, err := tm.PlaceOrder(ctx, acct, OrderRequest{PoolURL: dest.url(), PoolUser: "u", Price: 1_000_000_000_000_000, Budget: 50_000_000})
	if err != nil {
		t.Fatal(err)
	}
	st.fail.Store(true)
	startSellers(t, tm.addr, sellerUsers()...)
	waitFor(t, 60*time.Second, "three settlements, the escrow charged", func() bool {
		// A settlement may credit sellers before the destination accepted anything
		// (the variance account carries it): wait for a charge too.
		_, err := led.Entry(ctx, settleKey(o.ID, 2))
		esc, _ := led.Balance(ctx, acctEscrow(o.ID))
		return err == nil && esc < 50_000_000
	})
	tm.kill()

	got, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rec *OrderRecord
	for _, r := range got.Orders {
		if r.ID == o.ID {
			rec = r
		}
	}
	if rec == nil {
		t.Fatal("order not stored")
	}
	esc, _ := led.Balance(ctx, acctEscrow(o.ID))
	if rec.Charged == 0 || rec.Funded-rec.Charged-rec.Refunded != esc {
		t.Errorf("stored record: funded %d, charged %d, refunded %d; the escrow holds %d", rec.Funded, rec.Charged, rec.Refunded, esc)
	}
	if _, err := led.Entry(ctx, settleKey(o.ID, rec.SettleSeq)); err == nil {
		t.Errorf("stored record says %d settlements; the ledger has one more", rec.SettleSeq)
	}
	if _, err := led.Entry(ctx, settleKey(o.ID, rec.SettleSeq-1)); err != nil {
		t.Errorf("stored record says %d settlements; the ledger has not the last: %v", rec.SettleSeq, err)
	}
	var paid int64
	for _, v := range rec.SellerPaid {
		paid += v
	}
	if paid == 0 || paid != rec.Charged-rec.FeePosted-rec.VariancePosted {
		t.Errorf("stored record: workers credited %d, charged %d, fee %d, variance %d", paid, rec.Charged, rec.FeePosted, rec.VariancePosted)
	}
}
