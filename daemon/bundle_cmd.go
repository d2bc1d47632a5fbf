package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sightd/sightd/ota"
)

func newBundleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Make, sign and verify model bundles for over-the-air updates",
		Long: "A bundle is a tar (optionally gzip'ed) of a model directory: manifest.json first, then\n" +
			"manifest.sig, an Ed25519 signature over the manifest's exact bytes, then the files the\n" +
			"manifest names with their sizes and SHA-256. Devices trust the public keys listed in\n" +
			"ota.trusted_keys and install only versions above the highest they have accepted.\n\n" +
			"  sightd bundle keygen -o release          # release.key (secret), release.pub\n" +
			"  sightd bundle pack model/ -o model.tar.gz\n" +
			"  sightd bundle sign --key release.key model.tar.gz\n" +
			"  sightd bundle verify --pubkey release.pub model.tar.gz",
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newBundleKeygenCmd(), newBundlePackCmd(), newBundleSignCmd(), newBundleVerifyCmd())
	return cmd
}

func newBundleKeygenCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "keygen -o NAME",
		Short: "Make a signing key: NAME.key (secret, mode 0600) and NAME.pub",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return errors.New("-o NAME is required")
			}
			key, err := ota.GenerateKey(nil)
			if err != nil {
				return err
			}
			pub := key.Public()
			keyFile, pubFile := name+".key", name+".pub"
			// Neither file is overwritten: losing a signing key strands
			// every device that trusts only it.
			for _, f := range []string{keyFile, pubFile} {
				if _, err := os.Lstat(f); err == nil {
					return fmt.Errorf("%s exists; not overwriting a key", f)
				}
			}
			if err := writeNew(keyFile, key.Marshal(), 0o600); err != nil {
				return err
			}
			if err := writeNew(pubFile, pub.Marshal(), 0o644); err != nil {
				os.Remove(keyFile)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (secret: keep it off the devices) and %s\nkey id %s\n"+
				"trust it in the configuration (ota.trusted_keys) as the file's path or inline:\n  %s\n",
				keyFile, pubFile, pub.ID, pub)
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "output", "o", "", "name of the key files, without .key or .pub")
	return cmd
}

// writeNew creates path, which must not exist, with data.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// writeAtomic writes path through a temporary file in the same directory,
// renamed over it once complete, so that a failure never leaves half a
// bundle under the name.
func writeAtomic(path string, mode os.FileMode, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// isGzipName says whether a bundle's file name asks for gzip.
func isGzipName(path string) bool {
	return strings.HasSuffix(path, ".gz") || strings.HasSuffix(path, ".tgz")
}

func newBundlePackCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "pack DIR -o OUT.tar[.gz]",
		Short: "Fill in the sizes and hashes of DIR's manifest.json and write the bundle tar",
		Long: "Computes the size and SHA-256 of every file DIR/manifest.json names, writes them into\n" +
			"the manifest (rewriting it only when they changed) and writes the unsigned bundle tar,\n" +
			"gzip'ed when OUT ends in .gz or .tgz. Sign it next with `sightd bundle sign`.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("-o OUT.tar[.gz] is required")
			}
			var files int
			var name string
			var version int64
			err := writeAtomic(out, 0o644, func(w io.Writer) error {
				m, err := ota.Pack(args[0], w, isGzipName(out))
				if err == nil {
					files, name, version = len(m.Files()), m.Name, m.Version
				}
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s version %d, %d files, unsigned\n", out, name, version, files)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "bundle tar to write (.tar, .tar.gz or .tgz)")
	return cmd
}

// parseExpiry reads --expires: a duration from now or an RFC 3339 time.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("--expires %s: want a positive duration", s)
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--expires %q: want a duration (720h) or an RFC 3339 time (2027-01-31T00:00:00Z)", s)
	}
	return t, nil
}

