package pool

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pow"
	"github.com/hashgrid/hashgrid/stratum"
)

// Node is what the pool needs from the node adapter.
type Node interface {
	SubmitBlock(ctx context.Context, b *wire.MsgBlock) error
}

// ShareSink makes shares durable. Record calls done once the share is safe (a crash
// after that cannot lose it) with the share's sequence number, or with an error. done
// may run on another goroutine; it does not block.
type ShareSink interface {
	Record(s *hashgrid.Share, done func(seq uint64, err error))
}

// BlockSink records found blocks and their fate.
type BlockSink interface {
	PutBlock(ctx context.Context, b hashgrid.Block) error
}

// OutputFunc returns the coinbase outputs for a template whose coinbase may pay value
// satoshis. finder is the address of the miner the work is for; key says which miners
// may share one layout (all miners get the same key except under SOLO). The sum of the
// values must equal value.
type OutputFunc func(tmpl *node.Template, value int64, finder string) (outs []Output, key string, err error)

// DefaultVersionMask is BIP 320's general-purpose version bits, which BIP 310 lets
// miners roll unless a pool narrows them.
const DefaultVersionMask = 0x1fffe000

// Config configures a Pool.
type Config struct {
	Network         *chaincfg.Params
	Tag             string        // written into every coinbase script
	Extranonce2Size int           // default 8
	ShareInterval   time.Duration // vardiff aims at one share per interval per connection; default 5s
	// Share difficulties. Zero takes the network's default (NetworkDifficulties:
	// mainnet 16384 within [256, 4e9], regtest 0.001 within [1e-6, 4e9]). Every
	// difficulty a connection gets, from vardiff or asked for with a "d=" password
	// option, mining.suggest_difficulty or the minimum-difficulty extension, is clamped
	// to [MinDiff, MaxDiff]. A StartDiff below the network's minimum needs MinDiff set
	// too: a lower floor is never taken silently.
	StartDiff      float64
	MinDiff        float64
	MaxDiff        float64
	MaxFutureNTime time.Duration // how far ntime may run ahead of the pool's clock; default 7000s
	// MaxJobShares bounds the shares one connection may have accepted on one work (a
	// template's coinbase layout; its jobs, clones included, share it), since the
	// duplicate check keeps every accepted share's hash until the work is dropped:
	// past it the connection's further shares on that work are refused as stale
	// (Stratum 21), except a block-solving one, until a new template brings new work.
	// Default 4096: about 6 hours of one connection's shares at vardiff's 5 s, at
	// most some 200 kB of hashes.
	MaxJobShares int
	VersionMask  uint32 // BIP 310 bits miners may roll; default DefaultVersionMask
	// FrontEnd numbers this pool among the Stratum front-ends of one cluster (separate
	// processes on one template source, whose shares meet in one log): 1..MaxFrontEnds,
	// each front-end its own. It is the top byte of every extranonce1 and of every job
	// id the pool hands out, so two front-ends never hand out the same work, and a job
	// id of one is unknown on another (see the package doc). 0, the default, is a lone
	// pool: the whole extranonce1 space, job ids from 1. A cluster must not mix 0 with
	// other numbers.
	FrontEnd int
	Limits   stratum.Limits
	Outputs  OutputFunc
	Logger   *slog.Logger
	Now      func() time.Time
	Metrics  *Metrics // optional
	// OnBlock, when set, is called after the node accepted a block found here, so that
	// the template source can fetch the next template at once.
	OnBlock func()
	// SampleRate is how many accepted shares, on average, give one whose header is kept
	// (see Sampled): a power of two; 0 takes NetworkSampleRate.
	SampleRate uint64
	// CommitmentFile, when set, names the file whose output script every template
	// installed while it exists carries in its coinbase (see ReadCommitment): in the
	// pool's data directory, CommitmentFileName.
	CommitmentFile string
}

