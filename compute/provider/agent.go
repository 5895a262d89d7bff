// Package provider is the provider's agent of compute leasing (package compute): run
// by `hashgrid provider` on a machine, it offers the machine's cores and memory to a
// market, long-polls for leases, runs each lease's units in the sandbox (package
// compute/sandbox), reports every interval the CPU time and memory the sandbox
// measured, sends each unit's outputs, and shows its leases and earnings.
//
// One unit is one sandboxed run: the module with the unit's bytes on standard input.
// A lease of N cores runs up to N units at once, the lease's memory split between
// them. A service's lease (see service.go) starts its module once per instance and
// keeps it running, passing it the requests the market queues for it. A lease ends when its units are done (a final report), or when the market's
// reply to a report says stop (its budget is spent, its order was cancelled or a spot
// check refuted it): the agent then kills the lease's processes at once.
//
// A provider with a container runtime (Config.OCI, found by DiscoverOCI) also offers
// the "oci" runtime: a lease of an image order runs each unit as a container (package
// compute/oci), metered from the container's cgroup, with the same reports and
// results as a WebAssembly unit.
//
// A power controller moves the machine between mining and leasing through the
// agent's control endpoint (control.go): paused, the agent registers its offer as
// paused, so the market leases it nothing new while its running leases finish;
// released, the running leases, services included, are handed back at once (see
// Release).
//
// Left out: a lease's units, or a service, are not resumed after the agent restarts
// (the market loses the lease after its missed reports and refunds the rest); GPUs
// are discovered and offered, not used.
package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/compute/sandbox"
)

// Config configures an Agent.
type Config struct {
	Client        *compute.Client
	Name          string
	PayoutAddress string
	// Resources offered; zero fields take what Discover finds. An offer above what
	// the machine has is refused.
	Resources compute.Resources
	Price     int64 // sat per core-hour of CPU time
	MemPrice  int64 // sat per GiB-hour of memory held
	Runner    sandbox.Runner
	// OCI runs image units; nil: the provider offers WebAssembly only.
	OCI *OCI
	// Wait is how long one poll for leases waits at the market; default 15 s.
	Wait time.Duration
	// CorruptOutputsForTesting makes the agent return wrong results: it flips the
	// last byte of every unit's standard output before sending it. It exists only so
	// that tests can check that spot checks catch such a provider; the hashgrid
	// command has no flag for it.
	CorruptOutputsForTesting bool
	// JobLog, when set, gets one JSON line per lease that ran to its end, in the
	// format `hashgrid registry import-jobs` reads: the lease as a job of
	// DeviceGroup, its start and end, the CPU time metered (cpu_hours) and a SHA-256
	// over its units' outputs, so that the site's registry records leased compute as
	// a workload with its evidence.
	JobLog      io.Writer
	DeviceGroup string
	// Paused starts the agent with its offer paused: registered, but taking no new
	// leases until resumed through the control endpoint (SetPaused).
	Paused bool
	Logger *slog.Logger
}

// Agent is a running provider.
type Agent struct {
	cfg Config
	log *slog.Logger
	c   *compute.Client

	mu       sync.Mutex
	id       string
	interval time.Duration
	paused   bool
	running  map[string]*leaseRun
	logMu    sync.Mutex // one JobLog line at a time
	regMu    sync.Mutex // one registration at a time, so the market ends with the last one's state
}

// leaseRun is a lease the agent runs: stop kills its processes; released says the
// agent handed it back (Release) rather than the market stopping it.
type leaseRun struct {
	stop     context.CancelFunc
	released bool // guarded by Agent.mu
}

// New checks cfg and fills the offer's resources from the machine.
func New(cfg Config) (*Agent, error) {
	if cfg.Client == nil {
		return nil, errors.New("provider: no client")
	}
	if cfg.Runner.Exe == "" {
		return nil, errors.New("provider: no sandbox runner")
	}
	found, err := Discover()
	if err != nil {
		return nil, err
	}
	r := &cfg.Resources
	switch {
	case r.Cores > found.Cores:
		return nil, fmt.Errorf("provider: %d cores offered, the machine has %d", r.Cores, found.Cores)
	case r.Memory > found.Memory:
		return nil, fmt.Errorf("provider: %d bytes of memory offered, the machine has %d", r.Memory, found.Memory)
	case r.Cores < 0:
		return nil, errors.New("provider: negative cores")
	}
	if r.Cores == 0 {
		r.Cores = found.Cores
	}
	if r.Memory == 0 {
		r.Memory = found.Memory
	}
	r.GPUs = found.GPUs
	r.Runtimes = []string{compute.RuntimeWasm}
	if cfg.OCI != nil {
		if cfg.OCI.Runtime == nil || cfg.OCI.Images == nil {
			return nil, errors.New("provider: OCI without a runtime or an image store")
		}
		r.Runtimes = append(r.Runtimes, compute.RuntimeOCI)
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Agent{cfg: cfg, log: cfg.Logger, c: cfg.Client, running: map[string]*leaseRun{}, paused: cfg.Paused}, nil
}

// ID is the provider's id at the market, once registered.
func (a *Agent) ID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id
}

