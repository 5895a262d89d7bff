//go:build !linux

package sandbox

import (
	"errors"
	"syscall"
	"time"
)

// errLinux is returned on systems without /proc and RLIMIT_CPU semantics the
// metering relies on.
var errLinux = errors.New("sandbox: jobs run on Linux only")

func readProc(int) (Usage, error)      { return Usage{}, errLinux }
func childAttr() *syscall.SysProcAttr  { return nil }
func limitCPU(time.Duration) error     { return errLinux }
func mapMemory(uint64) ([]byte, error) { return nil, errLinux }
func unmapMemory([]byte)               {}
