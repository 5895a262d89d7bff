package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/txscript/v2"
	"github.com/btcsuite/btcd/wire/v2"

	"github.com/hashgrid/hashgrid"
)

// memChain is a best chain held in memory: blocks[h] is the block at height h.
type memChain struct{ blocks []*wire.MsgBlock }

func (c *memChain) BlockHash(ctx context.Context, height int64) (chainhash.Hash, error) {
	if height < 0 || height >= int64(len(c.blocks)) {
		return chainhash.Hash{}, fmt.Errorf("no block at height %d", height)
	}
	return c.blocks[height].BlockHash(), nil
}

func (c *memChain) Block(ctx context.Context, h chainhash.Hash) (*wire.MsgBlock, error) {
	for _, b := range c.blocks {
		if b.BlockHash() == h {
			return b, nil
		}
	}
	return nil, fmt.Errorf("block %s not found", h)
}

// mine appends a block holding txs after a coinbase and returns its height.
func (c *memChain) mine(txs ...*wire.MsgTx) int64 {
	var prev chainhash.Hash
	if n := len(c.blocks); n > 0 {
		prev = c.blocks[n-1].BlockHash()
	}
	cb := wire.NewMsgTx(1)
	cb.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{}, wire.MaxPrevOutIndex), []byte{byte(len(c.blocks)), 0x51}, nil))
	cb.AddTxOut(wire.NewTxOut(50e8, []byte{txscript.OP_TRUE}))
	blk := wire.NewMsgBlock(wire.NewBlockHeader(4, &prev, &chainhash.Hash{}, 0x207fffff, uint32(len(c.blocks))))
	blk.AddTransaction(cb)
	for _, tx := range txs {
		blk.AddTransaction(tx)
	}
	c.blocks = append(c.blocks, blk)
	return int64(len(c.blocks) - 1)
}

func anchorKey() *btcec.PrivateKey {
	k, _ := btcec.PrivKeyFromBytes(bytes.Repeat([]byte{0x42}, 32))
	return k
}

// anchorHead anchors r's head on c, spending a made-up P2WPKH output, and records it.
func anchorHead(tb testing.TB, c *memChain, r *Registry) Anchor {
	tb.Helper()
	seq, head, _ := r.Head()
	key := anchorKey()
	f := Funding{OutPoint: wire.OutPoint{Hash: chainhash.Hash{1, 2, 3}, Index: uint32(len(c.blocks))}, Value: 10_000, PkScript: P2WPKHScript(key.PubKey())}
	tx, err := BuildAnchorTx(f, key, head, seq, 500)
	if err != nil {
		tb.Fatal(err)
	}
	// The signature must hold under the script rules a node applies.
	vm, err := txscript.NewEngine(f.PkScript, tx, 0, txscript.StandardVerifyFlags, nil,
		txscript.NewTxSigHashes(tx, txscript.NewCannedPrevOutputFetcher(f.PkScript, f.Value)), f.Value,
		txscript.NewCannedPrevOutputFetcher(f.PkScript, f.Value))
	if err != nil {
		tb.Fatal(err)
	}
	if err := vm.Execute(); err != nil {
		tb.Fatalf("anchor transaction does not verify: %v", err)
	}
	height := c.mine(tx)
	a, ok := FindAnchor(c.blocks[height], height, tx.TxHash())
	if !ok {
		tb.Fatal("mined anchor not found in its block")
	}
	if a.HeadSeq != seq || a.HeadHash != head || a.Vout != 0 {
		tb.Fatalf("anchor %+v, want entry %d %s at output 0", a, seq, head)
	}
	if _, err := r.RecordAnchor(a); err != nil {
		tb.Fatal(err)
	}
	return a
}

