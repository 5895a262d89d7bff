//go:build linux

package stratum

import (
	"fmt"
	"sync"
	"syscall"
	"unsafe"
)

// poller watches idle connections for input with one epoll instance, so that a
// connection waiting for its miner's next line holds no goroutine and no stack: the
// memory an idle connection costs is its state alone. Each connection is registered
// one-shot: after an event it stays disarmed while a handler goroutine reads and
// handles its input, which keeps a connection's lines in order, and is re-armed after.
// Writes still go through the net.Conn, so a slow reader is bounded by WriteTimeout as
// before.
type poller struct {
	epfd int
	wake [2]int // a pipe whose read end wakes the loop for shutdown

	mu    sync.Mutex
	conns map[uint64]*Conn // by token, the epoll event's data
	next  uint64
}

const (
	wakeToken  = 0
	pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT
	pollBatch  = 256 // events taken by one epoll_wait
)

func newPoller() (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("stratum: epoll_create1: %w", err)
	}
	p := &poller{epfd: epfd, conns: make(map[uint64]*Conn), next: wakeToken}
	if err := syscall.Pipe2(p.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("stratum: pipe2: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
	setToken(&ev, wakeToken)
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.close()
		return nil, fmt.Errorf("stratum: epoll_ctl: %w", err)
	}
	return p, nil
}

func setToken(ev *syscall.EpollEvent, tok uint64) {
	ev.Fd, ev.Pad = int32(uint32(tok)), int32(uint32(tok>>32))
}

func token(ev *syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// register gives c its token; arm then adds it to the epoll set.
func (p *poller) register(c *Conn) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	p.conns[p.next] = c
	return p.next
}

// arm adds a registered connection to the epoll set, armed.
func (p *poller) arm(c *Conn) error { return p.ctl(c, syscall.EPOLL_CTL_ADD) }

// ctl adds or re-arms c's registration. The descriptor is used inside Control, which
// keeps it open (and its number from being reused) for the call.
func (p *poller) ctl(c *Conn, op int) error {
	var cerr error
	err := c.raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: pollEvents}
		setToken(&ev, c.token)
		cerr = syscall.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	return cerr
}

// rearm asks for c's next input.
func (p *poller) rearm(c *Conn) error { return p.ctl(c, syscall.EPOLL_CTL_MOD) }

// remove forgets c; its descriptor leaves the epoll set when it is closed.
func (p *poller) remove(c *Conn) {
	p.mu.Lock()
	delete(p.conns, c.token)
	p.mu.Unlock()
}

// run waits for events until stop, handing each readable connection to dispatch.
func (p *poller) run(dispatch func(*Conn)) {
	events := make([]syscall.EpollEvent, pollBatch)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		for i := range events[:n] {
			tok := token(&events[i])
			if tok == wakeToken {
				return
			}
			p.mu.Lock()
			c := p.conns[tok]
			p.mu.Unlock()
			if c != nil && c.state.CompareAndSwap(connArmed, connBusy) {
				dispatch(c)
			}
		}
	}
}

// stop ends run; close releases the descriptors once run has returned.
func (p *poller) stop() { syscall.Write(p.wake[1], []byte{0}) }

func (p *poller) close() {
	syscall.Close(p.wake[0])
	syscall.Close(p.wake[1])
	syscall.Close(p.epfd)
}

// rawWrite is write(2) as a raw system call: the scheduler is not told, which suits a
// descriptor that does not block (see Server.Broadcast).
func rawWrite(fd uintptr, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
