package bridge

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stratum/v2/sv2"
)

// channel is one V2 channel and the V1 connection that carries it.
type channel struct {
	c        *conn
	id       uint32
	extended bool
	user     string
	v1       *stratum.Client
	en1      []byte
	en2      []byte // standard channels: the extranonce2 the bridge fixes
	en2Size  int
	mask     uint32        // version bits the V1 server lets the channel roll
	sem      chan struct{} // submits awaiting their V1 answer
	once     sync.Once

	mu      sync.Mutex
	jobs    map[uint32]*job
	order   []uint32 // job ids, oldest first, for MaxJobs
	nextJob uint32
	prev    chainhash.Hash
	hasPrev bool
	diff    hashgrid.Diff // of the target last sent
	minDiff hashgrid.Diff // from max_target
	closed  bool          // by the miner or the bridge: no CloseChannel to send
}

// job is what a submit on a V2 job id needs of its V1 job.
type job struct {
	v1      string
	version uint32
	diff    hashgrid.Diff // the V1 difficulty in effect for it
}

// pipeConn is the V1 server's end of a channel's pipe, reporting the V2 miner's
// address so that the V1 server's per-address limits and bans apply to the miner.
type pipeConn struct {
	net.Conn
	remote net.Addr
}

func (p *pipeConn) RemoteAddr() net.Addr { return p.remote }

// pipeSysConn is a pipeConn over a descriptor, which it keeps visible so that the V1
// server polls it.
type pipeSysConn struct {
	pipeConn
	sc syscall.Conn
}

func (p *pipeSysConn) SyscallConn() (syscall.RawConn, error) { return p.sc.SyscallConn() }

// v1End wraps the V1 server's end of a channel's pipe with the miner's address.
func v1End(nc net.Conn, remote net.Addr) net.Conn {
	pc := pipeConn{Conn: nc, remote: remote}
	if sc, ok := nc.(syscall.Conn); ok {
		return &pipeSysConn{pipeConn: pc, sc: sc}
	}
	return &pc
}

// openChannel reserves a channel id and opens its V1 connection on a goroutine of its
// own (a V1 handshake and the first job take round trips the reading loop must not
// wait for), answering Open*MiningChannel.Success with the first job or
// OpenMiningChannel.Error.
func (c *conn) openChannel(reqID uint32, user string, hashRate float32, maxTarget sv2.U256, extended bool, minExtranonce uint16) {
	fail := func(code string) { c.write(&sv2.OpenMiningChannelError{RequestID: reqID, ErrorCode: code}) }
	if extended && c.standardOnly {
		fail(sv2.CodeExtendedChannelsNotSupported)
		return
	}
	if !validHashRate(hashRate) {
		fail(sv2.CodeInvalidNominalHashrate)
		return
	}
	minDiff, ok := sv2.MinDiff(maxTarget)
	if !ok {
		fail(sv2.CodeMaxTargetOutOfRange)
		return
	}
	if user == "" {
		fail(sv2.CodeInvalidUserIdentity)
		return
	}
	c.mu.Lock()
	if len(c.channels) >= c.s.lim.MaxChannels {
		c.mu.Unlock()
		fail(codeTooManyChannels)
		return
	}
	c.nextID++
	id := c.nextID
	c.channels[id] = nil
	group := uint32(0)
	if !extended {
		if c.group == 0 {
			c.nextID++
			c.group = c.nextID
		}
		group = c.group
	}
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ch, first, code, err := c.dialChannel(id, user, minDiff, extended, minExtranonce)
		c.mu.Lock()
		if err != nil || c.closed {
			delete(c.channels, id)
			c.mu.Unlock()
			if ch != nil {
				ch.close(false)
			}
			if err != nil {
				c.s.log.Debug("v2 channel refused", "remote", c.nc.RemoteAddr(), "user", user, "err", err)
				fail(code)
			}
			return
		}
		c.channels[id] = ch
		var members []uint32
		if !extended {
			c.members = append(c.members, id)
			members = append(members, c.members...)
		}
		c.mu.Unlock()
		target := sv2.DiffU256(ch.diff)
		if extended {
			err = c.write(&sv2.OpenExtendedMiningChannelSuccess{
				RequestID:        reqID,
				ChannelID:        id,
				Target:           target,
				ExtranonceSize:   uint16(ch.en2Size),
				ExtranoncePrefix: ch.en1,
			})
		} else {
			err = c.write(&sv2.OpenStandardMiningChannelSuccess{
				RequestID:        reqID,
				ChannelID:        id,
				Target:           target,
				ExtranoncePrefix: append(append([]byte(nil), ch.en1...), ch.en2...),
				GroupChannelID:   group,
			})
			if err == nil {
				err = c.write(&sv2.SetGroupChannel{GroupChannelID: group, ChannelIDs: members})
			}
		}
		if err != nil {
			ch.close(false)
			return
		}
		if first != nil {
			ch.sendWork(*first, false)
		}
		c.wg.Add(1)
		go ch.pump()
	}()
}

