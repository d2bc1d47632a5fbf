package ota

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// MaxIndexSize bounds the index document.
const MaxIndexSize = 64 << 10

// ErrIndex means the index could not be read or made no sense.
var ErrIndex = errors.New("bad model index")

// IndexEntry is what the index offers: one version and where its bundle is.
// The index is not signed: it only points; the bundle's own signature and
// version decide whether it is installed.
type IndexEntry struct {
	Version int64  `json:"version"`
	URL     string `json:"url"` // absolute, or relative to the index
}

// ParseIndex reads an index document, {"version": 7, "url": "v7.tar"},
// strictly, and resolves the URL against base.
func ParseIndex(data []byte, base *url.URL) (IndexEntry, error) {
	var e IndexEntry
	if len(data) > MaxIndexSize {
		return e, fmt.Errorf("%w: %d bytes, above %d", ErrIndex, len(data), MaxIndexSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("%w: %v", ErrIndex, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return e, fmt.Errorf("%w: data after the JSON object", ErrIndex)
	}
	if e.Version < 1 {
		return e, fmt.Errorf("%w: version %d: want 1 or more", ErrIndex, e.Version)
	}
	if e.URL == "" {
		return e, fmt.Errorf("%w: url is empty", ErrIndex)
	}
	ref, err := url.Parse(e.URL)
	if err != nil {
		return e, fmt.Errorf("%w: url: %v", ErrIndex, err)
	}
	if base != nil {
		ref = base.ResolveReference(ref)
	}
	if ref.Scheme != "http" && ref.Scheme != "https" || ref.Host == "" {
		return e, fmt.Errorf("%w: url %q: want an http(s) URL", ErrIndex, safeURL(ref))
	}
	e.URL = ref.String()
	return e, nil
}

// index reads the configured index.
func (u *Updater) index(ctx context.Context) (IndexEntry, error) {
	if u.Config.IndexURL == "" {
		return IndexEntry{}, fmt.Errorf("ota: no url given and no index_url configured")
	}
	base, err := url.Parse(u.Config.IndexURL)
	if err != nil {
		return IndexEntry{}, fmt.Errorf("%w: index_url: %v", ErrIndex, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.Config.IndexURL, nil)
	if err != nil {
		return IndexEntry{}, fmt.Errorf("%w: %v", ErrIndex, err)
	}
	resp, err := u.Fetcher.client().Do(req)
	if err != nil {
		return IndexEntry{}, fmt.Errorf("%w: %s: %v", ErrIndex, safeURL(base), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return IndexEntry{}, fmt.Errorf("%w: %s: %s", ErrIndex, safeURL(base), resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxIndexSize+1))
	if err != nil {
		return IndexEntry{}, fmt.Errorf("%w: %s: %v", ErrIndex, safeURL(base), err)
	}
	return ParseIndex(data, resp.Request.URL)
}

// safeURL drops credentials and the query from a URL for logs and errors.
func safeURL(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.Fragment = nil, "", ""
	return c.String()
}
