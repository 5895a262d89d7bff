package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid/node"
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

func regAnchor(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry anchor", env)
	var rf regFlags
	rf.add(fs, env)
	nodeURL := fs.String("node", "", "node RPC URL http://USER:PASS@HOST:PORT to broadcast to and watch")
	keyPath := fs.String("btc-key", "", "file holding the secp256k1 private key (64 hex digits) of the funding output")
	utxo := fs.String("utxo", "", "funding output TXID:VOUT, a confirmed P2WPKH output of -btc-key; its change is the next anchor's funding")
	fee := fs.Int64("fee", 1000, "fee in satoshis")
	report := fs.String("report", "", "report file (JSON) to attach the anchor to")
	wait := fs.Duration("wait", 2*time.Hour, "how long to wait for the transaction to be mined")
	poll := fs.Duration("poll", 5*time.Second, "how often to look for new blocks")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required("node", *nodeURL); err != nil {
		return err
	}
	if *poll <= 0 || *wait <= 0 {
		return fmt.Errorf("%w: -poll and -wait must be positive", ErrUsage)
	}
	r, err := rf.open(env)
	if err != nil {
		return err
	}
	attach := func(a registry.Anchor) error {
		if *report == "" {
			return nil
		}
		if err := registry.AttachAnchor(*report, a); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "attached to %s\n", *report)
		return nil
	}
	// Idempotent: a head that is an anchor has nothing new to anchor.
	if _, _, anchored := r.Head(); anchored {
		st := r.State()
		a := st.Anchors[len(st.Anchors)-1]
		fmt.Fprintf(env.Stdout, "head already anchored: entry %d in block %d %s, tx %s:%d\n", a.HeadSeq, a.Height, a.Block, a.Txid, a.Vout)
		return attach(a)
	}
	if err := required("btc-key", *keyPath, "utxo", *utxo); err != nil {
		return err
	}
	op, err := parseOutPoint(*utxo)
	if err != nil {
		return err
	}
	key, err := loadBTCKey(*keyPath)
	if err != nil {
		return err
	}
	c, err := node.NewClient(*nodeURL)
	if err != nil {
		return fmt.Errorf("%w: -node: %v", ErrUsage, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()

	seq, head, _ := r.Head()
	record := func(a registry.Anchor) error {
		e, err := r.RecordAnchor(a)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "anchored entry %d in block %d %s, tx %s:%d; recorded as entry %d\nnext funding %s:1\n",
			a.HeadSeq, a.Height, a.Block, a.Txid, a.Vout, e.Seq, a.Txid)
		return attach(a)
	}
	start, err := tipHeight(ctx, c)
	if err != nil {
		return err
	}
	f, err := fundingOutput(ctx, c, op)
	if errors.Is(err, errFundingGone) {
		// An earlier run's transaction may have spent it and been mined before that run
		// recorded it: look for it in the last blocks.
		a, ok, ferr := findAnchorSpend(ctx, c, op, head, seq, max(start-anchorLookback, 0), start)
		if ferr != nil {
			return ferr
		}
		if ok {
			return record(a)
		}
	}
	if err != nil {
		return err
	}
	tx, err := registry.BuildAnchorTx(f, key, head, seq, *fee)
	if err != nil {
		return err
	}
	var raw bytes.Buffer
	if err := tx.Serialize(&raw); err != nil {
		return err
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
		return fmt.Errorf("sendrawtransaction: %w", err)
	}
	fmt.Fprintf(env.Stdout, "sent %s (%d bytes, %d vbytes, fee %d sat) committing to entry %d %s\n",
		txid, tx.SerializeSize(), (tx.SerializeSizeStripped()*3+tx.SerializeSize()+3)/4, *fee, seq, head)

	next := max(start-anchorLookback, 0)
	for {
		tip, err := tipHeight(ctx, c)
		if err != nil {
			return err
		}
		for ; next <= tip; next++ {
			h, err := c.BlockHash(ctx, next)
			if err != nil {
				return err
			}
			blk, err := fetchBlock(ctx, c, h)
			if err != nil {
				return err
			}
			if a, ok := registry.FindAnchor(blk, next, txid); ok {
				return record(a)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("registry anchor: transaction %s not mined within %s (rerun to keep waiting)", txid, *wait)
		case <-time.After(*poll):
		}
	}
}

// findAnchorSpend looks in blocks from..to for a transaction spending op whose
// commitment is to entry seq with hash head.
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
		fmt.Fprintf(env.Stdout, "anchor ok: entries 1..%d (head %s) in block %d %s %s, tx %s:%d\n",
			a.HeadSeq, a.HeadHash, a.Height, a.Block, when, a.Txid, a.Vout)
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
