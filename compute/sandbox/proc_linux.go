package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. The kernel
// fixes it at 100 on every architecture Go supports, and reading it from sysconf
// would need cgo.
const clockTicks = 100

// readProc reads a live process's CPU time and resident memory from /proc.
func readProc(pid int) (Usage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Usage{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces and
	// parentheses itself, so count fields from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return Usage{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return Usage{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return Usage{}, fmt.Errorf("/proc/%d/stat: bad utime %q or stime %q", pid, f[11], f[12])
	}
	u := Usage{CPU: time.Duration(utime+stime) * time.Second / clockTicks}

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Usage{}, err
	}
	for line := range strings.Lines(string(status)) {
		name, value, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return Usage{}, fmt.Errorf("/proc/%d/status: %s: %w", pid, name, err)
		}
		if name == "VmRSS" {
			u.RSS = kb * 1024
		} else {
			u.MaxRSS = kb * 1024
		}
	}
	return u, nil
}

// childAttr makes the child die with the provider: a job must not outlive the agent
// that meters it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// limitCPU sets RLIMIT_CPU so that the kernel kills the process (SIGKILL) once it has
// used limit more CPU time than so far, rounded up to a whole second (the kernel's
// unit). Soft and hard limits are equal: at the soft limit alone the kernel sends
// SIGXCPU, which Go ignores. Never above a hard limit already in force.
func limitCPU(limit time.Duration) error {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return fmt.Errorf("getrusage: %w", err)
	}
	used := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	soft := uint64((used + limit + time.Second - 1) / time.Second)
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_CPU, &cur); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	lim := syscall.Rlimit{Cur: min(soft, cur.Max), Max: min(soft, cur.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_CPU, &lim); err != nil {
		return fmt.Errorf("setrlimit RLIMIT_CPU: %w", err)
	}
	return nil
}

// mapMemory reserves n bytes of zeroed memory that takes no RAM until touched.
func mapMemory(n uint64) ([]byte, error) {
	return syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
}

func unmapMemory(b []byte) { syscall.Munmap(b) }
