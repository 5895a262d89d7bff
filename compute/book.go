package compute

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/btcsuite/btcd/address/v2"

	"github.com/hashgrid/hashgrid"
)

// Book is the compute market: providers' offers, tenants' orders, the leases between
// them, their metering and their money.
type Book struct {
	cfg Config
	log *slog.Logger

	// postMu is held across every plan, ledger post and apply of money, so that two
	// plans never compute the same key with other amounts; mu guards the state and is
	// never held across a post.
	postMu sync.Mutex
	mu     sync.Mutex

	providers map[string]*provider
	orders    map[string]*order
	leases    map[string]*lease

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type provider struct {
	id, account, name, addr string
	res                     Resources
	price, memPrice         int64
	seen                    time.Time
	marked                  bool
	paused                  bool // takes no new leases (ProviderRequest.Paused)
	faults                  int
	usedCores               int
	usedMem                 uint64
	leases                  []*lease // every lease it ever held, oldest first
	earned                  int64    // released to it, after fees
	wake                    chan struct{}
	polls                   int // long-polls waiting
}

type order struct {
	id, account string
	req         OrderRequest
	created     time.Time
	status      string
	reason      string
	funded      int64
	charged     int64 // Σ of its leases' charges
	refunded    int64 // leftover and forfeits returned to the tenant
	closed      bool
	closedAt    time.Time
	main        *lease
	leases      []*lease // main first, then checks
	// Spot checks of the main lease: sample are the order's units re-run, check and
	// tiebreak the leases that re-run them, mismatch the sampled units where the main
	// lease and the check disagree and no tie-break has ruled yet.
	sample   []int
	check    *lease
	tiebreak *lease
	mismatch map[int]bool
	checked  map[int]bool
	checks   int // check leases started
	// noChecker is when the job was first found with no other provider able to
	// check it; zero while one could.
	noChecker time.Time
	verdict   string // "", "pass", "fault", "unchecked"
	log       []string
	svc       *service // a service's requests (service.go); nil for a job
}

type lease struct {
	id       string
	o        *order
	p        *provider
	kind     string // "job" or "check"
	units    []int  // the order's unit indices the lease runs, in lease order
	price    int64
	memPrice int64
	cores    int
	memory   uint64
	status   string
	reason   string
	created  time.Time
	seen     time.Time // fetched, or last reported
	ended    time.Time
	fetched  bool
	seq      uint64 // last report applied
	reports  uint64
	cpu      int64    // metered CPU ns
	wall     int64    // metered wall ns
	byteNS   *big.Int // Σ rss · wall ns, metered memory held
	charged  int64
	settles  int // settlement entries posted
	out      map[int]*UnitResult
	faulted  bool
	settled  string // "released" or "forfeited"
	// stopping is why a running lease is to stop at its next report (its order was
	// cancelled), which is metered and charged like any other: the provider is paid
	// for the work it did up to the stop, and a tenant cannot take outputs and cancel
	// before they are paid for. stopAt is when; a lease that has not reported within
	// an interval and a half of it ends without that report.
	stopping string
	stopAt   time.Time
}

func terminal(status string) bool {
	switch status {
	case LeasePending, LeaseRunning:
		return false
	}
	return true
}

// New returns a Book, after refunding the escrow of orders a previous run left open
// (see refundOrphans). Run Start to meter leases that stop reporting and retry what
// waits for capacity.
func New(cfg Config) (*Book, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Book{cfg: cfg, log: cfg.Logger, providers: map[string]*provider{}, orders: map[string]*order{}, leases: map[string]*lease{},
		ctx: ctx, cancel: cancel}
	if err := b.refundOrphans(ctx); err != nil {
		cancel()
		return nil, err
	}
	return b, nil
}

// Start runs the book's tick every half interval: leases whose provider stopped
// reporting are lost, open orders and spot checks look for capacity again, and money
// that a failed post left unsettled is retried.
func (b *Book) Start() {
	b.wg.Go(func() {
		t := time.NewTicker(b.cfg.Interval / 2)
		defer t.Stop()
		for {
			select {
			case <-b.ctx.Done():
				return
			case <-t.C:
			}
			b.Tick(b.ctx)
		}
	})
}

// Close stops the tick and waits for it.
func (b *Book) Close() {
	b.cancel()
	b.wg.Wait()
}

// Interval is the metered interval.
func (b *Book) Interval() time.Duration { return b.cfg.Interval }

func newID(prefix string) string {
	var r [8]byte
	rand.Read(r[:])
	return prefix + hex.EncodeToString(r[:])
}

func (o *order) logf(now time.Time, format string, args ...any) {
	if len(o.log) >= MaxLogLines {
		o.log = slices.Delete(o.log, 0, len(o.log)-MaxLogLines+1)
	}
	o.log = append(o.log, now.UTC().Format(time.RFC3339Nano)+" "+fmt.Sprintf(format, args...))
}

// --- providers ---

func validName(s string) bool {
	if s == "" || len(s) > maxFieldLen {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Register records (or refreshes) the offer of account's provider named req.Name.
func (b *Book) Register(account string, req ProviderRequest) (ProviderView, error) {
	if !validName(req.Name) {
		return ProviderView{}, hashgrid.Errorf(hashgrid.EINVALID, "provider name: 1..%d letters, digits, '-', '_' or '.'", maxFieldLen)
	}
	a, err := address.DecodeAddress(req.PayoutAddress, b.cfg.Network)
	if err != nil || !a.IsForNet(b.cfg.Network) {
		return ProviderView{}, hashgrid.Errorf(hashgrid.EINVALID, "payout address %q is not a %s address", req.PayoutAddress, b.cfg.Network.Name)
	}
	r := req.Resources
	if r.Cores < 1 || r.Cores > maxCores || r.Memory < 1<<20 || len(r.GPUs) > 64 {
		return ProviderView{}, hashgrid.Errorf(hashgrid.EINVALID, "resources: 1..%d cores, at least 1 MiB of memory, at most 64 GPUs", maxCores)
	}
	for _, g := range r.GPUs {
		if len(g) == 0 || len(g) > maxFieldLen {
			return ProviderView{}, hashgrid.Errorf(hashgrid.EINVALID, "GPU name of 1..%d bytes", maxFieldLen)
		}
	}
	if req.Price < 0 || req.Price > MaxPrice || req.MemPrice < 0 || req.MemPrice > MaxPrice {
		return ProviderView{}, hashgrid.Errorf(hashgrid.EINVALID, "prices must be 0..%d sat", int64(MaxPrice))
	}
	if err := validRuntimes(r.Runtimes); err != nil {
		return ProviderView{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var p *provider
	for _, q := range b.providers {
		if q.account == account && q.name == req.Name {
			p = q
		}
	}
	if p == nil {
		if len(b.providers) >= MaxProviders {
			return ProviderView{}, hashgrid.Errorf(hashgrid.EUNAVAILABLE, "provider limit reached")
		}
		p = &provider{id: newID("p"), account: account, name: req.Name, wake: make(chan struct{})}
		b.providers[p.id] = p
	}
	p.addr, p.res, p.price, p.memPrice, p.paused = req.PayoutAddress, r, req.Price, req.MemPrice, req.Paused
	p.res.GPUs = slices.Clone(r.GPUs)
	p.res.Runtimes = slices.Clone(r.Runtimes)
	p.seen = b.cfg.Now()
	b.assignOpenLocked()
	return b.providerViewLocked(p), nil
}

func (b *Book) online(p *provider) bool {
	return b.cfg.Now().Sub(p.seen) <= time.Duration(b.cfg.MissedReports)*b.cfg.Interval
}

func (b *Book) ownProvider(account, id string) (*provider, error) {
	p := b.providers[id]
	if p == nil || p.account != account {
		return nil, hashgrid.Errorf(hashgrid.ENOTFOUND, "no provider %q", id)
	}
	return p, nil
}

func (b *Book) offerLocked(p *provider) Offer {
	free := Resources{Cores: max(p.res.Cores-p.usedCores, 0)}
	if p.usedMem < p.res.Memory {
		free.Memory = p.res.Memory - p.usedMem
	}
	return Offer{Provider: p.id, Name: p.name, Resources: p.res, Price: p.price, MemPrice: p.memPrice, Free: free}
}

// Offers lists the offers of providers online, not marked and not paused, cheapest
// first.
func (b *Book) Offers() []Offer {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := []Offer{}
	for _, p := range b.sortedProvidersLocked() {
		if b.online(p) && !p.marked && !p.paused {
			out = append(out, b.offerLocked(p))
		}
	}
	return out
}

func (b *Book) sortedProvidersLocked() []*provider {
	ps := make([]*provider, 0, len(b.providers))
	for _, p := range b.providers {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool {
		a, c := ps[i], ps[j]
		if a.price != c.price {
			return a.price < c.price
		}
		if a.memPrice != c.memPrice {
			return a.memPrice < c.memPrice
		}
		return a.id < c.id
	})
	return ps
}

// fits reports whether p can take a lease of o now.
func (b *Book) fits(p *provider, o *order) bool {
	// Sums, not differences: a provider that registered again with less than its
	// leases hold has no room, not a negative (or, for memory, wrapped) one.
	return b.online(p) && !p.marked && !p.paused && offersRuntime(p.res, o.req.runtime()) && p.price <= o.req.MaxPrice && p.memPrice <= o.req.MaxMemPrice &&
		p.usedCores+o.req.Cores <= p.res.Cores && p.usedMem+o.req.Memory <= p.res.Memory
}

// Provider returns account's provider id with its leases and earnings.
func (b *Book) Provider(ctx context.Context, account, id string) (ProviderView, error) {
	b.mu.Lock()
	p, err := b.ownProvider(account, id)
	if err != nil {
		b.mu.Unlock()
		return ProviderView{}, err
	}
	v := b.providerViewLocked(p)
	b.mu.Unlock()
	pay, err := b.cfg.Ledger.Balance(ctx, acctPayable(v.PayoutAddress))
	if err != nil {
		return ProviderView{}, err
	}
	v.Payable = pay
	return v, nil
}

func (b *Book) providerViewLocked(p *provider) ProviderView {
	v := ProviderView{ID: p.id, Name: p.name, PayoutAddress: p.addr, Resources: p.res, Price: p.price, MemPrice: p.memPrice,
		Online: b.online(p), Marked: p.marked, Paused: p.paused, Faults: p.faults, IntervalMS: b.cfg.Interval.Milliseconds(), Earned: p.earned, Leases: []LeaseView{}}
	for _, l := range p.leases {
		v.Leases = append(v.Leases, b.leaseView(l))
		if l.settled == "" {
			v.Held += l.charged
		}
	}
	return v
}

// Work returns the leases assigned to provider id that it has not fetched yet,
// waiting up to wait for one. Fetching starts a lease's clock.
func (b *Book) Work(ctx context.Context, account, id string, wait time.Duration) ([]LeaseWork, error) {
	wait = min(max(wait, 0), MaxWait)
	b.mu.Lock()
	p, err := b.ownProvider(account, id)
	if err == nil && p.polls >= MaxPolls {
		err = hashgrid.Errorf(hashgrid.ERATELIMITED, "%d polls of provider %s already waiting", p.polls, id)
	}
	if err != nil {
		b.mu.Unlock()
		return nil, err
	}
	p.polls++
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		p.polls--
		b.mu.Unlock()
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		b.mu.Lock()
		now := b.cfg.Now()
		p.seen = now
		var out []LeaseWork
		for _, l := range p.leases {
			if l.status != LeasePending || l.fetched {
				continue
			}
			l.fetched, l.status, l.seen = true, LeaseRunning, now
			req := l.o.req
			w := LeaseWork{ID: l.id, Kind: l.kind, Module: req.Module, Image: req.Image, Args: req.Args, Cores: l.cores, Memory: l.memory,
				UnitTimeoutMS: b.cfg.UnitTimeout.Milliseconds(), IntervalMS: b.cfg.Interval.Milliseconds()}
			for _, u := range l.units {
				w.Units = append(w.Units, req.Units[u])
			}
			out = append(out, w)
			l.o.logf(now, "%s lease %s fetched by provider %s", l.kind, l.id, p.id)
		}
		wake := p.wake
		b.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		select {
		case <-wake:
		case <-timer.C:
			return []LeaseWork{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// --- orders ---

// PlaceOrder checks req, moves its budget from the tenant's balance into the order's
// escrow and, unless the tenant will accept an offer by hand, leases it to the
// offer named or to the cheapest that fits.
func (b *Book) PlaceOrder(ctx context.Context, account string, req OrderRequest) (OrderView, error) {
	if err := validOrder(req); err != nil {
		return OrderView{}, err
	}
	b.mu.Lock()
	open := 0
	for _, o := range b.orders {
		if o.account == account && !o.closed {
			open++
		}
	}
	b.mu.Unlock()
	if open >= MaxOpenOrders {
		return OrderView{}, hashgrid.Errorf(hashgrid.ECONFLICT, "%d orders open: wait for one to close", open)
	}
	o := &order{id: newID("c"), account: account, req: req, created: b.cfg.Now(), status: OrderOpen,
		mismatch: map[int]bool{}, checked: map[int]bool{}}
	if req.Kind == KindService {
		// Nothing re-runs a service: its verdict is "unchecked" once it ends.
		o.svc, o.req.NoVerify = newService(), true
	}
	if err := b.fund(ctx, o); err != nil {
		return OrderView{}, err
	}
	b.mu.Lock()
	b.orders[o.id] = o
	o.logf(o.created, "%s order placed: %d units, %d cores, %d bytes, max %d sat/core-hour, budget %d sat", kindOf(req), len(req.Units), req.Cores, req.Memory, req.MaxPrice, req.Budget)
	var err error
	switch {
	case req.Provider != "":
		err = b.acceptLocked(o, req.Provider)
	case !req.Manual:
		b.assignCheapestLocked(o)
	}
	v := b.orderViewLocked(o)
	b.mu.Unlock()
	if err != nil {
		// The escrow is held; the order stays open for another accept or a cancel.
		return v, err
	}
	return v, nil
}

func validOrder(r OrderRequest) error {
	bad := func(f string, a ...any) error { return hashgrid.Errorf(hashgrid.EINVALID, f, a...) }
	switch r.Kind {
	case "", KindJob:
	case KindService:
		if r.Image != "" {
			return bad("a service runs a WebAssembly module; images run jobs of units only")
		}
		if err := validService(r); err != nil {
			return err
		}
	default:
		return bad("kind must be %q or %q", KindJob, KindService)
	}
	if err := validJob(r); err != nil {
		return err
	}
	switch {
	case r.Kind != KindService && (len(r.Units) == 0 || len(r.Units) > MaxUnits):
		return bad("1..%d units", MaxUnits)
	case len(r.Args) > MaxArgs:
		return bad("at most %d arguments", MaxArgs)
	case r.Cores < 1 || r.Cores > maxCores:
		return bad("cores must be 1..%d", maxCores)
	case r.Memory < 1<<20:
		return bad("memory must be at least 1 MiB")
	case r.MaxPrice < 0 || r.MaxPrice > MaxPrice || r.MaxMemPrice < 0 || r.MaxMemPrice > MaxPrice:
		return bad("prices must be 0..%d sat", int64(MaxPrice))
	case r.Budget < 1 || r.Budget > 21_000_000*100_000_000:
		return bad("budget must be a positive number of satoshis")
	case len(r.Provider) > maxFieldLen:
		return bad("provider id too long")
	}
	for _, a := range r.Args {
		if len(a) > 4096 {
			return bad("argument longer than 4096 bytes")
		}
	}
	for i, u := range r.Units {
		if len(u) > MaxUnitBytes {
			return bad("unit %d: input over %d bytes", i, MaxUnitBytes)
		}
	}
	return nil
}

// ownOrder returns account's order id.
func (b *Book) ownOrder(account, id string) (*order, error) {
	o := b.orders[id]
	if o == nil || o.account != account {
		return nil, hashgrid.Errorf(hashgrid.ENOTFOUND, "no order %q", id)
	}
	return o, nil
}

// OrderOffers lists the offers that fit account's open order id, cheapest first: the
// bids it may accept.
func (b *Book) OrderOffers(account, id string) ([]Offer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, err := b.ownOrder(account, id)
	if err != nil {
		return nil, err
	}
	out := []Offer{}
	for _, p := range b.sortedProvidersLocked() {
		if b.fits(p, o) {
			out = append(out, b.offerLocked(p))
		}
	}
	return out, nil
}

// Accept leases account's open order id to provider pid (empty: the cheapest offer
// that fits).
func (b *Book) Accept(account, id, pid string) (OrderView, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, err := b.ownOrder(account, id)
	if err != nil {
		return OrderView{}, err
	}
	if o.status != OrderOpen {
		return OrderView{}, hashgrid.Errorf(hashgrid.ECONFLICT, "order %s is %s, not open", id, o.status)
	}
	if pid == "" {
		if !b.assignCheapestLocked(o) {
			return OrderView{}, hashgrid.Errorf(hashgrid.ECONFLICT, "no offer fits order %s now", id)
		}
	} else if err := b.acceptLocked(o, pid); err != nil {
		return OrderView{}, err
	}
	return b.orderViewLocked(o), nil
}

func (b *Book) acceptLocked(o *order, pid string) error {
	p := b.providers[pid]
	if p == nil || !b.online(p) {
		return hashgrid.Errorf(hashgrid.ENOTFOUND, "no provider %q online", pid)
	}
	if !b.fits(p, o) {
		return hashgrid.Errorf(hashgrid.ECONFLICT, "provider %s's offer does not fit the order (price, free cores or memory)", pid)
	}
	b.startLocked(o, p)
	return nil
}

// assignCheapestLocked leases o to the cheapest offer that fits, if any.
func (b *Book) assignCheapestLocked(o *order) bool {
	for _, p := range b.sortedProvidersLocked() {
		if b.fits(p, o) {
			b.startLocked(o, p)
			return true
		}
	}
	return false
}

// assignOpenLocked retries open orders that let the market choose.
func (b *Book) assignOpenLocked() {
	for _, o := range b.orders {
		if o.status == OrderOpen && !o.req.Manual && o.req.Provider == "" {
			b.assignCheapestLocked(o)
		}
	}
}

func (b *Book) newLeaseLocked(o *order, p *provider, kind string, units []int) *lease {
	now := b.cfg.Now()
	l := &lease{id: newID("l"), o: o, p: p, kind: kind, units: units, price: p.price, memPrice: p.memPrice,
		cores: o.req.Cores, memory: o.req.Memory, status: LeasePending, created: now, seen: now,
		byteNS: new(big.Int), out: map[int]*UnitResult{}}
	p.usedCores += l.cores
	p.usedMem += l.memory
	p.leases = append(p.leases, l)
	o.leases = append(o.leases, l)
	b.leases[l.id] = l
	close(p.wake)
	p.wake = make(chan struct{})
	o.logf(now, "%s lease %s on provider %s: %d units at %d sat/core-hour, %d sat/GiB-hour", kind, l.id, p.id, len(units), l.price, l.memPrice)
	return l
}

// startLocked leases o to p and picks the units a spot check will re-run.
func (b *Book) startLocked(o *order, p *provider) {
	if o.svc != nil {
		o.main = b.newLeaseLocked(o, p, KindService, nil)
		o.status = OrderRunning
		return
	}
	all := make([]int, len(o.req.Units))
	for i := range all {
		all[i] = i
	}
	o.main = b.newLeaseLocked(o, p, "job", all)
	o.status = OrderRunning
	if o.req.NoVerify {
		return
	}
	n := len(all) * int(b.cfg.SampleBps) / 10_000
	n = max(n, 1)
	// A partial Fisher-Yates shuffle: the first n of a permutation.
	perm := slices.Clone(all)
	for i := 0; i < n; i++ {
		j := i + b.cfg.Rand(len(perm)-i)
		perm[i], perm[j] = perm[j], perm[i]
	}
	o.sample = perm[:n]
	slices.Sort(o.sample)
	b.startCheckLocked(o)
}

// startCheckLocked leases o's sampled units to the cheapest other provider that
// fits, when there is one and the order has check leases left.
func (b *Book) startCheckLocked(o *order) {
	if o.check != nil && !terminal(o.check.status) || o.checks >= maxChecksPerOrder {
		return
	}
	units := b.toCheckLocked(o)
	if len(units) == 0 {
		return
	}
	for _, p := range b.sortedProvidersLocked() {
		if p == o.main.p || (o.check != nil && p == o.check.p) || !b.fits(p, o) {
			continue
		}
		o.check = b.newLeaseLocked(o, p, "check", units)
		o.checks++
		return
	}
}

// Cancel ends account's order id: its leases stop at their next report, work
// reported so far is paid, the rest of the escrow returns.
func (b *Book) Cancel(ctx context.Context, account, id string) (OrderView, error) {
	b.mu.Lock()
	o, err := b.ownOrder(account, id)
	if err != nil {
		b.mu.Unlock()
		return OrderView{}, err
	}
	if o.status == OrderOpen || o.status == OrderRunning {
		o.status, o.reason = OrderCancelled, "cancelled by the tenant"
		now := b.cfg.Now()
		for _, l := range o.leases {
			if l.status != LeaseRunning {
				b.endLocked(l, LeaseCancelled, "order cancelled")
				continue
			}
			// Running: it stops at its next report, which is paid.
			l.stopping, l.stopAt = "order cancelled", now
			if l.kind == KindService {
				b.stopServiceLocked(o, "cancelled: order cancelled")
			}
		}
		if o.verdict == "" {
			// Nothing more will be compared: what was reported is paid.
			o.verdict = "unchecked"
		}
		o.logf(b.cfg.Now(), "order cancelled")
	}
	b.mu.Unlock()
	b.step(ctx, o)
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.orderViewLocked(o), nil
}

// endLocked ends a lease that is not over yet and frees its provider's capacity.
func (b *Book) endLocked(l *lease, status, reason string) {
	if terminal(l.status) {
		return
	}
	l.status, l.reason, l.ended = status, reason, b.cfg.Now()
	l.p.usedCores -= l.cores
	l.p.usedMem -= l.memory
	l.o.logf(b.cfg.Now(), "lease %s %s: %s", l.id, status, reason)
	if l.kind == KindService {
		b.stopServiceLocked(l.o, status+": "+reason)
	}
}

// Order returns account's order id.
func (b *Book) Order(account, id string) (OrderView, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, err := b.ownOrder(account, id)
	if err != nil {
		return OrderView{}, err
	}
	return b.orderViewLocked(o), nil
}

// Orders lists account's orders, newest first.
func (b *Book) Orders(account string) []OrderView {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := []OrderView{}
	for _, o := range b.orders {
		if o.account == account {
			out = append(out, b.orderViewLocked(o))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

// Outputs returns account's order id's outputs, unit by unit, from its job lease.
func (b *Book) Outputs(account, id string) ([]UnitOutput, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, err := b.ownOrder(account, id)
	if err != nil {
		return nil, err
	}
	out := make([]UnitOutput, len(o.req.Units))
	for i := range out {
		out[i] = UnitOutput{Unit: i, Checked: o.checked[i]}
		if o.main == nil || o.main.faulted {
			continue
		}
		if r := o.main.out[i]; r != nil {
			out[i].Done, out[i].Stdout, out[i].Stderr, out[i].ExitCode, out[i].Err = true, r.Stdout, r.Stderr, r.ExitCode, r.Err
		}
	}
	return out, nil
}

// Log returns account's order id's event log, oldest first.
func (b *Book) Log(account, id string) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, err := b.ownOrder(account, id)
	if err != nil {
		return nil, err
	}
	return slices.Clone(o.log), nil
}

func (b *Book) orderViewLocked(o *order) OrderView {
	v := OrderView{ID: o.id, Kind: kindOf(o.req), Status: o.status, Reason: o.reason, Units: len(o.req.Units), Budget: o.req.Budget, Charged: o.charged,
		Refunded: o.refunded, Verdict: o.verdict, Checked: len(o.checked), Closed: o.closed, Created: o.created, Leases: []LeaseView{}}
	if o.main != nil {
		v.Done = len(o.main.out)
	}
	if o.svc != nil {
		v.Service = b.serviceViewLocked(o)
	}
	for _, l := range o.leases {
		v.Leases = append(v.Leases, b.leaseView(l))
	}
	return v
}

func (b *Book) leaseView(l *lease) LeaseView {
	v := LeaseView{ID: l.id, Order: l.o.id, Provider: l.p.id, Kind: l.kind, Status: l.status, Reason: l.reason, Units: len(l.units),
		Done: len(l.out), Cores: l.cores, Memory: l.memory, Price: l.price, MemPrice: l.memPrice, CPUMS: l.cpu / 1e6, WallMS: l.wall / 1e6,
		Charged: l.charged, Reports: l.reports, Settled: l.settled, Created: l.created}
	if l.kind == KindService {
		v.Service = b.serviceViewLocked(l.o)
	}
	return v
}

// --- the provider's reports ---

func (b *Book) ownLease(account, id string) (*lease, error) {
	l := b.leases[id]
	if l == nil || l.p.account != account {
		return nil, hashgrid.Errorf(hashgrid.ENOTFOUND, "no lease %q", id)
	}
	return l, nil
}

// Result records one unit's outputs of account's lease id.
func (b *Book) Result(ctx context.Context, account, id string, r UnitResult) error {
	if len(r.Stdout) > MaxOutputBytes {
		return hashgrid.Errorf(hashgrid.EINVALID, "stdout over %d bytes", MaxOutputBytes)
	}
	if len(r.Stderr) > MaxStderrBytes {
		r.Stderr = r.Stderr[len(r.Stderr)-MaxStderrBytes:]
	}
	if len(r.Err) > 1024 {
		r.Err = r.Err[:1024]
	}
	b.mu.Lock()
	l, err := b.ownLease(account, id)
	if err != nil {
		b.mu.Unlock()
		return err
	}
	switch l.status {
	case LeaseRunning, LeaseExhausted, LeaseCancelled:
		// A unit that finished as its lease was stopped was metered and paid for: the
		// tenant gets its outputs.
	default:
		b.mu.Unlock()
		return hashgrid.Errorf(hashgrid.ECONFLICT, "lease %s is %s", id, l.status)
	}
	if r.Unit < 0 || r.Unit >= len(l.units) {
		b.mu.Unlock()
		return hashgrid.Errorf(hashgrid.EINVALID, "lease %s has no unit %d", id, r.Unit)
	}
	u := l.units[r.Unit]
	if prev := l.out[u]; prev != nil {
		b.mu.Unlock()
		if !bytes.Equal(prev.Stdout, r.Stdout) || prev.ExitCode != r.ExitCode {
			return hashgrid.Errorf(hashgrid.ECONFLICT, "unit %d of lease %s already has other outputs", r.Unit, id)
		}
		return nil
	}
	r.Unit = u
	l.out[u] = &r
	b.mu.Unlock()
	b.step(ctx, l.o)
	return nil
}

// Report meters one interval of account's lease id and settles it: the tenant's
// escrow pays, into the lease's held account, what the CPU time and memory held cost
// at the lease's prices. The reply tells the provider to stop when the lease is over
// (its budget, the order or a spot check ended it).
func (b *Book) Report(ctx context.Context, account, id string, rep UsageReport) (ReportReply, error) {
	if rep.CPUNS < 0 || rep.WallNS < 0 {
		return ReportReply{}, hashgrid.Errorf(hashgrid.EINVALID, "negative usage")
	}
	b.postMu.Lock()
	b.mu.Lock()
	l, err := b.ownLease(account, id)
	if err != nil {
		b.mu.Unlock()
		b.postMu.Unlock()
		return ReportReply{}, err
	}
	now := b.cfg.Now()
	l.p.seen = now
	if l.status != LeaseRunning || rep.Seq <= l.seq {
		// Over, or a retry of a report already applied: nothing more is metered.
		reply := ReportReply{Stop: l.status != LeaseRunning && l.status != LeaseDone, Reason: l.reason, Charged: l.charged}
		b.mu.Unlock()
		b.postMu.Unlock()
		return reply, nil
	}
	b.meterLocked(l, rep, now)
	if l.kind == KindService {
		b.serviceReportLocked(l, rep, now)
	}
	tx, charge, stop := b.settlePlanLocked(l)
	b.mu.Unlock()
	if charge > 0 {
		if _, err := b.cfg.Ledger.Post(ctx, tx); err != nil {
			// A post that reached the ledger but whose answer was lost leaves the key
			// taken, perhaps with another amount: take what the ledger holds under it
			// (the next report charges the rest, the cost being cumulative).
			posted, ok := b.postedCharge(ctx, tx.Key, l.id)
			if !ok {
				b.postMu.Unlock()
				b.log.Error("compute: settlement not posted", "lease", id, "key", tx.Key, "err", err)
				return ReportReply{}, fmt.Errorf("compute: settle: %w", err)
			}
			charge = posted
		}
	}
	b.mu.Lock()
	if charge > 0 {
		l.charged += charge
		l.o.charged += charge
		l.settles++
	}
	l.seq = rep.Seq
	l.reports++
	if l.stopping != "" {
		b.endLocked(l, LeaseCancelled, l.stopping)
	} else if stop {
		b.endLocked(l, LeaseExhausted, "the order's budget is spent")
		if l == l.o.main && l.o.status == OrderRunning {
			l.o.status, l.o.reason = OrderExhausted, "budget spent"
		}
	} else if rep.Final && l.kind == KindService {
		b.serviceEndedLocked(l, rep.Reason)
	} else if rep.Final {
		if len(l.out) == len(l.units) {
			b.endLocked(l, LeaseDone, "every unit run")
		} else {
			b.endLocked(l, LeaseIncomplete, fmt.Sprintf("provider ended with %d of %d units", len(l.out), len(l.units)))
		}
		if l == l.o.main && l.o.status == OrderRunning {
			if l.status == LeaseDone {
				l.o.status = OrderDone
			} else {
				l.o.status, l.o.reason = OrderFailed, l.reason
			}
		}
	}
	reply := ReportReply{Stop: terminal(l.status) && l.status != LeaseDone, Reason: l.reason, Charged: l.charged}
	b.mu.Unlock()
	b.postMu.Unlock()
	b.step(ctx, l.o)
	return reply, nil
}

// postedCharge returns what the entry under key moved into lease's held account, if
// the ledger has that entry.
func (b *Book) postedCharge(ctx context.Context, key, lease string) (int64, bool) {
	e, err := b.cfg.Ledger.Entry(ctx, key)
	if err != nil {
		return 0, false
	}
	for _, p := range e.Postings {
		if p.Account == acctHeld(lease) {
			return p.Amount, true
		}
	}
	return 0, false
}

// meterLocked adds what rep reports beyond what was metered, bounded by what the
// lease holds: CPU time by its cores over the wall time, wall time by the market's
// own clock since the last report (with half an interval of slack for the trip),
// memory by the memory leased.
func (b *Book) meterLocked(l *lease, rep UsageReport, now time.Time) {
	elapsed := now.Sub(l.seen) + b.cfg.Interval/2
	l.seen = now
	dWall := max(rep.WallNS-l.wall, 0)
	dWall = min(dWall, int64(elapsed))
	dCPU := max(rep.CPUNS-l.cpu, 0)
	dCPU = min(dCPU, dWall*int64(l.cores))
	rss := min(rep.RSS, l.memory)
	l.wall += dWall
	l.cpu += dCPU
	l.byteNS.Add(l.byteNS, new(big.Int).Mul(new(big.Int).SetUint64(rss), big.NewInt(dWall)))
}
