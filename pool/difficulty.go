package pool

import (
	"github.com/btcsuite/btcd/chaincfg/v2"
	"github.com/btcsuite/btcd/wire/v2"
)

// Difficulties are the share difficulties a pool hands out on one network: the first
// difficulty of a connection and the bounds that vardiff, a "d=" password option,
// mining.suggest_difficulty and the minimum-difficulty extension are all clamped to.
type Difficulties struct {
	Start, Min, Max float64
}

// maxShareDiff is the largest share difficulty on every network: the largest a Diff
// holds is about 4.29e9.
const maxShareDiff = 4e9

// NetworkDifficulties returns the default share difficulties for net. Every accepted
// share is written to disk and kept, so the minimum is what bounds how many shares a
// miner may make the pool store: at difficulty D a device of H hashes per second sends
// H/(D·2^32) shares a second.
//
//   - mainnet: start 16384, minimum 256. 16384 is the start public-pool uses; a
//     100 TH/s ASIC sends 1.4 shares a second there until vardiff raises it (to about
//     116,000 at the 5 s interval), and at the minimum at most 91. A 1.2 TH/s Bitaxe
//     settles near 1,400, above the minimum; slower devices need an operator's lower
//     MinDiff.
//   - testnet3 and testnet4: start 42, minimum 1, ckpool's defaults. Both networks
//     accept blocks of difficulty 1 after 20 minutes without one, so shares below 1
//     would be worth nothing there.
//   - signet: start 1, minimum 0.001, about the difficulty of signet's proof-of-work
//     limit (0.00113): a CPU miner on a test signet still finds shares.
//   - regtest and simnet: start 0.001, minimum 1e-6, so that a CPU miner finds shares
//     and blocks within seconds (the demo and the tests).
//
// Any other network gets mainnet's. The maximum is 4e9 everywhere.
func NetworkDifficulties(net *chaincfg.Params) Difficulties {
	d := Difficulties{Start: 16384, Min: 256, Max: maxShareDiff}
	if net == nil {
		return d
	}
	switch {
	case net.Net == wire.TestNet3 || net.Net == wire.TestNet4:
		d.Start, d.Min = 42, 1
	case net.Name == chaincfg.SigNetParams.Name: // custom signets have their own magic
		d.Start, d.Min = 1, 0.001
	case net.Net == wire.TestNet || net.Net == wire.SimNet: // regtest's magic is TestNet
		d.Start, d.Min = 0.001, 1e-6
	}
	return d
}
