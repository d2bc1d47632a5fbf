// Command sightd is the natural-language camera alerting daemon.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Network cameras decode in worker processes: a decoder crash ends one
	// camera's worker (restarted with back-off), not the daemon.
	useCaptureWorkers()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "sightd:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "sightd",
		Short:         "Natural-language camera alerts on the edge",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCmd(), newEncodeCmd(), newSimilarityCmd(), newTokenizeCmd(), newCameraCmd(), newRuleCmd(), newConfigCmd(), newRunCmd(), newBenchCmd(), newModelCmd())
	root.AddCommand(newBundleCmd())
	return root
}
