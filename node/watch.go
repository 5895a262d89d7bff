package node

import (
	"context"
	"errors"
	"sync"

	"github.com/btcsuite/btcd/chainhash/v2"
)

// Watch delivers block templates to fn until ctx ends: the first one at once, then one
// whenever the tip changes (newTip true: miners must drop their work) or the template's
// transactions change (newTip false: a fee refresh). It blocks until ctx ends and all
// its goroutines have returned, and returns ctx's error.
//
// New tips are noticed by GBT long polling on the preferred node, by polling the best
// block hash every PollInterval, and by ZMQ hashblock when endpoints are configured;
// templates are also refreshed every RefreshInterval. Node errors never stop the
// watcher: the last valid template stays current, Status reports degraded, failed nodes
// are probed with backoff, and the next healthy node takes over.
//
// fn runs on the watcher's goroutine, one call at a time; it should hand the template
// on quickly. A tip change that moves to a lower height (a node restarted on a new
// regtest chain, a reorg to a shorter chain) is delivered like any other tip change:
// the node is the judge of the best chain.
func (s *Set) Watch(ctx context.Context, fn func(t *Template, newTip bool)) error {
	s.mu.Lock()
	s.watching = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.watching = false
		s.mu.Unlock()
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	wake := make(chan struct{}, 1) // a hint that the tip may have changed
	longPolled := make(chan *Template)
	if !s.opts.NoLongPoll {
		wg.Go(func() { s.longPoll(ctx, longPolled) })
	}
	for _, ep := range s.opts.ZMQ {
		wg.Go(func() { s.subscribeHashBlock(ctx, ep, wake) })
	}
	wg.Go(func() { s.probe(ctx) })

	w := watcher{s: s, fn: fn}
	w.fetch(ctx)
	poll := s.clock.After(s.opts.PollInterval)
	refresh := s.clock.After(s.opts.RefreshInterval)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case t := <-longPolled:
			w.offer(t)
		case <-wake:
			w.fetch(ctx)
		case <-poll:
			poll = s.clock.After(s.opts.PollInterval)
			w.poll(ctx)
		case <-refresh:
			refresh = s.clock.After(s.opts.RefreshInterval)
			w.fetch(ctx)
		}
	}
}

// watcher is the state of Watch's main loop; only that loop touches it.
type watcher struct {
	s   *Set
	fn  func(*Template, bool)
	cur *Template
}

// poll asks for the best block hash and fetches a template when it moved (or when
// there is no valid template yet).
func (w *watcher) poll(ctx context.Context) {
	if w.cur == nil {
		w.fetch(ctx)
		return
	}
	var best chainhash.Hash
	err := w.s.do(ctx, "getbestblockhash", func(ctx context.Context, c *Client) (err error) {
		ctx, cancel := context.WithTimeout(ctx, w.s.opts.ProbeTimeout)
		defer cancel()
		best, err = c.BestBlockHash(ctx)
		return err
	})
	if err != nil {
		w.s.templateError(err)
		return
	}
	if best != w.cur.PrevHash {
		w.fetch(ctx)
	}
}

func (w *watcher) fetch(ctx context.Context) {
	t, err := w.s.BlockTemplate(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.s.templateError(err)
		}
		return
	}
	w.offer(t)
}

// offer delivers t unless it is the same work as the current template.
func (w *watcher) offer(t *Template) {
	w.s.templateOK()
	newTip := w.cur == nil || t.PrevHash != w.cur.PrevHash
	if !newTip && sameWork(w.cur, t) {
		return
	}
	if newTip {
		w.s.log.Info("new tip", "height", t.Height, "prev", t.PrevHash, "txs", len(t.Transactions))
	}
	w.cur = t
	w.fn(t, newTip)
}

func sameWork(a, b *Template) bool {
	if a.PrevHash != b.PrevHash || a.CoinbaseValue != b.CoinbaseValue || a.Bits != b.Bits ||
		a.Version != b.Version || len(a.Transactions) != len(b.Transactions) {
		return false
	}
	for i := range a.Transactions {
		if a.Transactions[i].WTxID != b.Transactions[i].WTxID {
			return false
		}
	}
	return true
}

func (s *Set) templateOK() {
	s.mu.Lock()
	s.lastTmpl = s.clock.Now()
	s.mu.Unlock()
}

func (s *Set) templateError(err error) {
	s.mu.Lock()
	s.tmplErr, s.tmplErrAt = err, s.clock.Now()
	s.mu.Unlock()
	s.log.Warn("no template", "err", err)
}

// longPoll keeps a GBT long poll open on the preferred node and sends what it returns.
func (s *Set) longPoll(ctx context.Context, out chan<- *Template) {
	var id string
	var m *member
	fails := 0
	for ctx.Err() == nil {
		next := s.order()[0]
		if next != m {
			// Another node's long poll id means nothing here: start with a plain GBT.
			m, id = next, ""
		}
		start := s.clock.Now()
		t, err := m.c.BlockTemplate(ctx, id)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			fails = 0
			s.success(m, s.clock.Now().Sub(start))
			id = t.LongPollID
			if id == "" {
				s.log.Info("node does not long poll; polling only", "node", m.c.String())
				return
			}
			select {
			case out <- t:
			case <-ctx.Done():
				return
			}
			continue
		case errors.Is(err, context.DeadlineExceeded) && id != "":
			// Nothing changed within the long poll timeout: ask again.
			continue
		}
		s.failure(m, err)
		fails++
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(s.backoff(fails)):
		}
	}
}

// probe retries failed nodes once their backoff has passed, so that a preferred node
// that came back is used again without a caller paying for the check.
func (s *Set) probe(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(s.opts.MinBackoff):
		}
		now := s.clock.Now()
		for _, m := range s.members {
			m.mu.Lock()
			due := !m.up && !now.Before(m.retryAt)
			m.mu.Unlock()
			if !due {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, s.opts.ProbeTimeout)
			start := s.clock.Now()
			_, err := m.c.BestBlockHash(pctx)
			cancel()
			switch {
			case ctx.Err() != nil:
				return
			case err == nil:
				s.success(m, s.clock.Now().Sub(start))
			default:
				s.failure(m, err)
			}
		}
	}
}
