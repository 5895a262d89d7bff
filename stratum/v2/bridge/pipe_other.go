//go:build !unix

package bridge

import "net"

// channelPipe returns the two ends of a channel's V1 connection: an in-memory pipe
// where Unix socket pairs are not available.
func channelPipe() (ours, theirs net.Conn, err error) {
	a, b := net.Pipe()
	return a, b, nil
}
