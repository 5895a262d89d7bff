//go:build !unix

package bench

import "time"

// Usage is a process's CPU time and context switches so far.
type Usage struct {
	CPU         time.Duration
	Voluntary   int64
	Involuntary int64
}

// Sub returns the usage between v and u (u taken later).
func (u Usage) Sub(v Usage) Usage {
	return Usage{CPU: u.CPU - v.CPU, Voluntary: u.Voluntary - v.Voluntary, Involuntary: u.Involuntary - v.Involuntary}
}

// ProcessUsage returns the zero Usage: it is measured on Unix systems only.
func ProcessUsage() Usage { return Usage{} }
