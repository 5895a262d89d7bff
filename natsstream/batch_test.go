package natsstream

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hashgrid/hashgrid/stream"
)

// streamMsgs returns how many messages the share stream holds.
func streamMsgs(t *testing.T, s *Stream) uint64 {
	t.Helper()
	info, err := s.st.Info(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// publishRaw publishes data with message id id on front-end fe's subject, as another
// writer (or the code before batching) would.
func publishRaw(t *testing.T, nc *nats.Conn, fe, id string, data []byte) *jetstream.PubAck {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.PublishMsg(ctxT(t, 5*time.Second), &nats.Msg{Subject: DefaultPrefix + "." + fe, Data: data},
		jetstream.WithMsgID(id))
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

// batchData is the data of a message holding recs.
func batchData(recs ...[]byte) []byte {
	var data []byte
	for _, r := range recs {
		data = appendBatch(data, r)
	}
	return data
}

// Appends that queue while a message awaits its acknowledgement share the next one: a
// burst of records takes far fewer messages than records, none above MaxBatch or
// MaxBatchBytes, and every record comes back once, in order, under the number its
// callback reported.
func TestAppendsShareMessages(t *testing.T) {
	srv := startServer(t)
	s := open(t, connect(t, srv), Options{FrontEnd: "fe1", MaxBatch: 100, MaxBatchBytes: 1000})
	const n = 3000
	var mu sync.Mutex
	seqs := make([]uint64, n)
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		s.AppendAsync(rec(i), func(seq uint64, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("append %d: %v", i, err)
			}
			mu.Lock()
			seqs[i] = seq
			mu.Unlock()
		})
	}
	wg.Wait()
	msgs := streamMsgs(t, s)
	// rec(i) is 12 bytes, 13 with its length: 76 fit in 1,000 bytes.
	if msgs >= n/4 || msgs < n/76 {
		t.Fatalf("%d records took %d messages; want fewer than %d and at least %d", n, msgs, n/4, n/76)
	}
	t.Logf("%d records in %d messages", n, msgs)
	got := readAll(t, s, 0, 333)
	if len(got) != n {
		t.Fatalf("read %d records, want %d", len(got), n)
	}
	perMsg := map[uint64]int{}
	for i, r := range got {
		if string(r.Data) != string(rec(i)) || r.Seq != seqs[i] {
			t.Fatalf("record %d: got %d %q, want %d %q", i, r.Seq, r.Data, seqs[i], rec(i))
		}
		perMsg[(r.Seq-SeqBase)>>IndexBits]++
	}
	for m, k := range perMsg {
		if k > 100 {
			t.Fatalf("message %d holds %d records, above MaxBatch 100", m, k)
		}
	}
	if uint64(len(perMsg)) != msgs {
		t.Fatalf("records name %d messages, the stream holds %d", len(perMsg), msgs)
	}
	// The local sequence went on by records, not messages.
	if got := s.NextLocalSeq(); got != n+1 {
		t.Fatalf("next local sequence %d, want %d", got, n+1)
	}
}

// A reader resumes after any record, in the middle of a message too, by the number it
// saved: a new reader (a restarted consumer) after record k gets exactly the records
// after k, and Read never returns more than max, keeping the rest of a message for the
// next call.
func TestReadResumesMidMessage(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	r := open(t, nc, Options{FrontEnd: "reader"}) // creates the stream
	var recs [][]byte
	for i := range 10 {
		recs = append(recs, rec(i))
	}
	ack := publishRaw(t, nc, "fe1", MsgID("fe1", 1, 10), batchData(recs...))
	publishRaw(t, nc, "fe1", MsgID("fe1", 11, 11), rec(10))
	recs = append(recs, rec(10))

	first, err := r.Read(ctxT(t, 5*time.Second), 0, 3)
	if err != nil || len(first) != 3 {
		t.Fatalf("read 3: got %d records, %v", len(first), err)
	}
	all := readAll(t, r, first[2].Seq, 4) // the same cursor, going on mid-message
	all = append(first, all...)
	if len(all) != len(recs) {
		t.Fatalf("read %d records, want %d", len(all), len(recs))
	}
	for i, g := range all {
		want := Seq(ack.Sequence, i, 10)
		if i == 10 {
			want = MessageEnd(ack.Sequence + 1)
		}
		if g.Seq != want || string(g.Data) != string(recs[i]) {
			t.Fatalf("record %d: got %d %q, want %d %q", i, g.Seq, g.Data, want, recs[i])
		}
	}
	// A fresh reader after each record, as a consumer restarted from its saved number.
	for k := range all {
		fresh := open(t, nc, Options{FrontEnd: "reader"})
		got := readAll(t, fresh, all[k].Seq, 2)
		if len(got) != len(all)-k-1 {
			t.Fatalf("after record %d: read %d records, want %d", k, len(got), len(all)-k-1)
		}
		for i, g := range got {
			if g.Seq != all[k+1+i].Seq || string(g.Data) != string(all[k+1+i].Data) {
				t.Fatalf("after record %d: record %d is %d %q, want %d", k, i, g.Seq, g.Data, all[k+1+i].Seq)
			}
		}
		fresh.Close()
	}
	// Wait after a record mid-message returns at once: the message's rest exists.
	if err := r.Wait(ctxT(t, time.Second), all[4].Seq); err != nil {
		t.Fatalf("wait mid-message: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := r.Wait(ctx, all[10].Seq); err == nil {
		t.Fatal("wait after the last record returned without a new one")
	}
}

// A stream written before batching, one record a message with ids FrontEnd:seq, is read
// as it was, mixed with batched messages; and a position saved then (a stream
// sequence) resumes after that message.
func TestReadsSingleRecordMessages(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	r := open(t, nc, Options{FrontEnd: "reader"}) // creates the stream
	for i := 1; i <= 3; i++ {
		publishRaw(t, nc, "old", MsgID("old", uint64(i), uint64(i)), rec(i))
	}
	publishRaw(t, nc, "new", MsgID("new", 1, 3), batchData(rec(4), rec(5), rec(6)))
	publishRaw(t, nc, "old", MsgID("old", 4, 4), rec(7))
	// A message without an id: one record too.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctxT(t, 5*time.Second), DefaultPrefix+".other", rec(8)); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, r, 0, 100)
	wantSeqs := []uint64{MessageEnd(1), MessageEnd(2), MessageEnd(3), Seq(4, 0, 3), Seq(4, 1, 3), MessageEnd(4), MessageEnd(5), MessageEnd(6)}
	if len(got) != len(wantSeqs) {
		t.Fatalf("read %d records, want %d", len(got), len(wantSeqs))
	}
	for i, g := range got {
		if g.Seq != wantSeqs[i] || string(g.Data) != string(rec(i+1)) {
			t.Fatalf("record %d: got %d %q, want %d %q", i, g.Seq, g.Data, wantSeqs[i], rec(i+1))
		}
	}
	// Positions as the code before batching saved them: the stream sequence.
	for _, tc := range []struct {
		after    uint64
		first, n int // the first record's rec number, and how many
	}{{2, 3, 6}, {3, 4, 5}, {4, 7, 2}, {6, 0, 0}} {
		fresh := open(t, nc, Options{FrontEnd: "reader"})
		got := readAll(t, fresh, tc.after, 100)
		if len(got) != tc.n || tc.n > 0 && string(got[0].Data) != string(rec(tc.first)) {
			t.Fatalf("after stream sequence %d: got %d records, want %d from %q", tc.after, len(got), tc.n, rec(tc.first))
		}
		fresh.Close()
	}
	// A front-end whose last message is from before batching goes on after it.
	s := open(t, nc, Options{FrontEnd: "old"})
	if got := s.NextLocalSeq(); got != 5 {
		t.Fatalf("next local sequence after a single-record message: %d, want 5", got)
	}
	s = open(t, nc, Options{FrontEnd: "new"})
	if got := s.NextLocalSeq(); got != 4 {
		t.Fatalf("next local sequence after a batch: %d, want 4", got)
	}
}

// A message whose data does not hold the records its id names is an error, not records
// made up or skipped.
func TestReadCorruptBatch(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	r := open(t, nc, Options{FrontEnd: "reader"})
	publishRaw(t, nc, "fe1", MsgID("fe1", 1, 3), batchData(rec(1), rec(2)))
	if got, err := r.Read(ctxT(t, 5*time.Second), 0, 10); err == nil {
		t.Fatalf("read a message of 2 records named 3: got %d records, no error", len(got))
	}
}

// A batch re-sent with its id is stored once: its records are read once.
func TestResentBatchStoredOnce(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	r := open(t, nc, Options{FrontEnd: "reader"})
	data := batchData(rec(1), rec(2), rec(3))
	first := publishRaw(t, nc, "fe1", MsgID("fe1", 1, 3), data)
	again := publishRaw(t, nc, "fe1", MsgID("fe1", 1, 3), data)
	if !again.Duplicate || again.Sequence != first.Sequence {
		t.Fatalf("re-send: got seq %d duplicate %v, want seq %d duplicate", again.Sequence, again.Duplicate, first.Sequence)
	}
	if got := readAll(t, r, 0, 10); len(got) != 3 {
		t.Fatalf("stream holds %d records, want 3", len(got))
	}
}

// The Shipper ships a backlog in messages of several records each, at most MaxBatch.
func TestShipperBatches(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	dir := t.TempDir()
	log, err := stream.Open(filepath.Join(dir, "log"), stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	appendLocal(t, log, 1, 1000)
	_, stop := runShipper(t, nc, log, filepath.Join(dir, "shipped"), Options{FrontEnd: "fe1", MaxBatch: 64})
	r := open(t, connect(t, srv), Options{FrontEnd: "reader"})
	waitRecords(t, r, 1000)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The Tailer hands the shipper batches of up to 4096 records: 1000 records in 16
	// messages of 64 and one of 40, unless the log was read in smaller parts.
	if msgs := streamMsgs(t, r); msgs < 16 || msgs > 100 {
		t.Fatalf("1000 records shipped in %d messages, want 16 to 100 of at most 64", msgs)
	}
}

// A batch offered again, when the stream already stored its messages but the shipper
// did not learn so (acknowledgements lost), is cut into the same messages with the same
// ids: JetStream takes them for repeats and stores nothing twice.
func TestShipperResendsSameMessages(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	dir := t.TempDir()
	log, err := stream.Open(filepath.Join(dir, "log"), stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	appendLocal(t, log, 1, 300)
	sh, err := NewShipper(ctxT(t, 10*time.Second), nc, log, filepath.Join(dir, "shipped"), Options{FrontEnd: "fe1", MaxBatch: 50, MaxBatchBytes: 400})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := log.Read(ctxT(t, 5*time.Second), 0, 300)
	if err != nil || len(recs) != 300 {
		t.Fatalf("local read: %d records, %v", len(recs), err)
	}
	if err := sh.ship(ctxT(t, 10*time.Second), recs); err != nil {
		t.Fatal(err)
	}
	r := open(t, connect(t, srv), Options{FrontEnd: "reader"})
	msgs := streamMsgs(t, r)
	// Lost acknowledgements: the shipper is back where it was, and sure of it.
	sh.pos, sh.stored, sh.unsure = position{}, nil, false
	if err := sh.ship(ctxT(t, 10*time.Second), recs); err != nil {
		t.Fatal(err)
	}
	if again := streamMsgs(t, r); again != msgs {
		t.Fatalf("the same batch again: stream went from %d to %d messages", msgs, again)
	}
	waitRecords(t, r, 300)
}

// A Read that finds records returns them at once: it waits up to ReadWait only when it
// found none although newer ones exist.
func TestReadReturnsRecordsAtHand(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	r := open(t, nc, Options{FrontEnd: "reader", ReadWait: 10 * time.Second})
	publishRaw(t, nc, "fe1", MsgID("fe1", 1, 1), rec(1))
	publishRaw(t, nc, "fe1", MsgID("fe1", 2, 4), batchData(rec(2), rec(3), rec(4)))
	start := time.Now()
	got, err := r.Read(ctxT(t, 30*time.Second), 0, 100)
	if err != nil || len(got) != 4 {
		t.Fatalf("read: got %d records, %v; want 4", len(got), err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("read of records at hand took %v (ReadWait 10s)", d)
	}
}
