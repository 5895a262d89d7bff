package stratum

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// handleLine processes one request; false means drop the peer.
func (c *Conn) handleLine(line []byte) bool {
	s := c.srv
	if ah, ok := s.handler.(AsyncHandler); ok {
		if id, sub, ok := parseSubmitFast(line); ok {
			return c.submitParsed(id, &sub, nil, ah)
		}
	}
	m, err := ParseMessage(line)
	if err != nil || !m.IsRequest() {
		if err == nil {
			// A response from the miner (to client.get_version, say): ignore it.
			return true
		}
		if !c.badLine() {
			return false
		}
		id := json.RawMessage("null")
		if m != nil {
			id = m.ID
		}
		c.writeLine(AppendResponse(nil, id, nil, &Error{ErrCodeOther, "malformed request"}))
		return true
	}
	switch m.Method {
	case "mining.submit":
		return c.handleSubmit(m)
	case "mining.subscribe":
		return c.handleSubscribe(m)
	case "mining.authorize":
		return c.handleAuthorize(m)
	case "mining.configure":
		return c.handleConfigure(m)
	case "mining.suggest_difficulty":
		p, err := m.StringParams(4)
		if err != nil || len(p) < 1 {
			return c.replyErr(m, ErrCodeOther, "bad params")
		}
		d, err := strconv.ParseFloat(p[0], 64)
		if err != nil || !(d > 0) || math.IsInf(d, 0) {
			return c.replyErr(m, ErrCodeOther, "difficulty must be a positive number")
		}
		c.suggested = d
		if c.authorized.Load() {
			s.handler.SuggestDifficulty(c, d)
		}
		return c.reply(m, []byte("true"))
	case "mining.extranonce.subscribe":
		// Refused unless Config.ExtranonceSubscribe: the server never sends
		// mining.set_extranonce itself. A connection's extranonce1 (its session id) is
		// fixed at subscribe; a handler that announces another one for its jobs checks
		// their shares against it.
		if !s.cfg.ExtranonceSubscribe {
			return c.reply(m, []byte("false"))
		}
		c.enSub.Store(true)
		return c.reply(m, []byte("true"))
	case "mining.multi_version", "mining.get_transactions", "mining.capabilities":
		return c.replyErr(m, ErrCodeOther, "not supported")
	default:
		// Answered, and counted like a malformed line: the count drains over
		// StrikeWindow, so a miner that now and then tries an extension this server
		// does not know is never dropped for it.
		if !c.badLine() {
			return false
		}
		return c.replyErr(m, ErrCodeOther, "unknown method")
	}
}

func (c *Conn) reply(m *Message, result []byte) bool {
	if len(m.ID) == 0 || string(m.ID) == "null" {
		return true // a notification needs no answer
	}
	return c.writeLine(AppendResponse(nil, m.ID, result, nil)) == nil
}

func (c *Conn) replyErr(m *Message, code int, msg string) bool {
	return c.writeLine(AppendResponse(nil, m.ID, nil, &Error{code, msg})) == nil
}

// maxAgentLen bounds the stored user agent.
const maxAgentLen = 128

func (c *Conn) handleSubscribe(m *Message) bool {
	s := c.srv
	p, err := m.StringParams(4)
	if err != nil {
		return c.replyErr(m, ErrCodeOther, "bad params")
	}
	resume := ""
	if len(p) > 0 {
		c.agent = p[0]
		if len(c.agent) > maxAgentLen {
			c.agent = c.agent[:maxAgentLen]
		}
	}
	if len(p) > 1 {
		resume = strings.ToLower(p[1])
	}
	if !c.subscribed {
		en1, err := s.allocExtranonce1(c, resume)
		if err != nil {
			// Refused and dropped: the miner's fail-over takes it to another
			// front-end, which has room.
			s.log.Warn("subscribe refused", "remote", c.remote, "err", err)
			s.drop("extranonce1_exhausted")
			c.replyErr(m, ErrCodeOther, "no extranonce1 free on this server: try another")
			return false
		}
		c.en1 = en1
		c.subscribed = true
	}
	sid := fmt.Sprintf("%08x", c.en1)
	res := fmt.Appendf(nil, `[[["mining.set_difficulty","%s"],["mining.notify","%s"]],"%s",%d]`, sid, sid, sid, s.cfg.Extranonce2Size)
	if !c.reply(m, res) {
		return false
	}
	if len(c.users) > 0 && !c.authorized.Load() {
		c.authorized.Store(true)
		s.handler.Authorized(c)
	}
	return true
}

func (c *Conn) handleAuthorize(m *Message) bool {
	s := c.srv
	p, err := m.StringParams(4)
	if err != nil || len(p) < 1 {
		return c.replyErr(m, ErrCodeOther, "bad params")
	}
	pass := ""
	if len(p) > 1 {
		pass = p[1]
	}
	if len(c.users) >= s.lim.MaxWorkersPerConn {
		return c.replyErr(m, ErrCodeOther, "too many workers on one connection")
	}
	if err := s.handler.Authorize(c, p[0], pass); err != nil {
		msg := err.Error()
		var se *Error
		if errors.As(err, &se) {
			msg = se.Message
		}
		return c.writeLine(AppendResponse(nil, m.ID, []byte("false"), &Error{ErrCodeUnauthorized, msg})) == nil
	}
	known := false
	for _, u := range c.users {
		known = known || u == p[0]
	}
	if !known {
		c.users = append(c.users, p[0])
	}
	if !c.reply(m, []byte("true")) {
		return false
	}
	if c.subscribed && !c.authorized.Load() {
		c.authorized.Store(true)
		s.handler.Authorized(c)
	}
	return true
}

