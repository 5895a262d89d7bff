package pool

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
)

// sentJobs is how many recent jobs a connection may still submit against; a share
// for an older job is stale.
const sentJobs = 8

// Vardiff windows: see session.accepted.
const (
	vardiffFastShares  = 8
	vardiffShares      = 32
	vardiffWindows     = 6
	vardiffIdleWindows = 12
	// A window closed on time needs vardiffMinShares shares, or else it stays open
	// for vardiffLongWindows intervals: one share in six intervals is too weak a sign
	// (it happens in 1.5% of windows at the right difficulty) to cut the difficulty 6x.
	vardiffMinShares   = 4
	vardiffLongWindows = 24
)

type sentJob struct {
	j    *job
	diff hashgrid.Diff
}

// workShares counts a connection's accepted shares on one work (template and coinbase
// layout), which its jobs' clones share, against Config.MaxJobShares.
type workShares struct {
	w *work
	n int
}

// userWorker maps a mining.authorize user to the worker name shares carry. A slice
// rather than a map: a connection almost always has one, and idle connections should
// be small.
type userWorker struct{ user, worker string }

// session is the pool's state for one miner connection.
type session struct {
	conn *stratum.Conn

	mu         sync.Mutex
	address    string
	workers    []userWorker
	authorized bool
	fixed      bool          // difficulty set by password option: no vardiff
	diff       hashgrid.Diff // applies from the next job sent
	sentDiff   hashgrid.Diff // last difficulty sent with set_difficulty
	tgt        pow.Target    // target of diff
	tgtDiff    hashgrid.Diff
	sent       [sentJobs]sentJob
	nsent      int
	// counts holds one entry per work the sent jobs refer to (at most sentJobs).
	counts [sentJobs]workShares

	windowStart  time.Time
	windowShares int
	windowWork   float64 // difficulty units; estimation only
}

// worker returns the worker name of an authorized user.
func (s *session) worker(user string) string {
	for _, uw := range s.workers {
		if uw.user == user {
			return uw.worker
		}
	}
	return ""
}

// target returns the share target of a difficulty the session handed out: the cached
// one for the current difficulty, computed for an older one.
func (s *session) target(d hashgrid.Diff) pow.Target {
	if d == s.tgtDiff {
		return s.tgt
	}
	return pow.DiffTarget(d)
}

// sharesOn returns the count of the connection's accepted shares on w, a work one of
// its sent jobs refers to. s.mu must be held.
func (s *session) sharesOn(w *work) *workShares {
	free := -1
	for i := range s.counts {
		if s.counts[i].w == w {
			return &s.counts[i]
		}
		if free < 0 && !s.refersTo(s.counts[i].w) {
			free = i
		}
	}
	// The sent jobs refer to at most sentJobs works, w among them, so a slot whose
	// work none of them refers to any more is always left.
	s.counts[free] = workShares{w: w}
	return &s.counts[free]
}

// refersTo reports whether a sent job is over w.
func (s *session) refersTo(w *work) bool {
	if w == nil {
		return false
	}
	for i := range s.sent {
		if s.sent[i].j != nil && s.sent[i].j.work == w {
			return true
		}
	}
	return false
}

func (s *session) lookup(id uint64) (sentJob, bool) {
	for i := range s.sent {
		if s.sent[i].j != nil && s.sent[i].j.id == id {
			return s.sent[i], true
		}
	}
	return sentJob{}, false
}

// sendJob sends j (or this session's own layout of it) with the session's current
// difficulty, preceded by set_difficulty when that changed.
func (s *session) sendJob(p *Pool, j *job) { s.conn.WriteRaw(s.jobLine(p, j)) }

// jobLine is appendJobLine to a new buffer, or the job's own line when that is all.
func (s *session) jobLine(p *Pool, j *job) []byte {
	var diffLine []byte
	j = s.sent1(p, j, &diffLine)
	if diffLine == nil && j.notify != nil {
		return j.notify
	}
	return j.appendNotify(diffLine)
}

