package registry

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Entry is one line of the registry log. Hash covers Seq, Time, Kind, Prev and the
// compacted Body; Sig is the operator's Ed25519 signature of Hash. Prev is the Hash of
// the entry before, so removing, inserting or reordering entries breaks the chain.
type Entry struct {
	Seq  uint64          `json:"seq"`
	Time time.Time       `json:"time"`
	Kind string          `json:"kind"`
	Prev string          `json:"prev"`
	Body json.RawMessage `json:"body"`
	Hash string          `json:"hash"`
	Sig  string          `json:"sig"`
}

// genesisPrev is the Prev of the first entry.
var genesisPrev = strings.Repeat("0", 2*sha256.Size)

// MaxEntryBytes bounds one log line; a report entry holds only hashes, and the largest
// imports (a day of one-minute controller intervals for a few dozen groups) stay well
// below it.
const MaxEntryBytes = 64 << 20

// entryDomain separates entry hashes from any other SHA-256 use of the same key.
const entryDomain = "hashgrid-registry-entry/1\n"

// entryHash computes the hex hash of an entry's content (everything but Hash and Sig).
func entryHash(e *Entry) (string, error) {
	var body bytes.Buffer
	if err := json.Compact(&body, e.Body); err != nil {
		return "", fmt.Errorf("body: %w", err)
	}
	h := sha256.New()
	io.WriteString(h, entryDomain)
	io.WriteString(h, strconv.FormatUint(e.Seq, 10)+"\n")
	io.WriteString(h, e.Time.UTC().Format(time.RFC3339Nano)+"\n")
	io.WriteString(h, e.Kind+"\n")
	io.WriteString(h, e.Prev+"\n")
	h.Write(body.Bytes())
	return hex.EncodeToString(h.Sum(nil)), nil
}

// seal fills Hash and Sig.
func seal(e *Entry, key ed25519.PrivateKey) error {
	h, err := entryHash(e)
	if err != nil {
		return err
	}
	e.Hash = h
	e.Sig = hex.EncodeToString(ed25519.Sign(key, []byte(h)))
	return nil
}

// jsonLine encodes an entry as one log line.
func jsonLine(e Entry) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ChainError names the first entry of a log (or the entry of a report) that fails
// verification. Seq is the sequence number the entry should have had at that position;
// Line is the 1-based line of the log file (0 when checking a report).
type ChainError struct {
	Seq     uint64
	Line    int
	Problem string
}

func (e *ChainError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("registry: entry %d (line %d): %s", e.Seq, e.Line, e.Problem)
	}
	return fmt.Sprintf("registry: entry %d: %s", e.Seq, e.Problem)
}

// checkEntry verifies one entry's own hash and signature.
func checkEntry(e *Entry, pub ed25519.PublicKey) string {
	h, err := entryHash(e)
	if err != nil {
		return "malformed body: " + err.Error()
	}
	if h != e.Hash {
		return "content does not match its hash (entry altered)"
	}
	sig, err := hex.DecodeString(e.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return "malformed signature"
	}
	if !ed25519.Verify(pub, []byte(e.Hash), sig) {
		return "bad signature"
	}
	return ""
}

// decodeEntry parses one log line strictly: unknown fields are an error, so that a
// changed key cannot slip past the hash.
func decodeEntry(line []byte) (Entry, error) {
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Entry{}, err
	}
	if dec.More() {
		return Entry{}, errors.New("trailing data after entry")
	}
	if _, err := dec.Token(); err != io.EOF {
		return Entry{}, errors.New("trailing data after entry")
	}
	if len(e.Body) == 0 {
		return Entry{}, errors.New("missing body")
	}
	return e, nil
}

// initBody is the body of the first entry: it carries the key that signs every entry.
type initBody struct {
	Format    string `json:"format"`
	PublicKey string `json:"public_key"`
}

const logFormat = "hashgrid-registry/1"

