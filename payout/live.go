package payout

import (
	"math/bits"

	"github.com/hashgrid/hashgrid"
)

// The live window is kept so that adding a share and cutting a new window cost the
// same at a thousand shares as at ten million (see the package doc, "The live
// window"). Each share gets a position, one more than the share before it; the
// retained shares are the positions [head, next), the current window [cut, next).
const (
	// blockBits sets how many shares one block of the live window holds (4096): a
	// block is allocated whole and freed whole, so at most one is partly empty.
	blockBits = 12
	blockLen  = 1 << blockBits
	// cacheLevel is the lowest tree level whose complete nodes are kept (nodes over 64
	// leaves). Below it a cut rehashes, at each of the window's two edges, at most one
	// partial 64-leaf chunk from its leaves: at most 2·63 SHA-256d of leaves.
	cacheLevel = 6
	chunkLen   = 1 << cacheLevel
)

// shareBlock holds what the live window keeps of blockLen consecutive shares, 52 bytes
// each and no pointer (the garbage collector does not scan it). Block b holds positions
// b·blockLen to (b+1)·blockLen − 1.
type shareBlock struct {
	seq  [blockLen]uint64
	diff [blockLen]hashgrid.Diff
	addr [blockLen]uint32 // index into the address table
	leaf [blockLen]Hash32 // LeafV2, hashed once on arrival
}

// liveWindow holds the most recent accepted shares, enough to cut a window of twice the
// current size (so that a difficulty rise does not leave the window short), and keeps
// incrementally what a cut needs: where the window starts, its work, each address's
// weight in it, and the hashes of the tree nodes that lie wholly among the retained
// shares.
type liveWindow struct {
	blocks ring[*shareBlock]
	spare  *shareBlock // last block freed, reused for the next one

	head, cut, next uint64 // retained [head, next), window [cut, next)
	lastSeq         uint64 // Seq of the newest share ever added, 0 if none

	size  hashgrid.Work // window size in Diff units
	sized bool          // size set: shares beyond twice it may be dropped
	held  hashgrid.Work // difficulty of the retained shares
	win   hashgrid.Work // difficulty of the window's shares, the oldest uncut

	// nodes[k−cacheLevel] holds node j of level k (leaves j·2^k to (j+1)·2^k − 1) for
	// every such node whose leaves are all retained.
	nodes []ring[Hash32]
	addrs addrTable
}

func (lw *liveWindow) block(pos uint64) (*shareBlock, int) {
	return *lw.blocks.at(pos >> blockBits), int(pos & (blockLen - 1))
}

func (lw *liveWindow) diffAt(pos uint64) hashgrid.Diff {
	b, i := lw.block(pos)
	return b.diff[i]
}

func (lw *liveWindow) addrAt(pos uint64) uint32 {
	b, i := lw.block(pos)
	return b.addr[i]
}

// add appends the newest share. Its cost does not depend on how many shares are held:
// one leaf hash, one node hash on average (at most 63 + a few when it completes a
// chunk), two address-table updates, and the shares that fall out of the window or of
// the retained work (each share leaves each once).
func (lw *liveWindow) add(s WindowShare) {
	p := lw.next
	if p&(blockLen-1) == 0 {
		b := lw.spare
		if b == nil {
			b = new(shareBlock)
		}
		lw.spare = nil
		lw.blocks.push(p>>blockBits, b)
	}
	b, i := lw.block(p)
	id := lw.addrs.ref(s.Address)
	b.seq[i], b.diff[i], b.addr[i], b.leaf[i] = s.Seq, s.Diff, id, s.LeafV2()
	lw.next++
	lw.lastSeq = s.Seq
	lw.held = lw.held.Add(s.Diff)
	lw.win = lw.win.Add(s.Diff)
	lw.addrs.enter(id, s.Diff)
	lw.complete(p)
	lw.recut()
	lw.trim()
}

// setSize sets the window's size (its N·difficulty in Diff units); the shares kept are
// those of twice that, back from the newest. A larger size takes older shares still
// held back into the window, a smaller one lets shares go: both cost as many steps as
// shares change sides, once.
func (lw *liveWindow) setSize(size hashgrid.Work) {
	lw.size, lw.sized = size, true
	lw.recut()
	lw.trim()
}

