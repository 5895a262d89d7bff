package bench

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hashgrid/hashgrid/natsstream"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/sqlite"
	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stratum/v2/bridge"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
	"github.com/hashgrid/hashgrid/stream"
)

// BenchDiff is the fixed difficulty the load client asks the benchmark pool for:
// 2^-32, the smallest a hashgrid.Diff holds. Its target is 0xffff·2^240, which about
// 99.998% of headers meet.
const BenchDiff = "2.3283064365386963e-10"

// Template returns a synthetic template at mainnet-like difficulty (nBits 17034219,
// about 1.1e14) with txs transactions (txids only: its blocks are never assembled, as
// no share meets that target).
func Template(height int64, txs int) *node.Template {
	t := &node.Template{
		Version:       0x20000000,
		CoinbaseValue: 312_500_000,
		Bits:          0x17034219,
		CurTime:       time.Now().Unix(),
		MinTime:       time.Now().Unix() - 3600,
		Height:        height,
	}
	binary.LittleEndian.PutUint64(t.PrevHash[:], uint64(height))
	for i := 0; i < txs; i++ {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(height)<<32|uint64(i))
		t.Transactions = append(t.Transactions, node.TemplateTx{TxID: chainhash.Hash(sha256.Sum256(b[:]))})
	}
	return t
}

// benchMaxJobShares bounds a benchmark connection's accepted shares on one work.
const benchMaxJobShares = 1 << 20

// benchPoolAddress is the benchmark pool's own payout address.
const benchPoolAddress = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"

// noNode refuses blocks: the benchmark template's target is never met.
type noNode struct{}

func (noNode) SubmitBlock(context.Context, *wire.MsgBlock) error {
	return fmt.Errorf("bench: no node behind the benchmark pool")
}

// ServerConfig configures the benchmark pool.
type ServerConfig struct {
	Listen  string
	Data    string // share stream and SQLite; a temp dir when empty
	Txs     int    // template transactions (merkle branch length log2)
	MaxConn int
	Logger  *slog.Logger
	// NATS, when set, makes the benchmark pool a cluster front-end: its shares go to
	// the JetStream share stream (package natsstream) with Replicas replicas, the
	// miner answered as Ack says, and no store is kept in this process.
	NATS     *nats.Conn
	Ack      natsstream.AckMode
	Replicas int
	FrontEnd string // its name in the stream; default "bench"
	// Solo lays out coinbases as a SOLO pool does (payout.SoloOutputs): each payout
	// address that authorizes gets a coinbase of its own, so a new tip builds and
	// writes one job per address. Load clients give each connection its own address
	// with LoadConfig.SoloUsers.
	Solo bool
	// FixedDiff, when > 0, is every connection's difficulty (start and maximum), for
	// clients that cannot ask for one with a password option: Stratum V2 miners.
	FixedDiff float64
	// V2Listen, when set, serves Stratum V2 there through the bridge (package
	// stratum/v2/bridge), with keys kept in Data; Server.V2URL is its URL.
	V2Listen string
}

// Server is a running benchmark pool.
type Server struct {
	Addr  string
	V2URL string // stratum2+tcp://HOST:PORT/KEY when ServerConfig.V2Listen is set
	Pool  *pool.Pool
	books *books
	stop  func()
	once  sync.Once
	h     int64
	txs   int
	reg   *prometheus.Registry
}

