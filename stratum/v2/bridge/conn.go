package bridge

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"sync"
	"time"

	"github.com/hashgrid/hashgrid/stratum/v2/noise"
	"github.com/hashgrid/hashgrid/stratum/v2/sv2"
)

// Error codes the spec's list (sv2 package) does not have, in the same style.
const (
	codeProtocolVersion = "protocol-version-mismatch" // as the reference implementation sends
	codeTooManyChannels = "too-many-channels"
	codeRefused         = "connection-refused" // the V1 server refused the channel (limit or ban)
)

// UserAgentPrefix starts the user agent of every V1 connection the bridge opens
// ("sv2/VENDOR/FIRMWARE"): what tells the pool's dashboard and API a V2 worker.
const UserAgentPrefix = "sv2/"

// supportedSetupFlags are the Mining Protocol flags of SetupConnection the bridge can
// honour: standard jobs only (it serves standard channels), and version rolling (the
// V1 side negotiates a mask). Work selection needs job declaration, which it lacks.
const supportedSetupFlags = sv2.FlagRequiresStandardJobs | sv2.FlagRequiresVersionRolling

// conn is one V2 connection.
type conn struct {
	s      *Server
	nc     net.Conn
	ip     string
	nx     *noise.Conn
	ctx    context.Context // ends when the connection closes: V1 calls of its channels
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup // goroutines of its channels

	// Owned by the reading goroutine.
	setup        bool
	agent        string // user agent of the V1 connections: sv2/VENDOR/FIRMWARE
	standardOnly bool   // SetupConnection asked for standard jobs only

	mu       sync.Mutex
	channels map[uint32]*channel // open channels and those being opened (nil value)
	nextID   uint32
	group    uint32   // group channel of the standard channels; 0 until the first
	members  []uint32 // standard channels in the group, for SetGroupChannel
	closed   bool
}

func newConn(s *Server, nc net.Conn, ip string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{s: s, nc: nc, ip: ip, ctx: ctx, cancel: cancel, channels: make(map[uint32]*channel)}
}

// close ends the connection; the reading goroutine then closes the channels.
func (c *conn) close() {
	c.once.Do(func() {
		c.cancel()
		c.nc.Close()
	})
}

func (c *conn) serve() {
	defer c.wg.Wait()
	defer c.closeChannels()
	defer c.close()
	lim := c.s.lim
	nx, err := noise.Server(c.nc, noise.ServerConfig{
		Identity:         c.s.cfg.Identity,
		HandshakeTimeout: lim.HandshakeTimeout,
		MaxPayload:       lim.MaxFrameBytes,
	})
	if err != nil {
		c.s.drop("handshake")
		c.s.log.Debug("v2 handshake", "remote", c.nc.RemoteAddr(), "err", err)
		return
	}
	c.nx = nx
	setupBy := time.Now().Add(lim.HandshakeTimeout)
	for {
		deadline := setupBy
		if c.setup {
			deadline = time.Now().Add(lim.IdleTimeout)
		}
		c.nc.SetReadDeadline(deadline)
		h, p, err := nx.ReadFrame()
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				if c.setup {
					c.s.drop("idle")
				} else {
					c.s.drop("setup")
				}
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrUnexpectedEOF):
			default:
				c.s.drop("bad_frame")
				c.s.log.Debug("v2 frame", "remote", c.nc.RemoteAddr(), "err", err)
			}
			return
		}
		m, err := sv2.Decode(sv2.Header{ExtensionType: h.ExtensionType, MsgType: h.MsgType, Length: h.Length}, p)
		if errors.Is(err, sv2.ErrExtension) {
			continue // the spec: a frame of an extension not negotiated is ignored
		}
		if err != nil {
			c.s.drop("bad_frame")
			c.s.log.Debug("v2 message", "remote", c.nc.RemoteAddr(), "err", err)
			return
		}
		if !c.handle(m) {
			return
		}
	}
}

