package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/sightd/sightd/daemon/version"
	"github.com/sightd/sightd/quant/tflite"
)

func newVersionCmd() *cobra.Command {
	var memory bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print sightd's version and its inference runtimes' (LiteRT; TensorFlow Lite for the Edge TPU)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "sightd %s (%s, %s/%s)\n", version.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			fmt.Fprintf(w, "runtime %s\n", tflite.Version())
			if memory {
				return printMemory(w)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&memory, "memory", false, "also print this process's memory (RSS, PSS, private), the shared libraries it maps and its time since start: what loading sightd costs before any work")
	return cmd
}
