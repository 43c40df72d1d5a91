package simulator

import (
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// ovapipeTypedPath: GET ?vm=NAME answers, as text/plain, what was typed into that VM.
const ovapipeTypedPath = "/ovapipe/typed"

var (
	ovapipeTypedMu sync.Mutex
	ovapipeTyped   = map[string]*strings.Builder{}
)

// USB HID usage IDs (keyboard page) -> text, unshifted and shifted.
var ovapipeHIDKeys = func() map[int32][2]string {
	keys := map[int32][2]string{}
	for i := int32(0); i < 26; i++ {
		c := string(rune('a' + i))
		keys[0x04+i] = [2]string{c, strings.ToUpper(c)}
	}
	digits, shifted := "1234567890", "!@#$%^&*()"
	for i := range digits {
		keys[0x1e+int32(i)] = [2]string{digits[i : i+1], shifted[i : i+1]}
	}
	punct, punctShifted := "-=[]\\", "_+{}|"
	for i := range punct {
		keys[0x2d+int32(i)] = [2]string{punct[i : i+1], punctShifted[i : i+1]}
	}
	more, moreShifted := ";'`,./", ":\"~<>?"
	for i := range more {
		keys[0x33+int32(i)] = [2]string{more[i : i+1], moreShifted[i : i+1]}
	}
	named := map[int32]string{
		0x28: "\n", 0x29: "<esc>", 0x2a: "<bs>", 0x2b: "\t", 0x2c: " ",
		0x49: "<insert>", 0x4a: "<home>", 0x4b: "<pageUp>", 0x4c: "<del>", 0x4d: "<end>",
		0x4e: "<pageDown>", 0x4f: "<right>", 0x50: "<left>", 0x51: "<down>", 0x52: "<up>",
	}
	for code, text := range named {
		keys[code] = [2]string{text, text}
	}
	for i := int32(0); i < 12; i++ {
		f := fmt.Sprintf("<f%d>", i+1)
		keys[0x3a+i] = [2]string{f, f}
	}
	return keys
}()

func ovapipeTrue(b *bool) bool { return b != nil && *b }

// ovapipeDecodeKey turns one key event back into text: "a", "A", "\n", "<f2>",
// "<ctrl+alt+del>" for chords with control, alt or GUI held.
func ovapipeDecodeKey(event types.UsbScanCodeSpecKeyEvent) string {
	usage := int32(uint32(event.UsbHidCode) >> 16)
	m := event.Modifiers
	if m == nil {
		m = &types.UsbScanCodeSpecModifierType{}
	}
	shift := ovapipeTrue(m.LeftShift) || ovapipeTrue(m.RightShift)
	key, ok := ovapipeHIDKeys[usage]
	text := fmt.Sprintf("<hid 0x%02x>", usage)
	if ok {
		text = key[0]
		if shift {
			text = key[1]
		}
	}
	var chord []string
	if ovapipeTrue(m.LeftControl) || ovapipeTrue(m.RightControl) {
		chord = append(chord, "ctrl")
	}
	if ovapipeTrue(m.LeftAlt) || ovapipeTrue(m.RightAlt) {
		chord = append(chord, "alt")
	}
	if ovapipeTrue(m.LeftGui) || ovapipeTrue(m.RightGui) {
		chord = append(chord, "gui")
	}
	if len(chord) == 0 {
		return text
	}
	name := strings.Trim(text, "<>")
	if !ok {
		name = fmt.Sprintf("hid 0x%02x", usage)
	} else if name == "\n" {
		name = "enter"
	}
	return "<" + strings.Join(append(chord, name), "+") + ">"
}

// PutUsbScanCodes records the keystrokes per VM (Debian's simulator has no keyboard).
func (vm *VirtualMachine) PutUsbScanCodes(ctx *Context, req *types.PutUsbScanCodes) soap.HasFault {
	body := new(methods.PutUsbScanCodesBody)
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		body.Fault_ = Fault("", &types.InvalidPowerState{
			RequestedState: types.VirtualMachinePowerStatePoweredOn,
			ExistingState:  vm.Runtime.PowerState,
		})
		return body
	}
	ovapipeTypedMu.Lock()
	typed, ok := ovapipeTyped[vm.Name]
	if !ok {
		typed = new(strings.Builder)
		ovapipeTyped[vm.Name] = typed
	}
	for _, event := range req.Spec.KeyEvents {
		typed.WriteString(ovapipeDecodeKey(event))
	}
	ovapipeTypedMu.Unlock()
	ovapipeNoteKeystroke(vm.Name)
	body.Res = &types.PutUsbScanCodesResponse{Returnval: int32(len(req.Spec.KeyEvents))}
	return body
}

func ovapipeServeTyped(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("vm")
	if name == "" {
		http.Error(w, "missing ?vm=NAME", http.StatusBadRequest)
		return
	}
	ovapipeTypedMu.Lock()
	text := ""
	if typed, ok := ovapipeTyped[name]; ok {
		text = typed.String()
	}
	ovapipeTypedMu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(text))
}