// Running lists the leases whose units the agent is running now.
func (a *Agent) Running() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.running))
	for id := range a.running {
		out = append(out, id)
	}
	return out
}

// Status returns the provider's leases and earnings as the market keeps them.
func (a *Agent) Status(ctx context.Context) (compute.ProviderView, error) {
	return a.c.Provider(ctx, a.ID())
}

// Run registers the offer and serves leases until ctx ends; the leases' processes
// are killed then, and Run waits for them.
func (a *Agent) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	backoff := time.Second
	for ctx.Err() == nil {
		if a.ID() == "" {
			if err := a.register(ctx); err != nil {
				a.log.Warn("register", "err", err)
				sleep(ctx, backoff)
				backoff = min(2*backoff, time.Minute)
				continue
			}
		}
		a.mu.Lock()
		wait := a.cfg.Wait
		if a.interval > 0 {
			// The market counts a provider online while it polls at least once per
			// interval or so; a longer wait would make it flap.
			wait = min(wait, a.interval)
		}
		a.mu.Unlock()
		work, err := a.c.Work(ctx, a.ID(), wait)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			a.log.Warn("poll for leases", "err", err)
			// A market that forgot the provider (restarted) answers not found:
			// register again.
			a.mu.Lock()
			a.id = ""
			a.mu.Unlock()
			sleep(ctx, backoff)
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		for _, w := range work {
			a.mu.Lock()
			_, dup := a.running[w.ID]
			var run *leaseRun
			var lctx context.Context
			if !dup {
				run = &leaseRun{}
				lctx, run.stop = context.WithCancel(ctx)
				a.running[w.ID] = run
			}
			a.mu.Unlock()
			if dup {
				continue
			}
			a.log.Info("lease started", "lease", w.ID, "kind", w.Kind, "units", len(w.Units), "cores", w.Cores, "memory", w.Memory)
			wg.Go(func() {
				if w.Kind == compute.KindService {
					a.runService(ctx, lctx, run, w)
				} else {
					a.runLease(ctx, lctx, run, w)
				}
				a.mu.Lock()
				delete(a.running, w.ID)
				a.mu.Unlock()
			})
		}
	}
	return nil
}

func (a *Agent) register(ctx context.Context) error {
	_, err := a.registerView(ctx)
	return err
}

// registerView sends the offer, paused or not as the agent is now, and returns the
// market's view of it.
func (a *Agent) registerView(ctx context.Context) (compute.ProviderView, error) {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	a.mu.Lock()
	paused := a.paused
	a.mu.Unlock()
	v, err := a.c.Register(ctx, compute.ProviderRequest{Name: a.cfg.Name, PayoutAddress: a.cfg.PayoutAddress, Resources: a.cfg.Resources,
		Price: a.cfg.Price, MemPrice: a.cfg.MemPrice, Paused: paused})
	if err != nil {
		return v, err
	}
	a.mu.Lock()
	a.id = v.ID
	a.interval = time.Duration(v.IntervalMS) * time.Millisecond
	a.mu.Unlock()
	a.log.Info("offer registered", "provider", v.ID, "cores", v.Resources.Cores, "memory", v.Resources.Memory, "gpus", len(v.Resources.GPUs),
		"price_sat_per_core_hour", v.Price, "mem_price_sat_per_gib_hour", v.MemPrice, "interval", a.interval, "paused", v.Paused)
	return v, nil
}

// Paused reports whether the agent asks the market for no new leases.
func (a *Agent) Paused() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.paused
}

// SetPaused pauses (or resumes) the offer and tells the market at once; it returns
// the market's view once the market has it. The running leases are not touched. A
// failed call leaves the agent in the asked state: the agent registers it again
// whenever it registers (after a market restart), and a retry of SetPaused resends it.
func (a *Agent) SetPaused(ctx context.Context, paused bool) (compute.ProviderView, error) {
	a.mu.Lock()
	a.paused = paused
	a.mu.Unlock()
	return a.registerView(ctx)
}

