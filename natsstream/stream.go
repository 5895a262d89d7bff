package natsstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hashgrid/hashgrid/stream"
)

// Stream is a stream.Stream on a JetStream stream; see the package doc. Its methods are
// safe for concurrent use; Read and Wait share one read cursor and are serialised.
type Stream struct {
	opts Options
	js   jetstream.JetStream
	st   jetstream.Stream
	subj string

	// Appends queue in the order they take closeMu's read lock; the batcher takes them
	// into messages in that order, and the acker answers the messages in the order they
	// were published. closeMu orders appends against Close.
	closeMu  sync.RWMutex
	closing  bool
	queue    chan appendReq  // appends not yet in a message: at most MaxPending
	slots    chan struct{}   // one per message awaiting its acknowledgement
	inflight chan *pub       // published messages, to the acker
	next     atomic.Uint64   // next local sequence; the batcher's
	abort    context.Context // ends when Close stops waiting for acknowledgements
	abortFn  context.CancelFunc
	done     chan struct{} // closed when Close starts
	wg       sync.WaitGroup

	mu     sync.Mutex
	last   uint64        // highest stream sequence known to exist
	notify chan struct{} // closed and replaced when last grows
	watch  jetstream.ConsumeContext

	readMu sync.Mutex
	cons   jetstream.Consumer // the read cursor, nil until the first Read
	pos    uint64             // number of the record Read returned last from cons
	buf    []stream.Record    // records fetched from cons after pos, not yet returned
	perMsg int                // most records in one message of the last fetch
}

// appendReq is one record waiting for its message.
type appendReq struct {
	rec  []byte
	done func(seq uint64, err error)
}

// pub is one message on its way: published, awaiting its acknowledgement.
type pub struct {
	msg   *nats.Msg
	id    string
	dones []func(seq uint64, err error) // one per record, in order
	paf   jetstream.PubAckFuture
	err   error // the publish failed at once
}

var _ stream.Stream = (*Stream)(nil)

// ErrIDReused is the error of an append whose message id JetStream already held from
// another message, so that it was not stored: two processes publish as one front-end.
var ErrIDReused = errors.New("natsstream: message id reused")

// Open creates the JetStream stream if it does not exist (or updates its replicas,
// window and limits if it does) and returns a Stream publishing as opts.FrontEnd on nc.
// The caller keeps nc and closes it after Close.
func Open(ctx context.Context, nc *nats.Conn, opts Options) (*Stream, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.fill()
	js, err := jetstream.New(nc,
		// The slots bound the messages awaited; a message given up at Close may still
		// count in nats.go's own bound until its timeout, so that one is roomier, not
		// to stall the appends failed meanwhile.
		jetstream.WithPublishAsyncMaxPending(opts.MaxInFlight+opts.MaxPending+2),
		jetstream.WithPublishAsyncTimeout(opts.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("natsstream: jetstream: %w", err)
	}
	st, err := Setup(ctx, func(ctx context.Context) (jetstream.Stream, error) {
		return js.CreateOrUpdateStream(ctx, opts.config())
	})
	if err != nil {
		return nil, fmt.Errorf("natsstream: stream %s: %w", opts.Stream, err)
	}
	s := &Stream{
		opts:     opts,
		js:       js,
		st:       st,
		subj:     opts.subject(),
		queue:    make(chan appendReq, opts.MaxPending),
		slots:    make(chan struct{}, opts.MaxInFlight),
		inflight: make(chan *pub, opts.MaxInFlight),
		done:     make(chan struct{}),
		notify:   make(chan struct{}),
	}
	s.abort, s.abortFn = context.WithCancel(context.Background())
	s.last = st.CachedInfo().State.LastSeq
	last, err := lastLocalSeq(ctx, st, s.subj, opts.FrontEnd)
	if err != nil {
		return nil, err
	}
	s.next.Store(last + 1)
	s.wg.Add(2)
	go s.batcher()
	go s.acker()
	return s, nil
}

// lastLocalSeq is the local sequence of frontEnd's newest record in st, 0 if none.
func lastLocalSeq(ctx context.Context, st jetstream.Stream, subj, frontEnd string) (uint64, error) {
	msg, err := st.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("natsstream: last record of %s: %w", subj, err)
	}
	fe, _, last, err := ParseMsgID(msg.Header.Get(jetstream.MsgIDHeader))
	if err != nil {
		return 0, fmt.Errorf("natsstream: message %d: %w", msg.Sequence, err)
	}
	if fe != frontEnd {
		return 0, fmt.Errorf("natsstream: message %d on %s carries front-end %q", msg.Sequence, subj, fe)
	}
	return last, nil
}

