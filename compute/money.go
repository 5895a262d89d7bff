package compute

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
)

// Ledger account names. A tenant's balance is the market's buyer account (the name is
// the market's, repeated rather than imported so that compute does not depend on the
// market); a provider's earnings become payable at its address's balance in the
// payout engine's book (payout.MinerAccount(addr, "balance")), as the market's
// sellers' do.
func acctTenant(account string) string { return "market:buyer:" + account }
func acctEscrow(order string) string   { return "compute:escrow:" + order }
func acctHeld(lease string) string     { return "compute:held:" + lease }
func acctProvider(id string) string    { return "compute:provider:" + id }
func acctPayable(addr string) string   { return "miner:" + addr + ":balance" }

const acctFees = "compute:fees"

// denominator of a cost: prices are per core-hour (CPU ns) and per GiB-hour (byte ns).
var costDen = new(big.Int).Mul(big.NewInt(nsPerHour), big.NewInt(gib))

// cost is what a lease's metered use costs so far, rounded down:
// (price · cpu_ns · 2^30 + memPrice · Σ rss·wall_ns) / (3.6·10^12 · 2^30) satoshis.
// Charges are posted as differences of this cumulative floor, so rounding never
// drifts and never charges a fraction twice.
func (l *lease) cost() int64 {
	n := new(big.Int).Mul(big.NewInt(l.price), big.NewInt(l.cpu))
	n.Mul(n, big.NewInt(gib))
	n.Add(n, new(big.Int).Mul(big.NewInt(l.memPrice), l.byteNS))
	n.Quo(n, costDen)
	if !n.IsInt64() {
		return ledger.MaxAbsAmount
	}
	return n.Int64()
}

// intervalCost is the most one interval of the lease can cost: every leased core
// busy and all the leased memory held, rounded up.
func (b *Book) intervalCost(l *lease) int64 {
	iv := int64(b.cfg.Interval)
	n := new(big.Int).Mul(big.NewInt(l.price*int64(l.cores)), big.NewInt(iv))
	n.Mul(n, big.NewInt(gib))
	n.Add(n, new(big.Int).Mul(new(big.Int).Mul(big.NewInt(l.memPrice), new(big.Int).SetUint64(l.memory)), big.NewInt(iv)))
	n.Add(n, new(big.Int).Sub(costDen, big.NewInt(1)))
	n.Quo(n, costDen)
	if !n.IsInt64() {
		return ledger.MaxAbsAmount
	}
	return n.Int64()
}

// settlePlanLocked returns the entry that charges what l's metered use costs beyond
// what it was charged, capped by what the order's escrow still holds, and whether
// the lease must stop: when what is left would not pay for another full interval.
// Stopping one interval early means no provider works an interval the escrow cannot
// pay; the leftover returns to the tenant.
func (b *Book) settlePlanLocked(l *lease) (ledger.Tx, int64, bool) {
	o := l.o
	left := o.funded - o.charged
	charge := min(l.cost()-l.charged, left)
	charge = max(charge, 0)
	stop := left-charge < b.intervalCost(l)
	tx := ledger.Tx{
		Key:  "compute:settle:" + l.id + ":" + strconv.Itoa(l.settles),
		Memo: fmt.Sprintf("metered use of lease %s (order %s)", l.id, o.id),
		Postings: []ledger.Posting{
			{Account: acctEscrow(o.id), Amount: -charge},
			{Account: acctHeld(l.id), Amount: charge},
		},
		NonNegative: []string{acctEscrow(o.id)},
	}
	return tx, charge, stop
}

// fund moves the order's budget from the tenant's balance into its escrow.
func (b *Book) fund(ctx context.Context, o *order) error {
	_, err := b.cfg.Ledger.Post(ctx, ledger.Tx{
		Key:  "compute:fund:" + o.id,
		Memo: "escrow for compute order " + o.id,
		Postings: []ledger.Posting{
			{Account: acctTenant(o.account), Amount: -o.req.Budget},
			{Account: acctEscrow(o.id), Amount: o.req.Budget},
		},
		NonNegative: []string{acctTenant(o.account)},
	})
	if errors.Is(err, ledger.ErrInsufficient) {
		return hashgrid.Errorf(hashgrid.ECONFLICT, "balance too low for a budget of %d satoshis", o.req.Budget)
	}
	if err != nil {
		return fmt.Errorf("compute: fund: %w", err)
	}
	o.funded = o.req.Budget
	return nil
}

// A plan is one change of the books: its entries, and what to record once they post.
type plan struct {
	txs   []ledger.Tx
	apply func()
}

