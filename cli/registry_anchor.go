package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/registry"
)

// anchorLookback is how many blocks below the tip an anchor run looks for its
// transaction: a rerun after a crash between broadcast and record finds it there.
const anchorLookback = 6

// nodeChain checks anchors against one node's best chain.
type nodeChain struct{ c *node.Client }

func (n nodeChain) BlockHash(ctx context.Context, height int64) (chainhash.Hash, error) {
	return n.c.BlockHash(ctx, height)
}

func (n nodeChain) Block(ctx context.Context, h chainhash.Hash) (*wire.MsgBlock, error) {
	return fetchBlock(ctx, n.c, h)
}

// loadBTCKey reads a secp256k1 private key written as 64 hex digits.
func loadBTCKey(path string) (*btcec.PrivateKey, error) {
	b, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("%s: want a secp256k1 private key as 64 hex digits", path)
	}
	k, _ := btcec.PrivKeyFromBytes(raw)
	return k, nil
}

func parseOutPoint(s string) (wire.OutPoint, error) {
	txid, vout, ok := strings.Cut(s, ":")
	h, err := chainhash.NewHashFromStr(txid)
	n, nerr := strconv.ParseUint(vout, 10, 32)
	if !ok || err != nil || len(txid) != 64 || nerr != nil {
		return wire.OutPoint{}, fmt.Errorf("%w: -utxo %q: want TXID:VOUT", ErrUsage, s)
	}
	return wire.OutPoint{Hash: *h, Index: uint32(n)}, nil
}

// txOut is the part of gettxout an anchor needs.
type txOut struct {
	Value        float64 `json:"value"`
	ScriptPubKey struct {
		Hex string `json:"hex"`
	} `json:"scriptPubKey"`
}

// errFundingGone is a funding output the chain does not hold unspent.
var errFundingGone = errors.New("no such unspent output (spent, unconfirmed or never made)")

// fundingOutput returns a confirmed unspent output. Spends in the mempool are ignored
// (include_mempool false): a rerun while an earlier run's transaction waits to be mined
// rebuilds the same transaction from it.
func fundingOutput(ctx context.Context, c *node.Client, op wire.OutPoint) (registry.Funding, error) {
	var out *txOut
	if err := c.Call(ctx, "gettxout", []any{op.Hash.String(), op.Index, false}, &out); err != nil {
		return registry.Funding{}, fmt.Errorf("gettxout %s: %w", op, err)
	}
	if out == nil {
		return registry.Funding{}, fmt.Errorf("gettxout %s: %w", op, errFundingGone)
	}
	script, err := hex.DecodeString(out.ScriptPubKey.Hex)
	if err != nil || out.Value <= 0 || out.Value > 21e6 {
		return registry.Funding{}, fmt.Errorf("gettxout %s: malformed reply", op)
	}
	return registry.Funding{OutPoint: op, Value: int64(math.Round(out.Value * 1e8)), PkScript: script}, nil
}

// anchorRun is what one anchor run needs, from regAnchor's flags.
type anchorRun struct {
	rf         regFlags
	node       *node.Client
	report     string
	coinbase   bool
	poolData   string
	keyPath    string
	utxo       string
	fee        int64
	wait, poll time.Duration

	key *btcec.PrivateKey // from keyPath, by fundingFlags
	op  wire.OutPoint     // from utxo, by fundingFlags
}

// fundingFlags reads -btc-key and -utxo, which a transaction anchor needs, before any
// node is asked anything: a misread flag must not send a transaction.
func (o *anchorRun) fundingFlags() error {
	if err := required("btc-key", o.keyPath, "utxo", o.utxo); err != nil {
		return err
	}
	op, err := parseOutPoint(o.utxo)
	if err != nil {
		return err
	}
	key, err := loadBTCKey(o.keyPath)
	if err != nil {
		return err
	}
	o.op, o.key = op, key
	return nil
}

