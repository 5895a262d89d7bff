package market

import (
	"context"
	"encoding/binary"
	"math/big"
	"sort"
	"time"

	"github.com/hashgrid/hashgrid/ledger"
)

func (m *Market) routeLoop() {
	t := time.NewTicker(m.cfg.RouteInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.kickc:
		case <-t.C:
		}
		m.route()
	}
}

type move struct {
	s *seller
	j *mjob
}

// slice is a share of a seller's time given to an order.
type slice struct {
	o    *order
	frac float64 // of every SlicePeriod
}

// sliceAt returns the order whose slice of s's time now falls in. Slices follow each
// other in the orders' rank, each seller's period starting at an offset of its own
// (from its extranonce1), so that sliced sellers do not all move at once. Time not in
// any slice (no order had room for it) is idle: nil.
func (m *Market) sliceAt(s *seller, sl []slice, now time.Time) *order {
	if len(sl) == 1 && sl[0].frac >= 1 {
		return sl[0].o
	}
	p := int64(m.cfg.SlicePeriod)
	off := int64(binary.BigEndian.Uint32(s.en1[:])) % p
	pos := float64((now.UnixNano()+off)%p) / float64(p)
	for _, x := range sl {
		if pos < x.frac {
			return x.o
		}
		pos -= x.frac
	}
	return nil
}

