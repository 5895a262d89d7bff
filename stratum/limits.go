package stratum

import (
	"time"
)

// Limits bounds what one peer can make the server hold or do. Zero values take the
// defaults from DefaultLimits.
type Limits struct {
	MaxLineBytes      int           // longest accepted line; a longer one drops the peer
	MaxConns          int           // connections in all
	MaxConnsPerIP     int           // connections from one IP address
	HandshakeTimeout  time.Duration // time to subscribe and authorize after connecting
	IdleTimeout       time.Duration // longest silence from an authorized peer
	WriteTimeout      time.Duration // longest a write to a peer may block
	MaxBadLines       int           // malformed lines and unknown methods one connection may hold; past it, it is dropped
	MaxStrikes        int           // invalid submits (not low-difficulty, not stale) one connection may hold; past it, it is dropped
	StrikeWindow      time.Duration // a full count of bad lines or strikes drains away over this time
	RejectOnlyTimeout time.Duration // a connection whose shares have all been rejected for this long is dropped
	// MaxAbuseDropsPerIP is how many connections of one IP may be dropped for abuse
	// (strikes, bad lines, over-long lines) in AbuseWindow; one more bans the IP.
	MaxAbuseDropsPerIP int
	AbuseWindow        time.Duration // window over which abuse drops are counted
	BanDuration        time.Duration // how long a banned IP's new connections are refused
	MaxWorkersPerConn  int           // distinct mining.authorize users on one connection
	ResumeSessions     int           // recently closed sessions remembered for resume
	MaxPendingSubmits  int           // submits awaiting their answer on one connection; more wait
}

// DefaultLimits are sized for a public pool: enough room for a farm behind one NAT
// address, little for an abusive peer.
var DefaultLimits = Limits{
	MaxLineBytes:     4096,
	MaxConns:         100_000,
	MaxConnsPerIP:    2048,
	HandshakeTimeout: 60 * time.Second,
	IdleTimeout:      15 * time.Minute,
	WriteTimeout:     10 * time.Second,
	MaxBadLines:      10,
	MaxStrikes:       200,
	StrikeWindow:     time.Minute,
	// ckpool warns after 60 s of nothing but rejected shares and drops after 180 s.
	RejectOnlyTimeout:  3 * time.Minute,
	MaxAbuseDropsPerIP: 32,
	AbuseWindow:        time.Minute,
	BanDuration:        10 * time.Minute,
	MaxWorkersPerConn:  64,
	ResumeSessions:     100_000,
	MaxPendingSubmits:  64,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setD := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	set(&l.MaxLineBytes, d.MaxLineBytes)
	set(&l.MaxConns, d.MaxConns)
	set(&l.MaxConnsPerIP, d.MaxConnsPerIP)
	setD(&l.HandshakeTimeout, d.HandshakeTimeout)
	setD(&l.IdleTimeout, d.IdleTimeout)
	setD(&l.WriteTimeout, d.WriteTimeout)
	set(&l.MaxBadLines, d.MaxBadLines)
	set(&l.MaxStrikes, d.MaxStrikes)
	setD(&l.StrikeWindow, d.StrikeWindow)
	setD(&l.RejectOnlyTimeout, d.RejectOnlyTimeout)
	set(&l.MaxAbuseDropsPerIP, d.MaxAbuseDropsPerIP)
	setD(&l.AbuseWindow, d.AbuseWindow)
	setD(&l.BanDuration, d.BanDuration)
	set(&l.MaxWorkersPerConn, d.MaxWorkersPerConn)
	set(&l.ResumeSessions, d.ResumeSessions)
	set(&l.MaxPendingSubmits, d.MaxPendingSubmits)
	return l
}
