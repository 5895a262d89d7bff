package noise

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
)

func TestCertificateBytes(t *testing.T) {
	var sig [64]byte
	for i := range sig {
		sig[i] = byte(0x80 + i)
	}
	cases := []struct {
		c    Certificate
		want string
	}{
		{Certificate{}, "0000" + "00000000" + "00000000" + hex.EncodeToString(make([]byte, 64))},
		{Certificate{Version: 0x0102, ValidFrom: 0x03040506, NotValidAfter: 0xa0b0c0d0, Signature: sig},
			"0201" + "06050403" + "d0c0b0a0" + hex.EncodeToString(sig[:])},
		{Certificate{Version: 0, ValidFrom: 1700000000, NotValidAfter: 1800000000, Signature: sig},
			"0000" + "00f15365" + "00d2496b" + hex.EncodeToString(sig[:])},
	}
	for _, c := range cases {
		b := c.c.Bytes()
		if got := hex.EncodeToString(b[:]); got != c.want {
			t.Errorf("%+v: bytes %s, want %s", c.c, got, c.want)
		}
		back, err := ParseCertificate(b[:])
		if err != nil || back != c.c {
			t.Errorf("ParseCertificate(%x) = %+v, %v", b, back, err)
		}
	}
	for _, n := range []int{0, 73, 75} {
		if _, err := ParseCertificate(make([]byte, n)); err == nil {
			t.Errorf("ParseCertificate of %d bytes: no error", n)
		}
	}
}

// TestCertificateDigest pins what is signed: SHA-256 over the 10 bytes of integers and the
// 32-byte x-only server key, nothing else (not the authority key, not the signature).
func TestCertificateDigest(t *testing.T) {
	c := Certificate{Version: 0, ValidFrom: 1700000000, NotValidAfter: 1800000000}
	c.Signature[0] = 0xff
	var server [32]byte
	for i := range server {
		server[i] = byte(i)
	}
	want := sha256.Sum256(unhex(t, "0000"+"00f15365"+"00d2496b"+"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"))
	if got := c.digest(server); got != want {
		t.Fatalf("digest %x, want %x", got, want)
	}
}

func newKey(tb testing.TB) *btcec.PrivateKey {
	tb.Helper()
	k, err := btcec.NewPrivateKey()
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestCertificateVerify(t *testing.T) {
	auth := AuthorityFromKey(newKey(t))
	server := newKey(t)
	from, until := time.Unix(1_700_000_000, 0), time.Unix(1_700_086_400, 0)
	c, err := auth.Certify(server.PubKey(), from, until)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != CertificateVersion || c.ValidFrom != 1_700_000_000 || c.NotValidAfter != 1_700_086_400 {
		t.Fatalf("certificate fields %+v", c)
	}
	sx := xOnly(server.PubKey())
	skew := DefaultClockSkew
	ok := []time.Time{from, until, from.Add(-skew), until.Add(skew), from.Add(time.Hour)}
	for _, now := range ok {
		if err := c.Verify(auth.PublicKey(), sx, now, skew); err != nil {
			t.Errorf("at %v: %v", now.Unix(), err)
		}
	}
	for _, now := range []time.Time{from.Add(-skew - time.Second), until.Add(skew + time.Second), time.Unix(0, 0)} {
		if err := c.Verify(auth.PublicKey(), sx, now, skew); !errors.Is(err, ErrCertificateTime) {
			t.Errorf("at %v: err %v, want ErrCertificateTime", now.Unix(), err)
		}
	}
	other := AuthorityFromKey(newKey(t))
	if err := c.Verify(other.PublicKey(), sx, from, skew); !errors.Is(err, ErrCertificate) {
		t.Errorf("other authority: err %v, want ErrCertificate", err)
	}
	if err := c.Verify(auth.PublicKey(), xOnly(newKey(t).PubKey()), from, skew); !errors.Is(err, ErrCertificate) {
		t.Errorf("other server key: err %v, want ErrCertificate", err)
	}
	// Every signed field is covered: stretching the window breaks the signature.
	for _, bad := range []Certificate{
		{Version: 1, ValidFrom: c.ValidFrom, NotValidAfter: c.NotValidAfter, Signature: c.Signature},
		{Version: c.Version, ValidFrom: c.ValidFrom - 1, NotValidAfter: c.NotValidAfter, Signature: c.Signature},
		{Version: c.Version, ValidFrom: c.ValidFrom, NotValidAfter: c.NotValidAfter + 1, Signature: c.Signature},
	} {
		if err := bad.Verify(auth.PublicKey(), sx, from.Add(time.Hour), skew); !errors.Is(err, ErrCertificate) {
			t.Errorf("%+v: err %v, want ErrCertificate", bad, err)
		}
	}
	for i := range 64 {
		bad := c
		bad.Signature[i] ^= 0x01
		if err := bad.Verify(auth.PublicKey(), sx, from, skew); !errors.Is(err, ErrCertificate) {
			t.Errorf("signature byte %d flipped: err %v, want ErrCertificate", i, err)
		}
	}
}

func TestCertifyRange(t *testing.T) {
	auth := AuthorityFromKey(newKey(t))
	pub := newKey(t).PubKey()
	for _, w := range [][2]time.Time{
		{time.Unix(-1, 0), time.Unix(10, 0)},
		{time.Unix(0, 0), time.Unix(1<<32, 0)},
		{time.Unix(10, 0), time.Unix(9, 0)},
	} {
		if _, err := auth.Certify(pub, w[0], w[1]); err == nil {
			t.Errorf("window %d..%d: no error", w[0].Unix(), w[1].Unix())
		}
	}
}
