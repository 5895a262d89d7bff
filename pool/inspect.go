package pool

import (
	"fmt"
	"sort"
	"time"

	"github.com/hashgrid/hashgrid/stratum"
)

// SessionInfo describes one authorized miner connection, for the dashboard and the
// admin API. It carries no password: the pool never keeps one.
type SessionInfo struct {
	ID          string // extranonce1 as 8 hex digits: unique among open connections
	IP          string
	UserAgent   string
	Address     string   // payout address
	Workers     []string // worker names (the part after the dot; "" for none), sorted
	Difficulty  float64  // difficulty that applies from the next job
	Fixed       bool     // difficulty set by the miner (d=) rather than vardiff
	ConnectedAt time.Time
}

// Sessions returns a snapshot of the authorized connections, ordered by address, then
// connection time. It is safe to call from any goroutine.
func (p *Pool) Sessions() []SessionInfo {
	var out []SessionInfo
	for _, c := range p.srv.Conns() {
		// Data and the handshake fields are written by the connection's goroutine and
		// only safe to read once it is authorized.
		if !c.Authorized() {
			continue
		}
		s, ok := c.Data.(*session)
		if !ok {
			continue
		}
		si := SessionInfo{ID: sessionID(c), IP: c.IP(), UserAgent: c.UserAgent(), ConnectedAt: c.ConnectedAt()}
		s.mu.Lock()
		si.Address, si.Difficulty, si.Fixed = s.address, s.diff.Float(), s.fixed
		for _, uw := range s.workers {
			si.Workers = append(si.Workers, uw.worker)
		}
		s.mu.Unlock()
		sort.Strings(si.Workers)
		out = append(out, si)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Address != out[j].Address {
			return out[i].Address < out[j].Address
		}
		if !out[i].ConnectedAt.Equal(out[j].ConnectedAt) {
			return out[i].ConnectedAt.Before(out[j].ConnectedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Kick closes the connection whose SessionInfo.ID is id and reports whether one was
// open. The miner may reconnect; use Server().Ban to keep it out.
func (p *Pool) Kick(id string) bool {
	for _, c := range p.srv.Conns() {
		if c.Authorized() && sessionID(c) == id {
			c.Close()
			return true
		}
	}
	return false
}

// TemplateInfo summarises the block template being mined: its transaction count,
// their total weight and the coinbase value in satoshis. All are 0 before the first
// template.
func (p *Pool) TemplateInfo() (txs int, weight int64, reward int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tmpl == nil {
		return 0, 0, 0
	}
	for i := range p.tmpl.Transactions {
		weight += p.tmpl.Transactions[i].Weight
	}
	return len(p.tmpl.Transactions), weight, p.tmpl.CoinbaseValue
}

func sessionID(c *stratum.Conn) string { return fmt.Sprintf("%08x", c.Extranonce1()) }
