package registry

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/pow"
)

func TestMerklePaths(t *testing.T) {
	for n := 1; n <= 33; n++ {
		leaves := make([]payout.Hash32, n)
		idx := make([]uint64, n)
		for i := range leaves {
			leaves[i] = payout.Hash32(pow.DoubleSHA256([]byte{byte(n), byte(i)}))
			idx[i] = uint64(i)
		}
		paths := merklePaths(leaves, idx)
		root := payout.MerkleRoot(append([]payout.Hash32(nil), leaves...))
		for i, p := range paths {
			if r, ok := pathRoot(leaves[i], uint64(i), uint64(n), p); !ok || r != root {
				t.Fatalf("n %d leaf %d: path of %d climbs to %x (%v), root %x", n, i, len(p), r, ok, root)
			}
			if n > 1 {
				bad := append([]payout.Hash32(nil), p...)
				bad[0][0] ^= 1
				if r, _ := pathRoot(leaves[i], uint64(i), uint64(n), bad); r == root {
					t.Fatalf("n %d leaf %d: a changed sibling still reaches the root", n, i)
				}
				if r, ok := pathRoot(leaves[i], uint64((i+1)%n), uint64(n), p); ok && r == root {
					t.Fatalf("n %d leaf %d: the path reaches the root from position %d too", n, i, (i+1)%n)
				}
			}
			if _, ok := pathRoot(leaves[i], uint64(i), uint64(n), append(p, root)); ok {
				t.Fatalf("n %d leaf %d: a path one too long accepted", n, i)
			}
		}
	}
}

func TestPoissonTail(t *testing.T) {
	for _, tt := range []struct {
		k      int
		lambda float64
		want   float64
	}{
		{0, 1, 0.36787944117144233},
		{3, 24.6, 5.82e-8},
		{16, 16, 0.5659624},
		{500, 1000, 8.30e-69},
	} {
		got := poissonTail(tt.k, tt.lambda)
		if got < tt.want*0.9 || got > tt.want*1.1 {
			t.Errorf("P(X <= %d | %g) = %g, want about %g", tt.k, tt.lambda, got, tt.want)
		}
	}
}

// sampledShares makes n accepted shares of one worker from start, one a second, each
// with a real header at difficulty 2^-32 (every hash meets it), keeping the header of
// those in the sample at poolRate as the pool does. fake more shares are added between
// them with no header and a hash that meets the share target but no sample target:
// leaves an operator counts with no work behind them.
func sampledShares(start time.Time, n, fake int, worker string, poolRate uint64) []hashgrid.Share {
	var out []hashgrid.Share
	seq := uint64(start.Unix())
	for i := 0; i < n+fake; i++ {
		seq++
		s := hashgrid.Share{Seq: seq, Time: start.Add(time.Duration(i) * time.Second * time.Duration(3600) / time.Duration(n+fake)),
			Address: minerAddr, Worker: worker, Height: 800_000, Diff: 1, Result: hashgrid.ShareAccepted}
		if i%(fake/max(n, 1)+1) != 0 || i/(fake/max(n, 1)+1) >= n {
			// A fake: level 0, three quarters of the way up the target.
			s.Hash[31], s.Hash[30] = 0xbf, 0xff
		} else {
			var hdr [80]byte
			binary.LittleEndian.PutUint32(hdr[0:], 0x20000000)
			binary.LittleEndian.PutUint64(hdr[4:], seq)
			binary.LittleEndian.PutUint32(hdr[76:], uint32(i))
			s.Hash = pow.DoubleSHA256(hdr[:])
			h := chainhash.Hash(s.Hash)
			if in, _ := pool.Sampled(&h, s.Diff, poolRate); in {
				s.Header = &hdr
			}
		}
		out = append(out, s)
	}
	return out
}