// firstJobWait is how long a channel's Success waits for the V1 connection's first job,
// so that it carries the pool's target rather than the miner's max_target.
const firstJobWait = 5 * time.Second

// dialChannel opens the V1 connection of a channel and waits up to firstJobWait for
// its first job (nil if none came). On error code is the V2 error code to answer.
func (c *conn) dialChannel(id uint32, user string, minDiff hashgrid.Diff, extended bool, minExtranonce uint16) (*channel, *stratum.Work, string, error) {
	var none *stratum.Work
	ours, theirs, err := channelPipe()
	if err != nil {
		return nil, none, codeRefused, err
	}
	if err := c.s.v1.ServeConn(v1End(theirs, c.nc.RemoteAddr())); err != nil {
		ours.Close()
		return nil, none, codeRefused, err
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.s.lim.ChannelTimeout)
	defer cancel()
	cfg := stratum.ClientConfig{
		User:        user,
		Password:    "x",
		Agent:       c.agent,
		VersionMask: sv2.VersionRollingMask,
		CallTimeout: c.s.lim.ChannelTimeout,
		Logger:      c.s.log,
	}
	if minDiff > 1 {
		// A max_target below the largest: the V1 server must not hand out less.
		cfg.MinDiff = minDiff.Float()
	}
	v1, err := stratum.NewClient(ctx, ours, cfg)
	if err != nil {
		var se *stratum.Error
		if errors.Is(err, stratum.ErrAuthorizeRefused) || errors.As(err, &se) && se.Code == stratum.ErrCodeUnauthorized {
			return nil, none, sv2.CodeUnknownUser, err
		}
		return nil, none, codeRefused, err
	}
	en1, en2Size := v1.Extranonce()
	ch := &channel{
		c:        c,
		id:       id,
		extended: extended,
		user:     user,
		v1:       v1,
		en1:      en1,
		en2Size:  en2Size,
		mask:     v1.VersionMask(),
		sem:      make(chan struct{}, c.s.lim.MaxPendingShares),
		jobs:     make(map[uint32]*job),
		minDiff:  minDiff,
	}
	if extended {
		if int(minExtranonce) > en2Size {
			return ch, none, sv2.CodeMinExtranonceSizeTooLarge, fmt.Errorf("bridge: min extranonce size %d over %d", minExtranonce, en2Size)
		}
	} else {
		// One V1 connection per channel: its extranonce1 alone sets the channel
		// apart, so the fixed extranonce2 can be zeros.
		ch.en2 = make([]byte, en2Size)
	}
	t := time.NewTimer(firstJobWait)
	defer t.Stop()
	select {
	case w, ok := <-v1.Updates():
		if !ok {
			return ch, nil, codeRefused, fmt.Errorf("bridge: V1 connection ended: %w", v1.Err())
		}
		d := hashgrid.DiffFromFloat(w.Difficulty)
		if d < minDiff {
			return ch, nil, sv2.CodeMaxTargetOutOfRange, fmt.Errorf("bridge: pool difficulty %v below the channel's minimum %v", d.Float(), minDiff.Float())
		}
		ch.diff = d
		return ch, &w, "", nil
	case <-t.C:
		// No work yet (a market seller waits for an order): the channel opens with
		// the miner's own max_target, and the first job brings SetTarget.
		ch.diff = max(minDiff, 1)
		return ch, nil, "", nil
	case <-ctx.Done():
		return ch, nil, codeRefused, fmt.Errorf("bridge: %w", ctx.Err())
	}
}

