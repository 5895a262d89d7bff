package provider

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseCPUInfo(t *testing.T) {
	in := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: a processor : with colons\n\nprocessor\t: 1\nflags\t\t: fpu\n\nprocessor\t: 2\n"
	if got := parseCPUInfo(strings.NewReader(in)); got != 3 {
		t.Errorf("got %d processors, want 3", got)
	}
}

func TestParseMemInfo(t *testing.T) {
	got, err := parseMemInfo(strings.NewReader("MemFree:  100 kB\nMemTotal:       16318256 kB\nSwapTotal: 0 kB\n"))
	if err != nil || got != 16318256<<10 {
		t.Errorf("got %d, %v; want %d", got, err, uint64(16318256)<<10)
	}
	for _, bad := range []string{"MemFree: 1 kB\n", "MemTotal: 12 MB\n", "MemTotal: x kB\n"} {
		if _, err := parseMemInfo(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestDiscoverGPUs(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"cpuinfo", "meminfo"} {
		body := "processor : 0\nprocessor : 1\n"
		if f == "meminfo" {
			body = "MemTotal: 2048 kB\n"
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dev := filepath.Join(dir, "dev")
	os.Mkdir(dev, 0o700)
	for _, f := range []string{"nvidia1", "nvidia0", "nvidiactl", "nvidia-uvm", "null"} {
		if err := os.WriteFile(filepath.Join(dev, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, err := discover(filepath.Join(dir, "cpuinfo"), filepath.Join(dir, "meminfo"), dev)
	if err != nil {
		t.Fatal(err)
	}
	if r.Cores != 2 || r.Memory != 2<<20 || !reflect.DeepEqual(r.GPUs, []string{"nvidia0", "nvidia1"}) {
		t.Errorf("got %+v, want 2 cores, 2 MiB, GPUs nvidia0 and nvidia1 (not the control devices)", r)
	}
	os.RemoveAll(dev)
	if r, err := discover(filepath.Join(dir, "cpuinfo"), filepath.Join(dir, "meminfo"), dev); err != nil || len(r.GPUs) != 0 {
		t.Errorf("no device files: got %+v, %v; want no GPUs", r, err)
	}
}

// TestDiscoverThisMachine reads the real /proc: what a provider offers by default.
func TestDiscoverThisMachine(t *testing.T) {
	if _, err := os.Stat("/proc/meminfo"); err != nil {
		t.Skip("no /proc/meminfo")
	}
	r, err := Discover()
	if err != nil {
		t.Fatal(err)
	}
	if r.Cores < 1 || r.Memory < 1<<20 {
		t.Errorf("discovered %+v: want at least a core and a MiB", r)
	}
}
