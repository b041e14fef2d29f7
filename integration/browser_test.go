package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"passerelle/pkg/lab"
)

// The status page in a real browser (issue 17): headless Chromium, driven
// by chromedp, logs in from the administrative zone, reads the first
// screen, runs the DNS diagnostic on a blocked name, and opens the block
// page as a pupil would. Screenshots go to an artifacts folder whose path
// the test prints (TEST_ARTIFACTS_DIR, default bin/test-artifacts/browser).

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// forward listens on the host's loopback and carries every connection to
// addr, dialled from the lab namespace ns: the browser runs on the host,
// its traffic leaves from a client of the zone.
func forward(t *testing.T, ns, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				up, err := lab.DialContext(ctx, ns, "tcp", addr)
				cancel()
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String()
}

func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TEST_ARTIFACTS_DIR")
	if dir == "" {
		abs, err := filepath.Abs("../bin/test-artifacts")
		if err != nil {
			t.Fatal(err)
		}
		dir = abs
	}
	dir = filepath.Join(dir, "browser")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBrowserStatusPage(t *testing.T) {
	needRoot(t)
	chrome := findChromium()
	if chrome == "" {
		t.Skip("no chromium on this machine (apt-get install chromium)")
	}
	b := startStatusBox(t)
	page := forward(t, b.lab.Namespace(lab.RoleClient("admin")), "10.20.0.1:443")
	blockAddr := forward(t, b.lab.Namespace(lab.RoleClient("peda")), "10.10.0.1:80")
	gambling := firstDomain(t, "gambling")
	art := artifactsDir(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox,
		chromedp.WindowSize(412, 1400), // a phone's width
		chromedp.Flag("ignore-certificate-errors", true),
		// The blocked name leads to the block page through the peda
		// client, as the box's DNS answer would.
		chromedp.Flag("host-resolver-rules", "MAP "+gambling+" "+blockAddr),
		chromedp.Flag("disable-features", "HttpsUpgrades,HttpsFirstBalancedModeAutoEnable"),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()

	shot := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			var buf []byte
			if err := chromedp.FullScreenshot(&buf, 100).Do(ctx); err != nil { // quality 100: PNG
				return err
			}
			return os.WriteFile(filepath.Join(art, name), buf, 0o644)
		})
	}
	var internet, fingerprint, firewall, why, category, title string
	err := chromedp.Run(ctx,
		chromedp.Navigate("https://"+page+"/"),
		chromedp.WaitVisible("#password", chromedp.ByQuery),
		chromedp.SendKeys("#user", "technicien", chromedp.ByQuery),
		chromedp.SendKeys("#password", statusTestPassword, chromedp.ByQuery),
		chromedp.Click("#login", chromedp.ByQuery),
		chromedp.WaitVisible("#lines", chromedp.ByQuery),
		chromedp.Text("#line-internet", &internet, chromedp.ByQuery),
		chromedp.Text("#fingerprint", &fingerprint, chromedp.ByQuery),
		shot("first-screen.png"),
		chromedp.Navigate("https://"+page+"/uplinks"),
		chromedp.WaitVisible("table", chromedp.ByQuery),
		shot("uplinks.png"),
		chromedp.Navigate("https://"+page+"/firewall"),
		chromedp.WaitVisible("table", chromedp.ByQuery),
		chromedp.Text("table", &firewall, chromedp.ByQuery),
		shot("firewall.png"),
		chromedp.Navigate("https://"+page+"/diag"),
		chromedp.WaitVisible("#target", chromedp.ByQuery),
		chromedp.SendKeys("#target", gambling, chromedp.ByQuery),
		chromedp.SetValue("#zone", "peda", chromedp.ByQuery),
		chromedp.Click("#run", chromedp.ByQuery),
		chromedp.WaitVisible("#why", chromedp.ByQuery),
		chromedp.Text("#why", &why, chromedp.ByQuery),
		shot("diagnostic.png"),
		chromedp.Navigate("http://"+gambling+"/"),
		chromedp.WaitVisible("#category", chromedp.ByQuery),
		chromedp.Text("#category", &category, chromedp.ByQuery),
		chromedp.Title(&title),
		shot("block-page.png"),
	)
	fmt.Printf("browser test screenshots: %s\n", art)
	t.Logf("screenshots in %s", art)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	if !strings.Contains(internet, "OK via renater") {
		t.Errorf("first screen, internet line: %q", internet)
	}
	if len(fingerprint) != 95 {
		t.Errorf("footer fingerprint %q", fingerprint)
	}
	if !strings.Contains(firewall, "Paquets sortis vers internet par le lien renater") {
		t.Errorf("firewall page: %q", firewall)
	}
	if !strings.Contains(why, "catégorie gambling") {
		t.Errorf("DNS diagnostic of %s in peda: %q", gambling, why)
	}
	if category != "gambling" || title != "Site bloqué" {
		t.Errorf("block page: title %q, category %q", title, category)
	}

	// Accessibility (RGAA): keyboard first, then axe-core's rules on every
	// page, as the logged-in technician and as a pupil on the block page.
	t.Run("keyboard", func(t *testing.T) {
		var first, skipped, afterSkip string
		err := chromedp.Run(ctx,
			chromedp.Navigate("https://"+page+"/diag"),
			chromedp.WaitVisible("#target", chromedp.ByQuery),
			chromedp.KeyEvent(kb.Tab),
			chromedp.Evaluate(`document.activeElement.className + " " + document.activeElement.getAttribute("href")`, &first),
			chromedp.KeyEvent(kb.Enter),
			chromedp.Evaluate(`document.activeElement.id`, &skipped),
			chromedp.KeyEvent(kb.Tab),
			chromedp.Evaluate(`document.activeElement.tagName + " " + (document.activeElement.closest("main") ? "in main" : "outside main")`, &afterSkip),
		)
		if err != nil {
			t.Fatal(err)
		}
		// The first Tab reaches the skip link; following it puts the
		// focus on the content, and the next Tab on its first field, past
		// the menu.
		if first != "skip #main" || skipped != "main" || afterSkip != "SELECT in main" {
			t.Errorf("keyboard: first focus %q, after the skip link %q then %q", first, skipped, afterSkip)
		}
	})
	t.Run("axe", func(t *testing.T) {
		src := axeCore(t)
		pages := []string{"/", "/uplinks", "/tunnel", "/zones", "/dns", "/services", "/boot", "/log", "/diag", "/firewall", "/config", "/reboot", "/restart?service=dns"}
		var audited []string
		for _, p := range pages {
			audited = append(audited, p)
			auditPage(t, ctx, src, "https://"+page+p)
		}
		// The diagnostics' results, streamed: a traceroute's page.
		if err := chromedp.Run(ctx,
			chromedp.Navigate("https://"+page+"/diag"),
			chromedp.WaitVisible("#target", chromedp.ByQuery),
			chromedp.SetValue("#kind", "traceroute", chromedp.ByQuery),
			chromedp.SendKeys("#target", "203.0.113.10", chromedp.ByQuery),
			chromedp.Click("#run", chromedp.ByQuery),
			chromedp.WaitVisible("#summary", chromedp.ByQuery),
			shot("traceroute.png"),
		); err != nil {
			t.Fatal(err)
		}
		auditPage(t, ctx, src, "")
		auditPage(t, ctx, src, "http://"+gambling+"/")
		// Logged out: the login page.
		if err := chromedp.Run(ctx, chromedp.Navigate("https://"+page+"/"), chromedp.WaitVisible("#lines", chromedp.ByQuery),
			chromedp.Click("nav button[type=submit]", chromedp.ByQuery), chromedp.WaitVisible("#password", chromedp.ByQuery)); err != nil {
			t.Fatal(err)
		}
		auditPage(t, ctx, src, "")
		t.Logf("axe-core: no serious or critical violation on %d pages (%s, the traceroute's result, the block page, the login page)", len(audited)+3, strings.Join(audited, " "))
	})
}

