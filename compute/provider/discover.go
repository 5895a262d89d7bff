package provider

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/hashgrid/hashgrid/compute"
)

// Discover reads what the machine has from the operating system: cores from
// /proc/cpuinfo (runtime.NumCPU where it cannot be read), memory from /proc/meminfo,
// and NVIDIA GPUs from their device files (/dev/nvidia0, /dev/nvidia1, …; none where
// there are none). Nothing is taken from the operator's word.
func Discover() (compute.Resources, error) {
	return discover("/proc/cpuinfo", "/proc/meminfo", "/dev")
}

func discover(cpuinfo, meminfo, dev string) (compute.Resources, error) {
	var r compute.Resources
	if f, err := os.Open(cpuinfo); err == nil {
		r.Cores = parseCPUInfo(f)
		f.Close()
	}
	if r.Cores == 0 {
		r.Cores = runtime.NumCPU()
	}
	f, err := os.Open(meminfo)
	if err != nil {
		return r, fmt.Errorf("discover: memory: %w", err)
	}
	r.Memory, err = parseMemInfo(f)
	f.Close()
	if err != nil {
		return r, fmt.Errorf("discover: memory: %w", err)
	}
	devs, _ := filepath.Glob(filepath.Join(dev, "nvidia[0-9]*"))
	for _, d := range devs {
		if _, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "nvidia")); err == nil {
			r.GPUs = append(r.GPUs, filepath.Base(d))
		}
	}
	slices.Sort(r.GPUs)
	return r, nil
}

// parseCPUInfo counts the logical processors /proc/cpuinfo lists.
func parseCPUInfo(r io.Reader) int {
	n := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, _, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "processor" {
			n++
		}
	}
	return n
}

// parseMemInfo returns MemTotal from /proc/meminfo, in bytes.
func parseMemInfo(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("MemTotal line %q", sc.Text())
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("MemTotal: %w", err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no MemTotal line")
}
