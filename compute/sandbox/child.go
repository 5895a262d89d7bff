package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// reply is what the child writes to its standard output.
type reply struct {
	Stdout, Stderr []byte
	ExitCode       int
	Err            string
	Compile        time.Duration
}

// ChildMain is the child side of Runner.Start: it reads one request (a frame, see
// frame.go) from stdin, runs the module and writes one JSON reply to stdout. It
// returns the process exit status: 0 when a reply was written (whatever became of the module), 1 when the request could
// not be read or the reply not written, with the reason on stderr.
func ChildMain(stdin io.Reader, stdout, stderr io.Writer) int {
	spec, cacheDir, err := decodeRequest(stdin)
	if err == nil {
		err = spec.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "sandbox child: read request: %v\n", err)
		return 1
	}
	if spec.serve {
		return serveChild(spec.withDefaults(), cacheDir, stdin, stdout, stderr)
	}
	rep := run(spec.withDefaults(), cacheDir, nil)
	if err := json.NewEncoder(stdout).Encode(rep); err != nil {
		fmt.Fprintf(stderr, "sandbox child: write reply: %v\n", err)
		return 1
	}
	return 0
}

// serveIO is a service's standard streams (serve.go): the requests after the frame,
// the stream of responses, and the tail of its standard error.
type serveIO struct {
	stdin  io.Reader
	stdout io.Writer
	stderr *tailWriter
}

// run compiles and runs one module: a job, with s.Stdin as its standard input and its
// outputs captured, or, with sio, a service on sio's streams.
func run(s Spec, cacheDir string, sio *serveIO) reply {
	ctx := context.Background()

	// Not WithCloseOnContextDone: its checks made the digit model run ten times
	// slower. Nothing here needs to interrupt a running module from outside: the
	// kernel kills the child at the CPU limit, the parent kills it at the timeout,
	// and the output limit stops the module from inside its own write.
	rc := wazero.NewRuntimeConfig()
	if cacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
		if err != nil {
			return reply{ExitCode: -1, Err: stopErr(StopInvalid, "compilation cache: "+err.Error())}
		}
		defer cache.Close(ctx)
		rc = rc.WithCompilationCache(cache)
	}
	r := wazero.NewRuntimeWithConfig(ctx, rc)
	defer r.Close(context.Background())
	wasi_snapshot_preview1.MustInstantiate(ctx, r)

	t0 := time.Now()
	compiled, err := r.CompileModule(ctx, s.Module)
	compile := time.Since(t0)
	if err != nil {
		return reply{ExitCode: -1, Err: stopErr(StopInvalid, firstLine(err.Error())), Compile: compile}
	}
	s.Module = nil
	if err := isCommand(compiled); err != nil {
		return reply{ExitCode: -1, Err: stopErr(StopInvalid, err.Error()), Compile: compile}
	}
	if err := fitsMemory(compiled, s.MemoryLimit); err != nil {
		return reply{ExitCode: -1, Err: stopErr(StopMemory, err.Error()), Compile: compile}
	}

	if s.CPULimit > 0 {
		if err := limitCPU(s.CPULimit); err != nil {
			return reply{ExitCode: -1, Err: stopErr(StopInvalid, err.Error()), Compile: compile}
		}
	}

	stdout := &capWriter{max: s.MaxOutput}
	stderr := &capWriter{max: s.MaxOutput}
	var modIn io.Reader = bytes.NewReader(s.Stdin)
	var modOut, modErr io.Writer = stdout, stderr
	if sio != nil {
		modIn, modOut, modErr = sio.stdin, sio.stdout, sio.stderr
	}
	mem := &memoryLimiter{limit: s.MemoryLimit}
	mc := wazero.NewModuleConfig().
		WithName("job").
		WithArgs(append([]string{"job"}, s.Args...)...).
		WithStdin(modIn).
		WithStdout(modOut).
		WithStderr(modErr).
		// An in-memory fs.FS, not a host directory: wazero lets a guest walk out of
		// a mounted host directory with "..", and an fs.FS has no outside.
		WithFSConfig(wazero.NewFSConfig().WithFSMount(inputFS(s.Inputs), "/in"))
	// The limit is applied by the allocator, not by WithMemoryLimitPages: wazero
	// refuses a grow past its page limit without telling anyone, and the lease must
	// tell a module that failed for want of memory from one that failed by itself.
	runCtx := experimental.WithMemoryAllocator(ctx, mem)
	mod, err := r.InstantiateModule(runCtx, compiled, mc)
	if mod != nil {
		mod.Close(context.Background())
	}

	rep := reply{Stdout: stdout.buf, Stderr: stderr.buf, Compile: compile}
	if sio != nil {
		rep.Stderr = sio.stderr.bytes()
	}
	var exit *sys.ExitError
	switch {
	case stdout.hit || stderr.hit:
		// The write that passed the limit panicked out of the module (wazero turns
		// a host function's panic into the call's error): output was cut.
		rep.ExitCode = -1
		rep.Err = stopErr(StopOutput, fmt.Sprintf("over %d bytes", s.MaxOutput))
	case err == nil:
		rep.ExitCode = 0
	case errors.As(err, &exit):
		rep.ExitCode = int(exit.ExitCode())
		if mem.refused.Load() {
			rep.Err = stopErr(StopMemory, fmt.Sprintf("exit %d after a grow past %d bytes was refused", rep.ExitCode, s.MemoryLimit))
		}
	default:
		rep.ExitCode = -1
		rep.Err = stopErr(StopTrap, firstLine(err.Error()))
		if mem.refused.Load() {
			rep.Err = stopErr(StopMemory, fmt.Sprintf("trap after a grow past %d bytes was refused: %s", s.MemoryLimit, firstLine(err.Error())))
		}
	}
	return rep
}

