package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/compute/model"
	modelwasm "github.com/hashgrid/hashgrid/compute/model/wasm"
)

// childEnv switches the test binary into the sandbox's child, as `hashgrid
// sandbox-exec` is in the real binary.
const childEnv = "HASHGRID_SANDBOX_CHILD"

// cacheDir is a compilation cache the tests share: compiling a Go-built module takes
// seconds, so only TestRunOutput and the benchmarks compile afresh.
var cacheDir string

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(ChildMain(os.Stdin, os.Stdout, os.Stderr))
	}
	dir, err := os.MkdirTemp("", "sandbox-cache")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testRunner starts this test binary as the child, with the shared compilation cache.
func testRunner(tb testing.TB) Runner {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	return Runner{Exe: exe, Env: []string{childEnv + "=1"}, CacheDir: cacheDir}
}

var probe struct {
	once   sync.Once
	module []byte
	err    error
}

// probeModule builds testdata/probe for wasip1, once per test binary.
func probeModule(tb testing.TB) []byte {
	tb.Helper()
	probe.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			probe.err = fmt.Errorf("the go command is needed to build the probe module: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "sandbox-probe")
		if err != nil {
			probe.err = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "probe.wasm")
		cmd := exec.Command(goBin, "build", "-o", out, "./testdata/probe")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			probe.err = fmt.Errorf("build probe: %v\n%s", err, msg)
			return
		}
		probe.module, probe.err = os.ReadFile(out)
	})
	if probe.err != nil {
		tb.Fatal(probe.err)
	}
	return probe.module
}

// runSpec runs a spec to its end.
func runSpec(tb testing.TB, s Spec) Result {
	tb.Helper()
	return runWith(tb, testRunner(tb), s)
}

func runWith(tb testing.TB, r Runner, s Spec) Result {
	tb.Helper()
	p, err := r.Start(context.Background(), s)
	if err != nil {
		tb.Fatal(err)
	}
	res, err := p.Wait()
	if err != nil {
		tb.Fatalf("wait: %v", err)
	}
	return res
}

func probeSpec(tb testing.TB, args ...string) Spec {
	return Spec{Module: probeModule(tb), Args: args, Timeout: time.Minute}
}

func TestRunOutput(t *testing.T) {
	s := probeSpec(t, "echo")
	s.Stdin = []byte("hello from the tenant\n")
	uncached := testRunner(t)
	uncached.CacheDir = ""
	res := runWith(t, uncached, s)
	if res.Err != "" || res.ExitCode != 0 || string(res.Stdout) != "hello from the tenant\n" {
		t.Errorf("echo: err %q, exit %d, stdout %q", res.Err, res.ExitCode, res.Stdout)
	}
	if res.Usage.CPU <= 0 || res.Usage.MaxRSS == 0 || res.Usage.Wall <= 0 || res.Compile <= 0 {
		t.Errorf("echo: usage %+v, compile %v; want all measured", res.Usage, res.Compile)
	}
	t.Logf("echo: compile %v, usage %+v", res.Compile, res.Usage)

	res = runSpec(t, probeSpec(t, "exit", "3"))
	if res.Err != "" || res.ExitCode != 3 || string(res.Stderr) != "exiting\n" {
		t.Errorf("exit 3: err %q, exit %d, stderr %q", res.Err, res.ExitCode, res.Stderr)
	}
}

func TestInputs(t *testing.T) {
	s := probeSpec(t, "cat", "/in/a.txt", "/in/b.txt")
	s.Inputs = map[string][]byte{"a.txt": []byte("first "), "b.txt": []byte("second")}
	res := runSpec(t, s)
	if res.Err != "" || res.ExitCode != 0 || string(res.Stdout) != "first second" {
		t.Errorf("cat: err %q, exit %d, stdout %q, stderr %q", res.Err, res.ExitCode, res.Stdout, res.Stderr)
	}
	s = probeSpec(t, "cat", "/in/missing.txt")
	res = runSpec(t, s)
	if res.ExitCode != 1 || !strings.Contains(string(res.Stderr), "missing.txt") {
		t.Errorf("cat of a missing input: exit %d, stderr %q", res.ExitCode, res.Stderr)
	}
}

