package stratum

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
)

func TestAppendResponse(t *testing.T) {
	tests := []struct {
		id     string
		result []byte
		err    *Error
		want   string
	}{
		{"4", []byte("true"), nil, `{"id":4,"result":true,"error":null}` + "\n"},
		{`"abc"`, nil, &Error{21, "job not found"}, `{"id":"abc","result":null,"error":[21,"job not found",null]}` + "\n"},
		{"", nil, &Error{20, `say "hi"`}, `{"id":null,"result":null,"error":[20,"say \"hi\"",null]}` + "\n"},
	}
	for _, tt := range tests {
		if got := string(AppendResponse(nil, json.RawMessage(tt.id), tt.result, tt.err)); got != tt.want {
			t.Errorf("got %s want %s", got, tt.want)
		}
	}
}

func TestParseMessage(t *testing.T) {
	bad := []string{"", "[]", `{"id":{},"method":"x"}`, `{"id":1,"method":"x","params":{}}`, "{", `{"id":true}`}
	for _, b := range bad {
		if _, err := ParseMessage([]byte(b)); err == nil {
			t.Errorf("ParseMessage(%q) accepted", b)
		}
	}
	m, err := ParseMessage([]byte(`{"id":null,"result":null,"error":[21,"Job not found",null]}`))
	if err != nil || m.Error == nil || m.Error.Code != 21 || m.Error.Message != "Job not found" {
		t.Errorf("error reply: %+v %v", m, err)
	}
	n := &Notify{JobID: "1f", PrevHash: strings.Repeat("ab", 32), Coinb1: "01", Coinb2: "02", Version: "20000000", NBits: "207fffff", NTime: "6553f100", CleanJobs: true}
	line := AppendNotification(nil, "mining.notify", n.MarshalParams())
	m, err = ParseMessage(line)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseNotify(m.Params)
	if err != nil {
		t.Fatal(err)
	}
	if got.JobID != n.JobID || got.PrevHash != n.PrevHash || !got.CleanJobs || len(got.MerkleBranch) != 0 {
		t.Errorf("round trip %+v", got)
	}
}

