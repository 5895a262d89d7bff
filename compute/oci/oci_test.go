package oci_test

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hashgrid/hashgrid/compute/model"
	"github.com/hashgrid/hashgrid/compute/oci"
	"github.com/hashgrid/hashgrid/compute/oci/ocitest"
	"github.com/hashgrid/hashgrid/compute/sandbox"
)

// env is a loopback registry holding the test job's image, a store that may reach it
// over plain HTTP, and a runtime.
type env struct {
	host  string
	ref   string
	bin   string // the job program, built static for running natively too
	store *oci.Store
	rt    *oci.Runtime
	dir   string
}

var (
	buildOnce sync.Once
	jobBin    string
	jobDir    string
)

func newEnv(t testing.TB) *env {
	t.Helper()
	ocitest.NeedRuntime(t)
	buildOnce.Do(func() {
		// Built once for the package's tests, into a directory that outlives them.
		var err error
		if jobDir, err = os.MkdirTemp("", "oci-job-"); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(jobDir, "job"), "./testdata/job")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, b)
		}
		jobBin = filepath.Join(jobDir, "job")
	})
	if jobBin == "" {
		t.Fatal("the job program did not build")
	}
	host := ocitest.Registry(t)
	ref := ocitest.PushProgram(t, host, "tests/job", jobBin)
	dir := t.TempDir()
	store, err := oci.NewStore(oci.StoreConfig{Dir: filepath.Join(dir, "images"), InsecureHosts: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := oci.NewRuntime(oci.RuntimeConfig{Dir: filepath.Join(dir, "run")})
	if err != nil {
		t.Fatal(err)
	}
	return &env{host: host, ref: ref, bin: jobBin, store: store, rt: rt, dir: dir}
}

// run runs the job image once with args and stdin under spec's limits.
func (e *env) run(t testing.TB, spec oci.Spec) sandbox.Result {
	t.Helper()
	return e.runImage(t, e.ref, spec)
}

func (e *env) runImage(t testing.TB, ref string, spec oci.Spec) sandbox.Result {
	t.Helper()
	im, err := e.store.Get(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Release()
	if spec.Cores == 0 {
		spec.Cores = 1
	}
	if spec.Memory == 0 {
		spec.Memory = 128 << 20
	}
	if spec.Timeout == 0 {
		spec.Timeout = 30 * time.Second
	}
	p, err := e.rt.Start(context.Background(), im, spec)
	if err != nil {
		t.Fatal(err)
	}
	res := p.Wait()
	t.Logf("%v: exit %d, err %q, cpu %v, peak %d KiB, wall %v, stdout %.200q, stderr %.200q", spec.Args, res.ExitCode, res.Err,
		res.Usage.CPU, res.Usage.MaxRSS>>10, res.Usage.Wall, res.Stdout, res.Stderr)
	e.noLeftovers(t, p.ID())
	return res
}

// noLeftovers checks that the container, its cgroups and its bundle are gone.
func (e *env) noLeftovers(t testing.TB, id string) {
	t.Helper()
	out, err := exec.Command(e.rt.Runc(), "--root", filepath.Join(e.dir, "run", "state"), "list", "-q").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), id) {
		t.Errorf("container %s is still listed by runc", id)
	}
	if m, _ := filepath.Glob("/sys/fs/cgroup/*/hashgrid-oci/" + id); len(m) > 0 {
		t.Errorf("cgroups left: %v", m)
	}
	if _, err := os.Stat("/sys/fs/cgroup/hashgrid-oci/" + id); err == nil {
		t.Errorf("cgroup left")
	}
	if des, _ := os.ReadDir(filepath.Join(e.dir, "run", "bundles")); len(des) > 0 {
		t.Errorf("bundles left: %v", des)
	}
}

func digits(t testing.TB, n int) (in, want []byte) {
	var ib, ob bytes.Buffer
	ex := model.HeldOut()
	for i := range n {
		if err := model.FormatDigit(&ib, &ex[i%len(ex)].Digit); err != nil {
			t.Fatal(err)
		}
	}
	if err := model.Default().Classify(&ob, bytes.NewReader(ib.Bytes())); err != nil {
		t.Fatal(err)
	}
	return ib.Bytes(), ob.Bytes()
}

