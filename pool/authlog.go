package pool

import (
	"sync"
	"time"

	"github.com/hashgrid/hashgrid/stratum"
)

// Refused authorizations are logged, so that an operator sees a miner configured with
// a wrong address instead of a miner that silently never shows up. Anyone can send
// mining.authorize, so the lines are rate-limited: at most refusalLogBurst a
// refusalLogWindow, then one line saying how many were left out.
const (
	refusalLogBurst  = 10
	refusalLogWindow = time.Minute
	maxLoggedUser    = 100 // bytes of the user name a log line shows
)

// refusalLog limits the log lines of refused authorizations.
type refusalLog struct {
	mu         sync.Mutex
	start      time.Time // of the current window
	logged     int       // lines in the current window
	suppressed int       // refusals not logged since the last line
}

// Authorize checks a mining.authorize (see authorize) and logs a refusal.
func (p *Pool) Authorize(c *stratum.Conn, user, password string) error {
	err := p.authorize(c, user, password)
	if err != nil {
		p.refusals.log(p, c, user, err)
	}
	return err
}

func (r *refusalLog) log(p *Pool, c *stratum.Conn, user string, err error) {
	now := p.cfg.Now()
	r.mu.Lock()
	if now.Sub(r.start) >= refusalLogWindow {
		r.start, r.logged = now, 0
	}
	if r.logged >= refusalLogBurst {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	r.logged++
	left := r.suppressed
	r.suppressed = 0
	r.mu.Unlock()
	if len(user) > maxLoggedUser {
		user = user[:maxLoggedUser] + "…"
	}
	args := []any{"remote", c.RemoteAddr(), "user", user, "reason", err.Error()}
	if left > 0 {
		args = append(args, "not_logged_before", left)
	}
	p.log.Warn("authorization refused", args...)
}
