package market

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
)

// upstreamJobs is how many of a destination's most recent jobs sellers may still
// submit against (the hashgrid pool keeps eight per connection).
const upstreamJobs = 8

// upstreamVersionMask is the BIP 310 mask the market asks destinations for.
const upstreamVersionMask = 0x1fffe000

// mjob is a destination's job as the market hands it to sellers.
type mjob struct {
	id      string // market job id, unique over all destinations
	up      *upstream
	cli     destClient
	n       *stratum.Notify // as the destination sent it
	en1     []byte          // destination's extranonce1
	pad     int             // zero bytes after the seller's extranonce2
	coinb1  []byte          // destination coinb1 ‖ extranonce1 (destination coinb1 alone when direct)
	coinb2  []byte          // zeros(pad) ‖ destination coinb2
	prev    chainhash.Hash
	branch  []chainhash.Hash
	version uint32
	bits    uint32
	ntime   uint32
	mask    uint32 // version bits the destination lets us roll
	upDiff  hashgrid.Diff
	upTgt   pow.Target
	netTgt  pow.Target
	// degenerate: the network target is easier than the destination's share target
	// (regtest), so sellers get the destination's difficulty exactly.
	degenerate bool
	// direct: the destination's extranonce2 is too small to carry a seller's
	// extranonce1 as well. The job is for one seller, on its own connection, whose
	// extranonce1 is the destination's (mining.set_extranonce), and whose
	// extranonce2, padded, is the destination's.
	direct    bool
	line      []byte         // mining.notify for sellers
	lineClean []byte         // the same with clean_jobs set
	notify    stratum.Notify // what line says, to say it again with a later ntime (seller.sendJob)
	stale     atomic.Bool

	seenMu sync.Mutex
	seen   map[uint32]map[chainhash.Hash]struct{} // by the seller's extranonce1
}

// Verdicts of markSeen.
const (
	shareNew  = iota // recorded now
	shareDup         // submitted before on this job by the same extranonce1
	shareFull        // the extranonce1's set on this job is full: refused, not recorded
)

// markSeen records a header hash submitted on this job by the seller connection with
// extranonce1 en1. Sets are per extranonce1, so a seller that fills its own hurts
// only itself, and a seller that reconnects and resumes its extranonce1 finds its
// earlier shares still there. A full set refuses, never forgets: what is accepted is
// always recorded.
func (j *mjob) markSeen(en1 uint32, h chainhash.Hash, max int) int {
	j.seenMu.Lock()
	defer j.seenMu.Unlock()
	set := j.seen[en1]
	if _, dup := set[h]; dup {
		return shareDup
	}
	if len(set) >= max {
		return shareFull
	}
	if set == nil {
		set = map[chainhash.Hash]struct{}{}
		j.seen[en1] = set
	}
	set[h] = struct{}{}
	return shareNew
}

