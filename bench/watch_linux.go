//go:build linux

package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// watch reads every connection over epoll until stop is closed, calling clean(i, t)
// when connection i receives a clean notify at t (UnixNano), and opt.registered once
// every connection is watched. A reader per core, each
// with its share of the connections, costs the machine far less than a goroutine per
// connection, which matters when the pool under test shares the machine's cores.
//
// Each watched socket leaves Go's network poller: watch keeps a duplicate of its
// descriptor and closes the net.Conn, so a line arriving wakes no runtime poller (on a
// two-core machine shared with the pool, that wakeup per notify is work the client
// takes from the pool while it is being measured).
func watch(conns []*conn, opt watchOptions, stop <-chan struct{}, clean func(i int, t int64)) error {
	readers := min(runtime.GOMAXPROCS(0), len(conns))
	errs := make(chan error, readers)
	var reg sync.WaitGroup
	reg.Add(readers)
	for r := range readers {
		go func() {
			errs <- watchSome(conns, r, readers, opt, stop, clean, reg.Done)
		}()
	}
	go func() {
		reg.Wait()
		if opt.registered != nil {
			opt.registered()
		}
	}()
	var first error
	for range readers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// detach returns a duplicate of c's descriptor and closes c's net.Conn, which takes
// the socket out of Go's poller; the socket stays open through the duplicate, in the
// non-blocking mode Go set on it.
func detach(c *conn) (int, error) {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("bench: connection has no descriptor")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(s uintptr) {
		var r uintptr
		var e syscall.Errno
		r, _, e = syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		fd = int(r)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("bench: dup: %w", derr)
	}
	c.nc.Close()
	return fd, nil
}

// watchSome is one reader of watch: connections r, r+step, r+2·step, ...
// It calls registered once its connections are in its epoll set (or it failed).
func watchSome(conns []*conn, r, step int, opt watchOptions, stop <-chan struct{}, clean func(i int, t int64), registered func()) error {
	var once sync.Once
	defer once.Do(registered)
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("bench: epoll_create1: %w", err)
	}
	defer syscall.Close(epfd)
	fds := make([]int, len(conns)) // the detached descriptors; -1 once closed
	for i := range fds {
		fds[i] = -1
	}
	defer func() {
		for _, fd := range fds {
			if fd >= 0 {
				syscall.Close(fd)
			}
		}
	}()
	carry := make([][]byte, len(conns)) // an incomplete line, per connection
	lines := func(i int, data []byte, at int64) {
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
				t := at
				if t == 0 {
					// No kernel time (or not asked for): the reader's clock.
					t = time.Now().UnixNano()
					if opt.rxTimestamps && opt.unstamped != nil {
						opt.unstamped.Add(1)
					}
				}
				clean(i, t)
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
			lines(i, b, 0)
		}
		fd, err := detach(c)
		if err != nil {
			return err
		}
		fds[i] = fd
		if opt.rxTimestamps {
			if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
				return fmt.Errorf("bench: SO_TIMESTAMPNS: %w", err)
			}
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(i)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return fmt.Errorf("bench: epoll_ctl: %w", err)
		}
	}
	once.Do(registered)
	events := make([]syscall.EpollEvent, 512)
	buf := make([]byte, 64<<10)
	oob := make([]byte, syscall.CmsgSpace(16))
	idle := true // the last wait found nothing
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
		if n == 0 {
			idle = true
			continue
		}
		if idle && opt.settle > 0 {
			// Input after a quiet spell: let the rest of it arrive before reading.
			idle = false
			select {
			case <-stop:
				return nil
			case <-time.After(opt.settle):
			}
			continue // wait again: more is ready now
		}
		idle = false
		for _, ev := range events[:n] {
			i := int(ev.Fd)
			fd := fds[i]
			if fd < 0 {
				continue
			}
			var nr int
			var at int64
			var rerr error
			for {
				if opt.rxTimestamps {
					var oobn int
					nr, oobn, _, _, rerr = syscall.Recvmsg(fd, buf, oob, 0)
					if rerr == nil {
						at = rxTimestamp(oob[:oobn])
					}
				} else {
					nr, rerr = syscall.Read(fd, buf)
				}
				if rerr != syscall.EINTR {
					break
				}
			}
			switch {
			case rerr == syscall.EAGAIN:
			case rerr != nil || nr == 0:
				// Closed or failed: stop watching it.
				syscall.EpollCtl(epfd, syscall.EPOLL_CTL_DEL, fd, nil)
				syscall.Close(fd)
				fds[i] = -1
			default:
				lines(i, buf[:nr], at)
			}
		}
	}
}

// rxTimestamp returns the kernel's receive time (UnixNano) from the control messages
// of a recvmsg on a socket with SO_TIMESTAMPNS, or 0 if they carry none.
func rxTimestamp(oob []byte) int64 {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		// struct timespec: two native words (64-bit platforms, where this runs).
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SO_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
			return sec*1e9 + nsec
		}
	}
	return 0
}
