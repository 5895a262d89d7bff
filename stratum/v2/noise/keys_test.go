package noise

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/address/v2/base58"
	"github.com/btcsuite/btcd/btcec/v2"
	"golang.org/x/crypto/chacha20poly1305"
)

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func unhex64(tb testing.TB, s string) (a [64]byte) {
	tb.Helper()
	if n := copy(a[:], unhex(tb, s)); n != 64 {
		tb.Fatalf("hex %q is %d bytes, want 64", s, n)
	}
	return a
}

// TestProtocolNameHash compares HASH(protocol name) with the constant SRI's noise_sv2
// hard-codes (NOISE_HASHED_PROTOCOL_NAME_CHACHA), so a typo in the name cannot pass.
func TestProtocolNameHash(t *testing.T) {
	sri := []byte{46, 180, 120, 129, 32, 142, 158, 238, 31, 102, 159, 103, 198, 110, 231, 14, 169, 234, 136, 9,
		13, 80, 63, 232, 48, 220, 75, 200, 62, 41, 191, 16}
	var s symmetricState
	s.initialize()
	if !bytes.Equal(s.ck[:], sri) {
		t.Fatalf("ck = %x, want %x", s.ck, sri)
	}
	if want := sha256.Sum256(sri); s.h != want {
		t.Fatalf("h = %x, want HASH(ck) = %x", s.h, want)
	}
}

// TestHKDFAsSpecified checks hkdf2 against the spec's own spelling of HKDF with two
// outputs: temp = HMAC(ck, ikm), out1 = HMAC(temp, 0x01), out2 = HMAC(temp, out1||0x02).
func TestHKDFAsSpecified(t *testing.T) {
	mac := func(k, d []byte) []byte { m := hmac.New(sha256.New, k); m.Write(d); return m.Sum(nil) }
	for _, ikm := range [][]byte{nil, bytes.Repeat([]byte{7}, 32), []byte("some longer input key material of odd size")} {
		ck := sha256.Sum256([]byte("ck"))
		temp := mac(ck[:], ikm)
		want1 := mac(temp, []byte{1})
		want2 := mac(temp, append(append([]byte{}, want1...), 2))
		got1, got2, err := hkdf2(ck[:], ikm)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got1[:], want1) || !bytes.Equal(got2[:], want2) {
			t.Errorf("ikm %x: got %x %x, want %x %x", ikm, got1, got2, want1, want2)
		}
	}
}

// TestNonceEncoding pins the nonce layout: 4 zero bytes, then n as 8 bytes little-endian.
func TestNonceEncoding(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 32)
	var c cipherState
	if err := c.initializeKey(key); err != nil {
		t.Fatal(err)
	}
	c.n = 0x0102030405060708
	got, err := c.seal(nil, []byte("ad"), []byte("pt"))
	if err != nil {
		t.Fatal(err)
	}
	aead, _ := chacha20poly1305.New(key)
	nonce := []byte{0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1}
	if want := aead.Seal(nil, nonce, []byte("pt"), []byte("ad")); !bytes.Equal(got, want) {
		t.Fatalf("seal = %x, want %x", got, want)
	}
	if c.n != 0x0102030405060709 {
		t.Fatalf("n = %x after seal, want incremented", c.n)
	}
}

func TestNonceNeverWraps(t *testing.T) {
	var c cipherState
	if err := c.initializeKey(make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	c.n = math.MaxUint64
	if _, err := c.seal(nil, nil, []byte("x")); !errors.Is(err, errNonceExhausted) {
		t.Fatalf("seal at n=2^64-1: err %v, want errNonceExhausted", err)
	}
	if _, err := c.open(nil, nil, make([]byte, 17)); !errors.Is(err, errNonceExhausted) {
		t.Fatalf("open at n=2^64-1: err %v, want errNonceExhausted", err)
	}
}

// TestOpenFailureKeepsNonce: the spec says n is not incremented on a failed decryption.
func TestOpenFailureKeepsNonce(t *testing.T) {
	var a, b cipherState
	a.initializeKey(make([]byte, 32))
	b.initializeKey(make([]byte, 32))
	ct, _ := a.seal(nil, nil, []byte("hello"))
	bad := bytes.Clone(ct)
	bad[0] ^= 1
	if _, err := b.open(nil, nil, bad); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("open of a changed ciphertext: %v, want ErrAuthentication", err)
	}
	if b.n != 0 {
		t.Fatalf("n = %d after failure, want 0", b.n)
	}
	if pt, err := b.open(nil, nil, ct); err != nil || string(pt) != "hello" {
		t.Fatalf("open after failure = %q, %v", pt, err)
	}
}

