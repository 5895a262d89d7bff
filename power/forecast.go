package power

import "math"

// Forecaster predicts the next prices from the published ones. For every lead k it
// keeps the mean change from the last price to the price k+1 intervals later,
// conditioned on the price band of the last two prices and on the price a day before
// the forecast interval, learnt online from the history it has seen. A cell's mean is
// used only when it stands out from its noise, and then shrunk toward its fallback:
// the same bands without the day-before price, then the band of the last price alone,
// then no change (persistence), each with weight prior. With no history it forecasts
// the last price, like the last-price rule. Sums are floats: a forecast is a rate.
//
// The day-before price stands for the daily cycle and for the weather that persists
// from one day to the next: a price of $300 at 03:00 after a calm night tends to fall
// back, while the same price at 15:00 on the second day of a heat wave tends to climb.
// The day is counted in intervals (96 of 15 minutes), so on the two daylight-saving
// days it is an hour off in wall-clock terms.
type Forecaster struct {
	horizon int
	prior   float64
	n       int      // prices observed
	last    []Price  // the last day+horizon+2 prices, oldest first
	ctx     [][]stat // by (band of last, band of the one before, day-before group)
	cell    [][]stat // by (band of last, band of the one before)
	band    [][]stat // by band of last
	// The next price's distribution (lead 1), by the band it falls in: count and sum of
	// the changes, by (band of last, band of the one before, outcome band) and by (band
	// of last, outcome band).
	nextCtx  []stat
	nextCell []stat
	nextBand []stat
}

// day is the number of intervals in a day: the lag of the seasonal context.
const day = 96

// nDay is the number of day-before groups: none known yet, then the price bands in
// consecutive threes (coarser than the bands, so that the cells fill).
const nDay = 1 + (nBands+2)/3

// dayGroup returns the day-before group of a price a day before the forecast interval.
func dayGroup(p Price) int { return 1 + bandOf(p)/3 }

// significance is how many standard errors a learnt mean change must stand out by
// before it replaces its fallback (inherited from the first, in-sample sweep recorded
// in docs/benchmarks.md; not re-tuned).
const significance = 1.0

type stat struct {
	sum, sq float64 // dollars per MWh, and squared
	n       float64
}

func (s *stat) add(d float64) {
	s.sum += d
	s.sq += d * d
	s.n++
}

// estimate returns the shrunk mean of the changes, its standard error and the
// standard deviation of the changes if the mean stands out from its noise by
// significance standard errors, otherwise the fallback (with the larger of its and
// this cell's standard error and deviation): heavy-tailed prices make most cells noisy.
func (s stat) estimate(prior, fallback, fallbackSE, fallbackSD float64) (mean, se, sd float64) {
	if s.n < 2 {
		return fallback, fallbackSE, fallbackSD
	}
	m := s.sum / s.n
	v := max(0, s.sq/s.n-m*m)
	if (m-fallback)*(m-fallback)*s.n < significance*significance*v {
		return fallback, max(fallbackSE, math.Sqrt(v/s.n)), max(fallbackSD, math.Sqrt(v))
	}
	return (s.sum + prior*fallback) / (s.n + prior), math.Sqrt(v / (s.n + prior)), math.Sqrt(v)
}

// bandEdges split prices ($/MWh ×100) into bands; heavy tails get wide bands.
var bandEdges = [...]Price{0, 1500, 2500, 3500, 5000, 7500, 10000, 15000, 20000, 30000, 40000, 60000, 80000, 120000, 160000, 240000, 320000, 500000}

const nBands = len(bandEdges) + 1

func bandOf(p Price) int {
	for i, e := range bandEdges {
		if p < e {
			return i
		}
	}
	return len(bandEdges)
}

// NewForecaster returns a forecaster for horizon leads with the given prior weight.
func NewForecaster(horizon int, prior float64) *Forecaster {
	f := &Forecaster{horizon: horizon, prior: prior}
	f.reset()
	return f
}

func (f *Forecaster) reset() {
	f.n = 0
	f.last = f.last[:0]
	f.cell = make([][]stat, nBands*nBands)
	f.band = make([][]stat, nBands)
	f.ctx = make([][]stat, nBands*nBands*nDay)
	for i := range f.ctx {
		f.ctx[i] = make([]stat, f.horizon)
	}
	for i := range f.cell {
		f.cell[i] = make([]stat, f.horizon)
	}
	for i := range f.band {
		f.band[i] = make([]stat, f.horizon)
	}
	f.nextCtx = make([]stat, nBands*nBands*nDay*nBands)
	f.nextCell = make([]stat, nBands*nBands*nBands)
	f.nextBand = make([]stat, nBands*nBands)
}

// Observe learns from one newly published price.
func (f *Forecaster) Observe(p Price) {
	f.last = append(f.last, p)
	if len(f.last) > day+f.horizon+2 {
		f.last = f.last[1:]
	}
	f.n++
	L := len(f.last)
	// The newest price is the outcome at lead k for the origin k+1 intervals back.
	z := 0
	if L-1-day >= 0 {
		z = dayGroup(f.last[L-1-day])
	}
	for k := 0; k < f.horizon; k++ {
		o := L - 2 - k
		if o < 1 {
			break
		}
		d := (p - f.last[o]).Dollars()
		b1, b2 := bandOf(f.last[o]), bandOf(f.last[o-1])
		f.ctx[(b1*nBands+b2)*nDay+z][k].add(d)
		f.cell[b1*nBands+b2][k].add(d)
		f.band[b1][k].add(d)
		if k == 0 {
			bo := bandOf(p)
			f.nextCtx[((b1*nBands+b2)*nDay+z)*nBands+bo].add(d)
			f.nextCell[(b1*nBands+b2)*nBands+bo].add(d)
			f.nextBand[b1*nBands+bo].add(d)
		}
	}
}

