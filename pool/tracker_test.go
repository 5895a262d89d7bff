package pool

import (
	"context"
	"testing"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
)

// chainAt answers headers from a map of confirmations; a missing hash is unknown to
// the node.
type chainAt map[[32]byte]int64

func (c chainAt) BlockHeaderVerbose(ctx context.Context, h chainhash.Hash) (node.BlockHeader, error) {
	conf, ok := c[h]
	if !ok {
		return node.BlockHeader{}, &node.RPCError{Code: -5, Message: "Block not found"}
	}
	return node.BlockHeader{Hash: h, Confirmations: conf}, nil
}

type memBlocks struct{ b []hashgrid.Block }

func (m *memBlocks) Blocks(context.Context, int) ([]hashgrid.Block, error) {
	return append([]hashgrid.Block(nil), m.b...), nil
}

func (m *memBlocks) PutBlock(_ context.Context, b hashgrid.Block) error {
	for i := range m.b {
		if m.b[i].Hash == b.Hash {
			m.b[i] = b
			return nil
		}
	}
	m.b = append(m.b, b)
	return nil
}

func TestTrackerFollowsBlocks(t *testing.T) {
	ctx := context.Background()
	a, b, c := [32]byte{1}, [32]byte{2}, [32]byte{3}
	store := &memBlocks{b: []hashgrid.Block{
		{Hash: a, Status: hashgrid.BlockAccepted},
		{Hash: b, Status: hashgrid.BlockAccepted},
		{Hash: c, Status: hashgrid.BlockAccepted},
	}}
	chain := chainAt{a: 3, b: -1} // c: unknown to the node
	var changes []string
	tr := &Tracker{Chain: chain, Store: store, OnChange: func(bl hashgrid.Block, old hashgrid.BlockStatus) {
		changes = append(changes, old.String()+">"+bl.Status.String())
	}}
	if err := tr.Check(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[[32]byte]struct {
		st   hashgrid.BlockStatus
		conf int64
	}{a: {hashgrid.BlockAccepted, 3}, b: {hashgrid.BlockOrphaned, 0}, c: {hashgrid.BlockOrphaned, 0}}
	for _, bl := range store.b {
		if w := want[bl.Hash]; bl.Status != w.st || bl.Confirmations != w.conf {
			t.Errorf("block %x: %v/%d, want %v/%d", bl.Hash[:1], bl.Status, bl.Confirmations, w.st, w.conf)
		}
	}
	// Confirmations grow, the block matures, and an orphan that returns in a reorg is
	// accepted again.
	chain[a], chain[b] = 100, 2
	if err := tr.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if store.b[0].Status != hashgrid.BlockConfirmed || store.b[0].Confirmations != 100 {
		t.Errorf("block a: %+v", store.b[0])
	}
	if store.b[1].Status != hashgrid.BlockAccepted || store.b[1].Confirmations != 2 {
		t.Errorf("block b: %+v", store.b[1])
	}
	if len(changes) != 4 {
		t.Errorf("status changes %v, want 4", changes)
	}
}
