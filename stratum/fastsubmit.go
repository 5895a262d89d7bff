package stratum

import (
	"bytes"
	"encoding/json"
)

// parseSubmitFast decodes the usual shape of a mining.submit line without reflection:
//
//	{"id":ID,"method":"mining.submit","params":["w","j","e2","nt","no"(,"vb")]}
//
// with the keys in any order, optional spaces (cpuminer adds them), a numeric or
// plain-string id, and parameters that are plain strings (no escapes). Anything else
// returns ok=false and the caller uses the full JSON decoder; for every line it
// accepts, it gives the same result as ParseMessage followed by ParseSubmit
// (FuzzSubmitFastMatchesJSON holds it to that).
func parseSubmitFast(line []byte) (id json.RawMessage, s Submit, ok bool) {
	p := fastParser{b: bytes.TrimSpace(line)}
	if !p.eat('{') {
		return nil, s, false
	}
	var sawMethod, sawParams, sawID bool
	for i := 0; i < 3; i++ {
		key, ok := p.str()
		if !ok || !p.eat(':') {
			return nil, s, false
		}
		switch key {
		case "id":
			if sawID {
				return nil, s, false
			}
			sawID = true
			if id, ok = p.id(); !ok {
				return nil, s, false
			}
		case "method":
			if sawMethod {
				return nil, s, false
			}
			sawMethod = true
			if m, ok := p.str(); !ok || m != "mining.submit" {
				return nil, s, false
			}
		case "params":
			if sawParams {
				return nil, s, false
			}
			sawParams = true
			var params [6]string
			n := 0
			if !p.eat('[') {
				return nil, s, false
			}
			for {
				if n == 0 && p.eat(']') {
					break
				}
				v, ok := p.str()
				if !ok || n == len(params) {
					return nil, s, false
				}
				params[n] = v
				n++
				if p.eat(',') {
					continue
				}
				if !p.eat(']') {
					return nil, s, false
				}
				break
			}
			if n < 5 {
				return nil, s, false
			}
			s = Submit{Worker: params[0], JobID: params[1], Extranonce2: params[2], NTime: params[3], Nonce: params[4], VersionBits: params[5]}
		default:
			return nil, s, false
		}
		if i < 2 && !p.eat(',') {
			return nil, s, false
		}
	}
	if !p.eat('}') || p.i != len(p.b) || !sawID || !sawMethod || !sawParams {
		return nil, s, false
	}
	return id, s, true
}

type fastParser struct {
	b []byte
	i int
}

func (p *fastParser) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t') {
		p.i++
	}
}

func (p *fastParser) eat(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a JSON string made of printable ASCII without escapes.
func (p *fastParser) str() (string, bool) {
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", false
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		c := p.b[j]
		if c == '"' {
			p.i = j + 1
			return string(p.b[start:j]), true
		}
		if c == '\\' || c < 0x20 || c >= 0x7f {
			return "", false
		}
	}
	return "", false
}

// id reads a small non-negative integer, a plain string or null, as raw JSON.
func (p *fastParser) id() (json.RawMessage, bool) {
	p.space()
	start := p.i
	switch {
	case p.i < len(p.b) && p.b[p.i] == '"':
		if _, ok := p.str(); !ok {
			return nil, false
		}
	case bytes.HasPrefix(p.b[p.i:], []byte("null")):
		p.i += 4
	default:
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' && p.i-start < 15 {
			p.i++
		}
		if p.i == start || (p.b[start] == '0' && p.i-start > 1) {
			return nil, false
		}
	}
	// A copy: the line's buffer is reused for the next line while this submit's reply
	// may still be waiting.
	return json.RawMessage(bytes.Clone(p.b[start:p.i])), true
}
