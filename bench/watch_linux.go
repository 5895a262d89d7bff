//go:build linux

package bench

import (
	"bytes"
	"fmt"
	"runtime"
	"syscall"
	"time"
)

// watch reads every connection over epoll until stop is closed, calling clean(i, t)
// when connection i receives a clean notify at t (UnixNano). A reader per core, each
// with its share of the connections, costs the machine far less than a goroutine per
// connection, which matters when the pool under test shares the machine's cores.
func watch(conns []*conn, stop <-chan struct{}, clean func(i int, t int64)) error {
	readers := min(runtime.GOMAXPROCS(0), len(conns))
	errs := make(chan error, readers)
	for r := range readers {
		go func() {
			errs <- watchSome(conns, r, readers, stop, clean)
		}()
	}
	var first error
	for range readers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// watchSome is one reader of watch: connections r, r+step, r+2·step, ...
func watchSome(conns []*conn, r, step int, stop <-chan struct{}, clean func(i int, t int64)) error {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("bench: epoll_create1: %w", err)
	}
	defer syscall.Close(epfd)
	carry := make([][]byte, len(conns)) // an incomplete line, per connection
	lines := func(i int, data []byte) {
		if len(carry[i]) > 0 {
			data = append(carry[i], data...)
			carry[i] = nil
		}
		for {
			j := bytes.IndexByte(data, '\n')
			if j < 0 {
				break
			}
			if isCleanNotify(data[:j]) {
				clean(i, time.Now().UnixNano())
			}
			data = data[j+1:]
		}
		if len(data) > 0 {
			carry[i] = append([]byte(nil), data...)
		}
	}
	for i := r; i < len(conns); i += step {
		c := conns[i]
		// What the handshake's reader holds already comes first.
		if n := c.br.Buffered(); n > 0 {
			b, _ := c.br.Peek(n)
			lines(i, b)
		}
		sc, ok := c.nc.(syscall.Conn)
		if !ok {
			return fmt.Errorf("bench: connection has no descriptor")
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return err
		}
		c.raw = raw
		var cerr error
		if err := raw.Control(func(fd uintptr) {
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(i)}
			cerr = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		}); err != nil {
			return err
		}
		if cerr != nil {
			return fmt.Errorf("bench: epoll_ctl: %w", cerr)
		}
	}
	events := make([]syscall.EpollEvent, 512)
	buf := make([]byte, 64<<10)
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		n, err := syscall.EpollWait(epfd, events, 50)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return fmt.Errorf("bench: epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			i := int(ev.Fd)
			c := conns[i]
			var nr int
			var rerr error
			c.raw.Read(func(fd uintptr) bool {
				nr, rerr = syscall.Read(int(fd), buf)
				return true
			})
			switch {
			case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
			case rerr != nil || nr == 0:
				// Closed or failed: stop watching it.
				c.raw.Control(func(fd uintptr) {
					syscall.EpollCtl(epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
				})
			default:
				lines(i, buf[:nr])
			}
		}
	}
}
