//go:build unix

package bench

import (
	"syscall"
	"time"
)

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