// NextLocalSeq returns the local sequence the next record put in a message will carry.
func (s *Stream) NextLocalSeq() uint64 { return s.next.Load() }

// Append implements stream.Stream: it returns once the stream's replicas acknowledged
// the record's message. If ctx ends first the record may still be stored.
func (s *Stream) Append(ctx context.Context, rec []byte) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	type result struct {
		seq uint64
		err error
	}
	ch := make(chan result, 1)
	s.AppendAsync(append([]byte(nil), rec...), func(seq uint64, err error) { ch <- result{seq, err} })
	select {
	case r := <-ch:
		return r.seq, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("natsstream: append abandoned (the record may still be stored): %w", ctx.Err())
	}
}

// AppendAsync implements stream.Stream. It takes rec over and calls done once, from the
// stream's acknowledging goroutine, in the order of the AppendAsync calls: with the
// record's number once JetStream acknowledged its message, or with an error. Numbers
// rise along that order except after a re-send, whose message is stored after those
// published meanwhile. done runs before AppendAsync returns when the record is refused
// at once (too large, stream closed). AppendAsync blocks while MaxPending records wait
// for a message.
func (s *Stream) AppendAsync(rec []byte, done func(seq uint64, err error)) {
	if len(rec) > s.opts.MaxRecordSize {
		done(0, fmt.Errorf("%w: %d bytes, limit %d", stream.ErrTooLarge, len(rec), s.opts.MaxRecordSize))
		return
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closing {
		done(0, stream.ErrClosed)
		return
	}
	s.queue <- appendReq{rec, done}
}

// batcher puts the queued records into messages and publishes them, each message once a
// slot is free: what queued while the slots were taken goes out together.
func (s *Stream) batcher() {
	defer s.wg.Done()
	defer close(s.inflight)
	var carry *appendReq // taken from the queue but not fitting the last message
	var recs [][]byte
	for {
		s.slots <- struct{}{}
		first := carry
		carry = nil
		if first == nil {
			r, ok := <-s.queue
			if !ok {
				return
			}
			first = &r
		}
		p := &pub{dones: []func(uint64, error){first.done}}
		recs = append(recs[:0], first.rec)
		size := batchSize(first.rec)
	fill:
		for len(recs) < s.opts.MaxBatch {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break fill
				}
				if size+batchSize(r.rec) > s.opts.MaxBatchBytes {
					carry = &r
					break fill
				}
				size += batchSize(r.rec)
				recs = append(recs, r.rec)
				p.dones = append(p.dones, r.done)
			default:
				break fill
			}
		}
		local := s.next.Load()
		s.next.Store(local + uint64(len(recs)))
		p.id = MsgID(s.opts.FrontEnd, local, local+uint64(len(recs))-1)
		data := recs[0]
		if len(recs) > 1 {
			data = make([]byte, 0, size)
			for _, r := range recs {
				data = appendBatch(data, r)
			}
		}
		clear(recs)
		p.msg = &nats.Msg{Subject: s.subj, Data: data, Header: nats.Header{}}
		if s.abort.Err() != nil {
			p.err = stream.ErrClosed // Close gave up waiting: fail, do not publish
		} else {
			p.paf, p.err = s.js.PublishMsgAsync(p.msg, s.pubOpts(p.id)...)
		}
		s.inflight <- p
	}
}

func (s *Stream) pubOpts(id string) []jetstream.PublishOpt {
	return []jetstream.PublishOpt{jetstream.WithMsgID(id), jetstream.WithExpectStream(s.opts.Stream)}
}