func regAnchor(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry anchor", env)
	var o anchorRun
	o.rf.add(fs, env)
	nodeURL := fs.String("node", "", "node RPC URL http://USER:PASS@HOST:PORT to broadcast to and watch")
	fs.StringVar(&o.keyPath, "btc-key", "", "file holding the secp256k1 private key (64 hex digits) of the funding output")
	fs.StringVar(&o.utxo, "utxo", "", "funding output TXID:VOUT, a confirmed P2WPKH output of -btc-key; its change is the next anchor's funding")
	fs.Int64Var(&o.fee, "fee", 1000, "fee in satoshis")
	fs.BoolVar(&o.coinbase, "coinbase", false, "anchor in the coinbase of the operator's own pool instead of a transaction: the pool adds the commitment to its blocks until one carrying it is found (no key, no funding, no fee)")
	fs.StringVar(&o.poolData, "pool-data", "", "with -coinbase: the running pool's data directory, where the commitment file "+pool.CommitmentFileName+" goes")
	fs.StringVar(&o.report, "report", "", "report file (JSON) to attach the anchor to")
	fs.DurationVar(&o.wait, "wait", 2*time.Hour, "how long to wait for the transaction to be mined, or the pool's block to be found")
	fs.DurationVar(&o.poll, "poll", 5*time.Second, "how often to look for new blocks")
	every := fs.Duration("every", 0, "keep running: anchor the log's head again every DURATION when it has new entries (0: once)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required("node", *nodeURL); err != nil {
		return err
	}
	if o.poll <= 0 || o.wait <= 0 || *every < 0 {
		return fmt.Errorf("%w: -poll and -wait must be positive, -every not negative", ErrUsage)
	}
	if o.coinbase {
		if err := required("pool-data", o.poolData); err != nil {
			return err
		}
		if fi, err := os.Stat(o.poolData); err != nil || !fi.IsDir() {
			return fmt.Errorf("%w: -pool-data %s is not a directory", ErrUsage, o.poolData)
		}
		if o.utxo != "" || o.keyPath != "" {
			return fmt.Errorf("%w: -coinbase takes no -utxo or -btc-key", ErrUsage)
		}
	}
	c, err := node.NewClient(*nodeURL)
	if err != nil {
		return fmt.Errorf("%w: -node: %v", ErrUsage, err)
	}
	defer c.Close()
	o.node = c
	if *every == 0 {
		_, err := o.once(ctx, env)
		return err
	}
	// On a schedule: a failed round (nothing mined in -wait, a node away) is reported
	// and the next one tries again; only a stop ends the run.
	for {
		a, err := o.once(ctx, env)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			fmt.Fprintf(env.Stderr, "registry anchor: %v (next try in %s)\n", err, *every)
		case !a.Coinbase:
			// The next transaction spends this one's change.
			o.utxo = a.Txid + ":1"
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*every):
		}
	}
}

// once anchors the log's head, waits for the block that carries it, records it and
// attaches it to the report; a head that is an anchor already has nothing new to
// anchor and is only attached.
func (o *anchorRun) once(ctx context.Context, env Env) (registry.Anchor, error) {
	r, err := o.rf.open(env)
	if err != nil {
		return registry.Anchor{}, err
	}
	if _, _, anchored := r.Head(); anchored {
		st := r.State()
		a := st.Anchors[len(st.Anchors)-1]
		fmt.Fprintf(env.Stdout, "head already anchored: entry %d in block %d %s, %s %s:%d\n", a.HeadSeq, a.Height, a.Block, anchorWhere(a), a.Txid, a.Vout)
		return a, o.attach(env, a)
	}
	if !o.coinbase {
		if err := o.fundingFlags(); err != nil {
			return registry.Anchor{}, err
		}
	}
	seq, head, _ := r.Head()
	ctx, cancel := context.WithTimeout(ctx, o.wait)
	defer cancel()
	start, err := tipHeight(ctx, o.node)
	if err != nil {
		return registry.Anchor{}, err
	}
	var a registry.Anchor
	if o.coinbase {
		a, err = o.inCoinbase(ctx, env, seq, head, start)
	} else {
		a, err = o.inTransaction(ctx, env, seq, head, start)
	}
	if err != nil {
		return registry.Anchor{}, err
	}
	// Read the log again: another command may have appended to it while this one
	// waited, and an anchor entry must follow the entry it anchors.
	if r, err = o.rf.open(env); err != nil {
		return registry.Anchor{}, err
	}
	if s, h, _ := r.Head(); s != seq || h != head {
		return registry.Anchor{}, fmt.Errorf("registry anchor: the log moved on to entry %d while entry %d was being anchored (block %d): not recorded; the next run anchors the new head", s, seq, a.Height)
	}
	e, err := r.RecordAnchor(a)
	if err != nil {
		return registry.Anchor{}, err
	}
	fmt.Fprintf(env.Stdout, "anchored entry %d in block %d %s, %s %s:%d; recorded as entry %d\n",
		a.HeadSeq, a.Height, a.Block, anchorWhere(a), a.Txid, a.Vout, e.Seq)
	if o.coinbase {
		o.dropCommitment(env, seq, head)
	} else {
		fmt.Fprintf(env.Stdout, "next funding %s:1\n", a.Txid)
	}
	return a, o.attach(env, a)
}