// sync brings the forecaster up to date with history, replaying it from the start if
// it is not the continuation of what was observed.
func (f *Forecaster) sync(h []Price) {
	if len(h) < f.n || (f.n > 0 && len(f.last) > 0 && h[f.n-1] != f.last[len(f.last)-1]) {
		f.reset()
	}
	for _, p := range h[f.n:] {
		f.Observe(p)
	}
}

// Forecast appends the expected prices of the next horizon intervals to mean, the
// standard errors of those expectations in $/MWh to se, and the standard deviations
// of the prices about them (how far one outcome strays from the expectation, however
// well the expectation is known) to spread, given the published history (the last
// element is the most recent price).
func (f *Forecaster) Forecast(h []Price, mean []Price, se, spread []float64) ([]Price, []float64, []float64) {
	f.sync(h)
	if len(h) == 0 {
		return mean, se, spread
	}
	last, prev := h[len(h)-1], h[len(h)-1]
	if len(h) >= 2 {
		prev = h[len(h)-2]
	}
	return f.predict(last, prev, 0, mean, se, spread)
}

// ForecastAfter is Forecast for the intervals after the next one, as it will read once
// the next price is published at next: the history last given to Forecast, then next.
func (f *Forecaster) ForecastAfter(next Price, mean []Price, se, spread []float64) ([]Price, []float64, []float64) {
	if len(f.last) == 0 {
		return mean, se, spread
	}
	return f.predict(next, f.last[len(f.last)-1], 1, mean, se, spread)
}

// predict forecasts from a last price and the one before it; ahead is how many
// hypothetical prices (0 or 1, the last) follow the observed ones.
func (f *Forecaster) predict(last, prev Price, ahead int, mean []Price, se, spread []float64) ([]Price, []float64, []float64) {
	b1, b2 := bandOf(last), bandOf(prev)
	L := len(f.last)
	for k := 0; k < f.horizon; k++ {
		z := 0
		if i := L + ahead + k - day; i >= 0 && i < L {
			z = dayGroup(f.last[i])
		} else if i == L && ahead == 1 {
			z = dayGroup(last)
		}
		dBand, seBand, sdBand := f.band[b1][k].estimate(f.prior, 0, 0, 0)
		dCell, seCell, sdCell := f.cell[b1*nBands+b2][k].estimate(f.prior, dBand, seBand, sdBand)
		d, e, sd := f.ctx[(b1*nBands+b2)*nDay+z][k].estimate(f.prior, dCell, seCell, sdCell)
		mean = append(mean, last+Price(math.Round(d*100)))
		se = append(se, e)
		spread = append(spread, sd)
	}
	return mean, se, spread
}

// Outcome is one outcome of the next price, with its probability.
type Outcome struct {
	Price  Price
	Weight float64
}

// Next appends to out the distribution of the next price after the history last given
// to Forecast, as a few weighted outcomes whose mean is mean (the forecast of lead 1):
// the changes seen in the forecaster's context of the next interval (the bands of the
// last two prices and the day-before group), grouped by the band they ended in, shrunk
// (weight prior) toward those seen after the same two bands, these toward those seen
// after the band of the last price alone, and these toward no change; then shifted so
// that their mean is the forecast's.
func (f *Forecaster) Next(mean Price, out []Outcome) []Outcome {
	L := len(f.last)
	if L == 0 {
		return append(out, Outcome{Price: mean, Weight: 1})
	}
	last, prev := f.last[L-1], f.last[L-1]
	if L >= 2 {
		prev = f.last[L-2]
	}
	b1, b2 := bandOf(last), bandOf(prev)
	z := 0
	if i := L - day; i >= 0 {
		z = dayGroup(f.last[i])
	}
	// w and m: weight and mean change of each outcome band, the last slot no change.
	var w, m [nBands + 1]float64
	w[nBands] = 1
	levels := [][]stat{
		f.nextBand[b1*nBands : (b1+1)*nBands],
		f.nextCell[(b1*nBands+b2)*nBands : (b1*nBands+b2+1)*nBands],
		f.nextCtx[((b1*nBands+b2)*nDay+z)*nBands : ((b1*nBands+b2)*nDay+z+1)*nBands],
	}
	for _, lv := range levels {
		var n float64
		for bo := range nBands {
			n += lv[bo].n
		}
		for bo := range nBands + 1 {
			var s stat
			if bo < nBands {
				s = lv[bo]
			}
			wc := s.n + f.prior*w[bo]
			if wc > 0 {
				m[bo] = (s.sum + f.prior*w[bo]*m[bo]) / wc
			}
			w[bo] = wc / (n + f.prior)
		}
	}
	var sum float64
	for bo := range nBands + 1 {
		sum += w[bo] * m[bo]
	}
	shift := (mean - last).Dollars() - sum
	for bo := range nBands + 1 {
		if w[bo] > 0 {
			out = append(out, Outcome{Price: last + Price(math.Round((m[bo]+shift)*100)), Weight: w[bo]})
		}
	}
	return out
}
