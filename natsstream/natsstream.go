// Package natsstream is the share stream across machines: a stream.Stream kept in a NATS
// JetStream stream with file storage and one or three replicas, shared by every Stratum
// front-end of a pool and read, in one global order, by its accounting consumers.
//
// # Messages and records
//
// Each front-end publishes on its own subject, Prefix + "." + FrontEnd. One JetStream
// message carries one record or several: a front-end numbers its records by a local
// sequence and publishes each group of consecutive records as one message whose message
// id (the Nats-Msg-Id header) names the range, FrontEnd + ":" + first + "-" + last in
// decimal, and whose data is the records in order, each preceded by its length as an
// unsigned varint. A message of one record has the id FrontEnd + ":" + its local sequence
// and the record as its data, as every message had before batching: a stream written one
// record a message is read the same way. The per-message costs (a publish, an
// acknowledgement, an id, a stored message) are thus paid once per group.
//
// A Stream groups like stream.Log's group commit: the records appended while
// MaxInFlight messages await their acknowledgement go together in the next message, up
// to MaxBatch records and MaxBatchBytes bytes; at low load a record is a message of its
// own. A Shipper cuts each batch it ships into such messages.
//
// A record's number, Seq as Read returns it and AppendAsync reports it, is made from its
// message's JetStream stream sequence, one order over all front-ends, and its place in
// the message: SeqBase + stream sequence × 2^IndexBits + index, where index counts from 0
// and the message's last record takes MaxIndex whatever its place. Numbers so rise along
// the stream, a reader positioned after any record (mid-message too) resumes exactly
// after it, and one positioned after a message's last record knows that it needs the
// next message. A number below SeqBase is a stream sequence as numbered before batching
// (one record a message): reading after it starts at the next message, so a consumer
// that saved such a position resumes where it left off. The reverse does not hold: a
// reader from before batching takes a message of several records for one record (which
// then fails to decode), so a cluster is upgraded accounting processes first.
//
// The local sequence of a Stream continues from the last record its front-end has in the
// stream (Open looks it up), so ids are not reused across restarts; one front-end id must
// be used by one process at a time.
//
// # Deduplication and its window
//
// JetStream remembers the message ids it stored during DuplicateWindow (default two
// minutes) and answers a publish that repeats one with the original message's sequence,
// without storing it again. A message is re-sent only whole, with its id and its data
// unchanged: an append whose acknowledgement does not come within AckTimeout is re-sent
// with the same message at most Resends times, and Options.Validate requires the window
// to exceed AckTimeout times (Resends+1). A Shipper whose batch failed is offered the same
// batch again (stream.Tailer) and cuts it into the same messages, less those the stream
// already holds (a message is stored whole or not at all), so a message still in flight
// from the failed attempt is a repeat of one re-sent. Beyond the window a re-sent id is
// stored as a new message and would be counted twice; the Shipper therefore never relies
// on the window across a restart of its own: it reads back what the stream holds of its
// front-end after its saved position (the ranges of the message ids) and re-sends only
// the records that are missing.
//
// # When a miner hears "accepted"
//
// The pool answers a share when its append is durable, and the AckMode chooses what
// durable means:
//
//   - AckReplicated: the front-end appends to a Stream here; "accepted" follows
//     JetStream's publish acknowledgement of the record's message, which comes once a
//     majority of the stream's replicas (all of them at R1) have stored it. Nothing is
//     kept on the front-end's disk; a front-end that dies loses only shares it had not
//     yet answered.
//   - AckLocal: the front-end appends to its local stream.Log (group-committed fsync, as
//     on one machine) and answers from there; a Shipper tails that log into JetStream
//     with the log's sequences as local sequences, saving its position, and after a crash
//     resends from the saved position. The miner hears sooner; a share reaches the
//     accounting consumer only when the shipper has shipped it, and is lost if the
//     front-end's disk is lost before that.
//
// What the acknowledgement promises depends on the servers' sync_interval: by default
// a JetStream server writes each message to its files at once but fsyncs them only every
// two minutes, so at R1 an acknowledged record can be lost with the server's machine
// (power, kernel), and at R3 only if a majority of the replicas' machines fail within
// that time. With "sync_interval: always" every message is fsynced before it is
// acknowledged; docs/benchmarks.md has what each costs against the local log.
//
// # What it leaves out
//
// The package neither creates the NATS connection (the caller passes one in and closes
// it) nor decides when records may go: the stream keeps them until MaxAge or MaxBytes
// (unbounded when zero), whole messages at a time. It does not interpret records.
package natsstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AckMode says when a miner hears that a share was accepted. See the package doc.
type AckMode int

const (
	AckReplicated AckMode = iota // after JetStream's publish acknowledgement
	AckLocal                     // after the front-end's local fsync; shipped later
)

func (m AckMode) String() string {
	switch m {
	case AckReplicated:
		return "replicated"
	case AckLocal:
		return "local"
	}
	return fmt.Sprintf("AckMode(%d)", int(m))
}

