package pool_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/miner"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/pool"
)

// memShares makes every share durable at once, numbering them.
type memShares struct {
	mu  sync.Mutex
	seq uint64
}

func (m *memShares) Record(_ *hashgrid.Share, done func(uint64, error)) {
	m.mu.Lock()
	m.seq++
	seq := m.seq
	m.mu.Unlock()
	done(seq, nil)
}

// blockLog is a block store that remembers every status each block ever had.
type blockLog struct {
	mu      sync.Mutex
	blocks  []hashgrid.Block
	history map[[32]byte][]hashgrid.BlockStatus
}

func (s *blockLog) PutBlock(_ context.Context, b hashgrid.Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.history == nil {
		s.history = map[[32]byte][]hashgrid.BlockStatus{}
	}
	if h := s.history[b.Hash]; len(h) == 0 || h[len(h)-1] != b.Status {
		s.history[b.Hash] = append(h, b.Status)
	}
	for i := range s.blocks {
		if s.blocks[i].Hash == b.Hash {
			s.blocks[i] = b
			return nil
		}
	}
	s.blocks = append(s.blocks, b)
	return nil
}

func (s *blockLog) Blocks(context.Context, int) ([]hashgrid.Block, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]hashgrid.Block(nil), s.blocks...), nil
}

// count returns how many blocks have status st.
func (s *blockLog) count(st hashgrid.BlockStatus) int {
	bl, _ := s.Blocks(context.Background(), 0)
	n := 0
	for _, b := range bl {
		if b.Status == st {
			n++
		}
	}
	return n
}

// neverOrphanedAfterAccepted fails the test for a block that was accepted and later
// orphaned or rejected.
func (s *blockLog) neverOrphanedAfterAccepted(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, hist := range s.history {
		seen := false
		for _, st := range hist {
			if st == hashgrid.BlockAccepted {
				seen = true
			}
			if seen && (st == hashgrid.BlockOrphaned || st == hashgrid.BlockRejected) {
				t.Errorf("block %s: statuses %v: an accepted block was orphaned", chainhash.Hash(h), hist)
			}
		}
	}
}

func waitUntil(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func clientFor(t *testing.T, url string) *node.Client {
	t.Helper()
	c, err := node.NewClient(url, node.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runPool serves a regtest pool on the node set, fed by the set's watcher, with a
// block tracker checking every 100 ms, until the test ends.
func runPool(t *testing.T, set *node.Set, store *blockLog, now ...func() time.Time) (*pool.Pool, string) {
	t.Helper()
	params := &chaincfg.RegressionNetParams
	outs, err := pool.SingleAddress(regtest.TestAddress(), params)
	if err != nil {
		t.Fatal(err)
	}
	cfg := pool.Config{Network: params, Outputs: outs}
	if len(now) > 0 {
		cfg.Now = now[0]
	}
	p, err := pool.New(cfg, set, &memShares{}, store)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.Serve(l) })
	wg.Go(func() {
		_ = set.Watch(ctx, func(tm *node.Template, newTip bool) { _ = p.UpdateTemplate(tm, newTip) })
	})
	tr := &pool.Tracker{Chain: set, Store: store, Interval: 100 * time.Millisecond}
	wg.Go(func() { _ = tr.Run(ctx) })
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer scancel()
		if err := p.Shutdown(sctx); err != nil {
			t.Errorf("pool shutdown: %v", err)
		}
		cancel()
		wg.Wait()
	})
	waitUntil(t, 20*time.Second, "the pool's first template", p.HasWork)
	return p, l.Addr().String()
}

