package node

import (
	"context"
	"errors"
	"fmt"
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

// poll compares the healthy nodes' tips and fetches a template when the preferred
// node's tip moved, or the preference moved to another node's tip (or when there is no
// valid template yet).
func (w *watcher) poll(ctx context.Context) {
	best, err := w.s.CheckTips(ctx)
	if w.cur == nil {
		w.fetch(ctx)
		return
	}
	if err != nil {
		w.s.templateError(err)
		return
	}
	if best != w.cur.PrevHash {
		w.fetch(ctx)
	}
}

// CheckTips asks every healthy node for its tip at once, marks the nodes whose tip is
// lower than the highest as behind (calls then prefer the others), and returns the
// best block hash of the node now preferred. A node that does not answer, answers
// NotReady, or reports initial block download is marked down.
func (s *Set) CheckTips(ctx context.Context) (chainhash.Hash, error) {
	var ask []*member
	for _, m := range s.members {
		m.mu.Lock()
		if m.up {
			ask = append(ask, m)
		}
		m.mu.Unlock()
	}
	infos := make([]ChainInfo, len(ask))
	oks := make([]bool, len(ask))
	var wg sync.WaitGroup
	for i, m := range ask {
		wg.Go(func() { infos[i], oks[i] = s.askTip(ctx, m) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return chainhash.Hash{}, ctx.Err()
	}
	top := int64(-1)
	for i := range ask {
		if oks[i] {
			top = max(top, infos[i].Blocks)
		}
	}
	for i, m := range ask {
		if !oks[i] {
			continue
		}
		behind := infos[i].Blocks < top
		m.mu.Lock()
		was := m.behind
		m.behind = behind
		m.mu.Unlock()
		if behind && !was {
			s.log.Warn("node behind; mining on another node's tip", "node", m.c.String(), "height", infos[i].Blocks, "best_height", top)
		} else if was && !behind {
			s.log.Info("node caught up", "node", m.c.String(), "height", infos[i].Blocks)
		}
	}
	pref := s.order()[0]
	for i, m := range ask {
		if m == pref && oks[i] {
			return infos[i].BestBlockHash, nil
		}
	}
	// The preferred node was not asked (none was up) or did not answer: ask it alone.
	info, ok := s.askTip(ctx, pref)
	if !ok {
		return chainhash.Hash{}, fmt.Errorf("getblockchaininfo: %w", ErrNoNode)
	}
	return info.BestBlockHash, nil
}

// askTip asks one node for its chain tip, bounded by ProbeTimeout, and records the
// outcome in the node's health.
func (s *Set) askTip(ctx context.Context, m *member) (ChainInfo, bool) {
	pctx, cancel := context.WithTimeout(ctx, s.opts.ProbeTimeout)
	defer cancel()
	start := s.clock.Now()
	info, err := m.c.ChainInfo(pctx)
	if err == nil && info.InitialBlockDownload {
		err = fmt.Errorf("getblockchaininfo: %w", errInitialDownload)
	}
	switch {
	case ctx.Err() != nil:
		return info, false
	case err != nil:
		s.failure(m, err)
		return info, false
	}
	// Until the next comparison, judge the node against the heights the others
	// reported last, so that a node coming back on a short chain is not preferred.
	top := int64(-1)
	for _, o := range s.members {
		if o == m {
			continue
		}
		o.mu.Lock()
		if o.up {
			top = max(top, o.height)
		}
		o.mu.Unlock()
	}
	s.answered(m, s.clock.Now().Sub(start))
	m.mu.Lock()
	m.height = info.Blocks
	m.behind = info.Blocks < top
	m.mu.Unlock()
	return info, true
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
			if s.order()[0] != m {
				// The node fell behind or failed while the poll was open: its
				// template is no longer the one to mine on.
				continue
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
			// The same question as the tip comparison, so that a node still
			// downloading the chain is not taken back.
			if s.askTip(ctx, m); ctx.Err() != nil {
				return
			}
		}
	}
}
