package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid/stratum/v2/noise"
	"github.com/hashgrid/hashgrid/stratum/v2/sv2"
)

// Limits and timeouts that a zero Config field takes.
const (
	DefaultDialTimeout = 10 * time.Second
	// DefaultCallTimeout bounds the wait for each answer: SetupConnection, the channel's
	// opening, each share's verdict, and each write.
	DefaultCallTimeout = 30 * time.Second
	// DefaultMaxPending is how many shares may await the pool's verdict; Submit waits
	// for a slot beyond that, so a pool that stops answering cannot grow the client.
	DefaultMaxPending = 256
	// DefaultMaxJobs is how many jobs of the channel are kept; the oldest goes first.
	// A pool sends future jobs ahead of a SetNewPrevHash and fresh jobs on the same tip
	// without one, so the set must be bounded by count.
	DefaultMaxJobs = 16
	// updatesBuffer is how many Work values wait for a slow consumer; older ones are
	// dropped first, since only the newest work is worth hashing.
	updatesBuffer = 4
)

// ChannelKind chooses the channel Dial opens.
type ChannelKind int

const (
	// Standard is a header-only channel: the pool sends a merkle root per job, the
	// miner rolls nonce, ntime and version bits.
	Standard ChannelKind = iota
	// Extended is a channel with the coinbase parts and merkle path, where the miner
	// also rolls an extranonce of the size the pool grants.
	Extended
)

func (k ChannelKind) String() string {
	switch k {
	case Standard:
		return "standard"
	case Extended:
		return "extended"
	}
	return "channel(" + strconv.Itoa(int(k)) + ")"
}

// ParseChannelKind reads "standard" or "extended".
func ParseChannelKind(s string) (ChannelKind, error) {
	switch s {
	case "standard", "":
		return Standard, nil
	case "extended":
		return Extended, nil
	}
	return 0, fmt.Errorf("sv2 client: channel kind %q, want standard or extended", s)
}