// ParseAckMode parses "replicated" or "local".
func ParseAckMode(s string) (AckMode, error) {
	switch s {
	case "replicated":
		return AckReplicated, nil
	case "local":
		return AckLocal, nil
	}
	return 0, fmt.Errorf("natsstream: ack mode %q: want replicated or local", s)
}

// Defaults for Options.
const (
	DefaultStreamName      = "HASHGRID_SHARES"
	DefaultPrefix          = "hashgrid.shares"
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultAckTimeout      = 5 * time.Second
	DefaultResends         = 2
	// DefaultMaxPending is how many appends may wait for a message before AppendAsync
	// blocks: with MaxInFlight messages of MaxBatch records, the named bound on what a
	// front-end holds unacknowledged. A Shipper publishes at most this many records
	// before it awaits their acknowledgements.
	DefaultMaxPending    = 4096
	DefaultMaxRecordSize = 64 << 10
	// DefaultMaxBatch and DefaultMaxBatchBytes bound one message of several records:
	// about 500 encoded shares fill the 64 KiB, the size JetStream's default
	// max_payload (1 MiB) takes sixteen times.
	DefaultMaxBatch      = 1024
	DefaultMaxBatchBytes = 64 << 10
	// DefaultMaxInFlight is one message awaiting its acknowledgement at a time, as
	// stream.Log has one fsync under way: every record appended meanwhile goes into the
	// next message, so the busier the front-end, the fewer messages per record.
	DefaultMaxInFlight = 1
	DefaultCloseWait   = 5 * time.Second
	DefaultReadWait    = time.Second
)

// Options configures a Stream. The zero value, with FrontEnd set, gives the defaults.
type Options struct {
	// Stream is the JetStream stream's name; Prefix the subject prefix, whose ".>"
	// the stream takes.
	Stream string
	Prefix string
	// FrontEnd names this process among the front-ends: one subject token (letters,
	// digits, '-' and '_'). It is part of every message id.
	FrontEnd string
	// Replicas is 1 or 3. A stream that already exists is updated to it.
	Replicas int
	// DuplicateWindow is how long JetStream remembers message ids.
	DuplicateWindow time.Duration
	// MaxAge and MaxBytes bound what the stream keeps; zero keeps everything.
	MaxAge   time.Duration
	MaxBytes int64
	// AckTimeout bounds the wait for one publish acknowledgement; after it the record
	// is re-sent with the same id, at most Resends times, then failed.
	AckTimeout time.Duration
	Resends    int
	// MaxPending bounds the appends waiting to be put in a message.
	MaxPending int
	// MaxRecordSize bounds one record.
	MaxRecordSize int
	// MaxBatch (at most MaxIndex) and MaxBatchBytes bound the records of one message
	// and their bytes with their length prefixes; a record larger than MaxBatchBytes
	// goes alone.
	MaxBatch      int
	MaxBatchBytes int
	// MaxInFlight bounds the messages a Stream has published and not yet seen
	// acknowledged; appends wait for the next message meanwhile.
	MaxInFlight int
	// CloseWait bounds how long Close waits for outstanding acknowledgements before it
	// fails the appends still waiting with ErrClosed.
	CloseWait time.Duration
	// ReadWait bounds how long Read waits for records it knows exist to arrive.
	ReadWait time.Duration
	Logger   *slog.Logger
}

