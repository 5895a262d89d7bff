package registry

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/payout"
)

// shareSource is a pool store in memory: worker summaries and the accepted shares.
type shareSource struct {
	workSource
	shares []hashgrid.Share // by Seq, accepted only
	calls  int
}

func (s *shareSource) LastSeq(ctx context.Context) (uint64, error) {
	if len(s.shares) == 0 {
		return 0, nil
	}
	return s.shares[len(s.shares)-1].Seq + 3, nil // rejected shares after the last accepted
}

func (s *shareSource) Shares(ctx context.Context, after, upto uint64, limit int) ([]hashgrid.Share, error) {
	s.calls++
	var out []hashgrid.Share
	for _, sh := range s.shares {
		if sh.Seq > after && sh.Seq <= upto && len(out) < limit {
			out = append(out, sh)
		}
	}
	return out, nil
}

// sharesFor makes n accepted shares per worker, one every second from start, with
// sequence numbers that skip (rejected shares in between).
func sharesFor(start time.Time, n int, workers ...[2]string) []hashgrid.Share {
	var out []hashgrid.Share
	seq := uint64(10)
	for i := 0; i < n; i++ {
		for _, w := range workers {
			seq += 2
			out = append(out, hashgrid.Share{Seq: seq, Time: start.Add(time.Duration(len(out)) * time.Second), Address: w[0], Worker: w[1],
				Diff: hashgrid.DiffFromFloat(65536), Hash: [32]byte{byte(seq), byte(seq >> 8), 7}, Result: hashgrid.ShareAccepted})
		}
	}
	return out
}

