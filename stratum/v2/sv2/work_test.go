package sv2

import (
	"math/big"
	"testing"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pow"
)

// The share vectors come from the reference implementation's channel tests
// (stratum-mining/stratum, channels-sv2 client/standard.rs and client/extended.rs):
// a chain tip, jobs and shares whose hashes it states.

var sriTip = SetNewPrevHash{ChannelID: 1, JobID: 1, PrevHash: hashOf(sriPrev), MinNTime: 1745596930, NBits: 453040064}

func mustHash(t *testing.T, s string) chainhash.Hash {
	t.Helper()
	h, err := chainhash.NewHashFromStr(s)
	if err != nil {
		t.Fatal(err)
	}
	return *h
}

func TestStandardHeaderVectors(t *testing.T) {
	root := hashOf(sriRoot)
	target := u256Of(shareLE)
	for _, c := range []struct {
		nonce uint32
		hash  string // as the reference's tests print it, most significant byte first
		meets bool
	}{
		{244405, "0000762e88282a2ed8e7097aef06f413a962a47e32206a80ecbfc1f0b4bd1493", true},
		{3, "45ec7dbd7b599599e6724ab32e6936dad033f46ccff97e743579d8c047cf3243", false},
	} {
		s := SubmitSharesStandard{ChannelID: 1, JobID: 1, Nonce: c.nonce, NTime: 1745596932, Version: 536870912}
		var hdr [80]byte
		StandardHeader(&hdr, &s, &root, &sriTip)
		h := pow.DoubleSHA256(hdr[:])
		if want := mustHash(t, c.hash); h != want {
			t.Errorf("nonce %d: hash %v, want %v", c.nonce, h, want)
		}
		if got := pow.Meets(&h, target.Target()); got != c.meets {
			t.Errorf("nonce %d: meets the channel target: %t", c.nonce, got)
		}
	}
}

// sriExtendedJob is the reference's extended job with its BIP 141 fields (marker and
// flag in the prefix; the witness before the locktime in the suffix) stripped, as the
// spec requires of NewExtendedMiningJob; the reference's test parses the transaction
// and takes its txid instead.
func sriExtendedJob() *NewExtendedMiningJob {
	return &NewExtendedMiningJob{
		ChannelID: 1, JobID: 1, Version: 536870912, VersionRollingAllowed: true,
		CoinbaseTxPrefix: hx(
			"02000000",                // version
			"01",                      // one input
			rep("00", 32), "ffffffff", // null prevout
			"22",   // scriptSig of 34 bytes: these two and the 32-byte extranonce
			"5200", // OP_2 (height 2), then a zero byte
		),
		CoinbaseTxSuffix: hx(
			"ffffffff",         // sequence
			"02",               // two outputs
			"00f2052a01000000", // 50 BTC
			"16 0014 ebe1b7dcc293ccaa0ee743a86f89df8258c208fc",
			"0000000000000000",
			"26 6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9",
			"00000000", // locktime
		),
	}
}

var sriExtranoncePrefix = hx(rep("00", 23), "01")

func TestExtendedHeaderVector(t *testing.T) {
	j := sriExtendedJob()
	s := SubmitSharesExtended{ChannelID: 1, JobID: 1, Nonce: 102103, NTime: 1745596971, Version: 536870912, Extranonce: hx("0100000000000000")}
	var hdr [80]byte
	buf := ExtendedHeader(&hdr, &s, j, sriExtranoncePrefix, &sriTip, nil)
	h := pow.DoubleSHA256(hdr[:])
	if want := mustHash(t, "00005e460def43b0153246e6300ce38d9da1c9abd8ef2157a88b2e9a12a8524a"); h != want {
		t.Fatalf("hash %v, want %v", h, want)
	}
	if !pow.Meets(&h, u256Of(shareLE).Target()) {
		t.Error("share does not meet the channel target")
	}
	if len(buf) != len(j.CoinbaseTxPrefix)+24+8+len(j.CoinbaseTxSuffix) {
		t.Errorf("coinbase of %d bytes", len(buf))
	}
}

// TestMerkleRootPath checks the fold over a merkle path against pow's branch of a
// four-transaction block, and that the standard job derived for a standard channel
// carries the root of that channel's coinbase.
func TestMerkleRootPath(t *testing.T) {
	j := sriExtendedJob()
	txids := []chainhash.Hash{hashOf(rep("11", 32)), hashOf(rep("22", 32)), hashOf(rep("33", 32))}
	j.MerklePath = pow.MerkleBranch(txids)
	if len(j.MerklePath) != 2 {
		t.Fatalf("branch of %d", len(j.MerklePath))
	}
	en := append(append([]byte(nil), sriExtranoncePrefix...), hx("0100000000000000")...)
	cb := append(append(append([]byte(nil), j.CoinbaseTxPrefix...), en...), j.CoinbaseTxSuffix...)
	txid := pow.DoubleSHA256(cb)
	want := pow.HashPair(pow.HashPair(txid, txids[0]), pow.HashPair(txids[1], txids[2]))
	got, _ := j.MerkleRoot(nil, sriExtranoncePrefix, hx("0100000000000000"))
	if got != want {
		t.Errorf("root %v, want %v", got, want)
	}
	// A standard channel whose prefix is the whole 32-byte extranonce.
	std, _ := j.StandardJob(9, en, nil)
	if std.MerkleRoot != want || std.ChannelID != 9 || std.JobID != j.JobID || std.Version != j.Version || std.MinNTime != j.MinNTime {
		t.Errorf("standard job %+v", std)
	}
}

