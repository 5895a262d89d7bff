// Package model is the inference workload hashgrid's compute leases run, test and
// spot-check: a small neural network (64 inputs, one hidden layer of 64 ReLUs, 10
// outputs) that reads handwritten digits, shipped with its weights so nothing is
// downloaded at run time.
//
// Data: the UCI "Optical Recognition of Handwritten Digits" set (optdigits) by
// E. Alpaydin and C. Kaynak, Bogazici University, 1998, from the UCI Machine
// Learning Repository (doi:10.24432/C50P49), licensed CC BY 4.0. data/optdigits.tra
// (3,823 digits by 30 writers) trains the network and data/optdigits.tes (1,797
// digits by 13 other writers) is held out to measure it. Each digit is 8×8 counts of
// set pixels in 4×4 blocks of a 32×32 bitmap, each 0..16, then its class 0..9; the
// files are UCI's, without the header line of the copy they were taken from.
//
// Why integers: spot checks compare two providers' outputs byte for byte, so
// inference uses int8 weights and integer sums only, and every machine and every
// WebAssembly runtime prints the same scores. Training (Train) is float64, made
// reproducible by avoiding fused multiply-adds and library functions, then quantized;
// its result is digits.weights, which TestTrainedWeights regenerates with -update and
// otherwise checks byte for byte:
//
//	go test ./compute/model -run TestTrainedWeights -update
//
// A work unit is text: one digit per line, 64 comma-separated counts (a 65th field,
// the class, is allowed and ignored). Classify answers each line with the predicted
// class and the ten integer scores. The WebAssembly build of Classify is in
// compute/model/wasm.
//
// What it leaves out: other models and data sets, batching across cores (a job is one
// wasm thread), confidence calibration (the scores are unnormalised integers).
package model

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// Sizes of the network's layers, and limits of what it reads.
const (
	Inputs    = 64  // 8×8 block counts
	Classes   = 10  // digits 0..9
	MaxCount  = 16  // a block count is 0..MaxCount
	MaxHidden = 256 // bounds a weights file's hidden layer
	// MaxLine bounds one input line: 65 fields of at most a few characters each.
	MaxLine = 1024
	// maxBias bounds a bias so that no sum can overflow: 64 inputs of 16 times 127
	// plus 2^24 fits an int32 hidden unit, and MaxHidden of those times 127 plus
	// 2^40 fits the int64 scores.
	maxBias1 = 1 << 24
	maxBias2 = 1 << 40
)

// Digit is one 8×8 image: block counts 0..16, row by row.
type Digit [Inputs]uint8

// Example is a digit with its class.
type Example struct {
	Digit Digit
	Label int
}

// Net is the quantized network: hidden = ReLU(W1·x + B1), scores = W2·hidden + B2.
type Net struct {
	Hidden int
	W1     []int8  // Hidden×Inputs, row by row
	B1     []int32 // Hidden
	W2     []int8  // Classes×Hidden, row by row
	B2     []int64 // Classes
}

// Predict returns the class with the highest score (the lowest class on a tie) and the
// scores.
func (n *Net) Predict(d *Digit) (class int, scores [Classes]int64) {
	var hidden [MaxHidden]int32
	for j := 0; j < n.Hidden; j++ {
		acc := n.B1[j]
		w := n.W1[j*Inputs : (j+1)*Inputs]
		for k, x := range d {
			acc += int32(w[k]) * int32(x)
		}
		hidden[j] = max(acc, 0)
	}
	for i := range scores {
		acc := n.B2[i]
		w := n.W2[i*n.Hidden : (i+1)*n.Hidden]
		for j, h := range hidden[:n.Hidden] {
			acc += int64(w[j]) * int64(h)
		}
		scores[i] = acc
		if acc > scores[class] {
			class = i
		}
	}
	return class, scores
}

// Accuracy is the share of examples whose class Predict gets right.
func (n *Net) Accuracy(ex []Example) float64 {
	if len(ex) == 0 {
		return 0
	}
	right := 0
	for i := range ex {
		if c, _ := n.Predict(&ex[i].Digit); c == ex[i].Label {
			right++
		}
	}
	return float64(right) / float64(len(ex))
}

// weightsMagic starts a weights file; the digit says the layout's version.
const weightsMagic = "HGDIGIT1"

