package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/btcsuite/btcd/txscript/v2"

	"github.com/hashgrid/hashgrid"
	"github.com/hashgrid/hashgrid/node"
	"github.com/hashgrid/hashgrid/payout"
	"github.com/hashgrid/hashgrid/pool"
)

// maxVerifyReply bounds one API reply verify reads (a page of 10,000 window shares is
// about 2 MB).
const maxVerifyReply = 32 << 20

// errNotFound is a 404 from the pool's API.
var errNotFound = errors.New("404 Not Found")

// maxVerifyPages bounds how many window pages verify fetches (10 million shares).
const maxVerifyPages = 1000

func verifyCommand() *Command {
	return &Command{
		Name:  "verify",
		Short: "recompute a miner's PPLNS credit for a block from the pool's published window, or check what a hashrate seller was paid (--seller)",
		Run:   runVerify,
	}
}

func runVerify(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("verify", env)
	block := fs.String("block", "", "block hash")
	addr := fs.String("address", "", "miner's payout address")
	apiURL := fs.String("api", "", "pool API base URL, e.g. http://pool.example:8080")
	nodeURL := fs.String("node", "", "optional node RPC URL http://USER:PASS@HOST:PORT: check the window commitment, reward and direct payment in the block's coinbase on the chain")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	seller := fs.String("seller", "", "a hashrate seller's payout address: check what it earned at the market (--market) against the pool's book, payouts and, with --node, the chain, instead of a block's credit")
	marketURL := fs.String("market", "", "with --seller: the market's API base URL")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *seller != "" {
		return runVerifySeller(ctx, env, *seller, *apiURL, *marketURL, *nodeURL, *timeout)
	}
	h, err := chainhash.NewHashFromStr(*block)
	if err != nil || len(*block) != 64 {
		return fmt.Errorf("%w: --block must be a 64-digit block hash", ErrUsage)
	}
	if *addr == "" || len(*addr) > 100 {
		return fmt.Errorf("%w: --address is required", ErrUsage)
	}
	base, err := url.Parse(strings.TrimRight(*apiURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("%w: --api must be an http:// or https:// URL", ErrUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	hc := &http.Client{Timeout: *timeout}

	// The address must be one of the pool's network: a typo would verify nothing.
	var info struct {
		Network string `json:"network"`
	}
	if err := getAPI(ctx, hc, base.String()+"/api/v1/pool", &info); err != nil {
		return err
	}
	params, err := networkParams(info.Network)
	if err != nil {
		return fmt.Errorf("verify: the pool's network: %w", err)
	}
	if _, err := pool.AddressScript(*addr, params); err != nil {
		return fmt.Errorf("%w: --address: %s", ErrUsage, hashgrid.ErrorMessage(err))
	}

	v, err := fetchWindow(ctx, hc, base.String(), h.String())
	if errors.Is(err, errNotFound) {
		// Without a payout scheme the pool publishes no windows at all.
		var none json.RawMessage
		if perr := getAPI(ctx, hc, base.String()+"/api/v1/payouts", &none); errors.Is(perr, errNotFound) {
			return fmt.Errorf("verify: the pool at %s runs no payout scheme (started without --payout-scheme): it publishes no share windows and keeps no credits to verify", base)
		}
		return fmt.Errorf("verify: the pool publishes no window for block %s: not a block it found, or found before its payout scheme started (%w)", h, err)
	}
	if err != nil {
		return err
	}
	var facts *payout.ChainFacts
	if *nodeURL != "" {
		c, err := node.NewClient(*nodeURL)
		if err != nil {
			return fmt.Errorf("--node: %w", err)
		}
		if facts, err = chainFacts(ctx, c, *h); err != nil {
			return err
		}
	}
	res := payout.Verify(v, *addr, facts)
	// The miner's own page must show the same credit as the block's window page.
	if v.Credit != nil {
		if err := checkMinerPage(ctx, hc, base.String(), *addr, v.Credit.Key, res.Published.Amount); err != nil {
			res.Problems = append(res.Problems, err.Error())
		}
	}
	w := env.Stdout
	fmt.Fprintf(w, "block %s height %d, reward %d sat, window of %d shares (%d of them %s), commitment %s\n",
		v.Block, v.Height, v.Reward, res.Shares, res.Mine, *addr, v.Commitment)
	if facts == nil {
		fmt.Fprintln(w, "note: commitment, reward and direct payment not checked against the chain (pass --node)")
	} else {
		fmt.Fprintln(w, "chain: the block's coinbase commits to this window")
	}
	fmt.Fprintf(w, "expected credit %d sat (direct %v), pool credited %d sat (direct %v)\n",
		res.Expected.Amount, res.Expected.Direct, res.Published.Amount, res.Published.Direct)
	if !res.OK() {
		for _, p := range res.Problems {
			fmt.Fprintln(w, "MISMATCH:", p)
		}
		return fmt.Errorf("verify: %d problem(s): the pool's credit for %s does not follow from its published window", len(res.Problems), *addr)
	}
	fmt.Fprintln(w, "ok: the credit matches the published window")
	return nil
}

// runVerifySeller is verify --seller.
func runVerifySeller(ctx context.Context, env Env, addr, apiURL, marketURL, nodeURL string, timeout time.Duration) error {
	if len(addr) > 100 {
		return fmt.Errorf("%w: --seller is too long", ErrUsage)
	}
	var bases [2]string
	for i, f := range []struct{ flag, v string }{{"--api", apiURL}, {"--market", marketURL}} {
		u, err := url.Parse(strings.TrimRight(f.v, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: %s must be an http:// or https:// URL", ErrUsage, f.flag)
		}
		bases[i] = u.String()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: timeout}
	var info struct {
		Network string `json:"network"`
	}
	if err := getAPI(ctx, hc, bases[0]+"/api/v1/pool", &info); err != nil {
		return err
	}
	params, err := networkParams(info.Network)
	if err != nil {
		return fmt.Errorf("verify: the pool's network: %w", err)
	}
	if _, err := pool.AddressScript(addr, params); err != nil {
		return fmt.Errorf("%w: --seller: %s", ErrUsage, hashgrid.ErrorMessage(err))
	}
	return verifySeller(ctx, hc, env.Stdout, bases[0], bases[1], addr, params, nodeURL)
}

func getAPI(ctx context.Context, hc *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxVerifyReply+1))
	if err != nil {
		return fmt.Errorf("verify: %s: %w", u, err)
	}
	if len(body) > maxVerifyReply {
		return fmt.Errorf("verify: %s: reply larger than %d bytes", u, maxVerifyReply)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if e, ok := hashgrid.ParseErrorReply(body); ok {
			msg = e.Message
		}
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("verify: %s: %w: %s", u, errNotFound, msg)
		}
		return fmt.Errorf("verify: %s: %s: %s", u, resp.Status, msg)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("verify: %s: %w", u, err)
	}
	return nil
}

// fetchWindow reads every page of a block's window.
func fetchWindow(ctx context.Context, hc *http.Client, base, hash string) (payout.WindowView, error) {
	var all payout.WindowView
	after := uint64(0)
	for page := 0; ; page++ {
		if page == maxVerifyPages {
			return all, fmt.Errorf("verify: window longer than %d pages", maxVerifyPages)
		}
		var v payout.WindowView
		u := base + "/api/v1/blocks/" + hash + "/window?after=" + strconv.FormatUint(after, 10)
		if err := getAPI(ctx, hc, u, &v); err != nil {
			return all, err
		}
		if page == 0 {
			all = v
			all.Shares = nil
		} else if v.Commitment != all.Commitment {
			return all, errors.New("verify: the window changed between pages")
		}
		all.Shares = append(all.Shares, v.Shares...)
		if v.Next == 0 {
			break
		}
		if v.Next <= after {
			return all, fmt.Errorf("verify: page after %d does not move forward", after)
		}
		after = v.Next
	}
	all.Next = 0
	return all, nil
}

// checkMinerPage checks that GET /api/v1/miners/ADDR lists the credit under key with
// the amount the window page published.
func checkMinerPage(ctx context.Context, hc *http.Client, base, addr, key string, amount int64) error {
	var m struct {
		Credits []payout.CreditView `json:"credits"`
	}
	if err := getAPI(ctx, hc, base+"/api/v1/miners/"+url.PathEscape(addr), &m); err != nil {
		if amount == 0 && strings.Contains(err.Error(), "404") {
			return nil
		}
		return err
	}
	for _, c := range m.Credits {
		if c.Key == key {
			if c.Amount != amount {
				return fmt.Errorf("the miner page shows %d sat for %s, the window page %d", c.Amount, key, amount)
			}
			return nil
		}
	}
	if amount != 0 {
		return fmt.Errorf("the miner page lists no credit %s", key)
	}
	return nil
}

// chainFacts reads the block's coinbase and bits from a node.
func chainFacts(ctx context.Context, c *node.Client, h chainhash.Hash) (*payout.ChainFacts, error) {
	blk, err := fetchBlock(ctx, c, h)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if len(blk.Transactions) == 0 {
		return nil, errors.New("verify: block without coinbase")
	}
	f := &payout.ChainFacts{Bits: blk.Header.Bits, Direct: map[string]int64{}}
	var scripts [][]byte
	for _, o := range blk.Transactions[0].TxOut {
		f.Reward += o.Value
		scripts = append(scripts, o.PkScript)
		// The address's network is not known here: name the output under every
		// network's encoding (testnet and signet share theirs), once each.
		names := map[string]bool{}
		for _, net := range []*chaincfg.Params{&chaincfg.MainNetParams, &chaincfg.TestNet3Params, &chaincfg.RegressionNetParams, &chaincfg.SigNetParams} {
			_, addrs, _, err := txscript.ExtractPkScriptAddrs(o.PkScript, net)
			if err == nil && len(addrs) == 1 {
				names[addrs[0].EncodeAddress()] = true
			}
		}
		for n := range names {
			f.Direct[n] += o.Value
		}
	}
	f.Commitment, f.HasCommit = payout.FindCommitment(scripts)
	return f, nil
}
