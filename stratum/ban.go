package stratum

import (
	"time"
)

// Strikes, drops and bans.
//
// A farm may put thousands of devices behind one address, so what one device does is
// held against its own connection, never against the address: a connection collects
// strikes for protocol errors (malformed lines, unknown methods, submits that are not
// shares at all or repeat one) in leaky counters that drain over StrikeWindow, and is
// dropped alone when one overflows. Low-difficulty and stale shares are not strikes: a
// miner whose difficulty was just raised, or whose job a new block made stale, sends
// them honestly for a moment. A connection that sends nothing but rejected shares for
// RejectOnlyTimeout is dropped alone too, as ckpool does after 180 s.
//
// An address is banned only for what no honest farm does: MaxAbuseDropsPerIP of its
// connections dropped for protocol abuse (strikes, malformed lines, over-long lines)
// within AbuseWindow, that is, a client that reconnects to flood again. The ban refuses
// new connections for BanDuration; the address's other connections stay, each still
// held to its own limits. An operator's ban (Ban) also closes them.

// leaky counts events that drain away at a steady rate: limit events fill it and a
// full one empties over window. Its level is debt in nanoseconds, so that the drain
// needs no division per event.
type leaky struct {
	level int64 // nanoseconds of debt
	at    int64 // UnixNano of the last update
}

// add counts one event at now and reports whether more than limit are held.
func (b *leaky) add(now time.Time, limit int, window time.Duration) bool {
	per := max(int64(window)/int64(max(limit, 1)), 1)
	t := now.UnixNano()
	if b.at != 0 {
		b.level = max(b.level-(t-b.at), 0)
	}
	b.at = t
	b.level += per
	return b.level > per*int64(limit)
}

// drained reports whether nothing is held at now.
func (b *leaky) drained(now time.Time) bool { return b.level <= now.UnixNano()-b.at }

// abuseMapPrune is the size of the per-address abuse map at which drained entries are
// removed, so that many addresses each dropped once cannot grow it without bound.
const abuseMapPrune = 4096

// Ban refuses new connections from ip for d and closes its current ones. It is the
// operator's ban; the server's own (abuseDrop) leaves current connections open.
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

// abuseDrop reports that c is being dropped for protocol abuse (reason as OnDrop gets
// it) and bans c's address when its connections were dropped so more than
// MaxAbuseDropsPerIP times in AbuseWindow.
func (s *Server) abuseDrop(c *Conn, reason string) {
	s.drop(reason)
	now := s.cfg.Now()
	s.mu.Lock()
	if len(s.abuse) >= abuseMapPrune {
		for ip, b := range s.abuse {
			if b.drained(now) {
				delete(s.abuse, ip)
			}
		}
		for ip, until := range s.bans {
			if !now.Before(until) {
				delete(s.bans, ip)
			}
		}
	}
	b := s.abuse[c.ip]
	if b == nil {
		b = &leaky{}
		s.abuse[c.ip] = b
	}
	ban := b.add(now, s.lim.MaxAbuseDropsPerIP, s.lim.AbuseWindow)
	if ban {
		s.bans[c.ip] = now.Add(s.lim.BanDuration)
		delete(s.abuse, c.ip)
	}
	s.mu.Unlock()
	if ban {
		s.log.Warn("banning address: its connections keep being dropped for abuse", "ip", c.ip,
			"drops", s.lim.MaxAbuseDropsPerIP+1, "window", s.lim.AbuseWindow, "for", s.lim.BanDuration, "last", reason)
		s.drop("abuse_ban")
	}
}

// badLine counts a malformed line or unknown method against c; false means c is
// dropped for them.
func (c *Conn) badLine() bool {
	s := c.srv
	if c.badLines.add(s.cfg.Now(), s.lim.MaxBadLines, s.lim.StrikeWindow) {
		s.log.Debug("dropping peer for malformed lines", "remote", c.remote)
		s.abuseDrop(c, "bad_lines")
		return false
	}
	return true
}

// strike answers with e and counts it against the connection; false means it was
// dropped.
func (c *Conn) strike(m *Message, e *Error) bool {
	if !c.verdict(e) {
		return false
	}
	return c.writeLine(AppendResponse(nil, m.ID, nil, e)) == nil
}

// verdict counts a submit's answer (nil: accepted) against the connection: a strike
// for what no honest miner sends, and the time it has sent nothing but rejected shares.
// False means the connection is dropped.
func (c *Conn) verdict(e *Error) bool {
	s := c.srv
	now := s.cfg.Now()
	c.pmu.Lock()
	if e == nil {
		c.rejectsSince = 0
		c.pmu.Unlock()
		return true
	}
	if c.rejectsSince == 0 {
		c.rejectsSince = now.UnixNano()
	}
	rejectsOnly := now.UnixNano()-c.rejectsSince > int64(s.lim.RejectOnlyTimeout)
	over := isStrike(e.Code) && c.strikes.add(now, s.lim.MaxStrikes, s.lim.StrikeWindow)
	c.pmu.Unlock()
	switch {
	case over:
		s.log.Info("dropping peer for invalid submits", "remote", c.remote, "last", e.Message)
		s.abuseDrop(c, "strikes")
	case rejectsOnly:
		s.log.Info("dropping peer that sends only rejected shares", "remote", c.remote,
			"for", s.lim.RejectOnlyTimeout, "last", e.Message)
		s.drop("rejects_only")
	default:
		return true
	}
	c.Close()
	return false
}

// isStrike reports whether a submit rejected with code counts as a strike. Stale and
// low-difficulty shares are what honest miners send around a new block or a raised
// difficulty; the rest (malformed fields, duplicates, submits before subscribing or
// for a worker never authorized) are not.
func isStrike(code int) bool {
	return code != ErrCodeJobNotFound && code != ErrCodeLowDifficulty
}
