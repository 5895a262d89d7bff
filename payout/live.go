package payout

import (
	"github.com/hashgrid/hashgrid"
)

// liveWindow holds the most recent accepted shares, enough to cut a window of twice
// the current size (so that a difficulty rise does not leave the window short), each
// with its full-weight leaf computed once on arrival.
type liveWindow struct {
	shares []WindowShare
	leaves []Hash32
	head   int
	total  hashgrid.Work // of shares[head:]
	retain hashgrid.Work
}

func (lw *liveWindow) add(s WindowShare) {
	s.Weight = s.Diff
	lw.shares = append(lw.shares, s)
	lw.leaves = append(lw.leaves, s.Leaf())
	lw.total = lw.total.Add(s.Diff)
	lw.trim()
}

func (lw *liveWindow) setRetain(r hashgrid.Work) {
	lw.retain = r
	lw.trim()
}

// trim drops the oldest shares the retained work does not need.
func (lw *liveWindow) trim() {
	if lw.retain == (hashgrid.Work{}) {
		return
	}
	for lw.head < len(lw.shares)-1 {
		rest := workSub(lw.total, diffWork(lw.shares[lw.head].Diff))
		if workLess(rest, lw.retain) {
			break
		}
		lw.total = rest
		lw.head++
	}
	if lw.head > 4096 && lw.head > len(lw.shares)/2 {
		n := copy(lw.shares, lw.shares[lw.head:])
		copy(lw.leaves, lw.leaves[lw.head:])
		lw.shares, lw.leaves, lw.head = lw.shares[:n], lw.leaves[:n], 0
	}
}

func (lw *liveWindow) len() int { return len(lw.shares) - lw.head }

// first returns the Seq of the oldest share held, or the one after the last if none.
func (lw *liveWindow) first() uint64 {
	if lw.len() == 0 {
		return lw.last() + 1
	}
	return lw.shares[lw.head].Seq
}

func (lw *liveWindow) last() uint64 {
	if lw.len() == 0 {
		return 0
	}
	return lw.shares[len(lw.shares)-1].Seq
}

// window cuts the current window. The returned shares are a copy.
func (lw *liveWindow) window(n hashgrid.Diff, bits uint32, sp SplitParams) (Window, error) {
	sh := append([]WindowShare(nil), lw.shares[lw.head:]...)
	return buildWindow(sh, lw.leaves[lw.head:], n, bits, sp)
}
