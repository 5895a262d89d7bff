package payout

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/sqlite"
)

// verifyBlock pages through a block's published window and verifies every miner's
// credit from it, as `hashgrid verify` does.
func verifyBlock(t *testing.T, h *harness, bh chainhash.Hash, reward int64) {
	t.Helper()
	ctx := context.Background()
	v, err := h.svc.BlockWindow(ctx, bh, 0, 50)
	if err != nil {
		t.Fatalf("window of %s: %v", bh, err)
	}
	for v.Next != 0 {
		more, err := h.svc.BlockWindow(ctx, bh, v.Next, 50)
		if err != nil {
			t.Fatal(err)
		}
		v.Shares = append(v.Shares, more.Shares...)
		v.Next = more.Next
	}
	facts := &ChainFacts{Commitment: v.Commitment, HasCommit: true, Reward: reward, Bits: regtestBits}
	for _, m := range testMiners {
		if vr := Verify(v, m, facts); !vr.OK() {
			t.Fatalf("verify %s for %s: %v", bh, m, vr.Problems)
		}
	}
}

// TestRetentionKeepsWindowsUntilFinal prunes the store with the PPLNS service's
// RetainFrom while two found blocks commit to a window the live window has moved past:
// their window is kept while they are accepted, and confirmed but not yet matured, so
// that they are credited and verified after pruning; once both are final, it goes, and
// the window's page says it was pruned instead of publishing a short window.
func TestRetentionKeepsWindowsUntilFinal(t *testing.T) {
	ctx := context.Background()
	const reward = 50_0000_0000
	h := newHarness(t, Config{Scheme: PPLNS, Window: hashgrid.Diff(1) << 63, Split: SplitParams{FeeBps: 100}})
	if k, err := h.svc.RetainFrom(ctx); err != nil || k != 0 {
		t.Fatalf("RetainFrom before the window is rebuilt: got %d, %v; want 0 (everything)", k, err)
	}
	d := hashgrid.Diff(1 << 25) // a window of 128 shares, as in TestPPLNSBlockLifecycle
	for i := range 300 {
		h.share(t, testMiners[i%2], d, 1)
	}
	h.svc.Outputs(tmpl(1, reward), reward, "")
	size, _ := WindowSize(h.svc.cfg.Window, regtestBits)
	if err := h.svc.loadWindow(ctx, h.seq, size.Plus(size)); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.cut(ctx, true); err != nil {
		t.Fatal(err)
	}
	outs, _, err := h.svc.Outputs(tmpl(1, reward), reward, "")
	if err != nil {
		t.Fatal(err)
	}
	w1 := h.svc.cur.Load().params
	blocks := []chainhash.Hash{h.chain.mine(1, outs), h.chain.mine(2, outs)}
	for i, bh := range blocks {
		h.putBlock(t, hashgrid.Block{Hash: bh, Height: int64(i + 1), Reward: reward, Status: hashgrid.BlockAccepted})
	}
	// The pool mines on: the live window leaves the blocks' window behind.
	for i := range 300 {
		h.share(t, testMiners[i%2], d, 1)
	}
	if err := h.svc.follow(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.cut(ctx, false); err != nil {
		t.Fatal(err)
	}
	h.svc.mu.Lock()
	liveFirst := h.svc.live.first()
	h.svc.mu.Unlock()
	if liveFirst <= w1.End {
		t.Fatalf("live window starts at %d, within the blocks' window %d..%d: the test needs it past", liveFirst, w1.Start, w1.End)
	}
	ret := sqlite.Retention{DB: h.store, KeepFrom: h.svc.RetainFrom, Pause: time.Millisecond,
		Now: func() time.Time { return time.Unix(1_800_000_000, 0) }} // every share is older than Keep
	pass := func(what string, wantKeep uint64) sqlite.PassResult {
		t.Helper()
		res, err := ret.Pass(ctx)
		if err != nil {
			t.Fatalf("%s: retention pass: %v", what, err)
		}
		if res.KeepFrom != wantKeep {
			t.Fatalf("%s: RetainFrom %d, want %d (live window from %d, blocks' window from %d)", what, res.KeepFrom, wantKeep, liveFirst, w1.Start)
		}
		if res.Seq >= wantKeep {
			t.Fatalf("%s: pruned through %d, needed from %d", what, res.Seq, wantKeep)
		}
		return res
	}

	// Accepted and not yet credited: the window stays, the shares before it go.
	if res := pass("accepted blocks", w1.Start); res.Shares == 0 {
		t.Fatalf("accepted blocks: nothing pruned before their window at %d", w1.Start)
	}
	if err := h.svc.Reconcile(ctx); err != nil {
		t.Fatalf("credit after pruning: %v", err)
	}
	for _, bh := range blocks {
		verifyBlock(t, h, bh, reward)
	}
	// Confirmed, maturity not booked yet: still kept.
	for i, bh := range blocks {
		h.putBlock(t, hashgrid.Block{Hash: bh, Height: int64(i + 1), Reward: reward, Status: hashgrid.BlockConfirmed})
	}
	pass("confirmed blocks before maturity", w1.Start)
	verifyBlock(t, h, blocks[0], reward)
	if err := h.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	// Final: only the live window is needed; the blocks' window goes, and its page
	// says so.
	if res := pass("final blocks", liveFirst); res.Seq < w1.Start {
		t.Fatalf("final blocks: pruned through %d, their window from %d was needed by no one", res.Seq, w1.Start)
	}
	_, err = h.svc.BlockWindow(ctx, blocks[0], 0, 50)
	if hashgrid.ErrorCode(err) != hashgrid.ENOTFOUND || !strings.Contains(err.Error(), "pruned") {
		t.Fatalf("window of a block whose shares were pruned: got %v, want not found, pruned", err)
	}
	if err := h.led.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRetainFromSchemes checks what PPS and SOLO keep: PPS every share after its
// cursor (everything before its first start), SOLO nothing.
func TestRetainFromSchemes(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Config{Scheme: PPS, Funding: 1})
	if k, err := h.svc.RetainFrom(ctx); err != nil || k != 0 {
		t.Fatalf("PPS before its first start: got %d, %v; want 0", k, err)
	}
	if err := h.svc.db.savePPS(ctx, 41, nil); err != nil {
		t.Fatal(err)
	}
	if k, err := h.svc.RetainFrom(ctx); err != nil || k != 42 {
		t.Fatalf("PPS with cursor 41: got %d, %v; want 42", k, err)
	}
	solo := newHarness(t, Config{Scheme: SOLO})
	if k, err := solo.svc.RetainFrom(ctx); err != nil || k != math.MaxUint64 {
		t.Fatalf("SOLO: got %d, %v; want none needed", k, err)
	}
}

// TestPruneWindows cuts a window an hour for five hours, finds blocks on three of
// them, and checks that pruning the windows keeps those of credited blocks and of a
// block not final yet, and those cut since the cut-off, and deletes the rest.
func TestPruneWindows(t *testing.T) {
	ctx := context.Background()
	const reward = 50_0000_0000
	t0 := time.Unix(1_700_000_000, 0)
	clock := t0
	h := newHarness(t, Config{Scheme: PPLNS, Window: hashgrid.Diff(1) << 63, Split: SplitParams{FeeBps: 100},
		Now: func() time.Time { return clock }})
	d := hashgrid.Diff(1 << 25)
	for i := range 300 {
		h.share(t, testMiners[i%2], d, 1)
	}
	h.svc.Outputs(tmpl(1, reward), reward, "")
	size, _ := WindowSize(h.svc.cfg.Window, regtestBits)
	if err := h.svc.loadWindow(ctx, h.seq, size.Plus(size)); err != nil {
		t.Fatal(err)
	}
	var windows []Hash32
	var outs [][]pool.Output
	for i := range 5 {
		clock = t0.Add(time.Duration(i) * time.Hour)
		h.share(t, testMiners[i%2], d, 1)
		if err := h.svc.follow(ctx); err != nil {
			t.Fatal(err)
		}
		if err := h.svc.cut(ctx, true); err != nil {
			t.Fatal(err)
		}
		o, _, err := h.svc.Outputs(tmpl(1, reward), reward, "")
		if err != nil {
			t.Fatal(err)
		}
		windows = append(windows, h.svc.cur.Load().commitment)
		outs = append(outs, o)
	}
	// Blocks on windows 0 and 2 are credited; one on window 3 is submitted, not final.
	a, b, c := h.chain.mine(1, outs[0]), h.chain.mine(2, outs[2]), h.chain.mine(3, outs[3])
	h.putBlock(t, hashgrid.Block{Hash: a, Height: 1, Reward: reward, Status: hashgrid.BlockAccepted})
	h.putBlock(t, hashgrid.Block{Hash: b, Height: 2, Reward: reward, Status: hashgrid.BlockAccepted})
	if err := h.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	h.putBlock(t, hashgrid.Block{Hash: c, Height: 3, Reward: reward, Status: hashgrid.BlockSubmitted})
	have := func() []bool {
		var out []bool
		for _, w := range windows {
			_, err := h.svc.db.window(ctx, w)
			if err != nil && hashgrid.ErrorCode(err) != hashgrid.ENOTFOUND {
				t.Fatal(err)
			}
			out = append(out, err == nil)
		}
		return out
	}
	n, err := h.svc.PruneWindows(ctx, t0.Add(3*time.Hour+30*time.Minute))
	if got, want := have(), []bool{true, false, true, true, true}; err != nil || n != 1 || !slices.Equal(got, want) {
		t.Fatalf("PruneWindows before hour 3.5: deleted %d (%v), windows kept %v; want 1 deleted, kept %v", n, err, got, want)
	}
	n, err = h.svc.PruneWindows(ctx, t0.Add(10*time.Hour))
	if got, want := have(), []bool{true, false, true, true, false}; err != nil || n != 1 || !slices.Equal(got, want) {
		t.Fatalf("PruneWindows before hour 10: deleted %d (%v), windows kept %v; want 1 deleted, kept %v", n, err, got, want)
	}
	verifyBlock(t, h, b, reward)
	// The submitted block is accepted after all: its window is still there to credit.
	h.putBlock(t, hashgrid.Block{Hash: c, Height: 3, Reward: reward, Status: hashgrid.BlockAccepted})
	if err := h.svc.Reconcile(ctx); err != nil {
		t.Fatalf("credit of a block after its window's neighbours were pruned: %v", err)
	}
	verifyBlock(t, h, c, reward)
}
