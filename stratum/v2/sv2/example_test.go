package sv2_test

import (
	"bytes"
	"encoding/hex"
	"fmt"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum/v2/sv2"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// A pool serving a standard channel: it turns its job (the non-witness coinbase around
// the extranonce, as a V1 pool's coinb1 and coinb2, and the merkle branch) into the
// channel's NewMiningJob, reads the miner's SubmitSharesStandard frame and checks the
// share with package pow. The numbers are the reference implementation's test vector.
func Example_standardChannel() {
	job := &sv2.NewExtendedMiningJob{
		JobID: 1, MinNTime: sv2.Some[uint32](1745596970), Version: 0x20000000, VersionRollingAllowed: true,
		CoinbaseTxPrefix: unhex("0200000001" + "0000000000000000000000000000000000000000000000000000000000000000" + "ffffffff" + "22" + "5200"),
		CoinbaseTxSuffix: unhex("ffffffff" + "02" + "00f2052a01000000" + "160014ebe1b7dcc293ccaa0ee743a86f89df8258c208fc" +
			"0000000000000000" + "266a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9" + "00000000"),
	}
	// The channel's extranonce_prefix fills the whole 32 bytes of extranonce the
	// coinbase leaves: 24 bytes of channel prefix, then 8 the pool fixed for it.
	prefix := unhex("000000000000000000000000000000000000000000000001" + "0100000000000000")
	newJob, _ := job.StandardJob(7, prefix, nil)
	jobFrame, _ := sv2.AppendFrame(nil, &newJob)

	tip := &sv2.SetNewPrevHash{ChannelID: 7, JobID: 1, MinNTime: 1745596970, NBits: 0x1b00d7c0}
	copy(tip.PrevHash[:], unhex("c835fd81d61f2b54b33a3a4c80d518352690cd58ac14fb16d98d15dd15000000"))
	target := sv2.DiffU256(hashgrid.DiffOne >> 16) // difficulty 1/65536: target 0xffff·2^224

	// The miner's answer, as it arrives.
	share := &sv2.SubmitSharesStandard{ChannelID: 7, SequenceNumber: 0, JobID: 1, Nonce: 102103, NTime: 1745596971, Version: 0x20000000}
	shareFrame, _ := sv2.AppendFrame(nil, share)
	h, msg, err := sv2.NewFrameReader(bytes.NewReader(shareFrame), sv2.MaxLen(sv2.TypeSubmitSharesStandard)).ReadMessage()
	if err != nil {
		panic(err)
	}
	got := msg.(*sv2.SubmitSharesStandard)

	var hdr [80]byte
	sv2.StandardHeader(&hdr, got, &newJob.MerkleRoot, tip)
	hash := pow.DoubleSHA256(hdr[:])
	fmt.Println("job frame:", len(jobFrame), "bytes; share frame:", frameLen(h), "bytes")
	fmt.Println("version allowed:", sv2.VersionAllowed(newJob.Version, got.Version, true))
	fmt.Println("hash:", chainhash.Hash(hash))
	fmt.Println("meets target:", pow.Meets(&hash, target.Target()))
	// Output:
	// job frame: 55 bytes; share frame: 30 bytes
	// version allowed: true
	// hash: 00005e460def43b0153246e6300ce38d9da1c9abd8ef2157a88b2e9a12a8524a
	// meets target: true
}

// frameLen is the size of a frame with header h.
func frameLen(h sv2.Header) int { return sv2.HeaderSize + int(h.Length) }