// startMiner mines on the pool until stop is called, which waits for it to end.
func startMiner(t *testing.T, addr string) (stop func()) {
	t.Helper()
	m, err := miner.New(miner.Config{URL: "stratum+tcp://" + addr, User: regtest.TestAddress() + ".w", Password: "x", MaxRetryWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := m.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("miner: %v", err)
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// The only node is unreachable for 15 s, then warms up (-28 "Loading banlist") and
// comes back, while a miner keeps mining (the outage reported on Bitcoin Core). Blocks
// found meanwhile are kept and retried; the first one sent is accepted on the node's
// chain and the others, at the same height, are superseded by it; none is called
// rejected, since no node ever saw them.
func TestFoundBlocksRetriedUntilNodeBack(t *testing.T) {
	a := regtest.StartT(t)
	pa := regtest.StartProxy(t, a)
	set, err := node.NewSet([]*node.Client{clientFor(t, pa.URL())}, node.SetOptions{PollInterval: 100 * time.Millisecond, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, ProbeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	store := &blockLog{}
	_, addr := runPool(t, set, store)

	pa.Set(regtest.Down)
	downSince := time.Now()
	stop := startMiner(t, addr)
	waitUntil(t, 60*time.Second, "a found block waiting for a node", func() bool {
		bl, _ := store.Blocks(context.Background(), 0)
		for _, b := range bl {
			if b.Status == hashgrid.BlockSubmitted && strings.Contains(b.Reason, "no node has taken") {
				return true
			}
		}
		return false
	})
	time.Sleep(time.Until(downSince.Add(15 * time.Second))) // the outage itself
	stop()
	pa.Set(regtest.Warmup)
	time.Sleep(time.Second)
	if n := store.count(hashgrid.BlockRejected); n != 0 {
		t.Fatalf("%d blocks rejected while no node could see them", n)
	}
	pa.Set(regtest.Pass)
	back := time.Now()
	waitUntil(t, 30*time.Second, "a retried block accepted", func() bool { return store.count(hashgrid.BlockAccepted) == 1 })
	t.Logf("retried block accepted %s after the node answered again", time.Since(back).Round(time.Millisecond))
	waitUntil(t, 30*time.Second, "every found block settled", func() bool { return store.count(hashgrid.BlockSubmitted) == 0 })

	bl, _ := store.Blocks(context.Background(), 0)
	for _, b := range bl {
		h := chainhash.Hash(b.Hash)
		switch b.Status {
		case hashgrid.BlockAccepted:
			at, err := a.Client().BlockHash(context.Background(), b.Height)
			if err != nil || at != h {
				t.Errorf("accepted block %s at %d: node holds %s there (%v)", h, b.Height, at, err)
			}
		case hashgrid.BlockOrphaned:
			// Found at the same height while the node was away: the first one sent
			// took the height.
			if !strings.HasPrefix(b.Reason, "superseded") {
				t.Errorf("block %s orphaned with reason %q, want superseded", h, b.Reason)
			}
		default:
			t.Errorf("block %s: status %v (%s)", h, b.Status, b.Reason)
		}
	}
	if n := pa.Calls("submitblock"); n <= int64(len(bl)) {
		t.Errorf("%d submitblock calls for %d blocks: not retried", n, len(bl))
	}
	if n := pa.Calls("submitblock"); n > 0 {
		t.Logf("%d found blocks, %d submitblock calls reached the proxy", len(bl), n)
	}
	store.neverOrphanedAfterAccepted(t)
}

// Two nodes on one chain; the first answers -10, then dies, then comes back. Mining
// goes on on the healthy node throughout, and no accepted block is ever orphaned.
func TestMiningGoesOnThroughFailover(t *testing.T) {
	a := regtest.StartT(t)
	b := regtest.StartT(t, func(o *regtest.Options) {
		o.NoInitialBlock = true
		o.ExtraArgs = []string{"--connect=" + a.P2PAddr()}
	})
	ctx := context.Background()
	bestA, _ := a.Client().BestBlockHash(ctx)
	waitUntil(t, 30*time.Second, "the second node to sync", func() bool {
		best, err := b.Client().BestBlockHash(ctx)
		return err == nil && best == bestA
	})
	pa := regtest.StartProxy(t, a)
	set, err := node.NewSet([]*node.Client{clientFor(t, pa.URL()), b.Client()}, node.SetOptions{PollInterval: 100 * time.Millisecond, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, ProbeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	store := &blockLog{}
	_, addr := runPool(t, set, store)
	startMiner(t, addr)

	for _, phase := range []struct {
		name string
		mode regtest.Mode
	}{
		{"both healthy", regtest.Pass},
		{"first downloading blocks", regtest.InitialDownload},
		{"first dead", regtest.Down},
		{"first back", regtest.Pass},
	} {
		pa.Set(phase.mode)
		before := store.count(hashgrid.BlockAccepted) + store.count(hashgrid.BlockConfirmed)
		// Two blocks take seconds on a quiet machine; a CPU miner on a machine loaded
		// to 15 took 22–28 s a phase, and once more than a minute.
		waitUntil(t, 2*time.Minute, "two blocks accepted with "+phase.name, func() bool {
			return store.count(hashgrid.BlockAccepted)+store.count(hashgrid.BlockConfirmed) >= before+2
		})
		h := set.Health()
		t.Logf("%s: %d blocks accepted so far; node health %+v", phase.name, before+2, h)
		if (phase.mode.Code != 0 || phase.mode.Down) && h[0].Up {
			t.Errorf("%s: first node reported up", phase.name)
		}
	}
	store.neverOrphanedAfterAccepted(t)
	if n := store.count(hashgrid.BlockRejected); n != 0 {
		t.Errorf("%d blocks rejected", n)
	}
}

// A block accepted on the first node stays accepted when the set fails over to a node
// that never saw it (not connected to the first), until that node's own chain is
// OrphanDepth blocks past the block's height; and it is accepted again when the first
// node, ahead again, answers.
func TestTrackerAfterFailoverToLaggingNode(t *testing.T) {
	a, b := regtest.StartT(t), regtest.StartT(t)
	ctx := context.Background()
	pa := regtest.StartProxy(t, a)
	set, err := node.NewSet([]*node.Client{clientFor(t, pa.URL()), b.Client()}, node.SetOptions{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	found, err := a.Client().Generate(ctx, 1) // the pool's block, at height 2
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client().Generate(ctx, 2); err != nil {
		t.Fatal(err)
	}
	store := &blockLog{}
	store.PutBlock(ctx, hashgrid.Block{Hash: found[0], Height: 2, Status: hashgrid.BlockAccepted, Confirmations: 1})
	tr := &pool.Tracker{Chain: set, Store: store}
	check := func(want hashgrid.BlockStatus, wantConf int64, when string) {
		t.Helper()
		if err := tr.Check(ctx); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		bl, _ := store.Blocks(ctx, 0)
		if bl[0].Status != want || (wantConf >= 0 && bl[0].Confirmations != wantConf) {
			t.Fatalf("%s: block %v with %d confirmations, want %v with %d", when, bl[0].Status, bl[0].Confirmations, want, wantConf)
		}
	}
	check(hashgrid.BlockAccepted, 3, "on the first node")

	pa.Set(regtest.Down)
	check(hashgrid.BlockAccepted, 3, "first node dead, second lags at height 1")
	pa.Set(regtest.InitialDownload)
	check(hashgrid.BlockAccepted, 3, "first node downloading, second lags at height 1")
	if _, err := b.Client().Generate(ctx, pool.DefaultOrphanDepth-1); err != nil {
		t.Fatal(err)
	}
	check(hashgrid.BlockAccepted, 3, "second node's own chain short of the depth")

	if _, err := b.Client().Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	check(hashgrid.BlockOrphaned, -1, "second node's chain the depth past the block")

	pa.Set(regtest.Pass)
	if _, err := a.Client().Generate(ctx, 10); err != nil {
		t.Fatal(err)
	}
	check(hashgrid.BlockAccepted, 13, "first node back and ahead")
}

// A block still waiting for a node does not hold the pool's shutdown: it is recorded as
// never submitted, with the reason.
func TestShutdownWhileBlockWaits(t *testing.T) {
	a := regtest.StartT(t)
	pa := regtest.StartProxy(t, a)
	set, err := node.NewSet([]*node.Client{clientFor(t, pa.URL())}, node.SetOptions{PollInterval: 100 * time.Millisecond, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, ProbeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	store := &blockLog{}
	p, addr := runPool(t, set, store)
	pa.Set(regtest.Down)
	stop := startMiner(t, addr)
	waitUntil(t, 60*time.Second, "a found block waiting for a node", func() bool { return store.count(hashgrid.BlockSubmitted) > 0 })
	stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a block waiting: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	bl, _ := store.Blocks(context.Background(), 0)
	for _, b := range bl {
		if b.Status != hashgrid.BlockSubmitted || !strings.Contains(b.Reason, "pool stopped") {
			t.Errorf("block %s: %v %q, want submitted with the pool stopped", chainhash.Hash(b.Hash), b.Status, b.Reason)
		}
	}
}

// A block no node takes for an hour is given up as stale: an orphan with the reason,
// never a rejection.
func TestWaitingBlockGoesStale(t *testing.T) {
	a := regtest.StartT(t)
	pa := regtest.StartProxy(t, a)
	set, err := node.NewSet([]*node.Client{clientFor(t, pa.URL())}, node.SetOptions{PollInterval: 100 * time.Millisecond, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, ProbeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var skew time.Duration
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(skew) }
	store := &blockLog{}
	_, addr := runPool(t, set, store, now)
	pa.Set(regtest.Down)
	stop := startMiner(t, addr)
	waitUntil(t, 60*time.Second, "a found block waiting for a node", func() bool { return store.count(hashgrid.BlockSubmitted) > 0 })
	stop()
	mu.Lock()
	skew = time.Hour + time.Minute // the pool's clock: an hour of retries has passed
	mu.Unlock()
	waitUntil(t, 30*time.Second, "the waiting block given up", func() bool { return store.count(hashgrid.BlockSubmitted) == 0 })
	bl, _ := store.Blocks(context.Background(), 0)
	for _, b := range bl {
		if b.Status != hashgrid.BlockOrphaned || !strings.HasPrefix(b.Reason, "stale") {
			t.Errorf("block %s: %v %q, want orphaned as stale", chainhash.Hash(b.Hash), b.Status, b.Reason)
		}
	}
}
