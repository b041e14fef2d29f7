package netmark

import "testing"

func TestUplinkMarksRoundTripAndAvoidTailscale(t *testing.T) {
	const tailscaleBits = 0x00ff0000
	for i := 0; i < MaxUplinks; i++ {
		m := Uplink(i)
		if m&^UplinkMask != 0 || m&tailscaleBits != 0 || m == 0 {
			t.Errorf("Uplink(%d) = %#x: outside the uplink mask or zero", i, m)
		}
		if UplinkIndex(m) != i {
			t.Errorf("UplinkIndex(Uplink(%d)) = %d", i, UplinkIndex(m))
		}
		if p := UplinkPriority(i); p >= 5200 && p < 5300 || UplinkTable(i) == 52 {
			t.Errorf("uplink %d collides with tailscaled's rules or table", i)
		}
	}
	if PrioActive <= 5270 {
		t.Errorf("PrioActive %d comes before tailscaled's table 52 rule (5270): tunnel traffic would leave by an uplink", PrioActive)
	}
	if UplinkIndex(0) != -1 || UplinkIndex(0x12340000) != -1 {
		t.Error("unmarked flows must map to no uplink")
	}
}
