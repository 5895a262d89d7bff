package stratum

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid/pow"
)

// Job is a mining.notify decoded into the bytes a block header is built from: what a
// miner hashes and what a proxy re-hashes to check a share.
type Job struct {
	ID      string
	Prev    chainhash.Hash // internal byte order
	Coinb1  []byte
	Coinb2  []byte
	Branch  []chainhash.Hash
	Version uint32
	Bits    uint32
	NTime   uint32
	Clean   bool
}

// Decode checks and decodes the notify's hex fields.
func (n *Notify) Decode() (*Job, error) {
	j := &Job{ID: n.JobID, Clean: n.CleanJobs}
	var err error
	if j.Prev, err = pow.ParseStratumPrevHash(n.PrevHash); err != nil {
		return nil, err
	}
	if j.Coinb1, err = hex.DecodeString(n.Coinb1); err != nil {
		return nil, fmt.Errorf("stratum: coinb1: %w", err)
	}
	if j.Coinb2, err = hex.DecodeString(n.Coinb2); err != nil {
		return nil, fmt.Errorf("stratum: coinb2: %w", err)
	}
	j.Branch = make([]chainhash.Hash, len(n.MerkleBranch))
	for i, b := range n.MerkleBranch {
		if len(b) != 64 {
			return nil, errors.New("stratum: merkle branch entry is not 32 bytes")
		}
		if _, err := hex.Decode(j.Branch[i][:], []byte(b)); err != nil {
			return nil, fmt.Errorf("stratum: merkle branch: %w", err)
		}
	}
	for _, f := range []struct {
		s   string
		dst *uint32
	}{{n.Version, &j.Version}, {n.NBits, &j.Bits}, {n.NTime, &j.NTime}} {
		var b [4]byte
		if len(f.s) != 8 {
			return nil, fmt.Errorf("stratum: notify field %q is not 8 hex digits", f.s)
		}
		if _, err := hex.Decode(b[:], []byte(f.s)); err != nil {
			return nil, fmt.Errorf("stratum: notify field %q: %w", f.s, err)
		}
		*f.dst = binary.BigEndian.Uint32(b[:])
	}
	return j, nil
}
