package oci

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashgrid/hashgrid/compute/sandbox"
)

// Defaults and bounds of a Spec.
const (
	DefaultTmpSize   = 64 << 20 // bytes of the job's /tmp (a tmpfs, charged to its memory)
	DefaultPids      = 256      // processes and threads of one job
	DefaultMaxOutput = 1 << 20
	// MinMemory is the least memory a job may be given: runc's own init process
	// runs in the job's cgroup before it becomes the job, and needs some. The
	// market asks image orders for as much per core (compute.MinImageMemoryPerCore).
	MinMemory = 16 << 20
	// oomMargin: under cgroup v1, a job killed by a SIGKILL nobody here sent, whose
	// memory peaked within this of its limit, was killed at the limit.
	oomMargin = 1 << 20
	// maxRuncLog bounds what is read of runc's own log.
	maxRuncLog = 64 << 10
)

// Spec is one run of an image: what the job is handed and the limits it runs under.
type Spec struct {
	Args   []string // replace the image's Cmd (after its Entrypoint) when given
	Stdin  []byte
	Cores  int    // CPU quota: this many cores' worth of CPU time per wall second
	Memory uint64 // bytes, the page cache and /tmp included, no swap
	// CPULimit bounds the job's CPU time (all its processes, from its cgroup); 0: none.
	CPULimit  time.Duration
	Timeout   time.Duration // wall time from Start; 0: none (the context still ends it)
	MaxOutput int           // bytes of stdout, and of stderr, kept; 0: DefaultMaxOutput
	TmpSize   int64         // 0: DefaultTmpSize
	Pids      int           // 0: DefaultPids
}

// Runtime runs jobs as OCI containers with runc.
type Runtime struct {
	runc string
	dir  string // runc's state (dir/state) and the bundles (dir/bundles)
	log  *slog.Logger
}

// RuntimeConfig configures a Runtime.
type RuntimeConfig struct {
	Runc   string // runc's path; empty: found on PATH, /usr/sbin or /usr/bin
	Dir    string // a directory for runc's state and the containers' bundles
	Logger *slog.Logger
}

