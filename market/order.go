package market

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/ledger"
)

// Order kinds.
const (
	KindSpot     = "spot"
	KindContract = "contract"
)

// Order statuses.
const (
	StatusActive    = "active"    // routed to when its pool is up and budget remains
	StatusPending   = "pending"   // a contract before its start
	StatusPaused    = "paused"    // by its buyer, or because its pool failed (see Reason)
	StatusExhausted = "exhausted" // budget spent; a refill makes it active again
	StatusCancelled = "cancelled" // leftover refunded once in-flight shares are answered
	StatusExpired   = "expired"   // a contract past its end; leftover refunded
)

// Destination is the pool an order's hashrate goes to.
type Destination struct {
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
}

// Segment is the delivery to one owner of a contract (a spot order has one).
type Segment struct {
	Account  string        `json:"account"`
	From     time.Time     `json:"from"`
	Accepted uint64        `json:"shares_accepted"`
	Work     hashgrid.Work `json:"work"`
}

// TransferOffer is a contract's owner offering it to another account.
type TransferOffer struct {
	To    string `json:"to"`
	Price int64  `json:"price"`
}

// OrderRecord is an order as the state file keeps it.
type OrderRecord struct {
	ID         string            `json:"id"`
	Kind       string            `json:"kind"`
	Account    string            `json:"account"`
	Dest       Destination       `json:"destination"`
	Price      int64             `json:"price"`      // in PriceUnit
	PriceUnit  string            `json:"price_unit"` // PriceUnit; "" in records from before it: sat per TH/s per day
	Limit      float64           `json:"limit"`      // TH/s; 0 = none
	Status     string            `json:"status"`
	Reason     string            `json:"reason,omitempty"`
	Created    time.Time         `json:"created"`
	Decreased  time.Time         `json:"price_decreased,omitzero"` // when the price last fell
	Start      time.Time         `json:"start,omitzero"`
	End        time.Time         `json:"end,omitzero"`
	Funded     int64             `json:"funded"`
	Charged    int64             `json:"charged"`
	Refunded   int64             `json:"refunded"`
	Closed     bool              `json:"closed"` // leftover refunded; nothing more will happen
	LastEntry  int64             `json:"last_entry"`
	SettleSeq  uint64            `json:"settle_seq"`
	FundSeq    uint64            `json:"fund_seq"`
	XferSeq    uint64            `json:"transfer_seq"`
	ChargeNum  string            `json:"charge_num"` // Σ price·hashes of accepted shares
	SellerNum  map[string]string `json:"seller_num"` // Σ price·hashes of each worker's valid shares at the market's difficulty
	SellerPaid map[string]int64  `json:"seller_paid"`
	// FeePosted and VariancePosted are what settlements posted to the fee and
	// variance accounts for this order.
	FeePosted      int64          `json:"fee_posted"`
	VariancePosted int64          `json:"variance_posted"`
	Accepted       uint64         `json:"shares_accepted"`
	Rejected       uint64         `json:"shares_rejected"`
	Stale          uint64         `json:"shares_stale"`
	Dropped        uint64         `json:"shares_dropped"` // valid, not forwarded: the destination had UpstreamInFlight unanswered
	Work           hashgrid.Work  `json:"work"`
	FirstShare     time.Time      `json:"first_share,omitzero"`
	Segments       []Segment      `json:"segments"`
	Offer          *TransferOffer `json:"offer,omitempty"`
}

// order is an order at run time.
type order struct {
	rec       *OrderRecord
	num       *big.Int    // Σ price·hashes accepted
	reserved  *big.Int    // price·hashes of shares forwarded and not yet answered
	draining  []*upstream // detached upstreams kept open until reserved is answered
	sellerNum map[string]*big.Int
	up        *upstream
	// ded holds each seller's own connection when the destination's extranonce2 is
	// too small to share; dedRetry is when the order may open one again after one
	// failed.
	ded      map[*seller]*upstream
	dedRetry time.Time
	sellers  map[*seller]struct{}
	deliv    rateWindow
	samples  []ShareSample
	speeds   []speedBucket // delivered work by SpeedBucket, oldest first
	sampleAt int
	changed  bool                 // rec differs from what the store holds
	rejects  int                  // consecutive destination rejections
	rejectBy map[*seller]struct{} // sellers of the current rejections (at most two kept)
	// changedWorkers are the workers whose SellerNum or SellerPaid entries changed
	// since the last save.
	changedWorkers map[string]struct{}
}

func newOrder(rec *OrderRecord) *order {
	if rec.SellerNum == nil {
		rec.SellerNum = map[string]string{}
	}
	if rec.SellerPaid == nil {
		rec.SellerPaid = map[string]int64{}
	}
	return &order{rec: rec, num: new(big.Int), reserved: new(big.Int), sellerNum: map[string]*big.Int{}, sellers: map[*seller]struct{}{}}
}