// Config configures a Client.
type Config struct {
	URL               string // stratum2+tcp://HOST:PORT/AUTHORITY_KEY
	User              string // user_identity of the channel, ADDRESS.WORKER on hashgrid
	Channel           ChannelKind
	NominalHashRate   float32 // h/s, the pool's hint for a first target
	MinExtranonceSize uint16  // extended channels: the extranonce bytes the miner needs
	Vendor            string  // SetupConnection vendor and firmware; default "hashgrid"
	Firmware          string

	DialTimeout      time.Duration
	HandshakeTimeout time.Duration // Noise handshake; default noise.DefaultHandshakeTimeout
	CallTimeout      time.Duration
	MaxPayload       int // largest frame payload accepted; default noise.DefaultMaxPayload
	MaxPending       int
	MaxJobs          int
	Now              func() time.Time // the clock the certificate is checked against
	Logger           *slog.Logger
	// Dial, when set, opens the TCP connection instead of a net.Dialer: for proxies,
	// and for counting bytes on the wire.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Work is what the channel should hash now: the active job on the present chain tip
// with the channel's target. The slices are shared between Work values and must not be
// modified.
type Work struct {
	Channel   ChannelKind
	ChannelID uint32
	JobID     uint32
	Version   uint32
	// VersionRolling says the miner may change the bits of sv2.VersionRollingMask in
	// Version: always on a standard channel unless the pool asked for a fixed version,
	// and as the job says on an extended one.
	VersionRolling bool
	PrevHash       chainhash.Hash
	NBits          uint32
	NTime          uint32 // the earliest ntime the job allows
	Target         sv2.U256

	// Standard channels.
	MerkleRoot chainhash.Hash

	// Extended channels: the coinbase is CoinbasePrefix, ExtranoncePrefix, an
	// extranonce of ExtranonceSize bytes chosen by the miner, then CoinbaseSuffix.
	CoinbasePrefix   []byte
	CoinbaseSuffix   []byte
	ExtranoncePrefix []byte
	ExtranonceSize   int
	MerklePath       []chainhash.Hash
}

// Share is a solution to a Work: the fields a SubmitShares message carries besides the
// channel and sequence number, which the client fills in.
type Share struct {
	JobID      uint32
	Nonce      uint32
	NTime      uint32
	Version    uint32 // the whole nVersion, rolled bits included
	Extranonce []byte // extended channels: ExtranonceSize bytes
}

// ShareError is the pool's SubmitShares.Error for one share.
type ShareError struct {
	Sequence uint32
	Code     string // sv2.Code*, such as sv2.CodeStaleShare
}

func (e *ShareError) Error() string {
	return fmt.Sprintf("sv2 client: share %d rejected: %s", e.Sequence, e.Code)
}

// RefusedError is the pool's refusal of SetupConnection or of the channel: no retry on
// the same terms will change it.
type RefusedError struct {
	Message string // SetupConnection.Error or OpenMiningChannel.Error
	Code    string
	Flags   uint32 // SetupConnection.Error: the flags the pool does not support
}

func (e *RefusedError) Error() string {
	if e.Flags != 0 {
		return fmt.Sprintf("sv2 client: %s: %s (flags %#x)", e.Message, e.Code, e.Flags)
	}
	return fmt.Sprintf("sv2 client: %s: %s", e.Message, e.Code)
}

// ErrClosed is what Err wraps after Close.
var ErrClosed = errors.New("sv2 client: closed")

// Client is one Stratum V2 connection with one mining channel.
type Client struct {
	cfg  Config
	conn *noise.Conn
	log  *slog.Logger
	slot chan struct{} // one token per share awaiting an answer

	// smu orders sequence numbers as the frames that carry them, which batched
	// acknowledgements rely on.
	smu sync.Mutex

	mu       sync.Mutex
	channel  channelState
	jobs     map[uint32]*job
	jobOrder []uint32
	prev     *sv2.SetNewPrevHash
	active   *job
	seq      uint32
	pending  map[uint32]chan error
	err      error

	updates    chan Work
	done       chan struct{}
	readerDone chan struct{}
	handshake  time.Duration
}

type channelState struct {
	id, group      uint32
	target         sv2.U256
	prefix         []byte
	extranonceSize int
	fixedVersion   bool
}

// job is a job of the channel in either form.
type job struct {
	minNTime sv2.Option[uint32]
	std      *sv2.NewMiningJob
	ext      *sv2.NewExtendedMiningJob
}

func (j *job) id() uint32 {
	if j.std != nil {
		return j.std.JobID
	}
	return j.ext.JobID
}

// Dial connects to cfg.URL, runs the handshake, sets up the connection and opens the
// channel. Work arrives on Updates.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	addr, key, err := noise.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("sv2 client: %w", err)
	}
	dial := cfg.Dial
	if dial == nil {
		d := net.Dialer{Timeout: cfg.DialTimeout}
		dial = d.DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sv2 client: dial %s: %w", addr, err)
	}
	// The context bounds the whole of Dial, handshake and setup included.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	defer stop()
	start := time.Now()
	conn, err := noise.Client(nc, noise.ClientConfig{
		Authority: key, HandshakeTimeout: cfg.HandshakeTimeout, MaxPayload: cfg.MaxPayload, Now: cfg.Now,
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("sv2 client: handshake with %s: %w", addr, err)
	}
	c := &Client{
		cfg:        cfg,
		conn:       conn,
		log:        cfg.Logger,
		slot:       make(chan struct{}, cfg.MaxPending),
		jobs:       make(map[uint32]*job),
		pending:    make(map[uint32]chan error),
		updates:    make(chan Work, updatesBuffer),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		handshake:  time.Since(start),
	}
	early, err := c.setup(addr)
	// Disarm the context's deadline before clearing it, so that a late cancel cannot
	// cut the running connection short.
	if !stop() {
		err = fmt.Errorf("sv2 client: dial %s: %w", addr, ctx.Err())
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		nc.Close()
		return nil, fmt.Errorf("sv2 client: clear deadline: %w", err)
	}
	// Messages the pool sent right behind the channel's opening belong to it.
	for _, m := range early {
		if err := c.handle(m); err != nil {
			nc.Close()
			return nil, err
		}
	}
	go c.readLoop()
	return c, nil
}

