package registry

import (
	"html/template"
	"io"
	"time"
)

// reportPage renders a report for people. It is self-contained (inline style, no
// scripts, no external assets) so that it can be archived and hashed as one file.
var reportPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"time":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"milli": milli,
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Workload report: {{.R.Site.Name}} {{time .R.From}} to {{time .R.To}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#111;max-width:70em}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #bbb;padding:.3em .6em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.error{background:#fde2e2}.warning{background:#fff4d6}
code{font-size:.85em;word-break:break-all}
</style>
</head>
<body>
<h1>Workload report: {{.R.Site.Name}}</h1>
<p>Operator <b>{{.R.Operator.Name}}</b> ({{.R.Operator.ID}}{{if .R.Operator.Country}}, {{.R.Operator.Country}}{{end}}).
Site <b>{{.R.Site.ID}}</b>, {{.R.Site.Location}}; grid connection {{.R.Site.Grid}}, {{.R.Site.CapacityKW}} kW.</p>
<p>Period {{time .R.From}} to {{time .R.To}}; generated {{time .R.Generated}} from log entries 1 to {{.R.LogHeadSeq}}
(head <code>{{.R.LogHeadHash}}</code>). Recorded as log entry {{.Seq}}; report content SHA-256 <code>{{.Content}}</code>.</p>

<h2>Discrepancies ({{len .R.Discrepancies}})</h2>
{{if .R.Discrepancies}}<table>
<tr><th>severity</th><th>code</th><th>group</th><th>finding</th><th>evidence</th></tr>
{{range .R.Discrepancies}}<tr class="{{.Severity}}"><td>{{.Severity}}</td><td>{{.Code}}</td><td>{{.Group}}</td><td>{{.Message}}</td><td>{{range .Evidence}}{{.}}<br>{{end}}</td></tr>
{{end}}</table>{{else}}<p>None: the evidence matches the declarations.</p>{{end}}

<h2>By workload class</h2>
<table>
<tr><th>class</th><th>industry</th><th>positive list</th><th>groups</th><th>energy Wh</th><th>accepted shares</th><th>hashes</th><th>GPU-hours</th><th>revenue sat</th><th>revenue µUSD</th></tr>
{{range .R.Classes}}<tr><td>{{.Name}} ({{.Class}})</td><td>{{.Industry}}</td><td>{{if .PositiveList}}yes{{else}}no{{end}}</td><td>{{range .Groups}}{{.}} {{end}}</td>
<td class="n">{{.EnergyWh}}</td><td class="n">{{.Accepted}}</td><td class="n">{{.Hashes}}</td><td class="n">{{milli .GPUMilliHours}}</td><td class="n">{{.RevenueSat}}</td><td class="n">{{.RevenueMicroUSD}}</td></tr>
{{end}}</table>

<h2>Declared and measured, by device group</h2>
<table>
<tr><th>group</th><th>declared</th><th>devices</th><th>rated W</th><th>energy Wh (source)</th><th>controller Wh</th><th>meter Wh</th><th>shares acc/rej</th><th>hashes</th><th>jobs</th><th>GPU-hours / capacity</th><th>CPU-hours / capacity</th><th>evidence shows</th></tr>
{{range .R.Groups}}<tr><td>{{.Group}}</td>
<td>{{range .Declared}}{{.Class}} from {{time .From}}<br>{{else}}nothing{{end}}</td>
<td>{{range .Devices}}{{.Count}} × {{.Kind}} {{.Model}} ({{.ID}})<br>{{end}}</td>
<td class="n">{{.RatedW}}</td><td class="n">{{.EnergyWh}} ({{.EnergySource}})</td><td class="n">{{.ControllerWh}}</td><td class="n">{{.MeterWh}}</td>
<td class="n">{{.Accepted}} / {{.Rejected}}</td><td class="n">{{.Hashes}}</td><td class="n">{{.Jobs}}</td>
<td class="n">{{milli .GPUMilliHours}} / {{milli .GPUCapacityMilliHr}}</td><td class="n">{{milli .CPUMilliHours}} / {{milli .CPUCapacityMilliHr}}</td><td>{{range .MeasuredAs}}{{.}} {{end}}</td></tr>
{{end}}</table>

<h2>Site energy</h2>
<table>
<tr><th>site meters Wh</th><th>device groups Wh</th><th>unaccounted Wh</th><th>connection capacity Wh</th></tr>
<tr><td class="n">{{if .R.Energy.SiteMetered}}{{.R.Energy.SiteMeterWh}}{{else}}no site meter{{end}}</td><td class="n">{{.R.Energy.GroupsWh}}</td>
<td class="n">{{if .R.Energy.SiteMetered}}{{.R.Energy.UnaccountedWh}}{{else}}n/a{{end}}</td><td class="n">{{.R.Energy.CapacityWh}}</td></tr>
</table>

<h2>Evidence used</h2>
<table>
<tr><th>log entry</th><th>kind</th><th>source</th><th>records</th><th>file SHA-256</th></tr>
{{range .R.Evidence}}<tr><td class="n">{{.Seq}}</td><td>{{.Kind}}</td><td>{{.Source}}</td><td class="n">{{.Records}}</td><td><code>{{.SHA256}}</code></td></tr>
{{end}}</table>
{{if .R.PoolExcluded}}<p>Pool snapshots left out because they straddle the period:</p><ul>{{range .R.PoolExcluded}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p>Check this page and its JSON offline with <code>hashgrid registry verify -report report-{{.Seq}}.json -html report-{{.Seq}}.html</code>.</p>
</body>
</html>
`))

func renderHTML(w io.Writer, r *Report, seq uint64, content string) error {
	return reportPage.Execute(w, struct {
		R       *Report
		Seq     uint64
		Content string
	}{r, seq, content})
}