func TestPoolShareCommitments(t *testing.T) {
	r, _ := newRegistry(t)
	buildSite(t, r)
	rack, gpu, other := [2]string{minerAddr, "rack1-01"}, [2]string{minerAddr, "gpu-07"}, [2]string{otherAddr, "x"}
	// Shares from an hour before the period to an hour after it; one of the rack's in
	// the period found a block.
	all := sharesFor(t0.Add(-time.Hour), 2400, rack, gpu, other)
	blockAt := 3600 + 1200 // 20 minutes into the period; every third share is the rack's
	all[blockAt].Block, all[blockAt].Height = true, 812345
	var want = map[string][]payout.Hash32{}
	counts := map[string]uint64{}
	for _, s := range all {
		if s.Time.Before(t0) || !s.Time.Before(t0.Add(time.Hour)) || s.Address != minerAddr {
			continue
		}
		g := map[string]string{"rack1-01": "miners", "gpu-07": "inference"}[s.Worker]
		want[g] = append(want[g], ShareLeaf(s))
		counts[g]++
	}
	src := &shareSource{shares: all, workSource: workSource{workers: []hashgrid.Worker{
		{Address: minerAddr, Name: "rack1-01", Accepted: counts["miners"], Work: diffWork(counts["miners"], 65536)},
		{Address: minerAddr, Name: "gpu-07", Accepted: counts["inference"] + 1, Work: diffWork(counts["inference"]+1, 65536)},
	}}}
	if _, err := r.ImportPool(context.Background(), src, "s1", t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Bisection and an early stop: far fewer calls than a scan of 7,200 shares.
	if src.calls > 30 {
		t.Errorf("%d Shares calls for one import", src.calls)
	}
	snap := r.State().Pool[0]
	if len(snap.Groups) != 2 {
		t.Fatalf("share groups: %+v", snap.Groups)
	}
	for _, g := range snap.Groups {
		leaves := want[g.Group]
		if g.Accepted != uint64(len(leaves)) || g.Root != payout.MerkleRoot(leaves).String() || g.Work != diffWork(g.Accepted, 65536) {
			t.Errorf("group %s: %d shares, root %s; want %d, root %s", g.Group, g.Accepted, g.Root, len(leaves), payout.MerkleRoot(append([]payout.Hash32(nil), leaves...)))
		}
	}
	if b := snap.Groups[1].Blocks; len(b) != 1 || b[0].Height != 812345 || b[0].Hash != chainhash.Hash(all[blockAt].Hash).String() || snap.Groups[0].Blocks != nil {
		t.Errorf("blocks found: miners %+v, inference %+v; want the one block of share %d in miners", b, snap.Groups[0].Blocks, all[blockAt].Seq)
	}
	_, rep, _, err := r.Report("s1", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var mismatch []string
	for _, d := range rep.Discrepancies {
		if d.Code == "pool_share_count_mismatch" {
			mismatch = append(mismatch, d.Group)
		}
	}
	if len(mismatch) != 1 || mismatch[0] != "inference" {
		t.Errorf("share count mismatch flagged for %v; want inference only (its summary counts one share more than listed)", mismatch)
	}
	for _, gr := range rep.Groups {
		if gr.Group == "miners" && (len(gr.ShareCommitments) != 1 || gr.ShareCommitments[0].Root != snap.Groups[1].Root) {
			t.Errorf("miners' share commitments in the report: %+v", gr.ShareCommitments)
		}
	}
	// The auditor recomputes the commitments from the store; one share gone from it,
	// or one changed, and they differ.
	f, _, _, err := r.Report("s1", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	fb, _ := json.Marshal(f)
	// These shares keep no header (a pool from before samples): no sample, and verify
	// says so.
	if chk, err := CheckSamples(fb); err != nil || chk.Unsampled != 2 || chk.Shares != 0 {
		t.Errorf("samples of a pool that kept no headers: %+v, %v; want 2 commitments without", chk, err)
	}
	if n, err := CheckShareCommitments(context.Background(), src, fb); err != nil || n != 2 {
		t.Errorf("share commitments against the store: %d checked, %v; want 2", n, err)
	}
	for name, edit := range map[string]func([]hashgrid.Share) []hashgrid.Share{
		"one share gone": func(ss []hashgrid.Share) []hashgrid.Share { return append(ss[:4000:4000], ss[4001:]...) },
		"one share changed": func(ss []hashgrid.Share) []hashgrid.Share {
			ss = append([]hashgrid.Share(nil), ss...)
			ss[4500].Hash[31] ^= 1
			return ss
		},
	} {
		other := &shareSource{shares: edit(all)}
		if _, err := CheckShareCommitments(context.Background(), other, fb); err == nil || !strings.Contains(err.Error(), "the report commits to") {
			t.Errorf("%s: got %v", name, err)
		}
	}
	// The log replays with the commitments.
	if _, err := Open(Config{Dir: r.Path()[:len(r.Path())-len(LogFile)-1], Key: testKey(1)}); err != nil {
		t.Fatal(err)
	}
}

// A store that lists no shares for a period its summaries count shares in: the
// commitments are empty, and the report says so.
func TestPoolSharesMissingFlagged(t *testing.T) {
	r, _ := newRegistry(t)
	buildSite(t, r)
	src := &shareSource{shares: sharesFor(t0.Add(-2*time.Hour), 100, [2]string{minerAddr, "rack1-01"}), workSource: workSource{workers: []hashgrid.Worker{
		{Address: minerAddr, Name: "rack1-01", Accepted: 40, Work: diffWork(40, 65536)},
	}}}
	if _, err := r.ImportPool(context.Background(), src, "s1", t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if snap := r.State().Pool[0]; !snap.SharesListed || len(snap.Groups) != 0 {
		t.Fatalf("snapshot: listed %v, groups %+v", snap.SharesListed, snap.Groups)
	}
	_, rep, _, err := r.Report("s1", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range rep.Discrepancies {
		found = found || d.Code == "pool_share_count_mismatch" && d.Group == "miners"
	}
	if !found {
		t.Errorf("40 accepted shares counted, none listed, not flagged: %+v", rep.Discrepancies)
	}
}

func TestFirstShareAt(t *testing.T) {
	src := &shareSource{shares: sharesFor(t0, 500, [2]string{minerAddr, "a"})}
	last, _ := src.LastSeq(context.Background())
	for _, i := range []int{0, 1, 250, 499} {
		after, err := firstShareAt(context.Background(), src, last, src.shares[i].Time)
		if err != nil {
			t.Fatal(err)
		}
		ss, _ := src.Shares(context.Background(), after, last, 1)
		if len(ss) != 1 || ss[0].Seq != src.shares[i].Seq {
			t.Errorf("first share at share %d's time: after %d gives %v", i, after, ss)
		}
	}
	after, _ := firstShareAt(context.Background(), src, last, t0.Add(time.Hour))
	if ss, _ := src.Shares(context.Background(), after, last, 1); len(ss) != 0 {
		t.Errorf("a time after every share: after %d gives %v", after, ss)
	}
}