func restoreOrder(rec *OrderRecord) (*order, error) {
	if rec.PriceUnit == "" {
		// A record from before prices per PH/s: its price and its numerators
		// (Σ price·hashes) are a thousand times larger in the new unit, and every
		// amount derived from them (numerator / hashes per PH/s-day) stays the same.
		if rec.Price > MaxPrice/1000 {
			return nil, fmt.Errorf("order %s: price %d sat per TH/s per day is too large to convert", rec.ID, rec.Price)
		}
		rec.Price *= 1000
		thousand := big.NewInt(1000)
		if rec.ChargeNum != "" {
			n, ok := new(big.Int).SetString(rec.ChargeNum, 10)
			if !ok {
				return nil, fmt.Errorf("bad charge_num %q", rec.ChargeNum)
			}
			rec.ChargeNum = n.Mul(n, thousand).String()
		}
		for k, v := range rec.SellerNum {
			n, ok := new(big.Int).SetString(v, 10)
			if !ok {
				return nil, fmt.Errorf("bad seller_num for %s", k)
			}
			rec.SellerNum[k] = n.Mul(n, thousand).String()
		}
		rec.PriceUnit = PriceUnit
	} else if rec.PriceUnit != PriceUnit {
		return nil, fmt.Errorf("order %s: unknown price unit %q", rec.ID, rec.PriceUnit)
	}
	o := newOrder(rec)
	if rec.FeePosted == 0 && rec.VariancePosted == 0 && rec.Charged > 0 {
		// State from before the variance account: the fee was what sellers were not paid.
		rec.FeePosted = rec.Charged
		for _, p := range rec.SellerPaid {
			rec.FeePosted -= p
		}
	}
	if rec.ChargeNum != "" {
		if _, ok := o.num.SetString(rec.ChargeNum, 10); !ok {
			return nil, fmt.Errorf("bad charge_num %q", rec.ChargeNum)
		}
	}
	for k, v := range rec.SellerNum {
		n, ok := new(big.Int).SetString(v, 10)
		if !ok {
			return nil, fmt.Errorf("bad seller_num for %s", k)
		}
		o.sellerNum[k] = n
	}
	return o, nil
}

func (o *order) snapshotLocked() {
	o.rec.ChargeNum = o.num.String()
	for k, n := range o.sellerNum {
		o.rec.SellerNum[k] = n.String()
	}
}

// spentLocked is what the order owes for accepted shares, posted or not.
func (o *order) spentLocked() int64 {
	return new(big.Int).Quo(o.num, bigK).Int64()
}

// roomLocked returns price·hashes still coverable by the escrow.
func (o *order) roomLocked() *big.Int {
	r := new(big.Int).Mul(big.NewInt(o.rec.Funded-o.rec.Refunded), bigK)
	r.Sub(r, o.num)
	return r.Sub(r, o.reserved)
}

// shareCost is the numerator a share of difficulty d adds at price p.
func shareCost(p int64, d hashgrid.Diff) *big.Int {
	c := new(big.Int).SetUint64(uint64(d))
	return c.Mul(c, big.NewInt(p))
}

// directLocked reports whether o's destination gives too little extranonce2 to share
// one connection among sellers: each seller routed to it gets its own.
func (o *order) directLocked() bool {
	if o.up == nil {
		return false
	}
	j := o.up.current()
	return j != nil && j.direct
}

// live reports whether sellers may be routed to o now.
func (o *order) liveLocked(now time.Time) bool {
	r := o.rec
	if r.Status != StatusActive || o.up == nil {
		return false
	}
	j := o.up.current()
	if j == nil {
		return false
	}
	if r.Kind == KindContract && (now.Before(r.Start) || !now.Before(r.End)) {
		return false
	}
	return o.roomLocked().Cmp(shareCost(r.Price, j.upDiff)) >= 0
}

// OrderRequest places a spot order.
type OrderRequest struct {
	PoolURL      string  `json:"pool_url"`
	PoolUser     string  `json:"pool_user"`
	PoolPassword string  `json:"pool_password"`
	Price        int64   `json:"price"`  // sat per PH/s per day
	Limit        float64 `json:"limit"`  // TH/s, 0 = none
	Budget       int64   `json:"budget"` // sat moved from the balance into escrow
}

// checkDest checks a destination's fields, then that the market may connect to it.
func (m *Market) checkDest(ctx context.Context, d Destination) error {
	if _, err := destHostPort(d.URL); err != nil {
		return hashgrid.Errorf(hashgrid.EINVALID, "pool_url: %v", err)
	}
	if d.User == "" || len(d.User) > maxFieldLen {
		return hashgrid.Errorf(hashgrid.EINVALID, "pool_user must be 1..%d bytes", maxFieldLen)
	}
	if len(d.Password) > maxFieldLen || len(d.URL) > maxFieldLen {
		return hashgrid.Errorf(hashgrid.EINVALID, "pool_url and pool_password must be at most %d bytes", maxFieldLen)
	}
	return m.checkDestPolicy(ctx, d.URL)
}

func checkPrice(p int64) error {
	if p <= 0 || p > MaxPrice {
		return hashgrid.Errorf(hashgrid.EINVALID, "price must be 1..%d sat per PH/s per day", int64(MaxPrice))
	}
	return nil
}

func checkLimit(l float64) error {
	if !(l >= 0) || math.IsInf(l, 0) || l > 1e9 {
		return hashgrid.Errorf(hashgrid.EINVALID, "limit must be a number of TH/s from 0 (none) to 1e9")
	}
	return nil
}

