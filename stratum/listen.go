package stratum

import (
	"net"
	"syscall"
)

// Ports of their own. A pool may listen on several ports, each with its own start
// difficulty (one for small miners, one for farms), and on TLS ports. Serve takes any
// net.Listener: a TLS listener (crypto/tls) hands it *tls.Conn values, which have no
// descriptor to poll, so each such connection is read by a goroutine of its own (see
// Conn.serve) while plain TCP connections wait in the poller. WithStartDifficulty
// marks a listener's connections with a start difficulty, keeping their descriptor.

// WithStartDifficulty returns l whose connections report d from
// Conn.PortStartDifficulty. d <= 0 returns l itself.
func WithStartDifficulty(l net.Listener, d float64) net.Listener {
	if !(d > 0) {
		return l
	}
	return &portListener{Listener: l, diff: d}
}

// PortStartDifficulty returns the start difficulty of the port the connection came
// in on, or 0 when its port names none (the handler's own default applies).
func (c *Conn) PortStartDifficulty() float64 {
	if p, ok := c.nc.(interface{ portStartDifficulty() float64 }); ok {
		return p.portStartDifficulty()
	}
	return 0
}

type portListener struct {
	net.Listener
	diff float64
}

func (l *portListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	pc := portConn{Conn: nc, diff: l.diff}
	if sc, ok := nc.(syscall.Conn); ok {
		// Keep the descriptor visible, so that the connection is still polled.
		return &portSysConn{portConn: pc, sc: sc}, nil
	}
	return &pc, nil
}

// portConn is a connection from a port with a start difficulty.
type portConn struct {
	net.Conn
	diff float64
}

func (c *portConn) portStartDifficulty() float64 { return c.diff }

// portSysConn is a portConn over a connection with a descriptor.
type portSysConn struct {
	portConn
	sc syscall.Conn
}

func (c *portSysConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }
