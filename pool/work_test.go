package pool

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
)

// block540107 is mainnet block 540107, a segwit block with 230 transactions.
const block540107 = "testdata/block-00000000000000000021868c2cefc52a480d173c849412fe81c4e5ab806f94ab.blk"

func loadBlock(tb testing.TB) *wire.MsgBlock {
	tb.Helper()
	b, err := os.ReadFile(block540107)
	if err != nil {
		tb.Fatal(err)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(b)); err != nil {
		tb.Fatal(err)
	}
	return &blk
}

func TestMerkleBranchRealBlock(t *testing.T) {
	blk := loadBlock(t)
	var txids []chainhash.Hash
	for _, tx := range blk.Transactions[1:] {
		txids = append(txids, tx.TxHash())
	}
	branch := pow.MerkleBranch(txids)
	if got, want := len(branch), 8; got != want { // ceil(log2(230))
		t.Errorf("branch length = %d, want %d", got, want)
	}
	root := pow.MerkleRoot(blk.Transactions[0].TxHash(), branch)
	if root != blk.Header.MerkleRoot {
		t.Errorf("merkle root = %s, want %s", root, blk.Header.MerkleRoot)
	}
}

func TestMerkleBranchSmall(t *testing.T) {
	// For n leaves the root from the branch must equal a plain merkle tree's root.
	for n := 0; n <= 9; n++ {
		leaves := make([]chainhash.Hash, n+1)
		for i := range leaves {
			leaves[i] = pow.DoubleSHA256([]byte{byte(i)})
		}
		want := plainRoot(leaves)
		got := pow.MerkleRoot(leaves[0], pow.MerkleBranch(leaves[1:]))
		if got != want {
			t.Errorf("%d transactions: root %s, want %s", n, got, want)
		}
	}
}

func plainRoot(level []chainhash.Hash) chainhash.Hash {
	for len(level) > 1 {
		if len(level)%2 == 1 {
			level = append(level, level[len(level)-1])
		}
		var next []chainhash.Hash
		for i := 0; i < len(level); i += 2 {
			next = append(next, pow.HashPair(level[i], level[i+1]))
		}
		level = next
	}
	return level[0]
}

func TestHeaderHashAndTargets(t *testing.T) {
	blk := loadBlock(t)
	h := blk.Header.BlockHash()
	if got, want := h.String(), "00000000000000000021868c2cefc52a480d173c849412fe81c4e5ab806f94ab"; got != want {
		t.Fatalf("block hash = %s, want %s", got, want)
	}
	netTgt, err := pow.CompactTarget(blk.Header.Bits)
	if err != nil {
		t.Fatal(err)
	}
	if !pow.HashTarget(&h).LE(netTgt) {
		t.Error("real block hash does not meet its own nBits")
	}
	// The network difficulty of bits 1729d72d (September 2018) was 6,727,225,469,722.53.
	nd := netTgt.Difficulty()
	if math.Abs(nd-6727225469722.53) > 1 {
		t.Errorf("network difficulty = %.2f, want 6727225469722.53", nd)
	}
	if d := pow.HashDifficulty(&h); d < nd {
		t.Errorf("block hash difficulty %g below network difficulty %g", d, nd)
	}
	// Difficulty 1's target is 0x00000000FFFF0000...0000, the same as compact 1d00ffff.
	one, _ := pow.CompactTarget(0x1d00ffff)
	if got := pow.DiffTarget(hashgrid.DiffOne); got != one {
		t.Errorf("difficulty 1 target = %x, want %x", got, one)
	}
	if got, want := one[3], uint64(0x00000000FFFF0000); got != want {
		t.Errorf("difficulty 1 top word = %016x, want %016x", got, want)
	}
	// Difficulty 2 halves the target.
	two := pow.DiffTarget(2 * hashgrid.DiffOne)
	if two[3] != one[3]/2 {
		t.Errorf("difficulty 2 top word = %016x, want %016x", two[3], one[3]/2)
	}
	if _, err := pow.CompactTarget(0x1d80ffff); err == nil {
		t.Error("negative compact target accepted")
	}
}

