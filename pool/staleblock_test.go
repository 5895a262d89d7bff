package pool_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node/regtest"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/sqlite"
	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stream"
)

// solve hashes w's job on the client's extranonce1 until a header meets the job's
// difficulty, trying at most maxTries nonces, and returns the submission and its hash.
func solve(tb testing.TB, w stratum.Work, en2 uint64, maxTries uint32) (*stratum.Submit, chainhash.Hash) {
	tb.Helper()
	j, err := w.Notify.Decode()
	if err != nil {
		tb.Fatal(err)
	}
	e2 := binary.BigEndian.AppendUint64(nil, en2)[8-w.Extranonce2Size:]
	cb := append(append(append(append([]byte(nil), j.Coinb1...), w.Extranonce1...), e2...), j.Coinb2...)
	root := pow.MerkleRoot(pow.DoubleSHA256(cb), j.Branch)
	tgt := pow.DiffTarget(hashgrid.DiffFromFloat(w.Difficulty))
	var hdr [80]byte
	pow.Header(&hdr, j.Version, &j.Prev, &root, j.NTime, j.Bits, 0)
	for nonce := range maxTries {
		binary.LittleEndian.PutUint32(hdr[76:], nonce)
		if h := pow.DoubleSHA256(hdr[:]); pow.Meets(&h, tgt) {
			return &stratum.Submit{Worker: "", JobID: j.ID, Extranonce2: hex.EncodeToString(e2),
				NTime: fmt.Sprintf("%08x", j.NTime), Nonce: fmt.Sprintf("%08x", nonce)}, h
		}
	}
	tb.Fatalf("no share at difficulty %g in %d nonces", w.Difficulty, maxTries)
	panic("unreachable")
}

// TestStaleJobBlockSubmitted runs the pool on a real btcd regtest node, supersedes a
// miner's job with a clean template on the same previous block (the job turns
// stale), and submits a share of the old job that solves a block: the pool must hash
// it, answer it accepted and hand the block to the node, which takes it.
func TestStaleJobBlockSubmitted(t *testing.T) {
	n := regtest.StartT(t)
	nd := n.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	dir := t.TempDir()
	sl, err := stream.Open(filepath.Join(dir, "shares"), stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	db, err := sqlite.Open(filepath.Join(dir, "pool.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	addr := regtest.TestAddress()
	out, err := pool.SingleAddress(addr, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(pool.Config{Network: &chaincfg.RegressionNetParams, Outputs: out}, nd, stream.ShareSink{S: sl}, db)
	if err != nil {
		t.Fatal(err)
	}
	t1, err := nd.BlockTemplate(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.UpdateTemplate(t1, true); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(l)
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		p.Shutdown(sctx)
	}()

	// d=1e-6: about 4,300 hashes a share, and every share meets regtest's target.
	c, old := firstWork(t, ctx, stratum.ClientConfig{URL: "stratum+tcp://" + l.Addr().String(), User: addr + ".w", Password: "d=0.000001"})

	// A clean template on the same previous block: the job just sent is now stale.
	t2, err := nd.BlockTemplate(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if t2.PrevHash != t1.PrevHash {
		t.Fatalf("the tip moved: %s, then %s", t1.PrevHash, t2.PrevHash)
	}
	if err := p.UpdateTemplate(t2, true); err != nil {
		t.Fatal(err)
	}
	if w := nextWork(t, ctx, c); !w.Notify.CleanJobs || w.Notify.JobID == old.Notify.JobID {
		t.Fatalf("job %s (clean %v) after job %s", w.Notify.JobID, w.Notify.CleanJobs, old.Notify.JobID)
	}

	sub, hash := solve(t, old, 1, 1<<24)
	sub.Worker = addr + ".w"
	if err := c.Submit(ctx, sub); err != nil {
		t.Fatalf("block-solving share on the superseded job: %v", err)
	}
	for {
		best, err := nd.BestBlockHash(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if best == hash {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node's tip %s, want the block %s", best, hash)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// The pool records it as accepted once the node has it on its chain.
	for {
		bs, err := db.Blocks(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) == 1 && bs[0].Hash == hash && bs[0].Status == hashgrid.BlockAccepted {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("blocks recorded: %+v", bs)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
