package pool

// JobsForAddresses asks for the current broadcast job of each address, as a broadcast
// to one connection per address does, and returns how many got a layout of their own.
func JobsForAddresses(p *Pool, addrs []string) int {
	p.mu.Lock()
	cur := p.current
	p.mu.Unlock()
	own := 0
	for _, a := range addrs {
		if p.jobFor(&session{address: a}, cur) != cur {
			own++
		}
	}
	return own
}
