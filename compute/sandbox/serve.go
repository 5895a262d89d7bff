package sandbox

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// A service is a module started once and kept running, answering requests one after
// another (a model loaded once, then asked many times). Its framing, on its standard
// streams, is the same both ways:
//
//	request  (its standard input):  4-byte big-endian length N, then N bytes
//	response (its standard output): 4-byte big-endian length N, then N bytes
//
// one response per request, in order. A request is at most MaxFrame bytes; a response
// over the Spec's MaxOutput breaks the stream, and the service is killed. Standard
// error is the service's log: its last MaxServiceStderr bytes are kept and returned
// when it ends. A service that exits, by itself or at end of input, has ended; what
// to do then (start it again or give up) is the caller's choice.
//
// In the child, the service's frame (frame.go) carries Serve and is followed on the
// same stream by the requests, which the module reads itself; the module's standard
// output is the child's; and the child's reply (how the module ended, its stderr
// tail) goes to descriptor 3, since standard output is the module's.

// Limits of a service.
const (
	// MaxFrame bounds one request to a service.
	MaxFrame = 16 << 20
	// MaxServiceStderr is how much of a service's standard error is kept (the tail).
	MaxServiceStderr = 16 << 10
	// exitGrace is how long a service whose stream broke has to end by itself before
	// it is killed.
	exitGrace = 2 * time.Second
	// maxServeReply bounds the child's reply on descriptor 3.
	maxServeReply = 4*MaxServiceStderr + 4<<10
)

// ErrBroken is wrapped by Do's errors once a service can answer no more requests:
// it ended, crashed, broke the framing or a request was abandoned midway (it is
// then killed, since its stream is out of step).
var ErrBroken = errors.New("service broken")

// errFraming is a response that breaks the framing.
var errFraming = errors.New("framing")

// Service is a running service (Runner.Serve).
type Service struct {
	p         *Process
	in        *os.File // the write end of the child's standard input
	out       *os.File // the read end of the child's standard output
	reply     *capBuffer
	replyDone chan struct{}
	maxResp   int

	mu     sync.Mutex // one request at a time: the stream is a sequence
	broken error

	once   sync.Once
	result Result
	err    error
}

// Serve starts s's module as a service and returns once its frame has been handed
// over (the module compiles and starts while the first request waits). s.Stdin must
// be empty: a service's input is its requests. s.CPULimit and s.Timeout apply to the
// whole life of the service, and are usually zero; ctx ending kills it (StopKilled).
// Wait must be called to release it.
func (r Runner) Serve(ctx context.Context, s Spec) (*Service, error) {
	if len(s.Stdin) > 0 {
		return nil, errors.New("sandbox: a service takes no standard input (its input is its requests)")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if r.Exe == "" {
		return nil, errors.New("sandbox: runner has no executable")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sandbox: serve: %w", err)
	}
	s = s.withDefaults()
	s.serve = true
	frame, err := encodeRequest(s, r.CacheDir)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	pipe := func() (*os.File, *os.File) {
		if err != nil {
			return nil, nil
		}
		var a, b *os.File
		a, b, err = os.Pipe()
		files = append(files, a, b)
		return a, b
	}
	inR, inW := pipe()
	outR, outW := pipe()
	repR, repW := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("sandbox: serve: %w", err)
	}
	cmd := exec.Command(r.Exe, r.Args...)
	cmd.Env = append([]string{}, r.Env...)
	cmd.Stdin, cmd.Stdout, cmd.ExtraFiles = inR, outW, []*os.File{repW}
	p := &Process{
		cmd:     cmd,
		spec:    Spec{MemoryLimit: s.MemoryLimit, CPULimit: s.CPULimit, Timeout: s.Timeout, MaxOutput: s.MaxOutput},
		stderr:  &capBuffer{max: maxChildStderr},
		exited:  make(chan struct{}),
		watched: make(chan struct{}),
	}
	cmd.Stderr = p.stderr
	cmd.SysProcAttr = childAttr()
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, fmt.Errorf("sandbox: start %s: %w", r.Exe, err)
	}
	// The child's ends are the child's now.
	inR.Close()
	outW.Close()
	repW.Close()
	sv := &Service{p: p, in: inW, out: outR, reply: &capBuffer{max: maxServeReply}, replyDone: make(chan struct{}), maxResp: s.MaxOutput}
	go func() {
		defer close(sv.replyDone)
		defer repR.Close()
		io.Copy(sv.reply, repR)
	}()
	go p.reap()
	go p.watch(ctx, s.Timeout)
	if _, err := io.Copy(inW, frame); err != nil {
		p.stop(StopKilled)
		res, werr := sv.Wait()
		return nil, fmt.Errorf("sandbox: serve: hand over the module: %v (child: %s %v)", err, res.Err, werr)
	}
	return sv, nil
}