func (cfg *Config) fill() error {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = noise.DefaultMaxPayload
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.MaxJobs == 0 {
		cfg.MaxJobs = DefaultMaxJobs
	}
	if cfg.Vendor == "" {
		cfg.Vendor = "hashgrid"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.User == "":
		return errors.New("sv2 client: no user")
	case cfg.Channel != Standard && cfg.Channel != Extended:
		return fmt.Errorf("sv2 client: unknown channel kind %d", cfg.Channel)
	case cfg.MaxPending < 0 || cfg.MaxJobs < 0 || cfg.MaxPayload < 0:
		return errors.New("sv2 client: negative limit")
	case cfg.MinExtranonceSize > 32:
		return fmt.Errorf("sv2 client: MinExtranonceSize %d over 32", cfg.MinExtranonceSize)
	}
	return nil
}

// setup sends SetupConnection and the channel's opening and reads their answers within
// CallTimeout. It returns channel messages that arrived before the opening's answer.
func (c *Client) setup(addr string) ([]sv2.Message, error) {
	nc := c.conn.NetConn()
	if err := nc.SetDeadline(time.Now().Add(c.cfg.CallTimeout)); err != nil {
		return nil, fmt.Errorf("sv2 client: set deadline: %w", err)
	}
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.ParseUint(portStr, 10, 16)
	var flags uint32
	if c.cfg.Channel == Standard {
		flags |= sv2.FlagRequiresStandardJobs
	}
	err := c.send(&sv2.SetupConnection{
		Protocol: sv2.ProtocolMining, MinVersion: sv2.Version, MaxVersion: sv2.Version, Flags: flags,
		EndpointHost: host, EndpointPort: uint16(port), Vendor: c.cfg.Vendor, Firmware: c.cfg.Firmware,
	})
	if err != nil {
		return nil, err
	}
	m, err := c.read()
	if err != nil {
		return nil, fmt.Errorf("sv2 client: setup connection: %w", err)
	}
	switch m := m.(type) {
	case *sv2.SetupConnectionSuccess:
		if m.UsedVersion != sv2.Version {
			return nil, fmt.Errorf("sv2 client: pool chose protocol version %d, want %d", m.UsedVersion, sv2.Version)
		}
		if c.cfg.Channel == Standard && m.Flags&sv2.FlagRequiresExtendedChannels != 0 {
			return nil, &RefusedError{Message: "setup connection", Code: "pool requires extended channels"}
		}
		c.channel.fixedVersion = m.Flags&sv2.FlagRequiresFixedVersion != 0
	case *sv2.SetupConnectionError:
		return nil, &RefusedError{Message: "setup connection", Code: m.ErrorCode, Flags: m.Flags}
	default:
		return nil, fmt.Errorf("sv2 client: %s in answer to SetupConnection", sv2.Name(m.MsgType()))
	}

	const requestID = 1
	maxTarget := sv2.U256{}
	for i := range maxTarget {
		maxTarget[i] = 0xff // any target the pool chooses
	}
	if c.cfg.Channel == Standard {
		err = c.send(&sv2.OpenStandardMiningChannel{RequestID: requestID, UserIdentity: c.cfg.User, NominalHashRate: c.cfg.NominalHashRate, MaxTarget: maxTarget})
	} else {
		err = c.send(&sv2.OpenExtendedMiningChannel{RequestID: requestID, UserIdentity: c.cfg.User, NominalHashRate: c.cfg.NominalHashRate, MaxTarget: maxTarget, MinExtranonceSize: c.cfg.MinExtranonceSize})
	}
	if err != nil {
		return nil, err
	}
	var early []sv2.Message
	for {
		m, err := c.read()
		if err != nil {
			return nil, fmt.Errorf("sv2 client: open %s channel: %w", c.cfg.Channel, err)
		}
		switch m := m.(type) {
		case *sv2.OpenStandardMiningChannelSuccess:
			if c.cfg.Channel != Standard || m.RequestID != requestID {
				return nil, fmt.Errorf("sv2 client: unexpected OpenStandardMiningChannel.Success for request %d", m.RequestID)
			}
			c.channel.id, c.channel.group, c.channel.target, c.channel.prefix = m.ChannelID, m.GroupChannelID, m.Target, m.ExtranoncePrefix
			return early, nil
		case *sv2.OpenExtendedMiningChannelSuccess:
			if c.cfg.Channel != Extended || m.RequestID != requestID {
				return nil, fmt.Errorf("sv2 client: unexpected OpenExtendedMiningChannel.Success for request %d", m.RequestID)
			}
			if m.ExtranonceSize < c.cfg.MinExtranonceSize || len(m.ExtranoncePrefix)+int(m.ExtranonceSize) > 32 {
				return nil, fmt.Errorf("sv2 client: pool granted extranonce size %d with a prefix of %d bytes, asked for at least %d", m.ExtranonceSize, len(m.ExtranoncePrefix), c.cfg.MinExtranonceSize)
			}
			c.channel.id, c.channel.group, c.channel.target, c.channel.prefix = m.ChannelID, m.GroupChannelID, m.Target, m.ExtranoncePrefix
			c.channel.extranonceSize = int(m.ExtranonceSize)
			return early, nil
		case *sv2.OpenMiningChannelError:
			return nil, &RefusedError{Message: "open " + c.cfg.Channel.String() + " channel", Code: m.ErrorCode}
		case sv2.ChannelMessage:
			if len(early) == c.cfg.MaxJobs+2 {
				return nil, fmt.Errorf("sv2 client: more than %d messages before the channel opened", len(early))
			}
			early = append(early, m)
		default:
			return nil, fmt.Errorf("sv2 client: %s while opening the channel", sv2.Name(m.MsgType()))
		}
	}
}

