package power

import "math"

// solve finds the path of states over T intervals from start that maximises the sum of
// reward(t, from, to), subject to the model's constraints under cond(t). It returns the
// path and its value. Ties keep the current mode, so the path is deterministic.
func (m *Model) solve(start State, T int, reward func(t, from, to int) int64, cond func(t int) Conditions) ([]uint8, int64) {
	S, A := m.States()*m.Dwell, m.States()
	choice := make([]uint8, T*S)
	next := make([]int64, S) // value from t+1 on, by state
	cur := make([]int64, S)
	r := make([]int64, A*A)
	for t := T - 1; t >= 0; t-- {
		c := cond(t)
		for f := range A {
			for to := range A {
				r[f*A+to] = reward(t, f, to)
			}
		}
		for i := range S {
			s := m.state(i)
			best, arg := int64(math.MinInt64), s.Mode
			for k := range A {
				// Evaluate the current mode first so that ties keep it.
				to := (s.Mode + k) % A
				if !m.Allowed(s, to, c) {
					continue
				}
				v := r[s.Mode*A+to] + next[m.index(m.Next(s, to))]
				if v > best {
					best, arg = v, to
				}
			}
			cur[i] = best
			choice[t*S+i] = uint8(arg)
		}
		cur, next = next, cur
	}
	path := make([]uint8, T)
	s := start
	for t := range T {
		to := int(choice[t*S+m.index(s)])
		path[t] = uint8(to)
		s = m.Next(s, to)
	}
	return path, next[m.index(start)]
}

// planner is a reusable receding-horizon solver for one model: the same programme as
// solve, over a short horizon of forecast prices, returning only the first decision.
type planner struct {
	m         *Model
	next, cur []int64
	r         []int64
}

func newPlanner(m *Model) *planner {
	S, A := m.States()*m.Dwell, m.States()
	return &planner{m: m, next: make([]int64, S), cur: make([]int64, S), r: make([]int64, A*A)}
}

// values sets val[a], for every first decision a from s, to the best total reward over
// len(prices) intervals that starts with a (math.MinInt64 where a is not allowed). The
// reward of an interval is revenue(from,to) − cost of its energy at the forecast price.
// c applies to the first interval; later intervals are assumed unconstrained by events.
func (p *planner) values(s State, revenue [][]Micro, prices []Price, c Conditions, val []int64) {
	m := p.m
	S, A := m.States()*m.Dwell, m.States()
	clear(p.next)
	for t := len(prices) - 1; t >= 1; t-- {
		p.rewards(revenue, prices[t])
		for i := range S {
			st := m.state(i)
			best := int64(math.MinInt64)
			for to := range A {
				if !m.Allowed(st, to, Conditions{}) {
					continue
				}
				best = max(best, p.r[st.Mode*A+to]+p.next[m.index(m.Next(st, to))])
			}
			p.cur[i] = best
		}
		p.cur, p.next = p.next, p.cur
	}
	p.rewards(revenue, prices[0])
	for to := range A {
		val[to] = math.MinInt64
		if m.Allowed(s, to, c) {
			val[to] = p.r[s.Mode*A+to] + p.next[m.index(m.Next(s, to))]
		}
	}
}

func (p *planner) rewards(revenue [][]Micro, price Price) {
	m := p.m
	A := m.States()
	for f := range A {
		for to := range A {
			p.r[f*A+to] = int64(revenue[f][to] - EnergyCost(price, m.energyWh[f][to]))
		}
	}
}