// step settles what o's state calls for, one change at a time: spot-check verdicts,
// releases of earnings to providers, forfeits to the tenant, and the leftover's
// refund once every lease is over and settled.
func (b *Book) step(ctx context.Context, o *order) {
	b.postMu.Lock()
	defer b.postMu.Unlock()
	for {
		b.mu.Lock()
		b.verifyLocked(o)
		m := b.nextMoneyLocked(o)
		b.mu.Unlock()
		if m == nil {
			return
		}
		if len(m.txs) > 0 {
			if _, err := b.cfg.Ledger.PostAll(ctx, m.txs); err != nil {
				// The tick retries: the entries are the same until they post.
				b.log.Error("compute: entry not posted", "order", o.id, "key", m.txs[0].Key, "err", err)
				return
			}
		}
		b.mu.Lock()
		m.apply()
		b.mu.Unlock()
	}
}

// nextMoneyLocked returns the next settlement o needs, or nil.
func (b *Book) nextMoneyLocked(o *order) *plan {
	if o.closed {
		return nil
	}
	for _, l := range o.leases {
		if !terminal(l.status) || l.settled != "" {
			continue
		}
		switch {
		case l.faulted:
			return b.forfeitLocked(l)
		case o.verdict != "":
			return b.releaseLocked(l)
		}
	}
	if o.status == OrderOpen || o.status == OrderRunning {
		return nil
	}
	for _, l := range o.leases {
		if !terminal(l.status) || l.settled == "" {
			return nil
		}
	}
	// Forfeits went from held accounts, not from the escrow: the escrow holds what
	// was funded and never charged.
	left := o.funded - o.charged
	if left <= 0 {
		return &plan{apply: func() { o.closed, o.closedAt = true, b.cfg.Now(); o.logf(o.closedAt, "order closed") }}
	}
	return &plan{
		txs: []ledger.Tx{{
			Key: "compute:refund:" + o.id, Memo: "leftover of compute order " + o.id,
			Postings:    []ledger.Posting{{Account: acctEscrow(o.id), Amount: -left}, {Account: acctTenant(o.account), Amount: left}},
			NonNegative: []string{acctEscrow(o.id)},
		}},
		apply: func() {
			o.refunded += left
			o.closed, o.closedAt = true, b.cfg.Now()
			o.logf(o.closedAt, "refunded %d sat of escrow left; order closed", left)
		},
	}
}

// releaseLocked pays what l was charged to its provider, less the market's fee, and
// makes it payable at the provider's address in the same transaction.
func (b *Book) releaseLocked(l *lease) *plan {
	h := l.charged
	// h · (10000 − fee bps) overflows int64 above about 9·10^14 sat.
	k := new(big.Int).Mul(big.NewInt(h), big.NewInt(10_000-b.cfg.FeeBps))
	earn := k.Quo(k, big.NewInt(10_000)).Int64()
	fee := h - earn
	done := func() {
		l.settled = "released"
		l.p.earned += earn
		l.o.logf(b.cfg.Now(), "lease %s: %d sat released to provider %s (%d sat fee)", l.id, earn, l.p.id, fee)
	}
	if h == 0 {
		return &plan{apply: done}
	}
	ps := []ledger.Posting{{Account: acctHeld(l.id), Amount: -h}}
	if fee > 0 {
		ps = append(ps, ledger.Posting{Account: acctFees, Amount: fee})
	}
	txs := []ledger.Tx{}
	if earn > 0 {
		ps = append(ps, ledger.Posting{Account: acctProvider(l.p.id), Amount: earn})
	}
	txs = append(txs, ledger.Tx{Key: "compute:release:" + l.id, Memo: "earnings of lease " + l.id, Postings: ps, NonNegative: []string{acctHeld(l.id)}})
	if earn > 0 {
		txs = append(txs, ledger.Tx{Key: "compute:payable:" + l.id, Memo: "earnings of lease " + l.id + " made payable",
			Postings:    []ledger.Posting{{Account: acctProvider(l.p.id), Amount: -earn}, {Account: acctPayable(l.p.addr), Amount: earn}},
			NonNegative: []string{acctProvider(l.p.id)}})
	}
	return &plan{txs: txs, apply: done}
}

// forfeitLocked returns what a faulted lease was charged to the tenant.
func (b *Book) forfeitLocked(l *lease) *plan {
	h := l.charged
	done := func() {
		l.settled = "forfeited"
		l.o.refunded += h
		l.o.logf(b.cfg.Now(), "lease %s: %d sat charged for wrong results returned to the tenant", l.id, h)
	}
	if h == 0 {
		return &plan{apply: done}
	}
	return &plan{txs: []ledger.Tx{{
		Key: "compute:forfeit:" + l.id, Memo: "lease " + l.id + " returned wrong results",
		Postings:    []ledger.Posting{{Account: acctHeld(l.id), Amount: -h}, {Account: acctTenant(l.o.account), Amount: h}},
		NonNegative: []string{acctHeld(l.id)},
	}}, apply: done}
}

