package encoder

import (
	"fmt"
	"slices"

	"github.com/sightd/sightd/quant/tflite"
	"github.com/sightd/sightd/quant/tokenizer"
)

// Text is the text tower: words in, a unit vector out. It owns its
// interpreter and is not safe for concurrent use.
type Text struct {
	ip  *tflite.Interpreter
	tok *tokenizer.Tokenizer
	in  *tflite.Tensor
	out *output
	ids []int32 // token ids of one text, padded to the context length
}

// TextConfig configures a text tower.
type TextConfig struct {
	Runtime tflite.Options
}

// NewText builds the text tower on m. Its input must be [1, context] int32
// or int64 ids, the context being the tokenizer's.
func NewText(m *tflite.Model, tok *tokenizer.Tokenizer, cfg TextConfig) (_ *Text, err error) {
	ip, err := tflite.NewInterpreter(m, cfg.Runtime)
	if err != nil {
		return nil, err
	}
	e := &Text{ip: ip, tok: tok, ids: make([]int32, tok.ContextLength())}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if err := ip.AllocateTensors(); err != nil {
		return nil, err
	}
	e.in = ip.Input(0)
	if e.in == nil {
		return nil, fmt.Errorf("encoder: text model has no input")
	}
	if want := []int{1, tok.ContextLength()}; !slices.Equal(e.in.Shape(), want) {
		return nil, fmt.Errorf("encoder: text input %q has shape %v; the tokenizer gives %v", e.in.Name(), e.in.Shape(), want)
	}
	if t := e.in.Type(); t != tflite.Int32 && t != tflite.Int64 {
		return nil, fmt.Errorf("encoder: text input %q is %s; want int32 or int64 token ids", e.in.Name(), t)
	}
	if e.out, err = newOutput(ip.Output(0)); err != nil {
		return nil, err
	}
	return e, nil
}

// Dim is the embedding dimension.
func (e *Text) Dim() int { return e.out.dim }

// Tokenizer is the tower's tokenizer.
func (e *Text) Tokenizer() *tokenizer.Tokenizer { return e.tok }

// Encode embeds text into dst (Dim() values), a unit vector.
func (e *Text) Encode(text string, dst []float32) error {
	if _, err := e.tok.EncodeTo(e.ids, text); err != nil {
		return err
	}
	if e.in.Type() == tflite.Int64 {
		v, err := tflite.View[int64](e.in)
		if err != nil {
			return err
		}
		for i, id := range e.ids {
			v[i] = int64(id)
		}
	} else if err := tflite.CopyIn(e.in, e.ids); err != nil {
		return err
	}
	if err := e.ip.Invoke(); err != nil {
		return err
	}
	return e.out.read(dst, 1)
}

// Close frees the interpreter.
func (e *Text) Close() error {
	if e.ip == nil {
		return nil
	}
	err := e.ip.Close()
	e.ip = nil
	return err
}