// TestNoEscape checks that a module reads its granted input and nothing else, writes
// nowhere, gets no socket from WASI (sock_accept on every low descriptor fails),
// reaches no listener on the host, and sees no environment.
func TestNoEscape(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	s := probeSpec(t, "escape", ln.Addr().String())
	s.Inputs = map[string][]byte{"data.txt": []byte("granted")}
	res := runSpec(t, s)
	ln.Close()
	wg.Wait()
	if res.Err != "" || res.ExitCode != 0 {
		t.Fatalf("escape: err %q, exit %d, stderr %s", res.Err, res.ExitCode, res.Stderr)
	}
	t.Logf("escape attempts:\n%s", res.Stdout)
	lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	if len(lines) != 10 {
		t.Fatalf("%d attempt lines, want 10", len(lines))
	}
	for _, line := range lines {
		name, verdict, _ := strings.Cut(line, ": ")
		want := "denied"
		if name == "read /in/data.txt" {
			want = "allowed" // the control: the granted input is readable
		}
		if !strings.HasPrefix(verdict, want) {
			t.Errorf("%s: %s, want %s", name, verdict, want)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the listener accepted %d connections from the module", n)
	}
	if _, err := os.Stat("/tmp/new.txt"); err == nil {
		t.Error("/tmp/new.txt exists on the host")
	}
}

// TestDeterministic checks that the clock and random bytes a module sees are the same
// on every run, so that two providers running one work unit print the same bytes and
// a spot check can compare them.
func TestDeterministic(t *testing.T) {
	a := runSpec(t, probeSpec(t, "entropy"))
	b := runSpec(t, probeSpec(t, "entropy"))
	if a.Err != "" || a.ExitCode != 0 || !strings.HasPrefix(string(a.Stdout), "now ") {
		t.Fatalf("entropy: err %q, exit %d, stdout %q, stderr %q", a.Err, a.ExitCode, a.Stdout, a.Stderr)
	}
	t.Logf("a module sees:\n%s", a.Stdout)
	if !bytes.Equal(a.Stdout, b.Stdout) {
		t.Errorf("two runs saw different clocks or random bytes:\n%s\n%s", a.Stdout, b.Stdout)
	}
}

func TestMemoryLimit(t *testing.T) {
	s := probeSpec(t, "alloc", "16")
	s.MemoryLimit = 64 << 20
	res := runSpec(t, s)
	if res.Err != "" || res.ExitCode != 0 || string(res.Stdout) != "held 16 MiB\n" {
		t.Fatalf("16 MiB under a 64 MiB limit: err %q, exit %d, stdout %q, stderr %.300s", res.Err, res.ExitCode, res.Stdout, res.Stderr)
	}

	s = probeSpec(t, "alloc", "256")
	s.MemoryLimit = 64 << 20
	res = runSpec(t, s)
	if !res.Stopped(StopMemory) {
		t.Fatalf("256 MiB under a 64 MiB limit: err %q, exit %d, stdout %q, stderr %.300s", res.Err, res.ExitCode, res.Stdout, res.Stderr)
	}
	t.Logf("256 MiB under a 64 MiB limit: %s; child max RSS %d MiB", res.Err, res.Usage.MaxRSS>>20)
	// The module never held more than the limit, so neither did the child by much
	// more than the runtime and compiled code.
	if res.Usage.MaxRSS > 64<<20+192<<20 {
		t.Errorf("child max RSS %d MiB under a 64 MiB memory limit", res.Usage.MaxRSS>>20)
	}

	s = probeSpec(t, "echo")
	s.MemoryLimit = wasmPage
	res = runSpec(t, s)
	if !res.Stopped(StopMemory) || !strings.Contains(res.Err, "at start") {
		t.Errorf("a one-page limit: err %q, want %s for the module's starting memory", res.Err, StopMemory)
	}
}

func TestCPULimit(t *testing.T) {
	s := probeSpec(t, "spin")
	s.CPULimit = time.Second
	res := runSpec(t, s)
	if !res.Stopped(StopCPU) || res.ExitCode != -1 {
		t.Fatalf("spin with a 1s CPU limit: err %q, exit %d", res.Err, res.ExitCode)
	}
	// The limit is on top of compiling, rounded up to a second, so the module may
	// use up to two seconds past it.
	if res.Usage.CPU < time.Second || res.Usage.CPU > 5*time.Second {
		t.Errorf("spin with a 1s CPU limit used %v of CPU", res.Usage.CPU)
	}
	t.Logf("cpu limit: %s after %v CPU, %v wall (compile %v)", res.Err, res.Usage.CPU, res.Usage.Wall, res.Compile)
}

func TestTimeout(t *testing.T) {
	s := probeSpec(t, "spin")
	s.Timeout = 500 * time.Millisecond
	res := runSpec(t, s)
	if !res.Stopped(StopTimeout) || res.ExitCode != -1 {
		t.Fatalf("spin with a 500ms timeout: err %q, exit %d", res.Err, res.ExitCode)
	}
	if res.Usage.Wall < 500*time.Millisecond || res.Usage.Wall > 10*time.Second {
		t.Errorf("spin with a 500ms timeout ended after %v", res.Usage.Wall)
	}
}

// TestLiveUsageAndKill checks that Usage, read while a CPU-bound module runs, grows,
// and that Kill ends it mid-run.
func TestLiveUsageAndKill(t *testing.T) {
	p, err := testRunner(t).Start(context.Background(), probeSpec(t, "spin"))
	if err != nil {
		t.Fatal(err)
	}
	waitUsage := func(min time.Duration) Usage {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			u, err := p.Usage()
			if err != nil {
				t.Fatal(err)
			}
			if u.CPU >= min {
				return u
			}
			if time.Now().After(deadline) {
				t.Fatalf("CPU %v after 30s, waiting for %v", u.CPU, min)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	u1 := waitUsage(300 * time.Millisecond)
	u2 := waitUsage(u1.CPU + 300*time.Millisecond)
	if u2.Wall <= u1.Wall || u2.RSS == 0 || u2.MaxRSS < u2.RSS {
		t.Errorf("live usage: %+v then %+v", u1, u2)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	res, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Err != StopKilled || res.ExitCode != -1 || res.Usage.CPU < u2.CPU {
		t.Errorf("after Kill: err %q, exit %d, usage %+v (last live %+v)", res.Err, res.ExitCode, res.Usage, u2)
	}
	after, err := p.Usage()
	if err != nil || after != res.Usage {
		t.Errorf("Usage after the end = %+v, %v; want the result's %+v", after, err, res.Usage)
	}
	t.Logf("live usage %+v, then %+v; killed with %+v", u1, u2, res.Usage)
}

func TestContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p, err := testRunner(t).Start(ctx, probeSpec(t, "spin"))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	res, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Stopped(StopKilled) || !strings.Contains(res.Err, "canceled") {
		t.Errorf("after cancel: err %q", res.Err)
	}
}

func TestOutputLimit(t *testing.T) {
	s := probeSpec(t, "print", "1000000")
	s.MaxOutput = 4096
	res := runSpec(t, s)
	if !res.Stopped(StopOutput) || len(res.Stdout) != 4096 {
		t.Errorf("1 MB printed under a 4 KiB limit: err %q, %d bytes kept", res.Err, len(res.Stdout))
	}
	s = probeSpec(t, "print", "4096")
	s.MaxOutput = 4096
	res = runSpec(t, s)
	if res.Err != "" || len(res.Stdout) != 4096 {
		t.Errorf("4096 bytes printed under a 4 KiB limit: err %q, %d bytes kept", res.Err, len(res.Stdout))
	}
}

// trapModule is a minimal wasm module whose _start executes unreachable.
var trapModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: one func () -> ()
	0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
	0x07, 0x0a, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x00, // export _start
	0x0a, 0x05, 0x01, 0x03, 0x00, 0x00, 0x0b, // code: no locals, unreachable, end
}

// importModule imports env.f, which the sandbox does not provide.
var importModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
	0x02, 0x09, 0x01, 0x03, 'e', 'n', 'v', 0x01, 'f', 0x00, 0x00, // import env.f, type 0
	0x03, 0x02, 0x01, 0x00,
	0x07, 0x0a, 0x01, 0x06, '_', 's', 't', 'a', 'r', 't', 0x00, 0x01, // export function 1
	0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: an empty body
}

// noStartModule is trapModule without its export: not a command.
var noStartModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
	0x03, 0x02, 0x01, 0x00,
	0x0a, 0x05, 0x01, 0x03, 0x00, 0x00, 0x0b,
}

