package model

import (
	"errors"
	"fmt"
	"math"
)

// TrainConfig says how Train fits a network.
type TrainConfig struct {
	Hidden int     // hidden units
	Epochs int     // passes over the examples
	Rate   float64 // learning rate of the first epochs; it falls as 1/(1+epoch/RateStep)
	// RateStep is how many epochs each fall of the rate takes.
	RateStep int
	Seed     uint64 // seeds the initial weights and the order of examples
}

// DefaultTrainConfig made digits.weights.
var DefaultTrainConfig = TrainConfig{Hidden: 64, Epochs: 40, Rate: 0.05, RateStep: 8, Seed: 1}

// Train fits a network to the examples by stochastic gradient descent on the squared
// error against one-hot classes, then quantizes it.
//
// Why it is written the way it is: the same examples and config must give the same
// bytes on every machine, so that digits.weights can be checked by regenerating it.
// Go may fuse x*y+z into one instruction on some architectures, rounding once instead
// of twice; every product that is added is therefore converted explicitly, which the
// language guarantees prevents fusion. The random numbers come from a fixed generator
// here. Of the math library only Sqrt and Round are used: both are correctly rounded
// on every machine, unlike Exp or Log, whose assembly and Go versions may differ in
// the last bit.
func Train(ex []Example, cfg TrainConfig) (*Net, error) {
	if len(ex) == 0 {
		return nil, errors.New("model: train: no examples")
	}
	if cfg.Hidden < 1 || cfg.Hidden > MaxHidden || cfg.Epochs < 1 || cfg.Rate <= 0 || cfg.RateStep < 1 {
		return nil, fmt.Errorf("model: train: bad config %+v", cfg)
	}
	h := cfg.Hidden
	rng := splitmix(cfg.Seed)
	w1 := make([]float64, h*Inputs)
	b1 := make([]float64, h)
	w2 := make([]float64, Classes*h)
	b2 := make([]float64, Classes)
	// Uniform in ±1/sqrt(fan-in), the usual scale for a layer's starting weights.
	for i := range w1 {
		w1[i] = rng.uniform(0.125) // 1/sqrt(64)
	}
	for i := range w2 {
		w2[i] = rng.uniform(1 / math.Sqrt(float64(h)))
	}

	order := make([]int, len(ex))
	for i := range order {
		order[i] = i
	}
	var (
		x       [Inputs]float64
		z, a, d = make([]float64, h), make([]float64, h), make([]float64, h)
		e       [Classes]float64
	)
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		rate := cfg.Rate / float64(1+epoch/cfg.RateStep)
		for i := len(order) - 1; i > 0; i-- {
			j := int(rng.next() % uint64(i+1))
			order[i], order[j] = order[j], order[i]
		}
		for _, idx := range order {
			xm := &ex[idx]
			for k, v := range xm.Digit {
				x[k] = float64(v) / MaxCount
			}
			for j := 0; j < h; j++ {
				s := b1[j]
				row := w1[j*Inputs : (j+1)*Inputs]
				for k := range x {
					s += float64(row[k] * x[k])
				}
				z[j] = s
				a[j] = max(s, 0)
			}
			for i := 0; i < Classes; i++ {
				s := b2[i]
				row := w2[i*h : (i+1)*h]
				for j := range a {
					s += float64(row[j] * a[j])
				}
				e[i] = s
				if i == xm.Label {
					e[i] = s - 1
				}
			}
			// Back-propagate into the hidden layer before the output weights move.
			for j := 0; j < h; j++ {
				var s float64
				if z[j] > 0 {
					for i := 0; i < Classes; i++ {
						s += float64(e[i] * w2[i*h+j])
					}
				}
				d[j] = s
			}
			for i := 0; i < Classes; i++ {
				g := float64(rate * e[i])
				b2[i] -= g
				row := w2[i*h : (i+1)*h]
				for j := range a {
					row[j] -= float64(g * a[j])
				}
			}
			for j := 0; j < h; j++ {
				if d[j] == 0 {
					continue
				}
				g := float64(rate * d[j])
				b1[j] -= g
				row := w1[j*Inputs : (j+1)*Inputs]
				for k := range x {
					row[k] -= float64(g * x[k])
				}
			}
		}
	}
	return quantize(h, w1, b1, w2, b2)
}

// quantize turns the float network into int8 weights with integer biases. Layer one
// is scaled by q1 = 127/max|w1| and takes raw counts (x·16), so its sums are 16·q1
// times the float ones; layer two is scaled by q2 and so its sums are 16·q1·q2 times
// the float scores, which keeps the argmax.
func quantize(h int, w1, b1, w2, b2 []float64) (*Net, error) {
	q1 := 127 / maxAbs(w1)
	q2 := 127 / maxAbs(w2)
	n := &Net{Hidden: h, W1: make([]int8, len(w1)), B1: make([]int32, h), W2: make([]int8, len(w2)), B2: make([]int64, Classes)}
	for i, v := range w1 {
		n.W1[i] = int8(math.Round(float64(v * q1)))
	}
	for i, v := range w2 {
		n.W2[i] = int8(math.Round(float64(v * q2)))
	}
	for j, v := range b1 {
		n.B1[j] = int32(clamp(math.Round(float64(float64(v*q1)*MaxCount)), maxBias1))
	}
	for i, v := range b2 {
		n.B2[i] = int64(clamp(math.Round(float64(float64(float64(v*q1)*MaxCount)*q2)), maxBias2))
	}
	return n, n.check()
}

func maxAbs(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x, -x)
	}
	if m == 0 {
		return 1
	}
	return m
}

func clamp(x float64, limit int64) float64 {
	return min(max(x, -float64(limit)), float64(limit))
}

// splitmixRand is SplitMix64: a fixed, well-mixed generator whose output is specified
// bit for bit.
type splitmixRand struct{ s uint64 }

func splitmix(seed uint64) *splitmixRand { return &splitmixRand{s: seed} }

func (r *splitmixRand) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// uniform is exact up to the final product: 53 random bits as a fraction in [0,1),
// doubled and shifted to [-1,1) without rounding, then scaled.
func (r *splitmixRand) uniform(scale float64) float64 {
	f := float64(r.next()>>11) / (1 << 53)
	return float64((2*f - 1) * scale)
}
