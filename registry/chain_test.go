package registry

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// sampleLog builds a registry with evidence and a report and returns its log bytes.
func sampleLog(tb testing.TB) ([]byte, ReportFile, []byte) {
	tb.Helper()
	r, _ := newRegistry(tb)
	buildSite(tb, r)
	if _, err := r.ImportEnergy(strings.NewReader(energyLog()), "energy.jsonl", ""); err != nil {
		tb.Fatal(err)
	}
	if _, err := r.ImportPool(context.Background(), &workSource{workers: poolWorkers()}, "s1", t0, t0.Add(time.Hour)); err != nil {
		tb.Fatal(err)
	}
	f, _, page, err := r.Report("s1", t0, t0.Add(time.Hour))
	if err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(r.Path())
	if err != nil {
		tb.Fatal(err)
	}
	return b, f, page
}

func pub() ed25519.PublicKey { return testKey(1).Public().(ed25519.PublicKey) }

func lines(b []byte) [][]byte {
	return bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func wantChainError(t *testing.T, err error, seq uint64, problem string) {
	t.Helper()
	var ce *ChainError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a *ChainError for entry %d", err, seq)
	}
	if ce.Seq != seq || !strings.Contains(ce.Problem, problem) {
		t.Errorf("got %q, want entry %d: ...%s...", ce.Error(), seq, problem)
	}
}

func TestVerifyGoodLog(t *testing.T) {
	b, f, _ := sampleLog(t)
	sum, err := VerifyLog(bytes.NewReader(b), pub())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sum.Entries, len(lines(b)); got != want {
		t.Errorf("entries: got %d, want %d", got, want)
	}
	if sum.HeadSeq != f.Entry.Seq || sum.HeadHash != f.Entry.Hash {
		t.Errorf("head: got %d %s, want the report entry %d %s", sum.HeadSeq, sum.HeadHash, f.Entry.Seq, f.Entry.Hash)
	}
	if _, err := VerifyLog(bytes.NewReader(b), testKey(9).Public().(ed25519.PublicKey)); err == nil {
		t.Error("a log verified under a pinned key that did not sign it")
	}
}

// TestVerifyEveryByteChanged changes each byte of one entry in turn: every change must
// fail verification and name that entry.
func TestVerifyEveryByteChanged(t *testing.T) {
	b, _, _ := sampleLog(t)
	ls := lines(b)
	for _, k := range []int{0, 5, len(ls) - 1} { // the init entry, a device, the report
		start := len(bytes.Join(ls[:k], nil))
		for i := start; i < start+len(ls[k]); i++ {
			c := bytes.Clone(b)
			c[i] ^= 0x01
			_, err := VerifyLog(bytes.NewReader(c), pub())
			var ce *ChainError
			if !errors.As(err, &ce) {
				t.Fatalf("entry %d, byte %d (%q→%q): got %v, want a failure", k+1, i-start, b[i], c[i], err)
			}
			if ce.Seq != uint64(k+1) {
				t.Fatalf("entry %d, byte %d (%q→%q): named entry %d: %v", k+1, i-start, b[i], c[i], ce.Seq, err)
			}
		}
	}
}

func TestVerifyTampering(t *testing.T) {
	b, _, _ := sampleLog(t)
	ls := lines(b)
	join := func(xs ...[]byte) []byte { return bytes.Join(xs, nil) }
	tests := []struct {
		name    string
		log     []byte
		seq     uint64
		problem string
	}{
		{"energy figure changed", bytes.Replace(b, []byte(`"energy_wh":7500`), []byte(`"energy_wh":7400`), 1), 10, "content does not match its hash"},
		{"drop entry 7", join(join(ls[:6]...), join(ls[7:]...)), 7, "entry 7 is missing (removed)"},
		{"reorder 4 and 5", join(join(ls[:3]...), ls[4], ls[3], join(ls[5:]...)), 4, "entry 4 is at line 5 (entries reordered)"},
		{"drop first", join(ls[1:]...), 1, "entry 1 is missing"},
		{"duplicate entry 3", join(join(ls[:3]...), ls[2], join(ls[3:]...)), 4, "found entry 3 again"},
		{"signature from another key", resign(t, b, 6), 6, "bad signature"},
		{"entry re-hashed, chain broken", rehash(t, b, 4), 5, "prev-hash does not link"},
		{"blank line", join(join(ls[:2]...), []byte("\n"), join(ls[2:]...)), 3, "empty line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyLog(bytes.NewReader(tt.log), pub())
			wantChainError(t, err, tt.seq, tt.problem)
		})
	}
}