// send writes one message as a frame. A failed write is final for the connection.
func (c *Client) send(m sv2.Message) error {
	payload, err := m.Encode(nil)
	if err != nil {
		return fmt.Errorf("sv2 client: encode %s: %w", sv2.Name(m.MsgType()), err)
	}
	var ext uint16
	if sv2.IsChannelMsg(m.MsgType()) {
		ext = sv2.ChannelMsgBit
	}
	if err := c.conn.WriteFrame(ext, m.MsgType(), payload); err != nil {
		return fmt.Errorf("sv2 client: send %s: %w", sv2.Name(m.MsgType()), err)
	}
	return nil
}

// read reads frames until one of the Common or Mining Protocol; frames of extensions
// the client never negotiated are dropped, as the spec says.
func (c *Client) read() (sv2.Message, error) {
	for {
		h, p, err := c.conn.ReadFrame()
		if err != nil {
			return nil, err
		}
		m, err := sv2.Decode(sv2.Header{ExtensionType: h.ExtensionType, MsgType: h.MsgType, Length: h.Length}, p)
		if errors.Is(err, sv2.ErrExtension) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return m, nil
	}
}

// HandshakeTime is how long the Noise handshake took, from the first byte sent to the
// certificate checked.
func (c *Client) HandshakeTime() time.Duration { return c.handshake }

// ChannelID is the channel the pool opened.
func (c *Client) ChannelID() uint32 { return c.channel.id }

// Updates delivers the work to hash after each job, tip, target or extranonce change.
// It is closed when the connection ends.
func (c *Client) Updates() <-chan Work { return c.updates }

// Done is closed when the connection has ended; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, or nil while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection and waits for the reader.
func (c *Client) Close() error {
	c.fail(ErrClosed)
	err := c.conn.Close()
	<-c.readerDone
	return err
}

// fail records why the connection ends (the first reason wins) and fails every share
// awaiting an answer.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	for seq, ch := range c.pending {
		ch <- err
		delete(c.pending, seq)
	}
}

