package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/pow"
)

// A share commitment carries a sample of its shares that anyone can hash again. The
// pool keeps the header of every accepted share whose hash meets its own target divided
// by the pool's sample rate (pool.Sampled): the proof of work picks them, not the
// operator. A commitment lists every share of its group and period that meets the
// target divided by SampleRate, with its header and the Merkle path from its leaf to
// the commitment's root. SampleRate is fixed by the share count alone, before any hash
// is looked at: the power of two at or above PoolSampleRate (the pool's rate, as the
// operator declares it on import) that expects at most MaxSampleShares/2 shares, raised
// once more in the rare period whose sample would still exceed MaxSampleShares. So the
// sample's size is an honest Poisson count that verify can hold against the share
// count. A declared pool rate below the real one is refused on import: shares meeting
// the sample target without a header.
//
// What a sampled share proves, with the report alone: its header hashes to a hash that
// meets the share's difficulty and the sample target, and that hash, with the share's
// sequence, address and difficulty, is a leaf of the root the log committed to. The
// header's previous block hash names the block the share built on, which a node can
// confirm (see the cli's verify); its Merkle root commits to the coinbase the miner
// hashed, which the pool does not keep. The worker name is not in the leaf: it is the
// pool's word. What the sample shows statistically: the shares meeting the sample
// target number about Accepted/SampleRate when every committed share is real work, and
// fewer when the count was inflated with leaves no miner hashed, since those have no
// header and must not meet the target either (CheckSamples flags a shortfall).

// MaxSampleShares bounds the sampled shares of one group's commitment: with their
// Merkle paths, some 1 to 2 kB each in the log and the report.
const MaxSampleShares = 16

// SampledShare is one share of a commitment's sample.
type SampledShare struct {
	Seq     uint64        `json:"seq"`
	Index   uint64        `json:"index"` // position of its leaf, oldest share first
	Height  int64         `json:"height"`
	Address string        `json:"address"`
	Worker  string        `json:"worker"`
	Diff    hashgrid.Diff `json:"diff"`
	Header  string        `json:"header"` // the 80-byte block header, hex
	// Proof is the Merkle path from the share's leaf to the root, lowest level first:
	// one sibling per level, none where the node is the odd last one, carried up.
	Proof []string `json:"proof"`
}

// sampleCand is a share of a group that may join its sample.
type sampleCand struct {
	s     hashgrid.Share
	index uint64
	level int
}

// sampler gathers, while a group's shares are read, what choosing its sample needs.
type sampler struct {
	cands []sampleCand // shares with a header
	// missing is the highest sample level of a share without a header, and its seq:
	// no sample may reach down to it.
	missing    int
	missingSeq uint64
}

func newSampler() sampler { return sampler{missing: -1} }

// targets caches share targets by difficulty: vardiff hands out few distinct ones, and
// each costs a 256-bit division.
type targets map[hashgrid.Diff]pow.Target

func (ts targets) of(d hashgrid.Diff) pow.Target {
	t, ok := ts[d]
	if !ok {
		t = pow.DiffTarget(d)
		ts[d] = t
	}
	return t
}

func (sm *sampler) add(ts targets, s hashgrid.Share, index uint64) {
	h := chainhash.Hash(s.Hash)
	lv := pool.SampleLevel(&h, ts.of(s.Diff))
	if s.Header == nil {
		if lv > sm.missing {
			sm.missing, sm.missingSeq = lv, s.Seq
		}
		return
	}
	sm.cands = append(sm.cands, sampleCand{s: s, index: index, level: lv})
}

// sampleLevel returns log2 of the sample rate of n shares from a pool sampling at
// 2^poolLevel: the least level at or above it at which n shares expect at most
// MaxSampleShares/2 in the sample.
func sampleLevel(n uint64, poolLevel int) int {
	k := poolLevel
	for k < pool.MaxSampleLevel && n>>k > MaxSampleShares/2 {
		k++
	}
	return k
}

