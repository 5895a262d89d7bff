package market

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
)

// fakeDest is a destination pool for tests: it hands out jobs at a fixed difficulty
// and validates every share by re-hashing it, as a real pool does, recording the
// accepted work per user.
type fakeDest struct {
	t    testing.TB
	srv  *stratum.Server
	addr string
	diff float64
	bits uint32
	en2  int

	// Misbehaviour, set before the first share arrives.
	delay       time.Duration // before answering each submit
	mask        uint32        // version-rolling mask offered to clients; default the stratum server's
	strictNTime bool          // reject a share whose ntime is not its job's (no ntime rolling)
	rejectAll   bool          // validate, then reject every share as a lying pool does
	maxConns    int           // refuse to authorize beyond this many open connections; 0 = no limit
	onAccept    chan struct{} // told (without blocking) of every share accepted

	mu        sync.Mutex
	seq       int
	jobs      map[string]*fakeJob
	cur       *fakeJob
	accepted  map[string]uint64
	work      map[string]hashgrid.Work
	byConn    map[uint32]uint64 // accepted shares by connection (its extranonce1)
	authTries int
	live      map[*stratum.Conn]uint32 // authorized connections open now
	rejected  int
	seen      map[chainhash.Hash]bool
	stopped   bool
	wg        sync.WaitGroup
}

type fakeJob struct {
	id             string
	coinb1, coinb2 []byte
	branch         []chainhash.Hash
	prev           chainhash.Hash
	version, ntime uint32
	diff           hashgrid.Diff
	notify         []byte
}

func startDest(t testing.TB, diff float64) *fakeDest { return startDestEN2(t, diff, 8) }

// startDestEN2 is startDest with en2 bytes of extranonce2 for its clients.
func startDestEN2(t testing.TB, diff float64, en2 int) *fakeDest {
	t.Helper()
	return startDestWith(t, diff, en2, nil)
}

// startDestWith is startDestEN2 with set applied before the pool serves anyone.
func startDestWith(t testing.TB, diff float64, en2 int, set func(*fakeDest)) *fakeDest {
	t.Helper()
	d := &fakeDest{t: t, diff: diff, bits: 0x1d00ffff, en2: en2, jobs: map[string]*fakeJob{}, accepted: map[string]uint64{}, byConn: map[uint32]uint64{}, live: map[*stratum.Conn]uint32{}, work: map[string]hashgrid.Work{}, seen: map[chainhash.Hash]bool{}}
	if set != nil {
		set(d)
	}
	srv, err := stratum.NewServer(stratum.Config{Extranonce2Size: en2, VersionMask: d.mask}, d)
	if err != nil {
		t.Fatal(err)
	}
	d.srv = srv
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.addr = l.Addr().String()
	d.newJob(true)
	d.wg.Go(func() { srv.Serve(l) })
	t.Cleanup(d.stop)
	return d
}

func (d *fakeDest) url() string { return "stratum+tcp://" + d.addr }

func (d *fakeDest) stop() {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return
	}
	d.stopped = true
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.srv.Shutdown(ctx)
	d.wg.Wait()
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func (d *fakeDest) newJob(clean bool) {
	d.mu.Lock()
	d.seq++
	j := &fakeJob{id: strconv.Itoa(d.seq), coinb1: randBytes(40), coinb2: randBytes(30), version: 0x20000000,
		ntime: uint32(time.Now().Unix()), diff: hashgrid.DiffFromFloat(d.diff)}
	copy(j.prev[:], randBytes(32))
	for i := 0; i < 3; i++ {
		var h chainhash.Hash
		copy(h[:], randBytes(32))
		j.branch = append(j.branch, h)
	}
	br := make([]string, len(j.branch))
	for i := range j.branch {
		br[i] = hex.EncodeToString(j.branch[i][:])
	}
	n := stratum.Notify{JobID: j.id, PrevHash: pow.StratumPrevHash(j.prev), Coinb1: hex.EncodeToString(j.coinb1), Coinb2: hex.EncodeToString(j.coinb2),
		MerkleBranch: br, Version: fmt.Sprintf("%08x", j.version), NBits: fmt.Sprintf("%08x", d.bits), NTime: fmt.Sprintf("%08x", j.ntime), CleanJobs: clean}
	j.notify = stratum.AppendNotification(nil, "mining.notify", n.MarshalParams())
	if clean {
		d.jobs = map[string]*fakeJob{}
	}
	d.jobs[j.id] = j
	d.cur = j
	srv := d.srv
	d.mu.Unlock()
	if srv != nil {
		srv.Broadcast(func(*stratum.Conn) []byte { return j.notify })
	}
}

