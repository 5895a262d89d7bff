//go:build unix

package bench

import (
	"syscall"
	"time"
)

// Usage is a process's CPU time and context switches so far.
type Usage struct {
	CPU         time.Duration // user + system
	Voluntary   int64         // context switches: waits
	Involuntary int64         // context switches: preempted
}

// Sub returns the usage between v and u (u taken later).
func (u Usage) Sub(v Usage) Usage {
	return Usage{CPU: u.CPU - v.CPU, Voluntary: u.Voluntary - v.Voluntary, Involuntary: u.Involuntary - v.Involuntary}
}

// ProcessUsage returns this process's usage (getrusage RUSAGE_SELF).
func ProcessUsage() Usage {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return Usage{}
	}
	return Usage{
		CPU:         time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		Voluntary:   int64(ru.Nvcsw),
		Involuntary: int64(ru.Nivcsw),
	}
}