// PlaceOrder opens a spot order funded with req.Budget from the account's balance.
func (m *Market) PlaceOrder(ctx context.Context, account string, req OrderRequest) (OrderView, error) {
	dest := Destination{URL: req.PoolURL, User: req.PoolUser, Password: req.PoolPassword}
	if err := m.checkDest(ctx, dest); err != nil {
		return OrderView{}, err
	}
	if err := checkPrice(req.Price); err != nil {
		return OrderView{}, err
	}
	if err := checkLimit(req.Limit); err != nil {
		return OrderView{}, err
	}
	if req.Budget < m.cfg.MinOrderBudget || req.Budget > ledger.MaxAbsAmount {
		return OrderView{}, hashgrid.Errorf(hashgrid.EINVALID, "budget must be %d..%d satoshis", m.cfg.MinOrderBudget, int64(ledger.MaxAbsAmount))
	}
	now := m.cfg.Now().UTC()
	rec := &OrderRecord{Kind: KindSpot, Account: account, Dest: dest, Price: req.Price, PriceUnit: PriceUnit, Limit: req.Limit,
		Status: StatusActive, Created: now, Segments: []Segment{{Account: account, From: now}}}
	return m.openOrder(ctx, rec, req.Budget)
}

// openOrder records rec, then funds it; an order whose funding fails is forgotten.
func (m *Market) openOrder(ctx context.Context, rec *OrderRecord, budget int64) (OrderView, error) {
	m.mu.Lock()
	if m.st.Accounts[rec.Account] == nil {
		m.mu.Unlock()
		return OrderView{}, hashgrid.Errorf(hashgrid.ENOTFOUND, "no account %q", rec.Account)
	}
	if len(m.st.Orders) >= MaxOrders {
		m.mu.Unlock()
		return OrderView{}, hashgrid.Errorf(hashgrid.EUNAVAILABLE, "order limit reached")
	}
	rec.ID = m.newIDLocked("o")
	o := newOrder(rec)
	m.st.Orders[rec.ID] = rec
	m.orders[rec.ID] = o
	m.changedLocked(o)
	m.mu.Unlock()
	if err := m.save(); err != nil {
		return OrderView{}, err
	}
	if err := m.fund(ctx, o, budget); err != nil {
		m.mu.Lock()
		delete(m.st.Orders, rec.ID)
		delete(m.orders, rec.ID)
		m.deleted = append(m.deleted, rec.ID)
		m.dirty = true
		m.mu.Unlock()
		m.save()
		return OrderView{}, err
	}
	m.mu.Lock()
	m.ensureUpstreamLocked(o)
	v := m.viewLocked(o)
	m.mu.Unlock()
	m.kick()
	return v, m.save()
}

// fund moves amount from the owner's balance into the order's escrow.
func (m *Market) fund(ctx context.Context, o *order, amount int64) error {
	m.mu.Lock()
	key := fmt.Sprintf("market:fund:%s:%d", o.rec.ID, o.rec.FundSeq)
	acct := o.rec.Account
	m.mu.Unlock()
	e, err := m.led.Post(ctx, ledger.Tx{
		Key:  key,
		Memo: "escrow for order " + o.rec.ID,
		Postings: []ledger.Posting{
			{Account: acctBuyer(acct), Amount: -amount},
			{Account: acctEscrow(o.rec.ID), Amount: amount},
		},
		NonNegative: []string{acctBuyer(acct)},
	})
	if err != nil {
		if errors.Is(err, ledger.ErrInsufficient) {
			return hashgrid.Errorf(hashgrid.ECONFLICT, "balance too low for %d satoshis", amount)
		}
		return err
	}
	m.mu.Lock()
	o.rec.FundSeq++
	m.applyEntry(o, e)
	m.changedLocked(o)
	m.mu.Unlock()
	return nil
}

func (m *Market) ownOrder(account, id string) (*order, error) {
	o := m.orders[id]
	if o == nil || o.rec.Account != account {
		return nil, hashgrid.Errorf(hashgrid.ENOTFOUND, "no order %q", id)
	}
	return o, nil
}

// OrderEdit changes an order's price or limit (nil leaves a field as it is).
type OrderEdit struct {
	Price *int64   `json:"price"`
	Limit *float64 `json:"limit"`
}

// EditOrder applies e to a spot order.
func (m *Market) EditOrder(account, id string, e OrderEdit) (OrderView, error) {
	if e.Price != nil {
		if err := checkPrice(*e.Price); err != nil {
			return OrderView{}, err
		}
	}
	if e.Limit != nil {
		if err := checkLimit(*e.Limit); err != nil {
			return OrderView{}, err
		}
	}
	m.mu.Lock()
	o, err := m.ownOrder(account, id)
	if err != nil {
		m.mu.Unlock()
		return OrderView{}, err
	}
	if o.rec.Kind != KindSpot {
		m.mu.Unlock()
		return OrderView{}, hashgrid.Errorf(hashgrid.ECONFLICT, "a contract's price and speed are fixed")
	}
	if o.rec.Status == StatusCancelled {
		m.mu.Unlock()
		return OrderView{}, hashgrid.Errorf(hashgrid.ECONFLICT, "order %s is cancelled", id)
	}
	if e.Price != nil && *e.Price < o.rec.Price {
		now := m.cfg.Now().UTC()
		p, bps := o.rec.Price, m.cfg.MaxPriceDecreaseBps
		floor := p - (p/10_000*bps + p%10_000*bps/10_000) // p·bps/10000 without overflow
		if next := o.rec.Decreased.Add(m.cfg.PriceDecreaseInterval); !o.rec.Decreased.IsZero() && now.Before(next) {
			m.mu.Unlock()
			return OrderView{}, hashgrid.Errorf(hashgrid.ECONFLICT, "a price may fall once every %s: the next decrease is possible from %s", m.cfg.PriceDecreaseInterval, next.Format(time.RFC3339))
		}
		if *e.Price < floor {
			m.mu.Unlock()
			return OrderView{}, hashgrid.Errorf(hashgrid.ECONFLICT, "a price may fall by at most %d.%02d%% at a time: to %d at the lowest", m.cfg.MaxPriceDecreaseBps/100, m.cfg.MaxPriceDecreaseBps%100, floor)
		}
		o.rec.Decreased = now
	}
	if e.Price != nil {
		o.rec.Price = *e.Price
	}
	if e.Limit != nil {
		o.rec.Limit = *e.Limit
	}
	if o.rec.Status == StatusExhausted && o.roomLocked().Sign() > 0 {
		// A lower price may make the rest of the budget usable again.
		o.rec.Status, o.rec.Reason = StatusActive, ""
		m.ensureUpstreamLocked(o)
	}
	m.changedLocked(o)
	v := m.viewLocked(o)
	m.mu.Unlock()
	m.kick()
	return v, m.save()
}