// route assigns sellers to live orders: contracts first, then spot orders by price
// (highest first; older first at the same price). Each order takes sellers while
// their estimated speeds fit its limit; a seller already on an order is offered to it
// first, so assignments only change when they must or when a better-paying order has
// room. A seller faster than the room an order has left gets a slice of its time
// there (see Config.SlicePeriod) and offers the rest to the orders below. Sellers
// that changed order get the new order's job with clean_jobs.
func (m *Market) route() {
	now := m.cfg.Now()
	m.mu.Lock()
	for _, o := range m.orders {
		r := o.rec
		if r.Kind != KindContract {
			continue
		}
		switch {
		case r.Status == StatusPending && !now.Before(r.Start):
			r.Status = StatusActive
			m.ensureUpstreamLocked(o)
			m.changedLocked(o)
		case (r.Status == StatusActive || r.Status == StatusPaused || r.Status == StatusPending || r.Status == StatusExhausted) && !now.Before(r.End):
			r.Status, r.Reason, r.Offer = StatusExpired, "term ended", nil
			m.closeUpstreamLocked(o)
			m.changedLocked(o)
		}
	}
	var live []*order
	for _, o := range m.orders {
		if o.liveLocked(now) {
			live = append(live, o)
		}
	}
	sort.Slice(live, func(i, j int) bool {
		a, b := live[i].rec, live[j].rec
		if (a.Kind == KindContract) != (b.Kind == KindContract) {
			return a.Kind == KindContract
		}
		if a.Price != b.Price {
			return a.Price > b.Price
		}
		return idNum(a.ID) < idNum(b.ID)
	})
	rank := map[*order]int{}
	for i, o := range live {
		rank[o] = i
	}
	speeds := map[*seller]float64{}
	var free []*seller
	for s := range m.sellers {
		speeds[s] = s.speed(now)
		free = append(free, s)
	}
	// Each seller's time is shared out among orders as fractions of a SlicePeriod:
	// whole (1) when it fits in an order's room, a slice when the order has room for
	// only part of it, the rest going on to orders below.
	avail := make(map[*seller]float64, len(free))
	for _, s := range free {
		avail[s] = 1
	}
	slices := map[*seller][]slice{}
	minFrac := float64(m.cfg.MinSlice) / float64(m.cfg.SlicePeriod)
	for i, o := range live {
		room := o.rec.Limit * 1e12
		cands := free[:0:0]
		for _, s := range free {
			if avail[s] >= minFrac {
				cands = append(cands, s)
			}
		}
		// Current members first, then sellers from lower-ranked or no orders, faster first.
		key := func(s *seller) int {
			if s.ord == o {
				return 0
			}
			if r, ok := rank[s.ord]; ok && r > i {
				return 1
			}
			return 2
		}
		sort.SliceStable(cands, func(a, b int) bool {
			ka, kb := key(cands[a]), key(cands[b])
			if ka != kb {
				return ka < kb
			}
			return speeds[cands[a]] > speeds[cands[b]]
		})
		var used float64
		// A destination whose extranonce2 is too small to share takes sellers that
		// accept mining.set_extranonce, each on a connection of its own, as many as
		// MaxUpstreamsPerOrder allows beside the order's own. A seller sliced there
		// opens its connection for each of its slices.
		direct, n := o.directLocked(), 0
		for _, s := range cands {
			sp := speeds[s]
			take := avail[s]
			if o.rec.Limit > 0 && used+take*sp > room {
				if sp <= 0 {
					continue
				}
				take = (room - used) / sp
			}
			if take < avail[s] && take < minFrac {
				continue
			}
			if direct {
				if s.conn == nil || !s.conn.ExtranonceSubscribed() || n >= m.cfg.MaxUpstreamsPerOrder-1 {
					continue
				}
				if o.ded[s] == nil && now.Before(o.dedRetry) {
					continue
				}
				n++
			}
			slices[s] = append(slices[s], slice{o, take})
			avail[s] -= take
			used += take * sp
		}
	}
	placed := map[*seller]*order{}
	for s, sl := range slices {
		placed[s] = m.sliceAt(s, sl, now)
	}
	var moves []move
	for s := range m.sellers {
		to := placed[s]
		if s.ord == to {
			if to != nil && to.ded[s] == nil && to.directLocked() {
				// The destination's extranonce2 shrank under a seller that shared
				// the order's connection: it now needs one of its own.
				m.openDedicatedLocked(to, s)
			}
			continue
		}
		if s.ord != nil {
			delete(s.ord.sellers, s)
			m.closeDedicatedLocked(s.ord, s)
		}
		if (s.ord == nil) != (to == nil) {
			s.setWorking(to != nil, now)
		}
		s.ord = to
		if to != nil {
			to.sellers[s] = struct{}{}
			if to.directLocked() {
				// Its jobs come from its own connection, once that has one.
				m.openDedicatedLocked(to, s)
				continue
			}
			moves = append(moves, move{s, to.up.current()})
		} else if s.conn != nil {
			m.log.Debug("seller idle: no order has room", "remote", s.conn.RemoteAddr())
		}
	}
	m.mu.Unlock()
	for _, mv := range moves {
		if mv.j != nil {
			mv.s.sendJob(mv.j, true)
		}
	}
}

func (m *Market) settleLoop() {
	t := time.NewTicker(m.cfg.SettleInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.settle(m.ctx)
	}
}

type settlement struct {
	o      *order
	tx     ledger.Tx
	refund bool
}

var bigFeeDen = big.NewInt(10_000)