// appendJobLine records j (or this session's own layout of it) as sent and appends to
// dst the lines that send it: its notify, preceded by set_difficulty when that changed.
func (s *session) appendJobLine(p *Pool, j *job, dst []byte) []byte {
	j = s.sent1(p, j, &dst)
	return j.appendNotify(dst)
}

// sent1 records j (or this session's own layout of it, which it returns) as sent, and
// appends set_difficulty to *diffLine when the difficulty changed.
func (s *session) sent1(p *Pool, j *job, diffLine *[]byte) *job {
	j = p.jobFor(s, j)
	now := p.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idleRetarget(p, now)
	if s.tgtDiff != s.diff || s.nsent == 0 {
		s.tgt, s.tgtDiff = pow.DiffTarget(s.diff), s.diff
	}
	s.sent[s.nsent%sentJobs] = sentJob{j: j, diff: s.diff}
	s.nsent++
	if s.sentDiff != s.diff {
		s.sentDiff = s.diff
		var b [32]byte
		p := strconv.AppendFloat(append(b[:0], '['), s.diff.Float(), 'g', -1, 64)
		*diffLine = stratum.AppendNotification(*diffLine, "mining.set_difficulty", append(p, ']'))
	}
	return j
}

// idleRetarget lowers the difficulty of a connection that has found no share for
// vardiffIdleWindows target intervals (a device far slower than its difficulty
// assumes). At the right difficulty that silence has probability e^-12, so it does not
// disturb a converged connection. The new difficulty assumes the next share was just
// about to arrive: cur·2T/elapsed.
func (s *session) idleRetarget(p *Pool, now time.Time) {
	if s.fixed || s.windowStart.IsZero() || s.windowShares > 0 {
		return
	}
	T := p.cfg.ShareInterval
	el := now.Sub(s.windowStart)
	if el < vardiffIdleWindows*T {
		return
	}
	s.diff = p.clampDiff(s.diff.Float() * 2 * T.Seconds() / el.Seconds())
	s.windowStart, s.windowShares, s.windowWork = now, 0, 0
}

// accepted updates vardiff after an accepted share; it reports whether the
// difficulty changed (the caller then sends a new job).
//
// A window closes early when vardiffFastShares arrive within one target interval (the
// difficulty is at least that many times too low: jump straight to the estimate, which
// is how a 200 TH/s ASIC starting at the default difficulty gets to its own within a
// second), or after vardiffShares shares, or after vardiffWindows intervals with at
// least vardiffMinShares shares, or after vardiffLongWindows intervals. An estimate
// within 4x of the current difficulty moves it only halfway (geometrically), so that
// the noise of a short window (1/sqrt(shares)) does not make the difficulty wander.
func (s *session) accepted(p *Pool, d hashgrid.Diff, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fixed {
		return false
	}
	s.windowShares++
	s.windowWork += d.Float()
	el := now.Sub(s.windowStart)
	T := p.cfg.ShareInterval
	fast := s.windowShares >= vardiffFastShares && el < T
	full := s.windowShares >= vardiffShares ||
		(el >= vardiffWindows*T && s.windowShares >= vardiffMinShares) ||
		el >= vardiffLongWindows*T
	if !fast && !full {
		return false
	}
	if el < time.Millisecond {
		el = time.Millisecond
	}
	nd := s.windowWork * T.Seconds() / el.Seconds()
	cur := s.diff.Float()
	s.windowStart, s.windowShares, s.windowWork = now, 0, 0
	if r := nd / cur; !fast && r > 0.25 && r < 4 {
		r = math.Sqrt(r)
		if r > 0.85 && r < 1.18 {
			return false
		}
		nd = cur * r
	}
	old := s.diff
	s.diff = p.clampDiff(nd)
	return s.diff != old
}

// Submit validates a share and records it. It answers nil only once the share is
// durable in the share sink. The server uses SubmitAsync; Submit serves callers that
// want the answer in line.
func (p *Pool) Submit(c *stratum.Conn, sub *stratum.Submit) *stratum.Error {
	ch := make(chan *stratum.Error, 1)
	p.SubmitAsync(c, sub, func(e *stratum.Error) { ch <- e })
	return <-ch
}