// readLog reads and verifies a whole log. It returns the entries up to the first bad
// one and a *ChainError naming it; pin, when set, must equal the key in the first entry.
func readLog(r io.Reader, pin ed25519.PublicKey) ([]Entry, ed25519.PublicKey, error) {
	type raw struct {
		line  int
		entry Entry
		err   error
	}
	var lines []raw
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxEntryBytes)
	n := 0
	for sc.Scan() {
		n++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			lines = append(lines, raw{line: n, err: errors.New("empty line")})
			continue
		}
		e, err := decodeEntry(sc.Bytes())
		lines = append(lines, raw{line: n, entry: e, err: err})
	}
	if err := sc.Err(); err != nil {
		return nil, nil, &ChainError{Seq: uint64(len(lines)) + 1, Line: n + 1, Problem: "unreadable: " + err.Error()}
	}

	var (
		out  []Entry
		pub  ed25519.PublicKey
		prev = genesisPrev
	)
	for i, l := range lines {
		want := uint64(i) + 1
		fail := func(p string) ([]Entry, ed25519.PublicKey, error) {
			return out, pub, &ChainError{Seq: want, Line: l.line, Problem: p}
		}
		if l.err != nil {
			return fail("malformed: " + l.err.Error())
		}
		e := l.entry
		if e.Seq < want {
			return fail(fmt.Sprintf("found entry %d again (entry repeated or inserted)", e.Seq))
		}
		if e.Seq > want {
			// Say whether the expected entry is elsewhere (reordered) or gone (removed).
			for _, o := range lines[i+1:] {
				if o.err == nil && o.entry.Seq == want {
					return fail(fmt.Sprintf("found entry %d here; entry %d is at line %d (entries reordered)", e.Seq, want, o.line))
				}
			}
			return fail(fmt.Sprintf("sequence gap: found entry %d, entry %d is missing (removed)", e.Seq, want))
		}
		if i == 0 {
			if e.Kind != kindInit {
				return fail("first entry is " + strconv.Quote(e.Kind) + ", not init")
			}
			var b initBody
			if err := json.Unmarshal(e.Body, &b); err != nil {
				return fail("malformed init body: " + err.Error())
			}
			if b.Format != logFormat {
				return fail("unknown log format " + strconv.Quote(b.Format))
			}
			k, err := hex.DecodeString(b.PublicKey)
			if err != nil || len(k) != ed25519.PublicKeySize {
				return fail("malformed public key")
			}
			pub = ed25519.PublicKey(k)
			if pin != nil && !pub.Equal(pin) {
				return fail("public key differs from the pinned key")
			}
		}
		if e.Prev != prev {
			return fail("prev-hash does not link to the entry before (entry before altered, removed or reordered)")
		}
		if p := checkEntry(&e, pub); p != "" {
			return fail(p)
		}
		prev = e.Hash
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, nil, &ChainError{Seq: 1, Line: 1, Problem: "log is empty"}
	}
	return out, pub, nil
}

// LogSummary is what VerifyLog reports about a good log.
type LogSummary struct {
	Entries   int
	PublicKey ed25519.PublicKey
	HeadSeq   uint64
	HeadHash  string
}

// VerifyLog checks a registry log offline: every entry's hash, signature, sequence number
// and link to the entry before. pin, if not nil, must be the key in the first entry;
// without it the log is only shown to be self-consistent. A failure is a *ChainError
// naming the first bad entry. Removing entries from the end cannot be seen from the log
// alone: compare HeadSeq and HeadHash with a report or a head recorded elsewhere.
func VerifyLog(r io.Reader, pin ed25519.PublicKey) (LogSummary, error) {
	l, err := ReadLog(r, pin)
	if err != nil {
		return LogSummary{}, err
	}
	return l.Summary(), nil
}

// Log is a log that verified: its entries, in order, and the key that signed them.
type Log struct {
	Entries   []Entry
	PublicKey ed25519.PublicKey
}

// ReadLog reads and checks a log as VerifyLog does and keeps it, so that a report and
// its anchor are checked against it (VerifyReportIn, CheckReportAnchorIn) without
// reading and checking every signature again.
func ReadLog(r io.Reader, pin ed25519.PublicKey) (*Log, error) {
	es, pub, err := readLog(r, pin)
	if err != nil {
		return nil, err
	}
	return &Log{Entries: es, PublicKey: pub}, nil
}

// Summary says what VerifyLog says about the log.
func (l *Log) Summary() LogSummary {
	last := l.Entries[len(l.Entries)-1]
	return LogSummary{Entries: len(l.Entries), PublicKey: l.PublicKey, HeadSeq: last.Seq, HeadHash: last.Hash}
}