func (d *fakeDest) Authorize(c *stratum.Conn, user, password string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.authTries++
	if d.maxConns > 0 && len(d.live) >= d.maxConns {
		return errors.New("too many connections")
	}
	return nil
}
func (d *fakeDest) Authorized(c *stratum.Conn) {
	d.mu.Lock()
	j := d.cur
	d.live[c] = c.Extranonce1()
	d.mu.Unlock()
	c.SetDifficulty(d.diff)
	c.WriteRaw(j.notify)
}
func (d *fakeDest) SuggestDifficulty(c *stratum.Conn, f float64) {}
func (d *fakeDest) Closed(c *stratum.Conn) {
	d.mu.Lock()
	delete(d.live, c)
	d.mu.Unlock()
}

// conns returns how many connections are open and authorized now.
func (d *fakeDest) conns() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.live)
}

// acceptedByConn returns the accepted shares by connection (its extranonce1).
func (d *fakeDest) acceptedByConn() map[uint32]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[uint32]uint64{}
	for k, v := range d.byConn {
		out[k] = v
	}
	return out
}

func (d *fakeDest) Submit(c *stratum.Conn, s *stratum.Submit) *stratum.Error {
	if d.delay > 0 {
		time.Sleep(d.delay) // a slow pool, not test synchronisation
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	j := d.jobs[s.JobID]
	if j == nil {
		return &stratum.Error{Code: stratum.ErrCodeJobNotFound, Message: "job not found"}
	}
	reject := func(code int, msg string) *stratum.Error {
		d.rejected++
		return &stratum.Error{Code: code, Message: msg}
	}
	en2, err := hex.DecodeString(s.Extranonce2)
	if err != nil || len(en2) != d.en2 {
		return reject(stratum.ErrCodeOther, "bad extranonce2")
	}
	ntime, _ := parseHex32(s.NTime)
	nonce, _ := parseHex32(s.Nonce)
	version := j.version
	if s.VersionBits != "" {
		vb, _ := parseHex32(s.VersionBits)
		version = (j.version &^ c.VersionMask()) | (vb & c.VersionMask())
	}
	cb := append([]byte(nil), j.coinb1...)
	cb = binary.BigEndian.AppendUint32(cb, c.Extranonce1())
	cb = append(cb, en2...)
	cb = append(cb, j.coinb2...)
	root := pow.MerkleRoot(pow.DoubleSHA256(cb), j.branch)
	var hdr [80]byte
	pow.Header(&hdr, version, &j.prev, &root, ntime, d.bits, nonce)
	h := pow.DoubleSHA256(hdr[:])
	if !pow.Meets(&h, pow.DiffTarget(j.diff)) {
		return reject(stratum.ErrCodeLowDifficulty, "low difficulty share")
	}
	if d.seen[h] {
		return reject(stratum.ErrCodeDuplicate, "duplicate share")
	}
	if d.strictNTime && ntime != j.ntime {
		return reject(stratum.ErrCodeOther, "ntime out of range")
	}
	if d.rejectAll {
		return reject(stratum.ErrCodeOther, "share rejected")
	}
	d.seen[h] = true
	d.accepted[s.Worker]++
	d.byConn[c.Extranonce1()]++
	d.work[s.Worker] = d.work[s.Worker].Add(j.diff)
	if d.onAccept != nil {
		select {
		case d.onAccept <- struct{}{}:
		default:
		}
	}
	return nil
}

func (d *fakeDest) rejects() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rejected
}

func (d *fakeDest) stats(user string) (uint64, hashgrid.Work) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.accepted[user], d.work[user]
}
