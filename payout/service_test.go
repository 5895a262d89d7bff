package payout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/sqlite"
)

// chainBlocks is the test's chain: blocks the test "mined" from the service's
// coinbase outputs, by hash.
type chainBlocks struct {
	mu sync.Mutex
	m  map[chainhash.Hash]*wire.MsgBlock
}

func (c *chainBlocks) Block(ctx context.Context, h chainhash.Hash) (*wire.MsgBlock, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[h]
	if !ok {
		return nil, fmt.Errorf("no block %s", h)
	}
	return b, nil
}

// mine builds a block whose coinbase has outs and records it.
func (c *chainBlocks) mine(nonce uint32, outs []pool.Output) chainhash.Hash {
	cb := wire.NewMsgTx(1)
	cb.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: 0xffffffff}, SignatureScript: []byte{1, 2}})
	for _, o := range outs {
		cb.AddTxOut(&wire.TxOut{Value: o.Value, PkScript: o.Script})
	}
	blk := &wire.MsgBlock{Header: wire.BlockHeader{Nonce: nonce, Bits: regtestBits}, Transactions: []*wire.MsgTx{cb}}
	h := blk.BlockHash()
	c.mu.Lock()
	c.m[h] = blk
	c.mu.Unlock()
	return h
}

type harness struct {
	svc   *Service
	store *sqlite.DB
	led   *ledger.Ledger
	chain *chainBlocks
	seq   uint64
	dir   string
}

var testMiners = []string{regtest.TestAddress(), regtest.TestAddressP2PKH()}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	dir := t.TempDir()
	store, err := sqlite.Open(filepath.Join(dir, "hashgrid.db"))
	if err != nil {
		t.Fatal(err)
	}
	led, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	chain := &chainBlocks{m: map[chainhash.Hash]*wire.MsgBlock{}}
	if cfg.Network == nil {
		cfg.Network = &chaincfg.RegressionNetParams
	}
	if cfg.PoolAddress == "" {
		cfg.PoolAddress = regtest.TestAddress()
	}
	svc, err := Open(cfg, filepath.Join(dir, "payout.db"), led, store, chain)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(); led.Close(); store.Close() })
	return &harness{svc: svc, store: store, led: led, chain: chain, dir: dir}
}

// share adds an accepted share to the store.
func (h *harness) share(t *testing.T, addr string, d hashgrid.Diff, height int64) hashgrid.Share {
	t.Helper()
	sh := hashgrid.Share{Time: time.Unix(1_700_000_000, 0), Address: addr, Diff: d, Actual: d, Height: height, Result: hashgrid.ShareAccepted}
	h.seq += 1 + uint64(h.seq%3) // rejected shares leave gaps in the sequence
	sh.Seq = h.seq
	sh.Hash[0], sh.Hash[1] = byte(h.seq), byte(h.seq>>8)
	if err := h.store.AddShares(context.Background(), []hashgrid.Share{sh}); err != nil {
		t.Fatal(err)
	}
	return sh
}

