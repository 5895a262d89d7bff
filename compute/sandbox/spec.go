package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"
)

// Spec is one job: a module, what it is handed, and the limits it runs under.
type Spec struct {
	Module []byte            // a WebAssembly binary exporting _start (wasip1)
	Args   []string          // the module's arguments after its name (argv[1:])
	Stdin  []byte            // the module's standard input
	Inputs map[string][]byte // read-only files under /in, by file name (no directories)

	MemoryLimit uint64        // bytes of linear memory; 0 means DefaultMemoryLimit
	CPULimit    time.Duration // CPU time for the job, rounded up to whole seconds; 0 means none
	Timeout     time.Duration // wall time from Start; 0 means none (the context still ends it)
	MaxOutput   int           // bytes of stdout, and of stderr, kept; 0 means DefaultMaxOutput

	serve bool // set by Runner.Serve: the module is a service (see serve.go)
}

// Defaults for a Spec's zero limits. A module needs linear memory, and a result must
// fit in memory, so neither can be unlimited.
const (
	DefaultMemoryLimit = 256 << 20
	DefaultMaxOutput   = 1 << 20
)

// Named limits of the sandbox itself.
const (
	// MaxModuleSize bounds the module a Spec may carry.
	MaxModuleSize = 64 << 20
	// MaxInputSize bounds Stdin plus every Input.
	MaxInputSize = 256 << 20
	// MaxInputs bounds the number of files under /in.
	MaxInputs = 1024
	// maxChildStderr bounds what is kept of the child process's own diagnostics.
	maxChildStderr = 64 << 10
	// wasmPage is the WebAssembly page size.
	wasmPage = 65536
)

// Reasons a job stopped before its own end; Result.Err begins with one of them.
const (
	StopMemory  = "memory limit" // linear memory would have grown past MemoryLimit
	StopCPU     = "cpu limit"    // CPULimit used up
	StopTimeout = "timeout"      // Timeout passed
	StopOutput  = "output limit" // stdout or stderr passed MaxOutput
	StopKilled  = "killed"       // Kill was called or the context ended
	StopTrap    = "trap"         // the module trapped (unreachable, bad memory access, ...)
	StopInvalid = "invalid"      // the module did not compile or instantiate
)

// Usage is what the operating system says a job's process used.
type Usage struct {
	CPU    time.Duration // user + system CPU time, all threads
	RSS    uint64        // resident bytes now (0 once the process has exited)
	MaxRSS uint64        // peak resident bytes
	Wall   time.Duration // since Start
}

// Result is how a job ended.
type Result struct {
	Stdout, Stderr []byte // the module's, each cut at MaxOutput
	ExitCode       int    // the module's exit code; -1 if it did not exit by itself
	Usage          Usage
	Compile        time.Duration // how long the child took to compile the module
	// Err is empty when the module ran to its own end (whatever its exit code), and
	// otherwise "<reason>" or "<reason>: <detail>" with one of the Stop* reasons.
	Err string
}

// Stopped reports whether the job was stopped for reason, one of the Stop* constants.
func (r Result) Stopped(reason string) bool {
	return r.Err == reason || strings.HasPrefix(r.Err, reason+":")
}

func stopErr(reason, detail string) string {
	if detail == "" {
		return reason
	}
	return reason + ": " + detail
}

// withDefaults fills a Spec's zero limits.
func (s Spec) withDefaults() Spec {
	if s.MemoryLimit == 0 {
		s.MemoryLimit = DefaultMemoryLimit
	}
	if s.MaxOutput <= 0 {
		s.MaxOutput = DefaultMaxOutput
	}
	return s
}

// Validate checks a Spec before a child is started for it.
func (s Spec) Validate() error {
	if len(s.Module) == 0 {
		return errors.New("sandbox: spec: no module")
	}
	if len(s.Module) > MaxModuleSize {
		return fmt.Errorf("sandbox: spec: module of %d bytes is over %d", len(s.Module), MaxModuleSize)
	}
	if s.MemoryLimit != 0 && s.MemoryLimit < wasmPage {
		return fmt.Errorf("sandbox: spec: memory limit %d is under one page (%d bytes)", s.MemoryLimit, wasmPage)
	}
	if s.MemoryLimit > 65536*wasmPage {
		return fmt.Errorf("sandbox: spec: memory limit %d is over 4 GiB, all a wasm32 module can address", s.MemoryLimit)
	}
	if s.CPULimit < 0 || s.Timeout < 0 || s.MaxOutput < 0 {
		return errors.New("sandbox: spec: negative limit")
	}
	if len(s.Inputs) > MaxInputs {
		return fmt.Errorf("sandbox: spec: %d inputs, over %d", len(s.Inputs), MaxInputs)
	}
	total := len(s.Stdin)
	for name, b := range s.Inputs {
		if !fs.ValidPath(name) || name == "." || strings.Contains(name, "/") {
			return fmt.Errorf("sandbox: spec: input name %q is not a plain file name", name)
		}
		total += len(b)
	}
	if total > MaxInputSize {
		return fmt.Errorf("sandbox: spec: %d bytes of input, over %d", total, MaxInputSize)
	}
	return nil
}
