package oci

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cgroupFS is where the cgroup hierarchies are mounted.
const cgroupFS = "/sys/fs/cgroup"

// cgroupParent is the cgroup under which every container of this package runs.
const cgroupParent = "hashgrid-oci"

// unitCgroup is one run's cgroup pair. runc puts the container in the leaf
// (cgroupParent/ID/c) and removes it when the container is deleted; the parent
// (cgroupParent/ID) is this package's. Its counters are hierarchical, so they keep
// what the container used after runc has removed the leaf, and the metering is read
// there: CPU time from cpuacct.usage (v1) or cpu.stat (v2), memory now and at its
// peak from memory.usage_in_bytes and memory.max_usage_in_bytes (v1) or
// memory.current and memory.peak (v2). The memory limit is set on the parent, not by
// runc on the leaf, so that the parent's counters tell an out-of-memory kill: cgroup
// v2's memory.events oom_kill counts its subtree's. Cgroup v1 counts a kill only in
// the victim's own cgroup (the leaf, gone when it is read), so there a SIGKILL nobody
// here sent, to a job whose memory peaked at its limit, is taken for one.
type unitCgroup struct {
	v2       bool
	rel      string // cgroupParent/ID
	cpu, mem string // directories holding the CPU and memory counters
}

// cgroupV2 reports whether the machine has the unified hierarchy only.
func cgroupV2() bool {
	_, err := os.Stat(filepath.Join(cgroupFS, "cgroup.controllers"))
	return err == nil
}

// newUnitCgroup makes the parent cgroup of run id, limited to memory bytes with no
// swap, and returns it with the path runc is to put the container at.
func newUnitCgroup(id string, memory uint64) (*unitCgroup, string, error) {
	c := &unitCgroup{v2: cgroupV2(), rel: cgroupParent + "/" + id}
	lim := strconv.FormatUint(memory, 10)
	if c.v2 {
		c.cpu = filepath.Join(cgroupFS, c.rel)
		c.mem = c.cpu
		for _, d := range []string{cgroupFS, filepath.Join(cgroupFS, cgroupParent)} {
			if d != cgroupFS {
				if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
					return nil, "", err
				}
			}
			if err := os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte("+cpu +memory +pids"), 0); err != nil {
				return nil, "", fmt.Errorf("oci: cgroup %s: enable controllers: %w", d, err)
			}
		}
		if err := os.Mkdir(c.mem, 0o755); err != nil {
			return nil, "", err
		}
		if err := os.WriteFile(filepath.Join(c.mem, "memory.max"), []byte(lim), 0); err != nil {
			c.remove()
			return nil, "", err
		}
		if _, err := os.Stat(filepath.Join(c.mem, "memory.swap.max")); err == nil {
			os.WriteFile(filepath.Join(c.mem, "memory.swap.max"), []byte("0"), 0)
		}
		return c, "/" + c.rel + "/c", nil
	}
	c.cpu = filepath.Join(cgroupFS, "cpuacct", c.rel)
	c.mem = filepath.Join(cgroupFS, "memory", c.rel)
	for _, d := range []string{c.cpu, c.mem} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			c.remove()
			return nil, "", fmt.Errorf("oci: cgroup: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(c.mem, "memory.limit_in_bytes"), []byte(lim), 0); err != nil {
		c.remove()
		return nil, "", fmt.Errorf("oci: cgroup memory limit: %w", err)
	}
	if _, err := os.Stat(filepath.Join(c.mem, "memory.memsw.limit_in_bytes")); err == nil {
		if err := os.WriteFile(filepath.Join(c.mem, "memory.memsw.limit_in_bytes"), []byte(lim), 0); err != nil {
			c.remove()
			return nil, "", fmt.Errorf("oci: cgroup swap limit: %w", err)
		}
	}
	return c, "/" + c.rel + "/c", nil
}

// cgroupUsage is what a run's cgroup has counted.
type cgroupUsage struct {
	cpu     time.Duration
	memory  uint64 // bytes charged now
	peak    uint64 // most bytes charged at once
	oomKill uint64 // processes killed at the memory limit (v2 only)
}

func (c *unitCgroup) usage() (cgroupUsage, error) {
	var u cgroupUsage
	var err error
	if c.v2 {
		var usec uint64
		if usec, err = keyed(filepath.Join(c.cpu, "cpu.stat"), "usage_usec"); err != nil {
			return u, err
		}
		u.cpu = time.Duration(usec) * time.Microsecond
		if u.memory, err = single(filepath.Join(c.mem, "memory.current")); err != nil {
			return u, err
		}
		u.peak, _ = single(filepath.Join(c.mem, "memory.peak")) // kernels before 5.19 have none
		u.oomKill, _ = keyed(filepath.Join(c.mem, "memory.events"), "oom_kill")
	} else {
		var ns uint64
		if ns, err = single(filepath.Join(c.cpu, "cpuacct.usage")); err != nil {
			return u, err
		}
		u.cpu = time.Duration(ns)
		if u.memory, err = single(filepath.Join(c.mem, "memory.usage_in_bytes")); err != nil {
			return u, err
		}
		if u.peak, err = single(filepath.Join(c.mem, "memory.max_usage_in_bytes")); err != nil {
			return u, err
		}
	}
	u.peak = max(u.peak, u.memory)
	return u, nil
}

// remove removes the parent cgroup from every hierarchy runc or newUnitCgroup made it
// in. The container's leaf must be gone (runc delete) first.
func (c *unitCgroup) remove() error {
	dirs := []string{filepath.Join(cgroupFS, c.rel)}
	if !c.v2 {
		dirs, _ = filepath.Glob(filepath.Join(cgroupFS, "*", c.rel))
	}
	var errs []error
	for _, d := range dirs {
		var err error
		// A cgroup whose last process has just exited can be busy for a moment.
		for range 50 {
			if err = os.Remove(d); err == nil || errors.Is(err, fs.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func single(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// keyed reads the value of key in a "key value" per line file.
func keyed(path, key string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("oci: %s: no %s", path, key)
}
