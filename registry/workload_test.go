package registry

import (
	"strings"
	"testing"
	"time"
)

// TestEnergyWorkload: the power controller's energy records say what the energy went
// to. A group declared proof-of-work that the controller moved to leased compute is
// flagged; a workload the registry does not know is refused, and the same interval
// re-imported with another workload is a difference, not a duplicate.
func TestEnergyWorkload(t *testing.T) {
	r, _ := newRegistry(t)
	buildSite(t, r)
	log := `{"start":"2026-03-02T10:00:00Z","end":"2026-03-02T10:15:00Z","site":"s1","group":"miners","mode":"full","machines_on":10,"energy_wh":8125,"hashrate_ghs":1000000,"workload":"mining"}
{"start":"2026-03-02T10:15:00Z","end":"2026-03-02T10:30:00Z","site":"s1","group":"miners","mode":"leased","machines_on":10,"energy_wh":750,"hashrate_ghs":0,"workload":"compute"}
{"start":"2026-03-02T10:30:00Z","end":"2026-03-02T10:45:00Z","site":"s1","group":"miners","mode":"leased","machines_on":10,"energy_wh":750,"hashrate_ghs":0,"workload":"compute"}
`
	if _, err := r.ImportEnergy(strings.NewReader(log), "energy.jsonl", "s1"); err != nil {
		t.Fatal(err)
	}
	_, rep, _, err := r.Report("s1", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var found []Discrepancy
	for _, d := range rep.Discrepancies {
		if d.Code == "controller_compute_on_pow_group" {
			found = append(found, d)
		}
	}
	if len(found) != 1 || found[0].Group != "miners" || found[0].Severity != SeverityWarning || found[0].Evidence[0] != "2 energy intervals with workload compute, 1500 Wh" {
		t.Errorf("controller_compute_on_pow_group: %+v, want one warning for miners over 2 intervals, 1500 Wh", found)
	}
	changed := strings.Replace(strings.SplitN(log, "\n", 3)[1], `"workload":"compute"`, `"workload":"mining"`, 1)
	if _, err := r.ImportEnergy(strings.NewReader(changed), "energy.jsonl", "s1"); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("same interval with another workload: %v, want a difference", err)
	}
	bad := strings.Replace(strings.SplitN(log, "\n", 2)[0], `"mining"`, `"gaming"`, 1)
	if _, _, err := ParseEnergy(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "workload") {
		t.Errorf("unknown workload: %v, want an error naming it", err)
	}
}
