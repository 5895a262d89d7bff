package market

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
)

// sellerSpeedWindow is the window over which a seller's speed is estimated for routing.
const sellerSpeedWindow = 30 * time.Second

// sellerVardiffShares closes a seller's vardiff window early.
const sellerVardiffShares = 16

type sentJob struct {
	j    *mjob
	diff hashgrid.Diff
	tgt  pow.Target
	// ntime is the earliest ntime the seller was given with this sending of j: the
	// job's own, or a later one when j was sent to this seller before (see sendJob).
	ntime uint32
}

// seller is one seller connection.
type seller struct {
	m         *Market
	conn      *stratum.Conn
	keys      map[string]string // authorized user → "address/worker"
	addr      string
	en1       [4]byte
	connected time.Time

	ord *order // assignment; guarded by Market.mu
	// destRejects counts this seller's forwarded shares rejected in a row by the
	// destination, since its order had accepted rejectsFrom shares; guarded by Market.mu.
	destRejects int
	rejectsFrom uint64

	mu       sync.Mutex
	jobs     [sellerJobs]sentJob
	njobs    int
	vdiff    hashgrid.Diff
	sentDiff hashgrid.Diff
	sentMask uint32 // version-rolling mask the seller was last told (BIP 310)
	sentEN1  []byte // extranonce1 the seller was last told: its own, or its connection's to a destination
	// sentNTime is the ntime each job not yet stale was last sent to this seller with.
	sentNTime map[*mjob]uint32
	winStart  time.Time
	winN      int
	winWork   float64
	rate      rateWindow
	// A seller without an order sends no shares: its speed is measured over the time
	// it worked, not the window's. idleFrom is when its current idle spell began
	// (zero while it works), idles its recent idle spells; lastSpeed is the last
	// estimate over enough working time, kept while it is idle.
	idleFrom  time.Time
	idles     []idleSpan
	lastSpeed float64
}

type idleSpan struct{ from, to time.Time }

// maxIdleSpans bounds a seller's remembered idle spells.
const maxIdleSpans = 64

// setWorking records whether the seller has an order from now on.
func (s *seller) setWorking(working bool, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case working && !s.idleFrom.IsZero():
		if len(s.idles) >= maxIdleSpans {
			s.idles = s.idles[1:]
		}
		s.idles = append(s.idles, idleSpan{s.idleFrom, now})
		s.idleFrom = time.Time{}
	case !working && s.idleFrom.IsZero():
		s.idleFrom = now
	}
}

// workerStats is what the market saw from one address/worker.
type workerStats struct {
	Valid     uint64        // valid at the market's difficulty: what the seller earns for
	ValidWork hashgrid.Work // their work
	Accepted  uint64        // accepted by a destination
	Rejected  uint64        // rejected by a destination (not stale)
	Stale     uint64        // stale at the market or at the destination
	Invalid   uint64        // failed the market's own check: not forwarded
	Work      hashgrid.Work
	Conns     int
	Last      time.Time
}

func (s *seller) diffFor(j *mjob) hashgrid.Diff {
	if j.degenerate || s.vdiff == 0 || s.vdiff > j.upDiff {
		return j.upDiff
	}
	return s.vdiff
}

