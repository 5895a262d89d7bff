package stratum

import (
	"time"
)

// Ban refuses new connections from ip for d and closes its current ones.
func (s *Server) Ban(ip string, d time.Duration) {
	s.mu.Lock()
	s.bans[ip] = s.cfg.Now().Add(d)
	var victims []*Conn
	for c := range s.conns {
		if c.ip == ip {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
}

// Banned reports whether ip is banned now.
func (s *Server) Banned(ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.bans[ip]
	return ok && s.cfg.Now().Before(until)
}

// strike answers with e and counts it against the peer; a peer over MaxStrikes in
// StrikeWindow is banned.
func (c *Conn) strike(m *Message, e *Error) bool {
	if !c.countStrike() {
		return false
	}
	return c.writeLine(AppendResponse(nil, m.ID, nil, e)) == nil
}

// countStrike counts one invalid share; false means the peer was banned.
func (c *Conn) countStrike() bool {
	s := c.srv
	now := s.cfg.Now()
	c.pmu.Lock()
	if now.Sub(c.strikeStart) > s.lim.StrikeWindow {
		c.strikeStart, c.strikes = now, 0
	}
	c.strikes++
	over := c.strikes > s.lim.MaxStrikes
	n := c.strikes
	c.pmu.Unlock()
	if over {
		s.log.Warn("banning peer for invalid shares", "ip", c.ip, "strikes", n)
		s.drop("strikes")
		s.Ban(c.ip, s.lim.BanDuration)
		return false
	}
	return true
}