func newBundleSignCmd() *cobra.Command {
	var keyFile, expires, out string
	cmd := &cobra.Command{
		Use:   "sign --key K [--expires 720h|TIME] IN.tar [-o OUT]",
		Short: "Sign a bundle tar (in place unless -o), replacing any signature",
		Long: "Signs the bundle's manifest.json with the private key K and puts the signature,\n" +
			"manifest.sig, right after it; every file is checked against the manifest on the way.\n" +
			"Devices refuse the signature after --expires: a duration from now or an RFC 3339 time.\n" +
			"Without -o the tar is replaced atomically (a temporary file renamed over it).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyFile == "" {
				return errors.New("--key is required")
			}
			data, err := os.ReadFile(keyFile)
			if err != nil {
				return err
			}
			key, err := ota.ParsePrivateKey(data)
			if err != nil {
				return fmt.Errorf("%s: %w", keyFile, err)
			}
			exp, err := parseExpiry(expires, time.Now())
			if err != nil {
				return err
			}
			in := args[0]
			if out == "" {
				out = in
			}
			mode := os.FileMode(0o644)
			if fi, err := os.Stat(in); err == nil && out == in {
				mode = fi.Mode().Perm()
			}
			f, err := os.Open(in)
			if err != nil {
				return err
			}
			defer f.Close()
			var s *ota.Signed
			err = writeAtomic(out, mode, func(w io.Writer) (err error) {
				s, err = ota.SignTar(f, w, key, exp)
				return err
			})
			if err != nil {
				return fmt.Errorf("%s: %w", in, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s: %s version %d, key %s, expires %s\n",
				out, s.Name, s.Version, s.KeyID, s.Expires.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "private key file K (from sightd bundle keygen)")
	cmd.Flags().StringVar(&expires, "expires", "720h", "when devices stop accepting the signature: a duration from now or an RFC 3339 time")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the signed tar here instead of replacing IN")
	return cmd
}

func newBundleVerifyCmd() *cobra.Command {
	var pubkeys []string
	var floor int64
	cmd := &cobra.Command{
		Use:   "verify --pubkey P [--pubkey P2] [--floor N] BUNDLE.tar",
		Short: "Check a bundle tar as a device would, before it is unpacked",
		Long: "Checks the signature by one of the given public keys (files or inline key lines), its\n" +
			"expiry, that the version is above --floor, and every file's name, type, size and SHA-256,\n" +
			"writing nothing. Prints the bundle's name, version, key, expiry and files; exits\n" +
			"non-zero, saying why, when a device would refuse it.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(pubkeys) == 0 {
				return errors.New("--pubkey is required")
			}
			keys, err := ota.LoadKeyring(pubkeys)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			v, err := ota.VerifyTar(f, ota.Policy{Keys: keys, Floor: floor, Now: time.Now()})
			if err != nil {
				return fmt.Errorf("%s: refused: %w", args[0], err)
			}
			m, s := v.Manifest, v.Signed
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "%s: ok\n", args[0])
			fmt.Fprintf(w, "name\t%s\n", m.Name)
			fmt.Fprintf(w, "version\t%d\n", m.Version)
			fmt.Fprintf(w, "key\t%s\n", s.KeyID)
			fmt.Fprintf(w, "expires\t%s (in %s)\n", s.Expires.Format(time.RFC3339), time.Until(s.Expires).Round(time.Minute))
			fmt.Fprintf(w, "manifest sha256\t%s\n", s.ManifestSHA256)
			fmt.Fprintf(w, "files\n")
			for _, f := range m.Files() {
				fmt.Fprintf(w, "  %s\t%d bytes\tsha256 %s\n", f.Ref.File, f.Ref.Size, f.Ref.SHA256)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringArrayVar(&pubkeys, "pubkey", nil, "trusted public key: a .pub file or an inline key line (repeatable)")
	cmd.Flags().Int64Var(&floor, "floor", 0, "refuse versions not above this (a device's highest accepted version)")
	return cmd
}