func (c *Conn) handleConfigure(m *Message) bool {
	var params []json.RawMessage
	if err := json.Unmarshal(m.Params, &params); err != nil || len(params) < 1 {
		return c.replyErr(m, ErrCodeOther, "bad params")
	}
	var exts []string
	if err := json.Unmarshal(params[0], &exts); err != nil || len(exts) > 16 {
		return c.replyErr(m, ErrCodeOther, "bad extension list")
	}
	opts := map[string]json.RawMessage{}
	if len(params) > 1 {
		if err := json.Unmarshal(params[1], &opts); err != nil {
			return c.replyErr(m, ErrCodeOther, "bad extension parameters")
		}
	}
	res := map[string]any{}
	for _, ext := range exts {
		switch ext {
		case "version-rolling":
			minerMask := uint32(0xffffffff)
			if raw, ok := opts["version-rolling.mask"]; ok {
				var hexMask string
				if json.Unmarshal(raw, &hexMask) != nil {
					return c.replyErr(m, ErrCodeOther, "bad version-rolling.mask")
				}
				v, err := strconv.ParseUint(hexMask, 16, 32)
				if err != nil {
					return c.replyErr(m, ErrCodeOther, "bad version-rolling.mask")
				}
				minerMask = uint32(v)
			}
			minBits := 0
			if raw, ok := opts["version-rolling.min-bit-count"]; ok {
				json.Unmarshal(raw, &minBits)
			}
			mask := c.srv.cfg.VersionMask & minerMask
			if bits.OnesCount32(mask) < minBits {
				res["version-rolling"] = false
				continue
			}
			c.version = mask
			res["version-rolling"] = true
			res["version-rolling.mask"] = fmt.Sprintf("%08x", mask)
		case "minimum-difficulty":
			var v float64
			if raw, ok := opts["minimum-difficulty.value"]; ok && json.Unmarshal(raw, &v) == nil && v > 0 && !math.IsInf(v, 0) {
				c.minDiff = v
				res["minimum-difficulty"] = true
			} else {
				res["minimum-difficulty"] = false
			}
		case "subscribe-extranonce":
			res["subscribe-extranonce"] = c.srv.cfg.ExtranonceSubscribe // see mining.extranonce.subscribe
			if c.srv.cfg.ExtranonceSubscribe {
				c.enSub.Store(true)
			}
		case "info":
			res["info"] = true
		default:
			res[ext] = false
		}
	}
	b, _ := json.Marshal(res)
	return c.reply(m, b)
}

type pendingReply struct {
	id   json.RawMessage
	err  *Error
	done bool
}

func (c *Conn) handleSubmit(m *Message) bool {
	s := c.srv
	if ah, ok := s.handler.(AsyncHandler); ok {
		return c.handleSubmitAsync(m, ah)
	}
	sub, err := ParseSubmit(m)
	if err != nil {
		return c.strike(m, &Error{ErrCodeOther, "bad submit params"})
	}
	if !c.subscribed {
		return c.strike(m, &Error{ErrCodeNotSubscribed, "not subscribed"})
	}
	if !c.authorized.Load() || !c.hasUser(sub.Worker) {
		return c.strike(m, &Error{ErrCodeUnauthorized, "unauthorized worker"})
	}
	if e := s.handler.Submit(c, sub); e != nil {
		return c.strike(m, e)
	}
	c.verdict(nil)
	return c.writeLine(AppendResponse(nil, m.ID, []byte("true"), nil)) == nil
}

func (c *Conn) hasUser(u string) bool {
	for _, x := range c.users {
		if x == u {
			return true
		}
	}
	return false
}

// handleSubmitAsync queues the reply slot, hands the share to the handler and goes
// back to reading; complete writes replies as the head of the queue resolves.
func (c *Conn) handleSubmitAsync(m *Message, ah AsyncHandler) bool {
	sub, err := ParseSubmit(m)
	return c.submitParsed(m.ID, sub, err, ah)
}

func (c *Conn) submitParsed(id json.RawMessage, sub *Submit, err error, ah AsyncHandler) bool {
	s := c.srv
	var early *Error
	switch {
	case err != nil:
		early = &Error{ErrCodeOther, "bad submit params"}
	case !c.subscribed:
		early = &Error{ErrCodeNotSubscribed, "not subscribed"}
	case !c.authorized.Load() || !c.hasUser(sub.Worker):
		early = &Error{ErrCodeUnauthorized, "unauthorized worker"}
	}
	if c.sem == nil {
		c.sem = make(chan struct{}, s.lim.MaxPendingSubmits)
	}
	c.sem <- struct{}{} // wait while MaxPendingSubmits are unanswered
	r := &pendingReply{id: id}
	c.pmu.Lock()
	c.pending = append(c.pending, r)
	c.pmu.Unlock()
	if early != nil {
		return c.complete(r, early)
	}
	ah.SubmitAsync(c, sub, func(e *Error) { c.complete(r, e) })
	return !c.closed.Load()
}
