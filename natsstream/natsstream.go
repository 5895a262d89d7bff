// Package natsstream is the share stream across machines: a stream.Stream kept in a NATS
// JetStream stream with file storage and one or three replicas, shared by every Stratum
// front-end of a pool and read, in one global order, by its accounting consumers.
//
// # Records and their numbers
//
// Each front-end publishes on its own subject, Prefix + "." + FrontEnd, with the message
// id (the Nats-Msg-Id header) FrontEnd + ":" + its local sequence in decimal. A record's
// Seq, as Read returns it, is the JetStream stream sequence: one order over all
// front-ends. The local sequence of a Stream continues from the last record its
// front-end has in the stream (Open looks it up), so ids are not reused across restarts;
// one front-end id must be used by one process at a time.
//
// # Deduplication and its window
//
// JetStream remembers the message ids it stored during DuplicateWindow (default two
// minutes) and answers a publish that repeats one with the original record's sequence,
// without storing it again. Everything here that re-sends does so well inside that
// window: an append whose acknowledgement does not come within AckTimeout is re-sent with
// the same id at most Resends times, and Options.Validate requires the window to exceed
// AckTimeout times (Resends+1). Beyond the window a re-sent id is stored as a new record
// and would be counted twice; the Shipper therefore never relies on the window across a
// restart of its own: it reads back what the stream holds of its front-end after its
// saved position and re-sends only the records that are missing.
//
// # When a miner hears "accepted"
//
// The pool answers a share when its append is durable, and the AckMode chooses what
// durable means:
//
//   - AckReplicated: the front-end appends to a Stream here; "accepted" follows
//     JetStream's publish acknowledgement, which comes once a majority of the stream's
//     replicas (all of them at R1) have stored the record. Nothing is kept on the
//     front-end's disk; a front-end that dies loses only shares it had not yet answered.
//   - AckLocal: the front-end appends to its local stream.Log (group-committed fsync, as
//     on one machine) and answers from there; a Shipper tails that log into JetStream
//     with the log's sequences as local sequences, saving its position, and after a crash
//     resends from the saved position. The miner hears sooner; a share reaches the
//     accounting consumer only when the shipper has shipped it, and is lost if the
//     front-end's disk is lost before that.
//
// What the acknowledgement promises depends on the servers' sync_interval: by default
// a JetStream server writes each record to its files at once but fsyncs them only every
// two minutes, so at R1 an acknowledged record can be lost with the server's machine
// (power, kernel), and at R3 only if a majority of the replicas' machines fail within
// that time. With "sync_interval: always" every record is fsynced before it is
// acknowledged; docs/benchmarks.md has what each costs against the local log.
//
// # What it leaves out
//
// The package neither creates the NATS connection (the caller passes one in and closes
// it) nor decides when records may go: the stream keeps them until MaxAge or MaxBytes
// (unbounded when zero). It does not interpret records.
package natsstream

import (
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
	// DefaultMaxPending is how many appends may await their acknowledgement before
	// AppendAsync blocks: the named bound on what a front-end holds in flight.
	DefaultMaxPending    = 4096
	DefaultMaxRecordSize = 64 << 10
	DefaultCloseWait     = 5 * time.Second
	DefaultReadWait      = time.Second
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
	// MaxPending bounds the appends awaiting acknowledgement.
	MaxPending int
	// MaxRecordSize bounds one record.
	MaxRecordSize int
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
		// The limit covers headers too; the message id is far below 1 KiB.
		MaxMsgSize: int32(o.MaxRecordSize + 1024),
	}
}

// MsgID is the message id of a front-end's record with local sequence seq.
func MsgID(frontEnd string, seq uint64) string {
	return frontEnd + ":" + strconv.FormatUint(seq, 10)
}

// ParseMsgID splits a message id made by MsgID.
func ParseMsgID(id string) (frontEnd string, seq uint64, err error) {
	i := strings.LastIndexByte(id, ':')
	if i <= 0 {
		return "", 0, fmt.Errorf("natsstream: message id %q: no front-end", id)
	}
	seq, err = strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil || seq == 0 {
		return "", 0, fmt.Errorf("natsstream: message id %q: bad local sequence", id)
	}
	return id[:i], seq, nil
}