func TestTrapAndInvalid(t *testing.T) {
	res := runSpec(t, Spec{Module: trapModule, Timeout: time.Minute})
	if !res.Stopped(StopTrap) || !strings.Contains(res.Err, "unreachable") {
		t.Errorf("unreachable: err %q", res.Err)
	}
	for _, tt := range []struct {
		name   string
		module []byte
		want   string
	}{
		{"garbage", []byte("\x00asm but not really"), ""},
		{"env import", importModule, "env.f"},
		{"no _start", noStartModule, "_start"},
	} {
		res = runSpec(t, Spec{Module: tt.module, Timeout: time.Minute})
		if !res.Stopped(StopInvalid) || !strings.Contains(res.Err, tt.want) {
			t.Errorf("%s module: err %q, want %s mentioning %q", tt.name, res.Err, StopInvalid, tt.want)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	ok := Spec{Module: trapModule}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []Spec{
		{},
		{Module: trapModule, MemoryLimit: 100},
		{Module: trapModule, CPULimit: -1},
		{Module: trapModule, Inputs: map[string][]byte{"../x": nil}},
		{Module: trapModule, Inputs: map[string][]byte{"a/b": nil}},
	}
	for _, s := range bad {
		if err := s.Validate(); err == nil {
			t.Errorf("Validate accepted %+v", s)
		}
		if _, err := testRunner(t).Start(context.Background(), s); err == nil {
			t.Errorf("Start accepted %+v", s)
		}
	}
}

// TestDigits runs the shipped inference module in the sandbox on the held-out digits
// and checks its answers against the native model, byte for byte, and its accuracy.
func TestDigits(t *testing.T) {
	held := model.HeldOut()
	var in bytes.Buffer
	for i := range held {
		model.FormatDigit(&in, &held[i].Digit)
	}
	var want bytes.Buffer
	if err := model.Default().Classify(&want, bytes.NewReader(in.Bytes())); err != nil {
		t.Fatal(err)
	}
	s := Spec{Module: modelwasm.Digits, Args: []string{"/in/units.csv"}, Inputs: map[string][]byte{"units.csv": in.Bytes()},
		MemoryLimit: 64 << 20, CPULimit: 30 * time.Second, Timeout: time.Minute}
	res := runSpec(t, s)
	if res.Err != "" || res.ExitCode != 0 {
		t.Fatalf("digits: err %q, exit %d, stderr %s", res.Err, res.ExitCode, res.Stderr)
	}
	if !bytes.Equal(res.Stdout, want.Bytes()) {
		t.Fatalf("sandboxed answers (%d bytes) differ from native ones (%d bytes)", len(res.Stdout), want.Len())
	}
	right := 0
	for i, line := range strings.Split(strings.TrimSuffix(string(res.Stdout), "\n"), "\n") {
		if line[:1] == fmt.Sprint(held[i].Label) {
			right++
		}
	}
	if acc := float64(right) / float64(len(held)); acc < 0.95 {
		t.Errorf("sandboxed accuracy %.4f", acc)
	}
	t.Logf("%d digits, %d right; compile %v, usage %+v", len(held), right, res.Compile, res.Usage)
}
