package cli

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoScriptStopsCleanly runs scripts/demo as the README tells a newcomer to,
// then stops it with SIGINT or SIGTERM sent to the PID the script prints: that PID
// must be hashgrid itself, and once it exits no btcd it started may remain and the
// Stratum and HTTP ports must be free again.
func TestDemoScriptStopsCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds hashgrid and starts btcd")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..")
	cache := t.TempDir()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			stratum, api := freeAddr(t), freeAddr(t)
			cmd := exec.Command(filepath.Join(root, "scripts", "demo"), "--stratum", stratum, "--api", api, "--data", t.TempDir())
			cmd.Env = append(os.Environ(), "HASHGRID_DEMO_CACHE="+cache)
			// A process group of its own, so that a terminal's Ctrl-C is not what the
			// test exercises: only the one signal to the one PID.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			// Files, not pipes: a child of go build (its telemetry uploader) may hold a
			// pipe open long after the script is gone.
			dir := t.TempDir()
			outf, err := os.Create(filepath.Join(dir, "stdout"))
			if err != nil {
				t.Fatal(err)
			}
			defer outf.Close()
			errf, err := os.Create(filepath.Join(dir, "stderr"))
			if err != nil {
				t.Fatal(err)
			}
			defer errf.Close()
			cmd.Stdout, cmd.Stderr = outf, errf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			defer syscall.Kill(-pid, syscall.SIGKILL) // whatever is left if the test fails
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			stderr := func() string { b, _ := os.ReadFile(errf.Name()); return string(b) }

			deadline := time.Now().Add(8 * time.Minute)
			for {
				b, _ := os.ReadFile(outf.Name())
				if strings.Contains(string(b), "pool status at") {
					t.Log(strings.TrimSpace(string(b)))
					break
				}
				select {
				case err := <-done:
					t.Fatalf("demo exited (%v) before it was ready:\n%s", err, tail(stderr(), 3000))
				case <-time.After(200 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("demo not ready after 8 minutes:\n%s", tail(stderr(), 3000))
				}
			}
			if !strings.Contains(stderr(), "pid "+strconv.Itoa(pid)) {
				t.Errorf("the script did not print its PID %d:\n%s", pid, tail(stderr(), 2000))
			}
			exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(exe) != "hashgrid" {
				t.Errorf("PID %d is %s, not hashgrid: a signal to it would not reach the demo", pid, exe)
			}
			kids := children(pid)
			if len(kids) == 0 {
				t.Errorf("no child process of the demo (btcd) found")
			}

			if err := syscall.Kill(pid, sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("demo exited with %v after %s:\n%s", err, sig, tail(stderr(), 2000))
				}
			case <-time.After(time.Minute):
				t.Fatalf("demo still running a minute after %s", sig)
			}
			for _, k := range kids {
				if alive(k) {
					t.Errorf("child %d of the demo still runs after it exited", k)
				}
			}
			for _, addr := range []string{stratum, api} {
				l, err := net.Listen("tcp", addr)
				if err != nil {
					t.Errorf("port still taken after the demo exited: %v", err)
					continue
				}
				l.Close()
			}
		})
	}
}

// freeAddr returns a loopback address with a port free now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var statPPID = regexp.MustCompile(`\) \S+ (\d+) `)

// children lists the processes whose parent is pid (Linux /proc).
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if m := statPPID.FindSubmatch(b); m != nil && string(m[1]) == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// alive reports whether pid runs (a zombie does not count).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	return !strings.Contains(string(b), ") Z ")
}
