package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"math/bits"
	"reflect"
	"sort"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/pool"
)

// ShareLister lists a pool's accepted shares by stream sequence; hashgrid.ShareStore
// implements it. A WorkSource that is also a ShareLister gives pool snapshots a Merkle
// root over each device group's accepted shares.
type ShareLister interface {
	LastSeq(ctx context.Context) (uint64, error)
	// Shares returns accepted shares with Seq in (after, upto], oldest first, at most limit.
	Shares(ctx context.Context, after, upto uint64, limit int) ([]hashgrid.Share, error)
}

// PoolGroupShares commits to the accepted shares of one device group in a snapshot's
// period: their number, total difficulty and a Merkle root over them, built as the PPLNS
// window builds its own (payout.WindowShare.LeafV2 leaves, payout.MerkleRoot), oldest
// share first. Whoever holds the shares (the pool's store, an export of it) recomputes
// the root; one share more or less, or one changed, gives another.
type PoolGroupShares struct {
	Group    string        `json:"group"`
	Accepted uint64        `json:"accepted"`
	Work     hashgrid.Work `json:"work"`
	FirstSeq uint64        `json:"first_seq"`
	LastSeq  uint64        `json:"last_seq"`
	Root     string        `json:"share_root"`
	// Blocks are the group's shares that met the network target: blocks it found.
	Blocks []FoundBlock `json:"blocks,omitempty"`
	// PoolSampleRate is the rate the pool keeps headers at, as declared on import;
	// SampleRate and Sample are the shares sampled at the rate the count calls for
	// (see SampledShare).
	PoolSampleRate uint64         `json:"pool_sample_rate,omitempty"`
	SampleRate     uint64         `json:"sample_rate,omitempty"`
	Sample         []SampledShare `json:"sample,omitempty"`
}

// FoundBlock is a block a group's share made, by height and hash (RPC hex).
type FoundBlock struct {
	Height int64  `json:"height"`
	Hash   string `json:"hash"`
}

// sharePage is how many shares one Shares call returns.
const sharePage = 10_000

// ShareLeaf returns the Merkle leaf of an accepted share: the PPLNS window's version 2
// leaf, whose weight is the share's difficulty.
func ShareLeaf(s hashgrid.Share) payout.Hash32 {
	return payout.WindowShare{Seq: s.Seq, Address: s.Address, Diff: s.Diff, Weight: s.Diff, Hash: s.Hash}.LeafV2()
}

// firstShareAt returns the sequence after which the first accepted share received at or
// after t lies, by bisection over the stream: shares are stored in the order the pool
// received them, so their times rise with their sequence (within the clock skew of a
// cluster's front-ends, which slack absorbs).
func firstShareAt(ctx context.Context, l ShareLister, last uint64, t time.Time) (uint64, error) {
	lo, hi := uint64(0), last // the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		ss, err := l.Shares(ctx, mid, last, 1)
		if err != nil {
			return 0, err
		}
		if len(ss) == 0 || !ss[0].Time.Before(t) {
			hi = mid
		} else {
			lo = ss[0].Seq
		}
	}
	return lo, nil
}

// shareSlack is how far out of order in time two shares of the stream may be.
const shareSlack = time.Minute