func (c *Client) readLoop() {
	defer close(c.readerDone)
	var err error
	for {
		var m sv2.Message
		if m, err = c.read(); err != nil {
			err = fmt.Errorf("sv2 client: connection ended: %w", err)
			break
		}
		if err = c.handle(m); err != nil {
			break
		}
	}
	c.fail(err)
	c.conn.Close()
	close(c.done)
	close(c.updates)
}

// handle applies one message from the pool. An error ends the connection.
func (c *Client) handle(m sv2.Message) error {
	if cm, ok := m.(sv2.ChannelMessage); ok {
		if id := cm.Channel(); id != c.channel.id && (c.channel.group == 0 || id != c.channel.group) {
			c.log.Debug("sv2 client: message for another channel", "msg", sv2.Name(m.MsgType()), "channel", id)
			return nil
		}
	}
	c.mu.Lock()
	var w *Work
	switch m := m.(type) {
	case *sv2.NewMiningJob:
		if c.cfg.Channel != Standard {
			c.mu.Unlock()
			return errors.New("sv2 client: NewMiningJob on an extended channel")
		}
		w = c.addJob(&job{minNTime: m.MinNTime, std: m})
	case *sv2.NewExtendedMiningJob:
		if c.cfg.Channel != Extended {
			c.mu.Unlock()
			return errors.New("sv2 client: NewExtendedMiningJob on a standard channel")
		}
		w = c.addJob(&job{minNTime: m.MinNTime, ext: m})
	case *sv2.SetNewPrevHash:
		c.prev = m
		// Every other job was built on the old tip.
		j := c.jobs[m.JobID]
		clear(c.jobs)
		c.jobOrder = c.jobOrder[:0]
		c.active = nil
		if j == nil {
			c.log.Warn("sv2 client: new tip for an unknown job", "job", m.JobID)
			break
		}
		c.jobs[m.JobID] = j
		c.jobOrder = append(c.jobOrder, m.JobID)
		c.active = j
		w = c.work()
	case *sv2.SetTarget:
		c.channel.target = m.MaximumTarget
		w = c.work()
	case *sv2.SetExtranoncePrefix:
		if c.cfg.Channel == Extended && len(m.ExtranoncePrefix)+c.channel.extranonceSize > 32 {
			c.mu.Unlock()
			return fmt.Errorf("sv2 client: extranonce prefix of %d bytes leaves no room for %d", len(m.ExtranoncePrefix), c.channel.extranonceSize)
		}
		c.channel.prefix = m.ExtranoncePrefix
		w = c.work()
	case *sv2.SubmitSharesSuccess:
		// Every share up to the last sequence number is accepted (wrapping compare).
		for seq, ch := range c.pending {
			if int32(m.LastSequenceNumber-seq) >= 0 {
				ch <- nil
				delete(c.pending, seq)
			}
		}
	case *sv2.SubmitSharesError:
		if ch := c.pending[m.SequenceNumber]; ch != nil {
			ch <- &ShareError{Sequence: m.SequenceNumber, Code: m.ErrorCode}
			delete(c.pending, m.SequenceNumber)
		}
	case *sv2.CloseChannel:
		c.mu.Unlock()
		return fmt.Errorf("sv2 client: pool closed the channel: %s", m.ReasonCode)
	case *sv2.Reconnect:
		c.mu.Unlock()
		return fmt.Errorf("sv2 client: pool asked to reconnect to %s:%d, which this client does not follow", m.NewHost, m.NewPort)
	default:
		c.log.Debug("sv2 client: ignored message", "msg", sv2.Name(m.MsgType()))
	}
	c.mu.Unlock()
	if w != nil {
		c.deliver(*w)
	}
	return nil
}

