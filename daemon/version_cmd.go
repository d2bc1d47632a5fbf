package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/sightd/sightd/daemon/version"
	"github.com/sightd/sightd/quant/tflite"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print sightd's version and its inference runtimes' (LiteRT; TensorFlow Lite for the Edge TPU)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "sightd %s (%s, %s/%s)\n", version.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			fmt.Fprintf(w, "runtime %s\n", tflite.Version())
			return nil
		},
	}
}