// StartServer starts the benchmark pool.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Data == "" {
		d, err := os.MkdirTemp("", "hashgrid-bench-")
		if err != nil {
			return nil, err
		}
		cfg.Data = d
	}
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	bk, err := openBooks(ctx, cfg)
	if err != nil {
		return nil, err
	}
	shares := stream.NewShareSink(bk.src, stream.RejectSampling{Logger: cfg.Logger})
	out, err := pool.SingleAddress(benchPoolAddress, &chaincfg.MainNetParams)
	if err != nil {
		bk.close()
		return nil, err
	}
	if cfg.Solo {
		out = payout.SoloOutputs(payout.Config{Scheme: payout.SOLO, Network: &chaincfg.MainNetParams, PoolAddress: benchPoolAddress,
			Split: payout.SplitParams{FeeBps: 100}})
	}
	reg := prometheus.NewRegistry()
	var blocks pool.BlockSink
	if bk.store != nil {
		blocks = bk.store
	}
	p, err := pool.New(pool.Config{
		Network: &chaincfg.MainNetParams, Outputs: out, MinDiff: 2.3283064365386963e-10, Logger: cfg.Logger,
		StartDiff: cfg.FixedDiff, MaxDiff: cfg.FixedDiff,
		Metrics: pool.NewMetrics(reg),
		Limits:  stratum.Limits{MaxConnsPerIP: cfg.MaxConn},
		// A submit run answers tens of thousands of shares per connection on one
		// template, far past the default bound of a connection's accepted shares per
		// work (pool.DefaultMaxJobShares): without this, most of a run would be
		// refused as stale, which costs the pool less than accepting.
		MaxJobShares: benchMaxJobShares,
	}, noNode{}, shares, blocks)
	if err != nil {
		bk.close()
		return nil, err
	}
	s := &Server{Pool: p, books: bk, h: 900_000, txs: cfg.Txs, reg: reg}
	if err := p.UpdateTemplate(Template(s.h, cfg.Txs), true); err != nil {
		bk.close()
		return nil, err
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		bk.close()
		return nil, err
	}
	s.Addr = l.Addr().String()
	var v2 *bridge.Server
	if cfg.V2Listen != "" {
		var err error
		if v2, s.V2URL, err = startV2(p, cfg); err != nil {
			l.Close()
			bk.close()
			return nil, err
		}
	}
	done := make(chan struct{})
	go func() { p.Serve(l); close(done) }()
	s.stop = func() {
		sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		if v2 != nil {
			v2.Shutdown(sctx)
		}
		p.Shutdown(sctx)
		shares.Close()
		// Let the store (or the shipper) take in every answered share, and the
		// sampled rejects' counts just written, before it closes.
		for sctx.Err() == nil {
			if n, m, err := bk.backlog(sctx); err != nil || m >= n {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		<-done
		bk.close()
	}
	return s, nil
}

// startV2 serves Stratum V2 on cfg.V2Listen in front of p's V1 server.
func startV2(p *pool.Pool, cfg ServerConfig) (*bridge.Server, string, error) {
	dir := filepath.Join(cfg.Data, "sv2")
	auth, err := noise.LoadOrCreateAuthority(dir)
	if err != nil {
		return nil, "", err
	}
	id, err := noise.LoadOrCreateIdentity(dir, auth, time.Now(), 0)
	if err != nil {
		return nil, "", err
	}
	b, err := bridge.NewServer(p.Server(), bridge.Config{Identity: id, Logger: cfg.Logger,
		Limits: bridge.Limits{MaxConnsPerIP: cfg.MaxConn}})
	if err != nil {
		return nil, "", err
	}
	l, err := net.Listen("tcp", cfg.V2Listen)
	if err != nil {
		return nil, "", err
	}
	go b.Serve(l)
	return b, noise.FormatURL(l.Addr().String(), auth.PublicKey()), nil
}

// books is where the benchmark pool's shares go: the local log and its SQLite store
// consumer (a one-process pool), or a cluster front-end's JetStream share stream,
// straight ("replicated") or through the local log and a shipper ("local").
type books struct {
	src     stream.Stream
	store   *sqlite.DB // one-process only
	backlog func(context.Context) (appended, taken uint64, err error)
	close   func()
}

func openBooks(ctx context.Context, cfg ServerConfig) (*books, error) {
	if cfg.NATS != nil {
		return openFrontEndBooks(ctx, cfg)
	}
	store, err := sqlite.Open(filepath.Join(cfg.Data, "bench.db"))
	if err != nil {
		return nil, err
	}
	last, _ := store.LastSeq(ctx)
	sl, err := stream.Open(filepath.Join(cfg.Data, "shares"), stream.Options{FirstSeq: last + 1})
	if err != nil {
		store.Close()
		return nil, err
	}
	tailCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { stream.Tail(tailCtx, sl, last, 0, stream.StoreShares(tailCtx, store)); close(done) }()
	return &books{
		src: sl, store: store,
		backlog: func(ctx context.Context) (uint64, uint64, error) {
			n, err := store.LastSeq(ctx)
			return sl.LastSeq(), n, err
		},
		close: func() { cancel(); <-done; sl.Close(); store.Close() },
	}, nil
}

// openFrontEndBooks is a cluster front-end's share stream, as `hashgrid pool --role
// frontend` opens it.
func openFrontEndBooks(ctx context.Context, cfg ServerConfig) (*books, error) {
	if cfg.FrontEnd == "" {
		cfg.FrontEnd = "bench"
	}
	opts := natsstream.Options{FrontEnd: cfg.FrontEnd, Replicas: cfg.Replicas, Logger: cfg.Logger}
	if cfg.Ack == natsstream.AckReplicated {
		ns, err := natsstream.Open(ctx, cfg.NATS, opts)
		if err != nil {
			return nil, err
		}
		var appended atomic.Uint64
		src := countingStream{Stream: ns, n: &appended}
		return &books{
			src:     src,
			backlog: func(context.Context) (uint64, uint64, error) { n := appended.Load(); return n, n, nil },
			close:   func() { ns.Close() },
		}, nil
	}
	sl, err := stream.Open(filepath.Join(cfg.Data, "shares"), stream.Options{})
	if err != nil {
		return nil, err
	}
	sh, err := natsstream.NewShipper(ctx, cfg.NATS, sl, filepath.Join(cfg.Data, "shipped.json"), opts)
	if err != nil {
		sl.Close()
		return nil, err
	}
	shipCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sh.Run(shipCtx); close(done) }()
	return &books{
		src:     sl,
		backlog: func(context.Context) (uint64, uint64, error) { return sl.LastSeq(), sh.Shipped(), nil },
		close:   func() { cancel(); <-done; sl.Close() },
	}, nil
}