func TestTargetConversions(t *testing.T) {
	d1 := u256Of(diff1LE)
	if d1.Target() != pow.DiffTarget(hashgrid.DiffOne) {
		t.Errorf("diff1 U256 is %v as a target", d1.Target())
	}
	if DiffU256(hashgrid.DiffOne) != d1 {
		t.Errorf("DiffU256(1) = %x", DiffU256(hashgrid.DiffOne))
	}
	if d1.Big().Cmp(pow.Diff1) != 0 {
		t.Errorf("Big = %x", d1.Big())
	}
	if BigU256(pow.Diff1) != d1 || BigU256(new(big.Int).Lsh(big.NewInt(1), 300)) != u256Of(rep("ff", 32)) || BigU256(big.NewInt(-1)) != (U256{}) {
		t.Error("BigU256")
	}
	for _, u := range []U256{{}, {1}, d1, u256Of(shareLE), u256Of(rep("ff", 32)), u256Of(sriPrev)} {
		if TargetU256(u.Target()) != u {
			t.Errorf("%x does not survive pow.Target", u)
		}
	}
	for _, c := range []struct {
		u    U256
		want hashgrid.Diff
	}{
		{d1, hashgrid.DiffOne},
		{u256Of(shareLE), hashgrid.DiffOne >> 16},                    // 2^16 times easier than diff1
		{DiffU256(1000 * hashgrid.DiffOne), 1000 * hashgrid.DiffOne}, // exact for whole difficulties
		{U256{}, hashgrid.MaxDiff},
		{U256{1}, hashgrid.MaxDiff},
	} {
		if got := c.u.Diff(); got != c.want {
			t.Errorf("Diff of %x = %v, want %v", c.u, got, c.want)
		}
	}
}

// TestMinDiff checks that the difficulty is the smallest whose target fits under the
// channel's max_target.
func TestMinDiff(t *testing.T) {
	for _, max := range []U256{
		u256Of(rep("ff", 32)), u256Of(shareLE), u256Of(diff1LE), DiffU256(3 * hashgrid.DiffOne),
		BigU256(new(big.Int).Add(pow.Diff1, big.NewInt(1))), BigU256(new(big.Int).Sub(pow.Diff1, big.NewInt(1))),
		u256Of("ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff00"),
	} {
		d, ok := MinDiff(max)
		if !ok {
			t.Errorf("%x: no difficulty", max)
			continue
		}
		if !pow.DiffTarget(d).LE(max.Target()) {
			t.Errorf("%x: difficulty %v has a target above it", max, d)
		}
		if d > 1 && pow.DiffTarget(d-1).LE(max.Target()) {
			t.Errorf("%x: difficulty %v is not the smallest", max, d)
		}
	}
	if d, ok := MinDiff(u256Of(diff1LE)); !ok || d != hashgrid.DiffOne {
		t.Errorf("MinDiff(diff1) = %v, %t", d, ok)
	}
	// Targets below diff1/MaxDiff need more difficulty than hashgrid.Diff holds.
	for _, max := range []U256{{}, {1}, {0xff, 0xff}} {
		if d, ok := MinDiff(max); ok || d != hashgrid.MaxDiff {
			t.Errorf("MinDiff(%x) = %v, %t", max, d, ok)
		}
	}
}

func TestVersionAllowed(t *testing.T) {
	const job = 0x20000000
	for _, c := range []struct {
		share   uint32
		rolling bool
		want    bool
	}{
		{job, false, true},
		{job, true, true},
		{job | 1<<5, true, true},
		{job | 1<<28, true, true},
		{job | 0x1fffffe0, true, true},
		{job | 1<<5, false, false},
		{job | 1, true, false}, // bit 0 is not a general-purpose bit
		{job | 1<<4, true, false},
		{job ^ 1<<29, true, false}, // the version's top bits are consensus
		{job | 1<<31, true, false},
	} {
		if got := VersionAllowed(job, c.share, c.rolling); got != c.want {
			t.Errorf("share version %#08x, rolling %t: %t", c.share, c.rolling, got)
		}
	}
}
