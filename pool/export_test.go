package pool

// JobsForAddresses asks for the current broadcast job of each address and writes its
// notify line into a reused buffer, as a broadcast to one connection per address does,
// and returns how many got a layout of their own.
func JobsForAddresses(p *Pool, addrs []string) int {
	p.mu.Lock()
	cur := p.current
	p.mu.Unlock()
	own := 0
	var buf []byte
	for _, a := range addrs {
		j := p.jobFor(&session{address: a}, cur)
		if j != cur {
			own++
		}
		buf = j.appendNotify(buf[:0])
	}
	return own
}