// TestRunOutputAndMetering: the image's program classifies its standard input
// exactly as the model does natively; CPU time and memory are metered from the
// cgroup; the job runs as nobody with the image's environment; and it costs a
// container's start on top of the program's native run (logged).
func TestRunOutputAndMetering(t *testing.T) {
	e := newEnv(t)
	in, want := digits(t, 400)
	res := e.run(t, oci.Spec{Stdin: in})
	if res.Err != "" || res.ExitCode != 0 || !bytes.Equal(res.Stdout, want) {
		t.Fatalf("exit %d, err %q; stdout equal to the native model's: %t", res.ExitCode, res.Err, bytes.Equal(res.Stdout, want))
	}
	if res.Usage.CPU <= 0 || res.Usage.MaxRSS < 1<<20 || res.Usage.Wall <= 0 {
		t.Fatalf("usage %+v: want CPU time and memory metered", res.Usage)
	}
	if res := e.run(t, oci.Spec{Args: []string{"id"}}); string(res.Stdout) != "65534 65534\n" {
		t.Fatalf("runs as %q, want nobody (65534)", res.Stdout)
	}
	if res := e.run(t, oci.Spec{Args: []string{"ls", "/dev"}}); strings.Contains(string(res.Stdout), "sda") || !strings.Contains(string(res.Stdout), "null") {
		t.Fatalf("/dev: %q", res.Stdout)
	}

	// Overhead: the same program on the same input natively and in a container.
	const runs = 5
	var native, container time.Duration
	for range runs {
		cmd := exec.Command(e.bin)
		cmd.Stdin = bytes.NewReader(in)
		start := time.Now()
		out, err := cmd.Output()
		native += time.Since(start)
		if err != nil || !bytes.Equal(out, want) {
			t.Fatalf("native run: %v", err)
		}
		start = time.Now()
		res := e.run(t, oci.Spec{Stdin: in})
		container += time.Since(start)
		if !bytes.Equal(res.Stdout, want) {
			t.Fatal("container run differs")
		}
	}
	t.Logf("400 digits: native %v per run, container %v per run (start, run, metering and removal), overhead %v",
		native/runs, container/runs, (container-native)/runs)
}

func TestRunExitCode(t *testing.T) {
	e := newEnv(t)
	// At the least memory a job may have.
	res := e.run(t, oci.Spec{Args: []string{"exit", "3"}, Memory: oci.MinMemory})
	if res.ExitCode != 3 || res.Err != "" || string(res.Stdout) != "exiting 3\n" {
		t.Fatalf("exit %d err %q stdout %q", res.ExitCode, res.Err, res.Stdout)
	}
	// A command that is not in the image: runc could not start it.
	nope := ocitest.Push(t, e.host, "tests/nope", v1.Config{Entrypoint: []string{"/nope"}},
		ocitest.Layer(t, ocitest.File{Name: "x", Body: []byte("x"), Mode: 0o644}))
	res = e.runImage(t, nope, oci.Spec{})
	if !res.Stopped(sandbox.StopInvalid) || res.ExitCode != -1 {
		t.Fatalf("exit %d, err %q: want %q", res.ExitCode, res.Err, sandbox.StopInvalid)
	}
}

// TestRunMemoryLimit: a job that allocates past its memory is killed by the kernel
// at the cgroup's limit and reported so; under the limit it runs.
func TestRunMemoryLimit(t *testing.T) {
	e := newEnv(t)
	res := e.run(t, oci.Spec{Args: []string{"alloc", "200"}, Memory: 64 << 20})
	if !res.Stopped(sandbox.StopMemory) {
		t.Fatalf("err %q, want %q", res.Err, sandbox.StopMemory)
	}
	// It asked for 200 MiB; the kernel held it to its 64 (a page or so over is the
	// kernel's charging slack).
	if res.Usage.MaxRSS > 65<<20 {
		t.Fatalf("peak %d over the limit", res.Usage.MaxRSS)
	}
	res = e.run(t, oci.Spec{Args: []string{"alloc", "20"}, Memory: 64 << 20})
	if res.Err != "" || res.ExitCode != 0 || res.Usage.MaxRSS < 20<<20 {
		t.Fatalf("20 MiB in 64: err %q exit %d peak %d", res.Err, res.ExitCode, res.Usage.MaxRSS)
	}
}