// FuzzParseMessage: no input panics; a parsed request's params decode or fail cleanly,
// and answering any id produces one well-formed JSON line.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5.1"]}`,
		`{"method": "mining.submit", "params": ["worker1", "1", "00000000", "6b025d54", "42e7d800"], "id":4}`,
		`{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000"}]}`,
		`{"id":"x","result":[[["mining.notify","ab"]],"0000",4],"error":null}`,
		`{"id":null,"method":"mining.notify","params":["1","00","01","02",[],"20000000","207fffff","00000000",true]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		if err != nil {
			return
		}
		m.StringParams(MaxSubmitParams)
		ParseSubmit(m)
		if m.Params != nil {
			ParseNotify(m.Params)
		}
		out := AppendResponse(nil, m.ID, []byte("true"), &Error{20, string(b)})
		var v map[string]any
		if err := json.Unmarshal(out, &v); err != nil || bytes.Count(out, []byte("\n")) != 1 {
			t.Fatalf("response %q not one JSON line: %v", out, err)
		}
	})
}

// FuzzLineReader: the lines read do not depend on how the input is split into reads.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("{\"id\":1}\n{\"id\":2}\n"), 3)
	f.Add([]byte("abc\n\n\ndef"), 0)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		if cut < 0 {
			cut = -cut
		}
		if len(b) > 0 {
			cut %= len(b) + 1
		} else {
			cut = 0
		}
		read := func(r io.Reader) ([]string, error) {
			bufs := &sync.Pool{New: func() any { b := make([]byte, 8+64); return &b }}
			lr := newLineReader(r, bufs, 64)
			var out []string
			for {
				bp, data, err := lr.read(true)
				if err != nil {
					if err == io.EOF {
						return out, nil
					}
					return out, err
				}
				_, err = lr.lines(data, func(l []byte) bool {
					out = append(out, string(l))
					return true
				})
				lr.release(bp)
				if err != nil {
					return out, err
				}
			}
		}
		whole, err1 := read(bytes.NewReader(b))
		split, err2 := read(io.MultiReader(bytes.NewReader(b[:cut]), bytes.NewReader(b[cut:])))
		if (err1 == nil) != (err2 == nil) || strings.Join(whole, "\n") != strings.Join(split, "\n") {
			t.Fatalf("whole %q (%v) != split at %d %q (%v)", whole, err1, cut, split, err2)
		}
	})
}

func TestSubmitFast(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
	}{
		{`{"method": "mining.submit", "params": ["worker1", "1", "00000000", "6b025d54", "42e7d800"], "id":4}`, true},
		{`{"id":12,"method":"mining.submit","params":["a.b","1f","0000000000000001","6553f100","deadbeef","00002000"]}`, true},
		{`{"id":"x","method":"mining.submit","params":["a","b","c","d","e"]}`, true},
		{`{"id":1,"method":"mining.submit","params":["a","b","c","d"]}`, false},           // too few: slow path's error
		{`{"id":1,"method":"mining.submit","params":["a\"","b","c","d","e"]}`, false},     // escape
		{`{"id":1,"method":"mining.authorize","params":["a","b","c","d","e"]}`, false},    // other method
		{`{"id":1,"method":"mining.submit","params":["a","b","c","d","e"],"x":1}`, false}, // extra key
		{`{"id":1.5,"method":"mining.submit","params":["a","b","c","d","e"]}`, false},
	}
	for _, tt := range tests {
		id, s, ok := parseSubmitFast([]byte(tt.line))
		if ok != tt.ok {
			t.Errorf("%s: ok = %v, want %v", tt.line, ok, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		m, err := ParseMessage([]byte(tt.line))
		if err != nil {
			t.Fatal(err)
		}
		want, err := ParseSubmit(m)
		if err != nil || *want != s || string(m.ID) != string(id) {
			t.Errorf("%s: fast %s %+v, json %s %+v", tt.line, id, s, m.ID, want)
		}
	}
}

// FuzzSubmitFastMatchesJSON: whenever the fast path accepts a line, the JSON decoder
// agrees on the id and every parameter.
func FuzzSubmitFastMatchesJSON(f *testing.F) {
	f.Add([]byte(`{"method": "mining.submit", "params": ["worker1", "1", "00000000", "6b025d54", "42e7d800"], "id":4}`))
	f.Add([]byte(`{"id":12,"method":"mining.submit","params":["a.b","1f","00","6553f100","deadbeef","00002000"]}`))
	f.Add([]byte(`{"params":["a","b","c","d","e"],"id":"7","method":"mining.submit"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, s, ok := parseSubmitFast(b)
		if !ok {
			return
		}
		m, err := ParseMessage(b)
		if err != nil {
			t.Fatalf("fast path accepted %q, JSON refused: %v", b, err)
		}
		want, err := ParseSubmit(m)
		if err != nil || m.Method != "mining.submit" {
			t.Fatalf("fast path accepted %q, JSON: %v %q", b, err, m.Method)
		}
		if *want != s || string(m.ID) != string(id) {
			t.Fatalf("%q: fast %s %+v, json %s %+v", b, id, s, m.ID, want)
		}
	})
}

// Error messages are encoded as encoding/json encodes them, and the common ones
// (printable ASCII) without allocating: every reject's reply carries one.
func TestAppendResponseErrorMessage(t *testing.T) {
	for _, msg := range []string{"low difficulty share", "", `quote " and \\ slash`, "<html> & co", "tab\there", "naïve ✓", "\x7f del", "\xff bad utf-8"} {
		got := AppendResponse(nil, json.RawMessage("7"), nil, &Error{ErrCodeLowDifficulty, msg})
		enc, _ := json.Marshal(msg)
		want := `{"id":7,"result":null,"error":[23,` + string(enc) + `,null]}` + "\n"
		if string(got) != want {
			t.Errorf("message %q:\n got %s\nwant %s", msg, got, want)
		}
	}
	buf := make([]byte, 0, 256)
	e := &Error{ErrCodeLowDifficulty, "low difficulty share"}
	if n := testing.AllocsPerRun(100, func() { buf = AppendResponse(buf[:0], json.RawMessage("12345"), nil, e) }); n != 0 {
		t.Errorf("a reject's reply allocates %.0f times, want 0", n)
	}
}