// settle posts what accepted shares owe and what valid shares earned since the last
// settlement, as cumulative floors (so rounding never drifts), and refunds the
// leftover of ended orders whose shares in flight have all been answered.
//
// For an order, with C = floor(Σ price·hashes accepted by the destination / K) the
// buyer's charge: the fee is C − floor(C·(10000 − FeeBps)/10000); each worker earns
// floor(Σ price·hashes of its valid shares at the market's difficulty ·
// (10000 − FeeBps) / (K·10000)); the variance account takes the rest, C − fee −
// earnings, which is negative when destinations accepted less work than sellers did.
// Each settlement posts the differences to what was posted before, and sums to zero.
func (m *Market) settle(ctx context.Context) {
	m.settleMu.Lock()
	defer m.settleMu.Unlock()
	m.mu.Lock()
	var plans []settlement
	keep := big.NewInt(10_000 - m.cfg.FeeBps)
	for _, o := range m.orders {
		r := o.rec
		if r.Closed {
			continue
		}
		total := o.spentLocked()
		charge := total - r.Charged
		fee := total - new(big.Int).Quo(new(big.Int).Mul(big.NewInt(total), keep), bigFeeDen).Int64() - r.FeePosted
		var ps []ledger.Posting
		var paid int64
		for k, n := range o.sellerNum {
			e := new(big.Int).Mul(n, keep)
			e.Quo(e, bigK)
			e.Quo(e, bigFeeDen)
			if d := e.Int64() - r.SellerPaid[k]; d > 0 {
				ps = append(ps, ledger.Posting{Account: acctSeller(k), Amount: d})
				paid += d
			}
		}
		if charge > 0 || paid > 0 || fee > 0 {
			if charge > 0 {
				ps = append(ps, ledger.Posting{Account: acctEscrow(r.ID), Amount: -charge})
			}
			if fee != 0 {
				ps = append(ps, ledger.Posting{Account: acctFees, Amount: fee})
			}
			if v := charge - fee - paid; v != 0 {
				ps = append(ps, ledger.Posting{Account: acctVariance, Amount: v})
			}
			plans = append(plans, settlement{o: o, tx: ledger.Tx{
				Key: settleKey(r.ID, r.SettleSeq), Memo: "delivery to order " + r.ID,
				Postings: ps, NonNegative: []string{acctEscrow(r.ID)},
			}})
			continue
		}
		ended := r.Status == StatusCancelled || r.Status == StatusExpired
		if ended && o.reserved.Sign() == 0 && o.up == nil {
			left := r.Funded - r.Charged - r.Refunded
			if left <= 0 {
				r.Closed = true
				m.changedLocked(o)
				continue
			}
			plans = append(plans, settlement{o: o, refund: true, tx: ledger.Tx{
				Key: "market:refund:" + r.ID, Memo: "leftover of order " + r.ID,
				Postings: []ledger.Posting{
					{Account: acctEscrow(r.ID), Amount: -left},
					{Account: acctBuyer(r.Account), Amount: left},
				},
				NonNegative: []string{acctEscrow(r.ID)},
			}})
		}
	}
	m.mu.Unlock()
	changed := false
	for _, p := range plans {
		txs := []ledger.Tx{p.tx}
		if pay, ok := payableTx(p.tx.Key, "market earnings of order "+p.o.rec.ID+" made payable", p.tx.Postings); ok && !p.refund {
			txs = append(txs, pay)
		}
		var es []ledger.Entry
		var err error
		if m.settler != nil {
			// The entries and the order's record after them, in one transaction.
			es, err = m.settler.PostAndSave(ctx, txs, m.cfg.Now(), func(es []ledger.Entry) Update {
				m.mu.Lock()
				p.o.snapshotLocked()
				rec := p.o.rec.clone()
				m.mu.Unlock()
				var ws []string
				for _, w := range applyToRecord(rec, es[0]) {
					ws = append(ws, w.Account)
				}
				if p.refund {
					rec.Closed = true
				}
				return Update{Orders: []*OrderRecord{rec}, Workers: map[string][]string{rec.ID: ws}}
			})
		} else {
			es, err = m.led.PostAll(ctx, txs)
		}
		var e ledger.Entry
		if err == nil {
			e = es[0]
		}
		if err != nil {
			m.log.Error("settlement not posted", "order", p.o.rec.ID, "key", p.tx.Key, "err", err)
			continue
		}
		m.mu.Lock()
		m.applyEntry(p.o, e)
		if p.refund {
			p.o.rec.Closed = true
		}
		m.changedLocked(p.o)
		m.mu.Unlock()
		changed = true
	}
	m.mu.Lock()
	dirty := m.dirty
	m.mu.Unlock()
	if changed || dirty {
		if err := m.save(); err != nil {
			m.log.Error("state not saved", "err", err)
		}
	}
}