// TestRunCPU: the CPU quota holds a job to its cores (two busy threads on one core
// get one core's time), a CPU limit stops it, and so does the wall-time limit.
func TestRunCPU(t *testing.T) {
	e := newEnv(t)
	res := e.run(t, oci.Spec{Args: []string{"spin", "1s", "2"}, Cores: 1})
	// Without the quota they would use two seconds of CPU (the machine has two
	// cores); with it, at most one core's worth of the wall time (the CFS period's
	// slack aside). Less when the machine is busy with other work.
	if res.Err != "" || res.Usage.CPU <= 0 || res.Usage.CPU > res.Usage.Wall*115/100 {
		t.Fatalf("two threads for 1 s on 1 core: err %q, cpu %v in %v of wall: want at most one core's worth", res.Err, res.Usage.CPU, res.Usage.Wall)
	}
	res = e.run(t, oci.Spec{Args: []string{"spin", "10s", "1"}, CPULimit: 300 * time.Millisecond})
	if !res.Stopped(sandbox.StopCPU) || res.Usage.Wall > 5*time.Second {
		t.Fatalf("err %q after %v, want %q", res.Err, res.Usage.Wall, sandbox.StopCPU)
	}
	res = e.run(t, oci.Spec{Args: []string{"spin", "10s", "1"}, Timeout: 500 * time.Millisecond})
	if !res.Stopped(sandbox.StopTimeout) || res.Usage.Wall > 5*time.Second {
		t.Fatalf("err %q after %v, want %q", res.Err, res.Usage.Wall, sandbox.StopTimeout)
	}
}

