package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hashgrid/hashgrid/pool"
)

const statsKey = "frontend."

// frontEndStats is one front-end's published status.
type frontEndStats struct {
	FrontEnd string     `json:"frontend"`
	At       time.Time  `json:"at"`
	Stats    pool.Stats `json:"stats"`
}

// PublishStats puts stats() under the front-end's key every StatsInterval until ctx
// ends, and deletes the key when it does (a front-end stopped cleanly is gone at once;
// a killed one is ignored after StatsStale).
func PublishStats(ctx context.Context, nc *nats.Conn, replicas int, frontEnd string, stats func() pool.Stats, log *slog.Logger) error {
	kv, err := bucket(ctx, nc, replicas)
	if err != nil {
		return err
	}
	key := statsKey + frontEnd
	t := time.NewTicker(StatsInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, StatsInterval)
		err := put(pctx, kv, key, frontEndStats{FrontEnd: frontEnd, At: time.Now().UTC(), Stats: stats()})
		cancel()
		if err != nil && ctx.Err() == nil {
			log.Warn("publish front-end status", "err", err)
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			kv.Delete(dctx, key)
			cancel()
			return nil
		case <-t.C:
		}
	}
}

// Stats is the pool's status summed over its live front-ends, for the API
// (api.PoolStats). It follows the bucket with a watcher.
type Stats struct {
	mu  sync.Mutex
	fes map[string]frontEndStats
	now func() time.Time
}

// WatchStats follows the front-ends' status until ctx ends.
func WatchStats(ctx context.Context, nc *nats.Conn, replicas int, log *slog.Logger) (*Stats, error) {
	kv, err := bucket(ctx, nc, replicas)
	if err != nil {
		return nil, err
	}
	w, err := kv.Watch(ctx, statsKey+"*")
	if err != nil {
		return nil, err
	}
	s := &Stats{fes: map[string]frontEndStats{}, now: time.Now}
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
				if e == nil { // the initial values are in
					continue
				}
				s.update(e, log)
			}
		}
	}()
	return s, nil
}

func (s *Stats) update(e jetstream.KeyValueEntry, log *slog.Logger) {
	fe := strings.TrimPrefix(e.Key(), statsKey)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(s.fes, fe)
		return
	}
	var st frontEndStats
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		log.Warn("front-end status unreadable", "frontend", fe, "err", err)
		return
	}
	s.fes[fe] = st
}

// FrontEnds returns the names of the live front-ends, in no order.
func (s *Stats) FrontEnds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for fe, st := range s.fes {
		if s.now().Sub(st.At) <= StatsStale {
			out = append(out, fe)
		}
	}
	return out
}

// Stats implements api.PoolStats: counts summed over the live front-ends; the chain
// fields (height, difficulty, last template) from the one with the newest template.
func (s *Stats) Stats() pool.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum pool.Stats
	for _, st := range s.fes {
		if s.now().Sub(st.At) > StatsStale {
			continue
		}
		x := st.Stats
		sum.Connections += x.Connections
		sum.Authorized += x.Authorized
		sum.BlocksFound += x.BlocksFound
		sum.SharesAccepted += x.SharesAccepted
		sum.SharesRejected += x.SharesRejected
		sum.LastBroadcast = max(sum.LastBroadcast, x.LastBroadcast)
		if x.LastTemplate.After(sum.LastTemplate) {
			sum.Height, sum.NetworkDiff, sum.PrevHash, sum.LastTemplate = x.Height, x.NetworkDiff, x.PrevHash, x.LastTemplate
		}
	}
	return sum
}