// choose returns the sample rate of the group's shares from a pool sampling at 2^poolLevel
// and the sampled shares, with their paths in the tree over leaves.
func (sm *sampler) choose(leaves []payout.Hash32, poolLevel int) (uint64, []SampledShare, error) {
	k := sampleLevel(uint64(len(leaves)), poolLevel)
	count := func(k int) int {
		n := 0
		for _, c := range sm.cands {
			if c.level >= k {
				n++
			}
		}
		return n
	}
	if k < pool.MaxSampleLevel && count(k) > MaxSampleShares {
		k++
	}
	if sm.missing >= k && len(sm.cands) == 0 {
		// A pool that kept no header at all (one from before samples): the commitment
		// goes without, and says so by its zero rates.
		return 0, nil, nil
	}
	if sm.missing >= k {
		return 0, nil, fmt.Errorf("share %d is in the sample at rate %d but the store kept no header of it: the pool samples at a higher rate than %d", sm.missingSeq, uint64(1)<<k, uint64(1)<<poolLevel)
	}
	if count(k) > MaxSampleShares {
		return 0, nil, fmt.Errorf("%d shares in the sample at rate %d, at most %d", count(k), uint64(1)<<k, MaxSampleShares)
	}
	var idx []uint64
	var picked []sampleCand
	for _, c := range sm.cands {
		if c.level >= k {
			picked = append(picked, c)
			idx = append(idx, c.index)
		}
	}
	if len(picked) == 0 {
		return 1 << k, nil, nil // nil, as JSON's omitempty reads it back
	}
	paths := merklePaths(leaves, idx)
	out := make([]SampledShare, len(picked))
	for i, c := range picked {
		proof := make([]string, len(paths[i]))
		for j, h := range paths[i] {
			proof[j] = hex.EncodeToString(h[:])
		}
		out[i] = SampledShare{Seq: c.s.Seq, Index: c.index, Height: c.s.Height, Address: c.s.Address, Worker: c.s.Worker,
			Diff: c.s.Diff, Header: hex.EncodeToString(c.s.Header[:]), Proof: proof}
	}
	return 1 << k, out, nil
}

// pairHash is an inner node of payout.MerkleRoot's tree: SHA-256d of left then right.
func pairHash(l, r payout.Hash32) payout.Hash32 {
	var b [64]byte
	copy(b[:32], l[:])
	copy(b[32:], r[:])
	h := sha256.Sum256(b[:])
	return sha256.Sum256(h[:])
}

// merklePaths returns the path of each leaf at the positions idx (ascending) in the
// tree payout.MerkleRoot builds over leaves, which it leaves unchanged.
func merklePaths(leaves []payout.Hash32, idx []uint64) [][]payout.Hash32 {
	paths := make([][]payout.Hash32, len(idx))
	pos := slices.Clone(idx)
	level := slices.Clone(leaves)
	for len(level) > 1 {
		for i, p := range pos {
			if s := p ^ 1; s < uint64(len(level)) {
				paths[i] = append(paths[i], level[s])
			}
			pos[i] = p / 2
		}
		next := level[:0]
		for i := 0; i < len(level); i += 2 {
			if i+1 == len(level) {
				next = append(next, level[i])
			} else {
				next = append(next, pairHash(level[i], level[i+1]))
			}
		}
		level = next
	}
	return paths
}

// pathRoot climbs from leaf at index among n leaves along path and returns the root
// it reaches; false when the path has the wrong length for that position.
func pathRoot(leaf payout.Hash32, index, n uint64, path []payout.Hash32) (payout.Hash32, bool) {
	if index >= n {
		return payout.Hash32{}, false
	}
	h := leaf
	for n > 1 {
		if index%2 == 1 || index+1 < n {
			if len(path) == 0 {
				return payout.Hash32{}, false
			}
			if index%2 == 0 {
				h = pairHash(h, path[0])
			} else {
				h = pairHash(path[0], h)
			}
			path = path[1:]
		}
		index, n = index/2, (n+1)/2
	}
	return h, len(path) == 0
}

