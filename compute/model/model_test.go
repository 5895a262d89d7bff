package model

import (
	"bytes"
	"flag"
	"os"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "retrain and rewrite digits.weights")

// minAccuracy is what the shipped network must score on the held-out writers. The
// UCI notes give 97.4-98.0% for k-nearest neighbours on the same split.
const minAccuracy = 0.95

func trainingSet(tb testing.TB) []Example {
	tb.Helper()
	b, err := os.ReadFile("data/optdigits.tra")
	if err != nil {
		tb.Fatal(err)
	}
	ex, err := ParseExamples(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	return ex
}

// TestTrainedWeights retrains the network and checks that digits.weights is exactly
// what training gives, so the shipped weights cannot drift from their recipe.
func TestTrainedWeights(t *testing.T) {
	train := trainingSet(t)
	if len(train) != 3823 {
		t.Fatalf("%d training digits, want UCI's 3823", len(train))
	}
	n, err := Train(train, DefaultTrainConfig)
	if err != nil {
		t.Fatal(err)
	}
	got, err := n.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("trained: %.2f%% on the training writers, %.2f%% on the held-out writers",
		100*n.Accuracy(train), 100*n.Accuracy(HeldOut()))
	if *update {
		if err := os.WriteFile("digits.weights", got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote digits.weights, %d bytes", len(got))
		return
	}
	if !bytes.Equal(got, digitsWeights) {
		t.Errorf("digits.weights is not what Train(data/optdigits.tra, DefaultTrainConfig) gives: run go test ./compute/model -run TestTrainedWeights -update")
	}
}

// TestHeldOutAccuracy checks the shipped network on the 1797 digits of writers it
// never saw.
func TestHeldOutAccuracy(t *testing.T) {
	held := HeldOut()
	if len(held) != 1797 {
		t.Fatalf("%d held-out digits, want UCI's 1797", len(held))
	}
	acc := Default().Accuracy(held)
	t.Logf("held-out accuracy %.2f%% (%d digits)", 100*acc, len(held))
	if acc < minAccuracy {
		t.Errorf("held-out accuracy %.4f, want at least %.2f", acc, minAccuracy)
	}
}

// TestTrainIsDeterministic checks that training twice gives the same bytes and that
// another seed gives others (so the seed is really used).
func TestTrainIsDeterministic(t *testing.T) {
	train := trainingSet(t)[:500]
	cfg := TrainConfig{Hidden: 8, Epochs: 2, Rate: 0.02, RateStep: 1, Seed: 7}
	a, _ := Train(train, cfg)
	b, _ := Train(train, cfg)
	cfg.Seed = 8
	c, _ := Train(train, cfg)
	ab, _ := a.MarshalBinary()
	bb, _ := b.MarshalBinary()
	cb, _ := c.MarshalBinary()
	if !bytes.Equal(ab, bb) {
		t.Error("two trainings with one config differ")
	}
	if bytes.Equal(ab, cb) {
		t.Error("trainings with seeds 7 and 8 are identical")
	}
}

func TestParseDigit(t *testing.T) {
	zeros := strings.Repeat("0,", Inputs-1) + "0"
	tests := []struct {
		line    string
		label   int
		wantErr string
	}{
		{zeros, -1, ""},
		{zeros + ",7", 7, ""},
		{" " + strings.ReplaceAll(zeros, ",", " , ") + " ", -1, ""},
		{zeros + ",10", -1, "class"},
		{zeros + ",7,1", -1, "fields"},
		{"16," + strings.Repeat("0,", Inputs-2) + "17", -1, "field 64"},
		{"-1," + strings.Repeat("0,", Inputs-2) + "0", -1, "field 1"},
		{"", -1, "fields"},
	}
	for _, tt := range tests {
		_, label, err := ParseDigit(tt.line)
		if tt.wantErr == "" {
			if err != nil || label != tt.label {
				t.Errorf("ParseDigit(%q) = %d, %v; want %d", tt.line, label, err, tt.label)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseDigit(%q) error %v, want one about %q", tt.line, err, tt.wantErr)
		}
	}
}

// TestClassify checks the answer format and that each answer is Predict's.
func TestClassify(t *testing.T) {
	held := HeldOut()[:50]
	var in bytes.Buffer
	for i := range held {
		FormatDigit(&in, &held[i].Digit)
		if i == 10 {
			in.WriteString("\n  \n") // blank lines are skipped
		}
	}
	var out bytes.Buffer
	if err := Default().Classify(&out, &in); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(held) {
		t.Fatalf("%d answers for %d digits", len(lines), len(held))
	}
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) != 1+Classes {
			t.Fatalf("answer %q has %d fields, want %d", line, len(f), 1+Classes)
		}
		class, scores := Default().Predict(&held[i].Digit)
		want := strconv.Itoa(class)
		for _, s := range scores {
			want += " " + strconv.FormatInt(s, 10)
		}
		if line != want {
			t.Fatalf("answer %d = %q, want %q", i, line, want)
		}
	}
	err := Default().Classify(&out, strings.NewReader("1,2,3\n"))
	if err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("short line: error %v, want one naming line 1", err)
	}
	err = Default().Classify(&out, strings.NewReader(strings.Repeat("1", MaxLine+1)))
	if err == nil {
		t.Error("a line over MaxLine was accepted")
	}
}

func TestWeightsRoundTrip(t *testing.T) {
	b, err := Default().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, digitsWeights) {
		t.Fatal("re-encoding the shipped weights changes them")
	}
	var n Net
	for _, bad := range [][]byte{nil, b[:len(b)-1], append(append([]byte{}, b...), 0), []byte("HGDIGIT2" + string(b[8:]))} {
		if err := n.UnmarshalBinary(bad); err == nil {
			t.Errorf("UnmarshalBinary accepted %d bytes of a corrupt file", len(bad))
		}
	}
	big := append([]byte{}, b...)
	big[8], big[9] = 0xff, 0xff // hidden size 65535
	if err := n.UnmarshalBinary(big); err == nil {
		t.Error("UnmarshalBinary accepted hidden size 65535")
	}
}

// FuzzParseDigit checks that any line parses or fails without panicking, and that a
// parsed digit formats back to a line that parses to the same digit.
func FuzzParseDigit(f *testing.F) {
	f.Add(strings.Repeat("0,", Inputs-1) + "0")
	f.Add(strings.Repeat("16,", Inputs) + "9")
	f.Add("1,2")
	f.Fuzz(func(t *testing.T, line string) {
		d, _, err := ParseDigit(line)
		if err != nil {
			return
		}
		var b bytes.Buffer
		FormatDigit(&b, &d)
		d2, label, err := ParseDigit(b.String())
		if err != nil || d2 != d || label != -1 {
			t.Fatalf("round trip of %q: %v, %v, label %d", line, d2, err, label)
		}
		b.Reset()
		FormatExample(&b, &Example{Digit: d, Label: 7})
		d3, label, err := ParseDigit(b.String())
		if err != nil || d3 != d || label != 7 {
			t.Fatalf("round trip of %q with its label: %v, %v, label %d", line, d3, err, label)
		}
	})
}

// BenchmarkPredict is one digit through the network, natively.
func BenchmarkPredict(b *testing.B) {
	held := HeldOut()
	n := Default()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n.Predict(&held[i%len(held)].Digit)
	}
}