// NewRuntime checks that runc can be run from here: it must be found, and this
// process must be root, because the runtime makes the containers' cgroups and
// namespaces itself. It does not run anything; Probe does.
func NewRuntime(cfg RuntimeConfig) (*Runtime, error) {
	if cfg.Dir == "" {
		return nil, errors.New("oci: runtime: no directory")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("oci: runtime: runc needs root to make containers' cgroups and namespaces; this process is not root")
	}
	path := cfg.Runc
	if path == "" {
		var err error
		if path, err = exec.LookPath("runc"); err != nil {
			for _, p := range []string{"/usr/sbin/runc", "/usr/bin/runc"} {
				if _, serr := os.Stat(p); serr == nil {
					path, err = p, nil
					break
				}
			}
		}
		if err != nil {
			return nil, errors.New("oci: runtime: runc not found (on Debian: apt-get install runc)")
		}
	}
	if !cgroupV2() {
		for _, c := range []string{"cpuacct", "memory", "pids"} {
			if _, err := os.Stat(filepath.Join(cgroupFS, c)); err != nil {
				return nil, fmt.Errorf("oci: runtime: no cgroup v1 %s hierarchy at %s and no cgroup v2 either", c, cgroupFS)
			}
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{"state", "bundles"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	rt := &Runtime{runc: path, dir: cfg.Dir, log: cfg.Logger}
	rt.cleanup()
	return rt, nil
}

// cleanup deletes the containers a previous run of this runtime (the same Dir) left
// behind, killed before it could: runc, killed with the provider, leaves its
// container running.
func (rt *Runtime) cleanup() {
	state := filepath.Join(rt.dir, "state")
	out, err := exec.Command(rt.runc, "--root", state, "list", "-q").Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		if b, err := exec.Command(rt.runc, "--root", state, "delete", "-f", id).CombinedOutput(); err != nil {
			rt.log.Warn("left-over container", "container", id, "err", err, "out", strings.TrimSpace(string(b)))
			continue
		}
		rt.log.Info("left-over container deleted", "container", id)
		os.RemoveAll(filepath.Join(rt.dir, "bundles", id))
		(&unitCgroup{v2: cgroupV2(), rel: cgroupParent + "/" + id}).remove()
	}
}

// Runc is the path of the runc binary used.
func (rt *Runtime) Runc() string { return rt.runc }

// Process is one running job.
type Process struct {
	rt      *Runtime
	id      string
	spec    Spec
	cg      *unitCgroup
	bundle  string
	cmd     *exec.Cmd
	start   time.Time
	stdout  *capBuffer
	stderr  *capBuffer
	exited  chan struct{} // closed once runc run has returned and the container is gone
	watched chan struct{}

	mu      sync.Mutex
	reason  string // why this package stopped the job, if it did
	killing bool
	final   cgroupUsage
	wall    time.Duration
	code    int
	runcErr string
	result  sandbox.Result
}

// Start runs s on image im in a new container. The job starts at once; Wait for its
// result. The container, its cgroups and its bundle are removed once it has ended.
func (rt *Runtime) Start(ctx context.Context, im *Image, s Spec) (*Process, error) {
	if s.Cores < 1 {
		return nil, errors.New("oci: spec: at least one core")
	}
	if s.Memory < MinMemory {
		return nil, fmt.Errorf("oci: spec: memory %d is under %d bytes", s.Memory, MinMemory)
	}
	if s.CPULimit < 0 || s.Timeout < 0 || s.MaxOutput < 0 || s.TmpSize < 0 || s.Pids < 0 {
		return nil, errors.New("oci: spec: negative limit")
	}
	if s.MaxOutput == 0 {
		s.MaxOutput = DefaultMaxOutput
	}
	var rb [8]byte
	rand.Read(rb[:])
	id := "hg-" + hex.EncodeToString(rb[:])
	cg, cgPath, err := newUnitCgroup(id, s.Memory)
	if err != nil {
		return nil, err
	}
	conf, err := runConfig(im, s, cgPath)
	if err != nil {
		cg.remove()
		return nil, err
	}
	bundle := filepath.Join(rt.dir, "bundles", id)
	b, err := json.Marshal(conf)
	if err == nil {
		err = os.Mkdir(bundle, 0o700)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600)
	}
	if err != nil {
		os.RemoveAll(bundle)
		cg.remove()
		return nil, fmt.Errorf("oci: bundle: %w", err)
	}
	p := &Process{rt: rt, id: id, spec: s, cg: cg, bundle: bundle, exited: make(chan struct{}), watched: make(chan struct{})}
	p.stdout = &capBuffer{max: s.MaxOutput, over: func() { p.stop(sandbox.StopOutput + ": stdout") }}
	p.stderr = &capBuffer{max: s.MaxOutput, over: func() { p.stop(sandbox.StopOutput + ": stderr") }}
	// runc run in the foreground: it passes its standard streams to the job and
	// exits with the job's status (128+n for a signal). --log keeps runc's own
	// errors apart from the job's standard error.
	p.cmd = exec.Command(rt.runc, "--root", filepath.Join(rt.dir, "state"), "--log", filepath.Join(bundle, "runc.log"),
		"--log-format", "json", "run", "--bundle", bundle, id)
	p.cmd.Stdin = bytes.NewReader(s.Stdin)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(bundle)
		cg.remove()
		return nil, fmt.Errorf("oci: runc: %w", err)
	}
	go p.reap()
	go p.watch(ctx)
	return p, nil
}

// ID is the container's id.
func (p *Process) ID() string { return p.id }

// reap waits for runc, reads the cgroup's final counters, and removes the container.
func (p *Process) reap() {
	err := p.cmd.Wait()
	wall := time.Since(p.start)
	code := -1
	if st := p.cmd.ProcessState; st != nil {
		code = st.ExitCode()
	}
	// runc run deletes the container as the job ends; delete -f is for a runc that
	// did not get that far (its state directory is still there).
	state := filepath.Join(p.rt.dir, "state")
	if _, serr := os.Stat(filepath.Join(state, p.id)); serr == nil {
		del := exec.Command(p.rt.runc, "--root", state, "delete", "-f", p.id)
		if out, derr := del.CombinedOutput(); derr != nil && !bytes.Contains(out, []byte("does not exist")) {
			p.rt.log.Warn("runc delete", "container", p.id, "err", derr, "out", strings.TrimSpace(string(out)))
		}
	}
	u, uerr := p.cg.usage()
	if uerr != nil {
		p.rt.log.Warn("cgroup usage", "container", p.id, "err", uerr)
	}
	runcErr := runcError(filepath.Join(p.bundle, "runc.log"))
	if runcErr == "" && err != nil && code == -1 {
		runcErr = err.Error()
	}
	if rerr := p.cg.remove(); rerr != nil {
		p.rt.log.Warn("cgroup remove", "container", p.id, "err", rerr)
	}
	os.RemoveAll(p.bundle)
	p.mu.Lock()
	p.final, p.wall, p.code, p.runcErr = u, wall, code, runcErr
	p.mu.Unlock()
	close(p.exited)
}

// runcError is the last error runc logged, if any.
func runcError(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > maxRuncLog {
		b = b[len(b)-maxRuncLog:]
	}
	var last string
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(line, &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			last = e.Msg
		}
	}
	return last
}

