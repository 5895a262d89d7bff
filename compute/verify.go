package compute

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"time"
)

// sameOutput reports whether two runs of a unit agree: the same exit code and the
// same standard output, byte for byte. Standard error is not compared (runtimes may
// word their traps differently).
func sameOutput(a, b *UnitResult) bool {
	return a.ExitCode == b.ExitCode && bytes.Equal(a.Stdout, b.Stdout)
}

// verifyLocked moves o's spot checks on. The main lease's sampled units are re-run
// by a check lease on another provider; each sampled unit is compared as soon as both
// have run it. A disagreement is ruled by a third provider (the tie-break lease),
// which re-runs the disputed units: whichever of the two it contradicts is faulted —
// its lease ends, it is marked, and what it was charged returns to the tenant. With
// no third provider to rule, the main lease is faulted: the tenant is never left
// paying for outputs that a re-run contradicted.
//
// The verdict is "pass" once the main lease and the check are over with no dispute
// open, "fault" once the main lease is faulted, "unchecked" when the main lease ended
// and no other provider could take the check. Earnings are released only once there
// is a verdict (see nextMoneyLocked).
func (b *Book) verifyLocked(o *order) {
	L := o.main
	if L == nil || o.verdict != "" {
		return
	}
	now := b.cfg.Now()
	if o.req.NoVerify {
		if terminal(L.status) {
			o.verdict = "unchecked"
		}
		return
	}
	if len(o.mismatch) == 0 && (o.check == nil || terminal(o.check.status)) && b.uncheckedLocked(o) > 0 {
		// No check yet, or the check ended (or was faulted) before confirming every
		// sampled unit: look for a provider (again).
		b.startCheckLocked(o)
	}
	C := o.check
	if C != nil && !C.faulted {
		for _, u := range o.sample {
			if o.checked[u] || o.mismatch[u] {
				continue
			}
			a, c := L.out[u], C.out[u]
			if a == nil || c == nil {
				continue
			}
			if sameOutput(a, c) {
				o.checked[u] = true
				continue
			}
			o.mismatch[u] = true
			o.logf(now, "spot check: unit %d differs between lease %s (provider %s) and lease %s (provider %s)", u, L.id, L.p.id, C.id, C.p.id)
		}
	}
	if len(o.mismatch) > 0 {
		T := o.tiebreak
		if T == nil {
			T = b.startTiebreakLocked(o)
		}
		if T == nil {
			if !b.couldRunLocked(o, L.p, C.p) {
				b.faultLocked(L, "its outputs differ from a re-run on another provider, and no third provider is online to rule")
			}
			// Otherwise a third provider is busy: the tick asks again.
			return
		}
		for _, u := range slices.Sorted(maps.Keys(o.mismatch)) {
			t := T.out[u]
			if t == nil {
				continue
			}
			if sameOutput(t, L.out[u]) {
				delete(o.mismatch, u)
				o.checked[u] = true
				b.faultLocked(C, fmt.Sprintf("unit %d: a third provider agrees with the job, not with this check", u))
				continue
			}
			b.faultLocked(L, fmt.Sprintf("unit %d: outputs differ from re-runs on other providers", u))
			return
		}
		if len(o.mismatch) > 0 && terminal(T.status) {
			b.faultLocked(L, "a disputed unit could not be ruled on: the tie-break lease ended without it")
			return
		}
	}
	if !terminal(L.status) {
		return
	}
	switch {
	case len(o.mismatch) > 0:
	case o.check == nil:
		// Wait while some other provider could take the check once it has room;
		// give up a few intervals after none could.
		if b.couldCheckLocked(o) {
			o.noChecker = time.Time{}
		} else if o.noChecker.IsZero() {
			o.noChecker = now
		}
		if !o.noChecker.IsZero() && now.Sub(o.noChecker) > time.Duration(b.cfg.MissedReports)*b.cfg.Interval {
			o.verdict = "unchecked"
			o.logf(now, "no other provider could re-run the sample: job not spot-checked")
		}
	case terminal(o.check.status) && (o.tiebreak == nil || terminal(o.tiebreak.status)) &&
		(b.uncheckedLocked(o) == 0 || o.checks >= maxChecksPerOrder):
		o.verdict = "pass"
		o.logf(now, "spot check passed: %d of %d sampled units confirmed", len(o.checked), len(o.sample))
	}
}

// couldCheckLocked reports whether a provider other than the job's could re-run its
// sample, now or once it has room.
func (b *Book) couldCheckLocked(o *order) bool { return b.couldRunLocked(o, o.main.p) }

// couldRunLocked reports whether a provider not in except is online, not marked,
// within the order's prices and large enough for it, busy or not.
func (b *Book) couldRunLocked(o *order, except ...*provider) bool {
	for _, p := range b.providers {
		if !slices.Contains(except, p) && b.online(p) && !p.marked && p.price <= o.req.MaxPrice && p.memPrice <= o.req.MaxMemPrice &&
			p.res.Cores >= o.req.Cores && p.res.Memory >= o.req.Memory {
			return true
		}
	}
	return false
}

// uncheckedLocked counts the sampled units that still need a re-run: neither
// confirmed nor disputed nor re-run by the current check, and run by the job or
// still to be run by it.
func (b *Book) uncheckedLocked(o *order) int {
	return len(b.toCheckLocked(o))
}

func (b *Book) toCheckLocked(o *order) []int {
	var out []int
	for _, u := range o.sample {
		switch {
		case o.checked[u] || o.mismatch[u]:
		case terminal(o.main.status) && o.main.out[u] == nil:
			// The job ended without it: nothing to compare.
		case o.check != nil && !o.check.faulted && o.check.out[u] != nil:
			// The check has run it; the job has yet to.
		default:
			out = append(out, u)
		}
	}
	return out
}

// startTiebreakLocked leases the disputed units to a provider other than the job's
// and the check's, or returns nil when none fits.
func (b *Book) startTiebreakLocked(o *order) *lease {
	units := slices.Sorted(maps.Keys(o.mismatch))
	for _, p := range b.sortedProvidersLocked() {
		if p == o.main.p || p == o.check.p || !b.fits(p, o) {
			continue
		}
		o.tiebreak = b.newLeaseLocked(o, p, "check", units)
		return o.tiebreak
	}
	return nil
}

// faultLocked ends l for wrong results and marks its provider. A faulted job ends
// its order; the order's other leases stop.
func (b *Book) faultLocked(l *lease, why string) {
	if l.faulted {
		return
	}
	l.faulted = true
	l.p.marked = true
	l.p.faults++
	if terminal(l.status) {
		l.status, l.reason = LeaseFaulted, why
		l.o.logf(b.cfg.Now(), "lease %s faulted: %s", l.id, why)
	} else {
		b.endLocked(l, LeaseFaulted, why)
	}
	o := l.o
	if l != o.main {
		return
	}
	o.verdict = "fault"
	o.status, o.reason = OrderFailed, "provider "+l.p.id+" returned wrong results"
	for _, c := range o.leases {
		// A check that has returned every unit is left to send its final report:
		// it did its work.
		if len(c.out) < len(c.units) {
			b.endLocked(c, LeaseCancelled, "the job was faulted")
		}
	}
}
