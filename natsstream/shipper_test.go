package natsstream

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hashgrid/hashgrid/stream"
)

// runShipper runs a Shipper of log until stop is called, which returns Run's error.
func runShipper(t *testing.T, nc *nats.Conn, log stream.Stream, posPath string, opts Options) (sh *Shipper, stop func() error) {
	t.Helper()
	sh, err := NewShipper(ctxT(t, 10*time.Second), nc, log, posPath, opts)
	if err != nil {
		t.Fatal(err)
	}
	sh.SaveInterval = time.Nanosecond // save after every batch: the tests read the file
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sh.Run(ctx) }()
	return sh, func() error {
		cancel()
		err := <-done
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
}

// waitRecords polls the stream until it holds n records, then checks that they are the
// local log's records 1..n in order, each once.
func waitRecords(t *testing.T, r *Stream, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got []stream.Record
	for {
		got = readAll(t, r, 0, 256)
		if len(got) >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling the shipper's progress
	}
	if len(got) != n {
		t.Fatalf("stream holds %d records, want %d", len(got), n)
	}
	for i, g := range got {
		if string(g.Data) != string(rec(i+1)) {
			t.Fatalf("stream record %d: got %q, want %q", g.Seq, g.Data, rec(i+1))
		}
	}
}

func appendLocal(t *testing.T, log *stream.Log, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		seq, err := log.Append(ctxT(t, 5*time.Second), rec(i))
		if err != nil || seq != uint64(i) {
			t.Fatalf("local append %d: got seq %d, %v", i, seq, err)
		}
	}
}

func TestShipperShipsLocalLog(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	dir := t.TempDir()
	log, err := stream.Open(filepath.Join(dir, "log"), stream.Options{SegmentSize: stream.MinSegmentSize})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	posPath := filepath.Join(dir, "shipped")
	opts := Options{FrontEnd: "fe1"}
	appendLocal(t, log, 1, 300)
	sh, stop := runShipper(t, nc, log, posPath, opts)
	r := open(t, connect(t, srv), Options{FrontEnd: "reader"})
	waitRecords(t, r, 300)
	appendLocal(t, log, 301, 500)
	waitRecords(t, r, 500)
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if sh.Shipped() != 500 {
		t.Fatalf("shipped %d, want 500", sh.Shipped())
	}
	pos, err := readPosition(posPath, "fe1")
	if err != nil || pos.local != 500 {
		t.Fatalf("saved position: got %+v, %v; want local 500", pos, err)
	}
	// Shipped segments of the local log are pruned (segments of 4 KiB hold ~200 records).
	if first := log.FirstSeq(); first == 1 {
		t.Fatalf("local log not pruned: first record %d", first)
	}
	// Message ids carry the local sequences.
	msg, err := r.st.GetLastMsgForSubject(ctxT(t, 5*time.Second), DefaultPrefix+".fe1")
	if err != nil {
		t.Fatal(err)
	}
	if fe, _, last, err := ParseMsgID(msg.Header.Get("Nats-Msg-Id")); err != nil || fe != "fe1" || last != 500 {
		t.Fatalf("last message id %q: front-end %q, last local sequence %d, %v; want fe1 and 500", msg.Header.Get("Nats-Msg-Id"), fe, last, err)
	}
}