// SampleError says which sampled share does not hold and why.
type SampleError struct {
	Group   string
	Entry   uint64 // the pool entry of the commitment, 0 for all of the group's
	Seq     uint64 // the share, 0 for the sample as a whole
	Problem string
}

func (e *SampleError) Error() string {
	if e.Entry == 0 {
		return fmt.Sprintf("registry: sample of group %s over the report: %s", e.Group, e.Problem)
	}
	if e.Seq == 0 {
		return fmt.Sprintf("registry: sample of group %s in pool entry %d: %s", e.Group, e.Entry, e.Problem)
	}
	return fmt.Sprintf("registry: sampled share %d of group %s in pool entry %d: %s", e.Seq, e.Group, e.Entry, e.Problem)
}

// SampleCheck is what CheckSamples found.
type SampleCheck struct {
	Shares    int                // sampled shares hashed again and found in their roots
	Unsampled int                // commitments made before pools kept samples: nothing to check
	Groups    map[string]int     // of them by group
	Expect    map[string]float64 // by group: Accepted/SampleRate summed over commitments
	Headers   []SampledHeader    // every sampled header, for checks against the chain
}

// SampledHeader is a sampled share's header, for a caller that checks its previous
// block on a chain.
type SampledHeader struct {
	Group  string
	Seq    uint64
	Height int64
	Header wire.BlockHeader
}

// MinSampleTail is the least probability CheckSamples accepts for a group's sample
// being as small as it is, or smaller, if every committed share were real work: about
// one honest report in a million is flagged.
const MinSampleTail = 1e-6