// newMJob translates a destination's work for sellers whose extranonce2 is sellerEN2
// bytes. When the destination's extranonce2 has room for both, it becomes seller
// extranonce1 (4 bytes) ‖ seller extranonce2 ‖ zero padding, and the job is shared
// by all of an order's sellers; otherwise, if it has room for the seller's
// extranonce2, the job is direct: seller extranonce2 ‖ zero padding, for one seller
// whose extranonce1 is the destination's.
func newMJob(id string, w stratum.Work, sellerEN2 int) (*mjob, error) {
	n := w.Notify
	if w.Extranonce2Size < sellerEN2 {
		return nil, fmt.Errorf("destination extranonce2 size %d is below the %d bytes of sellers' extranonce2", w.Extranonce2Size, sellerEN2)
	}
	if !(w.Difficulty > 0) {
		return nil, errors.New("destination sent a job before any difficulty")
	}
	j := &mjob{id: id, n: n, en1: w.Extranonce1, pad: w.Extranonce2Size - 4 - sellerEN2, mask: w.VersionMask, seen: map[uint32]map[chainhash.Hash]struct{}{}}
	if j.pad < 0 {
		j.direct, j.pad = true, w.Extranonce2Size-sellerEN2
	}
	nj, err := n.Decode()
	if err != nil {
		return nil, err
	}
	j.prev, j.branch, j.version, j.bits, j.ntime = nj.Prev, nj.Branch, nj.Version, nj.Bits, nj.NTime
	j.coinb1 = nj.Coinb1
	if !j.direct {
		j.coinb1 = append(j.coinb1, w.Extranonce1...)
	}
	j.coinb2 = append(make([]byte, j.pad), nj.Coinb2...)
	if j.netTgt, err = pow.CompactTarget(j.bits); err != nil {
		return nil, err
	}
	j.upDiff = hashgrid.DiffFromFloat(w.Difficulty)
	if j.upDiff == 0 {
		j.upDiff = 1
	}
	j.upTgt = pow.DiffTarget(j.upDiff)
	j.degenerate = j.upTgt.LE(j.netTgt)
	out := stratum.Notify{
		JobID: id, PrevHash: n.PrevHash, Coinb1: hex.EncodeToString(j.coinb1), Coinb2: hex.EncodeToString(j.coinb2),
		MerkleBranch: n.MerkleBranch, Version: n.Version, NBits: n.NBits, NTime: n.NTime, CleanJobs: n.CleanJobs,
	}
	j.notify = out
	j.line = stratum.AppendNotification(nil, "mining.notify", out.MarshalParams())
	out.CleanJobs = true
	j.lineClean = stratum.AppendNotification(nil, "mining.notify", out.MarshalParams())
	return j, nil
}

func parseHex32(s string) (uint32, bool) {
	if len(s) != 8 {
		return 0, false
	}
	var b [4]byte
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return 0, false
	}
	return binary.BigEndian.Uint32(b[:]), true
}

// upstream is a connection an order has to its destination pool: the order's own
// (o.up), shared by its sellers, or one seller's (o.ded) when the destination's
// extranonce2 is too small to share.
type upstream struct {
	m      *Market
	o      *order
	seller *seller // the one seller this connection is for; nil for the order's own
	dest   Destination
	ctx    context.Context
	cancel context.CancelFunc
	slots  chan struct{} // one per share forwarded and not yet answered (UpstreamInFlight)

	mu   sync.Mutex
	cur  *mjob
	jobs []*mjob // most recent last
}

func (u *upstream) current() *mjob {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cur
}

func (u *upstream) close() { u.cancel() }

// ensureUpstreamLocked dials an active, funded order's destination if not connected.
func (m *Market) ensureUpstreamLocked(o *order) {
	if o.up != nil || o.rec.Status != StatusActive || o.rec.Funded == 0 || m.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	u := &upstream{m: m, o: o, dest: o.rec.Dest, ctx: ctx, cancel: cancel, slots: make(chan struct{}, m.cfg.UpstreamInFlight)}
	o.up = u
	m.wg.Go(u.run)
}

// openDedicatedLocked dials s's own connection to o's destination, whose extranonce2
// is too small to share; s gets its jobs when they come.
func (m *Market) openDedicatedLocked(o *order, s *seller) {
	ctx, cancel := context.WithCancel(m.ctx)
	u := &upstream{m: m, o: o, seller: s, dest: o.rec.Dest, ctx: ctx, cancel: cancel, slots: make(chan struct{}, m.cfg.UpstreamInFlight)}
	if o.ded == nil {
		o.ded = map[*seller]*upstream{}
	}
	o.ded[s] = u
	m.wg.Go(u.run)
}

// feedsLocked reports whether o's shares from s go to u: the order's own upstream,
// or s's own connection on a destination whose extranonce2 is too small to share.
func (o *order) feedsLocked(u *upstream, s *seller) bool {
	if u.seller != nil {
		return u.seller == s && o.ded[s] == u
	}
	return o.up == u
}

