package power

import (
	"fmt"
	"math"
)

// Model is the interval model of one machine group: identical machines that run in the
// same state. State 0 is curtailed; state i (1..len(Modes)) is Modes[i-1].
//
// Switching a curtailed group on wakes StaggerBatch machines every StaggerEvery from
// the start of the interval; each draws its mode's power from waking and hashes after
// Boot. Curtailing puts batches to sleep on the same stagger, so the machines hash until
// their batch sleeps. A change between two power modes takes effect at once. These
// ramps are what the group uses and earns in the interval of a transition, for every
// strategy and for the optimum alike.
type Model struct {
	Name   string
	Count  int
	Modes  []ModeConfig
	MinOn  int // intervals a group stays on once switched on
	MinOff int // intervals a group stays off once curtailed
	Dwell  int // cap of the dwell counter: max(MinOn, MinOff)

	energyWh  [][]int64   // [from][to], whole group, one interval
	thSeconds [][]float64 // [from][to], whole group, TH·s in one interval
}

// NewModel builds the interval model of a group.
func NewModel(g GroupConfig) (*Model, error) {
	m := &Model{Name: g.Name, Count: g.Count, Modes: g.Modes}
	m.MinOn = ceilIntervals(g.MinOn.Seconds())
	m.MinOff = ceilIntervals(g.MinOff.Seconds())
	m.Dwell = max(m.MinOn, m.MinOff, 1)
	batches := (g.Count + g.StaggerBatch - 1) / g.StaggerBatch
	lastWake := float64(batches-1) * g.StaggerEvery.Seconds()
	if lastWake+g.Boot.Seconds() >= intervalSeconds {
		return nil, fmt.Errorf("group %s: ramp of %d batches every %v plus boot %v does not fit in one %v interval",
			g.Name, batches, g.StaggerEvery.Duration, g.Boot.Duration, IntervalLength)
	}
	n := len(g.Modes) + 1
	m.energyWh = make([][]int64, n)
	m.thSeconds = make([][]float64, n)
	watts := func(s int) float64 {
		if s == 0 {
			return g.SleepWatts
		}
		return g.Modes[s-1].Watts
	}
	ths := func(s int) float64 {
		if s == 0 {
			return 0
		}
		return g.Modes[s-1].THs
	}
	for from := range n {
		m.energyWh[from] = make([]int64, n)
		m.thSeconds[from] = make([]float64, n)
		for to := range n {
			var joules, thsec float64
			for b := range batches {
				k := min(g.StaggerBatch, g.Count-b*g.StaggerBatch)
				at := float64(b) * g.StaggerEvery.Seconds()
				var j, h float64
				switch {
				case (from == 0) == (to == 0): // steady, or a mode change
					j = intervalSeconds * watts(to)
					h = intervalSeconds * ths(to)
				case to == 0: // ramp down: hashing until the batch sleeps
					j = at*watts(from) + (intervalSeconds-at)*watts(0)
					h = at * ths(from)
				default: // ramp up: drawing from waking, hashing after boot
					j = at*watts(0) + (intervalSeconds-at)*watts(to)
					h = (intervalSeconds - at - g.Boot.Seconds()) * ths(to)
				}
				joules += float64(k) * j
				thsec += float64(k) * h
			}
			m.energyWh[from][to] = int64(math.Round(joules / 3600))
			m.thSeconds[from][to] = thsec
		}
	}
	return m, nil
}

func ceilIntervals(sec float64) int {
	return max(1, int(math.Ceil(sec/intervalSeconds-1e-9)))
}

// States returns the number of modes plus one (curtailed).
func (m *Model) States() int { return len(m.Modes) + 1 }

// ModeName names state s.
func (m *Model) ModeName(s int) string {
	if s == 0 {
		return Curtailed
	}
	return m.Modes[s-1].Name
}

// EnergyWh returns the group's energy in an interval that moves it from one state to
// another (from == to for a steady interval).
func (m *Model) EnergyWh(from, to int) int64 { return m.energyWh[from][to] }

// THSeconds returns the group's hashing in such an interval, in TH·s.
func (m *Model) THSeconds(from, to int) float64 { return m.thSeconds[from][to] }

// Revenue returns the group's mining revenue in such an interval at hashprice hp
// ($ per TH/s per day, before the pool fee).
func (m *Model) Revenue(from, to int, hp, poolFee float64) Micro {
	return MicroFromDollars(m.thSeconds[from][to] * hp / 86400 * (1 - poolFee))
}

// State is where a group stands: its mode and how many intervals it has been on (or
// off), capped at the model's Dwell.
type State struct {
	Mode  int
	Dwell int
}

// Conditions are the published facts that widen or narrow the choices in an interval.
type Conditions struct {
	ForcedOff   bool // a demand-response event: the group must be off
	ShedAllowed bool // the last published price is at or above the shed price
}

// Allowed reports whether the group may go from s to state to.
func (m *Model) Allowed(s State, to int, c Conditions) bool {
	if c.ForcedOff {
		return to == 0
	}
	switch {
	case s.Mode > 0 && to == 0:
		return s.Dwell >= m.MinOn || c.ShedAllowed
	case s.Mode == 0 && to > 0:
		return s.Dwell >= m.MinOff
	}
	return true
}

// Next returns the state after an interval spent moving from s to to.
func (m *Model) Next(s State, to int) State {
	if (s.Mode == 0) == (to == 0) {
		return State{Mode: to, Dwell: min(s.Dwell+1, m.Dwell)}
	}
	return State{Mode: to, Dwell: 1}
}

// Feasible returns want if it is allowed from s, otherwise the nearest allowed choice:
// off when forced, else the current on/off status (in the wanted mode when staying on).
func (m *Model) Feasible(s State, want int, c Conditions) int {
	if want < 0 || want >= m.States() {
		want = s.Mode
	}
	if m.Allowed(s, want, c) {
		return want
	}
	if c.ForcedOff {
		return 0
	}
	return s.Mode
}

// index maps a state to a dense index for the dynamic programme.
func (m *Model) index(s State) int { return s.Mode*m.Dwell + s.Dwell - 1 }

func (m *Model) state(i int) State { return State{Mode: i / m.Dwell, Dwell: i%m.Dwell + 1} }
