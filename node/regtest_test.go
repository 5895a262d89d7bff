package node_test

import (
	"bytes"
	"testing"

	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/node/regtest"
)

func TestRegtestTemplateSubmit(t *testing.T) {
	n := regtest.StartT(t)
	ctx := testContext(t)
	c := n.Client()

	info, err := c.ChainInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw := rawTemplate(t, ctx, c)
	capture(t, "btcd_gbt_empty.json", raw)
	tmpl, err := c.BlockTemplate(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.Height != info.Blocks+1 || tmpl.PrevHash != info.BestBlockHash {
		t.Fatalf("template height %d prev %s, want %d %s", tmpl.Height, tmpl.PrevHash, info.Blocks+1, info.BestBlockHash)
	}
	if tmpl.Bits != 0x207fffff {
		t.Fatalf("bits %08x, want 207fffff", tmpl.Bits)
	}
	if tmpl.LongPollID == "" {
		t.Fatal("no longpollid from btcd")
	}
	if len(tmpl.Transactions) != 0 || tmpl.WitnessCommitment != nil {
		t.Fatalf("empty mempool: got %d transactions, commitment %x", len(tmpl.Transactions), tmpl.WitnessCommitment)
	}

	blk := buildBlock(t, tmpl, payScript(t), "hashgrid")
	if err := c.SubmitBlock(ctx, blk); err != nil {
		t.Fatalf("SubmitBlock: %v", err)
	}
	best, err := c.BestBlockHash(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := blk.BlockHash(); best != want {
		t.Fatalf("best block %s, want submitted %s", best, want)
	}
	hdr, err := c.BlockHeaderVerbose(ctx, best)
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Height != tmpl.Height || hdr.Confirmations != 1 || hdr.PrevHash != tmpl.PrevHash {
		t.Fatalf("header %+v, want height %d, 1 confirmation", hdr, tmpl.Height)
	}

	// The same block again: a duplicate, typed.
	err = c.SubmitBlock(ctx, blk)
	rej, ok := asRejected(err)
	if !ok || !rej.Duplicate() {
		t.Fatalf("resubmit: err %v, want a duplicate *RejectedError", err)
	}

	// A block whose header misses the target is rejected with a reason.
	tmpl2, err := c.BlockTemplate(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	bad := buildBlock(t, tmpl2, payScript(t), "bad")
	unsolve(bad, tmpl2.Target)
	err = c.SubmitBlock(ctx, bad)
	rej, ok = asRejected(err)
	if !ok || rej.Duplicate() || rej.Reason == "" {
		t.Fatalf("high-hash block: err %v, want a non-duplicate *RejectedError", err)
	}
	t.Logf("high-hash rejection: %q", rej.Reason)
}

func TestRegtestWitnessTemplate(t *testing.T) {
	n := regtest.StartT(t)
	ctx := testContext(t)
	c := n.Client()
	// Coinbases mature after 100 blocks: block 1's can be spent at height 101.
	if _, err := c.Generate(ctx, 100); err != nil {
		t.Fatal(err)
	}
	tx := spendCoinbase(t, ctx, c, 1, 10_000)
	raw := rawTemplate(t, ctx, c)
	capture(t, "btcd_gbt_witness.json", raw)

	tmpl, err := c.BlockTemplate(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(tmpl.Transactions) != 1 {
		t.Fatalf("%d template transactions, want 1", len(tmpl.Transactions))
	}
	got := tmpl.Transactions[0]
	if got.TxID != tx.TxHash() || got.WTxID != tx.WitnessHash() || got.Fee != 10_000 {
		t.Fatalf("template tx %s/%s fee %d, want %s/%s fee 10000", got.TxID, got.WTxID, got.Fee, tx.TxHash(), tx.WitnessHash())
	}
	if len(tmpl.WitnessCommitment) != node.WitnessCommitmentScriptLen || !bytes.HasPrefix(tmpl.WitnessCommitment, []byte{0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed}) {
		t.Fatalf("witness commitment %x, want a full 6a24aa21a9ed script", tmpl.WitnessCommitment)
	}
	blk := buildBlock(t, tmpl, payScript(t), "hashgrid")
	if err := c.SubmitBlock(ctx, blk); err != nil {
		t.Fatalf("SubmitBlock with a witness transaction: %v", err)
	}

	// Without the commitment output the same block is invalid.
	if _, err := c.Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	spendCoinbase(t, ctx, c, 2, 5_000)
	tmpl, err = c.BlockTemplate(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	tmpl.WitnessCommitment = nil
	blk = buildBlock(t, tmpl, payScript(t), "nocommit")
	if _, ok := asRejected(c.SubmitBlock(ctx, blk)); !ok {
		t.Fatal("block with witness data and no commitment: want a rejection")
	}
}

func TestRegtestOrphanHeader(t *testing.T) {
	n := regtest.StartT(t)
	ctx := testContext(t)
	c := n.Client()
	hs, err := c.Generate(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	tip := hs[1]
	if err := c.Call(ctx, "invalidateblock", []any{tip.String()}, nil); err != nil {
		t.Fatal(err)
	}
	hdr, err := c.BlockHeaderVerbose(ctx, tip)
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Confirmations != -1 || hdr.Hash != tip || hdr.PrevHash != hs[0] {
		t.Fatalf("invalidated tip: %+v, want confirmations -1, prev %s", hdr, hs[0])
	}
	hdr, err = c.BlockHeaderVerbose(ctx, hs[0])
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Confirmations != 1 || hdr.Height != 2 {
		t.Fatalf("new tip: %+v, want height 2, 1 confirmation", hdr)
	}
}
