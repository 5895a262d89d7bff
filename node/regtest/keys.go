package regtest

import (
	"crypto/sha256"

	"github.com/btcsuite/btcd/address/v2"
	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg/v2"
)

// testKeySeed makes the fixed test key: never use it outside regtest.
const testKeySeed = "hashgrid regtest test key"

// TestKey returns the fixed private key behind TestAddress and TestAddressP2PKH.
func TestKey() *btcec.PrivateKey {
	sum := sha256.Sum256([]byte(testKeySeed))
	k, _ := btcec.PrivKeyFromBytes(sum[:])
	return k
}

func testPubKeyHash() []byte {
	return address.Hash160(TestKey().PubKey().SerializeCompressed())
}

// TestAddress returns the regtest P2WPKH (bcrt1q…) address of TestKey.
func TestAddress() string {
	a, err := address.NewAddressWitnessPubKeyHash(testPubKeyHash(), &chaincfg.RegressionNetParams)
	if err != nil {
		// A 20-byte hash160 is always a valid witness program.
		panic("regtest: " + err.Error())
	}
	return a.EncodeAddress()
}

// TestAddressP2PKH returns the regtest P2PKH (m…/n…) address of TestKey.
func TestAddressP2PKH() string {
	a, err := address.NewAddressPubKeyHash(testPubKeyHash(), &chaincfg.RegressionNetParams)
	if err != nil {
		panic("regtest: " + err.Error())
	}
	return a.EncodeAddress()
}