func TestAnchorScriptRoundTrip(t *testing.T) {
	head := strings.Repeat("ab", 32)
	s, err := AnchorScript(head, 258)
	if err != nil {
		t.Fatal(err)
	}
	want := "6a2d" + fmt.Sprintf("%x", AnchorTag) + head + "0000000000000102"
	if got := fmt.Sprintf("%x", s); got != want {
		t.Errorf("script: got %s, want %s", got, want)
	}
	if len(s) != AnchorScriptSize || !txscript.IsNullData(s) {
		t.Errorf("script of %d bytes, null data %v; want %d bytes of standard OP_RETURN", len(s), txscript.IsNullData(s), AnchorScriptSize)
	}
	h, n, ok := ParseAnchorScript(s)
	if !ok || h != head || n != 258 {
		t.Errorf("parse: got %s %d %v", h, n, ok)
	}
	for i := range s {
		if _, _, ok := ParseAnchorScript(s[:i]); ok {
			t.Errorf("parsed a script cut to %d bytes", i)
		}
		bad := bytes.Clone(s)
		bad[i] ^= 1
		if h2, n2, ok := ParseAnchorScript(bad); ok && h2 == head && n2 == 258 {
			t.Errorf("byte %d changed, same commitment parsed", i)
		}
	}
	if _, err := AnchorScript("abcd", 1); err == nil {
		t.Error("short head hash accepted")
	}
	if _, err := AnchorScript(head, 0); err == nil {
		t.Error("empty log accepted")
	}
}

func TestBuildAnchorTxRefuses(t *testing.T) {
	key := anchorKey()
	head := strings.Repeat("cd", 32)
	f := Funding{Value: 10_000, PkScript: P2WPKHScript(key.PubKey())}
	if _, err := BuildAnchorTx(f, key, head, 3, 9_500); err == nil {
		t.Error("change below the dust bound accepted")
	}
	other, _ := btcec.PrivKeyFromBytes(bytes.Repeat([]byte{7}, 32))
	f.PkScript = P2WPKHScript(other.PubKey())
	if _, err := BuildAnchorTx(f, key, head, 3, 500); err == nil {
		t.Error("funding paying another key accepted")
	}
}

// anchoredReport builds the sample site, a report, one more entry after it, and an
// anchor of that entry, attached to the saved report.
func anchoredReport(tb testing.TB, c *memChain) (r *Registry, cfg Config, reportFile []byte, log []byte, a Anchor) {
	tb.Helper()
	r, cfg = newRegistry(tb)
	buildSite(tb, r)
	if _, err := r.ImportPool(context.Background(), &workSource{workers: poolWorkers()}, "s1", t0, t0.Add(time.Hour)); err != nil {
		tb.Fatal(err)
	}
	f, _, page, err := r.Report("s1", t0, t0.Add(time.Hour))
	if err != nil {
		tb.Fatal(err)
	}
	// Evidence keeps arriving after a report; the anchor covers it too.
	if err := r.AddRevenue(RevenueRecord{Site: "s1", Group: "miners", From: t0, To: t0.Add(time.Hour), Sat: 1200, Source: "payout 1"}); err != nil {
		tb.Fatal(err)
	}
	c.mine()
	a = anchorHead(tb, c, r)
	c.mine()
	jp, _, err := SaveReport(tb.TempDir(), f, page)
	if err != nil {
		tb.Fatal(err)
	}
	if err := AttachAnchor(jp, a); err != nil {
		tb.Fatal(err)
	}
	if reportFile, err = os.ReadFile(jp); err != nil {
		tb.Fatal(err)
	}
	if log, err = os.ReadFile(r.Path()); err != nil {
		tb.Fatal(err)
	}
	return r, cfg, reportFile, log, a
}

// verifyAnchored is what 'hashgrid registry verify -report -log -node' does: read the
// log once, check the report against it, hash its sampled shares again, and check the
// anchor against the log and the chain.
func verifyAnchored(c Chain, file, log []byte) error {
	l, err := ReadLog(bytes.NewReader(log), pub())
	if err != nil {
		return err
	}
	if _, err := VerifyReportIn(file, pub(), nil, l); err != nil {
		return err
	}
	if _, err := CheckSamples(file); err != nil {
		return err
	}
	_, err = CheckReportAnchorIn(context.Background(), c, file, l)
	return err
}

func wantAnchorError(t *testing.T, what string, err error, problem string) {
	t.Helper()
	var ae *AnchorError
	if !errors.As(err, &ae) || !strings.Contains(ae.Problem, problem) {
		t.Errorf("%s: got %v, want an anchor error ...%s...", what, err, problem)
	}
}

