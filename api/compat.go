package api

import (
	"context"
	"math"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/hashgrid/hashgrid"
)

// The endpoints below answer with the field names and JSON types of public-pool's
// API (benjamin-wilson/public-pool: GET /api/info, /api/pool, /api/network,
// /api/client/{address} and the two chart endpoints), which miners' devices and
// community dashboards already read. Where hashgrid keeps less than public-pool
// does, the nearest figure is given, as noted at each field.

// PPBlock is one found block in public-pool's shape.
type PPBlock struct {
	Height       int64  `json:"height"`
	MinerAddress string `json:"minerAddress"`
	Worker       string `json:"worker"`
	SessionID    string `json:"sessionId"` // hashgrid does not record the finding session: ""
}

// PPUserAgent is one row of public-pool's user agent report.
type PPUserAgent struct {
	UserAgent      string  `json:"userAgent"`
	Count          int     `json:"count"`
	BestDifficulty float64 `json:"bestDifficulty"` // among recent shares
	TotalHashRate  float64 `json:"totalHashRate"`
}

// PPHighScore is one of the ten best share difficulties, by address.
type PPHighScore struct {
	UpdatedAt               string  `json:"updatedAt"`
	BestDifficulty          float64 `json:"bestDifficulty"`
	BestDifficultyUserAgent string  `json:"bestDifficultyUserAgent"`
}

// PPInfo is GET /api/info.
type PPInfo struct {
	BlockData  []PPBlock     `json:"blockData"`
	UserAgents []PPUserAgent `json:"userAgents"`
	HighScores []PPHighScore `json:"highScores"`
	Uptime     string        `json:"uptime"` // when the pool started, ISO 8601
}

// PPPool is GET /api/pool.
type PPPool struct {
	TotalHashRate float64   `json:"totalHashRate"`
	BlockHeight   int64     `json:"blockHeight"` // the node's tip
	TotalMiners   int       `json:"totalMiners"` // open authorized connections
	BlocksFound   []PPBlock `json:"blocksFound"`
	Fee           float64   `json:"fee"`
}

// PPNetwork is GET /api/network: the fields of bitcoind's getmininginfo.
type PPNetwork struct {
	Blocks             int64   `json:"blocks"`
	CurrentBlockWeight int64   `json:"currentblockweight"` // of the template's transactions
	CurrentBlockTx     int     `json:"currentblocktx"`
	Difficulty         float64 `json:"difficulty"`
	NetworkHashPS      float64 `json:"networkhashps"` // from the difficulty and the last blocks' times
	PooledTx           int     `json:"pooledtx"`      // transactions in the template (hashgrid does not read the mempool)
	Chain              string  `json:"chain"`
	Warnings           string  `json:"warnings"`
}

// PPClient is GET /api/client/{address}.
type PPClient struct {
	BestDifficulty float64          `json:"bestDifficulty"`
	WorkersCount   int              `json:"workersCount"`
	Workers        []PPClientWorker `json:"workers"`
}

// PPClientWorker is one connected worker session of an address.
type PPClientWorker struct {
	SessionID      string  `json:"sessionId"`
	Name           string  `json:"name"`
	BestDifficulty string  `json:"bestDifficulty"` // public-pool sends it as a string with two decimals
	HashRate       float64 `json:"hashRate"`
	StartTime      string  `json:"startTime"`
	LastSeen       string  `json:"lastSeen"`
}

// PPChartPoint is one point of public-pool's charts: the hashrate over ten minutes.
type PPChartPoint struct {
	Label string  `json:"label"`
	Data  float64 `json:"data"`
}

// Compatible chart shape: ten-minute buckets over a day.
const (
	ppChartBucket = 10 * time.Minute
	ppChartSpan   = 24 * time.Hour
	// ppInfoTTL: /api/info scans recent shares of every address; it is cached as
	// public-pool caches it.
	ppInfoTTL = time.Minute
	// ppHighScoreAddrs bounds the addresses scanned for high scores (most recent first).
	ppHighScoreAddrs = 200
)

func (d *dashboard) compatRoutes() {
	m := d.s.mux
	m.HandleFunc("GET /api/info", d.handlePPInfo)
	m.HandleFunc("GET /api/info/chart", d.handlePPChart)
	m.HandleFunc("GET /api/pool", d.handlePPPool)
	m.HandleFunc("GET /api/network", d.handlePPNetwork)
	m.HandleFunc("GET /api/client/{address}", d.handlePPClient)
	m.HandleFunc("GET /api/client/{address}/chart", d.handlePPChart)
}

