//go:build !linux

package stratum

import (
	"errors"
	"syscall"
)

// poller is Linux's epoll only; elsewhere each connection has a reading goroutine.
type poller struct{}

func newPoller() (*poller, error) { return nil, errors.New("stratum: no poller on this system") }

func (*poller) register(*Conn) uint64 { return 0 }
func (*poller) arm(*Conn) error       { return errors.New("stratum: no poller") }
func (*poller) rearm(*Conn) error     { return errors.New("stratum: no poller") }
func (*poller) remove(*Conn)          {}
func (*poller) run(func(*Conn))       {}
func (*poller) stop()                 {}
func (*poller) close()                {}

// rawWrite is an ordinary write elsewhere.
func rawWrite(fd uintptr, b []byte) (int, error) { return syscall.Write(int(fd), b) }
