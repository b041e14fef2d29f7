package health

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollectorExposesRaisedWarnings(t *testing.T) {
	now := time.Unix(1795000000, 0)
	r := New(func() time.Time { return now })
	r.Raise("boot", "perm-reformatted", Critical, "reformatted")
	r.Raise("interfaces", "interface-missing:wwan0", Warn, "missing")
	r.Clear("interface-missing:wwan0")
	want := `
# HELP passerelle_health_warning 1 for each raised warning.
# TYPE passerelle_health_warning gauge
passerelle_health_warning{code="perm-reformatted",component="boot",severity="critical"} 1
# HELP passerelle_health_warning_since_seconds When each raised warning started, Unix time.
# TYPE passerelle_health_warning_since_seconds gauge
passerelle_health_warning_since_seconds{code="perm-reformatted"} 1.795e+09
`
	if err := testutil.CollectAndCompare(r.Collector(), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