// TestRunKillAndOutput: output past MaxOutput stops a job and is cut there; a running
// job is metered live, its cgroups carry the lease's limits, and the context stops
// it.
func TestRunKillAndOutput(t *testing.T) {
	e := newEnv(t)
	res := e.run(t, oci.Spec{Args: []string{"flood"}, MaxOutput: 1000})
	if !res.Stopped(sandbox.StopOutput) || len(res.Stdout) != 1000 {
		t.Fatalf("err %q, %d bytes of stdout", res.Err, len(res.Stdout))
	}
	im, err := e.store.Get(context.Background(), e.ref)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Release()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := e.rt.Start(ctx, im, oci.Spec{Args: []string{"spin", "30s", "1"}, Cores: 1, Memory: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	// Metered while it runs.
	deadline := time.Now().Add(10 * time.Second)
	for {
		u, err := p.Usage()
		if err == nil && u.CPU > 100*time.Millisecond && u.RSS > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live usage %+v %v", u, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The kernel holds the job to its lease: the CPU quota and pids limit on its
	// cgroup, the memory limit on the parent.
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil { // cgroup v1
		leaf := "hashgrid-oci/" + p.ID() + "/c"
		for file, want := range map[string]string{
			"/sys/fs/cgroup/cpu/" + leaf + "/cpu.cfs_quota_us":                        "100000",
			"/sys/fs/cgroup/cpu/" + leaf + "/cpu.cfs_period_us":                       "100000",
			"/sys/fs/cgroup/pids/" + leaf + "/pids.max":                               "256",
			"/sys/fs/cgroup/memory/hashgrid-oci/" + p.ID() + "/memory.limit_in_bytes": "67108864",
		} {
			if b, err := os.ReadFile(file); err != nil || strings.TrimSpace(string(b)) != want {
				t.Errorf("%s: %q %v, want %s", file, b, err, want)
			}
		}
	} else {
		for file, want := range map[string]string{
			"/sys/fs/cgroup/hashgrid-oci/" + p.ID() + "/c/cpu.max":  "100000 100000",
			"/sys/fs/cgroup/hashgrid-oci/" + p.ID() + "/c/pids.max": "256",
			"/sys/fs/cgroup/hashgrid-oci/" + p.ID() + "/memory.max": "67108864",
		} {
			if b, err := os.ReadFile(file); err != nil || strings.TrimSpace(string(b)) != want {
				t.Errorf("%s: %q %v, want %s", file, b, err, want)
			}
		}
	}
	cancel()
	res = p.Wait()
	if !res.Stopped(sandbox.StopKilled) {
		t.Fatalf("err %q", res.Err)
	}
	e.noLeftovers(t, p.ID())
}

// TestRunWalls: no network (the job cannot reach a listener on the host's loopback,
// and has no interface but its own loopback); no capabilities, no new privileges and
// a seccomp filter; a read-only root file system with a writable /tmp.
func TestRunWalls(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	// The host reaches it.
	if c, err := net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	} else {
		c.Close()
	}
	res := e.run(t, oci.Spec{Args: []string{"dial", ln.Addr().String()}})
	if res.ExitCode != 1 || !strings.HasPrefix(string(res.Stdout), "dial failed") {
		t.Fatalf("dial from the job: exit %d %q", res.ExitCode, res.Stdout)
	}
	time.Sleep(100 * time.Millisecond)
	if n := accepted.Load(); n != 1 {
		t.Fatalf("%d connections accepted, want only the host's", n)
	}
	if res := e.run(t, oci.Spec{Args: []string{"ifaces"}}); string(res.Stdout) != "lo\n" {
		t.Fatalf("interfaces %q, want lo only", res.Stdout)
	}
	// No capabilities, no new privileges, a seccomp filter; and the filter refuses
	// what an unprivileged process may otherwise do (make a user namespace).
	if res := e.run(t, oci.Spec{Args: []string{"status"}}); string(res.Stdout) !=
		"CapEff: 0000000000000000\nCapBnd: 0000000000000000\nNoNewPrivs: 1\nSeccomp: 2\n" {
		t.Fatalf("privileges: %q", res.Stdout)
	}
	if res := e.run(t, oci.Spec{Args: []string{"unshare"}}); res.ExitCode != 1 || !strings.Contains(string(res.Stdout), "operation not permitted") {
		t.Fatalf("unshare: exit %d %q", res.ExitCode, res.Stdout)
	}
	if res := e.run(t, oci.Spec{Args: []string{"write", "/bin/x"}}); res.ExitCode != 1 || !strings.Contains(string(res.Stdout), "read-only file system") {
		t.Fatalf("write to the root: exit %d %q", res.ExitCode, res.Stdout)
	}
	if res := e.run(t, oci.Spec{Args: []string{"write", "/tmp/x"}}); res.ExitCode != 0 {
		t.Fatalf("write to /tmp: exit %d %q", res.ExitCode, res.Stdout)
	}
}

// TestStore: references must be pinned; plain HTTP is refused to a registry not
// listed as insecure; an image is fetched once and then served from the cache; a
// layer that climbs out of the root is refused; the cache keeps to its size bound.
func TestStore(t *testing.T) {
	ocitest.NeedRuntime(t)
	var hits atomic.Int32
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	small := func(name string) string {
		return ocitest.Push(t, host, "tests/"+name, v1.Config{Cmd: []string{"/x"}},
			ocitest.Layer(t, ocitest.File{Name: "x", Body: bytes.Repeat([]byte(name), 1000), Mode: 0o755}))
	}
	refA, refB := small("a"), small("b")
	ctx := context.Background()

	strict, err := oci.NewStore(oci.StoreConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strict.Get(ctx, refA); err == nil || !strings.Contains(err.Error(), "plain HTTP") {
		t.Fatalf("plain HTTP to an unlisted registry: %v", err)
	}
	if _, err := strict.Get(ctx, host+"/tests/a:test"); err == nil || !strings.Contains(err.Error(), "not pinned") {
		t.Fatalf("a tag: %v", err)
	}

	dir := t.TempDir()
	s, err := oci.NewStore(oci.StoreConfig{Dir: dir, InsecureHosts: []string{host}, CacheBytes: 1500})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Get(ctx, refA)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(a.Rootfs, "x")); err != nil || len(b) != 1000 || a.Config.Cmd[0] != "/x" {
		t.Fatalf("image a: %v %d %+v", err, len(b), a.Config)
	}
	before := hits.Load()
	a2, err := s.Get(ctx, refA)
	if err != nil || a2.Rootfs != a.Rootfs || hits.Load() != before {
		t.Fatalf("second get: %v, %d registry requests", err, hits.Load()-before)
	}
	a.Release()
	a2.Release()
	// A new store on the same directory finds it.
	s2, err := oci.NewStore(oci.StoreConfig{Dir: dir, InsecureHosts: []string{host}, CacheBytes: 1500})
	if err != nil {
		t.Fatal(err)
	}
	if c := s2.Cached(); len(c) != 1 || !strings.HasSuffix(refA, c[0]) {
		t.Fatalf("cached after reopening: %v", c)
	}
	// b does not fit beside a: a, not in use, goes.
	b, err := s2.Get(ctx, refB)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	if c := s2.Cached(); len(c) != 1 || !strings.HasSuffix(refB, c[0]) {
		t.Fatalf("cached: %v, want b only", c)
	}
	if _, err := os.Stat(a.Rootfs); err == nil {
		t.Fatal("a is still on disk")
	}

	// A layer that writes outside the root.
	evil := ocitest.Push(t, host, "tests/evil", v1.Config{Cmd: []string{"/x"}},
		ocitest.Layer(t, ocitest.File{Name: "x", Body: []byte("x"), Mode: 0o755}, ocitest.File{Name: "../../escaped", Body: []byte("x"), Mode: 0o644}))
	if _, err := s2.Get(ctx, evil); err == nil {
		t.Fatal("an escaping layer was unpacked")
	} else {
		t.Log(err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "..", "escaped")); len(m) > 0 {
		t.Fatal("escaped")
	}
	// Over the size limits.
	tight, err := oci.NewStore(oci.StoreConfig{Dir: t.TempDir(), InsecureHosts: []string{host}, MaxCompressed: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tight.Get(ctx, refA); err == nil || !strings.Contains(err.Error(), "compressed") {
		t.Fatalf("over the compressed size: %v", err)
	}
	tight, err = oci.NewStore(oci.StoreConfig{Dir: t.TempDir(), InsecureHosts: []string{host}, MaxUncompressed: 999})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tight.Get(ctx, refA); err == nil || !strings.Contains(err.Error(), "over 999 bytes unpacked") {
		t.Fatalf("over the unpacked size: %v", err)
	}

}

// TestRunUser: a job runs as its image's user when that is a non-root uid, as nobody
// when the image names root or no one, and an image naming its user by name is
// refused.
func TestRunUser(t *testing.T) {
	e := newEnv(t)
	b, err := os.ReadFile(e.bin)
	if err != nil {
		t.Fatal(err)
	}
	push := func(user string) string {
		return ocitest.Push(t, e.host, "tests/user", v1.Config{Entrypoint: []string{"/job"}, Cmd: []string{"id"}, User: user},
			ocitest.Layer(t, ocitest.File{Name: "job", Body: b, Mode: 0o755}))
	}
	for user, want := range map[string]string{"1000:2000": "1000 2000\n", "1001": "1001 1001\n", "root": "65534 65534\n", "0:0": "65534 65534\n"} {
		if res := e.runImage(t, push(user), oci.Spec{}); string(res.Stdout) != want {
			t.Errorf("image user %q: ran as %q, want %q", user, res.Stdout, want)
		}
	}
	im, err := e.store.Get(context.Background(), push("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer im.Release()
	if _, err := e.rt.Start(context.Background(), im, oci.Spec{Cores: 1, Memory: 64 << 20}); err == nil || !strings.Contains(err.Error(), "numeric") {
		t.Fatalf("image user alice: %v", err)
	}
}

// BenchmarkUnitNative and BenchmarkUnitContainer run the test image's classifier on
// 400 digits: natively, and as a leased unit in a container (start, run, metering
// from the cgroup, removal). The difference is what a unit costs in a container.
func BenchmarkUnitNative(b *testing.B) {
	e := newEnv(b)
	in, want := digits(b, 400)
	for b.Loop() {
		cmd := exec.Command(e.bin)
		cmd.Stdin = bytes.NewReader(in)
		if out, err := cmd.Output(); err != nil || !bytes.Equal(out, want) {
			b.Fatalf("native run: %v", err)
		}
	}
}

func BenchmarkUnitContainer(b *testing.B) {
	e := newEnv(b)
	in, want := digits(b, 400)
	for b.Loop() {
		if res := e.run(b, oci.Spec{Stdin: in}); !bytes.Equal(res.Stdout, want) {
			b.Fatal("container run differs")
		}
	}
}