// Tick ends leases whose provider missed MissedReports intervals, retries open orders
// and spot checks that wait for capacity, and settles what is due.
func (b *Book) Tick(ctx context.Context) {
	// verifyLocked may fault a lease: never between another money plan and its apply.
	b.postMu.Lock()
	b.mu.Lock()
	now := b.cfg.Now()
	limit := b.cfg.Interval * time.Duration(b.cfg.MissedReports)
	var orders []*order
	for _, o := range b.orders {
		if o.closed {
			if now.Sub(o.closedAt) > b.cfg.Retention {
				b.forgetLocked(o)
			}
			continue
		}
		orders = append(orders, o)
		b.expireRequestsLocked(o, now)
		for _, l := range o.leases {
			if !terminal(l.status) && l.stopping != "" && now.Sub(l.stopAt) > b.cfg.Interval*3/2 {
				b.endLocked(l, LeaseCancelled, l.stopping+"; no report since")
				continue
			}
			if terminal(l.status) || now.Sub(l.seen) <= limit {
				continue
			}
			b.endLocked(l, LeaseLost, fmt.Sprintf("no report for %d intervals", b.cfg.MissedReports))
			if l == o.main && o.status == OrderRunning {
				o.status, o.reason = OrderLost, "the provider stopped reporting"
			}
		}
	}
	// Spot checks of orders under way take capacity before orders still open.
	for _, o := range orders {
		b.verifyLocked(o)
	}
	b.assignOpenLocked()
	b.mu.Unlock()
	b.postMu.Unlock()
	for _, o := range orders {
		b.step(ctx, o)
	}
}

// forgetLocked drops a closed order, its leases and their outputs from memory; the
// ledger keeps its money.
func (b *Book) forgetLocked(o *order) {
	delete(b.orders, o.id)
	for _, l := range o.leases {
		delete(b.leases, l.id)
		l.p.leases = slices.DeleteFunc(l.p.leases, func(x *lease) bool { return x == l })
	}
}

// refundOrphans returns to its tenant the escrow of every order a previous run left
// open. Orders live in memory only, so when a book starts, money in an escrow belongs
// to an order nobody will settle. Held accounts (charged for metered work, waiting
// for a spot check) are left as they are and logged: whether the provider or the
// tenant should have them is for the operator to decide.
func (b *Book) refundOrphans(ctx context.Context) error {
	bals, err := b.cfg.Ledger.Balances(ctx, "compute:escrow:")
	if err != nil {
		return fmt.Errorf("compute: escrows: %w", err)
	}
	for acct, n := range bals {
		if n <= 0 {
			continue
		}
		id := strings.TrimPrefix(acct, "compute:escrow:")
		fund, err := b.cfg.Ledger.Entry(ctx, "compute:fund:"+id)
		if err != nil {
			return fmt.Errorf("compute: escrow of order %s: %w", id, err)
		}
		tenant := ""
		for _, p := range fund.Postings {
			if strings.HasPrefix(p.Account, "market:buyer:") {
				tenant = p.Account
			}
		}
		last, err := b.cfg.Ledger.Entries(ctx, acct, 1)
		if err != nil || len(last) == 0 || tenant == "" {
			return fmt.Errorf("compute: escrow of order %s: no tenant found (%v)", id, err)
		}
		// Keyed by the escrow's last entry: the balance at that entry is fixed, so a
		// retry posts the same amount.
		if _, err := b.cfg.Ledger.Post(ctx, ledger.Tx{
			Key: fmt.Sprintf("compute:orphan:%s:upto:%d", id, last[0].ID), Memo: "escrow of compute order " + id + " left by a restart",
			Postings:    []ledger.Posting{{Account: acct, Amount: -n}, {Account: tenant, Amount: n}},
			NonNegative: []string{acct},
		}); err != nil {
			return fmt.Errorf("compute: refund escrow of order %s: %w", id, err)
		}
		b.log.Warn("compute: refunded the escrow of an order a restart ended", "order", id, "amount", n)
	}
	held, err := b.cfg.Ledger.Balances(ctx, "compute:held:")
	if err != nil {
		return fmt.Errorf("compute: held: %w", err)
	}
	for acct, n := range held {
		if n > 0 {
			b.log.Warn("compute: a lease a restart ended holds earnings not released", "account", acct, "amount", n)
		}
	}
	return nil
}