// acker answers messages' records in the order the messages were published.
func (s *Stream) acker() {
	defer s.wg.Done()
	for p := range s.inflight {
		seq, err := s.await(p)
		if err == nil {
			s.advance(seq)
		}
		p.msg = nil
		n := len(p.dones)
		for i, done := range p.dones {
			if err != nil {
				done(0, err)
				continue
			}
			done(Seq(seq, i, n), nil)
		}
		<-s.slots
	}
}

// await waits for p's acknowledgement, re-sending it with the same message id when it
// does not come, so that a message stored after all is not stored twice.
func (s *Stream) await(p *pub) (uint64, error) {
	if errors.Is(p.err, stream.ErrClosed) {
		return 0, p.err
	}
	err := p.err
	if err == nil {
		select {
		case ack := <-p.paf.Ok():
			if ack.Duplicate {
				// A first send taken for a repeat means another message already holds
				// this id (its front-end id used by two processes at once): this
				// message was not stored.
				return 0, fmt.Errorf("%w: %s is message %d's", ErrIDReused, p.id, ack.Sequence)
			}
			return ack.Sequence, nil
		case err = <-p.paf.Err():
		case <-s.abort.Done():
			return 0, stream.ErrClosed
		}
	}
	for range s.opts.Resends {
		ctx, cancel := context.WithTimeout(s.abort, s.opts.AckTimeout)
		ack, rerr := s.js.PublishMsg(ctx, p.msg, s.pubOpts(p.id)...)
		cancel()
		if rerr == nil {
			s.opts.Logger.Debug("natsstream: message re-sent", "id", p.id, "seq", ack.Sequence, "duplicate", ack.Duplicate, "first_err", err)
			return ack.Sequence, nil
		}
		if s.abort.Err() != nil {
			return 0, stream.ErrClosed
		}
		err = rerr
	}
	return 0, fmt.Errorf("natsstream: append %s: %w", p.id, err)
}

// advance records that the stream holds sequence seq and wakes waiters.
func (s *Stream) advance(seq uint64) {
	s.mu.Lock()
	if seq > s.last {
		s.last = seq
		close(s.notify)
		s.notify = make(chan struct{})
	}
	s.mu.Unlock()
}

// readRetries is how many times Read re-creates its cursor after a failed fetch; with
// its pauses (0.1 s, 0.2 s, ...) it spans a JetStream leader election.
const readRetries = 5