// putBlock records a block as the pool's tracker would.
func (h *harness) putBlock(t *testing.T, b hashgrid.Block) {
	t.Helper()
	if b.Time.IsZero() {
		b.Time = time.Unix(1_700_000_000+b.Height, 0)
	}
	if err := h.store.PutBlock(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

func tmpl(height, value int64) *node.Template {
	return &node.Template{Height: height, CoinbaseValue: value, Bits: regtestBits}
}

func balance(t *testing.T, l *ledger.Ledger, acct string) int64 {
	t.Helper()
	b, err := l.Balance(context.Background(), acct)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPPLNSBlockLifecycle mines blocks from the service's coinbase outputs and follows
// them: credit on acceptance (direct outputs for the big miner, a balance for the small
// one), maturity, an orphan reversing its credits, and verify agreeing with every
// credit from the published window.
func TestPPLNSBlockLifecycle(t *testing.T) {
	ctx := context.Background()
	const reward = 50_0000_0000
	h := newHarness(t, Config{Scheme: PPLNS, Window: hashgrid.Diff(1) << 63,
		Split: SplitParams{FeeBps: 100, DirectMin: 30_0000_0000, MaxDirect: 10}})
	// N = 2^31 difficulty at regtest's 4.66e-10 is about 2^32 Diff units: a window of
	// 128 shares of 2^25.
	d := hashgrid.Diff(1 << 25)
	for i := 0; i < 300; i++ {
		h.share(t, testMiners[0], d, 1) // 3 of every 4 shares
		if i%3 == 2 {
			h.share(t, testMiners[1], d, 1)
		}
	}
	h.svc.Outputs(tmpl(1, reward), reward, "")
	size, _ := WindowSize(h.svc.cfg.Window, regtestBits)
	if err := h.svc.loadWindow(ctx, h.seq, size.Plus(size)); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.cut(ctx, true); err != nil {
		t.Fatal(err)
	}
	outs, key, err := h.svc.Outputs(tmpl(1, reward), reward, "")
	if err != nil || key != "" {
		t.Fatalf("Outputs: %v %q", err, key)
	}
	var sum int64
	for _, o := range outs {
		sum += o.Value
	}
	if sum != reward || len(outs) != 3 {
		t.Fatalf("outputs %+v: sum %d, want %d in 3 outputs (direct, pool, commitment)", outs, sum, reward)
	}
	blocks := []chainhash.Hash{h.chain.mine(1, outs), h.chain.mine(2, outs)}
	for i, bh := range blocks {
		h.putBlock(t, hashgrid.Block{Hash: bh, Height: int64(i + 1), Reward: reward, Status: hashgrid.BlockAccepted})
	}
	if err := h.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	// About 96 of the window's 128 shares are miner 0's: 3/4 of 99% of the reward,
	// give or take the one share the window's edge cuts.
	dist := int64(reward - reward/100)
	want0 := balance(t, h.led, MinerAccount(testMiners[0], "direct")) / 2
	want1 := balance(t, h.led, MinerAccount(testMiners[1], "immature")) / 2
	if d := want0 - dist*3/4; d < -dist/128 || d > dist/128 {
		t.Errorf("miner 0 direct = %d per block, want %d ± %d", want0, dist*3/4, dist/128)
	}
	if d := want1 - dist/4; d < -dist/128 || d > dist/128 {
		t.Errorf("miner 1 immature = %d per block, want %d ± %d", want1, dist/4, dist/128)
	}
	if want0+want1 < dist-1 || want0+want1 > dist {
		t.Errorf("miners got %d of %d", want0+want1, dist)
	}
	for _, bh := range blocks {
		v, err := h.svc.BlockWindow(ctx, bh, 0, 50)
		if err != nil {
			t.Fatal(err)
		}
		for v.Next != 0 {
			more, err := h.svc.BlockWindow(ctx, bh, v.Next, 50)
			if err != nil {
				t.Fatal(err)
			}
			v.Shares = append(v.Shares, more.Shares...)
			v.Next = more.Next
		}
		if len(v.Shares) < 128 || len(v.Shares) > 129 {
			t.Fatalf("window of %d shares, want 128", len(v.Shares))
		}
		facts := &ChainFacts{Commitment: v.Commitment, HasCommit: true, Reward: reward, Bits: regtestBits}
		for _, m := range testMiners {
			if vr := Verify(v, m, facts); !vr.OK() {
				t.Errorf("verify %s: %v", m, vr.Problems)
			}
		}
	}
	// Block 1 matures, block 2 is orphaned.
	h.putBlock(t, hashgrid.Block{Hash: blocks[0], Height: 1, Reward: reward, Status: hashgrid.BlockConfirmed})
	h.putBlock(t, hashgrid.Block{Hash: blocks[1], Height: 2, Reward: reward, Status: hashgrid.BlockOrphaned})
	if err := h.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	for acct, want := range map[string]int64{
		MinerAccount(testMiners[0], "paid"):     want0,
		MinerAccount(testMiners[0], "direct"):   0,
		MinerAccount(testMiners[1], "balance"):  want1,
		MinerAccount(testMiners[1], "immature"): 0,
		AcctFee:                                 reward - want0 - want1,
		AcctFeeImmature:                         0,
		AcctRewards:                             -reward,
	} {
		if got := balance(t, h.led, acct); got != want {
			t.Errorf("%s = %d, want %d", acct, got, want)
		}
	}
	mv, err := h.svc.Miner(ctx, testMiners[1])
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, c := range mv.Credits {
		kinds[c.Kind]++
		if c.Kind == "block" && c.Window == "" {
			t.Errorf("credit %s names no window", c.Key)
		}
	}
	if kinds["block"] != 2 || kinds["orphaned"] != 1 || kinds["mature"] != 1 || mv.Balances.Mature != want1 {
		t.Errorf("miner view: %+v (kinds %v)", mv.Balances, kinds)
	}
	// The orphan returns to the main chain: credited again, as credit 2.
	h.putBlock(t, hashgrid.Block{Hash: blocks[1], Height: 2, Reward: reward, Status: hashgrid.BlockAccepted})
	if err := h.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.led.Entry(ctx, blockKey(blocks[1], 2, "credit")); err != nil {
		t.Errorf("re-accepted block not credited again: %v", err)
	}
	if err := h.led.Check(ctx); err != nil {
		t.Error(err)
	}
}

// TestPPSNeverPaysMoreThanFunding feeds random share streams and random blocks (some
// orphaned) to PPS and FPPS and checks that the credits never exceed the declared
// funding plus the rewards of the blocks that stood, that each miner is credited its
// exact expected value to within one satoshi, and that the books balance.
func TestPPSNeverPaysMoreThanFunding(t *testing.T) {
	ctx := context.Background()
	for iter, scheme := range []Scheme{PPS, FPPS, PPS, FPPS} {
		r := rand.New(rand.NewPCG(uint64(iter), 9))
		funding := r.Int64N(20_0000_0000)
		h := newHarness(t, Config{Scheme: scheme, Funding: funding, Split: SplitParams{FeeBps: r.Int64N(500)}})
		if err := h.svc.ensureFunding(ctx); err != nil {
			t.Fatal(err)
		}
		const subsidy, fees = 50_0000_0000, 1234_5678
		h.svc.Outputs(&node.Template{Height: 1, CoinbaseValue: subsidy + fees, Bits: regtestBits,
			Transactions: []node.TemplateTx{{Fee: fees}}}, subsidy+fees, "")
		carries := map[string]uint64{}
		rates := map[int64]shareRate{}
		exact := map[string]*big.Rat{}
		rewards := int64(0)
		cursor := uint64(0)
		mined := 0
		for round := 0; round < 30; round++ {
			for i := 0; i < 1+r.IntN(40); i++ {
				// Regtest difficulty is 4.66e-10: shares from 1e-12 to 1e-9 cover the
				// cap at one block's worth.
				d := hashgrid.Diff(1 + r.Uint64N(5))
				a := testMiners[r.IntN(2)]
				h.share(t, a, d, 1)
			}
			recs, err := h.store.Shares(ctx, cursor, math.MaxInt64, 1000)
			if err != nil {
				t.Fatal(err)
			}
			err = h.svc.creditPPS(ctx, recs, carries, rates)
			for tries := 0; err != nil; tries++ {
				if !errors.Is(err, ledger.ErrInsufficient) || tries > 100 {
					t.Fatalf("%s: creditPPS: %v", scheme, err)
				}
				// Funds exhausted: a block refills them, then the same records are
				// credited.
				mined++
				bh := h.chain.mine(uint32(mined), nil)
				h.putBlock(t, hashgrid.Block{Hash: bh, Reward: subsidy + fees, Status: hashgrid.BlockAccepted})
				rewards += subsidy + fees
				if rerr := h.svc.Reconcile(ctx); rerr != nil {
					t.Fatal(rerr)
				}
				err = h.svc.creditPPS(ctx, recs, carries, rates)
			}
			cursor = recs[len(recs)-1].Seq
			var sofar int64
			for _, a := range testMiners {
				sofar += balance(t, h.led, MinerAccount(a, "balance"))
			}
			if sofar > funding+rewards {
				t.Fatalf("%s round %d: credited %d, funding %d + standing rewards %d", scheme, round, sofar, funding, rewards)
			}
			for _, sh := range recs {
				reward := int64(subsidy)
				if scheme == FPPS {
					reward += fees
				}
				// Exact value: reward·(1−fee)·min(d, netdiff)/netdiff, netdiff = diff1·2^32/T.
				tb, _ := new(big.Int).SetString("7fffff0000000000000000000000000000000000000000000000000000000000", 16)
				w := new(big.Int).SetUint64(uint64(sh.Diff))
				num := new(big.Int).Mul(big.NewInt(reward*(MaxFeeBps-h.svc.cfg.Split.FeeBps)), new(big.Int).Mul(w, tb))
				den := new(big.Int).Mul(big.NewInt(MaxFeeBps), new(big.Int).Lsh(big.NewInt(0xffff), 208+32))
				v := new(big.Rat).SetFrac(num, den)
				if blockWorth := big.NewRat(reward*(MaxFeeBps-h.svc.cfg.Split.FeeBps), MaxFeeBps); v.Cmp(blockWorth) > 0 {
					v = blockWorth
				}
				if exact[sh.Address] == nil {
					exact[sh.Address] = new(big.Rat)
				}
				exact[sh.Address].Add(exact[sh.Address], v)
			}
			// An orphan now and then: the pool absorbs it.
			if round%7 == 6 && rewards > 0 {
				bs, _ := h.store.Blocks(ctx, 1000)
				var b hashgrid.Block
				for _, x := range bs {
					if x.Status == hashgrid.BlockAccepted {
						b = x
					}
				}
				if b.Status != hashgrid.BlockAccepted {
					t.Fatal("no block to orphan")
				}
				b.Status = hashgrid.BlockOrphaned
				h.putBlock(t, b)
				if err := h.svc.Reconcile(ctx); err != nil {
					t.Fatal(err)
				}
				rewards -= b.Reward
			}
		}
		var credited int64
		for _, a := range testMiners {
			got := balance(t, h.led, MinerAccount(a, "balance"))
			credited += got
			if exact[a] == nil {
				continue
			}
			diff := new(big.Rat).Sub(exact[a], new(big.Rat).SetInt64(got))
			if diff.Sign() < 0 || diff.Cmp(big.NewRat(1, 1)) >= 0 {
				t.Errorf("%s %s: credited %d, exact %s", scheme, a, got, exact[a].FloatString(4))
			}
		}
		if f := balance(t, h.led, AcctFunds); f != funding+rewards-credited {
			t.Errorf("%s: funds %d, want %d", scheme, f, funding+rewards-credited)
		}
		if err := h.led.Check(ctx); err != nil {
			t.Error(err)
		}
	}
}
