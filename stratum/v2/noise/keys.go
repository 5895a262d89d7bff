package noise

import (
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/address/v2/base58"
	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ellswift"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
)

// EllSwiftSize is the size of an ElligatorSwift-encoded public key (BIP 324).
const EllSwiftSize = 64

// ellSwiftEncode gives a (randomised) ElligatorSwift encoding of pub's x coordinate.
func ellSwiftEncode(pub *btcec.PublicKey) ([EllSwiftSize]byte, error) {
	var out [EllSwiftSize]byte
	var x btcec.FieldVal
	x.SetByteSlice(schnorr.SerializePubKey(pub))
	u, t, err := ellswift.XElligatorSwift(&x)
	if err != nil {
		return out, fmt.Errorf("noise: ellswift encode: %w", err)
	}
	copy(out[:32], u.Bytes()[:])
	copy(out[32:], t.Bytes()[:])
	return out, nil
}

// ellSwiftDecodeX returns the x coordinate an ElligatorSwift encoding stands for. Every
// 64-byte string decodes to some point (BIP 324); the error is btcd's guard.
func ellSwiftDecodeX(enc [EllSwiftSize]byte) ([32]byte, error) {
	var u, t btcec.FieldVal
	u.SetByteSlice(enc[:32])
	u.Normalize()
	t.SetByteSlice(enc[32:])
	t.Normalize()
	x, err := ellswift.XSwiftEC(&u, &t)
	if err != nil {
		return [32]byte{}, fmt.Errorf("noise: ellswift decode: %w", err)
	}
	return *x.Bytes(), nil
}

// ecdh is the spec's ECDH(k, rk): BIP 324's v2_ecdh, which hashes the initiator's
// encoding first whichever side computes it, so both ends must say who initiated.
func ecdh(priv *btcec.PrivateKey, ours, theirs [EllSwiftSize]byte, initiator bool) ([32]byte, error) {
	h, err := ellswift.V2Ecdh(priv, theirs, ours, initiator)
	if err != nil {
		return [32]byte{}, fmt.Errorf("noise: ecdh: %w", err)
	}
	return *h, nil
}

// AuthorityKey is the pool authority's public key in BIP 340 x-only form: what the client
// must know in advance to trust a server.
type AuthorityKey [32]byte

// authorityKeyVersion is the little-endian u16 prefix of the encoded authority key.
const authorityKeyVersion = 1

// String encodes the key as in the stratum2+tcp URL: base58-check of the version prefix
// [1, 0] followed by the 32-byte key.
func (k AuthorityKey) String() string {
	// CheckEncode writes its version byte first: 1 is the low byte of the u16 prefix and
	// the 0 leading the payload its high byte.
	payload := make([]byte, 0, 33)
	payload = append(payload, 0)
	payload = append(payload, k[:]...)
	return base58.CheckEncode(payload, authorityKeyVersion)
}

var errKeyFormat = errors.New("noise: malformed key")

// ParseAuthorityKey decodes what AuthorityKey.String encodes and checks that the key is a
// point on the curve.
func ParseAuthorityKey(s string) (AuthorityKey, error) {
	var k AuthorityKey
	payload, ver, err := base58.CheckDecode(s)
	if err != nil {
		return k, fmt.Errorf("%w: authority key: %v", errKeyFormat, err)
	}
	if len(payload) != 33 {
		return k, fmt.Errorf("%w: authority key is %d bytes, want 34", errKeyFormat, len(payload)+1)
	}
	if v := uint16(ver) | uint16(payload[0])<<8; v != authorityKeyVersion {
		return k, fmt.Errorf("%w: authority key version %d, want %d", errKeyFormat, v, authorityKeyVersion)
	}
	if _, err := schnorr.ParsePubKey(payload[1:]); err != nil {
		return k, fmt.Errorf("%w: authority key: %v", errKeyFormat, err)
	}
	copy(k[:], payload[1:])
	return k, nil
}

func (k AuthorityKey) pubKey() (*btcec.PublicKey, error) {
	pub, err := schnorr.ParsePubKey(k[:])
	if err != nil {
		return nil, fmt.Errorf("%w: authority key: %v", errKeyFormat, err)
	}
	return pub, nil
}

// xOnly is the BIP 340 encoding of a public key.
func xOnly(pub *btcec.PublicKey) [32]byte {
	var x [32]byte
	copy(x[:], schnorr.SerializePubKey(pub))
	return x
}

// EncodeSecretKey writes a secret key as SRI does in its configuration files:
// base58-check of the 32 bytes, with no prefix.
func EncodeSecretKey(priv *btcec.PrivateKey) string {
	b := priv.Key.Bytes()
	// CheckEncode insists on a version byte; the key's first byte serves, so the string is
	// base58check(all 32 bytes).
	return base58.CheckEncode(b[1:], b[0])
}

// ParseSecretKey decodes what EncodeSecretKey encodes, refusing zero and values not
// below the group order.
func ParseSecretKey(s string) (*btcec.PrivateKey, error) {
	rest, first, err := base58.CheckDecode(s)
	if err != nil {
		return nil, fmt.Errorf("%w: secret key: %v", errKeyFormat, err)
	}
	if len(rest) != 31 {
		return nil, fmt.Errorf("%w: secret key is %d bytes, want 32", errKeyFormat, len(rest)+1)
	}
	b := append([]byte{first}, rest...)
	var d btcec.ModNScalar
	if overflow := d.SetByteSlice(b); overflow || d.IsZero() {
		return nil, fmt.Errorf("%w: secret key out of range", errKeyFormat)
	}
	return btcec.PrivKeyFromScalar(&d), nil
}
