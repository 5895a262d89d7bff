package pool

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid"
)

// simulate feeds a session shares from a device of the given hashrate, arriving as a
// Poisson process (at most maxRate shares per second: a device's link and firmware cap
// how fast it can submit), and returns the difficulty over time.
func simulate(t *testing.T, p *Pool, hashrate, maxRate float64, dur time.Duration, seed uint64) (final float64, convergedAt time.Duration) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	start := time.Unix(1_700_000_000, 0)
	now := start
	s := &session{windowStart: now}
	s.diff = p.clampDiff(p.cfg.StartDiff)
	ideal := hashrate * p.cfg.ShareInterval.Seconds() / math.Exp2(32)
	convergedAt = -1
	for now.Sub(start) < dur {
		mean := s.diff.Float() * math.Exp2(32) / hashrate
		gap := r.ExpFloat64() * mean
		if gap < 1/maxRate {
			gap = 1 / maxRate
		}
		now = now.Add(time.Duration(gap * float64(time.Second)))
		s.mu.Lock()
		s.idleRetarget(p, now)
		s.mu.Unlock()
		s.accepted(p, s.diff, now)
		// Converged: first within 2x of the ideal difficulty, and from then on never
		// further than 3x from it.
		ratio := s.diff.Float() / ideal
		switch {
		case convergedAt < 0 && ratio > 0.5 && ratio < 2:
			convergedAt = now.Sub(start)
		case convergedAt >= 0 && (ratio < 1.0/3 || ratio > 3):
			t.Errorf("difficulty %g wandered to %.2fx the ideal %g at %v", s.diff.Float(), ratio, ideal, now.Sub(start))
			return s.diff.Float(), convergedAt
		}
	}
	return s.diff.Float(), convergedAt
}

func TestVardiffConverges(t *testing.T) {
	p := testPool(t, time.Now())
	tests := []struct {
		name     string
		hashrate float64
		maxRate  float64
		within   time.Duration
	}{
		{"10 MH/s CPU thread", 10e6, 1000, 3 * time.Minute},
		{"1.2 TH/s Bitaxe", 1.2e12, 200, time.Minute},
		{"200 TH/s ASIC", 200e12, 200, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 5; seed++ {
				final, at := simulate(t, p, tt.hashrate, tt.maxRate, 30*time.Minute, seed)
				ideal := tt.hashrate * p.cfg.ShareInterval.Seconds() / math.Exp2(32)
				if at < 0 || at > tt.within {
					t.Errorf("seed %d: converged at %v (want within %v); final %g, ideal %g", seed, at, tt.within, final, ideal)
				}
				if seed == 1 {
					t.Logf("converged after %v to %.4g (ideal %.4g)", at, final, ideal)
				}
			}
		})
	}
}

func TestVardiffSlowDeviceComesDown(t *testing.T) {
	// A 1 MH/s device that starts far too high (suggested difficulty 1: one share per
	// 72 minutes) is brought down by the idle rule without finding shares first.
	p := testPool(t, time.Now())
	start := time.Unix(1_700_000_000, 0)
	s := &session{windowStart: start, diff: hashgrid.DiffOne}
	now := start
	for i := 0; i < 40; i++ { // a job every 30 s for 20 minutes, no shares
		now = now.Add(30 * time.Second)
		s.idleRetarget(p, now)
	}
	if d := s.diff.Float(); d > 0.01 {
		t.Errorf("difficulty still %g after 20 silent minutes", d)
	}
}

func TestVardiffFixedDifficulty(t *testing.T) {
	p := testPool(t, time.Now())
	s := &session{windowStart: time.Unix(0, 0), fixed: true, diff: hashgrid.DiffFromFloat(0.01)}
	for i := 1; i <= 100; i++ {
		if s.accepted(p, s.diff, time.Unix(0, int64(i)*int64(time.Millisecond))) {
			t.Fatal("fixed difficulty changed")
		}
	}
}