func (o *Options) fill() {
	if o.Stream == "" {
		o.Stream = DefaultStreamName
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.Resends == 0 {
		o.Resends = DefaultResends
	}
	if o.MaxPending == 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.MaxRecordSize == 0 {
		o.MaxRecordSize = DefaultMaxRecordSize
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.CloseWait == 0 {
		o.CloseWait = DefaultCloseWait
	}
	if o.ReadWait == 0 {
		o.ReadWait = DefaultReadWait
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first setting that cannot work, after filling in defaults.
func (o Options) Validate() error {
	o.fill()
	switch {
	case !validToken(o.FrontEnd):
		return fmt.Errorf("natsstream: front-end id %q: want letters, digits, '-' or '_'", o.FrontEnd)
	case o.Replicas != 1 && o.Replicas != 3:
		return fmt.Errorf("natsstream: replicas %d: want 1 or 3", o.Replicas)
	case o.AckTimeout < 0 || o.Resends < 0 || o.MaxPending < 1 || o.MaxRecordSize < 1:
		return errors.New("natsstream: ack timeout, resends, max pending and max record size must be positive")
	case o.MaxBatch < 1 || o.MaxBatch > MaxIndex || o.MaxBatchBytes < 1 || o.MaxInFlight < 1:
		return fmt.Errorf("natsstream: max batch %d (want 1 to %d), max batch bytes %d and max in flight %d must be positive",
			o.MaxBatch, MaxIndex, o.MaxBatchBytes, o.MaxInFlight)
	case o.DuplicateWindow <= o.AckTimeout*time.Duration(o.Resends+1):
		return fmt.Errorf("natsstream: duplicate window %v must exceed ack timeout %v times %d sends",
			o.DuplicateWindow, o.AckTimeout, o.Resends+1)
	case o.MaxAge != 0 && o.MaxAge < o.DuplicateWindow:
		return fmt.Errorf("natsstream: max age %v below duplicate window %v", o.MaxAge, o.DuplicateWindow)
	}
	for _, tok := range strings.Split(o.Prefix, ".") {
		if !validToken(tok) {
			return fmt.Errorf("natsstream: subject prefix %q: bad token %q", o.Prefix, tok)
		}
	}
	return nil
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (o Options) subject() string { return o.Prefix + "." + o.FrontEnd }

func (o Options) config() jetstream.StreamConfig {
	maxBytes := o.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1 // JetStream's "unlimited"
	}
	return jetstream.StreamConfig{
		Name:       o.Stream,
		Subjects:   []string{o.Prefix + ".>"},
		Storage:    jetstream.FileStorage,
		Replicas:   o.Replicas,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
		Duplicates: o.DuplicateWindow,
		MaxAge:     o.MaxAge,
		MaxBytes:   maxBytes,
		// The limit covers headers too; the message id is far below 1 KiB, as are a
		// lone record's length prefix (none) and a batch's (counted in MaxBatchBytes).
		MaxMsgSize: int32(max(o.MaxRecordSize, o.MaxBatchBytes) + 1024),
	}
}

// MsgID is the message id of a front-end's message holding its records with local
// sequences first to last: FrontEnd:first for one record, FrontEnd:first-last for more.
func MsgID(frontEnd string, first, last uint64) string {
	id := frontEnd + ":" + strconv.FormatUint(first, 10)
	if last != first {
		id += "-" + strconv.FormatUint(last, 10)
	}
	return id
}

// ParseMsgID splits a message id made by MsgID.
func ParseMsgID(id string) (frontEnd string, first, last uint64, err error) {
	i := strings.LastIndexByte(id, ':')
	if i <= 0 {
		return "", 0, 0, fmt.Errorf("natsstream: message id %q: no front-end", id)
	}
	lo, hi, isRange := strings.Cut(id[i+1:], "-")
	first, err = strconv.ParseUint(lo, 10, 64)
	if err != nil || first == 0 {
		return "", 0, 0, fmt.Errorf("natsstream: message id %q: bad local sequence", id)
	}
	last = first
	if isRange {
		last, err = strconv.ParseUint(hi, 10, 64)
		if err != nil || last <= first || last-first >= MaxIndex {
			return "", 0, 0, fmt.Errorf("natsstream: message id %q: bad local sequence range", id)
		}
	}
	return id[:i], first, last, nil
}

// Record numbers; see the package doc.
const (
	// IndexBits is the width of a record's index within its message.
	IndexBits = 12
	// MaxIndex is the index of a message's last record, and the most records a message
	// holds.
	MaxIndex = 1<<IndexBits - 1
	// SeqBase is added to every record number, so that numbers from before batching
	// (stream sequences, far below it) are told apart.
	SeqBase = 1 << 62
	// MaxStreamSeq is the highest stream sequence a record number can carry: 2^50, a
	// million messages a second for 35 years.
	MaxStreamSeq = 1<<(62-IndexBits) - 1
)

// Seq returns the number of record i (from 0) of the n records of the message at stream
// sequence msgSeq (at most MaxStreamSeq).
func Seq(msgSeq uint64, i, n int) uint64 {
	if i == n-1 {
		i = MaxIndex
	}
	return SeqBase | msgSeq<<IndexBits | uint64(i)
}

// MessageEnd returns the number of the last record of the message at stream sequence
// msgSeq: every record up to that message is numbered at most this.
func MessageEnd(msgSeq uint64) uint64 { return Seq(msgSeq, 0, 1) }

// next returns the stream sequence of the first message that may hold records numbered
// above seq, and the number below which records of that message are skipped (0: none).
func next(seq uint64) (msgSeq, skip uint64) {
	if seq < SeqBase {
		return seq + 1, 0 // a stream sequence from before batching
	}
	msgSeq = (seq - SeqBase) >> IndexBits
	if seq&MaxIndex == MaxIndex {
		return msgSeq + 1, 0
	}
	return msgSeq, seq
}

// appendBatch appends rec to a message's data with its length prefix.
func appendBatch(data, rec []byte) []byte {
	data = binary.AppendUvarint(data, uint64(len(rec)))
	return append(data, rec...)
}

// batchSize is what rec adds to a message's data of several records.
func batchSize(rec []byte) int { return uvarintLen(uint64(len(rec))) + len(rec) }

func uvarintLen(n uint64) int {
	k := 1
	for ; n >= 0x80; n >>= 7 {
		k++
	}
	return k
}

// splitBatch returns the n records of a message's data of several records; they share
// its memory.
func splitBatch(data []byte, n int) ([][]byte, error) {
	recs := make([][]byte, 0, n)
	for len(data) > 0 {
		l, k := binary.Uvarint(data)
		if k <= 0 || l > uint64(len(data)-k) {
			return nil, errors.New("bad record length")
		}
		recs = append(recs, data[k:k+int(l):k+int(l)])
		data = data[k+int(l):]
	}
	if len(recs) != n {
		return nil, fmt.Errorf("%d records where the id names %d", len(recs), n)
	}
	return recs, nil
}