// Defaults fills zero fields.
func (c *Config) defaults() {
	if c.Extranonce2Size == 0 {
		c.Extranonce2Size = 8
	}
	if c.ShareInterval == 0 {
		c.ShareInterval = 5 * time.Second
	}
	nd := NetworkDifficulties(c.Network)
	if c.MinDiff == 0 {
		c.MinDiff = nd.Min
	}
	if c.StartDiff == 0 {
		c.StartDiff = max(nd.Start, c.MinDiff)
	}
	if c.MaxDiff == 0 {
		c.MaxDiff = nd.Max
	}
	if c.MaxJobShares == 0 {
		c.MaxJobShares = DefaultMaxJobShares
	}
	if c.MaxFutureNTime == 0 {
		c.MaxFutureNTime = 7000 * time.Second
	}
	if c.VersionMask == 0 {
		c.VersionMask = DefaultVersionMask
	}
	if c.SampleRate == 0 {
		c.SampleRate = NetworkSampleRate(c.Network)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Network == nil {
		return errors.New("pool: no network")
	}
	if c.Outputs == nil {
		return errors.New("pool: no coinbase outputs")
	}
	if c.FrontEnd < 0 || c.FrontEnd > MaxFrontEnds {
		return fmt.Errorf("pool: front-end %d out of range 0..%d", c.FrontEnd, MaxFrontEnds)
	}
	if err := checkSampleRate(c.SampleRate); err != nil {
		return err
	}
	if c.MaxJobShares < 1 {
		return fmt.Errorf("pool: max job shares %d below 1", c.MaxJobShares)
	}
	if len(c.Tag) > MaxTagBytes {
		return fmt.Errorf("pool: tag longer than %d bytes", MaxTagBytes)
	}
	if c.Extranonce2Size < 2 || c.Extranonce2Size > 16 {
		return fmt.Errorf("pool: extranonce2 size %d out of range 2..16", c.Extranonce2Size)
	}
	if c.StartDiff > 0 && c.StartDiff < c.MinDiff && c.Network != nil && c.MinDiff == NetworkDifficulties(c.Network).Min {
		return fmt.Errorf("pool: start difficulty %g below %s's minimum %g: set the minimum difficulty too to go lower", c.StartDiff, c.Network.Name, c.MinDiff)
	}
	if !(c.MinDiff > 0) || c.MaxDiff < c.MinDiff || c.StartDiff < c.MinDiff || c.StartDiff > c.MaxDiff {
		return fmt.Errorf("pool: difficulties must satisfy 0 < min (%g) <= start (%g) <= max (%g)", c.MinDiff, c.StartDiff, c.MaxDiff)
	}
	if c.MaxDiff > hashgrid.MaxDiff.Float() {
		return fmt.Errorf("pool: max difficulty %g above %g", c.MaxDiff, hashgrid.MaxDiff.Float())
	}
	return nil
}

// SingleAddress returns an OutputFunc paying the whole coinbase to one address.
func SingleAddress(addr string, net *chaincfg.Params) (OutputFunc, error) {
	script, err := AddressScript(addr, net)
	if err != nil {
		return nil, err
	}
	return func(tmpl *node.Template, value int64, finder string) ([]Output, string, error) {
		return []Output{{Value: value, Script: script}}, "", nil
	}, nil
}

// AddressScript checks that addr belongs to net and returns its output script.
func AddressScript(addr string, net *chaincfg.Params) ([]byte, error) {
	a, err := address.DecodeAddress(addr, net)
	if err != nil {
		return nil, hashgrid.Errorf(hashgrid.EINVALID, "invalid address %q: %v", addr, err)
	}
	if !a.IsForNet(net) {
		return nil, hashgrid.Errorf(hashgrid.EINVALID, "address %q is not for %s", addr, net.Name)
	}
	return txscript.PayToAddrScript(a)
}

// Pool is a running mining pool.
type Pool struct {
	cfg    Config
	node   Node
	shares ShareSink
	blocks BlockSink
	log    *slog.Logger
	srv    *stratum.Server
	m      *Metrics

	sampleShift uint // log2 of Config.SampleRate

	jobSeq  atomic.Uint64
	jobBase uint64 // the front-end's job id space: FrontEnd in the top byte
	jobs    atomic.Pointer[jobCache]

	// Share counts, kept apart from mu: every share touches one.
	sharesAccepted, sharesRejected atomic.Uint64
	refusals                       refusalLog // authorizations refused (authlog.go)

	mu       sync.Mutex
	tmpl     *node.Template
	parts    *templateParts   // of tmpl
	works    map[string]*work // by output key, for the current template
	current  *job             // the shared job most recently broadcast
	tipSince time.Time
	stats    Stats

	bg sync.WaitGroup // block submissions in flight
	// retryStop is closed at shutdown: found blocks still waiting for a node stop
	// retrying (see submitBlock).
	retryStop chan struct{}
	retryOnce sync.Once
}

// Stats is a snapshot for the API.
type Stats struct {
	Height         int64   // height of the block being mined
	NetworkDiff    float64 // from the template's bits
	PrevHash       string
	LastTemplate   time.Time
	LastBroadcast  time.Duration // time to send the last clean job to every miner
	Connections    int
	Authorized     int
	BlocksFound    uint64
	SharesAccepted uint64
	SharesRejected uint64
}

// job is one mining.notify: a work and the ntime it starts from.
type job struct {
	id    uint64
	work  *work
	ntime uint32
	clean bool
	// notify is the pre-encoded line of a job many connections get (the shared
	// layout's broadcast job); a job of one address's or one connection's is written
	// from frame when sent (appendNotify), so that the jobs sessions keep, up to
	// sentJobs each, do not keep a line each.
	notify []byte
	frame  *notifyFrame
	// broadcast marks the job sent to every miner for a template; a session may get
	// its own layout of it (see jobFor).
	broadcast bool
	addr      string // the payout address a finder's job was built for (see jobCache)
}

// New returns a pool; start it with Serve and feed it templates with UpdateTemplate.
func New(cfg Config, nd Node, shares ShareSink, blocks BlockSink) (*Pool, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pool{cfg: cfg, node: nd, shares: shares, blocks: blocks, log: cfg.Logger, m: cfg.Metrics, works: map[string]*work{}, retryStop: make(chan struct{})}
	p.jobBase = uint64(cfg.FrontEnd) << jobSeqBits
	p.sampleShift = uint(bits.TrailingZeros64(cfg.SampleRate))
	scfg := stratum.Config{
		Extranonce2Size: cfg.Extranonce2Size,
		VersionMask:     cfg.VersionMask,
		Limits:          cfg.Limits,
		Logger:          cfg.Logger.With("component", "stratum"),
		Now:             cfg.Now,
		OnDrop:          p.m.drop,
	}
	if cfg.FrontEnd != 0 {
		scfg.Extranonce1Prefix, scfg.Extranonce1PrefixBits = uint32(cfg.FrontEnd), FrontEndBits
	}
	var err error
	p.srv, err = stratum.NewServer(scfg, p)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Server returns the Stratum server.
func (p *Pool) Server() *stratum.Server { return p.srv }

// Serve accepts miners on l.
func (p *Pool) Serve(l net.Listener) error { return p.srv.Serve(l) }

// Shutdown asks miners to reconnect, closes their connections and waits for block
// submissions in flight.
func (p *Pool) Shutdown(ctx context.Context) error {
	p.stopRetries()
	err := p.srv.Shutdown(ctx)
	done := make(chan struct{})
	go func() { p.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

// Stats returns current figures.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	s := p.stats
	p.mu.Unlock()
	s.SharesAccepted, s.SharesRejected = p.sharesAccepted.Load(), p.sharesRejected.Load()
	s.Connections = p.srv.NumConns()
	for _, c := range p.srv.Conns() {
		if c.Authorized() {
			s.Authorized++
		}
	}
	return s
}

// HasWork reports whether the pool has a template to hand out.
func (p *Pool) HasWork() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current != nil
}

// UpdateTemplate installs a new template. newTip means the previous block changed:
// old work becomes stale and miners are told to drop it (clean_jobs).
func (p *Pool) UpdateTemplate(t *node.Template, newTip bool) error {
	start := p.cfg.Now()
	// Built before taking the lock: miners' shares and jobs wait on it.
	parts, err := p.newTemplateParts(t)
	if err != nil {
		return err
	}
	p.mu.Lock()
	if p.tmpl != nil && t.PrevHash != p.tmpl.PrevHash {
		newTip = true
	}
	if p.tmpl == nil {
		newTip = true
	}
	old, oldParts := p.works, p.parts
	if !newTip {
		// The same tip: the new template's layouts turn stale with the old ones'.
		parts.stale = oldParts.stale
	}
	p.tmpl, p.parts = t, parts
	p.works = make(map[string]*work, len(old))
	w, _, err := p.workLocked("")
	if err != nil {
		p.tmpl, p.works, p.parts = nil, old, oldParts
		p.mu.Unlock()
		return err
	}
	if newTip {
		// Every layout of every template on the old tip, however many SOLO
		// addresses and same-tip templates there were, shares this one flag.
		if oldParts != nil {
			oldParts.stale.Store(true)
		}
		p.tipSince = start
	}
	j := p.newJob(w, newTip)
	j.notify = j.appendNotify(nil) // the one line most connections get
	j.broadcast = true
	p.current = j
	p.jobs.Store(&jobCache{shared: j})
	p.stats.Height = t.Height
	p.stats.NetworkDiff = parts.netTgt.Difficulty()
	p.stats.PrevHash = t.PrevHash.String()
	p.stats.LastTemplate = start
	p.mu.Unlock()

	p.srv.BroadcastAppend(func(c *stratum.Conn, dst []byte) []byte {
		if s, ok := c.Data.(*session); ok {
			return s.appendJobLine(p, j, dst)
		}
		return dst
	})
	el := p.cfg.Now().Sub(start)
	p.m.broadcast(el)
	if newTip {
		p.mu.Lock()
		p.stats.LastBroadcast = el
		p.mu.Unlock()
		p.log.Info("new block template", "height", t.Height, "txs", len(t.Transactions), "reward", t.CoinbaseValue, "broadcast", el)
	}
	return nil
}

// workLocked returns the work for finder's output key, building it on first use, and
// the key.
func (p *Pool) workLocked(finder string) (*work, string, error) {
	t := p.tmpl
	outs, key, err := p.cfg.Outputs(t, t.CoinbaseValue, finder)
	if err != nil {
		return nil, "", fmt.Errorf("pool: coinbase outputs: %w", err)
	}
	if w, ok := p.works[key]; ok {
		return w, key, nil
	}
	w, err := p.newWork(t, p.parts, outs)
	if err != nil {
		return nil, "", err
	}
	p.works[key] = w
	return w, key, nil
}

// newWork builds the work of one coinbase layout of t. It takes no lock.
func (p *Pool) newWork(t *node.Template, parts *templateParts, outs []Output) (*work, error) {
	var sum int64
	for _, o := range outs {
		sum += o.Value
	}
	if sum != t.CoinbaseValue {
		return nil, fmt.Errorf("pool: coinbase outputs pay %d, template allows %d", sum, t.CoinbaseValue)
	}
	cb2, err := appendCoinb2(nil, outs, parts.coinb2Tail)
	if err != nil {
		return nil, err
	}
	if parts.commitment != nil {
		// A new slice: outs may be the OutputFunc's cached layout.
		with := append(append(make([]Output, 0, len(outs)+1), outs...), Output{Value: 0, Script: parts.commitment})
		cb2c, err := appendCoinb2(nil, with, parts.coinb2Tail)
		if err != nil {
			return nil, err
		}
		if wt := blockWeight(t, len(parts.coinb1)+4+p.cfg.Extranonce2Size+len(cb2c)); wt <= node.MaxBlockWeight {
			outs, cb2 = with, cb2c
		} else {
			p.log.Warn("coinbase commitment left out: the block would weigh too much", "height", t.Height, "weight", wt, "limit", node.MaxBlockWeight)
		}
	}
	return &work{
		tmpl:       t,
		height:     t.Height,
		version:    uint32(t.Version),
		bits:       t.Bits,
		prev:       t.PrevHash,
		prevStr:    parts.prevStr,
		coinb1:     parts.coinb1,
		coinb2:     cb2,
		stale:      parts.stale,
		branch:     parts.branch,
		branchJSON: parts.branchJSON,
		netTgt:     parts.netTgt,
		en1Size:    4,
		en2Size:    p.cfg.Extranonce2Size,
		witness:    t.WitnessCommitment != nil,
		outputs:    outs,
		reward:     t.CoinbaseValue,
	}, nil
}

// templateParts is what every coinbase layout of one template shares. The merkle
// branch depends on the template alone, so the layouts of one template (one per payout
// address under SOLO) share one instead of each rebuilding it: a 3,000-transaction
// template's branch costs 3,000 hashes, about 1.7 ms. So do coinb1 (everything before
// the extranonces), coinb2's tail after the outputs, and the staleness flag: a layout
// of its own, one per SOLO address, is only its outputs.
type templateParts struct {
	branch     []chainhash.Hash
	branchJSON []byte // the branch as mining.notify's list of hex strings
	prevStr    string // stratum form of the previous block hash
	netTgt     pow.Target
	coinb1     []byte // read only
	coinb2Tail []byte // the witness commitment output and the lock time; read only
	commitment []byte // the operator's commitment output script, nil for none; read only
	// stale is set when the chain tip moves on. Templates on one tip share it.
	stale *atomic.Bool
}

func (p *Pool) newTemplateParts(t *node.Template) (*templateParts, error) {
	netTgt, err := pow.CompactTarget(t.Bits)
	if err != nil {
		return nil, err
	}
	hpush, err := heightPush(t.Height)
	if err != nil {
		return nil, err
	}
	cb1, err := appendCoinb1(nil, hpush, []byte(p.cfg.Tag), 4, p.cfg.Extranonce2Size)
	if err != nil {
		return nil, err
	}
	tp := &templateParts{branch: pow.MerkleBranch(t.TxIDs()), prevStr: pow.StratumPrevHash(t.PrevHash), netTgt: netTgt,
		coinb1: cb1, coinb2Tail: appendCoinb2Tail(nil, t.WitnessCommitment), stale: new(atomic.Bool)}
	if p.cfg.CommitmentFile != "" {
		// A bad file must not stop mining: the template goes out without it.
		c, cerr := ReadCommitment(p.cfg.CommitmentFile)
		if cerr != nil {
			p.log.Warn("coinbase commitment left out", "err", cerr)
		}
		tp.commitment = c
	}
	tp.branchJSON = append(make([]byte, 0, 2+67*len(tp.branch)), '[')
	for i := range tp.branch {
		if i > 0 {
			tp.branchJSON = append(tp.branchJSON, ',')
		}
		tp.branchJSON = append(hex.AppendEncode(append(tp.branchJSON, '"'), tp.branch[i][:]), '"')
	}
	tp.branchJSON = append(tp.branchJSON, ']')
	return tp, nil
}

// newJob returns a new job over w. It takes no lock.
func (p *Pool) newJob(w *work, clean bool) *job { return p.jobOn(w, p.newFrame(w, clean)) }

// jobOn returns a new job over w in frame f, which must be of w's template. Its line
// is not built: see job.notify.
func (p *Pool) jobOn(w *work, f *notifyFrame) *job {
	id := p.jobBase | p.jobSeq.Add(1)&(1<<jobSeqBits-1)
	return &job{id: id, work: w, ntime: f.ntime, clean: f.clean, frame: f}
}

// appendNotify appends j's mining.notify line to dst.
func (j *job) appendNotify(dst []byte) []byte {
	if j.notify != nil {
		return append(dst, j.notify...)
	}
	return j.frame.appendLine(dst, j.id, j.work.coinb2)
}

// notifyFrame is what the mining.notify lines of one template's layouts share, for
// one ntime and clean flag: everything but the job id and coinb2. Every field is hex,
// a hex string list or a boolean, so the line is written directly rather than through
// encoding/json: under SOLO a new tip writes one line per payout address, each then
// three copies around its id and coinb2, into the broadcast worker's buffer.
type notifyFrame struct {
	ntime uint32
	clean bool
	mid   []byte // after the job id, up to coinb2: prevhash and coinb1
	tail  []byte // after coinb2: the branch, version, bits, ntime, clean and the end
}

const notifyHead = `{"id":null,"method":"mining.notify","params":["`

// newFrame returns the frame of w's template for a job sent now.
func (p *Pool) newFrame(w *work, clean bool) *notifyFrame {
	ntime := uint32(w.tmpl.CurTime)
	if now := uint32(p.cfg.Now().Unix()); now > ntime && int64(now) >= w.tmpl.MinTime {
		ntime = now
	}
	f := &notifyFrame{ntime: ntime, clean: clean}
	f.mid = append(make([]byte, 0, 8+len(w.prevStr)+2*len(w.coinb1)), `","`...)
	f.mid = append(f.mid, w.prevStr...)
	f.mid = append(f.mid, `","`...)
	f.mid = hex.AppendEncode(f.mid, w.coinb1)
	f.mid = append(f.mid, `","`...)
	f.tail = append(make([]byte, 0, 48+len(w.branchJSON)), `",`...)
	f.tail = append(f.tail, w.branchJSON...)
	f.tail = append(f.tail, ',')
	var b [4]byte
	for _, v := range [3]uint32{w.version, w.bits, ntime} {
		binary.BigEndian.PutUint32(b[:], v)
		f.tail = append(hex.AppendEncode(append(f.tail, '"'), b[:]), `",`...)
	}
	f.tail = strconv.AppendBool(f.tail, clean)
	f.tail = append(f.tail, "]}\n"...)
	return f
}

// appendLine appends the mining.notify line of job id with coinb2 to b.
func (f *notifyFrame) appendLine(b []byte, id uint64, coinb2 []byte) []byte {
	b = slices.Grow(b, len(notifyHead)+16+len(f.mid)+2*len(coinb2)+len(f.tail))
	b = append(b, notifyHead...)
	b = strconv.AppendUint(b, id, 16)
	b = append(b, f.mid...)
	b = hex.AppendEncode(b, coinb2)
	return append(b, f.tail...)
}

// jobCache maps payout addresses to their job for the current broadcast job: under
// SOLO each finder has its own coinbase, otherwise every address maps to the shared job.
// It is replaced with each template, so a broadcast to many connections asks the
// OutputFunc once per address, not once per connection, and takes no pool-wide lock.
type jobCache struct {
	shared *job
	byAddr sync.Map // address → *job
	// last is the job of the address asked for last: connections of one address tend
	// to come together (a farm's workers, a load test), and a hit needs no map lookup.
	last atomic.Pointer[job]
}

// jobFor returns the job a session gets for a broadcast job: the job itself, or for a
// finder-specific layout (SOLO) one built for the session's address. Jobs that are not
// broadcast jobs (retarget clones) are already the session's own.
func (p *Pool) jobFor(s *session, j *job) *job {
	if !j.broadcast {
		return j
	}
	s.mu.Lock()
	addr := s.address
	s.mu.Unlock()
	if addr == "" {
		return j
	}
	jc := p.jobs.Load()
	if jc == nil || jc.shared != j {
		return p.finderJob(addr, j)
	}
	if l := jc.last.Load(); l != nil && l.addr == addr {
		return l
	}
	fj, ok := jc.byAddr.Load(addr)
	if !ok {
		fj, _ = jc.byAddr.LoadOrStore(addr, p.finderJob(addr, j))
	}
	if f := fj.(*job); f.addr == addr {
		jc.last.Store(f)
	}
	return fj.(*job)
}

// finderJob builds (or finds) the work for addr's layout of the template behind j.
//
// Only the outputs are asked for and the work looked up under the pool's lock: the
// coinbase and the notify line are built outside it, so that a broadcast under SOLO
// (one layout per address) builds them on every core.
func (p *Pool) finderJob(addr string, j *job) *job {
	p.mu.Lock()
	t, parts := p.tmpl, p.parts
	if t == nil || t != j.work.tmpl {
		p.mu.Unlock()
		return j
	}
	outs, key, err := p.cfg.Outputs(t, t.CoinbaseValue, addr)
	w := p.works[key]
	p.mu.Unlock()
	if err != nil {
		p.log.Warn("finder work", "address", addr, "err", err)
		return j
	}
	if key == "" {
		return j // the shared layout
	}
	if w == nil {
		nw, err := p.newWork(t, parts, outs)
		if err != nil {
			p.log.Warn("finder work", "address", addr, "err", err)
			return j
		}
		p.mu.Lock()
		if p.tmpl != t {
			// A new template came meanwhile: only works in p.works are marked stale
			// with it, so this one must not be handed out.
			p.mu.Unlock()
			return j
		}
		if w = p.works[key]; w == nil {
			w = nw
			p.works[key] = w
		}
		p.mu.Unlock()
	}
	// The broadcast job's frame: same template, ntime and clean flag.
	fj := p.jobOn(w, j.frame)
	fj.addr = addr
	return fj
}

// cloneCurrent returns a job with a new id over the session's layout of the current
// work, for a session whose difficulty just changed: set_difficulty applies from the
// next job, and a new id keeps each job's difficulty unambiguous.
func (p *Pool) cloneCurrent(s *session) *job {
	p.mu.Lock()
	cur := p.current
	p.mu.Unlock()
	if cur == nil {
		return nil
	}
	return p.newJob(p.jobFor(s, cur).work, false)
}

// --- stratum.Handler ---

// authorize checks that the user is ADDRESS or ADDRESS.WORKER with an address of the
// pool's network, and reads password options (d=DIFF for a fixed difficulty).
func (p *Pool) authorize(c *stratum.Conn, user, password string) error {
	addr, worker, _ := strings.Cut(user, ".")
	if len(worker) > 64 {
		return errors.New("worker name longer than 64 characters")
	}
	if _, err := AddressScript(addr, p.cfg.Network); err != nil {
		return errors.New(hashgrid.ErrorMessage(err))
	}
	s := p.session(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.address != "" && s.address != addr {
		// One connection, one payout address: shares carry the worker's address, but a
		// SOLO coinbase is built for the connection.
		return errors.New("one payout address per connection")
	}
	s.address = addr
	known := false
	for i := range s.workers {
		if s.workers[i].user == user {
			s.workers[i].worker, known = worker, true
		}
	}
	if !known {
		s.workers = append(s.workers, userWorker{user, worker})
	}
	for _, opt := range strings.Split(password, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(opt), "=")
		if !ok || k != "d" {
			continue
		}
		d, err := strconv.ParseFloat(v, 64)
		if err != nil || !(d > 0) {
			return fmt.Errorf("bad difficulty option %q", opt)
		}
		s.fixed = true
		s.diff = p.clampDiff(d)
	}
	return nil
}

// Authorized sends the first difficulty and job.
func (p *Pool) Authorized(c *stratum.Conn) {
	s := p.session(c)
	s.mu.Lock()
	if !s.fixed {
		d := p.cfg.StartDiff
		if pd := c.PortStartDifficulty(); pd > 0 {
			d = pd // the port's own, below a miner's suggestion
		}
		if sd := c.SuggestedDifficulty(); sd > 0 {
			d = sd
		}
		if md := c.MinDifficulty(); md > d {
			d = md
		}
		s.diff = p.clampDiff(d)
	}
	s.authorized = true
	s.windowStart = p.cfg.Now()
	s.mu.Unlock()
	p.m.connAuthorized()
	p.mu.Lock()
	cur := p.current
	p.mu.Unlock()
	if cur != nil {
		s.sendJob(p, cur)
	}
}

// SuggestDifficulty applies a miner's suggestion from the next job.
func (p *Pool) SuggestDifficulty(c *stratum.Conn, d float64) {
	s := p.session(c)
	s.mu.Lock()
	if s.fixed {
		s.mu.Unlock()
		return
	}
	if md := c.MinDifficulty(); md > d {
		d = md
	}
	s.diff = p.clampDiff(d)
	s.mu.Unlock()
	if j := p.cloneCurrent(s); j != nil {
		s.sendJob(p, j)
	}
}

// Closed forgets the session.
func (p *Pool) Closed(c *stratum.Conn) {
	if c.Authorized() {
		p.m.connClosed()
	}
}

func (p *Pool) clampDiff(d float64) hashgrid.Diff {
	if d < p.cfg.MinDiff {
		d = p.cfg.MinDiff
	}
	if d > p.cfg.MaxDiff {
		d = p.cfg.MaxDiff
	}
	return hashgrid.DiffFromFloat(d)
}

func (p *Pool) session(c *stratum.Conn) *session {
	if s, ok := c.Data.(*session); ok {
		return s
	}
	s := &session{conn: c}
	c.Data = s
	return s
}
