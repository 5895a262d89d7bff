package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// yearLog builds, in memory, the sample site's log with a year of hourly evidence (one
// energy import of the three groups' four quarters and one pool snapshot of three
// workers per hour), a report over the year, and an anchor of the report on c. Entries
// go through the same checks as Registry.append, without a write and fsync each. Each
// pool snapshot carries its two groups' share commitments, the miners' with a sample.
func yearLog(tb testing.TB, c *memChain) (file, log []byte) {
	tb.Helper()
	r, _ := newRegistry(tb)
	buildSite(tb, r)
	st := r.State()
	s := &st
	last := r.last
	var buf bytes.Buffer
	head, err := os.ReadFile(r.Path())
	if err != nil {
		tb.Fatal(err)
	}
	buf.Write(head)
	now := t0
	add := func(kind string, body any) Entry {
		b, err := json.Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		now = now.Add(time.Second)
		e := Entry{Seq: last.Seq + 1, Time: now, Kind: kind, Prev: last.Hash, Body: b}
		if err := seal(&e, testKey(1)); err != nil {
			tb.Fatal(err)
		}
		if err := s.apply(&e); err != nil {
			tb.Fatal(err)
		}
		line, _ := jsonLine(e)
		buf.Write(line)
		last = e
		s.HeadSeq, s.HeadHash = e.Seq, e.Hash
		return e
	}
	workers := poolWorkers()[:3]
	var pws []PoolWorker
	for _, w := range workers {
		pws = append(pws, PoolWorker{Address: w.Address, Name: w.Name, Accepted: w.Accepted, Rejected: w.Rejected, Work: w.Work})
	}
	// The miners' commitment is a real one, with its sample: 3,550 shares of which the
	// pool kept every header; the same each hour (building 31 million leaves would take
	// longer than the verify it feeds), so verify re-hashes 8,760 samples of it.
	// Repeated 8,760 times, one hour's sample must be at least as large as its count
	// predicts, or the year's sum is flagged as short: fewer shares until it is.
	var mined []PoolGroupShares
	for n := 3550; ; n-- {
		src := &shareSource{shares: sampledShares(t0, n, 0, "rack1-01", 1)}
		var err error
		mined, err = groupShares(context.Background(), src, t0, t0.Add(time.Hour), func(string, string) string { return "miners" }, 1)
		if err != nil || len(mined) != 1 {
			tb.Fatalf("the miners' commitment: %+v, %v", mined, err)
		}
		if m := mined[0]; len(m.Sample) > 0 && uint64(len(m.Sample))*m.SampleRate >= m.Accepted {
			break
		}
	}
	const hours = 365 * 24
	for h := 0; h < hours; h++ {
		start := t0.Add(time.Duration(h) * time.Hour)
		var recs []EnergyRecord
		for q := 0; q < 4; q++ {
			qs, qe := start.Add(time.Duration(q)*15*time.Minute), start.Add(time.Duration(q+1)*15*time.Minute)
			for _, g := range []string{"inference", "miners", "nodes"} {
				recs = append(recs, EnergyRecord{Start: qs, End: qe, Site: "s1", Group: g, Mode: "on", MachinesOn: 2, EnergyWh: 200})
			}
		}
		add(kindEnergy, evidenceBody{Source: "energy.jsonl", SHA256: sha256Hex([]byte(start.String())), Energy: recs})
		snap := PoolSnapshot{Site: "s1", From: start, To: start.Add(time.Hour), Workers: pws, SharesListed: true, Groups: []PoolGroupShares{
			{Group: "inference", Accepted: 12, Work: diffWork(12, 0.5), FirstSeq: uint64(h) * 4000, LastSeq: uint64(h)*4000 + 3000, Root: sha256Hex([]byte{byte(h), 1})},
			mined[0],
		}}
		add(kindPool, evidenceBody{Source: "pool", Pool: &snap})
	}
	rep, err := buildReport(s, "s1", t0, t0.Add(hours*time.Hour), now)
	if err != nil {
		tb.Fatal(err)
	}
	content, _ := json.Marshal(rep)
	re := add(kindReport, reportEntryBody{Site: "s1", From: rep.From, To: rep.To, ContentSHA256: sha256Hex(content), LogHeadSeq: rep.LogHeadSeq, LogHeadHash: rep.LogHeadHash})
	// Anchor the report entry.
	r.last, r.state = last, s
	a := anchorHead(tb, c, r)
	add(kindAnchor, a)
	f := ReportFile{Format: reportFileFormat, PublicKey: fmtHex(pub()), Entry: re, Report: content, Anchor: &a}
	file, _ = json.MarshalIndent(f, "", "  ")
	return file, buf.Bytes()
}

// BenchmarkVerifyYearAnchored is what an auditor's verify does for a report over a year
// of hourly evidence: the log's every entry, the report against it, the anchor on the
// chain (in memory here; a node adds two RPC calls).
func BenchmarkVerifyYearAnchored(b *testing.B) {
	c := &memChain{}
	file, log := yearLog(b, c)
	if err := verifyAnchored(c, file, log); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := verifyAnchored(c, file, log); err != nil {
			b.Fatal(err)
		}
	}
	// After the loop: ResetTimer would drop them.
	b.ReportMetric(float64(len(log)), "log-bytes")
	b.ReportMetric(float64(len(file)), "report-bytes")
	b.ReportMetric(float64(bytes.Count(log, []byte("\n"))), "entries")
	if chk, err := CheckSamples(file); err == nil {
		b.ReportMetric(float64(chk.Shares), "sampled-shares")
	}
}

// BenchmarkCheckSamplesYear is the part of that verify which hashes the sampled
// shares again and climbs their Merkle paths (CheckSamples), alone.
func BenchmarkCheckSamplesYear(b *testing.B) {
	file, _ := yearLog(b, &memChain{})
	var chk SampleCheck
	for b.Loop() {
		var err error
		if chk, err = CheckSamples(file); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(chk.Shares), "sampled-shares")
}

func TestYearLogVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a year of entries")
	}
	c := &memChain{}
	file, log := yearLog(t, c)
	if err := verifyAnchored(c, file, log); err != nil {
		t.Fatal(err)
	}
	// One entry in the middle changed and the rest re-chained: caught by the anchor.
	ls := lines(log)
	mid := len(ls) / 2
	for !bytes.Contains(ls[mid-1], []byte(`"energy_wh":200`)) {
		mid++
	}
	forged := rechain(t, ls, mid, func(e *Entry) {
		e.Body = bytes.Replace(e.Body, []byte(`"energy_wh":200`), []byte(`"energy_wh":201`), 1)
	})
	if err := verifyAnchoredLog(c, file, forged); err == nil {
		t.Error("a re-chained year log passed against its anchor")
	}
}