// handle acts on one message; false drops the connection.
func (c *conn) handle(m sv2.Message) bool {
	if !c.setup {
		sc, ok := m.(*sv2.SetupConnection)
		if !ok {
			c.s.drop("setup")
			return false
		}
		return c.handleSetup(sc)
	}
	switch m := m.(type) {
	case *sv2.OpenStandardMiningChannel:
		c.openChannel(m.RequestID, m.UserIdentity, m.NominalHashRate, m.MaxTarget, false, 0)
	case *sv2.OpenExtendedMiningChannel:
		c.openChannel(m.RequestID, m.UserIdentity, m.NominalHashRate, m.MaxTarget, true, m.MinExtranonceSize)
	case *sv2.SubmitSharesStandard:
		c.submit(m.ChannelID, m.SequenceNumber, m.JobID, m.Nonce, m.NTime, m.Version, nil, false)
	case *sv2.SubmitSharesExtended:
		c.submit(m.ChannelID, m.SequenceNumber, m.JobID, m.Nonce, m.NTime, m.Version, m.Extranonce, true)
	case *sv2.UpdateChannel:
		c.updateChannel(m)
	case *sv2.CloseChannel:
		if ch := c.channel(m.ChannelID); ch != nil {
			ch.close(false)
		}
	default:
		// A second SetupConnection, a server's message, or SetCustomMiningJob, which
		// needs the work selection this bridge refused at setup.
		c.s.drop("unexpected")
		c.s.log.Debug("v2 unexpected message", "remote", c.nc.RemoteAddr(), "type", sv2.Name(m.MsgType()))
		return false
	}
	return c.ctx.Err() == nil
}

func (c *conn) handleSetup(m *sv2.SetupConnection) bool {
	fail := func(flags uint32, code string) bool {
		c.write(&sv2.SetupConnectionError{Flags: flags, ErrorCode: code})
		c.s.drop("setup")
		return false
	}
	switch {
	case m.Protocol != sv2.ProtocolMining:
		return fail(0, sv2.CodeUnsupportedProtocol)
	case m.MinVersion > sv2.Version || m.MaxVersion < sv2.Version:
		return fail(0, codeProtocolVersion)
	case m.Flags&^supportedSetupFlags != 0:
		return fail(m.Flags&^supportedSetupFlags, sv2.CodeUnsupportedFeatureFlags)
	}
	c.setup = true
	c.standardOnly = m.Flags&sv2.FlagRequiresStandardJobs != 0
	c.agent = UserAgentPrefix + m.Vendor + "/" + m.Firmware
	// Flags 0: the bridge neither fixes the version (V1 version rolling is offered)
	// nor requires extended channels.
	return c.write(&sv2.SetupConnectionSuccess{UsedVersion: sv2.Version, Flags: 0}) == nil
}

// write sends one message; on error the connection is closed.
func (c *conn) write(m sv2.Message) error {
	var buf [256]byte
	p, err := m.Encode(buf[:0])
	if err != nil {
		c.s.log.Warn("v2 encode", "type", sv2.Name(m.MsgType()), "err", err)
		return err
	}
	var ext uint16
	if sv2.IsChannelMsg(m.MsgType()) {
		ext = sv2.ChannelMsgBit
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.s.lim.WriteTimeout))
	if err := c.nx.WriteFrame(ext, m.MsgType(), p); err != nil {
		c.close()
		return err
	}
	return nil
}

func (c *conn) channel(id uint32) *channel {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.channels[id]
}

// closeChannels closes every channel's V1 connection once the V2 one is gone.
func (c *conn) closeChannels() {
	c.mu.Lock()
	c.closed = true
	chs := make([]*channel, 0, len(c.channels))
	for _, ch := range c.channels {
		if ch != nil {
			chs = append(chs, ch)
		}
	}
	c.mu.Unlock()
	for _, ch := range chs {
		ch.close(false)
	}
}

// validHashRate reports whether a nominal hash rate is one the spec allows: a
// finite, non-negative number of hashes per second.
func validHashRate(h float32) bool {
	f := float64(h)
	return !math.IsNaN(f) && !math.IsInf(f, 0) && f >= 0
}