func (d *dashboard) ppBlocks(ctx context.Context) ([]PPBlock, error) {
	blocks, err := d.s.cfg.Store.Blocks(ctx, trackedBlocks)
	if err != nil {
		return nil, err
	}
	out := []PPBlock{}
	for i := len(blocks) - 1; i >= 0; i-- { // oldest first, as public-pool lists them
		b := blocks[i]
		if b.Status == hashgrid.BlockRejected || b.Status == hashgrid.BlockSubmitted {
			continue
		}
		out = append(out, PPBlock{Height: b.Height, MinerAddress: b.Address, Worker: b.Worker, SessionID: ""})
	}
	return out, nil
}

func (d *dashboard) handlePPInfo(w http.ResponseWriter, r *http.Request) {
	now := d.s.cfg.Now()
	d.mu.Lock()
	c := d.info
	d.mu.Unlock()
	if c.v != nil && now.Sub(c.at) < ppInfoTTL && !now.Before(c.at) {
		writeJSON(w, http.StatusOK, c.v)
		return
	}
	info, err := d.ppInfo(r.Context(), now)
	if err != nil {
		d.s.writeError(w, r, err)
		return
	}
	d.mu.Lock()
	d.info = cachedJSON{at: now, v: info}
	d.mu.Unlock()
	writeJSON(w, http.StatusOK, info)
}

func (d *dashboard) ppInfo(ctx context.Context, now time.Time) (PPInfo, error) {
	info := PPInfo{UserAgents: []PPUserAgent{}, HighScores: []PPHighScore{}, Uptime: d.cfg.Started.UTC().Format(time.RFC3339Nano)}
	var err error
	if info.BlockData, err = d.ppBlocks(ctx); err != nil {
		return info, err
	}
	workers, err := d.workers(ctx, "", now)
	if err != nil {
		return info, err
	}
	agents := map[string]*PPUserAgent{}
	agent := func(ua string) *PPUserAgent {
		if a, ok := agents[ua]; ok {
			return a
		}
		a := &PPUserAgent{UserAgent: ua}
		agents[ua] = a
		return a
	}
	if d.cfg.Sessions != nil {
		for _, si := range d.cfg.Sessions.Sessions() {
			agent(si.UserAgent).Count++
		}
	}
	for _, v := range workers {
		if v.Online {
			agent(v.UserAgent).TotalHashRate += v.Hashrate
		}
	}
	// High scores and best difficulties from each address's recent shares.
	all, err := d.s.cfg.Store.Workers(ctx, "")
	if err != nil {
		return info, err
	}
	last := map[string]time.Time{}
	for _, wk := range all {
		if wk.LastShare.After(last[wk.Address]) {
			last[wk.Address] = wk.LastShare
		}
	}
	addrs := make([]string, 0, len(last))
	for a := range last {
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool { return last[addrs[i]].After(last[addrs[j]]) })
	if len(addrs) > ppHighScoreAddrs {
		addrs = addrs[:ppHighScoreAddrs]
	}
	for _, a := range addrs {
		shares, err := d.s.cfg.Store.SharesFor(ctx, a, bestShareScan)
		if err != nil {
			return info, err
		}
		var best hashgrid.Share
		for _, sh := range shares {
			if sh.Result != hashgrid.ShareAccepted {
				continue
			}
			if sh.Actual > best.Actual {
				best = sh
			}
			if ua, ok := agents[sh.UserAgent]; ok {
				ua.BestDifficulty = max(ua.BestDifficulty, sh.Actual.Float())
			}
		}
		if best.Actual > 0 {
			info.HighScores = append(info.HighScores, PPHighScore{UpdatedAt: best.Time.UTC().Format(time.RFC3339Nano),
				BestDifficulty: best.Actual.Float(), BestDifficultyUserAgent: best.UserAgent})
		}
	}
	sort.Slice(info.HighScores, func(i, j int) bool { return info.HighScores[i].BestDifficulty > info.HighScores[j].BestDifficulty })
	if len(info.HighScores) > 10 {
		info.HighScores = info.HighScores[:10]
	}
	for _, a := range agents {
		info.UserAgents = append(info.UserAgents, *a)
	}
	sort.Slice(info.UserAgents, func(i, j int) bool {
		if info.UserAgents[i].Count != info.UserAgents[j].Count {
			return info.UserAgents[i].Count > info.UserAgents[j].Count
		}
		return info.UserAgents[i].UserAgent < info.UserAgents[j].UserAgent
	})
	return info, nil
}

