package sandbox

import (
	"bytes"
	"io"
	"io/fs"
	"slices"
	"time"
)

// inputFS is a job's inputs as a flat, read-only fs.FS: the only files a module can
// see. Its files have no Write method, so wazero cannot write through them.
type inputFS map[string][]byte

func (f inputFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		names := make([]string, 0, len(f))
		for n := range f {
			names = append(names, n)
		}
		slices.Sort(names)
		entries := make([]fs.DirEntry, len(names))
		for i, n := range names {
			entries[i] = fileInfo{name: n, size: int64(len(f[n]))}
		}
		return &inputDir{entries: entries}, nil
	}
	b, ok := f[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &inputFile{Reader: bytes.NewReader(b), info: fileInfo{name: name, size: int64(len(b))}}, nil
}

type inputFile struct {
	*bytes.Reader // Read, ReadAt, Seek
	info          fileInfo
}

func (f *inputFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *inputFile) Close() error               { return nil }

type inputDir struct {
	entries []fs.DirEntry
	next    int
}

func (d *inputDir) Stat() (fs.FileInfo, error) { return fileInfo{name: ".", dir: true}, nil }
func (d *inputDir) Close() error               { return nil }
func (d *inputDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: ".", Err: fs.ErrInvalid}
}

// ReadDir follows fs.ReadDirFile: n <= 0 returns the rest, n > 0 at most n and io.EOF
// at the end.
func (d *inputDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.next:]
	if n <= 0 {
		d.next = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.next += n
	return rest[:n], nil
}

// fileInfo describes an input file or the input directory, with a fixed time so a
// module sees the same bytes on every provider.
type fileInfo struct {
	name string
	size int64
	dir  bool
}

func (i fileInfo) Name() string { return i.name }
func (i fileInfo) Size() int64  { return i.size }
func (i fileInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (i fileInfo) ModTime() time.Time         { return time.Unix(0, 0) }
func (i fileInfo) IsDir() bool                { return i.dir }
func (i fileInfo) Sys() any                   { return nil }
func (i fileInfo) Type() fs.FileMode          { return i.Mode().Type() }
func (i fileInfo) Info() (fs.FileInfo, error) { return i, nil }