// SubmitAsync validates a share in the connection's read loop (so duplicates are
// decided in arrival order) and answers through done: at once for a rejection, once
// the share is durable for an accepted one.
func (p *Pool) SubmitAsync(c *stratum.Conn, sub *stratum.Submit, done func(*stratum.Error)) {
	s := p.session(c)
	now := p.cfg.Now()
	sh := hashgrid.Share{Time: now, JobID: sub.JobID, UserAgent: c.UserAgent(), Remote: c.RemoteAddr()}
	s.mu.Lock()
	sh.Address, sh.Worker = s.address, s.worker(sub.Worker)
	s.mu.Unlock()

	res, w, block, err := p.validate(s, c.Extranonce1(), c.VersionMask(), sub, &sh)
	if res != hashgrid.ShareAccepted {
		sh.Result = res
		p.m.share(res)
		p.sharesRejected.Add(1)
		// Rejected shares are kept for reject rates; the answer does not wait for that,
		// and failing to keep one loses nothing the miner is owed. A peer sending bad
		// shares is held back by its strikes, not by the disk.
		p.shares.Record(&sh, func(_ uint64, rerr error) {
			if rerr != nil {
				p.log.Warn("record rejected share", "err", rerr)
			}
		})
		done(err)
		return
	}
	var seqc chan uint64
	if block != nil {
		seqc = make(chan uint64, 1)
		p.bg.Add(1)
		go p.submitBlock(block, sh, seqc)
	}
	// The answer waits until the share is durable. The callback runs on the sink's
	// goroutine, which answers shares in batches: it only counts, hands the verdict to
	// the connection and, rarely, starts a retarget.
	p.shares.Record(&sh, func(seq uint64, rerr error) {
		if seqc != nil {
			seqc <- seq
		}
		if rerr != nil {
			p.log.Error("share not recorded", "err", rerr, "address", sh.Address)
			p.m.recordFailed()
			if block == nil {
				// Let the miner resubmit it once the sink recovers.
				w.unmarkSeen(sh.Hash)
			}
			done(&stratum.Error{Code: stratum.ErrCodeOther, Message: "pool could not record the share"})
			return
		}
		p.m.share(hashgrid.ShareAccepted)
		p.m.acceptedWork(sh.Diff)
		p.sharesAccepted.Add(1)
		done(nil)
		if s.accepted(p, sh.Diff, now) {
			if j := p.cloneCurrent(s); j != nil {
				p.bg.Go(func() { s.sendJob(p, j) })
			}
		}
	})
}

// solved is a block candidate ready to submit.
type solved struct {
	w    *work
	hdr  [80]byte
	cb   []byte
	hash chainhash.Hash
}