// closeUpstreamLocked detaches the order's upstreams (its own and its sellers') so
// that no new share goes to them.
func (m *Market) closeUpstreamLocked(o *order) {
	if u := o.up; u != nil {
		o.up = nil
		m.retireLocked(o, u)
	}
	for s := range o.ded {
		m.closeDedicatedLocked(o, s)
	}
}

// closeDedicatedLocked detaches s's own connection to o's destination, if it has one:
// the seller left the order.
func (m *Market) closeDedicatedLocked(o *order, s *seller) {
	if u := o.ded[s]; u != nil {
		delete(o.ded, s)
		m.retireLocked(o, u)
	}
}

// retireLocked closes a detached upstream. Its connection stays open while shares
// already forwarded wait for their answers: the destination may accept them, and then
// the buyer owes them and their sellers earned them. It is closed when the last answer
// arrives (releaseLocked), or after UpstreamTimeout at the latest.
func (m *Market) retireLocked(o *order, u *upstream) {
	if o.reserved.Sign() == 0 {
		u.close()
		return
	}
	o.draining = append(o.draining, u)
	time.AfterFunc(m.cfg.UpstreamTimeout+time.Second, u.close)
}

// releaseLocked returns a forwarded share's reservation once it is answered, and closes
// detached upstreams that have nothing left in flight.
func (m *Market) releaseLocked(o *order, cost *big.Int) {
	o.reserved.Sub(o.reserved, cost)
	if o.reserved.Sign() == 0 {
		for _, u := range o.draining {
			u.close()
		}
		o.draining = nil
	}
}

// dedicatedRetry is how long an order whose seller's own connection failed takes no
// new seller that needs one.
const dedicatedRetry = 10 * time.Second

// maxFollowReconnect bounds how often a destination's client.reconnect is followed
// before it has sent a job on the new connection.
const maxFollowReconnect = 1

func (u *upstream) run() {
	defer u.cancel()
	url := u.dest.URL
	follows := 0
	for {
		reason, rc := u.session(url)
		if u.ctx.Err() != nil {
			return
		}
		if rc != nil && follows < maxFollowReconnect {
			follows++
			if rc.Host != "" {
				url = "stratum+tcp://" + net.JoinHostPort(rc.Host, strconv.Itoa(rc.Port))
			}
			wait := min(rc.Wait, 5*time.Second)
			select {
			case <-u.ctx.Done():
				return
			case <-time.After(wait):
			}
			continue
		}
		u.m.upstreamFailed(u, reason)
		return
	}
}

// session runs one connection. It returns why it ended and the destination's
// client.reconnect request, if it sent one.
func (u *upstream) session(url string) (string, *stratum.Reconnect) {
	m := u.m
	log := m.log.With("component", "upstream", "order", u.o.rec.ID)
	// Resolved and checked at every dial, and the checked address is what is dialled.
	addr, err := m.resolveDest(u.ctx, url)
	if err != nil {
		log.Warn("destination refused", "err", err)
		return reasonUnreachable, nil
	}
	dctx, cancel := context.WithTimeout(u.ctx, m.cfg.UpstreamTimeout)
	var cli destClient
	if strings.HasPrefix(url, noise.URLScheme+"://") {
		cli, err = dialV2Dest(dctx, url, addr, u.dest.User, m.cfg, log)
	} else {
		cli, err = stratum.Dial(dctx, stratum.ClientConfig{
			URL: "stratum+tcp://" + addr, User: u.dest.User, Password: u.dest.Password, Agent: "hashgrid-market/1",
			VersionMask: upstreamVersionMask, Extranonce: true,
			DialTimeout: m.cfg.UpstreamTimeout, CallTimeout: m.cfg.UpstreamTimeout,
			Logger: log,
		})
	}
	cancel()
	if err != nil {
		log.Warn("destination unreachable", "err", err)
		return reasonUnreachable, nil
	}
	defer cli.Close()
	timer := time.NewTimer(m.cfg.JobTimeout)
	defer timer.Stop()
	first := true
	for {
		select {
		case <-u.ctx.Done():
			return "", nil
		case <-timer.C:
			return fmt.Sprintf("destination sent no job within %s", m.cfg.JobTimeout), nil
		case <-cli.Done():
			log.Warn("destination closed the connection", "err", cli.Err())
			return "destination closed the connection", cli.ReconnectRequest()
		case w, ok := <-cli.Updates():
			if !ok {
				log.Warn("destination closed the connection", "err", cli.Err())
				return "destination closed the connection", cli.ReconnectRequest()
			}
			j, err := newMJob(strconv.FormatUint(m.jobSeq.Add(1), 16), w, m.cfg.SellerExtranonce2Size)
			if err != nil {
				log.Warn("bad job from destination", "err", err)
				if need := m.cfg.SellerExtranonce2Size; w.Extranonce2Size < need {
					return fmt.Sprintf("destination gives %d bytes of extranonce2; the market needs at least %d", w.Extranonce2Size, need), nil
				}
				return "destination sent a job the market cannot use", nil
			}
			j.up, j.cli = u, cli
			if first {
				timer.Stop()
			}
			m.upstreamJob(u, j, first || w.Notify.CleanJobs)
			first = false
		}
	}
}