// resign re-signs entry seq (1-based) with another key, keeping its hash.
func resign(tb testing.TB, b []byte, seq int) []byte {
	tb.Helper()
	ls := lines(b)
	e, err := decodeEntry(bytes.TrimSpace(ls[seq-1]))
	if err != nil {
		tb.Fatal(err)
	}
	if err := seal(&e, testKey(7)); err != nil {
		tb.Fatal(err)
	}
	return replaceLine(tb, ls, seq, e)
}

// rehash changes entry seq's body and seals it with the right key: the entry itself is
// valid, so the break shows at the next entry's link.
func rehash(tb testing.TB, b []byte, seq int) []byte {
	tb.Helper()
	ls := lines(b)
	e, err := decodeEntry(bytes.TrimSpace(ls[seq-1]))
	if err != nil {
		tb.Fatal(err)
	}
	e.Body = bytes.Replace(e.Body, []byte(`"count":10`), []byte(`"count":12`), 1)
	if err := seal(&e, testKey(1)); err != nil {
		tb.Fatal(err)
	}
	return replaceLine(tb, ls, seq, e)
}

func replaceLine(tb testing.TB, ls [][]byte, seq int, e Entry) []byte {
	tb.Helper()
	var out bytes.Buffer
	for i, l := range ls {
		if i == seq-1 {
			line, err := jsonLine(e)
			if err != nil {
				tb.Fatal(err)
			}
			out.Write(line)
			continue
		}
		out.Write(l)
	}
	return out.Bytes()
}

func TestVerifyReportTampering(t *testing.T) {
	b, f, page := sampleLog(t)
	dir := t.TempDir()
	jp, hp, err := SaveReport(dir, f, page)
	if err != nil {
		t.Fatal(err)
	}
	jb, _ := os.ReadFile(jp)
	hb, _ := os.ReadFile(hp)
	if _, err := VerifyReport(jb, pub(), hb, b); err != nil {
		t.Fatalf("good report: %v", err)
	}
	chk, err := VerifyReport(jb, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if chk.KeyPinned {
		t.Error("a report checked only against its own key claims a pinned key")
	}
	seq := f.Entry.Seq

	// Change one byte of the report content: the first energy figure.
	i := bytes.Index(jb, []byte(`"energy_wh": 30000`))
	if i < 0 {
		t.Fatalf("report file lacks the miners' energy:\n%s", jb)
	}
	altered := bytes.Clone(jb)
	altered[i+len(`"energy_wh": `)] = '4'
	_, err = VerifyReport(altered, pub(), nil, nil)
	wantChainError(t, err, seq, "report content does not match")

	// Change one byte of the page.
	j := bytes.Index(hb, []byte("pow_shares_undeclared"))
	if j < 0 {
		t.Fatalf("page lacks the pow_shares_undeclared finding")
	}
	hAltered := bytes.Clone(hb)
	hAltered[j] = 'q'
	_, err = VerifyReport(jb, pub(), hAltered, nil)
	wantChainError(t, err, seq, "HTML page does not match")

	// A different key.
	_, err = VerifyReport(jb, testKey(3).Public().(ed25519.PublicKey), nil, nil)
	wantChainError(t, err, seq, "different signing key")

	// A log that does not hold the entry: the log as it was before the report.
	before := bytes.Join(lines(b)[:seq-1], nil)
	_, err = VerifyReport(jb, pub(), nil, before)
	wantChainError(t, err, seq, "the log does not hold this report entry")
}