// Release hands back every running lease at once: its processes are killed and the
// agent sends the market a final report of the usage so far, so the market ends the
// lease (incomplete: the tenant pays for the work metered and the rest of the
// order's budget returns). It is refused unless the offer is paused, since a
// provider still offering would take new leases as it hands these back. It returns
// the leases handed back.
func (a *Agent) Release() ([]string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.paused {
		return nil, errors.New("provider: release while offering: pause first")
	}
	var out []string
	for id, r := range a.running {
		if !r.released {
			r.released = true
			r.stop()
			out = append(out, id)
		}
	}
	return out, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// unitProcess is a running process of a lease: a unit's sandbox child or a service
// (read from /proc), or a container (read from its cgroup).
type unitProcess interface {
	Usage() (sandbox.Usage, error)
}

// meter sums a lease's usage: the finished units' final usage and the running
// units' live usage, as the operating system counts it.
type meter struct {
	mu      sync.Mutex
	done    time.Duration
	live    map[unitProcess]bool
	lastCPU time.Duration
	outputs map[int][32]byte // each unit's standard output, hashed (for the job log)
}

func (m *meter) read() (cpu time.Duration, rss uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cpu = m.done
	for p := range m.live {
		// A process that ended between Wait and its removal answers its final usage;
		// one that cannot be read counts nothing this time (the report is
		// cumulative, so the next one has it).
		if u, err := p.Usage(); err == nil {
			cpu += u.CPU
			rss += u.RSS
		}
	}
	cpu = max(cpu, m.lastCPU)
	m.lastCPU = cpu
	return cpu, rss
}

// runLease runs w's units and reports its usage every interval until the units are
// done or the market says stop.
func (a *Agent) runLease(ctx, lctx context.Context, run *leaseRun, w compute.LeaseWork) {
	stop := run.stop
	defer stop()
	start := time.Now()
	interval := time.Duration(w.IntervalMS) * time.Millisecond
	if interval <= 0 {
		interval = time.Minute
	}
	m := &meter{live: map[unitProcess]bool{}, outputs: map[int][32]byte{}}
	var seq uint64
	var seqMu sync.Mutex
	// report sends the lease's usage so far and stops the lease when told to.
	report := func(final bool) bool {
		seqMu.Lock()
		defer seqMu.Unlock()
		cpu, rss := m.read()
		seq++
		rep := compute.UsageReport{Seq: seq, CPUNS: int64(cpu), WallNS: int64(time.Since(start)), RSS: rss, Final: final}
		reply, err := a.c.Report(ctx, w.ID, rep)
		for attempt := 0; err != nil && final && attempt < 3 && ctx.Err() == nil; attempt++ {
			// The final report ends the lease: retry it (the same seq, so a report
			// that did arrive is not metered twice).
			sleep(ctx, time.Second)
			reply, err = a.c.Report(ctx, w.ID, rep)
		}
		if err != nil {
			a.log.Warn("usage report", "lease", w.ID, "err", err)
			return false
		}
		if reply.Stop {
			a.log.Info("lease stopped by the market", "lease", w.ID, "reason", reply.Reason, "charged", reply.Charged)
			stop()
			return true
		}
		return false
	}

	units := make(chan int)
	var workers sync.WaitGroup
	n := max(min(w.Cores, len(w.Units)), 1)
	mem := w.Memory / uint64(n)
	cores := max(w.Cores/n, 1)
	for range n {
		workers.Go(func() {
			for u := range units {
				a.runUnit(lctx, w, u, cores, mem, m)
			}
		})
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		defer close(units)
		for u := range w.Units {
			select {
			case units <- u:
			case <-lctx.Done():
				return
			}
		}
	}()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	allDone := make(chan struct{})
	go func() {
		<-finished
		workers.Wait()
		close(allDone)
	}()
	for {
		select {
		case <-allDone:
			a.mu.Lock()
			released := run.released
			a.mu.Unlock()
			switch {
			case lctx.Err() == nil:
				report(true)
				a.log.Info("lease done", "lease", w.ID, "units", len(w.Units), "wall", time.Since(start).Round(time.Millisecond))
				a.logJob(w, start, m)
			case released && ctx.Err() == nil:
				// Handed back: the final report ends the lease with the units run.
				report(true)
				a.log.Info("lease handed back", "lease", w.ID, "units", len(w.Units), "wall", time.Since(start).Round(time.Millisecond))
			}
			return
		case <-ticker.C:
			report(false)
		}
	}
}

// runUnit runs one unit, in the sandbox or, for an image, in a container, and sends
// its outputs.
func (a *Agent) runUnit(ctx context.Context, w compute.LeaseWork, u, cores int, mem uint64, m *meter) {
	var res compute.UnitResult
	if w.Image != "" {
		res = a.runImageUnit(ctx, w, u, cores, mem, m)
	} else {
		res = a.runModuleUnit(ctx, w, u, mem, m)
	}
	if ctx.Err() != nil {
		// Stopped: a killed unit's outputs are not results.
		return
	}
	a.sendResult(ctx, w, res, m)
}

// runModuleUnit runs one unit of a WebAssembly job in the sandbox.
func (a *Agent) runModuleUnit(ctx context.Context, w compute.LeaseWork, u int, mem uint64, m *meter) compute.UnitResult {
	spec := sandbox.Spec{Module: w.Module, Args: w.Args, Stdin: w.Units[u], MemoryLimit: mem,
		Timeout: time.Duration(w.UnitTimeoutMS) * time.Millisecond, MaxOutput: compute.MaxOutputBytes}
	res := compute.UnitResult{Unit: u, ExitCode: -1}
	p, err := a.cfg.Runner.Start(ctx, spec)
	if err != nil {
		res.Err = err.Error()
	} else {
		m.mu.Lock()
		m.live[p] = true
		m.mu.Unlock()
		r, err := p.Wait()
		m.mu.Lock()
		delete(m.live, p)
		m.done += r.Usage.CPU
		m.mu.Unlock()
		if err != nil {
			res.Err = err.Error()
		} else {
			res.Stdout, res.Stderr, res.ExitCode, res.Err = r.Stdout, r.Stderr, r.ExitCode, r.Err
		}
	}
	return res
}

// sendResult sends one unit's outputs to the market, hashing them for the job log.
func (a *Agent) sendResult(ctx context.Context, w compute.LeaseWork, res compute.UnitResult, m *meter) {
	u := res.Unit
	m.mu.Lock()
	m.outputs[u] = sha256.Sum256(res.Stdout)
	m.mu.Unlock()
	if len(res.Stderr) > compute.MaxStderrBytes {
		res.Stderr = res.Stderr[len(res.Stderr)-compute.MaxStderrBytes:]
	}
	if a.cfg.CorruptOutputsForTesting {
		if len(res.Stdout) == 0 {
			res.Stdout = []byte{0}
		}
		res.Stdout[len(res.Stdout)-1] ^= 1
	}
	var err error
	for attempt := range 3 {
		err = a.c.Result(ctx, w.ID, res)
		if err == nil || ctx.Err() != nil {
			break
		}
		a.log.Warn("result not sent", "lease", w.ID, "unit", u, "attempt", attempt+1, "err", err)
		sleep(ctx, time.Second)
	}
}

// jobLine is one line of the job log, as registry.ParseJobs reads it.
type jobLine struct {
	Job           string      `json:"job"`
	DeviceGroup   string      `json:"device_group"`
	Start         string      `json:"start"`
	End           string      `json:"end"`
	CPUHours      json.Number `json:"cpu_hours"`
	OutputsSHA256 string      `json:"outputs_sha256"`
}

// logJob writes a finished lease to the job log: its CPU time as the market metered
// it (the final report's), and the SHA-256 of its units' output hashes in unit order.
func (a *Agent) logJob(w compute.LeaseWork, start time.Time, m *meter) {
	if a.cfg.JobLog == nil {
		return
	}
	cpu, _ := m.read()
	h := sha256.New()
	m.mu.Lock()
	for u := range w.Units {
		o := m.outputs[u]
		h.Write(o[:])
	}
	m.mu.Unlock()
	b, err := json.Marshal(jobLine{Job: w.ID, DeviceGroup: a.cfg.DeviceGroup, Start: start.UTC().Format(time.RFC3339Nano),
		End: time.Now().UTC().Format(time.RFC3339Nano), CPUHours: json.Number(strconv.FormatFloat(cpu.Hours(), 'f', 9, 64)),
		OutputsSHA256: hex.EncodeToString(h.Sum(nil))})
	if err != nil {
		a.log.Warn("job log", "lease", w.ID, "err", err)
		return
	}
	a.logMu.Lock()
	defer a.logMu.Unlock()
	if _, err := a.cfg.JobLog.Write(append(b, '\n')); err != nil {
		a.log.Warn("job log", "lease", w.ID, "err", err)
	}
}
