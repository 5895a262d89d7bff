package api

import (
	"html/template"
	"net/http"
	"strconv"
)

var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"hashrate": formatHashrate,
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>hashgrid pool</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;padding:1rem;background:#0f1419;color:#e6e6e6}
h1{font-size:1.3rem;margin:0 0 1rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.6rem;margin-bottom:1rem}
.card{background:#1b232c;border-radius:.5rem;padding:.6rem .8rem}
.card b{display:block;font-size:1.2rem;margin-top:.2rem}
table{width:100%;border-collapse:collapse;font-size:.9rem}
th,td{text-align:left;padding:.35rem;border-bottom:1px solid #2a3541;word-break:break-all}
.ok{color:#7fd88f}.bad{color:#ff8a80}
</style></head><body>
<h1>hashgrid pool · {{.Info.Network}}</h1>
<div class="cards">
<div class="card">Height<b id="height">{{.Info.Height}}</b></div>
<div class="card">Network difficulty<b>{{printf "%.6g" .Info.NetworkDifficulty}}</b></div>
<div class="card">Hashrate<b id="hashrate">{{hashrate .Info.Hashrate}}</b></div>
<div class="card">Workers online<b id="workers">{{.Info.WorkersOnline}}</b></div>
<div class="card">Shares accepted<b id="accepted">{{.Info.SharesAccepted}}</b></div>
<div class="card">Shares rejected<b>{{.Info.SharesRejected}}</b></div>
<div class="card">Blocks found<b id="blocks">{{.Info.BlocksFound}}</b></div>
<div class="card">Node<b class="{{if .Healthy}}ok{{else}}bad{{end}}">{{if .Healthy}}ok{{else}}degraded{{end}}</b></div>
</div>
<h2>Recent blocks</h2>
<table><tr><th>Height</th><th>Hash</th><th>Finder</th><th>Status</th></tr>
{{range .Blocks}}<tr><td>{{.Height}}</td><td>{{.Hash}}</td><td>{{.Finder}}.{{.Worker}}</td><td>{{.Status}}</td></tr>
{{else}}<tr><td colspan="4">none yet</td></tr>{{end}}
</table>
</body></html>`))

func formatHashrate(h float64) string {
	units := []string{"H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"}
	i := 0
	for h >= 1000 && i < len(units)-1 {
		h /= 1000
		i++
	}
	return strconv.FormatFloat(h, 'f', 2, 64) + " " + units[i]
}

func (s *Server) handleStatusPage(w http.ResponseWriter, r *http.Request) {
	var data struct {
		Info    PoolInfo
		Blocks  []BlockInfo
		Healthy bool
	}
	var err error
	if data.Info, err = s.poolInfo(r.Context()); err != nil {
		s.writeError(w, r, err)
		return
	}
	blocks, err := s.cfg.Store.Blocks(r.Context(), 20)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, b := range blocks {
		data.Blocks = append(data.Blocks, blockInfo(b))
	}
	data.Healthy = s.cfg.Node == nil || !s.cfg.Node.Status().Degraded
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := statusTmpl.Execute(w, data); err != nil {
		s.cfg.Logger.Error("status page", "err", err)
	}
}