// sendJob sends j with the difficulty this seller should get for it.
func (s *seller) sendJob(j *mjob, clean bool) {
	s.mu.Lock()
	d := s.diffFor(j)
	// A seller moved back to an order whose destination job has not changed would get
	// the same job, with the same extranonce, again: a miner starts a job it is sent
	// from its first extranonce2 and nonce, so it would repeat the shares it sent
	// before, which the destination and the duplicate set refuse. Each sending of a
	// job the seller had before carries an ntime one second past the latest it was
	// given for it, so its header space is new. Destinations accept an ntime up to
	// hours ahead (7,000 s is the usual bound), far beyond such moves.
	ntime := j.ntime
	if last, ok := s.sentNTime[j]; ok {
		ntime = last + 1
	}
	if len(s.sentNTime) >= sellerJobs {
		for k := range s.sentNTime {
			if k.stale.Load() {
				delete(s.sentNTime, k)
			}
		}
	}
	if s.sentNTime == nil {
		s.sentNTime = map[*mjob]uint32{}
	}
	s.sentNTime[j] = ntime
	s.jobs[s.njobs%sellerJobs] = sentJob{j: j, diff: d, tgt: pow.DiffTarget(d), ntime: ntime}
	s.njobs++
	var buf []byte
	// A direct job is mined with the extranonce1 of the seller's own connection to
	// the destination; any other with the seller's own. The seller is told before the
	// job, which then starts clean.
	en1 := s.en1[:]
	if j.direct {
		en1 = j.en1
	}
	if !bytes.Equal(en1, s.sentEN1) {
		s.sentEN1 = en1
		buf = stratum.AppendNotification(buf, "mining.set_extranonce", fmt.Appendf(nil, `["%x",%d]`, en1, s.m.cfg.SellerExtranonce2Size))
		clean = true
	}
	// A destination may let the market roll fewer version bits than the seller
	// negotiated, or change its mask: the seller is told before the job it applies
	// to, so that its rolled versions stay inside what the destination accepts.
	if cm := s.conn.VersionMask(); cm != 0 {
		if want := cm & j.mask; want != s.sentMask {
			s.sentMask = want
			buf = stratum.AppendNotification(buf, "mining.set_version_mask", fmt.Appendf(nil, `["%08x"]`, want))
		}
	}
	if d != s.sentDiff {
		s.sentDiff = d
		p := strconv.AppendFloat([]byte("["), d.Float(), 'g', -1, 64)
		buf = stratum.AppendNotification(buf, "mining.set_difficulty", append(p, ']'))
	}
	s.mu.Unlock()
	line := j.line
	if clean {
		line = j.lineClean
	}
	if ntime != j.ntime {
		n := j.notify
		n.NTime, n.CleanJobs = fmt.Sprintf("%08x", ntime), clean
		line = stratum.AppendNotification(nil, "mining.notify", n.MarshalParams())
	}
	s.conn.WriteRaw(append(buf, line...))
}

func (s *seller) lookup(id string) (sentJob, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := 1; k <= sellerJobs && k <= s.njobs; k++ {
		sj := s.jobs[(s.njobs-k)%sellerJobs]
		if sj.j != nil && sj.j.id == id {
			return sj, true
		}
	}
	return sentJob{}, false
}

// speed estimates the seller's hashes per second from its valid shares.
func (s *seller) speed(now time.Time) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	span := sellerSpeedWindow
	if el := now.Sub(s.connected); el < span {
		span = max(el, 5*time.Second)
	}
	from := now.Add(-span)
	overlap := func(a, b time.Time) time.Duration {
		if a.Before(from) {
			a = from
		}
		if b.After(now) {
			b = now
		}
		return max(b.Sub(a), 0)
	}
	idle := time.Duration(0)
	for _, sp := range s.idles {
		idle += overlap(sp.from, sp.to)
	}
	if !s.idleFrom.IsZero() {
		idle += overlap(s.idleFrom, now)
	}
	busy := span - idle
	if busy < 5*time.Second {
		return s.lastSpeed
	}
	s.lastSpeed = s.rate.rate(now, span) * span.Seconds() / busy.Seconds()
	return s.lastSpeed
}

// vardiff adjusts the seller's own difficulty after a valid share of difficulty d.
func (s *seller) vardiff(d hashgrid.Diff, now time.Time) {
	m := s.m
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rate.add(now, float64(d))
	s.winN++
	s.winWork += d.Float()
	T := m.cfg.SellerShareInterval
	el := now.Sub(s.winStart)
	if s.winN < sellerVardiffShares && el < 3*T {
		return
	}
	el = max(el, time.Millisecond)
	nd := s.winWork * T.Seconds() / el.Seconds()
	s.winStart, s.winN, s.winWork = now, 0, 0
	if r := nd / s.vdiff.Float(); r > 0.67 && r < 1.5 {
		return
	}
	s.vdiff = hashgrid.DiffFromFloat(max(nd, m.cfg.SellerMinDiff))
}

// sellerSide is the market's stratum.Handler for sellers.
type sellerSide struct{ m *Market }

func (h sellerSide) seller(c *stratum.Conn) *seller {
	if s, ok := c.Data.(*seller); ok {
		return s
	}
	s := &seller{m: h.m, conn: c, keys: map[string]string{}}
	c.Data = s
	return s
}

