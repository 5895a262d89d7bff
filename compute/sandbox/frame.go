package sandbox

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// A request travels to the child as a frame: a 4-byte big-endian length, a JSON
// header of that length (the arguments, the limits, the sizes of what follows), then
// the module, the standard input and each input file in name order, raw.
//
// Why not one JSON document: the module is megabytes, and decoding it from base64 in
// JSON took the child about 25 ms of the 75 ms it needs to start a cached job.
//
// A service's frame (Runner.Serve) says so in its header, carries no standard input,
// and is followed on the same stream by the service's requests (see serve.go).

// maxHeader bounds a request's JSON header: arguments and input names only.
const maxHeader = 1 << 20

type frameHeader struct {
	Args        []string
	MemoryLimit uint64
	CPULimit    time.Duration
	Timeout     time.Duration
	MaxOutput   int
	CacheDir    string
	Serve       bool // a service: requests follow the frame on the same stream
	ModuleSize  int
	StdinSize   int
	Inputs      []frameInput // in name order
}

type frameInput struct {
	Name string
	Size int
}

// encodeRequest returns the frame for s as a reader over s's own bytes, without
// copying the module or inputs.
func encodeRequest(s Spec, cacheDir string) (io.Reader, error) {
	h := frameHeader{Args: s.Args, MemoryLimit: s.MemoryLimit, CPULimit: s.CPULimit, Timeout: s.Timeout,
		MaxOutput: s.MaxOutput, CacheDir: cacheDir, Serve: s.serve, ModuleSize: len(s.Module), StdinSize: len(s.Stdin)}
	names := make([]string, 0, len(s.Inputs))
	for name := range s.Inputs {
		names = append(names, name)
	}
	slices.Sort(names)
	parts := []io.Reader{nil, bytes.NewReader(s.Module), bytes.NewReader(s.Stdin)}
	for _, name := range names {
		h.Inputs = append(h.Inputs, frameInput{Name: name, Size: len(s.Inputs[name])})
		parts = append(parts, bytes.NewReader(s.Inputs[name]))
	}
	js, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("sandbox: encode request: %w", err)
	}
	if len(js) > maxHeader {
		return nil, fmt.Errorf("sandbox: encode request: header of %d bytes over %d", len(js), maxHeader)
	}
	head := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(js)), uint32(len(js)))
	parts[0] = bytes.NewReader(append(head, js...))
	return io.MultiReader(parts...), nil
}

// decodeRequest reads a frame. Sizes are checked against the Spec limits before
// anything is allocated for them, and the frame must end where the header says.
func decodeRequest(r io.Reader) (Spec, string, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return Spec{}, "", fmt.Errorf("header length: %w", err)
	}
	hl := binary.BigEndian.Uint32(n[:])
	if hl > maxHeader {
		return Spec{}, "", fmt.Errorf("header of %d bytes over %d", hl, maxHeader)
	}
	js := make([]byte, hl)
	if _, err := io.ReadFull(r, js); err != nil {
		return Spec{}, "", fmt.Errorf("header: %w", err)
	}
	var h frameHeader
	if err := json.Unmarshal(js, &h); err != nil {
		return Spec{}, "", fmt.Errorf("header: %w", err)
	}
	if h.ModuleSize < 0 || h.ModuleSize > MaxModuleSize {
		return Spec{}, "", fmt.Errorf("module size %d not in 0..%d", h.ModuleSize, MaxModuleSize)
	}
	if len(h.Inputs) > MaxInputs {
		return Spec{}, "", fmt.Errorf("%d inputs, over %d", len(h.Inputs), MaxInputs)
	}
	total := h.StdinSize
	if total < 0 {
		return Spec{}, "", errors.New("negative stdin size")
	}
	for _, in := range h.Inputs {
		if in.Size < 0 || in.Size > MaxInputSize {
			return Spec{}, "", fmt.Errorf("input %q size %d not in 0..%d", in.Name, in.Size, MaxInputSize)
		}
		total += in.Size
	}
	if total > MaxInputSize {
		return Spec{}, "", fmt.Errorf("%d bytes of input, over %d", total, MaxInputSize)
	}
	read := func(what string, size int) ([]byte, error) {
		b := make([]byte, size)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return b, nil
	}
	s := Spec{Args: h.Args, MemoryLimit: h.MemoryLimit, CPULimit: h.CPULimit, Timeout: h.Timeout, MaxOutput: h.MaxOutput, serve: h.Serve}
	var err error
	if s.Module, err = read("module", h.ModuleSize); err != nil {
		return Spec{}, "", err
	}
	if s.Stdin, err = read("stdin", h.StdinSize); err != nil {
		return Spec{}, "", err
	}
	if len(h.Inputs) > 0 {
		s.Inputs = make(map[string][]byte, len(h.Inputs))
	}
	for _, in := range h.Inputs {
		if _, dup := s.Inputs[in.Name]; dup {
			return Spec{}, "", fmt.Errorf("input %q twice", in.Name)
		}
		if s.Inputs[in.Name], err = read("input "+in.Name, in.Size); err != nil {
			return Spec{}, "", err
		}
	}
	if s.serve {
		// A service's requests follow on the same stream: they are the module's.
		return s, h.CacheDir, nil
	}
	if k, _ := r.Read(n[:1]); k != 0 {
		return Spec{}, "", errors.New("bytes after the frame")
	}
	return s, h.CacheDir, nil
}
