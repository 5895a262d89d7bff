package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/compute/sandbox"
)

// MaxServiceInstances bounds how many copies of a service one lease runs: one per
// leased core (a wasip1 module has one thread), at most this many.
const MaxServiceInstances = 8

// runService runs a service lease: min(cores, MaxServiceInstances) instances of the
// module, each started once (sandbox.Runner.Serve) and sharing the lease's memory,
// answer the requests the market hands over, one at a time each. Usage is reported
// every interval as for a job. An instance that crashes (exits, traps, breaks the
// framing, or leaves a request unanswered for compute.RequestTimeout) fails the
// request it was answering, if any, and is started again, up to compute.MaxServiceRestarts
// times for the whole lease; the crash after that ends the lease with a final
// report saying why. A reply that says stop kills every instance at once.
func (a *Agent) runService(ctx, lctx context.Context, run *leaseRun, w compute.LeaseWork) {
	stop := run.stop
	defer stop()
	start := time.Now()
	interval := time.Duration(w.IntervalMS) * time.Millisecond
	if interval <= 0 {
		interval = time.Minute
	}
	m := &meter{live: map[unitProcess]bool{}}

	var (
		mu       sync.Mutex // restarts, lastCrash, ended
		restarts int
		crashMsg string
		ended    = make(chan struct{})
		endOnce  sync.Once
	)
	// crashed records a crash and says whether the instance may start again.
	crashed := func(why string) bool {
		mu.Lock()
		defer mu.Unlock()
		crashMsg = why
		if restarts >= compute.MaxServiceRestarts {
			endOnce.Do(func() { close(ended) })
			return false
		}
		restarts++
		a.log.Warn("service crashed; starting it again", "lease", w.ID, "restarts", restarts, "why", why)
		return true
	}

	var seq uint64
	var seqMu sync.Mutex
	report := func(final bool) {
		seqMu.Lock()
		defer seqMu.Unlock()
		cpu, rss := m.read()
		mu.Lock()
		n, why := restarts, crashMsg
		mu.Unlock()
		a.mu.Lock()
		released := run.released
		a.mu.Unlock()
		switch {
		case final && released:
			why = "handed back by its provider (the machine went back to another workload)"
		case final:
			why = fmt.Sprintf("service crashed %d times, the last: %s", n+1, why)
		}
		seq++
		rep := compute.UsageReport{Seq: seq, CPUNS: int64(cpu), WallNS: int64(time.Since(start)), RSS: rss, Final: final, Restarts: n, Reason: why}
		reply, err := a.c.Report(ctx, w.ID, rep)
		for attempt := 0; err != nil && final && attempt < 3 && ctx.Err() == nil; attempt++ {
			sleep(ctx, time.Second)
			reply, err = a.c.Report(ctx, w.ID, rep)
		}
		if err != nil {
			a.log.Warn("usage report", "lease", w.ID, "err", err)
			return
		}
		if reply.Stop {
			a.log.Info("service stopped by the market", "lease", w.ID, "reason", reply.Reason, "charged", reply.Charged)
			stop()
		}
	}

	reqs := make(chan compute.ServiceWork)
	var wg sync.WaitGroup
	wg.Go(func() { a.pollRequests(lctx, w.ID, interval, reqs, stop) })
	n := max(min(w.Cores, MaxServiceInstances), 1)
	// Linear memory of a wasm32 module ends at 4 GiB, the sandbox's bound too.
	spec := sandbox.Spec{Module: w.Module, Args: w.Args, MemoryLimit: min(w.Memory/uint64(n), 4<<30), MaxOutput: compute.MaxResponseBytes}
	for range n {
		wg.Go(func() {
			for lctx.Err() == nil {
				why := a.serveInstance(lctx, w.ID, spec, reqs, m)
				if lctx.Err() != nil || !crashed(why) {
					return
				}
			}
		})
	}
	a.log.Info("service started", "lease", w.ID, "instances", n, "memory_each", spec.MemoryLimit)
	// A first report at once: the market hears that the lease arrived (a large
	// module can take a while to fetch), and a lease it already ended stops here.
	report(false)

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ended:
			if lctx.Err() == nil {
				report(true)
				stop()
			}
			wg.Wait()
			return
		case <-lctx.Done():
			wg.Wait()
			a.mu.Lock()
			released := run.released
			a.mu.Unlock()
			if released && ctx.Err() == nil {
				// Handed back: the final report ends the lease at the market.
				report(true)
			}
			a.log.Info("service lease over", "lease", w.ID, "wall", time.Since(start).Round(time.Millisecond), "handed_back", released)
			return
		case <-ticker.C:
			report(false)
		}
	}
}

