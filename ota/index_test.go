package ota_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/sightd/sightd/ota"
)

func TestParseIndex(t *testing.T) {
	base, _ := url.Parse("https://updates.example/fleet/index.json?token=x")
	for _, tc := range []struct {
		doc, url, err string
	}{
		{`{"version": 7, "url": "v7.tar"}`, "https://updates.example/fleet/v7.tar", ""},
		{`{"version": 7, "url": "/m/v7.tar.gz"}`, "https://updates.example/m/v7.tar.gz", ""},
		{`{"version": 7, "url": "http://mirror.example/v7.tar"}`, "http://mirror.example/v7.tar", ""},
		{`{"version": 0, "url": "v.tar"}`, "", "version 0"},
		{`{"version": 7}`, "", "url is empty"},
		{`{"version": 7, "url": "file:///etc/passwd"}`, "", "want an http(s) URL"},
		{`{"version": 7, "url": "v7.tar", "sha256": "00"}`, "", "unknown field"},
		{`{"version": 7, "url": "v7.tar"} {}`, "", "data after"},
		{`[7]`, "", "cannot unmarshal"},
		{`{"version": "7", "url": "v7.tar"}`, "", "cannot unmarshal"},
	} {
		e, err := ota.ParseIndex([]byte(tc.doc), base)
		if tc.err == "" {
			if err != nil || e.URL != tc.url || e.Version != 7 {
				t.Errorf("%s: %+v, %v", tc.doc, e, err)
			}
			continue
		}
		if !errors.Is(err, ota.ErrIndex) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %q", tc.doc, err, tc.err)
		}
	}
	if _, err := ota.ParseIndex([]byte(`{"version":1,"url":"`+strings.Repeat("a", ota.MaxIndexSize)+`"}`), base); !errors.Is(err, ota.ErrIndex) {
		t.Errorf("oversized index: %v", err)
	}
}

func FuzzParseIndex(f *testing.F) {
	base, _ := url.Parse("https://updates.example/fleet/index.json")
	f.Add([]byte(`{"version": 7, "url": "v7.tar"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ota.ParseIndex(data, base)
		if err != nil {
			if !errors.Is(err, ota.ErrIndex) {
				t.Fatalf("error not wrapping ErrIndex: %v", err)
			}
			return
		}
		u, perr := url.Parse(e.URL)
		if e.Version < 1 || perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.Fatalf("accepted %q as %+v", data, e)
		}
	})
}
