package update

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"passerelle/pkg/atomicfile"
	"passerelle/pkg/nocsig"
)

// hashFile returns a file's size and SHA-256.
func hashFile(path string) (Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return Image{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", path, err)
	}
	return Image{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// WriteBundle writes the update bundle of the slot image at imagePath
// into out: m with the image's size and SHA-256 filled in, signed by every
// key, then the image. out is replaced atomically (temporary file, fsync,
// rename, fsync directory): a bundle is whole or absent. It fails if the
// image changed while it was copied. It returns the manifest signed.
func WriteBundle(out, imagePath string, m Manifest, keys ...nocsig.Key) (Manifest, error) {
	img, err := hashFile(imagePath)
	if err != nil {
		return m, err
	}
	m.Image = img
	header, err := Header(m, keys...)
	if err != nil {
		return m, err
	}
	return m, writeBundle(out, header, imagePath, img)
}

func writeBundle(out string, header []byte, imagePath string, want Image) (err error) {
	img, err := os.Open(imagePath)
	if err != nil {
		return err
	}
	defer img.Close()
	dir := filepath.Dir(out)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(out)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(header); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), img)
	if err != nil {
		return err
	}
	if n != want.Size || hex.EncodeToString(h.Sum(nil)) != want.SHA256 {
		return fmt.Errorf("%s changed while it was signed", imagePath)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), out); err != nil {
		return err
	}
	return atomicfile.SyncDir(dir)
}

// FileOf is the record of one file the image holds: its base name, size
// and SHA-256.
func FileOf(path string) (File, error) {
	img, err := hashFile(path)
	if err != nil {
		return File{}, err
	}
	return File{Path: filepath.Base(path), Size: img.Size, SHA256: img.SHA256}, nil
}