func TestReportAnchor(t *testing.T) {
	c := &memChain{}
	r, _, file, log, a := anchoredReport(t, c)
	if err := verifyAnchored(c, file, log); err != nil {
		t.Fatalf("anchored report: %v", err)
	}
	st := r.State()
	if len(st.Anchors) != 1 || st.Anchors[0] != a || st.HeadSeq != a.HeadSeq+1 {
		t.Errorf("state: anchors %+v, head %d; want the anchor of entry %d recorded as entry %d", st.Anchors, st.HeadSeq, a.HeadSeq, a.HeadSeq+1)
	}
	if _, _, anchored := r.Head(); !anchored {
		t.Error("head after an anchor entry is not reported as anchored")
	}
	l, err := ReadLog(bytes.NewReader(log), pub())
	if err != nil {
		t.Fatal(err)
	}
	got, err := CheckLogAnchors(context.Background(), c, l)
	if err != nil || len(got) != 1 || got[0] != a {
		t.Errorf("log anchors: got %+v, %v; want %+v", got, err, a)
	}
	// The log replays with its anchor entry.
	if _, err := Open(Config{Dir: filepath.Dir(r.Path()), Key: testKey(1)}); err != nil {
		t.Errorf("reopen an anchored log: %v", err)
	}

	var f ReportFile
	if err := json.Unmarshal(file, &f); err != nil {
		t.Fatal(err)
	}
	// A report with no anchor.
	noAnchor := f
	noAnchor.Anchor = nil
	nb, _ := json.Marshal(noAnchor)
	if _, err := CheckReportAnchor(context.Background(), c, nb, log); err == nil {
		t.Error("a report without an anchor passed")
	}
	// An anchor after the report, without the log that links them.
	if _, err := CheckReportAnchor(context.Background(), c, file, nil); err == nil {
		t.Error("an anchor of a later entry passed without the log")
	}

	// The chain: a block off the best chain, a wrong transaction, a wrong output.
	for _, tc := range []struct {
		name, problem string
		edit          func(*Anchor)
	}{
		{"block not at that height", "not on the best chain", func(a *Anchor) { a.Height++ }},
		{"another transaction", "does not hold transaction", func(a *Anchor) { a.Txid = strings.Repeat("0", 64) }},
		{"another output", "not a registry commitment", func(a *Anchor) { a.Vout = 1 }},
		{"another count", "commits to entry", func(a *Anchor) { a.HeadSeq--; a.HeadHash = st.Reports[0].Body.LogHeadHash }},
	} {
		b := a
		tc.edit(&b)
		wantAnchorError(t, tc.name, CheckAnchor(context.Background(), c, b), tc.problem)
	}
}

