package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Runner says how to start the child process that runs a job.
type Runner struct {
	Exe  string   // the hashgrid binary (os.Executable), or a test binary
	Args []string // e.g. ["sandbox-exec"]
	// Env is the child's whole environment. The child never inherits the provider's:
	// nothing in it is the job's business.
	Env []string
	// CacheDir, when set, is a wazero compilation cache shared by the children, so a
	// module is compiled once per provider rather than once per job. Providers should
	// set it: compiling the 3 MB digit model costs about a second of CPU on a 2-core
	// EPYC VM, starting a child that loads it from the cache about 55 ms.
	CacheDir string
}

// ExecCommand is the hidden hashgrid subcommand whose whole work is ChildMain.
const ExecCommand = "sandbox-exec"

// Self is the Runner a provider uses: this binary's ExecCommand, with an empty
// environment.
func Self() (Runner, error) {
	exe, err := os.Executable()
	if err != nil {
		return Runner{}, fmt.Errorf("sandbox: own executable: %w", err)
	}
	return Runner{Exe: exe, Args: []string{ExecCommand}}, nil
}

// Process is one running job.
type Process struct {
	cmd    *exec.Cmd
	start  time.Time
	spec   Spec // limits only; the module and inputs are not kept
	stdout *capBuffer
	stderr *capBuffer

	exited  chan struct{} // closed once the child has been reaped
	watched chan struct{} // closed when the watchdog returns

	mu      sync.Mutex
	reason  string // why the parent ended the child; the first reason wins
	waitErr error
	final   Usage

	once   sync.Once
	result Result
	err    error
}

// Start starts a child for the job and returns at once. The child is killed when ctx
// ends (Err StopKilled) or at s.Timeout (Err StopTimeout). Wait must be called to
// learn the result and release the child's resources.
func (r Runner) Start(ctx context.Context, s Spec) (*Process, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if r.Exe == "" {
		return nil, errors.New("sandbox: runner has no executable")
	}
	s = s.withDefaults()
	req, err := encodeRequest(s, r.CacheDir)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(r.Exe, r.Args...)
	cmd.Env = append([]string{}, r.Env...) // non-nil: exec would pass ours for nil
	cmd.Stdin = req
	p := &Process{
		cmd:     cmd,
		spec:    Spec{MemoryLimit: s.MemoryLimit, CPULimit: s.CPULimit, Timeout: s.Timeout, MaxOutput: s.MaxOutput},
		stdout:  &capBuffer{max: replyLimit(s.MaxOutput)},
		stderr:  &capBuffer{max: maxChildStderr},
		exited:  make(chan struct{}),
		watched: make(chan struct{}),
	}
	cmd.Stdout = p.stdout
	cmd.Stderr = p.stderr
	cmd.SysProcAttr = childAttr()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sandbox: start: %w", err)
	}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("sandbox: start %s: %w", r.Exe, err)
	}
	go p.reap()
	go p.watch(ctx, s.Timeout)
	return p, nil
}

// replyLimit bounds the child's reply: both outputs in base64, and room for the rest.
func replyLimit(maxOutput int) int { return 2*(maxOutput/3*4+4) + 64<<10 }

// reap waits for the child and records how it ended.
func (p *Process) reap() {
	err := p.cmd.Wait()
	wall := time.Since(p.start)
	u := Usage{Wall: wall}
	if st := p.cmd.ProcessState; st != nil {
		u.CPU = st.UserTime() + st.SystemTime()
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			u.MaxRSS = uint64(ru.Maxrss) * 1024 // Linux reports KiB
		}
	}
	p.mu.Lock()
	p.waitErr = err
	p.final = u
	p.mu.Unlock()
	close(p.exited)
}

// watch kills the child when ctx ends or the timeout passes.
func (p *Process) watch(ctx context.Context, timeout time.Duration) {
	defer close(p.watched)
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		p.stop(stopErr(StopKilled, context.Cause(ctx).Error()))
	case <-expired:
		p.stop(stopErr(StopTimeout, "after "+timeout.String()))
	}
}