// pollRequests long-polls the market for the lease's requests and hands them to the
// instances. A lease the market says is over stops the service.
func (a *Agent) pollRequests(ctx context.Context, lease string, interval time.Duration, out chan<- compute.ServiceWork, stop func()) {
	wait := min(a.cfg.Wait, interval, compute.MaxWait)
	for ctx.Err() == nil {
		ws, err := a.c.ServiceRequests(ctx, lease, wait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var he *hashgrid.Error
			if errors.As(err, &he) && he.Code == hashgrid.ECONFLICT {
				a.log.Info("service lease over at the market", "lease", lease, "err", err)
				stop()
				return
			}
			a.log.Warn("poll for requests", "lease", lease, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		for _, r := range ws {
			select {
			case out <- r:
			case <-ctx.Done():
				return
			}
		}
	}
}

// serveInstance starts one instance of the service and answers requests with it
// until ctx ends (nil reason) or it crashes (the reason).
func (a *Agent) serveInstance(ctx context.Context, lease string, spec sandbox.Spec, reqs <-chan compute.ServiceWork, m *meter) string {
	sv, err := a.cfg.Runner.Serve(ctx, spec)
	if err != nil {
		return "start: " + err.Error()
	}
	m.mu.Lock()
	m.live[sv] = true
	m.mu.Unlock()
	end := func() sandbox.Result {
		sv.Kill()
		res, err := sv.Wait()
		if err != nil && res.Err == "" {
			res.Err = err.Error()
		}
		m.mu.Lock()
		delete(m.live, sv)
		m.done += res.Usage.CPU
		m.mu.Unlock()
		return res
	}
	for {
		var r compute.ServiceWork
		select {
		case r = <-reqs:
		case <-ctx.Done():
			end()
			return ""
		case <-sv.Done():
			// Ended while idle: no request fails, but it is a crash all the same.
			return crashReason(errors.New("service ended while idle"), end())
		}
		rctx, cancel := context.WithTimeout(ctx, compute.RequestTimeout)
		resp, err := sv.Do(rctx, r.Body)
		cancel()
		if err == nil {
			if err := a.c.ServiceRespond(ctx, lease, compute.ServiceResponse{Request: r.ID, Response: resp}); err != nil && ctx.Err() == nil {
				a.log.Warn("response not sent", "lease", lease, "request", r.ID, "err", err)
			}
			continue
		}
		if ctx.Err() != nil {
			end()
			return ""
		}
		res := end()
		why := crashReason(err, res)
		if err := a.c.ServiceRespond(ctx, lease, compute.ServiceResponse{Request: r.ID, Err: why}); err != nil && ctx.Err() == nil {
			a.log.Warn("failure not sent", "lease", lease, "request", r.ID, "err", err)
		}
		return why
	}
}

// crashReason says why a service instance stopped answering: the request's error,
// how the instance ended, and the last line of its standard error.
func crashReason(err error, res sandbox.Result) string {
	why := err.Error()
	switch {
	case res.Err != "":
		why += "; " + res.Err
	default:
		why += fmt.Sprintf("; exit %d", res.ExitCode)
	}
	if line := telling(string(res.Stderr)); line != "" {
		why += "; stderr: " + line
	}
	return why
}

// telling picks the line of a crashed service's standard error that says most: a Go
// runtime's "panic:" or "fatal error:" line, else the last line.
func telling(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") {
			return l
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}