// Read implements stream.Stream. It reads through one ephemeral pull consumer that it
// moves on as it reads and re-creates when asked for another position or when the
// server lost it. It returns stream.ErrPruned (wrapped) when records after after are no
// longer kept. A message whose records do not all fit in max is returned in part; the
// next Read after the last record returned goes on from there.
func (s *Stream) Read(ctx context.Context, after uint64, max int) ([]stream.Record, error) {
	if max <= 0 {
		return nil, fmt.Errorf("natsstream: read: max %d must be positive", max)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-s.done:
		return nil, stream.ErrClosed
	default:
	}
	s.readMu.Lock()
	defer s.readMu.Unlock()
	recs, err := s.fetch(ctx, after, max)
	for attempt := 1; err != nil && attempt <= readRetries && ctx.Err() == nil && !errors.Is(err, stream.ErrPruned) && !errors.Is(err, errCorrupt); attempt++ {
		// The consumer may be gone (its server restarted, or a new leader without it),
		// or the stream be between leaders: start a new one, a few times, before giving
		// up.
		s.opts.Logger.Debug("natsstream: read cursor lost; re-creating", "after", after, "err", err)
		s.cons = nil
		select {
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		recs, err = s.fetch(ctx, after, max)
	}
	if errors.Is(err, errStalled) {
		// Still nothing from new consumers: the stream may be between leaders or its
		// replicas behind. Not an error: the caller waits and reads again, and the next
		// read starts from a new consumer.
		s.opts.Logger.Warn("natsstream: records exist but none could be read yet", "after", after, "last", s.lastKnown())
		s.cons = nil
		return nil, nil
	}
	return recs, err
}

// errStalled is a read that got nothing although records after its position are known
// to exist: the consumer may be lost without the server saying so (nats-server 2.9
// leaves pulls to a consumer whose server stopped unanswered), so it is re-created.
var errStalled = errors.New("natsstream: read: no records from the consumer although newer ones exist")

// errCorrupt is a message whose data does not hold the records its id names.
var errCorrupt = errors.New("natsstream: read: corrupt message")

// MaxReadMessages bounds the messages one fetch asks for, and so what a Read holds
// beyond the records it returns: the rest of at most this many messages.
const MaxReadMessages = 512

func (s *Stream) fetch(ctx context.Context, after uint64, max int) (_ []stream.Record, err error) {
	defer func() {
		if err != nil {
			// What the cursor holds no longer follows after: seek again next time.
			s.cons, s.buf = nil, nil
		}
	}()
	if s.cons == nil || s.pos != after {
		if err := s.seek(ctx, after); err != nil {
			return nil, err
		}
	}
	recs := make([]stream.Record, 0, min(max, len(s.buf)+MaxReadMessages))
	caughtUp := false // the last fetch got less than it asked for
	for len(recs) < max {
		if len(s.buf) > 0 {
			n := min(max-len(recs), len(s.buf))
			recs = append(recs, s.buf[:n]...)
			s.buf = s.buf[n:]
			continue
		}
		if caughtUp {
			break
		}
		// As many messages as should hold the records still wanted, judged by the last
		// fetch's fullest message.
		want := min((max-len(recs)+s.perMsg-1)/s.perMsg, MaxReadMessages)
		batch, err := s.cons.FetchNoWait(want)
		if err != nil {
			return nil, fmt.Errorf("natsstream: read: %w", err)
		}
		msgs, err := s.collect(batch, after)
		if err != nil {
			return nil, err
		}
		caughtUp = msgs < want
	}
	if len(recs) == 0 {
		if need, _ := next(after); s.lastKnown() >= need {
			// Records are known to exist but were not there yet for this consumer (a
			// new consumer, or a replica behind): wait a little for the first.
			batch, err := s.cons.Fetch(1, jetstream.FetchMaxWait(s.opts.ReadWait))
			if err != nil {
				return nil, fmt.Errorf("natsstream: read: %w", err)
			}
			if _, err := s.collect(batch, after); err != nil {
				return nil, err
			}
			if len(s.buf) == 0 {
				return nil, errStalled
			}
			n := min(max, len(s.buf))
			recs = append(recs, s.buf[:n]...)
			s.buf = s.buf[n:]
		}
	}
	if len(recs) > 0 {
		s.pos = recs[len(recs)-1].Seq
	}
	if len(s.buf) == 0 {
		s.buf = nil // not to keep the consumed messages' memory
	}
	return recs, nil
}

// collect appends the records of batch's messages numbered above after to s.buf and
// returns how many messages it held.
func (s *Stream) collect(batch jetstream.MessageBatch, after uint64) (int, error) {
	msgs, most := 0, 0
	var lastSeq uint64
	for msg := range batch.Messages() {
		md, err := msg.Metadata()
		if err != nil {
			return 0, fmt.Errorf("natsstream: read: %w", err)
		}
		msgs++
		seq := md.Sequence.Stream
		if seq > MaxStreamSeq {
			return 0, fmt.Errorf("natsstream: read: stream sequence %d above %d: records cannot be numbered", seq, uint64(MaxStreamSeq))
		}
		lastSeq = seq
		recs := [][]byte{msg.Data()}
		if _, first, last, err := ParseMsgID(msg.Headers().Get(jetstream.MsgIDHeader)); err == nil && last > first {
			// Without an id of a range, a message is one record, as before batching.
			if recs, err = splitBatch(msg.Data(), int(last-first+1)); err != nil {
				return 0, fmt.Errorf("%w %d: %v", errCorrupt, seq, err)
			}
		}
		most = max(most, len(recs))
		for i, r := range recs {
			if n := Seq(seq, i, len(recs)); n > after {
				s.buf = append(s.buf, stream.Record{Seq: n, Data: r})
			}
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return 0, fmt.Errorf("natsstream: read: %w", err)
	}
	if msgs > 0 {
		s.perMsg = max(most, 1)
		s.advance(lastSeq)
	}
	return msgs, nil
}

// seek points the read cursor at the first record numbered above after.
func (s *Stream) seek(ctx context.Context, after uint64) error {
	start, _ := next(after)
	info, err := s.st.Info(ctx)
	if err != nil {
		return fmt.Errorf("natsstream: read: stream info: %w", err)
	}
	if start <= info.State.LastSeq && start < info.State.FirstSeq {
		return fmt.Errorf("%w: wanted records after %d (message %d), oldest is message %d", stream.ErrPruned, after, start, info.State.FirstSeq)
	}
	s.advance(info.State.LastSeq)
	if s.cons != nil {
		// Not awaited: an ephemeral consumer left behind is removed by the server once
		// inactive anyway.
		name := s.cons.CachedInfo().Name
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = s.st.DeleteConsumer(dctx, name)
		cancel()
		s.cons = nil
	}
	cons, err := s.st.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: 5 * time.Minute,
		Replicas:          1,
		MemoryStorage:     true,
	})
	if err != nil {
		return fmt.Errorf("natsstream: read: consumer: %w", err)
	}
	s.cons, s.pos, s.buf = cons, after, nil
	if s.perMsg == 0 {
		s.perMsg = 1
	}
	return nil
}

