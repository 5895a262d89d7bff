package market

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// maxLimitedAddrs bounds the remote addresses a rate limiter remembers. When that many
// are tracked and none has a full bucket again, a new address is refused: under a
// flood from that many addresses the limiter fails closed rather than grow.
const maxLimitedAddrs = 65_536

// addrLimiter is a token bucket per remote address.
type addrLimiter struct {
	rate  float64 // tokens per second
	burst float64
	max   int
	now   func() time.Time

	mu sync.Mutex
	b  map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newAddrLimiter(perSecond float64, burst, max int, now func() time.Time) *addrLimiter {
	return &addrLimiter{rate: perSecond, burst: float64(burst), max: max, now: now, b: map[string]*bucket{}}
}

// allow takes a token from key's bucket, reporting false if it has none.
func (l *addrLimiter) allow(key string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b[key]
	if b == nil {
		if len(l.b) >= l.max {
			l.sweepLocked(now)
			if len(l.b) >= l.max {
				return false
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.b[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweepLocked forgets the addresses whose buckets have refilled: a new bucket is full.
func (l *addrLimiter) sweepLocked(now time.Time) {
	for k, b := range l.b {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.b, k)
		}
	}
}

// limitKey is the rate limit's key for a remote address: the IPv4 address, or the
// IPv6 /64 (one host usually holds a whole /64, so a per-address limit there would
// limit nothing).
func limitKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
