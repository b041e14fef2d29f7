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

	"github.com/chromedp/chromedp"

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
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
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
}