func validWorker(w string) bool {
	if len(w) > 64 {
		return false
	}
	for _, r := range w {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// Authorize accepts PAYOUT_ADDRESS.WORKER with an address of the market's network.
func (h sellerSide) Authorize(c *stratum.Conn, user, password string) error {
	addr, worker, _ := strings.Cut(user, ".")
	if !validWorker(worker) {
		return errors.New("worker name must be at most 64 letters, digits, '.', '_' or '-'")
	}
	if _, err := pool.AddressScript(addr, h.m.cfg.Network); err != nil {
		return errors.New(hashgrid.ErrorMessage(err))
	}
	s := h.seller(c)
	if s.addr != "" && s.addr != addr {
		return errors.New("one payout address per connection")
	}
	s.addr = addr
	s.keys[user] = addr + "/" + worker
	return nil
}

// Authorized registers the seller; the router gives it work.
func (h sellerSide) Authorized(c *stratum.Conn) {
	m := h.m
	s := h.seller(c)
	binary.BigEndian.PutUint32(s.en1[:], c.Extranonce1())
	now := m.cfg.Now()
	s.mu.Lock()
	s.sentEN1 = s.en1[:]
	s.connected, s.winStart = now, now
	s.idleFrom = now             // until the router gives it an order
	s.sentMask = c.VersionMask() // what mining.configure answered
	s.vdiff = hashgrid.DiffFromFloat(m.cfg.SellerStartDiff)
	if d := c.SuggestedDifficulty(); d > 0 {
		s.vdiff = hashgrid.DiffFromFloat(max(d, m.cfg.SellerMinDiff))
	}
	s.mu.Unlock()
	m.mu.Lock()
	m.sellers[s] = struct{}{}
	for _, k := range s.keys {
		m.worker(k).Conns++
	}
	m.mu.Unlock()
	m.kick()
}

// SuggestDifficulty sets the seller's own difficulty from its next job.
func (h sellerSide) SuggestDifficulty(c *stratum.Conn, d float64) {
	s := h.seller(c)
	s.mu.Lock()
	s.vdiff = hashgrid.DiffFromFloat(max(d, h.m.cfg.SellerMinDiff))
	s.mu.Unlock()
}

// Closed forgets the seller and re-routes.
func (h sellerSide) Closed(c *stratum.Conn) {
	m := h.m
	s := h.seller(c)
	m.mu.Lock()
	if _, ok := m.sellers[s]; ok {
		delete(m.sellers, s)
		for _, k := range s.keys {
			m.worker(k).Conns--
		}
	}
	if s.ord != nil {
		delete(s.ord.sellers, s)
		m.closeDedicatedLocked(s.ord, s)
		s.ord = nil
	}
	m.mu.Unlock()
	m.kick()
}

func (m *Market) worker(k string) *workerStats {
	w := m.workers[k]
	if w == nil {
		w = &workerStats{}
		m.workers[k] = w
	}
	return w
}

var (
	errStale   = &stratum.Error{Code: stratum.ErrCodeJobNotFound, Message: "job not found"}
	errNoOrder = &stratum.Error{Code: stratum.ErrCodeJobNotFound, Message: "the order this job was for has ended"}
)

// Submit checks a seller's share by re-hashing it, forwards it to the destination
// when it meets the destination's target (or the network's), and charges the order
// only for what the destination accepts.
func (h sellerSide) Submit(c *stratum.Conn, sub *stratum.Submit) *stratum.Error {
	m := h.m
	s := h.seller(c)
	now := m.cfg.Now()
	key := s.keys[sub.Worker]
	count := func(f func(w *workerStats)) {
		m.mu.Lock()
		w := m.worker(key)
		f(w)
		w.Last = now
		m.mu.Unlock()
	}
	invalid := func(code int, msg string) *stratum.Error {
		count(func(w *workerStats) { w.Invalid++ })
		return &stratum.Error{Code: code, Message: msg}
	}
	sj, ok := s.lookup(sub.JobID)
	if !ok || sj.j.stale.Load() {
		count(func(w *workerStats) { w.Stale++ })
		return errStale
	}
	j := sj.j
	en2Size := m.cfg.SellerExtranonce2Size
	var en2 [8]byte
	if len(sub.Extranonce2) != 2*en2Size {
		return invalid(stratum.ErrCodeOther, fmt.Sprintf("extranonce2 must be %d hex digits", 2*en2Size))
	}
	if _, err := hex.Decode(en2[:en2Size], []byte(sub.Extranonce2)); err != nil {
		return invalid(stratum.ErrCodeOther, "extranonce2 is not hex")
	}
	ntime, ok1 := parseHex32(sub.NTime)
	nonce, ok2 := parseHex32(sub.Nonce)
	if !ok1 || !ok2 {
		return invalid(stratum.ErrCodeOther, "ntime and nonce must be 8 hex digits")
	}
	if ntime < j.ntime || int64(ntime) > now.Add(7000*time.Second).Unix() {
		return invalid(stratum.ErrCodeOther, "ntime out of range")
	}
	if ntime < sj.ntime {
		// Mined on an earlier sending of this job, before the seller was moved away
		// and back: that work may repeat what the seller is mining now.
		count(func(w *workerStats) { w.Stale++ })
		return errStale
	}
	version, vbits := j.version, uint32(0)
	if sub.VersionBits != "" {
		vb, ok := parseHex32(sub.VersionBits)
		if !ok {
			return invalid(stratum.ErrCodeOther, "version bits must be 8 hex digits")
		}
		mask := c.VersionMask() & j.mask
		if out := vb &^ mask; out != 0 && out != j.version&^mask {
			return invalid(stratum.ErrCodeOther, "version bits outside the negotiated mask")
		}
		vbits = vb & mask
		version = (j.version &^ mask) | vbits
	}
	en1 := s.en1[:] // the extranonce1 the seller mined this job with (see sendJob)
	if j.direct {
		en1 = j.en1
	}
	cb := make([]byte, 0, len(j.coinb1)+len(en1)+en2Size+len(j.coinb2))
	cb = append(cb, j.coinb1...)
	cb = append(cb, en1...)
	cb = append(cb, en2[:en2Size]...)
	cb = append(cb, j.coinb2...)
	root := pow.MerkleRoot(pow.DoubleSHA256(cb), j.branch)
	var hdr [80]byte
	pow.Header(&hdr, version, &j.prev, &root, ntime, j.bits, nonce)
	hash := pow.DoubleSHA256(hdr[:])
	ht := pow.HashTarget(&hash)
	meetsNet := ht.LE(j.netTgt)
	if !ht.LE(sj.tgt) && !meetsNet {
		return invalid(stratum.ErrCodeLowDifficulty, "low difficulty share")
	}
	// Duplicates are checked before anything about the share is recorded: a replayed
	// share moves no vardiff, no speed estimate and no money.
	switch j.markSeen(c.Extranonce1(), hash, m.cfg.MaxSharesPerSellerJob) {
	case shareDup:
		return invalid(stratum.ErrCodeDuplicate, "duplicate share")
	case shareFull:
		count(func(w *workerStats) { w.Stale++ })
		return &stratum.Error{Code: stratum.ErrCodeJobNotFound, Message: "too many shares on this job: wait for the next"}
	}
	s.vardiff(sj.diff, now)
	forwardIt := ht.LE(j.upTgt) || meetsNet

	// The seller earns the share at the market's difficulty, at the price of the
	// order whose job it is; the buyer pays for what the destination accepts. The
	// order must be live and its escrow able to cover one destination share.
	m.mu.Lock()
	u := j.up
	o := u.o
	r := o.rec
	cost := shareCost(r.Price, j.upDiff)
	if !o.feedsLocked(u, s) || r.Status != StatusActive || o.roomLocked().Cmp(cost) < 0 {
		m.worker(key).Stale++
		m.mu.Unlock()
		return errNoOrder
	}
	sn := o.sellerNum[key]
	if sn == nil {
		sn = new(big.Int)
		o.sellerNum[key] = sn
	}
	sn.Add(sn, shareCost(r.Price, sj.diff))
	o.workerChangedLocked(key)
	w := m.worker(key)
	w.Valid++
	w.ValidWork = w.ValidWork.Add(sj.diff)
	w.Last = now
	m.changedLocked(o)
	if !forwardIt {
		// Below the destination's difficulty: it earned and measured the seller's
		// speed, and is not forwarded.
		m.mu.Unlock()
		return nil
	}
	// A slot among the upstream's shares in flight; none free means the destination
	// is slower than its sellers: the share is not forwarded, and only this order
	// loses it.
	select {
	case u.slots <- struct{}{}:
	default:
		r.Dropped++
		m.changedLocked(o)
		m.mu.Unlock()
		return nil
	}
	o.reserved.Add(o.reserved, cost)
	// The owner the share is delivered for: a contract transferred while the share is in
	// flight still credits the segment whose pool it went to.
	segment := len(r.Segments) - 1
	user := r.Dest.User
	m.mu.Unlock()

	upEN2 := make([]byte, 0, 4+en2Size+j.pad)
	if !j.direct {
		upEN2 = append(upEN2, s.en1[:]...)
	}
	upEN2 = append(upEN2, en2[:en2Size]...)
	upEN2 = append(upEN2, make([]byte, j.pad)...)
	fwd := &stratum.Submit{Worker: user, JobID: j.n.JobID, Extranonce2: hex.EncodeToString(upEN2), NTime: sub.NTime, Nonce: sub.Nonce}
	if sub.VersionBits != "" {
		fwd.VersionBits = fmt.Sprintf("%08x", vbits)
	}
	f := &forward{s: s, key: key, j: j, o: o, cost: cost, segment: segment, upEN2: upEN2, sub: fwd, version: version, hash: hash}
	m.wg.Go(func() {
		defer func() { <-u.slots }()
		m.forward(f)
	})
	// The seller's answer does not wait for the destination's: the share is valid at
	// the difficulty the market gave it.
	return nil
}

// forward is one share on its way to a destination.
type forward struct {
	s       *seller
	key     string // the seller's "address/worker"
	j       *mjob
	o       *order
	cost    *big.Int // reserved in the order's escrow
	segment int
	upEN2   []byte
	sub     *stratum.Submit
	version uint32
	hash    chainhash.Hash
}

// forward submits one share to its destination and books the answer. It runs on its
// own goroutine, holding one of the upstream's UpstreamInFlight slots.
func (m *Market) forward(f *forward) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.UpstreamTimeout)
	err := f.j.cli.Submit(ctx, f.sub)
	cancel()
	now := m.cfg.Now()
	j, o, s, key := f.j, f.o, f.s, f.key

	m.mu.Lock()
	defer m.mu.Unlock()
	r := o.rec
	m.releaseLocked(o, f.cost)
	w := m.worker(key)
	w.Last = now
	var se *stratum.Error
	switch {
	case err == nil:
		o.num.Add(o.num, f.cost)
		r.Accepted++
		r.Work = r.Work.Add(j.upDiff)
		if r.FirstShare.IsZero() {
			r.FirstShare = now
		}
		seg := &r.Segments[f.segment]
		seg.Accepted++
		seg.Work = seg.Work.Add(j.upDiff)
		o.deliv.add(now, float64(j.upDiff))
		o.recordSpeedLocked(now, float64(j.upDiff), m.cfg.SpeedBucket, int(m.cfg.SpeedHistory/m.cfg.SpeedBucket)+1)
		o.rejects, o.rejectBy = 0, nil
		s.destRejects = 0
		w.Accepted++
		w.Work = w.Work.Add(j.upDiff)
		m.sampleLocked(o, f.segment, j, key, now, f.upEN2, f.sub, f.version, f.hash)
		m.changedLocked(o)
		if r.Status == StatusActive && o.roomLocked().Cmp(f.cost) < 0 {
			r.Status, r.Reason = StatusExhausted, "budget spent"
			m.closeUpstreamLocked(o)
			m.kick()
		}
	case errors.As(err, &se) && se.Code == stratum.ErrCodeJobNotFound:
		r.Stale++
		w.Stale++
		m.changedLocked(o)
	case errors.As(err, &se):
		r.Rejected++
		w.Rejected++
		m.changedLocked(o)
		m.destRejectLocked(o, j.up, s, se)
	default:
		// No verdict (the destination went away or timed out): nothing is charged; the
		// upstream's own goroutine pauses the order if its connection is gone.
	}
}