func TestCoinbaseHeightEncoding(t *testing.T) {
	tests := []struct {
		height int64
		push   string
	}{
		{1, "51"}, {16, "60"}, {17, "0111"}, {127, "017f"}, {128, "028000"}, {255, "02ff00"},
		{256, "020001"}, {540107, "03cb3d08"}, {8388608, "0400008000"},
	}
	for _, tt := range tests {
		cb1, _, err := coinbaseParts(tt.height, nil, 4, 8, []Output{{Value: 1, Script: []byte{0x51}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// version(4) ‖ 01 ‖ prevout(36) ‖ script length(1) ‖ height push
		got := hex.EncodeToString(cb1[42:])
		if got != tt.push {
			t.Errorf("height %d: push %s, want %s", tt.height, got, tt.push)
		}
		if int(cb1[41]) != len(tt.push)/2+12 {
			t.Errorf("height %d: script length %d, want %d", tt.height, cb1[41], len(tt.push)/2+12)
		}
	}
}

func TestCoinbaseLayout(t *testing.T) {
	// Exact bytes for a small coinbase: height 17, tag "hg", two outputs, a witness commitment.
	commit, _ := hex.DecodeString("6a24aa21a9ed" + "11223344556677889900aabbccddeeff00112233445566778899aabbccddeeff")
	cb1, cb2, err := coinbaseParts(17, []byte("hg"), 4, 4, []Output{{Value: 5000000000, Script: []byte{0x51}}, {Value: 7, Script: []byte{0x52, 0x53}}}, commit)
	if err != nil {
		t.Fatal(err)
	}
	want1 := "01000000" + "01" + "0000000000000000000000000000000000000000000000000000000000000000" + "ffffffff" + "0c" + "0111" + "6867"
	want2 := "ffffffff" + "03" + "00f2052a01000000" + "01" + "51" + "0700000000000000" + "02" + "5253" + "0000000000000000" + "26" + hex.EncodeToString(commit) + "00000000"
	if got := hex.EncodeToString(cb1); got != want1 {
		t.Errorf("coinb1\n got %s\nwant %s", got, want1)
	}
	if got := hex.EncodeToString(cb2); got != want2 {
		t.Errorf("coinb2\n got %s\nwant %s", got, want2)
	}
	// The assembled coinbase parses as a transaction paying those outputs.
	w := &work{coinb1: cb1, coinb2: cb2}
	var tx wire.MsgTx
	if err := tx.DeserializeNoWitness(bytes.NewReader(w.coinbase(nil, 0xdeadbeef, []byte{1, 2, 3, 4}))); err != nil {
		t.Fatal(err)
	}
	if len(tx.TxOut) != 3 || tx.TxOut[0].Value != 5000000000 || tx.TxOut[2].Value != 0 {
		t.Errorf("outputs %+v", tx.TxOut)
	}
	if got, want := hex.EncodeToString(tx.TxIn[0].SignatureScript), "01116867deadbeef01020304"; got != want {
		t.Errorf("script %s, want %s", got, want)
	}
	if _, _, err := coinbaseParts(17, make([]byte, MaxTagBytes+1), 4, 8, nil, nil); err == nil {
		t.Error("oversized tag accepted")
	}
	if _, _, err := coinbaseParts(17, nil, 4, 8, []Output{{Value: -1}}, nil); err == nil {
		t.Error("negative output accepted")
	}
}

func TestStratumPrevHash(t *testing.T) {
	var h chainhash.Hash
	for i := range h {
		h[i] = byte(i)
	}
	want := "03020100070605040b0a09080f0e0d0c13121110171615141b1a19181f1e1d1c"
	if got := pow.StratumPrevHash(h); got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

// realWork builds a work whose coinbase is block 540107's, split around 12 bytes of
// its script (treated as extranonce1 ‖ extranonce2), as the block's pool might have.
func realWork(t *testing.T, blk *wire.MsgBlock) (w *work, en1 uint32, en2 string) {
	t.Helper()
	var cb bytes.Buffer
	blk.Transactions[0].SerializeNoWitness(&cb)
	raw := cb.Bytes()
	script := blk.Transactions[0].TxIn[0].SignatureScript
	off := bytes.Index(raw, script) + 4 // after the height push
	en1 = binary.BigEndian.Uint32(raw[off:])
	en2 = hex.EncodeToString(raw[off+4 : off+12])
	var txids []chainhash.Hash
	var tmplTxs []node.TemplateTx
	for _, tx := range blk.Transactions[1:] {
		var b bytes.Buffer
		tx.Serialize(&b)
		txids = append(txids, tx.TxHash())
		tmplTxs = append(tmplTxs, node.TemplateTx{Data: b.Bytes(), TxID: tx.TxHash()})
	}
	netTgt, _ := pow.CompactTarget(blk.Header.Bits)
	w = &work{
		tmpl:    &node.Template{MinTime: blk.Header.Timestamp.Unix() - 3600, Transactions: tmplTxs, Height: 540107},
		height:  540107,
		version: uint32(blk.Header.Version),
		bits:    blk.Header.Bits,
		prev:    blk.Header.PrevBlock,
		coinb1:  raw[:off],
		coinb2:  raw[off+12:],
		branch:  pow.MerkleBranch(txids),
		netTgt:  netTgt,
		en1Size: 4,
		en2Size: 8,
		witness: true,
		stale:   new(atomic.Bool),
	}
	return w, en1, en2
}

func testPool(t *testing.T, now time.Time) *Pool {
	t.Helper()
	out, err := SingleAddress("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Network: &chaincfg.RegressionNetParams, Outputs: out, Now: func() time.Time { return now }}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateRealBlock(t *testing.T) {
	blk := loadBlock(t)
	hdr := blk.Header
	now := hdr.Timestamp.Add(time.Minute)
	p := testPool(t, now)
	hex8 := func(v uint32) string { return fmt.Sprintf("%08x", v) }

	type tc struct {
		name     string
		diff     float64
		jobVer   uint32 // the job's version (the block's is 0x20000000)
		mask     uint32
		sub      stratum.Submit
		stale    bool
		want     hashgrid.ShareResult
		wantCode int
		block    bool
	}
	w0, en1, en2 := realWork(t, blk)
	base := stratum.Submit{Worker: "w", JobID: "1", Extranonce2: en2, NTime: hex8(uint32(hdr.Timestamp.Unix())), Nonce: hex8(hdr.Nonce)}
	with := func(f func(*stratum.Submit)) stratum.Submit { s := base; f(&s); return s }
	tests := []tc{
		{name: "real block at share difficulty 65536", diff: 65536, jobVer: 0x20000000, sub: base, want: hashgrid.ShareAccepted, block: true},
		{name: "real block at network difficulty", diff: 7.0e12 / 4096, jobVer: 0x20000000, sub: base, want: hashgrid.ShareAccepted, block: true},
		// BIP 310: job version has bits inside the mask; the miner rolls them to zero.
		// (job & ~mask) | (bits & mask) rebuilds 0x20000000; OR or XOR would not.
		{name: "version rolled inside mask", diff: 1, jobVer: 0x20006000, mask: 0x1fffe000, sub: with(func(s *stratum.Submit) { s.VersionBits = "00000000" }), want: hashgrid.ShareAccepted, block: true},
		{name: "full version sent as bits", diff: 1, jobVer: 0x20006000, mask: 0x1fffe000, sub: with(func(s *stratum.Submit) { s.VersionBits = "20000000" }), want: hashgrid.ShareAccepted, block: true},
		{name: "version bits outside mask", diff: 1, jobVer: 0x20000000, mask: 0x1fffe000, sub: with(func(s *stratum.Submit) { s.VersionBits = "00000001" }), want: hashgrid.ShareInvalid, wantCode: stratum.ErrCodeOther},
		{name: "no rolling: job version used", diff: 1, jobVer: 0x20006000, sub: base, want: hashgrid.ShareLowDiff, wantCode: stratum.ErrCodeLowDifficulty},
		// Changing the nonce gives an unrelated hash: a share at the smallest difficulty
		// (2^-32, whose target is 0xffff·2^240), not a block.
		{name: "share but not block", diff: math.Exp2(-32), jobVer: 0x20000000, sub: with(func(s *stratum.Submit) { s.Nonce = hex8(hdr.Nonce + 1) }), want: hashgrid.ShareAccepted},
		{name: "low difficulty", diff: 1, jobVer: 0x20000000, sub: with(func(s *stratum.Submit) { s.Nonce = hex8(hdr.Nonce + 1) }), want: hashgrid.ShareLowDiff, wantCode: stratum.ErrCodeLowDifficulty},
		{name: "at the largest share difficulty", diff: 4e9, jobVer: 0x20000000, sub: base, want: hashgrid.ShareAccepted, block: true},
		// A stale job's share is hashed: one that solves a block is taken and submitted
		// (the node decides), any other is stale.
		{name: "stale job, block solved", diff: 1, jobVer: 0x20000000, sub: base, stale: true, want: hashgrid.ShareAccepted, block: true},
		{name: "stale job, share but not block", diff: math.Exp2(-32), jobVer: 0x20000000, sub: with(func(s *stratum.Submit) { s.Nonce = hex8(hdr.Nonce + 1) }), stale: true, want: hashgrid.ShareStale, wantCode: stratum.ErrCodeJobNotFound},
		{name: "stale job, low difficulty", diff: 1, jobVer: 0x20000000, sub: with(func(s *stratum.Submit) { s.Nonce = hex8(hdr.Nonce + 1) }), stale: true, want: hashgrid.ShareStale, wantCode: stratum.ErrCodeJobNotFound},
		{name: "unknown job", diff: 1, jobVer: 0x20000000, sub: with(func(s *stratum.Submit) { s.JobID = "2" }), want: hashgrid.ShareStale, wantCode: stratum.ErrCodeJobNotFound},
		{name: "job id not hex", diff: 1, jobVer: 0x20000000, sub: with(func(s *stratum.Submit) { s.JobID = "zz" }), want: hashgrid.ShareStale, wantCode: stratum.ErrCodeJobNotFound},
		{name: "short extranonce2", diff: 1, jobVer: 0x20000000, sub: with(func(s *stratum.Submit) { s.Extranonce2 = en2[:14] }), want: hashgrid.ShareInvalid, wantCode: stratum.ErrCodeOther},
		{name: "extranonce2 not hex", diff: 1, jobVer: 0x20000000, sub: with(func(s *stratum.Submit) { s.Extranonce2 = "zz" + en2[2:] }), want: hashgrid.ShareInvalid, wantCode: stratum.ErrCodeOther},
		{name: "ntime too far ahead", diff: 1, jobVer: 0x20000000, sub: with(func(s *stratum.Submit) { s.NTime = hex8(uint32(now.Unix()) + 7001) }), want: hashgrid.ShareInvalid, wantCode: stratum.ErrCodeOther},
		{name: "ntime before mintime", diff: 1, jobVer: 0x20000000, sub: with(func(s *stratum.Submit) { s.NTime = hex8(uint32(hdr.Timestamp.Unix()) - 3601) }), want: hashgrid.ShareInvalid, wantCode: stratum.ErrCodeOther},
		{name: "nonce too short", diff: 1, jobVer: 0x20000000, sub: with(func(s *stratum.Submit) { s.Nonce = "abc" }), want: hashgrid.ShareInvalid, wantCode: stratum.ErrCodeOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _, _ := realWork(t, blk)
			w.version = tt.jobVer
			w.stale.Store(tt.stale)
			d := hashgrid.DiffFromFloat(tt.diff)
			s := &session{workers: []userWorker{{"w", "w"}}}
			s.sent[0] = sentJob{j: &job{id: 1, work: w}, diff: d}
			sub := tt.sub
			sh := hashgrid.Share{Time: now}
			res, _, blkc, serr := p.validate(s, en1, tt.mask, &sub, &sh)
			if res != tt.want {
				t.Fatalf("result = %v (%v), want %v", res, serr, tt.want)
			}
			if tt.wantCode != 0 && (serr == nil || serr.Code != tt.wantCode) {
				t.Errorf("error = %v, want code %d", serr, tt.wantCode)
			}
			if (blkc != nil) != tt.block || sh.Block != tt.block {
				t.Errorf("block = %v, want %v", blkc != nil, tt.block)
			}
			if blkc != nil {
				if blkc.hash != blk.Header.BlockHash() {
					t.Errorf("block hash %s, want %s", blkc.hash, blk.Header.BlockHash())
				}
				// The assembled block must be the real block, byte for byte.
				mb, err := blkc.w.block(&blkc.hdr, blkc.cb)
				if err != nil {
					t.Fatal(err)
				}
				var got, want bytes.Buffer
				mb.Serialize(&got)
				blk.Serialize(&want)
				if !bytes.Equal(got.Bytes(), want.Bytes()) {
					t.Errorf("assembled block differs from the real one (%d vs %d bytes)", got.Len(), want.Len())
				}
			}
			if res == hashgrid.ShareAccepted {
				// The same submission again is a duplicate.
				res2, _, _, serr2 := p.validate(s, en1, tt.mask, &sub, &sh)
				if res2 != hashgrid.ShareDuplicate || serr2.Code != stratum.ErrCodeDuplicate {
					t.Errorf("resubmission = %v (%v), want duplicate", res2, serr2)
				}
			}
		})
	}
	_ = w0
}

func BenchmarkValidate(b *testing.B) {
	blk := loadBlock(b)
	hdr := blk.Header
	p := testPool(&testing.T{}, hdr.Timestamp)
	// Mainnet's sample rate (DefaultSampleRate), not regtest's, which keeps every
	// share's header.
	p.sampleShift = 10
	// Every submit lands on the one work: no share limit (the default's 4096 stopped
	// this benchmark after that many).
	p.cfg.MaxJobShares = math.MaxInt
	w, en1, en2 := realWork(&testing.T{}, blk)
	// The smallest difficulty (2^-32): about 99.998% of headers meet it, so nearly every
	// submit takes the whole accepted path. (1e-12 rounded to 0, which no header meets.)
	d := hashgrid.Diff(1)
	s := &session{workers: []userWorker{{"w", "w"}}}
	s.sent[0] = sentJob{j: &job{id: 1, work: w}, diff: d}
	sub := stratum.Submit{Worker: "w", JobID: "1", Extranonce2: en2, NTime: fmt.Sprintf("%08x", uint32(hdr.Timestamp.Unix()))}
	nonces := make([]string, 1<<16)
	for i := range nonces {
		nonces[i] = fmt.Sprintf("%08x", uint32(i))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i > 0 && i%len(nonces) == 0 {
			w.seen = nil // a new round of nonces: forget the duplicates of the last
			sub.NTime = fmt.Sprintf("%08x", uint32(hdr.Timestamp.Unix())+uint32(i/len(nonces)))
		}
		sub.Nonce = nonces[i%len(nonces)]
		sh := hashgrid.Share{Time: hdr.Timestamp}
		if res, _, _, err := p.validate(s, en1, 0, &sub, &sh); res != hashgrid.ShareAccepted && res != hashgrid.ShareDuplicate && res != hashgrid.ShareLowDiff {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkSHA256d is the bare rate of the hashing a share costs (two SHA-256 of the
// coinbase, eight merkle steps, the header) on this machine, for comparison.
func BenchmarkSHA256dHeader(b *testing.B) {
	var hdr [80]byte
	for b.Loop() {
		hdr[76]++
		pow.DoubleSHA256(hdr[:])
	}
}

// BenchmarkShareHashing is the bare SHA-256d work one share of block 540107's
// template needs: the coinbase, the 8-step merkle branch and the header. Validate does
// this plus parsing, checks and bookkeeping; the ratio of the two is its overhead.
func BenchmarkShareHashing(b *testing.B) {
	blk := loadBlock(b)
	w, en1, en2hex := realWork(&testing.T{}, blk)
	en2 := make([]byte, 8)
	hex.Decode(en2, []byte(en2hex))
	cb := w.coinbase(nil, en1, en2)
	var hdr [80]byte
	for i := 0; b.Loop(); i++ {
		root := pow.MerkleRoot(pow.DoubleSHA256(cb), w.branch)
		w.header(&hdr, w.version, &root, uint32(i), uint32(i))
		pow.DoubleSHA256(hdr[:])
	}
}

// TestJobShareLimit checks that a connection's accepted shares on one work are bounded
// by MaxJobShares, across clones of its job: past the limit its shares are refused as
// stale, not accepted unchecked, a block-solving share is still taken, another
// connection is not affected, and a new work starts a new count.
func TestJobShareLimit(t *testing.T) {
	blk := loadBlock(t)
	hdr := blk.Header
	now := hdr.Timestamp.Add(time.Minute)
	p := testPool(t, now)
	p.cfg.MaxJobShares = 3
	w, en1, en2 := realWork(t, blk)
	d := hashgrid.Diff(1) // 2^-32: nearly every header meets it
	s := &session{workers: []userWorker{{"w", "w"}}}
	// Two jobs over one work, as a retarget's clone makes.
	s.sent[0] = sentJob{j: &job{id: 1, work: w}, diff: d}
	s.sent[1] = sentJob{j: &job{id: 2, work: w}, diff: d}
	sub := func(job string, nonce uint32) *stratum.Submit {
		return &stratum.Submit{Worker: "w", JobID: job, Extranonce2: en2, NTime: fmt.Sprintf("%08x", uint32(hdr.Timestamp.Unix())), Nonce: fmt.Sprintf("%08x", nonce)}
	}
	submit := func(s *session, en1 uint32, sb *stratum.Submit) (hashgrid.ShareResult, *stratum.Error, bool) {
		sh := hashgrid.Share{Time: now}
		res, _, b, err := p.validate(s, en1, 0, sb, &sh)
		return res, err, b != nil
	}
	for i, job := range []string{"1", "2", "1"} {
		if res, err, _ := submit(s, en1, sub(job, uint32(i+1))); res != hashgrid.ShareAccepted {
			t.Fatalf("share %d: %v (%v), want accepted", i, res, err)
		}
	}
	for _, job := range []string{"1", "2"} {
		res, err, _ := submit(s, en1, sub(job, 100))
		if res != hashgrid.ShareStale || err == nil || err.Code != stratum.ErrCodeJobNotFound || !strings.Contains(err.Message, "limit") {
			t.Errorf("share past the limit on job %s: %v (%v), want stale at the job share limit", job, res, err)
		}
	}
	// The real block's nonce solves the block: taken even past the limit.
	if res, err, block := submit(s, en1, sub("1", hdr.Nonce)); res != hashgrid.ShareAccepted || !block {
		t.Errorf("block-solving share past the limit: %v (%v), block %v", res, err, block)
	}
	// Duplicates are still found, past the limit as before it.
	if res, _, _ := submit(s, en1, sub("1", hdr.Nonce)); res != hashgrid.ShareDuplicate {
		t.Errorf("block share again: %v, want duplicate", res)
	}
	if n := len(w.seen); n != 4 {
		t.Errorf("work holds %d hashes, want 4", n)
	}
	// Another connection (another extranonce1) on the same work has its own count.
	o := &session{workers: []userWorker{{"w", "w"}}}
	o.sent[0] = sentJob{j: &job{id: 1, work: w}, diff: d}
	if res, err, _ := submit(o, en1+1, sub("1", 7)); res != hashgrid.ShareAccepted {
		t.Errorf("other connection: %v (%v), want accepted", res, err)
	}
	// A job over a new work (a new template) starts a new count.
	w2, _, _ := realWork(t, blk)
	s.sent[2] = sentJob{j: &job{id: 3, work: w2}, diff: d}
	if res, err, _ := submit(s, en1, sub("3", 100)); res != hashgrid.ShareAccepted {
		t.Errorf("new work: %v (%v), want accepted", res, err)
	}
}
