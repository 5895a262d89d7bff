package pool

import (
	"context"
	"testing"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
)

// chainAt answers every block with the views in the map; a missing hash gets fallback
// (every node's view of a block it does not know).
type chainAt struct {
	views    map[[32]byte][]node.BlockView
	fallback []node.BlockView
}

func (c *chainAt) BlockViews(ctx context.Context, h chainhash.Hash, height int64) ([]node.BlockView, error) {
	if v, ok := c.views[h]; ok {
		return v, nil
	}
	return c.fallback, nil
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

// onMain is a node's view of a block on its main chain with conf confirmations.
func onMain(h [32]byte, height, conf int64) node.BlockView {
	return node.BlockView{Node: "main", Known: true, Confirmations: conf, Tip: height + conf - 1, AtHeight: h}
}

// other is a node whose main chain holds another block at height, with its tip at tip.
func other(known bool, tip int64) node.BlockView {
	return node.BlockView{Node: "other", Known: known, Confirmations: -1, Tip: tip, AtHeight: chainhash.Hash{0xee}}
}

// lagging is a node that never saw the block and whose chain stops below it.
func lagging(tip int64) node.BlockView {
	return node.BlockView{Node: "lagging", Confirmations: -1, Tip: tip}
}

func TestTrackerFollowsBlocks(t *testing.T) {
	ctx := context.Background()
	a, b, c := [32]byte{1}, [32]byte{2}, [32]byte{3}
	store := &memBlocks{b: []hashgrid.Block{
		{Hash: a, Height: 10, Status: hashgrid.BlockAccepted},
		{Hash: b, Height: 10, Status: hashgrid.BlockAccepted},
		{Hash: c, Height: 10, Status: hashgrid.BlockAccepted},
	}}
	chain := &chainAt{views: map[[32]byte][]node.BlockView{
		a: {onMain(a, 10, 3)},
		b: {other(true, 10+DefaultOrphanDepth-1)}, // a heavier chain at the depth: orphaned
	}, fallback: []node.BlockView{lagging(5)}} // c: only a lagging node answers
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
	}{a: {hashgrid.BlockAccepted, 3}, b: {hashgrid.BlockOrphaned, 0}, c: {hashgrid.BlockAccepted, 0}}
	for _, bl := range store.b {
		if w := want[bl.Hash]; bl.Status != w.st || bl.Confirmations != w.conf {
			t.Errorf("block %x: %v/%d, want %v/%d", bl.Hash[:1], bl.Status, bl.Confirmations, w.st, w.conf)
		}
	}
	// Confirmations grow, the block matures, and an orphan that returns in a reorg is
	// accepted again, without the reason it was orphaned for.
	store.b[1].Reason = "superseded: another block at height 10"
	chain.views[a], chain.views[b] = []node.BlockView{onMain(a, 10, 100)}, []node.BlockView{onMain(b, 10, 2)}
	if err := tr.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if store.b[0].Status != hashgrid.BlockConfirmed || store.b[0].Confirmations != 100 {
		t.Errorf("block a: %+v", store.b[0])
	}
	if store.b[1].Status != hashgrid.BlockAccepted || store.b[1].Confirmations != 2 || store.b[1].Reason != "" {
		t.Errorf("block b: %+v", store.b[1])
	}
	if len(changes) != 3 {
		t.Errorf("status changes %v, want 3", changes)
	}
}

// Only a node that has seen a heavier chain without the block may orphan it; a node
// that lags, or whose other chain is not yet OrphanDepth deep, says nothing.
func TestTrackerIgnoresLaggingNodes(t *testing.T) {
	h := [32]byte{7}
	const height = 20
	for _, tc := range []struct {
		name  string
		views []node.BlockView
		want  hashgrid.BlockStatus
	}{
		{"lagging node does not know it", []node.BlockView{lagging(height - 3)}, hashgrid.BlockAccepted},
		{"lagging node at its height", []node.BlockView{lagging(height)}, hashgrid.BlockAccepted},
		{"other block at its height, shallow", []node.BlockView{other(false, height+DefaultOrphanDepth-2)}, hashgrid.BlockAccepted},
		{"known off chain, shallow", []node.BlockView{other(true, height+1)}, hashgrid.BlockAccepted},
		{"other block at the depth", []node.BlockView{other(false, height+DefaultOrphanDepth-1)}, hashgrid.BlockOrphaned},
		{"lagging and main", []node.BlockView{lagging(3), onMain(h, height, 4)}, hashgrid.BlockAccepted},
		{"main, and a heavier chain without it", []node.BlockView{onMain(h, height, 4), other(false, height+DefaultOrphanDepth+3)}, hashgrid.BlockOrphaned},
		{"main beats a shallower other", []node.BlockView{other(false, height+DefaultOrphanDepth-1), onMain(h, height, DefaultOrphanDepth+1)}, hashgrid.BlockAccepted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &memBlocks{b: []hashgrid.Block{{Hash: h, Height: height, Status: hashgrid.BlockAccepted, Confirmations: 1}}}
			tr := &Tracker{Chain: &chainAt{fallback: tc.views}, Store: store}
			if err := tr.Check(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := store.b[0].Status; got != tc.want {
				t.Errorf("status %v, want %v", got, tc.want)
			}
		})
	}
}