func anchorWhere(a registry.Anchor) string {
	if a.Coinbase {
		return "coinbase"
	}
	return "tx"
}

func (o *anchorRun) attach(env Env, a registry.Anchor) error {
	if o.report == "" {
		return nil
	}
	if err := registry.AttachAnchor(o.report, a); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "attached to %s\n", o.report)
	return nil
}

// inTransaction sends a transaction committing to entry seq and waits for it to be
// mined, or finds it mined by an earlier run.
func (o *anchorRun) inTransaction(ctx context.Context, env Env, seq uint64, head string, start int64) (registry.Anchor, error) {
	op, key := o.op, o.key
	c := o.node
	f, err := fundingOutput(ctx, c, op)
	if errors.Is(err, errFundingGone) {
		// An earlier run's transaction may have spent it and been mined before that run
		// recorded it: look for it in the last blocks.
		a, ok, ferr := findAnchorSpend(ctx, c, op, head, seq, max(start-anchorLookback, 0), start)
		var stale *staleSpend
		switch {
		case errors.As(ferr, &stale):
			// Anchored an entry the log has moved past: go on from its change.
			op = wire.OutPoint{Hash: stale.spender, Index: 1}
			o.utxo = op.String()
			fmt.Fprintf(env.Stdout, "%v, never recorded: funding from its change %s\n", stale, op)
			f, err = fundingOutput(ctx, c, op)
		case ferr != nil:
			return registry.Anchor{}, ferr
		case ok:
			return a, nil
		}
	}
	if err != nil {
		return registry.Anchor{}, err
	}
	tx, err := registry.BuildAnchorTx(f, key, head, seq, o.fee)
	if err != nil {
		return registry.Anchor{}, err
	}
	var raw bytes.Buffer
	if err := tx.Serialize(&raw); err != nil {
		return registry.Anchor{}, err
	}
	txid := tx.TxHash()
	var got string
	err = c.Call(ctx, "sendrawtransaction", []any{hex.EncodeToString(raw.Bytes())}, &got)
	var rpcErr *node.RPCError
	switch {
	case err == nil:
	case errors.As(err, &rpcErr) && strings.Contains(strings.ToLower(rpcErr.Message), "already"):
		// Sent by an earlier run: the same funding and head give the same transaction.
	default:
		return registry.Anchor{}, fmt.Errorf("sendrawtransaction: %w", err)
	}
	fmt.Fprintf(env.Stdout, "sent %s (%d bytes, %d vbytes, fee %d sat) committing to entry %d %s\n",
		txid, tx.SerializeSize(), (tx.SerializeSizeStripped()*3+tx.SerializeSize()+3)/4, o.fee, seq, head)
	a, err := o.watch(ctx, max(start-anchorLookback, 0), func(blk *wire.MsgBlock, h int64) (registry.Anchor, bool) {
		return registry.FindAnchor(blk, h, txid)
	})
	if err != nil {
		return registry.Anchor{}, fmt.Errorf("registry anchor: transaction %s not mined within %s (rerun to keep waiting): %w", txid, o.wait, err)
	}
	return a, nil
}

// coinbasePending is the coinbase anchor a run asked the pool for, kept beside the log
// so that a rerun looks for its block from where the first run began.
type coinbasePending struct {
	HeadSeq  uint64 `json:"head_seq"`
	HeadHash string `json:"head_hash"`
	Since    int64  `json:"since_height"`
}

// coinbasePendingFile is coinbasePending's file in the registry's data directory.
const coinbasePendingFile = "anchor-pending.json"

