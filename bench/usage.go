package bench

import "time"

// Usage is a process's CPU time and context switches so far (ProcessUsage).
type Usage struct {
	CPU         time.Duration // user + system
	Voluntary   int64         // context switches: waits
	Involuntary int64         // context switches: preempted
}

// Sub returns the usage between v and u (u taken later).
func (u Usage) Sub(v Usage) Usage {
	return Usage{CPU: u.CPU - v.CPU, Voluntary: u.Voluntary - v.Voluntary, Involuntary: u.Involuntary - v.Involuntary}
}