// destRejectLocked books a destination's rejection of a share the market had checked
// and found valid. Whose doing it is shows in the pattern: a destination that rejects
// everything rejects every seller's shares, so an order pauses only after
// rejectsToPause rejections in a row from at least two sellers; one seller whose
// shares are rejected while other sellers' are accepted is dropped, and the order
// carries on.
func (m *Market) destRejectLocked(o *order, u *upstream, s *seller, se *stratum.Error) {
	r := o.rec
	if s.destRejects == 0 {
		s.rejectsFrom = r.Accepted
	}
	s.destRejects++
	if s.destRejects >= sellerRejectsToDrop && r.Accepted > s.rejectsFrom {
		m.log.Warn("seller dropped: the destination rejects its shares and accepts others'", "order", r.ID, "remote", s.conn.RemoteAddr(),
			"rejected", s.destRejects, "last", se.Message)
		s.destRejects = 0
		s.conn.Close()
	}
	o.rejects++
	if o.rejectBy == nil {
		o.rejectBy = map[*seller]struct{}{}
	}
	if len(o.rejectBy) < 2 {
		o.rejectBy[s] = struct{}{}
	}
	if o.rejects >= rejectsToPause && len(o.rejectBy) >= 2 && o.feedsLocked(u, s) && r.Status == StatusActive {
		m.pauseLocked(o, fmt.Sprintf("destination rejected %d valid shares in a row from %d or more sellers (last: %d %s)", o.rejects, len(o.rejectBy), se.Code, se.Message))
		m.kick()
	}
}