func (d *dashboard) handlePPPool(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	info, err := d.s.poolInfo(ctx)
	if err != nil {
		d.s.writeError(w, r, err)
		return
	}
	out := PPPool{TotalHashRate: info.Hashrate, BlockHeight: max(info.Height-1, 0), Fee: 0}
	if d.cfg.Sessions != nil {
		out.TotalMiners = len(d.cfg.Sessions.Sessions())
	}
	if out.BlocksFound, err = d.ppBlocks(ctx); err != nil {
		d.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// chainName maps btcd's network names to bitcoind's getmininginfo "chain".
func chainName(network string) string {
	switch network {
	case "mainnet":
		return "main"
	case "testnet3", "testnet":
		return "test"
	}
	return network
}

func (d *dashboard) handlePPNetwork(w http.ResponseWriter, r *http.Request) {
	st := d.s.cfg.Pool.Stats()
	out := PPNetwork{Blocks: max(st.Height-1, 0), Difficulty: st.NetworkDiff, Chain: chainName(d.s.cfg.Network), Warnings: ""}
	rate, _ := d.s.networkHashrate(r.Context(), d.s.cfg.Now(), st.NetworkDiff)
	out.NetworkHashPS = math.Round(rate)
	if d.cfg.Sessions != nil {
		txs, weight, _ := d.cfg.Sessions.TemplateInfo()
		out.CurrentBlockTx, out.CurrentBlockWeight, out.PooledTx = txs, weight, txs
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *dashboard) handlePPClient(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	addr := r.PathValue("address")
	if !validAddress(addr) {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad address"))
		return
	}
	now := d.s.cfg.Now()
	out := PPClient{Workers: []PPClientWorker{}}
	shares, err := d.s.cfg.Store.SharesFor(ctx, addr, bestShareScan)
	if err != nil {
		d.s.writeError(w, r, err)
		return
	}
	best := map[string]float64{}
	for _, sh := range shares {
		if sh.Result == hashgrid.ShareAccepted {
			best[sh.Worker] = max(best[sh.Worker], sh.Actual.Float())
			out.BestDifficulty = max(out.BestDifficulty, sh.Actual.Float())
		}
	}
	views, err := d.workers(ctx, addr, now)
	if err != nil {
		d.s.writeError(w, r, err)
		return
	}
	byName := map[string]WorkerView{}
	for _, v := range views {
		byName[v.Name] = v
	}
	if d.cfg.Sessions != nil {
		for _, si := range d.cfg.Sessions.Sessions() {
			if si.Address != addr {
				continue
			}
			for _, n := range si.Workers {
				v := byName[n]
				pw := PPClientWorker{SessionID: si.ID, Name: n, BestDifficulty: strconv.FormatFloat(best[n], 'f', 2, 64),
					StartTime: si.ConnectedAt.UTC().Format(time.RFC3339Nano), LastSeen: si.ConnectedAt.UTC().Format(time.RFC3339Nano)}
				if v.Sessions > 0 {
					pw.HashRate = v.Hashrate / float64(v.Sessions) // a name's work split over its connections
				}
				if v.LastShare != "" {
					pw.LastSeen = v.LastShare
				}
				out.Workers = append(out.Workers, pw)
			}
		}
	}
	out.WorkersCount = len(out.Workers)
	writeJSON(w, http.StatusOK, out)
}

func (d *dashboard) handlePPChart(w http.ResponseWriter, r *http.Request) {
	addr := r.PathValue("address")
	if addr != "" && !validAddress(addr) {
		d.s.writeError(w, r, hashgrid.Errorf(hashgrid.EINVALID, "bad address"))
		return
	}
	pts, err := d.history(r.Context(), addr, ppChartBucket, ppChartSpan)
	if err != nil {
		d.s.writeError(w, r, err)
		return
	}
	out := make([]PPChartPoint, 0, len(pts))
	for i, p := range pts {
		if i == len(pts)-1 {
			break // the current ten minutes are not over: public-pool leaves them out too
		}
		out = append(out, PPChartPoint{Label: time.UnixMilli(p.T).UTC().Format("2006-01-02T15:04:05.000Z"), Data: math.Round(p.Hashrate)})
	}
	writeJSON(w, http.StatusOK, out)
}
