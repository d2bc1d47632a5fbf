package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// checkJSON walks the manifest's JSON against the Manifest type and adds to p
// every unknown field, repeated field and value of the wrong JSON type, each
// with its path. encoding/json stops at the first of these, names no path
// for unknown fields, takes the last of repeated keys (a signed manifest must
// not mean two things) and matches keys case-insensitively. The returned
// error is for input that cannot be walked at all.
func checkJSON(data []byte, p *problems) error {
	w := walker{dec: json.NewDecoder(bytes.NewReader(data)), p: p}
	w.dec.UseNumber()
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("want a JSON object, got %s", kind(tok))
	}
	if err := w.object(reflect.TypeFor[Manifest](), ""); err != nil {
		return err
	}
	if _, err := w.dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

type walker struct {
	dec *json.Decoder
	p   *problems
}

// value checks the next value against t.
func (w *walker) value(t reflect.Type, at string) error {
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	return w.valueOf(tok, t, at)
}

// valueOf checks a value whose first token has been read.
func (w *walker) valueOf(tok json.Token, t reflect.Type, at string) error {
	wrong := func(want string) error {
		w.p.addf(at, "want %s, got %s", want, kind(tok))
		return w.skip(tok)
	}
	switch t.Kind() {
	case reflect.Struct:
		if tok != json.Delim('{') {
			return wrong("an object")
		}
		return w.object(t, at)
	case reflect.Slice:
		if tok == nil {
			return nil // Go writes a nil slice as null
		}
		if tok != json.Delim('[') {
			return wrong("an array")
		}
		for i := 0; w.dec.More(); i++ {
			if err := w.value(t.Elem(), fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
		_, err := w.dec.Token() // ]
		return err
	case reflect.Pointer: // an optional object
		if tok == nil {
			return nil
		}
		return w.valueOf(tok, t.Elem(), at)
	case reflect.Bool:
		if _, ok := tok.(bool); !ok {
			return wrong("true or false")
		}
	case reflect.String:
		if _, ok := tok.(string); !ok {
			return wrong("a string")
		}
	case reflect.Int, reflect.Int64:
		n, ok := tok.(json.Number)
		if !ok {
			return wrong("an integer")
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			w.p.addf(at, "want an integer, got %s", n)
		}
	case reflect.Float32, reflect.Float64:
		n, ok := tok.(json.Number)
		if !ok {
			return wrong("a number")
		}
		if _, err := strconv.ParseFloat(string(n), t.Bits()); err != nil {
			w.p.addf(at, "%s is out of range", n)
		}
	default:
		panic("bundle: no JSON check for " + t.String())
	}
	return nil
}

// object checks the members of an object whose '{' has been read.
func (w *walker) object(t reflect.Type, at string) error {
	fields := jsonFields(t)
	seen := map[string]bool{}
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string) // the decoder guarantees a string key here
		path := key
		if at != "" {
			path = at + "." + key
		}
		ft, known := fields[key]
		switch {
		case !known:
			w.p.addf(path, "unknown field")
		case seen[key]:
			w.p.addf(path, "repeated field")
		default:
			seen[key] = true
			if err := w.value(ft, path); err != nil {
				return err
			}
			continue
		}
		if err := w.skipValue(); err != nil {
			return err
		}
	}
	_, err := w.dec.Token() // }
	return err
}

func (w *walker) skipValue() error {
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	return w.skip(tok)
}

// skip consumes the rest of a value whose first token is tok.
func (w *walker) skip(tok json.Token) error {
	if tok != json.Delim('{') && tok != json.Delim('[') {
		return nil
	}
	for depth := 1; depth > 0; {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// jsonFields maps the JSON names of t's fields, embedded structs flattened
// as encoding/json does, to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for f := range t.Fields() {
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				fields[k] = v
			}
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fields[name] = f.Type
	}
	return fields
}

func kind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' {
			return "an object"
		}
		return "an array"
	case string:
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf("the string %q", v)
	case json.Number:
		return "the number " + string(v)
	case bool:
		return strconv.FormatBool(v)
	default:
		return "null"
	}
}