// TestShipperRefusesAnotherLog: a front-end started under a number whose records the
// stream holds, with a new, empty data directory, is refused: shipping its new log
// would drop its records as already shipped.
func TestShipperRefusesAnotherLog(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	opts := Options{FrontEnd: "fe1"}
	first := t.TempDir()
	log, err := stream.Open(filepath.Join(first, "log"), stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendLocal(t, log, 1, 10)
	_, stop := runShipper(t, nc, log, filepath.Join(first, "shipped"), opts)
	waitRecords(t, open(t, connect(t, srv), Options{FrontEnd: "reader"}), 10)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	log.Close()

	second := t.TempDir()
	fresh, err := stream.Open(filepath.Join(second, "log"), stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	appendLocal(t, fresh, 1, 5)
	if _, err := NewShipper(ctxT(t, 10*time.Second), nc, fresh, filepath.Join(second, "shipped"), opts); err == nil || !strings.Contains(err.Error(), "new number") {
		t.Fatalf("NewShipper on another front-end's number: %v", err)
	}
	// The same log again (its position file lost) is its own: accepted.
	again, err := stream.Open(filepath.Join(first, "log"), stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	os.Remove(filepath.Join(first, "shipped"))
	if _, err := NewShipper(ctxT(t, 10*time.Second), nc, again, filepath.Join(first, "shipped"), opts); err != nil {
		t.Fatalf("NewShipper on its own log: %v", err)
	}
}

// A shipper that crashed after its records were stored but before it saved its position
// re-sends them from the saved position; even after JetStream has forgotten their ids
// (the duplicate window is over) none is stored twice, because it reads back what the
// stream holds first.
func TestShipperCrashResendBeyondWindow(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	dir := t.TempDir()
	log, err := stream.Open(filepath.Join(dir, "log"), stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	posPath := filepath.Join(dir, "shipped")
	const window = time.Second
	opts := Options{FrontEnd: "fe1", DuplicateWindow: window, AckTimeout: 200 * time.Millisecond, Resends: 1}
	ropts := opts
	ropts.FrontEnd = "reader"
	r := open(t, connect(t, srv), ropts)

	appendLocal(t, log, 1, 40)
	_, stop := runShipper(t, nc, log, posPath, opts)
	waitRecords(t, r, 40)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	saved, err := os.ReadFile(posPath)
	if err != nil {
		t.Fatal(err)
	}
	appendLocal(t, log, 41, 100)
	_, stop = runShipper(t, nc, log, posPath, opts)
	waitRecords(t, r, 100)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The crash: the position saved last said 40 records.
	if err := os.WriteFile(posPath, saved, 0o644); err != nil {
		t.Fatal(err)
	}
	if pos, err := readPosition(posPath, "fe1"); err != nil || pos.local != 40 {
		t.Fatalf("position after 40 records: %+v, %v", pos, err)
	}
	time.Sleep(2 * window) // JetStream forgets the ids of the messages of records 41..100
	appendLocal(t, log, 101, 150)
	_, stop = runShipper(t, nc, log, posPath, opts)
	waitRecords(t, r, 150)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// With the NATS server down, the shipper keeps failing and retrying its batch; records
// the local log took meanwhile are shipped, once each, when the server is back.
func TestShipperRetriesThroughOutage(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	dir := t.TempDir()
	log, err := stream.Open(filepath.Join(dir, "log"), stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	opts := Options{FrontEnd: "fe1", AckTimeout: 300 * time.Millisecond, Resends: 1}
	appendLocal(t, log, 1, 50)
	_, stop := runShipper(t, nc, log, filepath.Join(dir, "shipped"), opts)
	r := open(t, connect(t, srv), Options{FrontEnd: "reader"})
	waitRecords(t, r, 50)
	srv.Stop()
	appendLocal(t, log, 51, 120)
	time.Sleep(time.Second) // let the shipper fail against the stopped server
	srv.Start()
	waitRecords(t, r, 120)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestShipperPositionFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pos")
	if pos, err := readPosition(p, "fe1"); err != nil || pos != (position{}) {
		t.Fatalf("missing file: got %+v, %v", pos, err)
	}
	for _, bad := range []string{"", "junk", positionMagic + " fe1 1", positionMagic + " fe2 1 1", positionMagic + " fe1 x 1"} {
		os.WriteFile(p, []byte(bad), 0o644)
		if _, err := readPosition(p, "fe1"); err == nil {
			t.Errorf("position %q: no error", bad)
		}
	}
}
