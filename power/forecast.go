package power

// Forecaster predicts the next prices from the published ones. For every lead k it
// keeps the mean change from the last price to the price k+1 intervals later,
// conditioned on the price band of the last two prices, learnt online from the history
// it has seen. Sparse bands are shrunk toward the band of the last price alone, and
// that toward no change (persistence), with weight prior: with no history it forecasts
// the last price, like the last-price rule. Sums are floats: a forecast is a rate.
type Forecaster struct {
	horizon int
	prior   float64
	n       int     // prices observed
	last    []Price // the last horizon+1 prices, oldest first
	cell    [][]stat
	band    [][]stat
}

type stat struct {
	sum float64 // dollars per MWh
	n   float64
}

// bandEdges split prices ($/MWh ×100) into bands; heavy tails get wide bands.
var bandEdges = [...]Price{0, 2500, 5000, 10000, 20000, 40000, 80000, 160000, 320000}

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
	for i := range f.cell {
		f.cell[i] = make([]stat, f.horizon)
	}
	for i := range f.band {
		f.band[i] = make([]stat, f.horizon)
	}
}

// Observe learns from one newly published price.
func (f *Forecaster) Observe(p Price) {
	f.last = append(f.last, p)
	if len(f.last) > f.horizon+2 {
		f.last = f.last[1:]
	}
	f.n++
	L := len(f.last)
	// The newest price is the outcome at lead k for the origin k+1 intervals back.
	for k := 0; k < f.horizon; k++ {
		o := L - 2 - k
		if o < 1 {
			break
		}
		d := (p - f.last[o]).Dollars()
		b1, b2 := bandOf(f.last[o]), bandOf(f.last[o-1])
		c := &f.cell[b1*nBands+b2][k]
		c.sum += d
		c.n++
		b := &f.band[b1][k]
		b.sum += d
		b.n++
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

// Forecast appends the expected prices of the next horizon intervals to dst, given the
// published history (the last element is the most recent price).
func (f *Forecaster) Forecast(h []Price, dst []Price) []Price {
	f.sync(h)
	if len(h) == 0 {
		return dst
	}
	last := h[len(h)-1]
	b1, b2 := bandOf(last), bandOf(last)
	if len(h) >= 2 {
		b2 = bandOf(h[len(h)-2])
	}
	for k := 0; k < f.horizon; k++ {
		b := f.band[b1][k]
		dBand := safeDiv(b.sum, b.n+f.prior)
		c := f.cell[b1*nBands+b2][k]
		d := safeDiv(c.sum+f.prior*dBand, c.n+f.prior)
		dst = append(dst, last+Price(d*100))
	}
	return dst
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
