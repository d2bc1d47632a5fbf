package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/sightd/sightd/daemon/api"
	"github.com/sightd/sightd/daemon/config"
	"github.com/sightd/sightd/ota"
	"github.com/sightd/sightd/store"
)

func newModelCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "model", Short: "Installed models and over-the-air updates"}
	var path string
	cmd.PersistentFlags().StringVarP(&path, "config", "c", DefaultConfig, "configuration file")

	status := &cobra.Command{
		Use:   "status [-c FILE]",
		Short: "Show the running model, the previous one, a trial in progress and the anti-rollback floor",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			return modelStatus(cmd.Context(), cmd.OutOrStdout(), cfg)
		},
	}

	var version int64
	install := &cobra.Command{
		Use:   "install [-c FILE] [--version N] [URL]",
		Short: "Install a signed bundle now, with sightd stopped (a running sightd takes model/install over MQTT)",
		Long: `Downloads (resuming), verifies, unpacks, smoke-tests and re-embeds every rule,
then switches to the bundle at URL, or to the newest entry of ota.index_url
when no URL is given. The new model's trial runs when sightd next starts.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			url := ""
			if len(args) == 1 {
				url = args[0]
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.Log)
			bar := newPercentBar(cmd.ErrOrStderr())
			v, err := installOffline(cmd.Context(), cfg, log, url, version, nil, func(s ota.State) {
				if s.InProgress {
					bar(s.Percentage, string(s.Step))
				}
			})
			bar(-1, "")
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "model version %d installed; its trial of %d frames runs when sightd starts\n", v, cfg.OTA.TrialFrames)
			return nil
		},
	}
	install.Flags().Int64Var(&version, "version", 0, "the version the bundle must be (0: any newer one)")

	rollback := &cobra.Command{
		Use:   "rollback [-c FILE]",
		Short: "Go back to the previous model (or the configured bundle), with sightd stopped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			return modelRollback(cmd.Context(), cmd.OutOrStdout(), cfg, newLogger(cmd.ErrOrStderr(), cfg.Log))
		},
	}
	cmd.AddCommand(status, install, rollback)
	return cmd
}

// errRunning explains a locked store: the daemon owns it.
func errRunning(cfg *config.Config, err error) error {
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("sightd is running (its store is locked): stop it, or send the update over MQTT on sightd/%s/model/install: %w", cfg.Device.ID, err)
	}
	return err
}

// installOffline runs one update without cameras: the same code path the
// daemon runs, against the store, the models directory and the rules. It
// returns the version running at the end. step and report may be nil.
func installOffline(ctx context.Context, cfg *config.Config, log zerolog.Logger, url string, version int64,
	step func(ota.Step), report func(ota.State)) (int64, error) {
	if !cfg.OTA.Enabled() {
		return 0, errors.New("ota.trusted_keys is empty: model updates are off")
	}
	d := &daemon{cfg: cfg, log: log, metrics: api.NewMetrics()}
	mlog := componentLogger(log, cfg.Log, "model").With().Str("component", "model").Logger()
	d.rt = runtimeOptions(cfg.Model, &mlog)
	defer d.close()
	if err := d.openModel(ctx); err != nil {
		return 0, errRunning(cfg, err)
	}
	u, err := d.newUpdater()
	if err != nil {
		return 0, err
	}
	u.Step, u.Report = step, report
	err = u.Install(ctx, url, version)
	return d.running.Load(), err
}

func modelStatus(ctx context.Context, w io.Writer, cfg *config.Config) error {
	fmt.Fprintf(w, "configured bundle: %s\n", cfg.Model.Bundle)
	if !cfg.OTA.Enabled() {
		fmt.Fprintln(w, "updates: off (ota.trusted_keys is empty)")
		return nil
	}
	s, err := ota.Inspect(cfg.OTA.Dir)
	if err != nil {
		return err
	}
	if s.Current == 0 {
		fmt.Fprintf(w, "installed: none in %s (the configured bundle runs)\n", cfg.OTA.Dir)
	} else {
		fmt.Fprintf(w, "installed: version %d in %s\n", s.Current, cfg.OTA.Dir)
	}
	if s.Previous != 0 {
		fmt.Fprintf(w, "previous: version %d (kept for a rollback)\n", s.Previous)
	}
	if s.Trial != nil {
		fmt.Fprintf(w, "trial: version %d since %s, %d restart(s) of %d allowed; rolls back to %s\n", s.Trial.Version,
			s.Trial.Started.Format("2006-01-02 15:04:05Z07:00"), s.Trial.Restarts, cfg.OTA.TrialRestarts, versionOrBundle(s.Trial.Previous))
	}
	st, err := store.Open(ctx, cfg.Store, zerolog.Nop())
	if err != nil {
		fmt.Fprintf(w, "anti-rollback floor: unknown (%v)\n", errRunning(cfg, err))
		return nil
	}
	defer st.Close()
	_, highest, err := st.ModelVersions(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "anti-rollback floor: version %d (an update must be newer)\n", highest)
	return nil
}

func versionOrBundle(v int64) string {
	if v == 0 {
		return "the configured bundle"
	}
	return fmt.Sprintf("version %d", v)
}

func modelRollback(ctx context.Context, w io.Writer, cfg *config.Config, log zerolog.Logger) error {
	if !cfg.OTA.Enabled() {
		return errors.New("ota.trusted_keys is empty: model updates are off, there is nothing to roll back")
	}
	// The store's lock makes sure the daemon is not running meanwhile.
	st, err := store.Open(ctx, cfg.Store, log)
	if err != nil {
		return errRunning(cfg, err)
	}
	defer st.Close()
	m, _, err := ota.OpenModels(cfg.OTA.Dir, cfg.OTA.TrialRestarts, log)
	if err != nil {
		return err
	}
	failed, err := m.Rollback("rolled back by hand")
	if errors.Is(err, ota.ErrNoModel) {
		return errors.New("no installed model to roll back: the configured bundle runs")
	}
	if err != nil {
		return err
	}
	_, now, err := m.Active()
	if err != nil && !errors.Is(err, ota.ErrNoModel) {
		return err
	}
	fmt.Fprintf(w, "version %d removed; %s runs from the next start\n", failed, versionOrBundle(now))
	return nil
}

// newPercentBar draws a progress line on a terminal and nothing elsewhere;
// bar(-1, "") ends the line.
func newPercentBar(w io.Writer) func(pct int, what string) {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) {
		return func(int, string) {}
	}
	return func(pct int, what string) {
		if pct < 0 {
			fmt.Fprint(w, "\r\033[K")
			return
		}
		const width = 40
		filled := min(width, pct*width/100)
		fmt.Fprintf(w, "\r[%s%s] %3d%% %s\033[K", strings.Repeat("#", filled), strings.Repeat(" ", width-filled), pct, what)
	}
}