// isCommand checks that the module is a wasip1 command: it starts at _start and
// imports nothing but WASI, so that a missing import is called invalid before it runs
// rather than a trap after.
func isCommand(m wazero.CompiledModule) error {
	if _, ok := m.ExportedFunctions()["_start"]; !ok {
		return errors.New("module exports no _start function")
	}
	for _, f := range m.ImportedFunctions() {
		if mod, name, _ := f.Import(); mod != wasi_snapshot_preview1.ModuleName {
			return fmt.Errorf("module imports %s.%s; only %s is provided", mod, name, wasi_snapshot_preview1.ModuleName)
		}
	}
	if len(m.ImportedMemories()) > 0 {
		return errors.New("module imports its memory; it must define its own")
	}
	return nil
}

// fitsMemory refuses a module whose declared minimum memory is over the limit.
func fitsMemory(m wazero.CompiledModule, limit uint64) error {
	for _, d := range m.ExportedMemories() {
		if need := uint64(d.Min()) * wasmPage; need > limit {
			return fmt.Errorf("module needs %d bytes of memory at start, limit %d", need, limit)
		}
	}
	return nil
}

// capWriter keeps the first max bytes written to it. The write that passes max
// panics, which stops the module there and then: a module that ignored a failed write
// could otherwise go on computing for nothing.
type capWriter struct {
	buf []byte
	max int
	hit bool
}

// errOutputLimit is capWriter's panic value.
var errOutputLimit = errors.New("output limit")

func (w *capWriter) Write(p []byte) (int, error) {
	room := w.max - len(w.buf)
	if len(p) <= room {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	w.buf = append(w.buf, p[:room]...)
	w.hit = true
	panic(errOutputLimit)
}

// memoryLimiter backs the module's linear memory with one anonymous mapping of the
// limit's size, so growing never copies and untouched pages cost nothing, and refuses
// (and records) any grow past the limit.
type memoryLimiter struct {
	limit   uint64
	refused atomic.Bool
}

func (a *memoryLimiter) Allocate(_, max uint64) experimental.LinearMemory {
	return &linearMemory{limiter: a, reserve: min(max, a.limit)}
}

type linearMemory struct {
	limiter *memoryLimiter
	reserve uint64
	buf     []byte // the whole mapping once made
}

func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.limiter.limit {
		m.limiter.refused.Store(true)
		return nil
	}
	if size > m.reserve {
		// Past the module's own declared maximum: wazero checks that first, so this
		// is not reached, but never hand out more than was mapped.
		return nil
	}
	if m.buf == nil && m.reserve > 0 {
		b, err := mapMemory(m.reserve)
		if err != nil {
			m.limiter.refused.Store(true)
			return nil
		}
		m.buf = b
	}
	return m.buf[:size:size]
}

func (m *linearMemory) Free() {
	if m.buf != nil {
		unmapMemory(m.buf)
		m.buf = nil
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