// watch stops the job when ctx ends, at its timeout, or when its cgroup has used
// its CPU limit.
func (p *Process) watch(ctx context.Context) {
	defer close(p.watched)
	var expired <-chan time.Time
	if p.spec.Timeout > 0 {
		t := time.NewTimer(p.spec.Timeout)
		defer t.Stop()
		expired = t.C
	}
	var tick <-chan time.Time
	if p.spec.CPULimit > 0 {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-p.exited:
			return
		case <-ctx.Done():
			p.stop(sandbox.StopKilled + ": " + context.Cause(ctx).Error())
			return
		case <-expired:
			p.stop(sandbox.StopTimeout + ": after " + p.spec.Timeout.String())
			return
		case <-tick:
			if u, err := p.cg.usage(); err == nil && u.cpu >= p.spec.CPULimit {
				p.stop(sandbox.StopCPU + ": " + p.spec.CPULimit.String())
				return
			}
		}
	}
}

// stop records why the job is ended and kills the container's processes. runc kill
// is repeated until runc run returns: a kill that comes while runc is still making
// the container finds nothing to kill yet.
func (p *Process) stop(reason string) {
	p.mu.Lock()
	if p.reason == "" {
		p.reason = reason
	}
	killing := p.killing
	p.killing = true
	p.mu.Unlock()
	if killing {
		return
	}
	go func() {
		for {
			exec.Command(p.rt.runc, "--root", filepath.Join(p.rt.dir, "state"), "kill", "--all", p.id, "KILL").Run()
			select {
			case <-p.exited:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

// Kill ends the job now; Wait then reports Err StopKilled.
func (p *Process) Kill() { p.stop(sandbox.StopKilled) }

// Usage is what the job's cgroup has counted so far: its CPU time, the memory
// charged to it now and at its peak, and the wall time since Start.
func (p *Process) Usage() (sandbox.Usage, error) {
	select {
	case <-p.exited:
		p.mu.Lock()
		defer p.mu.Unlock()
		return sandbox.Usage{CPU: p.final.cpu, MaxRSS: p.final.peak, Wall: p.wall}, nil
	default:
	}
	u, err := p.cg.usage()
	if err != nil {
		select {
		case <-p.exited:
			return p.Usage()
		default:
		}
		return sandbox.Usage{}, fmt.Errorf("oci: usage: %w", err)
	}
	return sandbox.Usage{CPU: u.cpu, RSS: u.memory, MaxRSS: u.peak, Wall: time.Since(p.start)}, nil
}

// Wait waits for the job to end and returns its result, in the sandbox's terms: Err
// is empty when the job ran to its own end (whatever its exit code) and otherwise
// begins with a sandbox.Stop* reason: StopMemory when the kernel killed a process of
// the job at its memory limit, StopCPU at its CPU limit, StopTimeout, StopOutput,
// StopKilled (Kill, the context, or a signal nobody here sent), or StopInvalid when
// runc could not start the job (its command is not in the image, say).
func (p *Process) Wait() sandbox.Result {
	<-p.exited
	<-p.watched
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.final
	res := sandbox.Result{Stdout: p.stdout.bytes(), Stderr: p.stderr.bytes(), ExitCode: -1,
		Usage: sandbox.Usage{CPU: u.cpu, MaxRSS: u.peak, Wall: p.wall}}
	code := p.code
	switch {
	case u.oomKill > 0 || !p.cg.v2 && code == 128+int(syscall.SIGKILL) && p.reason == "" && u.peak+oomMargin >= p.spec.Memory:
		if code >= 0 && code < 128 {
			res.ExitCode = code
		}
		res.Err = sandbox.StopMemory + fmt.Sprintf(": %d bytes", p.spec.Memory)
	case p.reason != "":
		res.Err = p.reason
	case p.runcErr != "":
		res.Err = sandbox.StopInvalid + ": " + p.runcErr
	case code > 128 && code < 128+65:
		sig := syscall.Signal(code - 128)
		if sig == syscall.SIGXCPU || p.spec.CPULimit > 0 && u.cpu >= p.spec.CPULimit {
			res.Err = sandbox.StopCPU + ": " + p.spec.CPULimit.String()
		} else {
			res.Err = sandbox.StopKilled + ": " + sig.String()
		}
	case code < 0:
		res.Err = sandbox.StopKilled + ": runc ended without a status"
	default:
		res.ExitCode = code
	}
	return res
}

// capBuffer keeps the first max bytes written to it; a write past that calls over
// once and is dropped without failing (a failed write would leave runc's copy, and
// so the job, blocked).
type capBuffer struct {
	mu     sync.Mutex
	buf    []byte
	max    int
	over   func()
	passed bool
}

func (b *capBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := b.max - len(b.buf); len(p) > room {
		p = p[:max(room, 0)]
		if !b.passed {
			b.passed = true
			go b.over()
		}
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

func (b *capBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf)
}
