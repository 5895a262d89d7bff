package stratum

import (
	"encoding/json"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
)

// Broadcast writes to every authorized connection the line fn returns for it (nothing
// if fn returns nil), spread over a few goroutines so that one slow peer (bounded by
// WriteTimeout) does not hold up the others. It returns when every line is written or
// its connection dropped.
//
// The writes are made as raw system calls: on a socket that is not blocking, a write
// either fits in its buffer at once or is left for the deadline path, and a broadcast
// is the only work then, so handing the worker's processor to the scheduler around
// each call (as an ordinary system call does) only costs time. Replies to submits keep
// ordinary calls: there other connections' work is waiting for the processor.
func (s *Server) Broadcast(fn func(c *Conn) []byte) {
	s.broadcast(func(c *Conn, _ []byte) []byte { return fn(c) }, false)
}

// BroadcastAppend is Broadcast for lines built per connection: fn appends c's line to
// dst and returns the result (dst unchanged: nothing is sent). dst is a buffer of the
// broadcast worker, used again for its next connection once the line is written, so a
// broadcast of lines that differ per connection (one coinbase per SOLO address)
// allocates none of them. fn must not keep dst or the result.
func (s *Server) BroadcastAppend(fn func(c *Conn, dst []byte) []byte) {
	s.broadcast(func(c *Conn, dst []byte) []byte {
		if b := fn(c, dst[:0]); len(b) > 0 {
			return b
		}
		return nil
	}, true)
}

// broadcastBufBytes is the starting size of a BroadcastAppend worker's buffer: a
// notify line of a template with a few thousand transactions fits.
const broadcastBufBytes = 2048

// broadcast runs fn over every authorized connection on a few workers; a nil line is
// not sent. With own, each worker has a buffer fn appends into, and fn's line is that
// buffer (perhaps grown); without, fn's line is not the worker's and buf is nil.
func (s *Server) broadcast(fn func(c *Conn, buf []byte) []byte, own bool) {
	conns := s.Conns()
	// A few workers per core: the writes are short syscalls, and a peer that cannot take
	// its line holds its worker up to WriteTimeout. (Two in all measured slower, on two
	// cores shared with the readers; docs/benchmarks.md.) Each takes broadcastClaim
	// connections at a time, so the workers do not contend on the counter per line.
	workers := 4 * runtime.GOMAXPROCS(0)
	if len(conns) < 64 {
		workers = 1
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			var buf []byte
			for {
				end := int(next.Add(broadcastClaim))
				i := end - broadcastClaim
				if i >= len(conns) {
					return
				}
				for _, c := range conns[i:min(end, len(conns))] {
					if !c.authorized.Load() {
						continue
					}
					if own && buf == nil {
						buf = make([]byte, 0, broadcastBufBytes)
					}
					b := fn(c, buf)
					if b == nil {
						continue
					}
					c.write(b, true) // synchronous: b is free again after it
					if own && cap(b) > cap(buf) && cap(b) <= 64*broadcastBufBytes {
						buf = b[:0] // grown by fn: keep the larger buffer
					}
				}
			}
		})
	}
	wg.Wait()
}

// broadcastClaim is how many connections a broadcast worker takes at once.
const broadcastClaim = 16

// writeLine writes one complete line, bounded by WriteTimeout. A failed write closes
// the connection: a peer that cannot keep up is dropped, the server is not held up.
func (c *Conn) writeLine(b []byte) error { return c.write(b, false) }

// write is writeLine; raw makes the first attempt a raw system call (see Broadcast).
func (c *Conn) write(b []byte, raw bool) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// Most writes fit in the socket's buffer at once: try that first, which needs no
	// deadline; only what is left waits, bounded by WriteTimeout.
	n, err := c.tryWrite(b, raw)
	if err == nil && n == len(b) {
		return nil
	}
	if err == nil || err == syscall.EAGAIN {
		c.nc.SetWriteDeadline(c.srv.cfg.Now().Add(c.srv.lim.WriteTimeout))
		_, err = c.nc.Write(b[n:])
	}
	if err != nil {
		c.srv.drop("write")
		c.Close()
	}
	return err
}

// tryWrite writes what the socket takes now, without waiting. Without a descriptor it
// writes nothing and returns no error.
func (c *Conn) tryWrite(b []byte, raw bool) (int, error) {
	if c.raw == nil {
		return 0, nil
	}
	var n int
	var werr error
	if err := c.raw.Write(func(fd uintptr) bool {
		for {
			if raw {
				n, werr = rawWrite(fd, b)
			} else {
				n, werr = syscall.Write(int(fd), b)
			}
			if werr != syscall.EINTR {
				break
			}
		}
		return true
	}); err != nil {
		return 0, err
	}
	return max(n, 0), werr
}

// WriteRaw writes pre-encoded lines (each ending in a newline).
func (c *Conn) WriteRaw(b []byte) error { return c.writeLine(b) }

// SetDifficulty sends mining.set_difficulty.
func (c *Conn) SetDifficulty(d float64) error {
	p := strconv.AppendFloat([]byte("["), d, 'g', -1, 64)
	return c.writeLine(AppendNotification(nil, "mining.set_difficulty", append(p, ']')))
}

// ShowMessage sends client.show_message.
func (c *Conn) ShowMessage(text string) error {
	p, _ := json.Marshal([]string{text})
	return c.writeLine(AppendNotification(nil, "client.show_message", p))
}

// Reconnect sends client.reconnect to host:port after wait seconds ("" host: same server).
func (c *Conn) Reconnect(host string, port int, wait int) error {
	p := []byte("[]")
	if host != "" {
		p, _ = json.Marshal([]any{host, port, wait})
	}
	return c.writeLine(AppendNotification(nil, "client.reconnect", p))
}

// complete records a submit's verdict. Replies leave in arrival order, written by one
// flush goroutine per connection at a time: verdicts that resolve together (a batch of
// shares made durable by one fsync) go out in one write. It reports false when the peer
// was dropped.
func (c *Conn) complete(r *pendingReply, e *Error) bool {
	<-c.sem
	if !c.verdict(e) {
		return false
	}
	c.pmu.Lock()
	r.err, r.done = e, true
	start := !c.flushing && c.pending[0].done
	if start {
		c.flushing = true
	}
	c.pmu.Unlock()
	if start {
		c.srv.wg.Add(1)
		go c.flush()
	}
	return !c.closed.Load()
}

// flush writes the resolved replies at the head of the queue until none is left.
func (c *Conn) flush() {
	defer c.srv.wg.Done()
	bp := replyBufs.Get().(*[]byte)
	defer replyBufs.Put(bp)
	for {
		buf := (*bp)[:0]
		c.pmu.Lock()
		n := 0
		for n < len(c.pending) && c.pending[n].done {
			p := c.pending[n]
			if p.err == nil {
				buf = AppendResponse(buf, p.id, []byte("true"), nil)
			} else {
				buf = AppendResponse(buf, p.id, nil, p.err)
			}
			c.pending[n] = nil
			n++
		}
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil // let an idle connection hold no queue
		}
		if n == 0 {
			c.flushing = false
			c.pmu.Unlock()
			return
		}
		c.pmu.Unlock()
		*bp = buf
		if c.writeLine(buf) != nil {
			c.pmu.Lock()
			c.flushing = false
			c.pmu.Unlock()
			return
		}
	}
}

// replyBufs holds the buffers flushes build replies in.
var replyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}
