package natsstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hashgrid/hashgrid/stream"
)

func rec(i int) []byte { return fmt.Appendf(nil, "share-%06d", i) }

func ctxT(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// readAll reads every record after after in batches of batch.
func readAll(tb testing.TB, s stream.Stream, after uint64, batch int) []stream.Record {
	tb.Helper()
	var out []stream.Record
	for {
		recs, err := s.Read(ctxT(tb, 10*time.Second), after, batch)
		if err != nil {
			tb.Fatalf("read after %d: %v", after, err)
		}
		if len(recs) == 0 {
			return out
		}
		if len(recs) > batch {
			tb.Fatalf("read %d records, max %d", len(recs), batch)
		}
		out = append(out, recs...)
		after = recs[len(recs)-1].Seq
	}
}

func TestAppendReadRoundTrip(t *testing.T) {
	srv := startServer(t)
	s := open(t, connect(t, srv), Options{FrontEnd: "fe1"})
	const n = 100
	for i := 1; i <= n; i++ {
		seq, err := s.Append(ctxT(t, 10*time.Second), rec(i))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if want := MessageEnd(uint64(i)); seq != want {
			t.Fatalf("append %d: got seq %d, want %d", i, seq, want)
		}
	}
	for _, batch := range []int{1, 7, 4096} {
		got := readAll(t, s, 0, batch)
		if len(got) != n {
			t.Fatalf("batch %d: read %d records, want %d", batch, len(got), n)
		}
		for i, r := range got {
			if r.Seq != MessageEnd(uint64(i+1)) || string(r.Data) != string(rec(i+1)) {
				t.Fatalf("batch %d: record %d: got %d %q, want %d %q", batch, i, r.Seq, r.Data, MessageEnd(uint64(i+1)), rec(i+1))
			}
		}
	}
	// A read from the middle, and one past the end.
	got := readAll(t, s, MessageEnd(60), 10)
	if len(got) != 40 || got[0].Seq != MessageEnd(61) {
		t.Fatalf("read after 60: got %d records from %d, want 40 from 61", len(got), got[0].Seq)
	}
	if recs, err := s.Read(ctxT(t, 5*time.Second), MessageEnd(n), 10); err != nil || len(recs) != 0 {
		t.Fatalf("read after last: got %d records, %v; want none", len(recs), err)
	}
	if _, err := s.Read(ctxT(t, 5*time.Second), 0, 0); err == nil {
		t.Fatal("read with max 0: no error")
	}
	big := make([]byte, DefaultMaxRecordSize+1)
	if _, err := s.Append(ctxT(t, 5*time.Second), big); !errors.Is(err, stream.ErrTooLarge) {
		t.Fatalf("append %d bytes: got %v, want ErrTooLarge", len(big), err)
	}
}

// Concurrent front-ends' records come out in one order, the stream's, whichever
// front-end appended them, and each front-end's own records keep their append order.
func TestOrderAcrossFrontEnds(t *testing.T) {
	srv := startServer(t)
	a := open(t, connect(t, srv), Options{FrontEnd: "a"})
	b := open(t, connect(t, srv), Options{FrontEnd: "b"})
	const n = 300
	var wg sync.WaitGroup
	for _, s := range []*Stream{a, b} {
		wg.Go(func() {
			for i := 1; i <= n; i++ {
				if _, err := s.Append(ctxT(t, 10*time.Second), fmt.Appendf(nil, "%s-%06d", s.opts.FrontEnd, i)); err != nil {
					t.Errorf("%s append %d: %v", s.opts.FrontEnd, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := readAll(t, a, 0, 64)
	if len(got) != 2*n {
		t.Fatalf("read %d records, want %d", len(got), 2*n)
	}
	next := map[byte]int{'a': 1, 'b': 1}
	for i, r := range got {
		if r.Seq != MessageEnd(uint64(i+1)) {
			t.Fatalf("record %d has seq %d, want %d", i, r.Seq, MessageEnd(uint64(i+1)))
		}
		fe := r.Data[0]
		if want := fmt.Sprintf("%c-%06d", fe, next[fe]); string(r.Data) != want {
			t.Fatalf("record %d: got %q, want %q", r.Seq, r.Data, want)
		}
		next[fe]++
	}
}

func TestAppendAsyncCallbacksInCommitOrder(t *testing.T) {
	srv := startServer(t)
	s := open(t, connect(t, srv), Options{FrontEnd: "fe1", MaxPending: 64})
	const n = 2000
	var mu sync.Mutex
	var seqs []uint64
	var calls [n]int
	all := make(chan struct{})
	for i := range n {
		s.AppendAsync(rec(i), func(seq uint64, err error) {
			mu.Lock()
			defer mu.Unlock()
			calls[i]++
			if err != nil {
				t.Errorf("record %d: %v", i, err)
			}
			seqs = append(seqs, seq)
			if len(seqs) == n {
				close(all)
			}
		})
	}
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		t.Fatal("not every callback came")
	}
	mu.Lock()
	defer mu.Unlock()
	for i, c := range calls {
		if c != 1 {
			t.Fatalf("record %d: done called %d times", i, c)
		}
	}
	for i := 1; i < n; i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("callbacks out of commit order: %d after %d", seqs[i], seqs[i-1])
		}
	}
	got := readAll(t, s, 0, 500)
	if len(got) != n {
		t.Fatalf("read %d records, want %d", len(got), n)
	}
	for i, r := range got {
		if string(r.Data) != string(rec(i)) || r.Seq != seqs[i] {
			t.Fatalf("record %d: got %d %q, want %d %q", i, r.Seq, r.Data, seqs[i], rec(i))
		}
	}
}

// A record re-sent with its message id, as the acker and the Shipper re-send, is
// answered with the first copy's sequence and stored once.
func TestResentRecordStoredOnce(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	s := open(t, nc, Options{FrontEnd: "fe1"})
	seq, err := s.Append(ctxT(t, 5*time.Second), rec(1))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		ack, err := js.PublishMsg(ctxT(t, 5*time.Second),
			&nats.Msg{Subject: s.subj, Data: rec(1)}, jetstream.WithMsgID(MsgID("fe1", 1, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if !ack.Duplicate || MessageEnd(ack.Sequence) != seq {
			t.Fatalf("re-send: got message %d duplicate %v, want the message of record %d, duplicate", ack.Sequence, ack.Duplicate, seq)
		}
	}
	if got := readAll(t, s, 0, 10); len(got) != 1 {
		t.Fatalf("stream holds %d records, want 1", len(got))
	}
}

// A front-end that opens again continues its local sequence, so its new records are not
// taken for repeats of old ones and dropped.
func TestReopenContinuesLocalSequence(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	s, err := Open(ctxT(t, 5*time.Second), nc, Options{FrontEnd: "fe1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := s.Append(ctxT(t, 5*time.Second), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = open(t, nc, Options{FrontEnd: "fe1"})
	if got := s.NextLocalSeq(); got != 4 {
		t.Fatalf("next local sequence after reopen: got %d, want 4", got)
	}
	seq, err := s.Append(ctxT(t, 5*time.Second), rec(4))
	if err != nil || seq != MessageEnd(4) {
		t.Fatalf("append after reopen: got seq %d, %v; want %d", seq, err, MessageEnd(4))
	}
}

// Two processes publishing as one front-end collide on message ids; the one whose record
// was dropped as a repeat hears an error, not "accepted".
func TestReusedIDIsAnError(t *testing.T) {
	srv := startServer(t)
	a := open(t, connect(t, srv), Options{FrontEnd: "fe1"})
	b := open(t, connect(t, srv), Options{FrontEnd: "fe1"})
	if _, err := a.Append(ctxT(t, 5*time.Second), rec(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(ctxT(t, 5*time.Second), rec(2)); !errors.Is(err, ErrIDReused) {
		t.Fatalf("append with a reused id: got %v, want ErrIDReused", err)
	}
	if got := readAll(t, a, 0, 10); len(got) != 1 {
		t.Fatalf("stream holds %d records, want 1", len(got))
	}
}

func TestWaitWakesOnNewRecord(t *testing.T) {
	srv := startServer(t)
	w := open(t, connect(t, srv), Options{FrontEnd: "reader"})
	a := open(t, connect(t, srv), Options{FrontEnd: "fe1"})
	if _, err := a.Append(ctxT(t, 5*time.Second), rec(1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(ctxT(t, 5*time.Second), 0); err != nil {
		t.Fatalf("wait after 0 with one record: %v", err)
	}
	woke := make(chan error, 1)
	go func() { woke <- w.Wait(ctxT(t, 20*time.Second), 1) }()
	select {
	case err := <-woke:
		t.Fatalf("wait returned before a new record: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := a.Append(ctxT(t, 5*time.Second), rec(2)); err != nil {
		t.Fatal(err)
	}
	if err := <-woke; err != nil {
		t.Fatalf("wait: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := w.Wait(ctx, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait with no new record: got %v, want deadline exceeded", err)
	}
	go func() { woke <- w.Wait(ctxT(t, 20*time.Second), 2) }()
	w.Close()
	if err := <-woke; !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("wait across close: got %v, want ErrClosed", err)
	}
}

// stream.Tail, the accounting consumer's loop, copies everything appended concurrently,
// once and in order.
func TestTail(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	s := open(t, nc, Options{FrontEnd: "fe1"})
	r := open(t, connect(t, srv), Options{FrontEnd: "reader"})
	const n = 1000
	got := make(chan stream.Record, n)
	ctx, cancel := context.WithCancel(context.Background())
	tailed := make(chan error, 1)
	go func() {
		tailed <- stream.Tail(ctx, r, 0, 100, func(recs []stream.Record) error {
			for _, rec := range recs {
				got <- rec
			}
			return nil
		})
	}()
	for i := range n {
		s.AppendAsync(rec(i), func(uint64, error) {})
		if i%100 == 0 {
			time.Sleep(5 * time.Millisecond) // let the tail catch up and wait in between
		}
	}
	var last uint64
	for i := range n {
		select {
		case r := <-got:
			if r.Seq <= last || string(r.Data) != string(rec(i)) {
				t.Fatalf("tailed record %d: got %d %q after %d", i, r.Seq, r.Data, last)
			}
			last = r.Seq
		case <-time.After(20 * time.Second):
			t.Fatalf("tail stopped after %d records", i)
		}
	}
	cancel()
	if err := <-tailed; !errors.Is(err, context.Canceled) {
		t.Fatalf("tail: %v", err)
	}
}

// Close answers every append: with the stream down, those waiting for an acknowledgement
// fail with ErrClosed once CloseWait is over, and later ones fail at once.
func TestCloseFailsPendingAppends(t *testing.T) {
	srv := startServer(t)
	s := open(t, connect(t, srv), Options{FrontEnd: "fe1", CloseWait: 300 * time.Millisecond, AckTimeout: 10 * time.Second})
	if _, err := s.Append(ctxT(t, 5*time.Second), rec(0)); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	const n = 10
	errs := make(chan error, 2*n)
	for i := range n {
		s.AppendAsync(rec(i), func(_ uint64, err error) { errs <- err })
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("close took %v with CloseWait 300ms", d)
	}
	for i := range n {
		select {
		case err := <-errs:
			if !errors.Is(err, stream.ErrClosed) {
				t.Fatalf("pending append %d: got %v, want ErrClosed", i, err)
			}
		default:
			t.Fatalf("only %d of %d pending appends answered by Close", i, n)
		}
	}
	s.AppendAsync(rec(0), func(_ uint64, err error) { errs <- err })
	if err := <-errs; !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("append after close: got %v, want ErrClosed", err)
	}
	if len(errs) != 0 {
		t.Fatal("a callback ran twice")
	}
	if _, err := s.Read(ctxT(t, time.Second), 0, 1); !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("read after close: got %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// The stream is on disk: a server stopped and started on the same store directory still
// has every record, and appends go on from there.
func TestServerRestartKeepsRecords(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	s := open(t, nc, Options{FrontEnd: "fe1"})
	const n = 200
	for i := 1; i <= n; i++ {
		if _, err := s.Append(ctxT(t, 5*time.Second), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	srv.Stop()
	srv.Start()
	// The same connection reconnects to the server, back on its port.
	seq, err := s.Append(ctxT(t, 20*time.Second), rec(n+1))
	if err != nil || seq != MessageEnd(n+1) {
		t.Fatalf("append after restart: got seq %d, %v; want %d", seq, err, MessageEnd(n+1))
	}
	s2 := open(t, connect(t, srv), Options{FrontEnd: "fe1"})
	if got := s2.NextLocalSeq(); got != n+2 {
		t.Fatalf("local sequence after restart: got %d, want %d", got, n+2)
	}
	got := readAll(t, s2, 0, 64)
	if len(got) != n+1 {
		t.Fatalf("after restart: %d records, want %d", len(got), n+1)
	}
	for i, r := range got {
		if r.Seq != MessageEnd(uint64(i+1)) || string(r.Data) != string(rec(i+1)) {
			t.Fatalf("record %d: got %d %q", i+1, r.Seq, r.Data)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"no front-end", Options{}},
		{"dot in front-end", Options{FrontEnd: "a.b"}},
		{"wildcard in front-end", Options{FrontEnd: "*"}},
		{"two replicas", Options{FrontEnd: "a", Replicas: 2}},
		{"window within resends", Options{FrontEnd: "a", DuplicateWindow: 10 * time.Second, AckTimeout: 5 * time.Second}},
		{"max age below window", Options{FrontEnd: "a", MaxAge: time.Minute}},
		{"bad prefix", Options{FrontEnd: "a", Prefix: "x..y"}},
	} {
		if err := tc.opts.Validate(); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if err := (Options{FrontEnd: "fe-1_a", Replicas: 3}).Validate(); err != nil {
		t.Errorf("valid options: %v", err)
	}
}

func TestMsgIDRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		first, last uint64
		id          string
	}{{42, 42, "fe-1:42"}, {7, 9, "fe-1:7-9"}, {1, MaxIndex, "fe-1:1-4095"}} {
		id := MsgID("fe-1", tc.first, tc.last)
		if id != tc.id {
			t.Errorf("MsgID(%d, %d): got %q, want %q", tc.first, tc.last, id, tc.id)
		}
		fe, first, last, err := ParseMsgID(id)
		if err != nil || fe != "fe-1" || first != tc.first || last != tc.last {
			t.Errorf("ParseMsgID(%q): got %q %d %d %v", id, fe, first, last, err)
		}
	}
	for _, bad := range []string{"", "fe", ":1", "fe:", "fe:0", "fe:x", "fe:3-3", "fe:3-2", "fe:0-2", "fe:1-", "fe:1-4096", "fe:1-x"} {
		if _, _, _, err := ParseMsgID(bad); err == nil {
			t.Errorf("ParseMsgID(%q): no error", bad)
		}
	}
}

// Record numbers rise along the stream and within a message, a message's last record
// ends it, and numbers from before batching (stream sequences) name whole messages.
func TestRecordNumbers(t *testing.T) {
	if a, b, c := Seq(5, 0, 3), Seq(5, 1, 3), Seq(5, 2, 3); !(a < b && b < c && c == MessageEnd(5) && c < Seq(6, 0, 2)) {
		t.Fatalf("numbers of message 5 (3 records) and 6: %d %d %d, %d", a, b, c, Seq(6, 0, 2))
	}
	if MessageEnd(MaxStreamSeq) >= 1<<63 || MessageEnd(1) <= 1<<62 {
		t.Fatalf("numbers outside [2^62, 2^63): %d %d", MessageEnd(1), MessageEnd(MaxStreamSeq))
	}
	for _, tc := range []struct {
		after, msg, skip uint64
	}{
		{0, 1, 0},                       // from the start
		{41, 42, 0},                     // a stream sequence from before batching
		{Seq(7, 1, 3), 7, Seq(7, 1, 3)}, // mid-message: the rest of message 7
		{Seq(7, 2, 3), 8, 0},            // after a message's last record
		{MessageEnd(41), 42, 0},         // the same, of a one-record message
	} {
		if msg, skip := next(tc.after); msg != tc.msg || skip != tc.skip {
			t.Errorf("next(%d): got message %d skip %d, want %d %d", tc.after, msg, skip, tc.msg, tc.skip)
		}
	}
}

// Appends made while the server is down wait in the client, time out, are re-sent with
// their ids and, once the server is back, are all acknowledged and stored once each.
func TestAppendsAcrossServerOutage(t *testing.T) {
	srv := startServer(t)
	s := open(t, connect(t, srv), Options{FrontEnd: "fe1", AckTimeout: 400 * time.Millisecond, Resends: 10})
	if _, err := s.Append(ctxT(t, 5*time.Second), rec(0)); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	const n = 20
	type result struct {
		seq uint64
		err error
	}
	results := make(chan result, n)
	for i := 1; i <= n; i++ {
		s.AppendAsync(rec(i), func(seq uint64, err error) { results <- result{seq, err} })
	}
	time.Sleep(time.Second) // the outage: longer than the ack timeout
	srv.Start()
	var last uint64
	for i := 1; i <= n; i++ {
		r := <-results
		if r.err != nil {
			t.Fatalf("append %d across the outage: %v", i, r.err)
		}
		if r.seq <= last {
			t.Fatalf("append %d: seq %d after %d", i, r.seq, last)
		}
		last = r.seq
	}
	got := readAll(t, s, 0, 100)
	if len(got) != n+1 {
		t.Fatalf("stream holds %d records, want %d", len(got), n+1)
	}
	for i, g := range got {
		if string(g.Data) != string(rec(i)) {
			t.Fatalf("record %d: got %q, want %q", g.Seq, g.Data, rec(i))
		}
	}
}

// Records the stream no longer keeps (MaxBytes, MaxAge) are reported as pruned, not
// skipped in silence.
func TestReadPrunedRecords(t *testing.T) {
	srv := startServer(t)
	s := open(t, connect(t, srv), Options{FrontEnd: "fe1", MaxBytes: 4096})
	for i := 1; i <= 200; i++ {
		if _, err := s.Append(ctxT(t, 5*time.Second), rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	info, err := s.st.Info(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	first := info.State.FirstSeq
	if first <= 1 {
		t.Fatalf("nothing dropped under MaxBytes 4096: first %d", first)
	}
	if _, err := s.Read(ctxT(t, 5*time.Second), 0, 10); !errors.Is(err, stream.ErrPruned) {
		t.Fatalf("read after 0 with first %d: got %v, want ErrPruned", first, err)
	}
	got := readAll(t, s, MessageEnd(first-1), 50)
	if len(got) != int(200-first+1) || got[0].Seq != MessageEnd(first) || string(got[0].Data) != string(rec(int(first))) {
		t.Fatalf("read from the first kept record %d: got %d records", first, len(got))
	}
}
