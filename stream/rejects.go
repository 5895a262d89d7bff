package stream

import (
	"log/slog"
	"sync"
	"time"

	"github.com/hashgrid/hashgrid"
)

// Rejected shares.
//
// Every accepted share is a record of its own, made durable before the miner hears
// "accepted". Rejected shares are kept for reject rates and to see what a misbehaving
// device sends, and cost the pool nothing it owes, so a peer that sends thousands a
// second must not cost a record (and a share of an fsync) each: of each worker's
// rejections in an interval the first RejectSampling.SamplesPerWorker are written in
// full, and each later one only replaces the held copy of the latest of its kind
// (Share.Result). When the interval ends, each held copy is written once, with
// Share.Repeats counting the rejections it stands for besides itself, so that counts
// by worker and reason stay exact while the bytes stay bounded.

// RejectSampling bounds what rejected shares cost a ShareSink. Zero values take the
// defaults of DefaultRejectSampling.
type RejectSampling struct {
	// Interval is how long rejections are held before their counts are written.
	Interval time.Duration
	// SamplesPerWorker is how many of one worker's rejected shares per interval are
	// written in full.
	SamplesPerWorker int
	// MaxSamples bounds the rejected shares written in full per interval, over all
	// workers: many worker names cannot buy many samples.
	MaxSamples int
	// MaxWorkers bounds the workers whose rejections are held at once; one more
	// writes every held count early and starts a new interval.
	MaxWorkers int
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Logger receives write failures of held counts; silent if nil.
	Logger *slog.Logger
}

// DefaultRejectSampling: per worker, eight full rejected shares and at most six count
// records (one per kind of rejection) a minute, and at most 4,096 full ones a minute
// in all.
var DefaultRejectSampling = RejectSampling{
	Interval:         time.Minute,
	SamplesPerWorker: 8,
	MaxSamples:       4096,
	MaxWorkers:       65536,
}

func (r RejectSampling) withDefaults() RejectSampling {
	d := DefaultRejectSampling
	if r.Interval <= 0 {
		r.Interval = d.Interval
	}
	if r.SamplesPerWorker <= 0 {
		r.SamplesPerWorker = d.SamplesPerWorker
	}
	if r.MaxSamples <= 0 {
		r.MaxSamples = d.MaxSamples
	}
	if r.MaxWorkers <= 0 {
		r.MaxWorkers = d.MaxWorkers
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r
}

type rejectKey struct{ address, worker string }

// heldRejects is one worker's rejections in the current interval.
type heldRejects struct {
	samples int
	latest  [hashgrid.ShareInvalid + 1]*hashgrid.Share // by Result; Repeats counts the others
}

// rejectSampler holds the rejections of the current interval.
type rejectSampler struct {
	cfg     RejectSampling
	s       Stream
	mu      sync.Mutex
	start   time.Time // of the interval; zero when nothing is held
	samples int
	workers map[rejectKey]*heldRejects
	timer   *time.Timer
	closed  bool
}

// record takes a rejected share: it reports whether the share is to be written in
// full; if not, it is held (counted).
func (r *rejectSampler) record(sh *hashgrid.Share) (full bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return true
	}
	now := r.cfg.Now()
	if !r.start.IsZero() && now.Sub(r.start) >= r.cfg.Interval {
		r.flushLocked(nil)
	}
	if r.start.IsZero() {
		r.start = now
		if r.timer == nil {
			r.timer = time.AfterFunc(r.cfg.Interval, r.flushDue)
		} else {
			r.timer.Reset(r.cfg.Interval)
		}
	}
	k := rejectKey{sh.Address, sh.Worker}
	h := r.workers[k]
	if h == nil {
		if len(r.workers) >= r.cfg.MaxWorkers {
			r.flushLocked(nil)
			r.start = now
		}
		h = &heldRejects{}
		r.workers[k] = h
	}
	if h.samples < r.cfg.SamplesPerWorker && r.samples < r.cfg.MaxSamples {
		h.samples++
		r.samples++
		return true
	}
	res := min(sh.Result, hashgrid.ShareInvalid)
	if l := h.latest[res]; l == nil {
		c := *sh
		c.Repeats = 0
		h.latest[res] = &c
	} else {
		n := l.Repeats + 1
		*l = *sh
		l.Repeats = n
	}
	return false
}

// flushDue runs on the interval's timer.
func (r *rejectSampler) flushDue() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.start.IsZero() {
		return
	}
	if wait := r.cfg.Interval - r.cfg.Now().Sub(r.start); wait > 0 {
		r.timer.Reset(wait)
		return
	}
	r.flushLocked(nil)
}

// flushLocked writes every held rejection and ends the interval; wg, if not nil, is
// done when each write is.
func (r *rejectSampler) flushLocked(wg *sync.WaitGroup) {
	for _, h := range r.workers {
		for _, l := range h.latest {
			if l == nil {
				continue
			}
			b, err := l.MarshalBinary()
			if err != nil {
				r.cfg.Logger.Warn("rejected shares not recorded", "address", l.Address, "worker", l.Worker,
					"result", l.Result.String(), "count", l.Repeats+1, "err", err)
				continue
			}
			n, addr, worker := l.Repeats+1, l.Address, l.Worker
			if wg != nil {
				wg.Add(1)
			}
			r.s.AppendAsync(b, func(_ uint64, err error) {
				if wg != nil {
					defer wg.Done()
				}
				if err != nil {
					r.cfg.Logger.Warn("rejected shares not recorded", "address", addr, "worker", worker, "count", n, "err", err)
				}
			})
		}
	}
	clear(r.workers)
	r.samples = 0
	r.start = time.Time{}
}

// NewShareSink returns a sink that records shares in s: accepted ones each in full,
// rejected ones sampled as rs bounds them (see the package's notes on rejected shares).
// Close writes what it holds.
func NewShareSink(s Stream, rs RejectSampling) ShareSink {
	return ShareSink{S: s, rejects: &rejectSampler{cfg: rs.withDefaults(), s: s, workers: map[rejectKey]*heldRejects{}}}
}

// Close writes the rejections the sink holds to the stream, waits until they are
// durable (or failed, which is logged), and stops sampling: later rejected shares are
// written in full. It does not close the stream.
func (k ShareSink) Close() error {
	r := k.rejects
	if r == nil {
		return nil
	}
	var wg sync.WaitGroup
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		if r.timer != nil {
			r.timer.Stop()
		}
		if !r.start.IsZero() {
			r.flushLocked(&wg)
		}
	}
	r.mu.Unlock()
	wg.Wait()
	return nil
}