// CheckSamples checks every sampled share of a report file: its header hashes to a hash
// that meets the share's difficulty and its commitment's sample target, the share's
// leaf with that hash climbs its path to the commitment's root, and its address and
// worker belong to the group by the report's devices. It also checks each group's
// sample, over all its commitments, against the count the rates predict: a sample far
// smaller than Accepted/SampleRate means leaves without work behind them. It does not
// check the report's signature: VerifyReport does.
func CheckSamples(file []byte) (SampleCheck, error) {
	var f ReportFile
	if err := json.Unmarshal(file, &f); err != nil {
		return SampleCheck{}, fmt.Errorf("registry: report file: %w", err)
	}
	var rep Report
	if err := json.Unmarshal(f.Report, &rep); err != nil {
		return SampleCheck{}, fmt.Errorf("registry: report: %w", err)
	}
	st := &State{Devices: map[string]Device{}}
	for _, g := range rep.Groups {
		for _, d := range g.Devices {
			st.Devices[d.ID] = d
		}
	}
	chk := SampleCheck{Groups: map[string]int{}, Expect: map[string]float64{}}
	ts := targets{}
	for _, g := range rep.Groups {
		got := 0
		for _, sc := range g.ShareCommitments {
			bad := func(seq uint64, format string, args ...any) error {
				return &SampleError{Group: g.Group, Entry: sc.Entry, Seq: seq, Problem: fmt.Sprintf(format, args...)}
			}
			if sc.Accepted == 0 {
				if len(sc.Sample) != 0 {
					return chk, bad(0, "%d sampled shares of no accepted share", len(sc.Sample))
				}
				continue
			}
			if sc.SampleRate == 0 && sc.PoolSampleRate == 0 && len(sc.Sample) == 0 {
				// Committed before pools kept samples.
				chk.Unsampled++
				continue
			}
			rate := sc.SampleRate
			for _, r := range []uint64{rate, sc.PoolSampleRate} {
				if r == 0 || r&(r-1) != 0 || r > 1<<pool.MaxSampleLevel {
					return chk, bad(0, "sample rate %d is not a power of two in 1..2^%d", r, pool.MaxSampleLevel)
				}
			}
			// The rate is fixed by the count (sampleLevel), once raised at most.
			want := sampleLevel(sc.Accepted, bits.TrailingZeros64(sc.PoolSampleRate))
			if lv := bits.TrailingZeros64(rate); lv != want && lv != want+1 {
				return chk, bad(0, "sample rate %d, where %d shares from a pool sampling 1 in %d call for %d", rate, sc.Accepted, sc.PoolSampleRate, uint64(1)<<want)
			}
			if len(sc.Sample) > MaxSampleShares {
				return chk, bad(0, "%d sampled shares, at most %d", len(sc.Sample), MaxSampleShares)
			}
			root, err := parseHash32(sc.Root)
			if err != nil {
				return chk, bad(0, "share root: %v", err)
			}
			chk.Expect[g.Group] += float64(sc.Accepted) / float64(rate)
			for i, s := range sc.Sample {
				if i > 0 && (s.Index <= sc.Sample[i-1].Index || s.Seq <= sc.Sample[i-1].Seq) {
					return chk, bad(s.Seq, "out of order")
				}
				if s.Seq < sc.FirstSeq || s.Seq > sc.LastSeq {
					return chk, bad(s.Seq, "outside the commitment's shares %d..%d", sc.FirstSeq, sc.LastSeq)
				}
				raw, err := hex.DecodeString(s.Header)
				if err != nil || len(raw) != hashgrid.ShareHeaderSize {
					return chk, bad(s.Seq, "header is not %d bytes of hex", hashgrid.ShareHeaderSize)
				}
				h := pow.DoubleSHA256(raw)
				if !pow.Meets(&h, ts.of(s.Diff)) {
					return chk, bad(s.Seq, "header hashes to %s, which does not meet difficulty %s", h, s.Diff)
				}
				if lv := pool.SampleLevel(&h, ts.of(s.Diff)); lv < bits.TrailingZeros64(rate) {
					return chk, bad(s.Seq, "hash %s does not meet the sample target at rate %d", h, rate)
				}
				path := make([]payout.Hash32, len(s.Proof))
				for j, p := range s.Proof {
					if path[j], err = parseHash32(p); err != nil {
						return chk, bad(s.Seq, "proof: %v", err)
					}
				}
				leaf := ShareLeaf(hashgrid.Share{Seq: s.Seq, Address: s.Address, Diff: s.Diff, Hash: h})
				if r, ok := pathRoot(leaf, s.Index, sc.Accepted, path); !ok || r != root {
					return chk, bad(s.Seq, "its leaf (hash %s) is not at position %d of root %s", h, s.Index, sc.Root)
				}
				if gs := st.workerGroups(rep.Site.ID, PoolWorker{Address: s.Address, Name: s.Worker}); !contains(gs, g.Group) {
					return chk, bad(s.Seq, "worker %s.%s is not one of the group's", s.Address, s.Worker)
				}
				var hdr wire.BlockHeader
				hdr.Deserialize(bytes.NewReader(raw))
				chk.Headers = append(chk.Headers, SampledHeader{Group: g.Group, Seq: s.Seq, Height: s.Height, Header: hdr})
				got++
			}
		}
		chk.Groups[g.Group] = got
		chk.Shares += got
		if p := poissonTail(got, chk.Expect[g.Group]); p < MinSampleTail {
			return chk, &SampleError{Group: g.Group, Problem: fmt.Sprintf(
				"%d sampled shares where the rates predict %.1f (chance %.1e): accepted shares counted without work behind them", got, chk.Expect[g.Group], p)}
		}
	}
	return chk, nil
}

// poissonTail returns P(X <= k) for X Poisson with mean lambda, summed in logs so that
// a mean in the thousands does not underflow term by term.
func poissonTail(k int, lambda float64) float64 {
	if lambda <= 0 {
		return 1
	}
	sum := math.Inf(-1)
	for i := 0; i <= k; i++ {
		lg, _ := math.Lgamma(float64(i) + 1)
		t := -lambda + float64(i)*math.Log(lambda) - lg
		hi, lo := math.Max(sum, t), math.Min(sum, t)
		sum = hi + math.Log1p(math.Exp(lo-hi))
	}
	return math.Exp(sum)
}

func parseHash32(s string) (payout.Hash32, error) {
	var h payout.Hash32
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("%q: want 64 hex digits", clipStr(s))
	}
	copy(h[:], b)
	return h, nil
}