// stop records why the child is ended and kills it.
func (p *Process) stop(reason string) error {
	p.mu.Lock()
	if p.reason == "" {
		p.reason = reason
	}
	p.mu.Unlock()
	err := p.cmd.Process.Kill()
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Kill ends the job now; Wait then reports Err StopKilled. Killing a job that has
// already ended does nothing.
func (p *Process) Kill() error {
	if err := p.stop(StopKilled); err != nil {
		return fmt.Errorf("sandbox: kill: %w", err)
	}
	return nil
}

// PID is the child's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Usage is what the child has used so far, read from /proc while it runs (so a
// provider can meter a job every minute) and from its rusage once it has ended.
func (p *Process) Usage() (Usage, error) {
	select {
	case <-p.exited:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.final, nil
	default:
	}
	// Between the kernel reaping the child and exited closing, its PID could in
	// principle be handed to a new process and read here; PIDs are reused only after
	// the kernel has cycled through the others, so this is not guarded.
	u, err := readProc(p.cmd.Process.Pid)
	if err != nil {
		// The child may have ended between the check above and the read.
		select {
		case <-p.exited:
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.final, nil
		default:
		}
		return Usage{}, fmt.Errorf("sandbox: usage: %w", err)
	}
	u.Wall = time.Since(p.start)
	return u, nil
}

// Wait waits for the job to end and returns its result. The error is for the
// sandbox's own failures (the child could not run or answered nonsense); a module
// that failed or was stopped is a Result with Err set.
func (p *Process) Wait() (Result, error) {
	<-p.exited
	<-p.watched
	p.once.Do(func() { p.result, p.err = p.collect() })
	return p.result, p.err
}

// collect builds the result once the child has ended.
func (p *Process) collect() (Result, error) {
	p.mu.Lock()
	waitErr, reason, usage := p.waitErr, p.reason, p.final
	p.mu.Unlock()
	res := Result{ExitCode: -1, Usage: usage}

	if waitErr == nil {
		// The child answered, even if the parent tried to end it just too late: the
		// work was done.
		if p.stdout.over {
			return res, fmt.Errorf("sandbox: child reply over %d bytes", p.stdout.max)
		}
		var rep reply
		if err := json.Unmarshal(p.stdout.buf, &rep); err != nil {
			return res, fmt.Errorf("sandbox: child reply: %w", err)
		}
		res.Stdout, res.Stderr, res.ExitCode, res.Err, res.Compile = rep.Stdout, rep.Stderr, rep.ExitCode, rep.Err, rep.Compile
		return res, nil
	}
	if reason != "" {
		res.Err = reason
		return res, nil
	}
	var exit *exec.ExitError
	if errors.As(waitErr, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			// Nobody here killed it: the kernel did, at the hard CPU limit, or the
			// out-of-memory killer.
			if p.spec.CPULimit > 0 && usage.CPU >= p.spec.CPULimit {
				res.Err = stopErr(StopCPU, p.spec.CPULimit.String())
				return res, nil
			}
			res.Err = stopErr(StopKilled, ws.Signal().String())
			return res, nil
		}
	}
	return res, fmt.Errorf("sandbox: child: %v: %s", waitErr, bytes.TrimSpace(p.stderr.buf))
}

// capBuffer keeps the first max bytes written to it and drops the rest, never
// failing a write: a failed write would leave the child blocked on a full pipe.
type capBuffer struct {
	buf  []byte
	max  int
	over bool
}

func (b *capBuffer) Write(p []byte) (int, error) {
	n := len(p)
	room := b.max - len(b.buf)
	if len(p) > room {
		b.over = true
		p = p[:max(room, 0)]
	}
	b.buf = append(b.buf, p...)
	return n, nil
}