// recut moves the window's start to where CutWindow would put it: the newest shares
// whose difficulties reach the size, or all held if they do not.
func (lw *liveWindow) recut() {
	for lw.cut > lw.head && workLess(lw.win, lw.size) {
		lw.cut--
		d := lw.diffAt(lw.cut)
		lw.win = lw.win.Add(d)
		lw.addrs.enter(lw.addrAt(lw.cut), d)
	}
	for lw.cut < lw.next {
		d := lw.diffAt(lw.cut)
		rest := workSub(lw.win, diffWork(d))
		if workLess(rest, lw.size) {
			break
		}
		lw.win = rest
		lw.addrs.leave(lw.addrAt(lw.cut), d)
		lw.cut++
	}
}

// trim drops the oldest shares the retained work (twice the size) does not need; it
// never drops a share of the window.
func (lw *liveWindow) trim() {
	if !lw.sized {
		return
	}
	retain := lw.size.Plus(lw.size)
	h := lw.head
	for h < lw.cut {
		d := lw.diffAt(h)
		rest := workSub(lw.held, diffWork(d))
		if workLess(rest, retain) {
			break
		}
		lw.held = rest
		lw.addrs.unref(lw.addrAt(h))
		h++
	}
	if h == lw.head {
		return
	}
	lw.head = h
	for lw.blocks.n > 0 && (lw.blocks.head+1)<<blockBits <= h {
		lw.spare = *lw.blocks.at(lw.blocks.head)
		lw.blocks.pop()
	}
	for k := range lw.nodes {
		r := &lw.nodes[k]
		for r.n > 0 && r.head<<(k+cacheLevel) < h {
			r.pop()
		}
	}
}

// complete caches the nodes of level cacheLevel and up that the leaf at p completes.
func (lw *liveWindow) complete(p uint64) {
	for k := uint(cacheLevel); (p+1)&(1<<k-1) == 0; k++ {
		j := p >> k
		if j<<k < lw.head {
			return // some of its leaves are gone: no window will contain it whole
		}
		var h Hash32
		if k == cacheLevel {
			h = lw.chunkRoot(j<<k, k)
		} else {
			below := &lw.nodes[k-1-cacheLevel]
			h = hashPair(below.at(2*j), below.at(2*j+1))
		}
		if int(k-cacheLevel) == len(lw.nodes) {
			lw.nodes = append(lw.nodes, ring[Hash32]{})
		}
		lw.nodes[k-cacheLevel].push(j, h)
	}
}

// chunkRoot hashes the 2^k leaves from lo (aligned, k ≤ cacheLevel, so in one block).
func (lw *liveWindow) chunkRoot(lo uint64, k uint) Hash32 {
	var buf [chunkLen]Hash32
	b, i := lw.block(lo)
	n := copy(buf[:1<<k], b.leaf[i:i+1<<k])
	return MerkleRoot(buf[:n])
}

// root returns AlignedRoot over the leaves at positions [a, b] with base a: the nodes
// wholly inside come from the cache (or, below cacheLevel, from at most a chunk of
// leaves at each edge); only the nodes on the two edges' paths are hashed.
func (lw *liveWindow) root(a, b uint64) Hash32 {
	k := uint(bits.Len64(a ^ b))
	h, _ := lw.node(k, a>>k, a, b)
	return h
}

// node returns the value of node j of level k over the leaves at positions [a, b],
// false if it covers none of them.
func (lw *liveWindow) node(k uint, j, a, b uint64) (Hash32, bool) {
	lo := j << k
	hi := lo + (1<<k - 1)
	if hi < a || lo > b {
		return Hash32{}, false
	}
	if a <= lo && hi <= b {
		switch {
		case k == 0:
			bl, i := lw.block(lo)
			return bl.leaf[i], true
		case k >= cacheLevel:
			return *lw.nodes[k-cacheLevel].at(j), true
		default:
			return lw.chunkRoot(lo, k), true
		}
	}
	l, lok := lw.node(k-1, 2*j, a, b)
	r, rok := lw.node(k-1, 2*j+1, a, b)
	switch {
	case lok && rok:
		return hashPair(&l, &r), true
	case lok:
		return l, true
	}
	return r, rok
}

func (lw *liveWindow) len() int { return int(lw.next - lw.head) }

// first returns the Seq of the oldest share held, or the one after the last if none.
func (lw *liveWindow) first() uint64 {
	if lw.len() == 0 {
		return lw.last() + 1
	}
	b, i := lw.block(lw.head)
	return b.seq[i]
}

// last returns the Seq of the newest share added, 0 if none.
func (lw *liveWindow) last() uint64 { return lw.lastSeq }