// inCoinbase hands the commitment to entry seq to the running pool through its
// commitment file and waits for a block whose coinbase carries it.
func (o *anchorRun) inCoinbase(ctx context.Context, env Env, seq uint64, head string, start int64) (registry.Anchor, error) {
	script, err := registry.AnchorScript(head, seq)
	if err != nil {
		return registry.Anchor{}, err
	}
	pendingPath := filepath.Join(o.rf.data, coinbasePendingFile)
	p := coinbasePending{HeadSeq: seq, HeadHash: head, Since: start}
	if b, err := os.ReadFile(pendingPath); err == nil {
		var old coinbasePending
		if json.Unmarshal(b, &old) == nil && old.HeadSeq == seq && old.HeadHash == head && old.Since <= start {
			p.Since = old.Since
		}
	}
	pb, _ := json.Marshal(p)
	if err := os.WriteFile(pendingPath, append(pb, '\n'), 0o644); err != nil {
		return registry.Anchor{}, err
	}
	commit := filepath.Join(o.poolData, pool.CommitmentFileName)
	if err := pool.WriteCommitment(commit, script); err != nil {
		return registry.Anchor{}, err
	}
	fmt.Fprintf(env.Stdout, "wrote %s: the pool's next templates commit to entry %d %s in their coinbase (%d bytes); looking for the block from height %d\n",
		commit, seq, head, 8+1+len(script), p.Since)
	a, err := o.watch(ctx, p.Since, func(blk *wire.MsgBlock, h int64) (registry.Anchor, bool) {
		return registry.FindCoinbaseAnchor(blk, h, head, seq)
	})
	if err != nil {
		return registry.Anchor{}, fmt.Errorf("registry anchor: no block carrying entry %d found within %s; the pool keeps adding it (rerun to keep waiting): %w", seq, o.wait, err)
	}
	return a, nil
}

// dropCommitment removes the commitment file once its anchor is recorded, unless it
// already holds another one, and the pending record.
func (o *anchorRun) dropCommitment(env Env, seq uint64, head string) {
	os.Remove(filepath.Join(o.rf.data, coinbasePendingFile))
	commit := filepath.Join(o.poolData, pool.CommitmentFileName)
	script, _ := registry.AnchorScript(head, seq)
	if got, err := pool.ReadCommitment(commit); err == nil && bytes.Equal(got, script) {
		if err := os.Remove(commit); err != nil {
			fmt.Fprintf(env.Stderr, "registry anchor: %v\n", err)
			return
		}
		fmt.Fprintf(env.Stdout, "removed %s\n", commit)
	}
}

// watch looks at every block from height from up the best chain, as it grows, until
// find finds the anchor or ctx ends.
func (o *anchorRun) watch(ctx context.Context, from int64, find func(*wire.MsgBlock, int64) (registry.Anchor, bool)) (registry.Anchor, error) {
	c := o.node
	next := from
	for {
		tip, err := tipHeight(ctx, c)
		if err != nil {
			return registry.Anchor{}, err
		}
		for ; next <= tip; next++ {
			h, err := c.BlockHash(ctx, next)
			if err != nil {
				return registry.Anchor{}, err
			}
			blk, err := fetchBlock(ctx, c, h)
			if err != nil {
				return registry.Anchor{}, err
			}
			if a, ok := find(blk, next); ok {
				return a, nil
			}
		}
		select {
		case <-ctx.Done():
			return registry.Anchor{}, ctx.Err()
		case <-time.After(o.poll):
		}
	}
}

// staleSpend is a funding output spent by an anchor of an earlier head: one a run sent
// but did not record, because the log moved on while it waited. Its change funds the
// next anchor.
type staleSpend struct {
	op      wire.OutPoint
	spender chainhash.Hash
	seq     uint64
	height  int64
}

func (e *staleSpend) Error() string {
	return fmt.Sprintf("funding output %s was spent by %s in block %d, an anchor of entry %d", e.op, e.spender, e.height, e.seq)
}