// TestAnchorCatchesRewrites is issue 18's list: each change the operator could make
// with its own key passes the offline checks and is caught against the chain.
func TestAnchorCatchesRewrites(t *testing.T) {
	c := &memChain{}
	_, cfg, file, log, a := anchoredReport(t, c)
	var f ReportFile
	if err := json.Unmarshal(file, &f); err != nil {
		t.Fatal(err)
	}
	ls := lines(log)

	t.Run("entry changed", func(t *testing.T) {
		// The pool entry's figures changed and the log re-signed and re-chained from there
		// on: offline it holds (the operator has the key); the chain does not.
		seq := int(f.Entry.Seq) - 1
		if !bytes.Contains(ls[seq-1], []byte(`"accepted":1800`)) {
			t.Fatalf("entry %d is not the pool entry: %s", seq, ls[seq-1])
		}
		forged := rechain(t, ls, seq, func(e *Entry) {
			e.Body = bytes.Replace(e.Body, []byte(`"accepted":1800`), []byte(`"accepted":1900`), 1)
		})
		if _, err := VerifyLog(bytes.NewReader(forged), pub()); err != nil {
			t.Fatalf("re-chained log does not verify offline: %v", err)
		}
		wantAnchorError(t, "entry changed", verifyAnchoredLog(c, file, forged), "log changed or regenerated")
	})

	t.Run("entries removed from the end", func(t *testing.T) {
		short := bytes.Join(ls[:a.HeadSeq-1], nil)
		if _, err := VerifyLog(bytes.NewReader(short), pub()); err != nil {
			t.Fatalf("truncated log does not verify offline: %v", err)
		}
		if _, err := VerifyReport(file, pub(), nil, short); err != nil {
			t.Fatalf("report not in the truncated log: %v", err)
		}
		wantAnchorError(t, "removed from the end", verifyAnchored(c, file, short), "entries removed from the end")
	})

	t.Run("log regenerated with the same key", func(t *testing.T) {
		forged, forgedLog := regenerate(t, cfg, 1, a)
		wantAnchorError(t, "regenerated", verifyAnchored(c, forged, forgedLog), "log changed or regenerated")
	})

	t.Run("share count inflated in the report", func(t *testing.T) {
		// The report's figures changed, its content hash and entry re-signed.
		var rep map[string]any
		if err := json.Unmarshal(f.Report, &rep); err != nil {
			t.Fatal(err)
		}
		g := rep["groups"].([]any)[0].(map[string]any)
		g["accepted_shares"] = g["accepted_shares"].(float64) * 2
		content, _ := json.Marshal(rep)
		var body reportEntryBody
		if err := json.Unmarshal(f.Entry.Body, &body); err != nil {
			t.Fatal(err)
		}
		body.ContentSHA256 = sha256Hex(content)
		forged := f
		forged.Report = content
		forged.Entry.Body, _ = json.Marshal(body)
		if err := seal(&forged.Entry, cfg.Key); err != nil {
			t.Fatal(err)
		}
		fb, _ := json.Marshal(forged)
		if _, err := VerifyReport(fb, pub(), nil, nil); err != nil {
			t.Fatalf("re-signed report does not verify offline: %v", err)
		}
		// Anchored at the report's own entry, the entry hash is what differs.
		atReport := forged
		atReport.Anchor = &Anchor{HeadSeq: f.Entry.Seq, HeadHash: f.Entry.Hash}
		ab, _ := json.Marshal(atReport)
		_, err := CheckReportAnchor(context.Background(), c, ab, nil)
		wantAnchorError(t, "inflated, anchored at the report", err, "report re-signed")
		// Regenerated with inflated pool evidence, the whole log differs.
		forgedFile, forgedLog := regenerate(t, cfg, 2, a)
		if !bytes.Contains(forgedFile, []byte(`"accepted_shares": 7100`)) {
			t.Fatalf("regenerated report does not carry the inflated count:\n%.2000s", forgedFile)
		}
		wantAnchorError(t, "inflated, log regenerated", verifyAnchored(c, forgedFile, forgedLog), "log changed or regenerated")
	})
}

// verifyAnchoredLog checks only the log part (the report is not in a forged log).
func verifyAnchoredLog(c Chain, file, log []byte) error {
	_, err := CheckReportAnchor(context.Background(), c, file, log)
	return err
}

// rechain changes entry seq with edit and re-seals it and every entry after it with the
// operator's key, as an operator rewriting its log would.
func rechain(tb testing.TB, ls [][]byte, seq int, edit func(*Entry)) []byte {
	tb.Helper()
	var out bytes.Buffer
	prev := ""
	for i, l := range ls {
		e, err := decodeEntry(bytes.TrimSpace(l))
		if err != nil {
			tb.Fatal(err)
		}
		if i+1 >= seq {
			if i+1 == seq {
				edit(&e)
			} else {
				e.Prev = prev
			}
			if err := seal(&e, testKey(1)); err != nil {
				tb.Fatal(err)
			}
		}
		prev = e.Hash
		line, _ := jsonLine(e)
		out.Write(line)
	}
	return out.Bytes()
}