func (s *Stream) lastKnown() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Wait implements stream.Stream. The first Wait starts a watcher, a headers-only ordered
// consumer that learns of every new message, so a front-end that never waits does not
// receive the stream. While it waits it also asks the stream for its last sequence
// every ReadWait: a watcher whose server went away may take long to come back (with
// nats-server 2.9 it was seen not to), and a reader must not wait on it for ever.
func (s *Stream) Wait(ctx context.Context, after uint64) error {
	if err := s.startWatch(ctx); err != nil {
		return err
	}
	need, _ := next(after)
	poll := time.NewTicker(s.opts.ReadWait)
	defer poll.Stop()
	for {
		s.mu.Lock()
		last, ch := s.last, s.notify
		s.mu.Unlock()
		if last >= need {
			return nil
		}
		select {
		case <-ch:
		case <-poll.C:
			ictx, cancel := context.WithTimeout(ctx, s.opts.ReadWait)
			info, err := s.st.Info(ictx)
			cancel()
			if err == nil {
				s.advance(info.State.LastSeq)
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return stream.ErrClosed
		}
	}
}

func (s *Stream) startWatch(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return stream.ErrClosed
	default:
	}
	if s.watch != nil {
		return nil
	}
	cons, err := s.st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   s.last + 1,
		HeadersOnly:   true,
	})
	if err != nil {
		return fmt.Errorf("natsstream: wait: consumer: %w", err)
	}
	watch, err := cons.Consume(func(msg jetstream.Msg) {
		if md, err := msg.Metadata(); err == nil {
			s.advance(md.Sequence.Stream)
		}
	}, jetstream.PullMaxMessages(256), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		s.opts.Logger.Debug("natsstream: watcher", "err", err)
	}))
	if err != nil {
		return fmt.Errorf("natsstream: wait: consume: %w", err)
	}
	s.watch = watch
	return nil
}

// Close implements stream.Stream. Appends already published are answered when their
// acknowledgements come, for at most CloseWait; those still waiting then fail with
// stream.ErrClosed (they may have been stored). Waiters and later calls get
// stream.ErrClosed. The NATS connection stays open.
func (s *Stream) Close() error {
	s.closeMu.Lock()
	if s.closing {
		s.closeMu.Unlock()
		return nil
	}
	s.closing = true
	close(s.queue)
	s.mu.Lock()
	close(s.done)
	s.mu.Unlock()
	s.closeMu.Unlock()
	timer := time.AfterFunc(s.opts.CloseWait, s.abortFn)
	s.wg.Wait()
	timer.Stop()
	s.abortFn()
	s.mu.Lock()
	watch := s.watch
	s.mu.Unlock()
	if watch != nil {
		watch.Stop()
		<-watch.Closed()
	}
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.cons != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.st.DeleteConsumer(ctx, s.cons.CachedInfo().Name)
		s.cons, s.buf = nil, nil
	}
	return nil
}
