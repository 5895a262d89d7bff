package stratum

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
)

// Reading.
//
// An idle connection holds no read buffer: its goroutine waits for the socket to be
// readable through syscall.RawConn, and only then takes a buffer from the server's
// pool and reads everything the peer has sent, up to the buffer's size. The complete
// lines in it are handled in one hand-off to a handler goroutine; an incomplete last
// line is copied aside (the only per-connection read memory, held only while a line is
// split across reads) and put in front of the next read.

// readChunk is how much a read asks for beyond a carried partial line: a busy miner's
// pipelined submits (about 160 bytes each) arrive in one read.
const readChunk = 8 << 10

var errLineTooLong = errors.New("stratum: line too long")

// lineReader reads a connection's input in chunks of whole lines.
type lineReader struct {
	raw     syscall.RawConn // nil: read r with a blocking Read
	r       io.Reader
	bufs    *sync.Pool // of *[]byte, each readChunk+max bytes
	max     int        // MaxLineBytes: a line must be shorter
	partial []byte     // the incomplete line carried to the next read
}

func newLineReader(r io.Reader, bufs *sync.Pool, max int) *lineReader {
	lr := &lineReader{r: r, bufs: bufs, max: max}
	if sc, ok := r.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			lr.raw = raw
		}
	}
	return lr
}

// errWouldBlock is read's answer, without waiting, when no input has arrived.
var errWouldBlock = errors.New("stratum: no input yet")

// read returns a buffer from the pool holding the carried partial line followed by
// what was read; the caller passes it to lines and then release. With wait it waits
// for input; without, it returns errWouldBlock if there is none.
func (lr *lineReader) read(wait bool) (*[]byte, []byte, error) {
	if lr.raw == nil {
		bp := lr.take()
		n, err := lr.r.Read((*bp)[len(lr.partial):])
		if n == 0 {
			lr.bufs.Put(bp)
			if err == nil {
				err = io.ErrNoProgress
			}
			return nil, nil, err
		}
		return bp, (*bp)[:len(lr.partial)+n], nil
	}
	var bp *[]byte
	var n int
	var rerr error
	err := lr.raw.Read(func(fd uintptr) bool {
		bp = lr.take()
		for {
			n, rerr = syscall.Read(int(fd), (*bp)[len(lr.partial):])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			// Nothing yet: wait for the poller without holding a buffer.
			lr.bufs.Put(bp)
			bp = nil
			return !wait
		}
		return true
	})
	if err == nil && rerr == syscall.EAGAIN {
		return nil, nil, errWouldBlock
	}
	switch {
	case err != nil:
	case rerr != nil:
		err = os.NewSyscallError("read", rerr)
	case n <= 0:
		err = io.EOF
	}
	if err != nil {
		if bp != nil {
			lr.bufs.Put(bp)
		}
		return nil, nil, err
	}
	return bp, (*bp)[:len(lr.partial)+n], nil
}

// take returns a pooled buffer with the partial line copied to its front.
func (lr *lineReader) take() *[]byte {
	bp := lr.bufs.Get().(*[]byte)
	copy(*bp, lr.partial)
	return bp
}

// release returns a buffer from read to the pool.
func (lr *lineReader) release(bp *[]byte) { lr.bufs.Put(bp) }

// lines calls fn with each complete line of data (without its newline; empty lines are
// skipped) until fn returns false, and keeps the incomplete rest for the next read. A
// line of max bytes or more is errLineTooLong.
func (lr *lineReader) lines(data []byte, fn func(line []byte) bool) (bool, error) {
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		line := data[:i]
		data = data[i+1:]
		if len(line) >= lr.max {
			return false, errLineTooLong
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			continue
		}
		if !fn(line) {
			return false, nil
		}
	}
	if len(data) >= lr.max {
		return false, errLineTooLong
	}
	if len(data) == 0 {
		lr.partial = nil
	} else {
		lr.partial = append(lr.partial[:0:0], data...)
	}
	return true, nil
}

// handleLines handles the complete lines of one read; false means drop the peer.
func (c *Conn) handleLines(lr *lineReader, data []byte) bool {
	ok, err := lr.lines(data, c.handleLine)
	if err != nil {
		c.srv.log.Debug("line too long", "remote", c.RemoteAddr())
		c.srv.abuseDrop(c, "line_too_long")
	}
	return ok
}