// pump turns the V1 connection's jobs into V2 ones until it ends; a V1 connection the
// pool ended closes the channel for the miner too.
func (ch *channel) pump() {
	defer ch.c.wg.Done()
	for w := range ch.v1.Updates() {
		ch.sendWork(w, true)
	}
	ch.close(true)
}

// sendWork sends a V1 job as the channel's next V2 job: with SetTarget first when the
// difficulty changed, and as a future job started by SetNewPrevHash when it is on a new
// previous block or the pool cleaned its jobs.
func (ch *channel) sendWork(w stratum.Work, checkTarget bool) {
	j, err := w.Notify.Decode()
	if err != nil {
		ch.c.s.log.Warn("v2 bridge: bad V1 job", "err", err)
		return
	}
	d := hashgrid.DiffFromFloat(w.Difficulty)
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return
	}
	ch.nextJob++
	id := ch.nextJob
	fresh := !ch.hasPrev || j.Clean || j.Prev != ch.prev
	if fresh {
		clear(ch.jobs)
		ch.order = ch.order[:0]
	}
	ch.jobs[id] = &job{v1: j.ID, version: j.Version, diff: d}
	ch.order = append(ch.order, id)
	if len(ch.order) > ch.c.s.lim.MaxJobs {
		delete(ch.jobs, ch.order[0])
		ch.order = ch.order[1:]
	}
	ch.prev, ch.hasPrev = j.Prev, true
	newTarget := checkTarget && d != ch.diff
	ch.diff = d
	ch.mu.Unlock()

	c := ch.c
	if newTarget && c.write(&sv2.SetTarget{ChannelID: ch.id, MaximumTarget: sv2.DiffU256(d)}) != nil {
		return
	}
	minNTime := sv2.Some(j.NTime)
	if fresh {
		minNTime = sv2.Option[uint32]{}
	}
	var m sv2.Message
	if ch.extended {
		m = &sv2.NewExtendedMiningJob{
			ChannelID:             ch.id,
			JobID:                 id,
			MinNTime:              minNTime,
			Version:               j.Version,
			VersionRollingAllowed: ch.mask != 0,
			MerklePath:            j.Branch,
			CoinbaseTxPrefix:      j.Coinb1,
			CoinbaseTxSuffix:      j.Coinb2,
		}
	} else {
		ext := sv2.NewExtendedMiningJob{MerklePath: j.Branch, CoinbaseTxPrefix: j.Coinb1, CoinbaseTxSuffix: j.Coinb2}
		root, _ := ext.MerkleRoot(nil, ch.en1, ch.en2)
		m = &sv2.NewMiningJob{ChannelID: ch.id, JobID: id, MinNTime: minNTime, Version: j.Version, MerkleRoot: root}
	}
	if c.write(m) != nil || !fresh {
		return
	}
	c.write(&sv2.SetNewPrevHash{ChannelID: ch.id, JobID: id, PrevHash: j.Prev, MinNTime: j.NTime, NBits: j.Bits})
}

// close ends the channel and its V1 connection; byPool sends CloseChannel, since the
// miner does not know.
func (ch *channel) close(byPool bool) {
	ch.once.Do(func() {
		ch.mu.Lock()
		ch.closed = true
		ch.mu.Unlock()
		c := ch.c
		c.mu.Lock()
		if c.channels[ch.id] == ch {
			delete(c.channels, ch.id)
		}
		for i, id := range c.members {
			if id == ch.id {
				c.members = append(c.members[:i], c.members[i+1:]...)
				break
			}
		}
		gone := c.closed
		c.mu.Unlock()
		ch.v1.Close()
		if byPool && !gone {
			c.write(&sv2.CloseChannel{ChannelID: ch.id, ReasonCode: "pool-closed-channel"})
		}
	})
}

