package market

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
)

// ShareSample is one share a destination accepted, with everything needed to re-hash
// it: the destination's job, its extranonce1, the full extranonce2 the market sent,
// and the header fields.
type ShareSample struct {
	Time         time.Time `json:"time"`
	Worker       string    `json:"worker"` // seller address/worker
	JobID        string    `json:"job_id"` // the destination's job id
	PrevHash     string    `json:"prevhash"`
	Coinb1       string    `json:"coinb1"`
	Extranonce1  string    `json:"extranonce1"`
	Extranonce2  string    `json:"extranonce2"`
	Coinb2       string    `json:"coinb2"`
	MerkleBranch []string  `json:"merkle_branch"`
	Version      string    `json:"version"` // the header's version, rolled bits included
	NBits        string    `json:"nbits"`
	NTime        string    `json:"ntime"`
	Nonce        string    `json:"nonce"`
	Difficulty   float64   `json:"difficulty"`       // the destination's difficulty: the share's weight
	DiffFixed    uint64    `json:"difficulty_fixed"` // the same as a hashgrid.Diff (2^32 = 1)
	Hash         string    `json:"hash"`             // block header hash, display order

	segment int // the order's segment (owner) the share was delivered for
}

func (m *Market) sampleLocked(o *order, segment int, j *mjob, worker string, now time.Time, upEN2 []byte, fwd *stratum.Submit, version uint32, hash chainhash.Hash) {
	branch := j.n.MerkleBranch
	if branch == nil {
		branch = []string{}
	}
	s := ShareSample{
		Time: now.UTC(), Worker: worker, JobID: j.n.JobID, PrevHash: j.n.PrevHash,
		Coinb1: j.n.Coinb1, Extranonce1: hex.EncodeToString(j.en1), Extranonce2: hex.EncodeToString(upEN2), Coinb2: j.n.Coinb2,
		MerkleBranch: branch, Version: fmt.Sprintf("%08x", version), NBits: j.n.NBits, NTime: fwd.NTime, Nonce: fwd.Nonce,
		Difficulty: j.upDiff.Float(), DiffFixed: uint64(j.upDiff), Hash: hash.String(), segment: segment,
	}
	if len(o.samples) < m.cfg.SampleSize {
		o.samples = append(o.samples, s)
		return
	}
	o.samples[o.sampleAt] = s
	o.sampleAt = (o.sampleAt + 1) % m.cfg.SampleSize
}

// Rehash rebuilds the share's header from its fields and returns its hash.
func (s *ShareSample) Rehash() (chainhash.Hash, error) {
	var h chainhash.Hash
	prev, err := pow.ParseStratumPrevHash(s.PrevHash)
	if err != nil {
		return h, err
	}
	var cb []byte
	for _, f := range []struct{ name, v string }{{"coinb1", s.Coinb1}, {"extranonce1", s.Extranonce1}, {"extranonce2", s.Extranonce2}, {"coinb2", s.Coinb2}} {
		b, err := hex.DecodeString(f.v)
		if err != nil {
			return h, fmt.Errorf("%s: %w", f.name, err)
		}
		cb = append(cb, b...)
	}
	var branch []chainhash.Hash
	for i, b := range s.MerkleBranch {
		var x chainhash.Hash
		if len(b) != 64 {
			return h, fmt.Errorf("merkle branch %d: not 32 bytes", i)
		}
		if _, err := hex.Decode(x[:], []byte(b)); err != nil {
			return h, fmt.Errorf("merkle branch %d: %w", i, err)
		}
		branch = append(branch, x)
	}
	var f [4]uint32
	for i, v := range []struct{ name, v string }{{"version", s.Version}, {"nbits", s.NBits}, {"ntime", s.NTime}, {"nonce", s.Nonce}} {
		x, ok := parseHex32(v.v)
		if !ok {
			return h, fmt.Errorf("%s: want 8 hex digits, got %q", v.name, v.v)
		}
		f[i] = x
	}
	root := pow.MerkleRoot(pow.DoubleSHA256(cb), branch)
	var hdr [80]byte
	pow.Header(&hdr, f[0], &prev, &root, f[2], f[1], f[3])
	return pow.DoubleSHA256(hdr[:]), nil
}

// AuditReport is what re-hashing a sample found.
type AuditReport struct {
	Shares   int           `json:"shares"`
	Valid    int           `json:"valid"`
	Problems []string      `json:"problems,omitempty"`
	Work     hashgrid.Work `json:"-"`
	// AcceptedWork is Σ difficulty of the valid shares; Hashes is that · 2^32.
	AcceptedWork float64 `json:"accepted_work"`
	Hashes       float64 `json:"hashes"`
	// From and To bound the valid shares' times; Speed is Hashes over that span, in H/s.
	From  time.Time `json:"from,omitzero"`
	To    time.Time `json:"to,omitzero"`
	Speed float64   `json:"speed"`
}

// Audit re-hashes every sample, checks that the hash is the one reported and that it
// meets the sample's difficulty, and sums the work of those that pass.
func Audit(samples []ShareSample) AuditReport {
	r := AuditReport{Shares: len(samples)}
	for i := range samples {
		s := &samples[i]
		h, err := s.Rehash()
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("share %d: %v", i, err))
			continue
		}
		if h.String() != s.Hash {
			r.Problems = append(r.Problems, fmt.Sprintf("share %d: hash is %s, sample says %s", i, h, s.Hash))
			continue
		}
		d := hashgrid.Diff(s.DiffFixed)
		if d == 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("share %d: no difficulty", i))
			continue
		}
		if !pow.Meets(&h, pow.DiffTarget(d)) {
			r.Problems = append(r.Problems, fmt.Sprintf("share %d: hash %s does not meet difficulty %s", i, h, d))
			continue
		}
		r.Valid++
		r.Work = r.Work.Add(d)
		if r.From.IsZero() || s.Time.Before(r.From) {
			r.From = s.Time
		}
		if s.Time.After(r.To) {
			r.To = s.Time
		}
	}
	r.AcceptedWork = r.Work.Float()
	r.Hashes = r.Work.Hashes()
	if el := r.To.Sub(r.From).Seconds(); el > 0 {
		r.Speed = r.Hashes / el
	}
	return r
}
