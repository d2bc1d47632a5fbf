package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sightd/sightd/daemon/config"
)

// exitError carries a process exit code: 2 for a bad configuration, so
// that systemd and scripts can tell it from a runtime failure.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// DefaultConfig is where the daemon's configuration lives under systemd.
const DefaultConfig = "/etc/sightd/sightd.yml"

// loadConfig reads the configuration; a bad one exits with code 2.
func loadConfig(path string) (*config.Config, error) {
	c, err := config.Load(path)
	if err != nil {
		if errors.Is(err, config.ErrInvalid) {
			return nil, &exitError{code: 2, err: err}
		}
		return nil, err
	}
	return c, nil
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with the configuration file"}
	var path string
	check := &cobra.Command{
		Use:   "check [-c FILE]",
		Short: "Validate the configuration and report every problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (device %s, %d cameras, %d rules, bundle %s)\n",
				path, c.Device.ID, len(c.Cameras), len(c.Rules), c.Model.Bundle)
			return nil
		},
	}
	check.Flags().StringVarP(&path, "config", "c", DefaultConfig, "configuration file")
	cmd.AddCommand(check)
	return cmd
}