// Do sends one request and returns the service's response. Requests are answered
// one at a time, in order; a Do waits for the one before it. When ctx ends before the
// response, or the service ends, crashes or breaks the framing, Do returns an error
// wrapping ErrBroken and the service is killed (if it is not dead already): Wait then
// says how it ended.
func (sv *Service) Do(ctx context.Context, req []byte) ([]byte, error) {
	if len(req) > MaxFrame {
		return nil, fmt.Errorf("sandbox: request of %d bytes over %d", len(req), MaxFrame)
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.broken != nil {
		return nil, sv.broken
	}
	dl, _ := ctx.Deadline() // the zero time (none) when ctx has no deadline
	sv.in.SetWriteDeadline(dl)
	sv.out.SetReadDeadline(dl)
	stop := context.AfterFunc(ctx, func() {
		past := time.Unix(1, 0)
		sv.in.SetWriteDeadline(past)
		sv.out.SetReadDeadline(past)
	})
	defer stop()
	resp, err := sv.exchange(req)
	if err == nil {
		return resp, nil
	}
	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("%w: request abandoned (%v); service killed", ErrBroken, context.Cause(ctx))
		sv.p.stop(StopKilled)
	case errors.Is(err, errFraming):
		err = fmt.Errorf("%w: %v; service killed", ErrBroken, err)
		sv.p.stop(StopKilled)
	default:
		err = fmt.Errorf("%w: %v", ErrBroken, err)
		// A service that ended by itself closed its output: let it finish, so that
		// Wait tells its own end (an exit, a trap) from a kill.
		t := time.NewTimer(exitGrace)
		select {
		case <-sv.p.exited:
		case <-t.C:
			sv.p.stop(StopKilled)
		}
		t.Stop()
	}
	sv.broken = err
	return nil, err
}

// exchange writes one request frame and reads one response frame.
func (sv *Service) exchange(req []byte) ([]byte, error) {
	frame := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(req)), uint32(len(req)))
	frame = append(frame, req...)
	if _, err := sv.in.Write(frame); err != nil {
		return nil, fmt.Errorf("write request: %w", err)
	}
	var n [4]byte
	if _, err := io.ReadFull(sv.out, n[:]); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if uint64(size) > uint64(sv.maxResp) {
		return nil, fmt.Errorf("%w: response of %d bytes over %d", errFraming, size, sv.maxResp)
	}
	resp := make([]byte, size)
	if _, err := io.ReadFull(sv.out, resp); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return resp, nil
}

// Done is closed once the service's process has ended, whether or not a request
// was under way: a service that ends while idle (it exited, or its module did not
// compile) is noticed without asking it anything.
func (sv *Service) Done() <-chan struct{} { return sv.p.exited }

// Usage is what the service has used so far (see Process.Usage).
func (sv *Service) Usage() (Usage, error) { return sv.p.Usage() }

// PID is the child's process id.
func (sv *Service) PID() int { return sv.p.PID() }

// Kill ends the service now; Wait then reports Err StopKilled.
func (sv *Service) Kill() error { return sv.p.Kill() }

// Wait waits for the service to end and says how: Err is the Stop* reason when it
// was stopped (Kill, its context, a limit), a trap, or empty when the module exited
// by itself with ExitCode. Stderr is the tail of its standard error; Stdout is
// always empty (its output was its responses).
func (sv *Service) Wait() (Result, error) {
	p := sv.p
	<-p.exited
	<-p.watched
	<-sv.replyDone
	sv.once.Do(func() {
		sv.in.Close()
		sv.out.Close()
		sv.result, sv.err = sv.collect()
	})
	return sv.result, sv.err
}

func (sv *Service) collect() (Result, error) {
	p := sv.p
	p.mu.Lock()
	waitErr, reason, usage := p.waitErr, p.reason, p.final
	p.mu.Unlock()
	res := Result{ExitCode: -1, Usage: usage}
	var rep reply
	answered := !sv.reply.over && len(sv.reply.buf) > 0 && json.Unmarshal(sv.reply.buf, &rep) == nil
	if answered {
		res.Stderr, res.Compile = rep.Stderr, rep.Compile
	}
	switch {
	case answered:
		// The child wrote its reply, so the module ended by itself, even if a kill
		// came after.
		res.ExitCode, res.Err = rep.ExitCode, rep.Err
	case reason != "":
		res.Err = reason
	default:
		var exit *exec.ExitError
		if errors.As(waitErr, &exit) {
			if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				if p.spec.CPULimit > 0 && usage.CPU >= p.spec.CPULimit {
					res.Err = stopErr(StopCPU, p.spec.CPULimit.String())
				} else {
					res.Err = stopErr(StopKilled, ws.Signal().String())
				}
				return res, nil
			}
		}
		return res, fmt.Errorf("sandbox: service child: %v: %s", waitErr, p.stderr.buf)
	}
	return res, nil
}

// serveChild is the child side of Serve: it runs the module on the child's own
// streams and writes its reply to descriptor 3.
func serveChild(s Spec, cacheDir string, stdin io.Reader, stdout, stderr io.Writer) int {
	out := os.NewFile(3, "reply")
	if out == nil {
		fmt.Fprintln(stderr, "sandbox child: serve: no descriptor 3 for the reply")
		return 1
	}
	defer out.Close()
	// Plain readers and writers, not *os.File: the module's reads and writes block
	// in the child, whatever the descriptors' modes.
	sio := &serveIO{stdin: struct{ io.Reader }{stdin}, stdout: struct{ io.Writer }{stdout}, stderr: &tailWriter{max: MaxServiceStderr}}
	rep := run(s, cacheDir, sio)
	if err := json.NewEncoder(out).Encode(rep); err != nil {
		fmt.Fprintf(stderr, "sandbox child: write reply: %v\n", err)
		return 1
	}
	return 0
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *tailWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]byte(nil), w.buf...)
}
