//go:build unix

package bridge

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// channelPipe returns the two ends of a channel's V1 connection: a Unix socket pair,
// whose server end the V1 server can wait on in its poller like a miner's TCP
// connection (no reading goroutine while the channel is idle), at the cost of two
// descriptors per channel.
func channelPipe() (ours, theirs net.Conn, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("bridge: socketpair: %w", err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), "sv2-channel")
		conns[i], err = net.FileConn(f)
		f.Close() // FileConn holds its own duplicate
		if err != nil {
			if i == 1 {
				conns[0].Close()
			} else {
				syscall.Close(fds[1])
			}
			return nil, nil, fmt.Errorf("bridge: socketpair: %w", err)
		}
	}
	return conns[0], conns[1], nil
}