// upstreamJob installs a destination's new job and sends it to the order's sellers.
func (m *Market) upstreamJob(u *upstream, j *mjob, clean bool) {
	u.mu.Lock()
	wasIdle := u.cur == nil
	if clean {
		for _, old := range u.jobs {
			old.stale.Store(true)
		}
		u.jobs = u.jobs[:0]
	}
	u.jobs = append(u.jobs, j)
	if len(u.jobs) > upstreamJobs {
		u.jobs[0].stale.Store(true)
		u.jobs = append(u.jobs[:0], u.jobs[1:]...)
	}
	u.cur = j
	u.mu.Unlock()

	m.mu.Lock()
	var sellers []*seller
	switch o := u.o; {
	case u.seller != nil:
		// One seller's own connection: its jobs go to that seller alone.
		if o.ded[u.seller] == u && u.seller.ord == o {
			sellers = append(sellers, u.seller)
		}
		wasIdle = false
	case o.up != u:
		m.mu.Unlock()
		return
	case !j.direct:
		sellers = make([]*seller, 0, len(o.sellers))
		for s := range o.sellers {
			sellers = append(sellers, s)
		}
	}
	// The order's own connection to a destination whose extranonce2 is too small to
	// share sends no seller its jobs: it keeps the order live and prices its shares.
	m.mu.Unlock()
	for _, s := range sellers {
		s.sendJob(j, clean)
	}
	if wasIdle {
		m.kick()
	}
}

// upstreamFailed pauses an order whose destination failed. A seller's own connection
// that failed takes the seller off the order, which takes no new seller of its own
// connection for dedicatedRetry.
func (m *Market) upstreamFailed(u *upstream, reason string) {
	m.mu.Lock()
	o := u.o
	if s := u.seller; s != nil {
		if o.ded[s] == u {
			delete(o.ded, s)
			if s.ord == o {
				delete(o.sellers, s)
				s.ord = nil
			}
			o.dedRetry = m.cfg.Now().Add(dedicatedRetry)
			m.log.Warn("seller's own connection to the destination failed", "order", o.rec.ID, "reason", reason)
		}
		m.mu.Unlock()
		m.kick()
		return
	}
	if o.up != u {
		m.mu.Unlock()
		return
	}
	o.up = nil
	if o.rec.Status == StatusActive {
		o.rec.Status, o.rec.Reason = StatusPaused, reason
		m.log.Warn("order paused", "order", o.rec.ID, "reason", reason)
	}
	m.changedLocked(o)
	m.mu.Unlock()
	m.kick()
}