// window cuts the current window of N·difficulty(bits) and returns its parameters (in
// WindowVersion, Base the position of its oldest share) and its weights by address.
// It costs O(log n) hashes for n shares held, plus one step per address in the
// window for the weights; no share is copied.
func (lw *liveWindow) window(n hashgrid.Diff, bits uint32, sp SplitParams) (WindowParams, []Weight, error) {
	size, err := WindowSize(n, bits)
	if err != nil {
		return WindowParams{}, nil, err
	}
	if !lw.sized || size != lw.size {
		lw.setSize(size)
	}
	p := WindowParams{Version: WindowVersion, N: n, Bits: bits, Size: WorkJSON(size), FeeBps: sp.FeeBps,
		DirectMin: sp.DirectMin, MaxDirect: sp.MaxDirect, Count: lw.next - lw.cut}
	if p.Count == 0 {
		return p, nil, nil
	}
	var over hashgrid.Work // what the oldest share's weight is cut by: less than its difficulty
	if workLess(size, lw.win) {
		over = workSub(lw.win, size)
	}
	b, i := lw.block(lw.cut)
	p.Start, p.End, p.First = b.seq[i], lw.lastSeq, b.diff[i]-hashgrid.Diff(over.Lo)
	p.Total = WorkJSON(workSub(lw.win, over))
	p.Base = lw.cut
	p.Root = lw.root(lw.cut, lw.next-1)
	return p, lw.addrs.weights(b.addr[i], over), nil
}

// addrTable interns the addresses of the retained shares and keeps each one's weight
// in the window. An address leaves it with its last retained share.
type addrTable struct {
	ids   map[string]uint32
	ent   []addrEntry
	free  []uint32
	inWin int // entries with a share in the window
}

type addrEntry struct {
	addr string
	refs int           // retained shares
	n    int           // shares in the window
	work hashgrid.Work // their difficulties, the oldest share's uncut
}

func (t *addrTable) ref(a string) uint32 {
	id, ok := t.ids[a]
	if !ok {
		if t.ids == nil {
			t.ids = map[string]uint32{}
		}
		if n := len(t.free); n > 0 {
			id, t.free = t.free[n-1], t.free[:n-1]
		} else {
			id = uint32(len(t.ent))
			t.ent = append(t.ent, addrEntry{})
		}
		t.ent[id] = addrEntry{addr: a}
		t.ids[a] = id
	}
	t.ent[id].refs++
	return id
}

func (t *addrTable) unref(id uint32) {
	e := &t.ent[id]
	if e.refs--; e.refs == 0 {
		delete(t.ids, e.addr)
		*e = addrEntry{}
		t.free = append(t.free, id)
	}
}

func (t *addrTable) enter(id uint32, d hashgrid.Diff) {
	e := &t.ent[id]
	if e.n == 0 {
		t.inWin++
	}
	e.n++
	e.work = e.work.Add(d)
}

func (t *addrTable) leave(id uint32, d hashgrid.Diff) {
	e := &t.ent[id]
	if e.n--; e.n == 0 {
		t.inWin--
	}
	e.work = workSub(e.work, diffWork(d))
}

// weights returns each address's weight in the window, the address of the oldest share
// (id first) less over.
func (t *addrTable) weights(first uint32, over hashgrid.Work) []Weight {
	out := make([]Weight, 0, t.inWin)
	for id := range t.ent {
		e := &t.ent[id]
		if e.n == 0 {
			continue
		}
		w := e.work
		if uint32(id) == first {
			w = workSub(w, over)
		}
		out = append(out, Weight{Address: e.addr, Work: w})
	}
	return out
}

// ring is a queue of T indexed by absolute, consecutive numbers: element i sits at
// buf[i mod len(buf)], len(buf) a power of two. It grows by doubling when full and
// never moves an element otherwise.
type ring[T any] struct {
	buf  []T
	head uint64 // number of the oldest element
	n    uint64
}

// at returns element i; head ≤ i < head+n.
func (r *ring[T]) at(i uint64) *T { return &r.buf[i&uint64(len(r.buf)-1)] }

// push appends v as element i. An i that does not follow the last element starts the
// queue afresh at i: what it held is older than anything still wanted (see trim).
func (r *ring[T]) push(i uint64, v T) {
	if r.n > 0 && i != r.head+r.n {
		clear(r.buf)
		r.n = 0
	}
	if r.n == 0 {
		r.head = i
	}
	if r.n == uint64(len(r.buf)) {
		nb := make([]T, max(8, 2*len(r.buf)))
		for k := r.head; k < r.head+r.n; k++ {
			nb[k&uint64(len(nb)-1)] = *r.at(k)
		}
		r.buf = nb
	}
	*r.at(i) = v
	r.n++
}

// pop drops the oldest element.
func (r *ring[T]) pop() {
	var zero T
	*r.at(r.head) = zero
	r.head++
	r.n--
}
