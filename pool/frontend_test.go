package pool_test

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
)

const frontEndTestAddr = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"

// keptShares is a share sink that keeps every share, durable at once.
type keptShares struct {
	mu     sync.Mutex
	shares []hashgrid.Share
}

func (k *keptShares) Record(s *hashgrid.Share, done func(uint64, error)) {
	k.mu.Lock()
	k.shares = append(k.shares, *s)
	seq := uint64(len(k.shares))
	k.mu.Unlock()
	done(seq, nil)
}

func (k *keptShares) accepted() []hashgrid.Share {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []hashgrid.Share
	for _, s := range k.shares {
		if s.Result == hashgrid.ShareAccepted {
			out = append(out, s)
		}
	}
	return out
}

// frontEnd serves a regtest pool numbered fe on the template every test front-end
// gets, paying frontEndTestAddr.
func frontEnd(t *testing.T, fe int) (*keptShares, string) {
	t.Helper()
	out, err := pool.SingleAddress(frontEndTestAddr, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	sink := &keptShares{}
	_, addr := servePool(t, pool.Config{Network: &chaincfg.RegressionNetParams, Outputs: out, FrontEnd: fe}, sink)
	return sink, addr
}

func TestFrontEndConfig(t *testing.T) {
	out, err := pool.SingleAddress(frontEndTestAddr, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	for _, fe := range []int{-1, pool.MaxFrontEnds + 1} {
		if _, err := pool.New(pool.Config{Network: &chaincfg.RegressionNetParams, Outputs: out, FrontEnd: fe}, nil, nil, nil); err == nil {
			t.Errorf("front-end %d accepted", fe)
		}
	}
	for _, fe := range []int{0, 1, pool.MaxFrontEnds} {
		if _, err := pool.New(pool.Config{Network: &chaincfg.RegressionNetParams, Outputs: out, FrontEnd: fe}, nil, nil, nil); err != nil {
			t.Errorf("front-end %d: %v", fe, err)
		}
	}
	if pool.FrontEndExtranonce1s != 1<<24 {
		t.Errorf("%d extranonce1s per front-end, want 2^24", pool.FrontEndExtranonce1s)
	}
}

// TestFrontEndsNeverShareWork runs two front-ends (1 and 2) on the same template and
// opens many connections to each, in rounds, every connection asking to resume a
// session of the other front-end: no extranonce1 is handed out by both, each carries
// its front-end's number, and so do the job ids.
func TestFrontEndsNeverShareWork(t *testing.T) {
	_, addr1 := frontEnd(t, 1)
	_, addr2 := frontEnd(t, 2)
	owner := map[string]int{} // extranonce1 → front-end
	last := map[int]string{1: "00000001", 2: "00000001"}
	const rounds, perRound = 3, 60
	for round := range rounds {
		var open []*rawMiner
		for i := range perRound {
			for fe, addr := range map[int]string{1: addr1, 2: addr2} {
				// Resume the other front-end's last session: refused, a fresh one given.
				m := dialRaw(t, addr, last[3-fe], frontEndTestAddr+".w", "x")
				en1 := hex.EncodeToString(m.en1)
				if len(m.en1) != 4 || pool.Extranonce1FrontEnd(binary.BigEndian.Uint32(m.en1)) != fe {
					t.Fatalf("round %d conn %d: front-end %d handed out extranonce1 %s", round, i, fe, en1)
				}
				if o, ok := owner[en1]; ok && o != fe {
					t.Fatalf("extranonce1 %s handed out by front-ends %d and %d", en1, o, fe)
				}
				owner[en1], last[fe] = fe, en1
				if got, ok := pool.JobFrontEnd(m.job.ID); !ok || got != fe {
					t.Fatalf("front-end %d sent job id %s (front-end %d, %v)", fe, m.job.ID, got, ok)
				}
				open = append(open, m)
			}
		}
		for _, m := range open {
			m.nc.Close()
		}
	}
	if len(owner) < rounds*perRound {
		t.Errorf("%d distinct extranonce1s over %d connections", len(owner), 2*rounds*perRound)
	}
}

// TestShareNotReplayedOnOtherFrontEnd: a share accepted on front-end 1, submitted
// again byte for byte on front-end 2 by a miner that reconnected there (asking to
// resume its session), is rejected: front-end 2 never issued that job id nor that
// extranonce1, so the share cannot count twice in the log both feed.
func TestShareNotReplayedOnOtherFrontEnd(t *testing.T) {
	sink1, addr1 := frontEnd(t, 1)
	sink2, addr2 := frontEnd(t, 2)
	user := frontEndTestAddr + ".w"
	m1 := dialRaw(t, addr1, "", user, "d=0.00001")
	hdr, e2 := m1.header(7)
	tgt := pow.DiffTarget(hashgrid.DiffFromFloat(m1.diff))
	nonce := uint32(0)
	for ; ; nonce++ {
		binary.LittleEndian.PutUint32(hdr[76:], nonce)
		if h := pow.DoubleSHA256(hdr[:]); pow.Meets(&h, tgt) {
			break
		}
		if nonce == 1<<26 {
			t.Fatalf("no share at difficulty %g", m1.diff)
		}
	}
	line := m1.submitLine(10, user, e2, nonce)
	fmt.Fprint(m1.nc, line)
	if res, serr := m1.reply(t, 10); serr != nil || string(res) != "true" {
		t.Fatalf("front-end 1: share refused: %s %v", res, serr)
	}
	// The same share again on front-end 1 is a duplicate.
	fmt.Fprint(m1.nc, m1.submitLine(11, user, e2, nonce))
	if _, serr := m1.reply(t, 11); serr == nil || serr.Code != stratum.ErrCodeDuplicate {
		t.Errorf("front-end 1: resubmission answered %v, want a duplicate", serr)
	}
	m1.nc.Close()

	m2 := dialRaw(t, addr2, hex.EncodeToString(m1.en1), user, "d=0.00001")
	if hex.EncodeToString(m2.en1) == hex.EncodeToString(m1.en1) {
		t.Fatalf("front-end 2 resumed front-end 1's extranonce1 %x", m1.en1)
	}
	if m2.job.ID == m1.job.ID {
		t.Fatalf("front-ends 1 and 2 both issued job id %s", m1.job.ID)
	}
	fmt.Fprint(m2.nc, line) // front-end 1's job id, extranonce2, ntime and nonce
	if res, serr := m2.reply(t, 10); serr == nil {
		t.Fatalf("front-end 2 accepted front-end 1's share: %s", res)
	} else if serr.Code != stratum.ErrCodeJobNotFound {
		t.Errorf("front-end 2 answered %v, want job not found", serr)
	}
	// The one accepted share is front-end 1's, and its recorded job id says so.
	if got := sink2.accepted(); len(got) != 0 {
		t.Errorf("front-end 2 recorded %d accepted shares", len(got))
	}
	got := sink1.accepted()
	if len(got) != 1 {
		t.Fatalf("front-end 1 recorded %d accepted shares, want 1", len(got))
	}
	if fe, ok := pool.JobFrontEnd(got[0].JobID); !ok || fe != 1 {
		t.Errorf("recorded job id %q: front-end %d (%v), want 1", got[0].JobID, fe, ok)
	}
}