// PauseOrder stops routing to an order and closes its pool connection.
func (m *Market) PauseOrder(account, id string) (OrderView, error) {
	m.mu.Lock()
	o, err := m.ownOrder(account, id)
	if err == nil {
		switch o.rec.Status {
		case StatusActive, StatusPending, StatusExhausted, StatusPaused:
			m.pauseLocked(o, "paused by buyer")
		default:
			err = hashgrid.Errorf(hashgrid.ECONFLICT, "order %s is %s", id, o.rec.Status)
		}
	}
	var v OrderView
	if err == nil {
		v = m.viewLocked(o)
	}
	m.mu.Unlock()
	if err != nil {
		return OrderView{}, err
	}
	m.kick()
	return v, m.save()
}

func (m *Market) pauseLocked(o *order, reason string) {
	o.rec.Status, o.rec.Reason = StatusPaused, reason
	m.closeUpstreamLocked(o)
	m.changedLocked(o)
}

// ResumeOrder makes a paused order active again (its pool is dialled anew).
func (m *Market) ResumeOrder(account, id string) (OrderView, error) {
	m.mu.Lock()
	o, err := m.ownOrder(account, id)
	if err == nil && o.rec.Status != StatusPaused {
		err = hashgrid.Errorf(hashgrid.ECONFLICT, "order %s is %s, not paused", id, o.rec.Status)
	}
	var v OrderView
	if err == nil {
		o.rec.Status, o.rec.Reason = StatusActive, ""
		o.rejects, o.rejectBy = 0, nil
		m.ensureUpstreamLocked(o)
		m.changedLocked(o)
		v = m.viewLocked(o)
	}
	m.mu.Unlock()
	if err != nil {
		return OrderView{}, err
	}
	m.kick()
	return v, m.save()
}

// RefillOrder adds amount from the balance to an order's escrow.
func (m *Market) RefillOrder(ctx context.Context, account, id string, amount int64) (OrderView, error) {
	if amount <= 0 || amount > ledger.MaxAbsAmount {
		return OrderView{}, hashgrid.Errorf(hashgrid.EINVALID, "amount must be a positive number of satoshis")
	}
	m.mu.Lock()
	o, err := m.ownOrder(account, id)
	if err == nil && (o.rec.Status == StatusCancelled || o.rec.Status == StatusExpired || o.rec.Kind == KindContract) {
		err = hashgrid.Errorf(hashgrid.ECONFLICT, "order %s cannot be refilled", id)
	}
	m.mu.Unlock()
	if err != nil {
		return OrderView{}, err
	}
	if err := m.fund(ctx, o, amount); err != nil {
		return OrderView{}, err
	}
	m.mu.Lock()
	if o.rec.Status == StatusExhausted {
		o.rec.Status, o.rec.Reason = StatusActive, ""
		m.changedLocked(o)
	}
	if o.rec.Status == StatusActive {
		m.ensureUpstreamLocked(o)
	}
	v := m.viewLocked(o)
	m.mu.Unlock()
	m.kick()
	return v, m.save()
}

// CancelOrder ends an order: sellers move at once, and the leftover escrow returns
// to the balance once the shares in flight have been answered.
func (m *Market) CancelOrder(account, id string) (OrderView, error) {
	m.mu.Lock()
	o, err := m.ownOrder(account, id)
	if err == nil && (o.rec.Status == StatusCancelled || o.rec.Status == StatusExpired) {
		err = hashgrid.Errorf(hashgrid.ECONFLICT, "order %s is already %s", id, o.rec.Status)
	}
	var v OrderView
	if err == nil {
		o.rec.Status, o.rec.Reason = StatusCancelled, "cancelled by buyer"
		o.rec.Offer = nil
		m.closeUpstreamLocked(o)
		m.changedLocked(o)
		v = m.viewLocked(o)
	}
	m.mu.Unlock()
	if err != nil {
		return OrderView{}, err
	}
	m.kick()
	return v, m.save()
}

// --- contracts ---

// Quote is the market's price for a fixed-term contract.
type Quote struct {
	Price int64 `json:"price"` // sat per PH/s per day
	Total int64 `json:"total"` // satoshis held in escrow for the whole term
	// Capacity is the sellers' speed not reserved by other contracts over the term
	// (TH/s); Displaced the highest price of the spot orders the contract pushes out
	// (0: none), which the price is that plus the premium of.
	Capacity  float64 `json:"capacity"`
	Displaced int64   `json:"displaced_price"`
}

