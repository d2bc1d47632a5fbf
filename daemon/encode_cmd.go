package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/text/unicode/norm"

	"github.com/sightd/sightd/quant/bundle"
	"github.com/sightd/sightd/quant/encoder"
	"github.com/sightd/sightd/quant/tflite"
	"github.com/sightd/sightd/quant/tokenizer"
)

// runtimeFlags are the inference settings shared by the model commands.
type runtimeFlags struct {
	threads int
	xnnpack bool
	edgeTPU bool
	runtime string
}

func (f *runtimeFlags) register(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.threads, "threads", 0, "inference threads (0: the number of CPUs, at most 4)")
	cmd.Flags().BoolVar(&f.xnnpack, "xnnpack", true, "apply the XNNPACK delegate (TensorFlow Lite 2.9; LiteRT always uses XNNPACK)")
	cmd.Flags().StringVar(&f.runtime, "runtime", "auto", "auto (LiteRT; TensorFlow Lite 2.9 for an Edge TPU model), litert or tflite2.9")
	cmd.Flags().BoolVar(&f.edgeTPU, "edgetpu", false, "use a Coral Edge TPU when present")
}

func (f *runtimeFlags) options() (tflite.Options, error) {
	rt, err := tflite.ParseRuntime(f.runtime)
	if err != nil {
		return tflite.Options{}, fmt.Errorf("--runtime: %w", err)
	}
	o := tflite.Options{Runtime: rt, Threads: inferenceThreads(f.threads), XNNPACK: f.xnnpack}
	if f.edgeTPU {
		o.EdgeTPU = tflite.EdgeTPUAuto
	}
	return o, nil
}

// openTowers opens a bundle (directory or tar) and loads its towers; close
// releases both.
func openTowers(path string) (*encoder.Towers, func(), error) {
	if path == "" {
		return nil, nil, errors.New("--bundle is required")
	}
	b, err := bundle.Open(path)
	if err != nil {
		return nil, nil, err
	}
	t, err := encoder.Load(b)
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return t, func() { t.Close(); b.Close() }, nil
}

// item is one thing embedded by encode or similarity.
type item struct {
	Kind   string    `json:"kind"` // "image" or "text"
	Input  string    `json:"input"`
	Vector []float32 `json:"vector"`
}

// embedAll embeds every image file and text with the bundle's towers.
func embedAll(t *encoder.Towers, rt tflite.Options, images, texts []string) ([]item, error) {
	dim := t.Manifest().EmbeddingDim
	var items []item
	if len(images) > 0 {
		e, err := t.NewImage(rt)
		if err != nil {
			return nil, err
		}
		defer e.Close()
		for _, p := range images {
			frame, err := encoder.ReadImage(p)
			if err != nil {
				return nil, err
			}
			v := make([]float32, dim)
			err = e.Encode(frame, []image.Rectangle{image.Rect(0, 0, frame.Cols(), frame.Rows())}, v)
			frame.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			items = append(items, item{Kind: "image", Input: p, Vector: v})
		}
	}
	if len(texts) > 0 {
		e, err := t.NewText(rt)
		if err != nil {
			return nil, err
		}
		defer e.Close()
		for _, s := range texts {
			v := make([]float32, dim)
			if err := e.Encode(s, v); err != nil {
				return nil, fmt.Errorf("text %q: %w", s, err)
			}
			items = append(items, item{Kind: "text", Input: s, Vector: v})
		}
	}
	return items, nil
}

func newEncodeCmd() *cobra.Command {
	var bundlePath, imagePath, text string
	var rt runtimeFlags
	cmd := &cobra.Command{
		Use:   "encode --bundle B (--image F | --text T)",
		Short: "Print the embedding of an image or a text as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (imagePath == "") == (text == "") {
				return errors.New("give exactly one of --image and --text")
			}
			t, done, err := openTowers(bundlePath)
			if err != nil {
				return err
			}
			defer done()
			var images, texts []string
			if imagePath != "" {
				images = []string{imagePath}
			} else {
				texts = []string{text}
			}
			opts, err := rt.options()
			if err != nil {
				return err
			}
			items, err := embedAll(t, opts, images, texts)
			if err != nil {
				return err
			}
			m := t.Manifest()
			enc := json.NewEncoder(cmd.OutOrStdout())
			return enc.Encode(struct {
				Model   string `json:"model"`
				Version int64  `json:"version"`
				item
			}{m.Name, m.Version, items[0]})
		},
	}
	cmd.Flags().StringVar(&bundlePath, "bundle", "", "model bundle (directory or tar)")
	cmd.Flags().StringVar(&imagePath, "image", "", "JPEG or PNG file")
	cmd.Flags().StringVar(&text, "text", "", "text to embed")
	rt.register(cmd)
	return cmd
}