// reportFile writes the report of the registry's site over [from, to) as its file bytes.
func reportFile(t *testing.T, r *Registry, from, to time.Time) []byte {
	t.Helper()
	f, _, _, err := r.Report("s1", from, to)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// editSample changes the first sampled share of the report file's miners group.
func editSample(t *testing.T, file []byte, edit func(sc *ShareCommitment)) []byte {
	t.Helper()
	var f ReportFile
	if err := json.Unmarshal(file, &f); err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(f.Report, &rep); err != nil {
		t.Fatal(err)
	}
	for i := range rep.Groups {
		if rep.Groups[i].Group == "miners" {
			edit(&rep.Groups[i].ShareCommitments[0])
		}
	}
	f.Report, _ = json.Marshal(rep)
	b, _ := json.Marshal(f)
	return b
}

func TestShareSample(t *testing.T) {
	r, _ := newRegistry(t)
	buildSite(t, r)
	const poolRate = 4
	all := sampledShares(t0, 3000, 0, "rack1-01", poolRate)
	src := &shareSource{shares: all, workSource: workSource{workers: []hashgrid.Worker{
		{Address: minerAddr, Name: "rack1-01", Accepted: 3000, Work: hashgrid.Work{}.Add(0)}}}}
	if _, err := r.ImportPoolSampled(context.Background(), src, "s1", t0, t0.Add(time.Hour), poolRate); err != nil {
		t.Fatal(err)
	}
	g := r.State().Pool[0].Groups[0]
	wantRate := uint64(1) << sampleLevel(3000, 2)
	if g.PoolSampleRate != poolRate || (g.SampleRate != wantRate && g.SampleRate != 2*wantRate) || len(g.Sample) == 0 || len(g.Sample) > MaxSampleShares {
		t.Fatalf("sample: pool rate %d, rate %d (want %d), %d shares", g.PoolSampleRate, g.SampleRate, wantRate, len(g.Sample))
	}
	// Exactly the shares in the sample at its rate, in order.
	var want []uint64
	for _, s := range all {
		h := chainhash.Hash(s.Hash)
		if in, _ := pool.Sampled(&h, s.Diff, g.SampleRate); in {
			want = append(want, s.Seq)
		}
	}
	if len(want) != len(g.Sample) {
		t.Fatalf("%d shares sampled, %d in the sample at rate %d", len(g.Sample), len(want), g.SampleRate)
	}
	for i, s := range g.Sample {
		if s.Seq != want[i] || s.Worker != "rack1-01" || s.Height != 800_000 {
			t.Errorf("sample %d: %+v, want share %d", i, s, want[i])
		}
	}
	file := reportFile(t, r, t0, t0.Add(time.Hour))
	chk, err := CheckSamples(file)
	if err != nil || chk.Shares != len(g.Sample) || len(chk.Headers) != len(g.Sample) {
		t.Fatalf("CheckSamples: %+v, %v", chk, err)
	}
	if n, err := CheckShareCommitments(context.Background(), src, file); err != nil || n != 1 {
		t.Fatalf("CheckShareCommitments: %d, %v", n, err)
	}
	// Each change to a sampled share is caught with the report alone.
	for name, edit := range map[string]func(sc *ShareCommitment){
		"header nonce": func(sc *ShareCommitment) {
			b, _ := hex.DecodeString(sc.Sample[0].Header)
			b[79] ^= 1
			sc.Sample[0].Header = hex.EncodeToString(b)
		},
		"difficulty": func(sc *ShareCommitment) { sc.Sample[0].Diff++ },
		"address":    func(sc *ShareCommitment) { sc.Sample[0].Address = otherAddr },
		"worker":     func(sc *ShareCommitment) { sc.Sample[0].Worker = "gpu-01" },
		"position":   func(sc *ShareCommitment) { sc.Sample[0].Index++ },
		"proof":      func(sc *ShareCommitment) { sc.Sample[0].Proof[0] = strings.Repeat("0", 64) },
		"rate":       func(sc *ShareCommitment) { sc.SampleRate *= 8 },
		"short header": func(sc *ShareCommitment) {
			sc.Sample[0].Header = sc.Sample[0].Header[:158]
		},
	} {
		_, err := CheckSamples(editSample(t, file, edit))
		var se *SampleError
		if !errors.As(err, &se) || se.Group != "miners" {
			t.Errorf("%s changed: CheckSamples %v", name, err)
		}
	}
	// A sampled share dropped from the report passes alone (the count is Poisson), and
	// is caught against the store.
	dropped := editSample(t, file, func(sc *ShareCommitment) { sc.Sample = sc.Sample[1:] })
	if _, err := CheckShareCommitments(context.Background(), src, dropped); err == nil || !strings.Contains(err.Error(), "the report commits to") {
		t.Errorf("a sampled share dropped: against the store %v", err)
	}
}

// TestShareSampleCatchesInflation: a pool whose counts hold forty leaves without work
// for each real share gives samples far smaller than the counts predict; over a report
// of six hours, verify flags it. The honest pool's report passes.
func TestShareSampleCatchesInflation(t *testing.T) {
	for _, fake := range []int{0, 40 * 300} {
		r, _ := newRegistry(t)
		buildSite(t, r)
		for h := range 6 {
			from := t0.Add(time.Duration(h) * time.Hour)
			ss := sampledShares(from, 300, fake, "rack1-01", 1)
			src := &shareSource{shares: ss, workSource: workSource{workers: []hashgrid.Worker{
				{Address: minerAddr, Name: "rack1-01", Accepted: uint64(len(ss))}}}}
			if _, err := r.ImportPoolSampled(context.Background(), src, "s1", from, from.Add(time.Hour), 1); err != nil {
				t.Fatal(err)
			}
		}
		chk, err := CheckSamples(reportFile(t, r, t0, t0.Add(6*time.Hour)))
		var se *SampleError
		switch {
		case fake == 0 && err != nil:
			t.Errorf("honest pool: %v", err)
		case fake > 0 && (!errors.As(err, &se) || !strings.Contains(se.Problem, "without work")):
			t.Errorf("counts inflated ×41: %v (%d sampled, %.1f expected)", err, chk.Groups["miners"], chk.Expect["miners"])
		}
		t.Logf("fake %d: %d sampled, %.1f expected: %v", fake, chk.Groups["miners"], chk.Expect["miners"], err)
	}
}

// TestSampleChoose: a sample reaching down to a share without a header (the declared
// pool rate below the real one) is refused; a pool that kept no header at all gives
// no sample; a sample over the bound at its rate goes one rate up.
func TestSampleChoose(t *testing.T) {
	leaves := make([]payout.Hash32, 10)
	hdr := new([80]byte)
	cand := func(index uint64, level int) sampleCand {
		return sampleCand{s: hashgrid.Share{Seq: index + 1, Header: hdr}, index: index, level: level}
	}
	sm := newSampler()
	sm.missing, sm.missingSeq = 5, 3
	sm.cands = []sampleCand{cand(7, 7)}
	if _, _, err := sm.choose(leaves, 0); err == nil || !strings.Contains(err.Error(), "kept no header") {
		t.Errorf("a share without a header in the sample: %v", err)
	}
	sm.cands = nil
	if rate, sample, err := sm.choose(leaves, 0); rate != 0 || sample != nil || err != nil {
		t.Errorf("no header at all: rate %d, %d sampled, %v; want no sample", rate, len(sample), err)
	}
	// 17 shares call for rate 2 (17>>1 = 8 expected); all 17 are at level 1 or more,
	// over the bound, so the rate goes to 4, where 3 are.
	if k := sampleLevel(17, 0); k != 1 {
		t.Fatalf("sampleLevel(17, 0) = %d, want 1", k)
	}
	leaves = make([]payout.Hash32, 17)
	sm = newSampler()
	for i := range 17 {
		lv := 1
		if i < 3 {
			lv = 2
		}
		sm.cands = append(sm.cands, cand(uint64(i), lv))
	}
	rate, sample, err := sm.choose(leaves, 0)
	if err != nil || rate != 4 || len(sample) != 3 || sample[2].Seq != 3 || len(sample[0].Proof) != 5 {
		t.Errorf("over the bound: rate %d, %+v, %v; want rate 4 and shares 1..3 with 5-step paths", rate, sample, err)
	}
}