// MarshalBinary encodes the network: the magic, the hidden size as a uint16, then
// W1, B1, W2, B2, little-endian.
func (n *Net) MarshalBinary() ([]byte, error) {
	if err := n.check(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(weightsMagic)
	binary.Write(&b, binary.LittleEndian, uint16(n.Hidden))
	binary.Write(&b, binary.LittleEndian, n.W1)
	binary.Write(&b, binary.LittleEndian, n.B1)
	binary.Write(&b, binary.LittleEndian, n.W2)
	binary.Write(&b, binary.LittleEndian, n.B2)
	return b.Bytes(), nil
}

// UnmarshalBinary decodes what MarshalBinary wrote.
func (n *Net) UnmarshalBinary(data []byte) error {
	r := bytes.NewReader(data)
	magic := make([]byte, len(weightsMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != weightsMagic {
		return errors.New("model: weights: not a weights file")
	}
	var h uint16
	if err := binary.Read(r, binary.LittleEndian, &h); err != nil {
		return fmt.Errorf("model: weights: %w", err)
	}
	if h == 0 || h > MaxHidden {
		return fmt.Errorf("model: weights: hidden size %d not in 1..%d", h, MaxHidden)
	}
	m := Net{Hidden: int(h), W1: make([]int8, int(h)*Inputs), B1: make([]int32, h),
		W2: make([]int8, Classes*int(h)), B2: make([]int64, Classes)}
	for _, v := range []any{m.W1, m.B1, m.W2, m.B2} {
		if err := binary.Read(r, binary.LittleEndian, v); err != nil {
			return fmt.Errorf("model: weights: %w", err)
		}
	}
	if r.Len() != 0 {
		return fmt.Errorf("model: weights: %d bytes after the end", r.Len())
	}
	if err := m.check(); err != nil {
		return err
	}
	*n = m
	return nil
}

// check refuses a network whose sums could overflow or whose slices are the wrong size.
func (n *Net) check() error {
	if n.Hidden < 1 || n.Hidden > MaxHidden || len(n.W1) != n.Hidden*Inputs || len(n.B1) != n.Hidden ||
		len(n.W2) != Classes*n.Hidden || len(n.B2) != Classes {
		return errors.New("model: weights: layer sizes do not match")
	}
	for _, w := range [][]int8{n.W1, n.W2} {
		for _, v := range w {
			if v == -128 {
				return errors.New("model: weights: weight -128 (quantized weights are -127..127)")
			}
		}
	}
	for _, v := range n.B1 {
		if v > maxBias1 || v < -maxBias1 {
			return fmt.Errorf("model: weights: hidden bias %d out of range", v)
		}
	}
	for _, v := range n.B2 {
		if v > maxBias2 || v < -maxBias2 {
			return fmt.Errorf("model: weights: output bias %d out of range", v)
		}
	}
	return nil
}

//go:embed digits.weights
var digitsWeights []byte

// Default is the shipped network, trained on data/optdigits.tra.
func Default() *Net { return defaultNet() }

var defaultNet = sync.OnceValue(func() *Net {
	var n Net
	if err := n.UnmarshalBinary(digitsWeights); err != nil {
		// TestTrainedWeights decodes the same bytes, so this is a broken build.
		panic(err)
	}
	return &n
})

//go:embed data/optdigits.tes
var heldOut []byte

// HeldOut is the held-out set (data/optdigits.tes): work units for demos and tests,
// with the classes to check the answers against.
func HeldOut() []Example {
	ex, err := ParseExamples(bytes.NewReader(heldOut))
	if err != nil {
		panic(err) // TestHeldOut parses the same bytes
	}
	return ex
}

// ParseDigit parses one line: 64 counts and, optionally, a class (else label is -1).
func ParseDigit(line string) (d Digit, label int, err error) {
	fields := strings.Split(strings.TrimSpace(line), ",")
	if len(fields) != Inputs && len(fields) != Inputs+1 {
		return d, -1, fmt.Errorf("%d fields, want %d or %d", len(fields), Inputs, Inputs+1)
	}
	for k := 0; k < Inputs; k++ {
		v, err := strconv.ParseUint(strings.TrimSpace(fields[k]), 10, 8)
		if err != nil || v > MaxCount {
			return d, -1, fmt.Errorf("field %d: %q is not a count 0..%d", k+1, fields[k], MaxCount)
		}
		d[k] = uint8(v)
	}
	if len(fields) == Inputs {
		return d, -1, nil
	}
	v, err := strconv.ParseUint(strings.TrimSpace(fields[Inputs]), 10, 8)
	if err != nil || v >= Classes {
		return d, -1, fmt.Errorf("class %q is not 0..%d", fields[Inputs], Classes-1)
	}
	return d, int(v), nil
}

// ParseExamples reads lines of 64 counts and a class.
func ParseExamples(r io.Reader) ([]Example, error) {
	var ex []Example
	err := eachLine(r, func(n int, line string) error {
		d, label, err := ParseDigit(line)
		if err == nil && label < 0 {
			err = errors.New("no class")
		}
		if err != nil {
			return err
		}
		ex = append(ex, Example{Digit: d, Label: label})
		return nil
	})
	return ex, err
}

// FormatDigit writes d as a work-unit line.
func FormatDigit(w io.Writer, d *Digit) error { return formatLine(w, d, -1) }

// FormatExample writes e as a work-unit line with its class as the 65th field, which
// Classify ignores and a scorer compares with the answer.
func FormatExample(w io.Writer, e *Example) error { return formatLine(w, &e.Digit, e.Label) }

// formatLine writes d's counts and, when label is not negative, the label.
func formatLine(w io.Writer, d *Digit, label int) error {
	b := make([]byte, 0, 3*Inputs+3)
	for k, v := range d {
		if k > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	if label >= 0 {
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(label), 10)
	}
	b = append(b, '\n')
	_, err := w.Write(b)
	return err
}

// Classify reads work-unit lines from r and writes one answer line per digit to w:
// the class, then the ten scores, separated by spaces. Blank lines are skipped.
// This is the whole of the WebAssembly program's work.
func (n *Net) Classify(w io.Writer, r io.Reader) error {
	bw := bufio.NewWriter(w)
	out := make([]byte, 0, 16*(Classes+1))
	err := eachLine(r, func(_ int, line string) error {
		d, _, err := ParseDigit(line)
		if err != nil {
			return err
		}
		class, scores := n.Predict(&d)
		out = strconv.AppendInt(out[:0], int64(class), 10)
		for _, s := range scores {
			out = append(out, ' ')
			out = strconv.AppendInt(out, s, 10)
		}
		out = append(out, '\n')
		_, err = bw.Write(out)
		return err
	})
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return err
}

// eachLine calls fn for each non-blank line of r, with its 1-based number.
func eachLine(r io.Reader, fn func(n int, line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, MaxLine), MaxLine)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := fn(n, line); err != nil {
			return fmt.Errorf("model: line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("model: line %d: %w", n+1, err)
	}
	return nil
}
