package oci

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// unpackLimits bound what one image may put on disk.
type unpackLimits struct {
	bytes int64 // regular files' contents, summed
	files int   // entries of the flattened file system
}

// unpacked is what unpack wrote.
type unpacked struct {
	bytes   int64
	files   int
	skipped int // device nodes, FIFOs and entry types that have no place in a rootfs
}

// unpack writes the flattened file system tr into dir, which must exist and be empty.
// Every name is checked before it is used: an absolute name is taken as relative to
// the root, and a name with a ".." component is refused, whatever it would resolve
// to, because a layer that tries to climb out is hostile. All writes go through an
// os.Root, so a symlink planted by an earlier entry cannot lead a later one out
// either. Device nodes and FIFOs are skipped (a job gets the runtime's minimal /dev
// and nothing else), set-user-ID, set-group-ID and sticky bits are dropped, and
// regular files' sizes are counted against lim as they are written.
func unpack(tr *tar.Reader, dir string, lim unpackLimits) (unpacked, error) {
	var u unpacked
	root, err := os.OpenRoot(dir)
	if err != nil {
		return u, err
	}
	defer root.Close()
	lchown := os.Geteuid() == 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return u, fmt.Errorf("oci: image file system: %w", err)
		}
		u.files++
		if u.files > lim.files {
			return u, fmt.Errorf("oci: image has more than %d files", lim.files)
		}
		name, err := entryName(h.Name)
		if err != nil {
			return u, err
		}
		if name == "." {
			continue
		}
		perm := fs.FileMode(h.Mode).Perm()
		if d := path.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return u, fmt.Errorf("oci: image file %q: %w", name, err)
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return u, fmt.Errorf("oci: image directory %q: %w", name, err)
			}
			if fi, err := root.Lstat(name); err != nil || !fi.IsDir() {
				return u, fmt.Errorf("oci: image directory %q is not a directory", name)
			}
			if err := root.Chmod(name, perm); err != nil {
				return u, fmt.Errorf("oci: image directory %q: %w", name, err)
			}
		case tar.TypeReg:
			if h.Size > lim.bytes-u.bytes {
				return u, fmt.Errorf("oci: image is over %d bytes unpacked", lim.bytes)
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return u, fmt.Errorf("oci: image file %q: %w", name, err)
			}
			n, err := io.Copy(f, io.LimitReader(tr, h.Size))
			if err == nil {
				err = f.Chmod(perm)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil && n != h.Size {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				return u, fmt.Errorf("oci: image file %q: %w", name, err)
			}
			u.bytes += n
		case tar.TypeSymlink:
			if len(h.Linkname) == 0 || len(h.Linkname) > 4096 {
				return u, fmt.Errorf("oci: image symlink %q: bad target", name)
			}
			// The target is not resolved here: it is resolved inside the container,
			// whose root is the image's.
			if err := root.Symlink(h.Linkname, name); err != nil {
				return u, fmt.Errorf("oci: image symlink %q: %w", name, err)
			}
		case tar.TypeLink:
			target, err := entryName(h.Linkname)
			if err != nil {
				return u, err
			}
			if err := root.Link(target, name); err != nil {
				return u, fmt.Errorf("oci: image hard link %q: %w", name, err)
			}
		default:
			// Character and block devices, FIFOs and anything else.
			u.skipped++
			continue
		}
		if lchown {
			if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
				return u, fmt.Errorf("oci: image file %q: %w", name, err)
			}
		}
	}
	// Mount points the runtime needs; made here, once, because the root file system
	// is read-only (and shared by the image's containers) when they run.
	// runc gives a tmpfs the mode of the directory it is mounted on, so /tmp is
	// made world-writable and sticky, as jobs expect it.
	for _, d := range []string{"proc", "dev", "tmp"} {
		fi, err := root.Lstat(d)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			mode := fs.FileMode(0o755)
			if d == "tmp" {
				mode = 0o777 | fs.ModeSticky
			}
			if err := root.Mkdir(d, 0o755); err != nil {
				return u, err
			}
			if err := root.Chmod(d, mode); err != nil {
				return u, err
			}
		case err != nil:
			return u, err
		case !fi.IsDir():
			return u, fmt.Errorf("oci: image's /%s is not a directory", d)
		}
	}
	return u, nil
}

// entryName cleans a tar entry's name to a relative path, refusing any that has a
// ".." component.
func entryName(n string) (string, error) {
	if len(n) > 4096 || strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("oci: image has a bad file name")
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("oci: image file %q climbs out of the root file system", n)
		}
	}
	s := strings.TrimLeft(n, "/")
	if s == "" {
		return ".", nil
	}
	return path.Clean(s), nil
}