// groupShares commits to the accepted shares in [from, to) of each group that group
// maps a worker to ("" for none: those are left out), with each group's sample from a
// pool that keeps headers at poolRate (see SampledShare).
func groupShares(ctx context.Context, l ShareLister, from, to time.Time, group func(address, worker string) string, poolRate uint64) ([]PoolGroupShares, error) {
	if poolRate == 0 || poolRate&(poolRate-1) != 0 || poolRate > 1<<pool.MaxSampleLevel {
		return nil, fmt.Errorf("pool sample rate %d is not a power of two in 1..2^%d", poolRate, pool.MaxSampleLevel)
	}
	last, err := l.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	after, err := firstShareAt(ctx, l, last, from.Add(-shareSlack))
	if err != nil {
		return nil, err
	}
	type acc struct {
		PoolGroupShares
		leaves []payout.Hash32
		sample sampler
	}
	ts := targets{}
	groups := map[string]*acc{}
	for after < last {
		ss, err := l.Shares(ctx, after, last, sharePage)
		if err != nil {
			return nil, err
		}
		if len(ss) == 0 {
			break
		}
		for _, s := range ss {
			if s.Seq <= after {
				return nil, fmt.Errorf("shares: sequence %d after %d", s.Seq, after)
			}
			after = s.Seq
			if s.Time.Before(from) || !s.Time.Before(to) {
				continue
			}
			g := group(s.Address, s.Worker)
			if g == "" {
				continue
			}
			a := groups[g]
			if a == nil {
				a = &acc{PoolGroupShares: PoolGroupShares{Group: g, FirstSeq: s.Seq, PoolSampleRate: poolRate}, sample: newSampler()}
				groups[g] = a
			}
			a.Accepted++
			a.Work = a.Work.Add(s.Diff)
			a.LastSeq = s.Seq
			a.sample.add(ts, s, uint64(len(a.leaves)))
			a.leaves = append(a.leaves, ShareLeaf(s))
			if s.Block {
				a.Blocks = append(a.Blocks, FoundBlock{Height: s.Height, Hash: chainhash.Hash(s.Hash).String()})
			}
		}
		if !ss[len(ss)-1].Time.Before(to.Add(shareSlack)) {
			break
		}
	}
	out := make([]PoolGroupShares, 0, len(groups))
	for _, a := range groups {
		// Paths first: MerkleRoot works in place.
		var err error
		if a.SampleRate, a.Sample, err = a.sample.choose(a.leaves, bits.TrailingZeros64(poolRate)); err != nil {
			return nil, fmt.Errorf("group %s: %w", a.Group, err)
		}
		if a.SampleRate == 0 {
			a.PoolSampleRate = 0
		}
		a.Root = payout.MerkleRoot(a.leaves).String()
		out = append(out, a.PoolGroupShares)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, nil
}

// CheckShareCommitments recomputes every share commitment of a report file from a share
// list (the pool's store, read only, or a copy of it) and returns how many it checked.
// Workers are mapped to groups by the devices the report lists, as the import mapped
// them; a device added between the import and the report can make an honest
// commitment differ. It does not check the report's signature: VerifyReport does.
func CheckShareCommitments(ctx context.Context, l ShareLister, file []byte) (int, error) {
	var f ReportFile
	if err := json.Unmarshal(file, &f); err != nil {
		return 0, fmt.Errorf("registry: report file: %w", err)
	}
	var rep Report
	if err := json.Unmarshal(f.Report, &rep); err != nil {
		return 0, fmt.Errorf("registry: report: %w", err)
	}
	st := &State{Devices: map[string]Device{}}
	for _, g := range rep.Groups {
		for _, d := range g.Devices {
			st.Devices[d.ID] = d
		}
	}
	mapper := func(address, worker string) string {
		if gs := st.workerGroups(rep.Site.ID, PoolWorker{Address: address, Name: worker}); len(gs) > 0 {
			return gs[0]
		}
		return ""
	}
	// By pool entry and the sample rate its pool kept headers at.
	type entryRate struct{ entry, rate uint64 }
	listed := map[entryRate]map[string]PoolGroupShares{}
	n := 0
	for _, g := range rep.Groups {
		for _, sc := range g.ShareCommitments {
			rate := sc.PoolSampleRate
			if rate == 0 {
				rate = pool.DefaultSampleRate // committed without a sample: compared without one below
			}
			got, ok := listed[entryRate{sc.Entry, rate}]
			if !ok {
				gs, err := groupShares(ctx, l, sc.From, sc.To, mapper, rate)
				if err != nil {
					return n, fmt.Errorf("registry: shares: %w", err)
				}
				got = map[string]PoolGroupShares{}
				for _, x := range gs {
					got[x.Group] = x
				}
				listed[entryRate{sc.Entry, rate}] = got
			}
			want := sc.PoolGroupShares
			have := got[g.Group]
			if want.PoolSampleRate == 0 {
				have.PoolSampleRate, have.SampleRate, have.Sample = 0, 0, nil
			}
			if !reflect.DeepEqual(want, have) {
				return n, fmt.Errorf("registry: shares of group %s in pool entry %d (%s..%s): the report commits to %d shares, root %s, %d blocks, %d sampled; the store lists %d, root %s, %d blocks, %d sampled",
					g.Group, sc.Entry, sc.From.Format(time.RFC3339), sc.To.Format(time.RFC3339), want.Accepted, want.Root, len(want.Blocks), len(want.Sample),
					have.Accepted, have.Root, len(have.Blocks), len(have.Sample))
			}
			n++
		}
	}
	return n, nil
}
