package stratum

import (
	"strings"
	"testing"
)

func TestNotifyDecode(t *testing.T) {
	n := Notify{
		JobID:        "1f",
		PrevHash:     "03020100070605040b0a09080f0e0d0c13121110171615141b1a19181f1e1d1c",
		Coinb1:       "0102",
		Coinb2:       "ff",
		MerkleBranch: []string{strings.Repeat("11", 32)},
		Version:      "20000000",
		NBits:        "1729d72d",
		NTime:        "5b90b123",
		CleanJobs:    true,
	}
	j, err := n.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if j.Prev[0] != 0 || j.Prev[31] != 31 || j.Version != 0x20000000 || j.Bits != 0x1729d72d || j.NTime != 0x5b90b123 ||
		len(j.Coinb1) != 2 || j.Coinb2[0] != 0xff || len(j.Branch) != 1 || j.Branch[0][5] != 0x11 || !j.Clean || j.ID != "1f" {
		t.Errorf("decoded %+v", j)
	}
	for _, bad := range []func(*Notify){
		func(n *Notify) { n.PrevHash = n.PrevHash[:62] },
		func(n *Notify) { n.Coinb1 = "0g" },
		func(n *Notify) { n.Coinb2 = "f" },
		func(n *Notify) { n.MerkleBranch = []string{"11"} },
		func(n *Notify) { n.Version = "2000000" },
		func(n *Notify) { n.NBits = "zz29d72d" },
	} {
		m := n
		bad(&m)
		if _, err := m.Decode(); err == nil {
			t.Errorf("Decode accepted %+v", m)
		}
	}
}
