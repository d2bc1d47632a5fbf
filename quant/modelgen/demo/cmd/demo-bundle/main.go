// Command demo-bundle writes sightd's demo model bundle: small int8 and
// float TensorFlow Lite towers designed by hand (colour and brightness
// words), generated on this machine rather than downloaded.
//
//	go run ./quant/modelgen/demo/cmd/demo-bundle -o DIR [-tar FILE] [-version N]
//
// DIR must not exist or be empty. With -tar the bundle is also written as a
// tar (gzip-compressed when FILE ends in .gz or .tgz), manifest.json first,
// as the OTA path reads it.
package main

import (
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/modelgen/demo"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo-bundle:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("demo-bundle", flag.ContinueOnError)
	out := fs.String("o", "", "bundle directory to write (must not exist or be empty)")
	tarPath := fs.String("tar", "", "also write the bundle as a tar to this file (.tar.gz or .tgz: gzip-compressed)")
	version := fs.Int64("version", 1, "manifest version")
	bench := fs.Bool("bench", false, "write the benchmark bundle (MobileNetV2-like 224x224 int8 image tower, 512-d) instead")
	large := fs.Bool("large", false, "with -bench: the 25 MB variant (float32 image tower, CLIP-sized token table) for update benchmarks")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("want -o DIR and no other arguments")
	}
	if err := demo.Build(*out, demo.Options{Version: *version, Bench: *bench, Large: *large}); err != nil {
		return err
	}
	b, err := bundle.Open(*out)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.CheckModels(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %s version %d, embedding dim %d\n", *out, b.Manifest.Name, b.Manifest.Version, b.Manifest.EmbeddingDim)
	if *tarPath != "" {
		if err := writeTar(b, *tarPath); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", *tarPath)
	}
	return nil
}

func writeTar(b *bundle.Bundle, path string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	var w io.Writer = f
	var zw *gzip.Writer
	if strings.HasSuffix(path, ".gz") || strings.HasSuffix(path, ".tgz") {
		zw, err = gzip.NewWriterLevel(f, gzip.BestCompression)
		if err != nil {
			return err
		}
		w = zw
	}
	if err := b.WriteTar(w); err != nil {
		return err
	}
	if zw != nil {
		return zw.Close()
	}
	return nil
}