// countingStream counts the records a stream made durable.
type countingStream struct {
	stream.Stream
	n *atomic.Uint64
}

func (c countingStream) AppendAsync(rec []byte, done func(uint64, error)) {
	c.Stream.AppendAsync(rec, func(seq uint64, err error) {
		if err == nil {
			c.n.Add(1)
		}
		done(seq, err)
	})
}

// NewTip installs a template on a new previous block (clean jobs) and returns when it
// was handed to the pool.
func (s *Server) NewTip() time.Time {
	s.h++
	t0 := time.Now()
	s.Pool.UpdateTemplate(Template(s.h, s.txs), true)
	return t0
}

// Backlog returns the share stream's last sequence and the store's: the difference is
// what the store consumer has yet to copy. For a front-end shipping from its local log
// it is the log's and the shipper's; for one publishing straight to JetStream the two
// are equal.
func (s *Server) Backlog(ctx context.Context) (stream, store uint64, err error) {
	return s.books.backlog(ctx)
}

// Drops returns how many peers the stratum server dropped or refused, by reason.
func (s *Server) Drops() map[string]float64 {
	out := map[string]float64{}
	mfs, err := s.reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != "hashgrid_stratum_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// Close stops the server; later calls do nothing.
func (s *Server) Close() { s.once.Do(s.stop) }

// Memory returns the Go heap and stack in use after a collection, and the process's
// resident set size from /proc (0 where unavailable).
func Memory() (heap, stack, rss uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse, RSS(os.Getpid())
}

// RSS returns a process's resident set size in bytes from /proc/PID/status.
func RSS(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}