func newSimilarityCmd() *cobra.Command {
	var bundlePath string
	var images, texts []string
	var asJSON bool
	var rt runtimeFlags
	cmd := &cobra.Command{
		Use:   "similarity --bundle B [--image F]... [--text T]...",
		Short: "Print the cosine similarities of images and texts",
		Long: "Embeds every image and text with the bundle's towers and prints the matrix of\n" +
			"cosine similarities; with images and texts both given, also each image's\n" +
			"probabilities over the texts (softmax of the scores times the bundle's logit scale).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(images)+len(texts) < 2 {
				return errors.New("give at least two inputs (--image, --text)")
			}
			t, done, err := openTowers(bundlePath)
			if err != nil {
				return err
			}
			defer done()
			opts, err := rt.options()
			if err != nil {
				return err
			}
			items, err := embedAll(t, opts, images, texts)
			if err != nil {
				return err
			}
			sim := similarities(items)
			probs := textProbabilities(items, sim, t.Manifest().LogitScale)
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(struct {
					Model         string               `json:"model"`
					Version       int64                `json:"version"`
					Items         []item               `json:"items"`
					Similarity    [][]float64          `json:"similarity"`
					Probabilities map[string][]float64 `json:"text_probabilities,omitempty"`
				}{t.Manifest().Name, t.Manifest().Version, items, sim, probs})
			}
			return printSimilarity(cmd.OutOrStdout(), items, sim, probs)
		},
	}
	cmd.Flags().StringVar(&bundlePath, "bundle", "", "model bundle (directory or tar)")
	cmd.Flags().StringArrayVar(&images, "image", nil, "JPEG or PNG file (repeatable)")
	cmd.Flags().StringArrayVar(&texts, "text", nil, "text (repeatable)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	rt.register(cmd)
	return cmd
}

func similarities(items []item) [][]float64 {
	sim := make([][]float64, len(items))
	for i := range items {
		sim[i] = make([]float64, len(items))
		for j := range items {
			sim[i][j] = encoder.Cosine(items[i].Vector, items[j].Vector)
		}
	}
	return sim
}

// textProbabilities is CLIP's zero-shot reading: for each image, a softmax
// over the texts of logitScale * cosine.
func textProbabilities(items []item, sim [][]float64, logitScale float64) map[string][]float64 {
	var imgs, txts []int
	for i, it := range items {
		if it.Kind == "image" {
			imgs = append(imgs, i)
		} else {
			txts = append(txts, i)
		}
	}
	if len(imgs) == 0 || len(txts) == 0 {
		return nil
	}
	out := map[string][]float64{}
	for _, i := range imgs {
		p := make([]float64, len(txts))
		maxLogit := math.Inf(-1)
		for k, j := range txts {
			p[k] = logitScale * sim[i][j]
			maxLogit = math.Max(maxLogit, p[k])
		}
		var sum float64
		for k := range p {
			p[k] = math.Exp(p[k] - maxLogit)
			sum += p[k]
		}
		for k := range p {
			p[k] /= sum
		}
		out[items[i].Input] = p
	}
	return out
}

func label(it item) string {
	if it.Kind == "image" {
		return filepath.Base(it.Input)
	}
	return fmt.Sprintf("%q", it.Input)
}

func printSimilarity(w io.Writer, items []item, sim [][]float64, probs map[string][]float64) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	var hdr strings.Builder
	hdr.WriteString("cosine\t")
	for _, it := range items {
		hdr.WriteString(label(it) + "\t")
	}
	fmt.Fprintln(tw, hdr.String())
	for i, it := range items {
		fmt.Fprintf(tw, "%s\t", label(it))
		for j := range items {
			fmt.Fprintf(tw, "%.3f\t", sim[i][j])
		}
		fmt.Fprintln(tw)
	}
	if len(probs) > 0 {
		fmt.Fprintln(tw)
		hdr.Reset()
		hdr.WriteString("P(text|image)\t")
		for _, it := range items {
			if it.Kind == "text" {
				hdr.WriteString(label(it) + "\t")
			}
		}
		fmt.Fprintln(tw, hdr.String())
		for _, it := range items {
			if p, ok := probs[it.Input]; ok && it.Kind == "image" {
				fmt.Fprintf(tw, "%s\t", label(it))
				for _, x := range p {
					fmt.Fprintf(tw, "%.3f\t", x)
				}
				fmt.Fprintln(tw)
			}
		}
	}
	return tw.Flush()
}

func newTokenizeCmd() *cobra.Command {
	var vocab, bundlePath string
	var merges, context int
	cmd := &cobra.Command{
		Use:   "tokenize (--vocab F | --bundle B) TEXT...",
		Short: "Print the CLIP token ids of each text, one line per text",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := tokenizer.Config{Merges: merges, ContextLength: context, Normalize: norm.NFC.String}
			if (vocab == "") == (bundlePath == "") {
				return errors.New("give exactly one of --vocab and --bundle")
			}
			if bundlePath != "" {
				b, err := bundle.Open(bundlePath)
				if err != nil {
					return err
				}
				defer b.Close()
				tm := b.Manifest.Tokenizer
				vocab = b.Path(tm.File)
				cfg = tokenizer.Config{Merges: tm.Merges, ContextLength: tm.ContextLength, Normalize: norm.NFC.String}
			}
			tok, err := tokenizer.LoadFile(vocab, cfg)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, text := range args {
				ids := tok.Encode(text)
				parts := make([]string, len(ids))
				for i, id := range ids {
					parts[i] = fmt.Sprint(id)
				}
				fmt.Fprintln(w, strings.Join(parts, " "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&vocab, "vocab", "", "CLIP merge list (bpe_simple_vocab_16e6.txt.gz)")
	cmd.Flags().StringVar(&bundlePath, "bundle", "", "take the tokenizer of this model bundle")
	cmd.Flags().IntVar(&merges, "merges", 0, "merges of the list to use (0: CLIP's 48894)")
	cmd.Flags().IntVar(&context, "context", 0, "context length (0: 77)")
	return cmd
}
