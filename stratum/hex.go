package stratum

import (
	"encoding/hex"
	"fmt"
)

// decodeHex decodes s, requiring exactly n bytes unless n < 0.
func decodeHex(s string, n int) ([]byte, error) {
	if n >= 0 && len(s) != 2*n {
		return nil, fmt.Errorf("want %d hex digits, got %d", 2*n, len(s))
	}
	return hex.DecodeString(s)
}