// submit sends a V2 share to the V1 server as mining.submit and answers with its
// verdict, on a goroutine so that a channel may have MaxPendingShares in flight.
func (c *conn) submit(chID, seq, jobID, nonce, ntime, version uint32, extranonce []byte, extended bool) {
	fail := func(code string) {
		c.write(&sv2.SubmitSharesError{ChannelID: chID, SequenceNumber: seq, ErrorCode: code})
	}
	ch := c.channel(chID)
	if ch == nil || ch.extended != extended {
		fail(sv2.CodeInvalidChannelID)
		return
	}
	ch.mu.Lock()
	jb := ch.jobs[jobID]
	issued := jobID >= 1 && jobID <= ch.nextJob
	ch.mu.Unlock()
	switch {
	case jb == nil && issued:
		fail(sv2.CodeStaleShare)
		return
	case jb == nil:
		fail(sv2.CodeInvalidJobID)
		return
	case (version^jb.version)&^ch.mask != 0 && ch.mask == 0:
		fail(sv2.CodeVersionRollingNotAllowed)
		return
	case (version^jb.version)&^ch.mask != 0:
		fail(sv2.CodeInvalidNonRollableVersionBit)
		return
	case extended && len(extranonce) != ch.en2Size:
		fail(sv2.CodeBadExtranonceSize)
		return
	}
	en2 := ch.en2
	if extended {
		en2 = extranonce
	}
	sub := &stratum.Submit{
		Worker:      ch.user,
		JobID:       jb.v1,
		Extranonce2: hex.EncodeToString(en2),
		NTime:       hex8(ntime),
		Nonce:       hex8(nonce),
	}
	if ch.mask != 0 {
		sub.VersionBits = hex8(version & ch.mask)
	}
	select {
	case ch.sem <- struct{}{}:
	case <-c.ctx.Done():
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		err := ch.v1.Submit(c.ctx, sub)
		<-ch.sem
		if err == nil {
			c.write(&sv2.SubmitSharesSuccess{ChannelID: chID, LastSequenceNumber: seq, NewSubmitsAcceptedCount: 1, NewSharesSum: uint64(jb.diff)})
			return
		}
		fail(errorCode(err))
	}()
}

// errorCode maps a V1 rejection to the spec's error code.
func errorCode(err error) string {
	var se *stratum.Error
	if !errors.As(err, &se) {
		return sv2.CodeInvalidShare // the V1 connection ended; the channel closes
	}
	switch se.Code {
	case stratum.ErrCodeJobNotFound:
		return sv2.CodeStaleShare
	case stratum.ErrCodeDuplicate:
		return sv2.CodeDuplicateShare
	case stratum.ErrCodeLowDifficulty:
		return sv2.CodeDifficultyTooLow
	case stratum.ErrCodeUnauthorized, stratum.ErrCodeNotSubscribed:
		return sv2.CodeInvalidChannelID
	}
	return sv2.CodeInvalidShare
}

// updateChannel takes a channel's new nominal hash rate and max_target: a
// max_target that the present difficulty does not meet becomes a V1
// mining.suggest_difficulty, whose job brings the SetTarget.
func (c *conn) updateChannel(m *sv2.UpdateChannel) {
	fail := func(code string) {
		c.write(&sv2.UpdateChannelError{ChannelID: m.ChannelID, ErrorCode: code})
	}
	ch := c.channel(m.ChannelID)
	if ch == nil {
		fail(sv2.CodeInvalidChannelID)
		return
	}
	if !validHashRate(m.NominalHashRate) {
		fail(sv2.CodeInvalidNominalHashrate)
		return
	}
	md, ok := sv2.MinDiff(m.MaximumTarget)
	if !ok {
		fail(sv2.CodeMaxTargetOutOfRange)
		return
	}
	ch.mu.Lock()
	ch.minDiff = md
	raise := ch.diff < md
	ch.mu.Unlock()
	if !raise {
		return
	}
	p := strconv.AppendFloat([]byte("["), md.Float(), 'g', -1, 64)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if _, err := ch.v1.Call(c.ctx, "mining.suggest_difficulty", append(p, ']')); err != nil {
			c.s.log.Debug("v2 update channel", "err", err)
		}
	}()
}

func hex8(v uint32) string {
	const digits = "0123456789abcdef"
	var b [8]byte
	for i := 7; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}