// bip324Vectors are rows of BIP 324's packet_encoding_test_vectors.csv: our secret key,
// our and their ElligatorSwift encodings, whether we initiate, our x coordinate
// (mid_x_ours) and v2_ecdh's result (mid_shared_secret). They cover encodings with u or t
// at 0, at p and above it.
var bip324Vectors = []struct {
	idx, priv, ours, theirs string
	initiating              bool
	xOurs, shared           string
}{
	{"1", "61062ea5071d800bbfd59e2e8b53d47d194b095ae5a4df04936b49772ef0d4d7", "ec0adff257bbfe500c188c80b4fdd640f6b45a482bbc15fc7cef5931deff0aa186f6eb9bba7b85dc4dcc28b28722de1e3d9108b985e2967045668f66098e475b", "a4a94dfce69b4a2a0a099313d10f9f7e7d649d60501c9e1d274c300e0d89aafaffffffffffffffffffffffffffffffffffffffffffffffffffffffff8faf88d5", true, "19e965bc20fc40614e33f2f82d4eeff81b5e7516b12a5c6c0d6053527eba0923", "c6992a117f5edbea70c3f511d32d26b9798be4b81a62eaee1a5acaa8459a3592"},
	{"999", "6f312890ec83bbb26798abaadd574684a53e74ccef7953b790fcc29409080246", "a8785af31c029efc82fa9fc677d7118031358d7c6a25b5779a9b900e5ccd94aac97eb36a3c5dbcdb2ca5843cc4c2fe0aaa46d10eb3d233a81c3dde476da00eef", "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f0000000000000000000000000000000000000000000000000000000000000000", false, "d4b65faa965b31fe2d9faaeb806c6449a50fe3679555c3518f7a0885f572457f", "a6f79eb08243b6f65dbe42bfe4a6cf3f131d6963fa5d06c770a18f7b9c489b78"},
	{"0", "846a784f1a03dea59cc679754a60a7145542fa130e3efbd815c81e909ce32933", "480eacf1536b52257bf8ce78d8f4ce09395d744767c6c129e7838947ee625af3245592c111275e877d5baae22584cb5f1153e67c16bcd7da767726cd0d0c846a", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffff22d5e441524d571a52b3def126189d3f416890a99d4da6ede2b0cde1760ce2c3f98457ae", true, "014e5bdbb1d7eb34a88a016ab3dd45e343dc703fafa8266907ab67a76c5eb2d6", "e500c670f1b32f60e05009bddcdbfa7153afb19c20479583a54b43d85b3433a8"},
	{"223", "c0f15820459f64d98e5c48681d13340572c574533dd9f7161b85fcc8224fdf30", "682871104d694baca8b9c7990ae6288f49e1ff4feb21dd5cffad67db7752fdfb6c3608d6996c54be04b35feef037da09ee4d9dca2363b343bc2d4f6d0ea609da", "56bd0c06f10352c3a1a9f4b4c92f6fa2b26df124b57878353c1fc691c51abea77c8817daeeb9fa546b77c8daf79d89b22b0e1b87574ece42371f00237aa9d83a", false, "5d673dd0a75ccacf4e1310e9402ecdacdd474d8bbfa6eeefdde2e1b216d41dbe", "b764f617cf8c8dcf6018e4f5e8ee603a086498a3732621c9b0fc0a485ea0d2f0"},
	{"448", "96cb391886681d1d3e23948e51987771a8ec3001b640c18fb994a855cea66b6e", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffdde3a077a6fd73711a27250c439ba78ef63d89cd0918c0a0a75f301ed96aa2a43ecf3f61", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffa7730be30000000000000000000000000000000000000000000000000000000000000000", true, "f7561c791f6f4aa73dcef3cac32f2433b4cfa4ab0666e93552b7cbc7249fb2de", "779a18107756169a6b369d043f3ef9a90178c7ab8c8c37b4edcd9b5397e41eca"},
	{"673", "4a7065c3ddbf84e29b8e20da0da3aaae1f708eae8ad1af4c4c00f46a7cda7b6b", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffff450012ec3aeecf516f4b374af2e7fbb040e92dc3c0f12eafd00c729a137f4e892e5293c3", "9652d78baefc028cd37a6a92625b8b8f85fde1e4c944ad3f20e198bef8c02f19fffffffffffffffffffffffffffffffffffffffffffffffffffffffff2e91870", false, "a0ff3dd41ca11036eea75ea08993c938894c7eebca99354ac2e0daa8a1a6b2ca", "a993062a328371beecae7e2b05a34355c1cefbad7f855ad48331dcf002972999"},
	{"1024", "0f69aeffeff6172647ee5aa80bfb418ee742f4e9f1a51b463ac7c120d620e37d", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffff04df0e67f9753e2cdb066b3b588a0069fde936a312e0d3f31acb335026b7072d8f2ad24c", "12a50f3fafea7c1eeada4cf8d33777704b77361453afc83bda91eef349ae044d20126c6200547ea5a6911776c05dee2a7f1a9ba7dfbabbbd273c3ef29ef46e46", true, "115b298a52a9362706ddd1e493de09443dd8ac2b0c3e4e5e8b6bb295598db05d", "1756deace376ece25da9825fe49f76a9272a89a7b746c83ca2c4016f5a30ead4"},
}

// TestECDHBIP324Vectors: the spec defines ECDH as BIP 324's v2_ecdh, so its vectors apply
// as they stand, the initiating flag included.
func TestECDHBIP324Vectors(t *testing.T) {
	for _, v := range bip324Vectors {
		priv, _ := btcec.PrivKeyFromBytes(unhex(t, v.priv))
		ours, theirs := unhex64(t, v.ours), unhex64(t, v.theirs)
		got, err := ecdh(priv, ours, theirs, v.initiating)
		if err != nil {
			t.Fatalf("vector %s: %v", v.idx, err)
		}
		if hex.EncodeToString(got[:]) != v.shared {
			t.Errorf("vector %s: ecdh = %x, want %s", v.idx, got, v.shared)
		}
		// The other role hashes the encodings the other way round.
		if other, _ := ecdh(priv, ours, theirs, !v.initiating); other == got {
			t.Errorf("vector %s: ecdh ignores the initiator flag", v.idx)
		}
		x, err := ellSwiftDecodeX(ours)
		if err != nil {
			t.Fatalf("vector %s: %v", v.idx, err)
		}
		if hex.EncodeToString(x[:]) != v.xOurs {
			t.Errorf("vector %s: decode(ours) = %x, want %s", v.idx, x, v.xOurs)
		}
		if xo := xOnly(priv.PubKey()); xo != x {
			t.Errorf("vector %s: x of our key %x, decoded %x", v.idx, xo, x)
		}
	}
}

func TestEllSwiftEncodeRoundTrip(t *testing.T) {
	for range 20 {
		k, err := btcec.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		enc, err := ellSwiftEncode(k.PubKey())
		if err != nil {
			t.Fatal(err)
		}
		x, err := ellSwiftDecodeX(enc)
		if err != nil {
			t.Fatal(err)
		}
		if x != xOnly(k.PubKey()) {
			t.Fatalf("decode(encode(P)) = %x, want %x", x, xOnly(k.PubKey()))
		}
	}
}

// TestAuthorityKeyEncoding uses the spec's 4.7.1 vector and the pairs SRI's key_utils
// tests with (secret key and the public key derived from it).
func TestAuthorityKeyEncoding(t *testing.T) {
	specRaw := []byte{118, 99, 112, 0, 151, 156, 28, 17, 175, 12, 48, 11, 205, 140, 127, 228, 134, 16, 252, 233, 185, 193, 30, 61, 174, 227, 90, 224, 176, 138, 116, 85}
	const specEnc = "9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh"
	var k AuthorityKey
	copy(k[:], specRaw)
	if got := k.String(); got != specEnc {
		t.Fatalf("String() = %s, want %s", got, specEnc)
	}
	got, err := ParseAuthorityKey(specEnc)
	if err != nil || got != k {
		t.Fatalf("ParseAuthorityKey = %x, %v; want %x", got, err, k)
	}
	// The bytes under the base58: prefix [1, 0], key, 4 checksum bytes.
	raw := base58.Decode(specEnc)
	sum := sha256.Sum256(raw[:34])
	sum = sha256.Sum256(sum[:])
	if want := append(append([]byte{1, 0}, specRaw...), sum[:4]...); !bytes.Equal(raw, want) {
		t.Fatalf("decoded %x, want %x", raw, want)
	}

	pairs := []struct{ secret, public string }{
		{"zmBEmPhqo3A92FkiLVvyCz6htc3e53ph3ZbD4ASqGaLjwnFLi", "9bDuixKmZqAJnrmP746n8zU1wyAQRrus7th9dxnkPg6RzQvCnan"},
		{"mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n", "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72"},
	}
	for _, p := range pairs {
		sk, err := ParseSecretKey(p.secret)
		if err != nil {
			t.Fatalf("ParseSecretKey(%s): %v", p.secret, err)
		}
		if got := EncodeSecretKey(sk); got != p.secret {
			t.Errorf("EncodeSecretKey = %s, want %s", got, p.secret)
		}
		if got := AuthorityFromKey(sk).PublicKey().String(); got != p.public {
			t.Errorf("public key of %s = %s, want %s", p.secret, got, p.public)
		}
	}
}

func TestAuthorityKeyRejects(t *testing.T) {
	var offCurve AuthorityKey // x = 5 has no y: 5^3+7 = 132 is not a square mod p
	offCurve[31] = 5
	for _, c := range []struct{ name, s, want string }{
		{"checksum", "9bDuixKmZqAJnrmP746n8zU1wyAQRrus7th9dxnkPg6RzQvCnam", "checksum"},
		{"version 12", "2myPhc5vkPzuC5FXNK5tee79WmP7uoLh55SxezoF8iqwF3E3rnPY", "version"},
		{"one byte short", "2wmHTKZkLg2QzXyEXGMBXzKP7JXDUt8yy9SA5hoQwERc92qR6c", "bytes"},
		{"not base58", "0OIl", ""},
		{"empty", "", ""},
		{"off curve", offCurve.String(), "authority key"},
		{"secret key given", "zmBEmPhqo3A92FkiLVvyCz6htc3e53ph3ZbD4ASqGaLjwnFLi", ""},
	} {
		_, err := ParseAuthorityKey(c.s)
		if err == nil || !errors.Is(err, errKeyFormat) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: ParseAuthorityKey(%q) err = %v, want errKeyFormat mentioning %q", c.name, c.s, err, c.want)
		}
	}
}

func TestSecretKeyRejects(t *testing.T) {
	var n btcec.ModNScalar
	n.SetInt(1)
	n.Negate() // n-1: the largest valid key
	top := n.Bytes()
	if _, err := ParseSecretKey(base58.CheckEncode(top[1:], top[0])); err != nil {
		t.Fatalf("n-1 refused: %v", err)
	}
	order := unhex(t, "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
	zero := make([]byte, 32)
	for name, b := range map[string][]byte{"zero": zero, "group order": order, "31 bytes": zero[:31]} {
		if _, err := ParseSecretKey(base58.CheckEncode(b[1:], b[0])); !errors.Is(err, errKeyFormat) {
			t.Errorf("%s: err = %v, want errKeyFormat", name, err)
		}
	}
}