// findAnchorSpend looks in blocks from..to for a transaction spending op whose
// commitment is to entry seq with hash head. A spend anchoring another entry is a
// *staleSpend.
func findAnchorSpend(ctx context.Context, c *node.Client, op wire.OutPoint, head string, seq uint64, from, to int64) (registry.Anchor, bool, error) {
	for h := from; h <= to; h++ {
		bh, err := c.BlockHash(ctx, h)
		if err != nil {
			return registry.Anchor{}, false, err
		}
		blk, err := fetchBlock(ctx, c, bh)
		if err != nil {
			return registry.Anchor{}, false, err
		}
		for _, tx := range blk.Transactions {
			if len(tx.TxIn) == 0 || tx.TxIn[0].PreviousOutPoint != op {
				continue
			}
			a, ok := registry.FindAnchor(blk, h, tx.TxHash())
			if ok && a.HeadSeq == seq && a.HeadHash == head {
				return a, true, nil
			}
			if ok && a.Vout == 0 && len(tx.TxOut) == 2 {
				return registry.Anchor{}, false, &staleSpend{op: op, spender: tx.TxHash(), seq: a.HeadSeq, height: h}
			}
			return registry.Anchor{}, false, fmt.Errorf("funding output %s was spent by %s in block %d, which does not anchor entry %d", op, tx.TxHash(), h, seq)
		}
	}
	return registry.Anchor{}, false, nil
}

func tipHeight(ctx context.Context, c *node.Client) (int64, error) {
	best, err := c.BestBlockHash(ctx)
	if err != nil {
		return 0, err
	}
	hdr, err := c.BlockHeaderVerbose(ctx, best)
	if err != nil {
		return 0, err
	}
	return hdr.Height, nil
}

// anchorChain is where verify checks anchors: a node, or blocks saved to a file.
type anchorChain interface {
	registry.Chain
	// when says when the block was mined and how deep it is, for the auditor to judge.
	when(ctx context.Context, h chainhash.Hash) (string, error)
}

func (n nodeChain) when(ctx context.Context, h chainhash.Hash) (string, error) {
	hdr, err := n.c.BlockHeaderVerbose(ctx, h)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("of %s, %d confirmations", time.Unix(hdr.Time, 0).UTC().Format(time.RFC3339), hdr.Confirmations), nil
}

// errNotInFile is a height or block a chain file does not hold.
var errNotInFile = errors.New("not in the chain file")

// MaxChainFileBytes bounds a chain file: a few full blocks.
const MaxChainFileBytes = 64 << 20

// fileChain is a best chain as an auditor saved it from a block explorer or a node it
// trusts: JSON {"blocks":[{"height":N,"hex":"RAW BLOCK"}]}, each block's raw bytes in hex
// (a block explorer's /block/HASH/raw, hex-encoded). The file is the auditor's word
// that these blocks are on the best chain at those heights; the transactions and the
// commitment in them are checked as against a node.
type fileChain struct {
	path   string
	blocks map[int64]*wire.MsgBlock
}

