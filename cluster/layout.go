package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hashgrid/hashgrid/payout"
)

const layoutKey = "payout.layout"

// LayoutPublisher puts the accounting leader's PPLNS layout into the bucket when it
// changes.
type LayoutPublisher struct {
	nc       *nats.Conn
	replicas int
	log      *slog.Logger
	kv       jetstream.KeyValue
	last     payout.Hash32
}

// NewLayoutPublisher returns a publisher; the bucket is opened on first use.
func NewLayoutPublisher(nc *nats.Conn, replicas int, log *slog.Logger) *LayoutPublisher {
	return &LayoutPublisher{nc: nc, replicas: replicas, log: log}
}

// Publish puts l unless it is the layout published last. The front-ends build their
// coinbases from it from then on; the layout's window parameters must be stored
// before (payout.Service.Layout only returns stored ones).
func (p *LayoutPublisher) Publish(ctx context.Context, l payout.Layout) error {
	if l.Commitment == p.last && p.kv != nil {
		return nil
	}
	if p.kv == nil {
		kv, err := bucket(ctx, p.nc, p.replicas)
		if err != nil {
			return err
		}
		p.kv = kv
	}
	if err := put(ctx, p.kv, layoutKey, l); err != nil {
		return err
	}
	p.last = l.Commitment
	p.log.Debug("payout layout published", "commitment", l.Commitment.String(), "weights", len(l.Weights))
	return nil
}

// Layout is the latest published layout, followed with a watcher.
type Layout struct {
	mu  sync.Mutex
	cur *payout.Layout
}

// FollowLayout follows the published layout until ctx ends.
func FollowLayout(ctx context.Context, nc *nats.Conn, replicas int, log *slog.Logger) (*Layout, error) {
	kv, err := bucket(ctx, nc, replicas)
	if err != nil {
		return nil, err
	}
	w, err := kv.Watch(ctx, layoutKey)
	if err != nil {
		return nil, err
	}
	l := &Layout{}
	go func() {
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil || e.Operation() != jetstream.KeyValuePut {
					continue
				}
				var v payout.Layout
				if err := json.Unmarshal(e.Value(), &v); err != nil {
					log.Error("payout layout unreadable; keeping the last one", "err", err)
					continue
				}
				l.mu.Lock()
				l.cur = &v
				l.mu.Unlock()
			}
		}
	}()
	return l, nil
}

// Current returns the latest layout; false before the first.
func (l *Layout) Current() (payout.Layout, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil {
		return payout.Layout{}, false
	}
	return *l.cur, true
}