// QuoteContract prices speed TH/s from start to end. A contract is served before any
// spot order, so it must come from capacity that is there: the sellers' measured
// speed now, less what other contracts reserve over any part of the term; asking for
// more is refused. Its price is set by the book: the spot orders it would push out
// (those below the capacity left once it is served, from the highest price down)
// name the price of the hashrate it takes, and the highest of their prices, plus
// ContractPremiumBps for the reservation, is the quote; at least MinPrice, which is
// also the quote when the contract pushes out no spot order.
func (m *Market) QuoteContract(speed float64, start, end time.Time) (Quote, error) {
	if err := checkContract(speed, start, end, m.cfg.Now()); err != nil {
		return Quote{}, err
	}
	now := m.cfg.Now()
	m.mu.Lock()
	var capacity float64 // H/s
	for sl := range m.sellers {
		capacity += sl.speed(now)
	}
	var spot []*OrderRecord
	for _, o := range m.orders {
		r := o.rec
		switch {
		case r.Kind == KindContract && (r.Status == StatusActive || r.Status == StatusPending || r.Status == StatusPaused) &&
			r.Start.Before(end) && r.End.After(start):
			capacity -= r.Limit * 1e12
		case r.Kind == KindSpot && o.liveLocked(now):
			spot = append(spot, r)
		}
	}
	m.mu.Unlock()
	want := speed * 1e12
	if want > capacity {
		return Quote{}, hashgrid.Errorf(hashgrid.EUNAVAILABLE, "%.6g TH/s asked, %.6g TH/s of sellers' capacity is not reserved over that term", speed, max(capacity, 0)/1e12)
	}
	sort.Slice(spot, func(i, j int) bool { return spot[i].Price > spot[j].Price })
	left := capacity - want // what spot orders get once the contract is served
	var displaced int64
	var demand float64
	for _, r := range spot {
		if r.Limit == 0 {
			demand = math.Inf(1)
		} else {
			demand += r.Limit * 1e12
		}
		if demand > left {
			displaced = r.Price
			break
		}
	}
	p := displaced
	if p > 0 {
		prem := new(big.Int).Mul(big.NewInt(p), big.NewInt(m.cfg.ContractPremiumBps))
		prem.Add(prem, big.NewInt(9_999))
		prem.Quo(prem, bigFeeDen)
		if !prem.IsInt64() || prem.Int64() > MaxPrice-p {
			p = MaxPrice
		} else {
			p += prem.Int64()
		}
	}
	p = max(p, m.cfg.MinPrice)
	return Quote{Price: p, Total: contractTotal(p, speed, end.Sub(start)), Capacity: max(capacity, 0) / 1e12, Displaced: displaced}, nil
}

func checkContract(speed float64, start, end, now time.Time) error {
	if !(speed >= 1e-9) || speed > 1e9 {
		return hashgrid.Errorf(hashgrid.EINVALID, "speed must be 1e-9..1e9 TH/s")
	}
	if !end.After(start) {
		return hashgrid.Errorf(hashgrid.EINVALID, "end must be after start")
	}
	if !end.After(now) {
		return hashgrid.Errorf(hashgrid.EINVALID, "end is in the past")
	}
	if end.Sub(start) > 366*24*time.Hour {
		return hashgrid.Errorf(hashgrid.EINVALID, "a contract lasts at most a year")
	}
	return nil
}

// contractTotal is ceil(price · speed · seconds / 86400) for a price per PH/s and a
// speed in TH/s, the speed counted in whole kH/s so that the amount is exact.
func contractTotal(price int64, speed float64, d time.Duration) int64 {
	kh := big.NewInt(int64(math.Round(speed * 1e9)))
	n := new(big.Int).Mul(big.NewInt(price), kh)
	n.Mul(n, big.NewInt(int64(d/time.Second)))
	den := big.NewInt(86_400 * 1_000_000_000_000) // s/day · kH per PH
	n.Add(n, new(big.Int).Sub(den, big.NewInt(1)))
	n.Quo(n, den)
	if !n.IsInt64() || n.Int64() > ledger.MaxAbsAmount {
		return ledger.MaxAbsAmount
	}
	return n.Int64()
}

// ContractRequest buys a contract.
type ContractRequest struct {
	Speed        float64   `json:"speed"` // TH/s
	Start        time.Time `json:"start"`
	End          time.Time `json:"end"`
	Price        int64     `json:"price"` // at least the quote
	PoolURL      string    `json:"pool_url"`
	PoolUser     string    `json:"pool_user"`
	PoolPassword string    `json:"pool_password"`
}

// BuyContract escrows the whole term's price and opens the contract.
func (m *Market) BuyContract(ctx context.Context, account string, req ContractRequest) (OrderView, error) {
	dest := Destination{URL: req.PoolURL, User: req.PoolUser, Password: req.PoolPassword}
	if err := m.checkDest(ctx, dest); err != nil {
		return OrderView{}, err
	}
	// One purchase at a time: two quotes against the same free capacity would
	// otherwise both pass.
	m.contractMu.Lock()
	defer m.contractMu.Unlock()
	q, err := m.QuoteContract(req.Speed, req.Start, req.End)
	if err != nil {
		return OrderView{}, err
	}
	if req.Price < q.Price || req.Price > MaxPrice {
		return OrderView{}, hashgrid.Errorf(hashgrid.ECONFLICT, "price %d is below the quote %d", req.Price, q.Price)
	}
	now := m.cfg.Now().UTC()
	status := StatusActive
	if now.Before(req.Start) {
		status = StatusPending
	}
	rec := &OrderRecord{Kind: KindContract, Account: account, Dest: dest, Price: req.Price, PriceUnit: PriceUnit, Limit: req.Speed,
		Status: status, Created: now, Start: req.Start.UTC(), End: req.End.UTC(), Segments: []Segment{{Account: account, From: now}}}
	return m.openOrder(ctx, rec, contractTotal(req.Price, req.Speed, req.End.Sub(req.Start)))
}