// axeCore returns axe-core's script, fetched by tools/axe/fetch.sh into
// the cache (.ci/run does), or skips the test saying how to get it.
func axeCore(t *testing.T) string {
	t.Helper()
	path := os.Getenv("AXE_CORE")
	if path == "" {
		cache := os.Getenv("PASSERELLE_CACHE")
		if cache == "" {
			cache = "/var/cache/passerelle"
		}
		path = filepath.Join(cache, "axe-core-4.14.1", "axe.min.js")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("axe-core not found (%v): the accessibility audit is skipped; `sh tools/axe/fetch.sh` fetches it with npm", err)
	}
	return string(b)
}

// axeViolation is one rule axe-core found broken, with where.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// auditPage runs axe-core's WCAG 2.1 A and AA rules (those RGAA 4 maps
// to) on url (or the page shown, when url is ""), and fails on every
// serious or critical violation.
func auditPage(t *testing.T, ctx context.Context, src, url string) {
	t.Helper()
	var acts []chromedp.Action
	if url != "" {
		acts = append(acts, chromedp.Navigate(url), chromedp.WaitReady("body", chromedp.ByQuery))
	}
	var where string
	var found struct {
		Passes int            `json:"passes"`
		Bad    []axeViolation `json:"bad"`
		Minor  []string       `json:"minor"` // moderate and minor: reported, not failed
	}
	acts = append(acts,
		chromedp.Location(&where),
		// The page's Content-Security-Policy allows no script: the audit
		// is evaluated by the browser's debugger, outside it.
		chromedp.Evaluate(src, nil),
		chromedp.Evaluate(`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}).then(r => ({
			passes: r.passes.length,
			minor: r.violations.filter(v => v.impact !== "serious" && v.impact !== "critical").map(v => v.id + " (" + v.impact + ")"),
			bad: r.violations.filter(v => v.impact === "serious" || v.impact === "critical").map(v =>
				({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + ": " + n.failureSummary)}))}))`,
			&found, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }),
	)
	if err := chromedp.Run(ctx, acts...); err != nil {
		t.Fatalf("axe on %s: %v", url, err)
	}
	if len(found.Minor) > 0 {
		t.Logf("%s: moderate or minor: %s", where, strings.Join(found.Minor, ", "))
	}
	if found.Passes == 0 {
		t.Errorf("%s: axe-core checked no rule", where)
	}
	for _, v := range found.Bad {
		t.Errorf("%s: %s (%s): %s\n  %s", where, v.ID, v.Impact, v.Help, strings.Join(v.Nodes, "\n  "))
	}
}