// addJob stores j, evicting the oldest job over MaxJobs, and returns the work if j
// starts at once on the present tip. Called with mu held.
func (c *Client) addJob(j *job) *Work {
	id := j.id()
	if _, ok := c.jobs[id]; !ok {
		c.jobOrder = append(c.jobOrder, id)
	}
	c.jobs[id] = j
	for len(c.jobOrder) > c.cfg.MaxJobs {
		old := c.jobOrder[0]
		c.jobOrder = c.jobOrder[1:]
		if c.active != nil && c.active.id() == old {
			// Never evict the job being hashed; keep it at the back instead.
			c.jobOrder = append(c.jobOrder, old)
			continue
		}
		delete(c.jobs, old)
	}
	if !j.minNTime.Set || c.prev == nil {
		return nil // a future job waits for its SetNewPrevHash
	}
	c.active = j
	return c.work()
}

// work returns the active job as Work, or nil when there is none. Called with mu held.
func (c *Client) work() *Work {
	j, p := c.active, c.prev
	if j == nil || p == nil {
		return nil
	}
	w := &Work{
		Channel: c.cfg.Channel, ChannelID: c.channel.id, JobID: j.id(), PrevHash: p.PrevHash,
		NBits: p.NBits, NTime: p.MinNTime, Target: c.channel.target,
	}
	if j.minNTime.Set && j.minNTime.V > w.NTime {
		w.NTime = j.minNTime.V
	}
	if j.std != nil {
		w.Version, w.MerkleRoot = j.std.Version, j.std.MerkleRoot
		w.VersionRolling = !c.channel.fixedVersion
	} else {
		w.Version, w.VersionRolling = j.ext.Version, j.ext.VersionRollingAllowed
		w.CoinbasePrefix, w.CoinbaseSuffix, w.MerklePath = j.ext.CoinbaseTxPrefix, j.ext.CoinbaseTxSuffix, j.ext.MerklePath
		w.ExtranoncePrefix, w.ExtranonceSize = c.channel.prefix, c.channel.extranonceSize
	}
	return w
}

// deliver hands w to Updates, dropping older undelivered work: only the newest is worth
// hashing. Only the reader calls it, so it never races the channel's close.
func (c *Client) deliver(w Work) {
	for {
		select {
		case c.updates <- w:
			return
		default:
			select {
			case <-c.updates:
			default:
			}
		}
	}
}

// Submit sends a share and waits for its verdict: nil when accepted, a *ShareError when
// rejected, another error when no verdict came (connection ended, timeout, ctx).
func (c *Client) Submit(ctx context.Context, s Share) error {
	select {
	case c.slot <- struct{}{}:
	case <-c.done:
		return c.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.slot }()
	ch := make(chan error, 1)
	var msg sv2.Message
	c.smu.Lock()
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		c.smu.Unlock()
		return err
	}
	c.seq++
	seq := c.seq
	c.pending[seq] = ch
	c.mu.Unlock()
	if c.cfg.Channel == Standard {
		msg = &sv2.SubmitSharesStandard{ChannelID: c.channel.id, SequenceNumber: seq, JobID: s.JobID, Nonce: s.Nonce, NTime: s.NTime, Version: s.Version}
	} else {
		msg = &sv2.SubmitSharesExtended{ChannelID: c.channel.id, SequenceNumber: seq, JobID: s.JobID, Nonce: s.Nonce, NTime: s.NTime, Version: s.Version, Extranonce: s.Extranonce}
	}
	c.conn.NetConn().SetWriteDeadline(time.Now().Add(c.cfg.CallTimeout))
	err := c.send(msg)
	c.smu.Unlock()
	if err != nil {
		// A failed write leaves the stream unusable: end the connection.
		c.fail(err)
		c.conn.Close()
		return err
	}
	t := time.NewTimer(c.cfg.CallTimeout)
	defer t.Stop()
	select {
	case err := <-ch:
		return err
	case <-t.C:
		err = fmt.Errorf("sv2 client: share %d: no answer in %s", seq, c.cfg.CallTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.mu.Lock()
	delete(c.pending, seq)
	c.mu.Unlock()
	// The verdict may have arrived meanwhile; it wins.
	select {
	case v := <-ch:
		return v
	default:
		return err
	}
}
