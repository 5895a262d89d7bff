package compute

import (
	"sort"
	"time"
)

// LiveLease is a pending or running lease as everyone sees it: which provider, what it
// holds, at what price, and what it has metered so far; not the tenant, the order or
// the work.
type LiveLease struct {
	ID       string    `json:"id"`
	Provider string    `json:"provider"` // the provider's name
	Kind     string    `json:"kind"`     // "job", "check" or "service"
	Status   string    `json:"status"`
	Cores    int       `json:"cores"`
	Memory   uint64    `json:"memory"`
	Price    int64     `json:"price"`
	MemPrice int64     `json:"mem_price"`
	CPUMS    int64     `json:"cpu_ms"`
	WallMS   int64     `json:"wall_ms"`
	Charged  int64     `json:"charged"`
	Created  time.Time `json:"created"`
}

// MaxLiveLeases bounds GET /api/v1/compute/leases: the newest leases are listed.
const MaxLiveLeases = 500

// LiveLeases lists the pending and running leases, newest first (at most
// MaxLiveLeases): the operator's and the public's view of what the compute side of
// the market is running, beside the hashrate order book.
func (b *Book) LiveLeases() []LiveLease {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := []LiveLease{}
	for _, l := range b.leases {
		if terminal(l.status) {
			continue
		}
		out = append(out, LiveLease{ID: l.id, Provider: l.p.name, Kind: l.kind, Status: l.status, Cores: l.cores, Memory: l.memory,
			Price: l.price, MemPrice: l.memPrice, CPUMS: l.cpu / 1e6, WallMS: l.wall / 1e6, Charged: l.charged, Created: l.created})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	if len(out) > MaxLiveLeases {
		out = out[:MaxLiveLeases]
	}
	return out
}