// validate checks a share. It fills sh and returns the verdict, the block to submit
// when the share solves one, and the Stratum error for a rejection.
func (p *Pool) validate(s *session, en1, mask uint32, sub *stratum.Submit, sh *hashgrid.Share) (hashgrid.ShareResult, *work, *solved, *stratum.Error) {
	invalid := func(msg string) (hashgrid.ShareResult, *work, *solved, *stratum.Error) {
		return hashgrid.ShareInvalid, nil, nil, &stratum.Error{Code: stratum.ErrCodeOther, Message: msg}
	}
	id, err := strconv.ParseUint(sub.JobID, 16, 64)
	if err != nil {
		return hashgrid.ShareStale, nil, nil, &stratum.Error{Code: stratum.ErrCodeJobNotFound, Message: "job not found"}
	}
	s.mu.Lock()
	sj, ok := s.lookup(id)
	var tgt pow.Target
	if ok {
		tgt = s.target(sj.diff)
	}
	s.mu.Unlock()
	if !ok {
		return hashgrid.ShareStale, nil, nil, &stratum.Error{Code: stratum.ErrCodeJobNotFound, Message: "job not found"}
	}
	w := sj.j.work
	sh.Height, sh.Diff = w.height, sj.diff
	// A share on a stale job is still hashed: it may solve a block, which the node,
	// not the pool, decides about (a clean template on the same previous block
	// supersedes the job, yet its blocks are as good).
	stale := w.stale.Load()
	staleErr := &stratum.Error{Code: stratum.ErrCodeJobNotFound, Message: "stale job"}
	var en2 [16]byte
	if len(sub.Extranonce2) != 2*w.en2Size {
		return invalid(fmt.Sprintf("extranonce2 must be %d hex digits", 2*w.en2Size))
	}
	if _, err := hex.Decode(en2[:w.en2Size], []byte(sub.Extranonce2)); err != nil {
		return invalid("extranonce2 is not hex")
	}
	ntime, ok1 := parseHex32(sub.NTime)
	nonce, ok2 := parseHex32(sub.Nonce)
	if !ok1 || !ok2 {
		return invalid("ntime and nonce must be 8 hex digits")
	}
	if int64(ntime) < w.tmpl.MinTime || int64(ntime) > sh.Time.Add(p.cfg.MaxFutureNTime).Unix() {
		return invalid("ntime out of range")
	}
	version := w.version
	if sub.VersionBits != "" {
		vb, ok := parseHex32(sub.VersionBits)
		if !ok {
			return invalid("version bits must be 8 hex digits")
		}
		// BIP 310: bits outside the mask must be zero; some firmware sends the whole
		// version instead, which is fine when its outside bits equal the job's.
		if out := vb &^ mask; out != 0 && out != w.version&^mask {
			return invalid("version bits outside the negotiated mask")
		}
		version = (w.version &^ mask) | (vb & mask)
	}

	bufp := cbPool.Get().(*[]byte)
	cb := w.coinbase((*bufp)[:0], en1, en2[:w.en2Size])
	root := pow.MerkleRoot(pow.DoubleSHA256(cb), w.branch)
	var hdr [80]byte
	w.header(&hdr, version, &root, ntime, nonce)
	hash := pow.DoubleSHA256(hdr[:])
	sh.Hash = hash
	sh.Actual = hashgrid.DiffFromFloat(math.Min(pow.HashDifficulty(&hash), hashgrid.MaxDiff.Float()))
	ht := pow.HashTarget(&hash)
	reject := func(res hashgrid.ShareResult, e *stratum.Error) (hashgrid.ShareResult, *work, *solved, *stratum.Error) {
		*bufp = cb
		cbPool.Put(bufp)
		return res, nil, nil, e
	}
	if !ht.LE(tgt) {
		if stale {
			return reject(hashgrid.ShareStale, staleErr)
		}
		return reject(hashgrid.ShareLowDiff, &stratum.Error{Code: stratum.ErrCodeLowDifficulty, Message: "low difficulty share"})
	}
	// A block-solving share is taken whatever else holds: stale job or full job.
	isBlock := ht.LE(w.netTgt)
	if stale && !isBlock {
		return reject(hashgrid.ShareStale, staleErr)
	}
	s.mu.Lock()
	count := s.sharesOn(w)
	full := count.n >= p.cfg.MaxJobShares
	s.mu.Unlock()
	if full && !isBlock {
		return reject(hashgrid.ShareStale, &stratum.Error{Code: stratum.ErrCodeJobNotFound, Message: "job share limit reached: wait for the next job"})
	}
	if err := w.markSeen(hash); err != nil {
		return reject(hashgrid.ShareDuplicate, &stratum.Error{Code: stratum.ErrCodeDuplicate, Message: "duplicate share"})
	}
	s.mu.Lock()
	count.n++
	s.mu.Unlock()
	if ht.LE(shiftTarget(tgt, p.sampleShift)) {
		// In the sample (see Sampled): the hash, not the pool, chose it.
		h := hdr
		sh.Header = &h
	}
	var blk *solved
	if isBlock {
		sh.Block = true
		blk = &solved{w: w, hdr: hdr, cb: append([]byte(nil), cb...), hash: hash}
	}
	*bufp = cb
	cbPool.Put(bufp)
	return hashgrid.ShareAccepted, w, blk, nil
}

var cbPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

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