// regenerate builds the whole log again with the same key, the pool's counts multiplied
// by k, reports, and attaches the real anchor to the new report.
func regenerate(tb testing.TB, cfg Config, k uint64, a Anchor) (file, log []byte) {
	tb.Helper()
	cfg.Dir = tb.TempDir()
	// A later run: every entry's time differs from the original's.
	clk := &testClock{t: t0.Add(-23 * time.Hour)}
	cfg.Now = clk.Now
	r, err := Create(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	buildSite(tb, r)
	var ws []hashgrid.Worker
	for _, w := range poolWorkers() {
		w.Accepted *= k
		ws = append(ws, w)
	}
	if _, err := r.ImportPool(context.Background(), &workSource{workers: ws}, "s1", t0, t0.Add(time.Hour)); err != nil {
		tb.Fatal(err)
	}
	f, _, page, err := r.Report("s1", t0, t0.Add(time.Hour))
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.AddRevenue(RevenueRecord{Site: "s1", Group: "miners", From: t0, To: t0.Add(time.Hour), Sat: 1200, Source: "payout 1"}); err != nil {
		tb.Fatal(err)
	}
	f.Anchor = &a
	jp, _, err := SaveReport(tb.TempDir(), f, page)
	if err != nil {
		tb.Fatal(err)
	}
	if file, err = os.ReadFile(jp); err != nil {
		tb.Fatal(err)
	}
	if log, err = os.ReadFile(r.Path()); err != nil {
		tb.Fatal(err)
	}
	if _, err := VerifyReport(file, pub(), nil, log); err != nil {
		tb.Fatalf("regenerated log and report do not verify offline: %v", err)
	}
	return file, log
}

func TestAnchorEntryMustRecordItsPredecessor(t *testing.T) {
	r, _ := newRegistry(t)
	buildSite(t, r)
	seq, head, _ := r.Head()
	a := Anchor{HeadSeq: seq - 1, HeadHash: head, Block: strings.Repeat("1", 64), Txid: strings.Repeat("2", 64), Height: 5}
	if _, err := r.RecordAnchor(a); err == nil {
		t.Error("an anchor of an older entry was recorded as the head's")
	}
	a.HeadSeq = seq
	a.Txid = "zz"
	if _, err := r.RecordAnchor(a); err == nil {
		t.Error("an anchor with a malformed txid was recorded")
	}
	a.Txid = strings.Repeat("2", 64)
	if _, err := r.RecordAnchor(a); err != nil {
		t.Fatal(err)
	}
}

// TestCoinbaseAnchor: a commitment in a block's coinbase, as the operator's pool adds
// it, is found, recorded and checked like a transaction's; the same anchor said to be
// a transaction's, or a transaction's said to be a coinbase's, does not hold.
func TestCoinbaseAnchor(t *testing.T) {
	c := &memChain{}
	c.mine()
	r, _ := newRegistry(t)
	buildSite(t, r)
	seq, head, _ := r.Head()
	script, err := AnchorScript(head, seq)
	if err != nil {
		t.Fatal(err)
	}
	h := c.mine()
	cb := c.blocks[h].Transactions[0]
	cb.AddTxOut(wire.NewTxOut(0, script))
	if _, ok := FindCoinbaseAnchor(c.blocks[h], h, head, seq+1); ok {
		t.Fatal("found an anchor of another count")
	}
	a, ok := FindCoinbaseAnchor(c.blocks[h], h, head, seq)
	if !ok || !a.Coinbase || a.Vout != 1 || a.Txid != cb.TxHash().String() || a.Height != h {
		t.Fatalf("FindCoinbaseAnchor: %+v, %v", a, ok)
	}
	if err := CheckAnchor(context.Background(), c, a); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RecordAnchor(a); err != nil {
		t.Fatal(err)
	}
	st := r.State()
	if got := st.Anchors[len(st.Anchors)-1]; got != a {
		t.Errorf("recorded %+v, want %+v", got, a)
	}
	notCB := a
	notCB.Coinbase = false
	wantAnchorError(t, "a coinbase anchor said to be a transaction's", CheckAnchor(context.Background(), c, notCB), "position 0")
	// A transaction's commitment said to be a coinbase's.
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(&wire.OutPoint{Hash: chainhash.Hash{9}}, nil, nil))
	tx.AddTxOut(wire.NewTxOut(0, script))
	h2 := c.mine(tx)
	b, ok := FindAnchor(c.blocks[h2], h2, tx.TxHash())
	if !ok {
		t.Fatal("FindAnchor: none")
	}
	b.Coinbase = true
	wantAnchorError(t, "a transaction's anchor said to be a coinbase's", CheckAnchor(context.Background(), c, b), "position 1")
}
