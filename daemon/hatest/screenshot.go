package hatest

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"time"

	"github.com/gorilla/websocket"
)

// Ready says when a page of the frontend has finished loading: an element
// named Tag rendered (e.g. HUI-ENTITIES-CARD, a card of a dashboard), at
// least Images pictures loaded, no spinner, and every icon drawn.
type Ready struct {
	Tag    string
	Images int
}

// pageProbe counts, for Ready, the elements named by its argument, the
// pictures (and how many have loaded), the spinners and the icons not
// drawn yet. The frontend lives
// in shadow DOMs, so the walk goes into each.
const pageProbe = `((tag) => {
  const found = {tags: 0, images: 0, loaded: 0, spinners: 0, icons: 0};
  const walk = (n) => {
    if (n.shadowRoot) walk(n.shadowRoot);
    for (const c of n.children || []) walk(c);
    if (n.tagName === tag) found.tags++;
    if (n.tagName === 'IMG') {
      found.images++;
      if (n.complete && n.naturalWidth > 0) found.loaded++;
    }
    if (n.tagName === 'HA-CIRCULAR-PROGRESS') found.spinners++;
    // An icon is drawn once the frontend has fetched its path.
    if (n.tagName === 'HA-SVG-ICON' && n.shadowRoot && !n.shadowRoot.querySelector('path')) found.icons++;
  };
  walk(document.documentElement);
  return found;
})(%q)`

// page is pageProbe's answer.
type page struct {
	Tags, Images, Loaded, Spinners, Icons int
}

// devtoolsLine is what Chromium prints once its DevTools endpoint listens.
var devtoolsLine = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// Screenshot opens address in headless Chromium (width x height), waits
// until the page is ready, and returns a PNG of it. It drives
// Chromium over the DevTools protocol: Chromium's own --screenshot after a
// fixed "virtual time budget" took a half-loaded page.
func Screenshot(ctx context.Context, chromium, profile, address string, width, height int, ready Ready) ([]byte, error) {
	// No name resolves but the loopback's: the frontend links pictures
	// from the internet (integrations' logos), which a test must not reach.
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--remote-debugging-port=0", "--user-data-dir="+profile, fmt.Sprintf("--window-size=%d,%d", width, height), "about:blank")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("chromium: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("chromium: %w", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	browser := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := devtoolsLine.FindStringSubmatch(sc.Text()); m != nil {
				browser <- m[1]
				break
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	var endpoint string
	select {
	case endpoint = <-browser:
	case <-ctx.Done():
		return nil, fmt.Errorf("chromium: no DevTools endpoint: %w", ctx.Err())
	}
	target, err := pageTarget(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	c, _, err := websocket.DefaultDialer.DialContext(ctx, target, nil)
	if err != nil {
		return nil, fmt.Errorf("chromium devtools: %w", err)
	}
	defer c.Close()
	cdp := &devtools{conn: c}
	if _, err := cdp.call(ctx, "Page.navigate", map[string]any{"url": address}); err != nil {
		return nil, err
	}
	probe := fmt.Sprintf(pageProbe, ready.Tag)
	var last page
	for {
		res, err := cdp.call(ctx, "Runtime.evaluate", map[string]any{"expression": probe, "returnByValue": true})
		if err != nil {
			return nil, err
		}
		var v struct {
			Result struct {
				Value page `json:"value"`
			} `json:"result"`
		}
		if err := json.Unmarshal(res, &v); err != nil {
			return nil, fmt.Errorf("chromium: the page probe: %w", err)
		}
		last = v.Result.Value
		if last.Tags > 0 && last.Spinners == 0 && last.Icons == 0 && last.Loaded >= ready.Images {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("chromium: %s did not finish loading (%+v, want %+v, no spinner, every icon drawn): %w",
				address, last, ready, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	res, err := cdp.call(ctx, "Page.captureScreenshot", map[string]any{"format": "png"})
	if err != nil {
		return nil, err
	}
	var shot struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(res, &shot); err != nil {
		return nil, fmt.Errorf("chromium screenshot: %w", err)
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		return nil, fmt.Errorf("chromium screenshot: %w", err)
	}
	return png, nil
}

// pageTarget finds the DevTools websocket of the browser's page (the tab
// about:blank opened) through its /json/list.
func pageTarget(ctx context.Context, browserWS string) (string, error) {
	u, err := url.Parse(browserWS)
	if err != nil {
		return "", fmt.Errorf("chromium devtools address: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+u.Host+"/json/list", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("chromium devtools: %w", err)
	}
	defer resp.Body.Close()
	var targets []struct {
		Type string `json:"type"`
		WS   string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
		return "", fmt.Errorf("chromium devtools targets: %w", err)
	}
	for _, t := range targets {
		if t.Type == "page" {
			return t.WS, nil
		}
	}
	return "", errors.New("chromium devtools: no page")
}

// devtools sends DevTools protocol commands one at a time.
type devtools struct {
	conn *websocket.Conn
	id   int
}

// call sends a command and returns its result, skipping the events that
// arrive in between.
func (d *devtools) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	d.id++
	if dl, ok := ctx.Deadline(); ok {
		d.conn.SetReadDeadline(dl)
	}
	if err := d.conn.WriteJSON(map[string]any{"id": d.id, "method": method, "params": params}); err != nil {
		return nil, fmt.Errorf("chromium %s: %w", method, err)
	}
	for {
		var msg struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := d.conn.ReadJSON(&msg); err != nil {
			return nil, fmt.Errorf("chromium %s: %w", method, err)
		}
		if msg.ID != d.id {
			continue
		}
		if msg.Error != nil {
			return nil, fmt.Errorf("chromium %s: %s", method, msg.Error.Message)
		}
		return msg.Result, nil
	}
}