// OfferTransfer offers a running contract to another account for price satoshis.
func (m *Market) OfferTransfer(account, id, to string, price int64) (OrderView, error) {
	if price < 0 || price > ledger.MaxAbsAmount {
		return OrderView{}, hashgrid.Errorf(hashgrid.EINVALID, "price must be 0..%d satoshis", int64(ledger.MaxAbsAmount))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, err := m.ownOrder(account, id)
	if err != nil {
		return OrderView{}, err
	}
	if o.rec.Kind != KindContract {
		return OrderView{}, hashgrid.Errorf(hashgrid.ECONFLICT, "only contracts can be transferred")
	}
	if s := o.rec.Status; s == StatusCancelled || s == StatusExpired {
		return OrderView{}, hashgrid.Errorf(hashgrid.ECONFLICT, "contract %s is %s", id, s)
	}
	if m.st.Accounts[to] == nil || to == account {
		return OrderView{}, hashgrid.Errorf(hashgrid.EINVALID, "no other account %q", to)
	}
	o.rec.Offer = &TransferOffer{To: to, Price: price}
	m.changedLocked(o)
	return m.viewLocked(o), nil
}

// AcceptTransfer takes over a contract offered to account: the offer's price moves
// from its balance to the seller's, and the rest of the delivery goes to dest.
func (m *Market) AcceptTransfer(ctx context.Context, account, id string, dest Destination) (OrderView, error) {
	if err := m.checkDest(ctx, dest); err != nil {
		return OrderView{}, err
	}
	m.mu.Lock()
	o := m.orders[id]
	if o == nil || o.rec.Offer == nil || o.rec.Offer.To != account {
		m.mu.Unlock()
		return OrderView{}, hashgrid.Errorf(hashgrid.ENOTFOUND, "no contract %q offered to you", id)
	}
	from, offer := o.rec.Account, *o.rec.Offer
	key := fmt.Sprintf("market:transfer:%s:%d", id, o.rec.XferSeq)
	m.mu.Unlock()
	if offer.Price > 0 {
		_, err := m.led.Post(ctx, ledger.Tx{
			Key:  key,
			Memo: "contract " + id + " sold by " + from + " to " + account,
			Postings: []ledger.Posting{
				{Account: acctBuyer(account), Amount: -offer.Price},
				{Account: acctBuyer(from), Amount: offer.Price},
			},
			NonNegative: []string{acctBuyer(account)},
		})
		if errors.Is(err, ledger.ErrInsufficient) {
			return OrderView{}, hashgrid.Errorf(hashgrid.ECONFLICT, "balance too low for %d satoshis", offer.Price)
		}
		if err != nil {
			return OrderView{}, err
		}
	}
	m.mu.Lock()
	o.rec.XferSeq++
	if o.rec.Offer != nil && *o.rec.Offer == offer && o.rec.Account == from {
		o.rec.Account, o.rec.Dest, o.rec.Offer = account, dest, nil
		o.rec.Segments = append(o.rec.Segments, Segment{Account: account, From: m.cfg.Now().UTC()})
		m.closeUpstreamLocked(o)
		if o.rec.Status == StatusActive {
			m.ensureUpstreamLocked(o)
		}
	}
	m.changedLocked(o)
	v := m.viewLocked(o)
	m.mu.Unlock()
	m.kick()
	return v, m.save()
}

// --- views ---

// OrderView is an order as its owner sees it.
type OrderView struct {
	ID             string         `json:"id"`
	Kind           string         `json:"kind"`
	Account        string         `json:"account"`
	Status         string         `json:"status"`
	Reason         string         `json:"reason,omitempty"`
	PoolURL        string         `json:"pool_url"`
	PoolUser       string         `json:"pool_user"`
	Price          int64          `json:"price"`
	Limit          float64        `json:"limit"`
	Start          string         `json:"start,omitempty"`
	End            string         `json:"end,omitempty"`
	Budget         int64          `json:"budget"`    // funded in all
	Spent          int64          `json:"spent"`     // owed for accepted shares
	Remaining      int64          `json:"remaining"` // budget − spent − refunded
	Refunded       int64          `json:"refunded"`
	SharesAccepted uint64         `json:"shares_accepted"`
	SharesRejected uint64         `json:"shares_rejected"`
	SharesStale    uint64         `json:"shares_stale"`
	SharesDropped  uint64         `json:"shares_dropped"` // valid shares not forwarded: the destination was too slow
	AcceptedWork   float64        `json:"accepted_work"`  // Σ accepted difficulty
	AvgSpeed       float64        `json:"avg_speed"`      // TH/s since the first share
	CurrentSpeed   float64        `json:"current_speed"`  // TH/s over the speed window
	Sellers        int            `json:"sellers"`
	Segments       []SegmentView  `json:"segments"`
	Offer          *TransferOffer `json:"offer,omitempty"`
}

// SegmentView is a Segment for display.
type SegmentView struct {
	Account      string  `json:"account"`
	From         string  `json:"from"`
	Accepted     uint64  `json:"shares_accepted"`
	AcceptedWork float64 `json:"accepted_work"`
}

func (m *Market) viewLocked(o *order) OrderView {
	r := o.rec
	now := m.cfg.Now()
	spent := o.spentLocked()
	v := OrderView{
		ID: r.ID, Kind: r.Kind, Account: r.Account, Status: r.Status, Reason: r.Reason,
		PoolURL: r.Dest.URL, PoolUser: r.Dest.User, Price: r.Price, Limit: r.Limit,
		Budget: r.Funded, Spent: spent, Remaining: r.Funded - spent - r.Refunded, Refunded: r.Refunded,
		SharesAccepted: r.Accepted, SharesRejected: r.Rejected, SharesStale: r.Stale, SharesDropped: r.Dropped,
		AcceptedWork: r.Work.Float(), Sellers: len(o.sellers), Offer: r.Offer,
		CurrentSpeed: o.deliv.rate(now, m.cfg.SpeedWindow) / 1e12,
	}
	if !r.FirstShare.IsZero() {
		if el := now.Sub(r.FirstShare).Seconds(); el > 0 {
			v.AvgSpeed = r.Work.Hashes() / el / 1e12
		}
	}
	if r.Kind == KindContract {
		v.Start, v.End = r.Start.Format(time.RFC3339), r.End.Format(time.RFC3339)
	}
	for _, s := range r.Segments {
		v.Segments = append(v.Segments, SegmentView{Account: s.Account, From: s.From.Format(time.RFC3339Nano), Accepted: s.Accepted, AcceptedWork: s.Work.Float()})
	}
	return v
}

// Order returns one of the account's orders (or a contract offered to it).
func (m *Market) Order(account, id string) (OrderView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.orders[id]
	if o == nil || (o.rec.Account != account && (o.rec.Offer == nil || o.rec.Offer.To != account)) {
		return OrderView{}, hashgrid.Errorf(hashgrid.ENOTFOUND, "no order %q", id)
	}
	v := m.viewLocked(o)
	if o.rec.Account != account {
		// The account a contract is offered to sees its terms, not where it delivers.
		v.PoolURL, v.PoolUser = "", ""
	}
	return v, nil
}

// Orders returns the account's orders, newest first.
func (m *Market) Orders(account string) []OrderView {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []OrderView
	for _, o := range m.orders {
		if o.rec.Account == account {
			out = append(out, m.viewLocked(o))
		}
	}
	sort.Slice(out, func(i, j int) bool { return idNum(out[i].ID) > idNum(out[j].ID) })
	return out
}

func idNum(id string) uint64 {
	n, _ := strconv.ParseUint(id[1:], 10, 64)
	return n
}

// BookLevel is one price level of the order book.
type BookLevel struct {
	Price         int64   `json:"price"`
	Orders        int     `json:"orders"`
	Limit         float64 `json:"limit"`          // Σ limits, TH/s (0 = an order without limit)
	Speed         float64 `json:"speed"`          // estimated speed of the sellers routed here, TH/s
	AcceptedSpeed float64 `json:"accepted_speed"` // accepted by the destinations over the speed window, TH/s
}

// BookOrder is one live order as everyone sees it (no owner, no destination).
type BookOrder struct {
	ID            string  `json:"id"`
	Kind          string  `json:"kind"`
	Price         int64   `json:"price"`
	Limit         float64 `json:"limit"`
	Alive         bool    `json:"alive"`
	Sellers       int     `json:"sellers"`
	Speed         float64 `json:"speed"`
	AcceptedSpeed float64 `json:"accepted_speed"`
}

// Book is GET /api/v1/orderbook.
type Book struct {
	Levels []BookLevel `json:"levels"`
	Orders []BookOrder `json:"orders"`
}

// OrderBook returns the active and paused orders by price, highest first.
func (m *Market) OrderBook() Book {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	b := Book{Levels: []BookLevel{}, Orders: []BookOrder{}}
	for _, o := range m.orders {
		r := o.rec
		if r.Status != StatusActive && r.Status != StatusPaused && r.Status != StatusPending {
			continue
		}
		var sp float64
		for s := range o.sellers {
			sp += s.speed(now)
		}
		b.Orders = append(b.Orders, BookOrder{ID: r.ID, Kind: r.Kind, Price: r.Price, Limit: r.Limit, Alive: o.liveLocked(now),
			Sellers: len(o.sellers), Speed: sp / 1e12, AcceptedSpeed: o.deliv.rate(now, m.cfg.SpeedWindow) / 1e12})
	}
	sort.Slice(b.Orders, func(i, j int) bool {
		if b.Orders[i].Price != b.Orders[j].Price {
			return b.Orders[i].Price > b.Orders[j].Price
		}
		return idNum(b.Orders[i].ID) < idNum(b.Orders[j].ID)
	})
	for _, bo := range b.Orders {
		if n := len(b.Levels); n == 0 || b.Levels[n-1].Price != bo.Price {
			b.Levels = append(b.Levels, BookLevel{Price: bo.Price})
		}
		l := &b.Levels[len(b.Levels)-1]
		l.Orders++
		l.Limit += bo.Limit
		l.Speed += bo.Speed
		l.AcceptedSpeed += bo.AcceptedSpeed
	}
	return b
}

// Shares returns the sample of an order's delivered shares, oldest first, with the
// sellers' workers: the operator's view.
func (m *Market) Shares(id string) ([]ShareSample, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.orders[id]
	if o == nil {
		return nil, hashgrid.Errorf(hashgrid.ENOTFOUND, "no order %q", id)
	}
	return o.samplesLocked(m.cfg.SampleSize), nil
}

func (o *order) samplesLocked(size int) []ShareSample {
	out := make([]ShareSample, 0, len(o.samples))
	if len(o.samples) == size {
		out = append(out, o.samples[o.sampleAt:]...)
		out = append(out, o.samples[:o.sampleAt]...)
	} else {
		out = append(out, o.samples...)
	}
	return out
}

// SharesFor returns the samples of the shares delivered to account on order id: only
// those of the segments it owned (a contract's earlier owner's pool stays hidden from
// its later one, and the other way round), with each seller's worker replaced by a
// pseudonym that is stable within the order and unlinkable across orders.
func (m *Market) SharesFor(account, id string) ([]ShareSample, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.orders[id]
	owned := map[int]bool{}
	if o != nil {
		for i, s := range o.rec.Segments {
			if s.Account == account {
				owned[i] = true
			}
		}
	}
	if len(owned) == 0 {
		return nil, hashgrid.Errorf(hashgrid.ENOTFOUND, "no order %q", id)
	}
	out := []ShareSample{}
	for _, s := range o.samplesLocked(m.cfg.SampleSize) {
		if !owned[s.segment] {
			continue
		}
		s.Worker = m.pseudonym(id, s.Worker)
		out = append(out, s)
	}
	return out, nil
}

// pseudonym names a seller's worker to a buyer: "seller-" and 12 hex digits of an
// HMAC keyed by a secret the market draws at start.
func (m *Market) pseudonym(order, worker string) string {
	h := hmac.New(sha256.New, m.pseudo[:])
	h.Write([]byte(order))
	h.Write([]byte{0})
	h.Write([]byte(worker))
	return "seller-" + hex.EncodeToString(h.Sum(nil)[:6])
}

// speedBucket is the work delivered to an order in one SpeedBucket.
type speedBucket struct {
	start  time.Time
	hashes float64
}

func (o *order) recordSpeedLocked(now time.Time, diff float64, width time.Duration, keep int) {
	t := now.Truncate(width)
	hashes := diff // a Diff's raw value counts hashes (difficulty · 2^32)
	if n := len(o.speeds); n > 0 && o.speeds[n-1].start.Equal(t) {
		o.speeds[n-1].hashes += hashes
		return
	}
	if len(o.speeds) >= keep {
		o.speeds = append(o.speeds[:0], o.speeds[len(o.speeds)-keep+1:]...)
	}
	o.speeds = append(o.speeds, speedBucket{start: t, hashes: hashes})
}

// SpeedPoint is one bucket of an order's delivered speed.
type SpeedPoint struct {
	Time  time.Time `json:"time"`  // the bucket's start
	Speed float64   `json:"speed"` // TH/s accepted by the destination over the bucket
}

// SpeedHistory is GET /api/v1/orders/{id}/speed.
type SpeedHistory struct {
	BucketSeconds float64      `json:"bucket_seconds"`
	Points        []SpeedPoint `json:"points"`        // completed buckets, oldest first, gaps as zero
	CurrentSpeed  float64      `json:"current_speed"` // TH/s over the speed window, now
}

// SpeedHistory returns the delivered speed of one of the account's orders over the
// last SpeedHistory, one point per completed SpeedBucket from the first delivery on.
func (m *Market) SpeedHistory(account, id string) (SpeedHistory, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, err := m.ownOrder(account, id)
	if err != nil {
		return SpeedHistory{}, err
	}
	width := m.cfg.SpeedBucket
	now := m.cfg.Now()
	cur := now.Truncate(width)
	h := SpeedHistory{BucketSeconds: width.Seconds(), Points: []SpeedPoint{}, CurrentSpeed: o.deliv.rate(now, m.cfg.SpeedWindow) / 1e12}
	if len(o.speeds) == 0 {
		return h, nil
	}
	from := o.speeds[0].start
	if early := cur.Add(-m.cfg.SpeedHistory); from.Before(early) {
		from = early
	}
	i := 0
	for t := from; t.Before(cur); t = t.Add(width) {
		var hashes float64
		for i < len(o.speeds) && !o.speeds[i].start.After(t) {
			if o.speeds[i].start.Equal(t) {
				hashes = o.speeds[i].hashes
			}
			i++
		}
		h.Points = append(h.Points, SpeedPoint{Time: t.UTC(), Speed: hashes / width.Seconds() / 1e12})
	}
	return h, nil
}

// rateWindow estimates a rate of hashes from recent events.
type rateWindow struct {
	t []time.Time
	h []float64
}

func (w *rateWindow) add(t time.Time, hashes float64) {
	if len(w.t) >= maxRateEvents {
		w.t, w.h = w.t[1:], w.h[1:]
	}
	w.t = append(w.t, t)
	w.h = append(w.h, hashes)
}

// rate returns hashes per second over the last span.
func (w *rateWindow) rate(now time.Time, span time.Duration) float64 {
	from := now.Add(-span)
	i := 0
	for i < len(w.t) && w.t[i].Before(from) {
		i++
	}
	w.t, w.h = w.t[i:], w.h[i:]
	var sum float64
	for _, h := range w.h {
		sum += h
	}
	return sum / span.Seconds()
}