func loadChainFile(path string) (*fileChain, error) {
	b, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxChainFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxChainFileBytes)
	}
	var j struct {
		Blocks []struct {
			Height int64  `json:"height"`
			Hex    string `json:"hex"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	fc := &fileChain{path: path, blocks: map[int64]*wire.MsgBlock{}}
	for i, e := range j.Blocks {
		raw, err := hex.DecodeString(strings.TrimSpace(e.Hex))
		if err != nil {
			return nil, fmt.Errorf("%s: block %d: %w", path, i, err)
		}
		var blk wire.MsgBlock
		if err := blk.Deserialize(bytes.NewReader(raw)); err != nil {
			return nil, fmt.Errorf("%s: block %d: %w", path, i, err)
		}
		if _, dup := fc.blocks[e.Height]; dup || e.Height < 0 {
			return nil, fmt.Errorf("%s: height %d given twice or negative", path, e.Height)
		}
		fc.blocks[e.Height] = &blk
	}
	return fc, nil
}

func (f *fileChain) BlockHash(ctx context.Context, height int64) (chainhash.Hash, error) {
	if b := f.blocks[height]; b != nil {
		return b.BlockHash(), nil
	}
	return chainhash.Hash{}, fmt.Errorf("height %d: %w", height, errNotInFile)
}

func (f *fileChain) Block(ctx context.Context, h chainhash.Hash) (*wire.MsgBlock, error) {
	for _, b := range f.blocks {
		if b.BlockHash() == h {
			return b, nil
		}
	}
	return nil, fmt.Errorf("block %s: %w", h, errNotInFile)
}

func (f *fileChain) when(ctx context.Context, h chainhash.Hash) (string, error) {
	b, err := f.Block(ctx, h)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("of %s (from %s)", b.Header.Timestamp.UTC().Format(time.RFC3339), f.path), nil
}

// openAnchorChain returns the chain verify checks anchors on: -node or -chain.
func openAnchorChain(nodeURL, chainFile string) (anchorChain, func(), error) {
	if chainFile != "" {
		fc, err := loadChainFile(chainFile)
		return fc, func() {}, err
	}
	c, err := node.NewClient(nodeURL)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: -node: %v", ErrUsage, err)
	}
	return nodeChain{c}, c.Close, nil
}

// verifyAnchors checks the report's anchor (or, with only a log, every anchor in the
// log) on the chain.
func verifyAnchors(ctx context.Context, env Env, chain anchorChain, report []byte, log *registry.Log) error {
	printAnchor := func(a registry.Anchor) error {
		bh, _ := chainhash.NewHashFromStr(a.Block)
		when, err := chain.when(ctx, *bh)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "anchor ok: entries 1..%d (head %s) in block %d %s %s, %s %s:%d\n",
			a.HeadSeq, a.HeadHash, a.Height, a.Block, when, anchorWhere(a), a.Txid, a.Vout)
		return nil
	}
	if report != nil {
		chk, err := registry.CheckReportAnchorIn(ctx, chain, report, log)
		if err != nil {
			return err
		}
		if err := printAnchor(chk.Anchor); err != nil {
			return err
		}
		return checkFoundBlocks(ctx, env, chain, report)
	}
	if log == nil {
		return fmt.Errorf("%w: -node or -chain needs -log or -report", ErrUsage)
	}
	as, err := registry.CheckLogAnchors(ctx, chain, log)
	if err != nil {
		return err
	}
	if len(as) == 0 {
		return errors.New("registry verify: the log has no anchor entry")
	}
	for _, a := range as {
		if err := printAnchor(a); err != nil {
			return err
		}
	}
	return nil
}

// checkFoundBlocks says how many of the blocks the report's pool evidence names are on
// the best chain. One off it is not an error: a pool's block can lose a race.
func checkFoundBlocks(ctx context.Context, env Env, chain anchorChain, report []byte) error {
	var f registry.ReportFile
	if err := json.Unmarshal(report, &f); err != nil {
		return err
	}
	var rep registry.Report
	if err := json.Unmarshal(f.Report, &rep); err != nil {
		return err
	}
	total, onChain := 0, 0
	for _, g := range rep.Groups {
		for _, sc := range g.ShareCommitments {
			for _, b := range sc.Blocks {
				total++
				h, err := chain.BlockHash(ctx, b.Height)
				var rpcErr *node.RPCError
				switch {
				case errors.As(err, &rpcErr) || errors.Is(err, errNotInFile):
				case err != nil:
					return err
				case h.String() == b.Hash:
					onChain++
					continue
				}
				fmt.Fprintf(env.Stdout, "block %d %s of group %s is not on the best chain\n", b.Height, b.Hash, g.Group)
			}
		}
	}
	fmt.Fprintf(env.Stdout, "blocks found by the site's groups: %d, on the best chain: %d\n", total, onChain)
	return nil
}

// checkSampledChain says how many sampled shares build on the chain's block at the
// height before theirs: a share's header names the block it was mined on, so one
// that does was hashed after that block was found. One that does not is not an error:
// a share on a block that lost a race, or a chain file without that block.
func checkSampledChain(ctx context.Context, env Env, chain anchorChain, sampled []registry.SampledHeader) error {
	if len(sampled) == 0 {
		return nil
	}
	on := 0
	for _, s := range sampled {
		h, err := chain.BlockHash(ctx, s.Height-1)
		var rpcErr *node.RPCError
		switch {
		case errors.As(err, &rpcErr) || errors.Is(err, errNotInFile):
		case err != nil:
			return err
		case h == s.Header.PrevBlock:
			on++
		}
	}
	fmt.Fprintf(env.Stdout, "sampled shares building on the best chain: %d of %d\n", on, len(sampled))
	return nil
}
