package simulator

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
)

// ovapipeDefaultGPU: one NVIDIA Tesla T4 on every host of each datacenter's first cluster
// (DC0_C0, DC1_C0, ...).
const (
	ovapipeDefaultGPUClusterSuffix = "_C0"
	ovapipeDefaultGPUVendor        = 0x10de
	ovapipeDefaultGPUDevice        = 0x1eb8
	ovapipePciIDs                  = "/usr/share/misc/pci.ids"
	ovapipeClass3DController       = 0x0302
)

type ovapipeGPUSpec struct {
	hostGlob string // empty: the hosts of every datacenter's first cluster
	vendor   uint16
	device   uint16
	state    ovapipePassthruState
	class    uint16
}

// ovapipePassthruState is a device's passthrough state at simulator start.
type ovapipePassthruState struct {
	capable, enabled, active bool
}

// The states --gpu accepts after VENDOR:DEVICE; "active" is the default.
var ovapipePassthruStates = map[string]ovapipePassthruState{
	"active":    {capable: true, enabled: true, active: true},
	"enabled":   {capable: true, enabled: true}, // enabled, waiting for a host reboot
	"disabled":  {capable: true},                // capable, passthrough off
	"incapable": {},                             // the host cannot pass it through
}

func ovapipeParseHexID(text, what, spec string) (uint16, error) {
	t := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(text)), "0x")
	v, err := strconv.ParseUint(t, 16, 16)
	if err != nil || t == "" {
		return 0, fmt.Errorf("--gpu %q: %s ID %q is not a hex number from 0 to ffff", spec, what, text)
	}
	return uint16(v), nil
}

func ovapipeGPUSpecs(flags []string, withDefault bool) ([]ovapipeGPUSpec, error) {
	var specs []ovapipeGPUSpec
	if withDefault {
		specs = append(specs, ovapipeGPUSpec{vendor: ovapipeDefaultGPUVendor, device: ovapipeDefaultGPUDevice,
			state: ovapipePassthruStates["active"], class: ovapipeClass3DController})
	}
	for _, flag := range flags {
		glob, ids, ok := strings.Cut(flag, "=")
		parts := strings.Split(ids, ":")
		if !ok || glob == "" || len(parts) < 2 || len(parts) > 4 {
			return nil, fmt.Errorf("--gpu %q: expected HOST_GLOB=VENDOR:DEVICE[:STATE[:CLASS]], "+
				"e.g. 'DC0_C0_*=10de:1eb8' or 'DC0_C0_H1=10de:1eb8:disabled'", flag)
		}
		vendorText, deviceText := parts[0], parts[1]
		state := ovapipePassthruStates["active"]
		if len(parts) > 2 {
			known, found := ovapipePassthruStates[parts[2]]
			if !found {
				return nil, fmt.Errorf("--gpu %q: state %q is not one of active, enabled, disabled, incapable", flag, parts[2])
			}
			state = known
		}
		class := uint16(ovapipeClass3DController)
		if len(parts) > 3 {
			value, err := ovapipeParseHexID(parts[3], "class", flag)
			if err != nil {
				return nil, err
			}
			class = value
		}
		if _, err := filepath.Match(glob, ""); err != nil {
			return nil, fmt.Errorf("--gpu %q: bad host glob: %s", flag, err)
		}
		vendor, err := ovapipeParseHexID(vendorText, "vendor", flag)
		if err != nil {
			return nil, err
		}
		device, err := ovapipeParseHexID(deviceText, "device", flag)
		if err != nil {
			return nil, err
		}
		specs = append(specs, ovapipeGPUSpec{hostGlob: glob, vendor: vendor, device: device, state: state, class: class})
	}
	return specs, nil
}

// ovapipePciNames looks the IDs up in Debian's pci.ids (vendor and device names).
func ovapipePciNames(vendor, device uint16) (string, string) {
	vendorName := fmt.Sprintf("Vendor %04x", vendor)
	deviceName := fmt.Sprintf("Device %04x", device)
	f, err := os.Open(ovapipePciIDs)
	if err != nil {
		return vendorName, deviceName
	}
	defer f.Close()
	vendorPrefix := fmt.Sprintf("%04x  ", vendor)
	devicePrefix := fmt.Sprintf("\t%04x  ", device)
	inVendor := false
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := scanner.Text()
		switch {
		case strings.HasPrefix(line, vendorPrefix):
			vendorName = strings.TrimPrefix(line, vendorPrefix)
			inVendor = true
		case inVendor && strings.HasPrefix(line, devicePrefix):
			return vendorName, strings.TrimPrefix(line, devicePrefix)
		case inVendor && line != "" && line[0] != '\t' && line[0] != '#':
			return vendorName, deviceName
		}
	}
	return vendorName, deviceName
}

// ovapipeSigned16 is how HostPciDevice carries IDs: xsd:short, so 0x8086 reads -32634.
func ovapipeSigned16(v uint16) int16 { return int16(v) }

// ovapipeHostGPUs: the passthrough devices added to each host.
var ovapipeHostGPUs = map[types.ManagedObjectReference][]types.HostPciDevice{}

func ovapipeClusterOf(h *HostSystem) string {
	if h.Parent == nil {
		return ""
	}
	if c, ok := Map.Get(*h.Parent).(*ClusterComputeResource); ok {
		return c.Name
	}
	return ""
}

func ovapipeAddGPUs(specs []ovapipeGPUSpec) error {
	var hosts []*HostSystem
	for _, obj := range Map.objects {
		if h, ok := obj.(*HostSystem); ok {
			hosts = append(hosts, h)
		}
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
	for _, h := range hosts {
		ovapipeAddPassthruSystem(h)
	}
	for _, spec := range specs {
		matched := 0
		for _, h := range hosts {
			if spec.hostGlob == "" {
				if !strings.HasSuffix(ovapipeClusterOf(h), ovapipeDefaultGPUClusterSuffix) {
					continue
				}
			} else if ok, _ := filepath.Match(spec.hostGlob, h.Name); !ok {
				continue
			}
			matched++
			ovapipeAddGPU(h, spec)
		}
		if matched == 0 && spec.hostGlob != "" {
			names := make([]string, len(hosts))
			for i, h := range hosts {
				names[i] = h.Name
			}
			return fmt.Errorf("--gpu %s=%04x:%04x matches no host; hosts: %s",
				spec.hostGlob, spec.vendor, spec.device, strings.Join(names, ", "))
		}
	}
	return nil
}

func ovapipeAddGPU(h *HostSystem, spec ovapipeGPUSpec) {
	existing := ovapipeHostGPUs[h.Self]
	bus := byte(0x3b + 0x23*len(existing))
	vendorName, deviceName := ovapipePciNames(spec.vendor, spec.device)
	device := types.HostPciDevice{
		Id:           fmt.Sprintf("0000:%02x:00.0", bus),
		ClassId:      int16(spec.class),
		Bus:          bus,
		Slot:         0,
		Function:     0,
		VendorId:     ovapipeSigned16(spec.vendor),
		SubVendorId:  ovapipeSigned16(spec.vendor),
		VendorName:   vendorName,
		DeviceId:     ovapipeSigned16(spec.device),
		SubDeviceId:  0,
		ParentBridge: fmt.Sprintf("0000:%02x:00.0", bus-1),
		DeviceName:   deviceName,
	}
	ovapipeHostGPUs[h.Self] = append(existing, device)

	// Hardware is a shallow copy of a package variable in Debian's code: new slices only.
	devices := append([]types.HostPciDevice{}, h.Hardware.PciDevice...)
	h.Hardware.PciDevice = append(devices, device)

	states := ovapipePassthruStatesOf(h)
	states[device.Id] = spec.state
	var passthru []types.BaseHostPciPassthruInfo
	for _, d := range h.Hardware.PciDevice {
		state := states[d.Id]
		passthru = append(passthru, &types.HostPciPassthruInfo{
			Id:              d.Id,
			DependentDevice: d.Id,
			PassthruEnabled: state.enabled,
			PassthruCapable: state.capable,
			PassthruActive:  state.active,
		})
	}
	ovapipeSetPassthruInfo(h, passthru)
}

// ovapipeAddPassthroughTargets fills QueryConfigTarget's pciPassthrough (per device) and
// dynamicPassthrough (one entry per vendor:device model) for the given hosts.
func ovapipeAddPassthroughTargets(target *types.ConfigTarget, hosts []types.ManagedObjectReference) {
	seen := map[[2]int16]bool{}
	for _, ref := range hosts {
		h, ok := Map.Get(ref).(*HostSystem)
		if !ok {
			continue
		}
		active := ovapipePassthruStatesOf(h)
		for _, gpu := range ovapipeHostGPUs[ref] {
			// vCenter offers a device to VMs only once passthrough is active on the host.
			if !active[gpu.Id].active {
				continue
			}
			target.PciPassthrough = append(target.PciPassthrough, &types.VirtualMachinePciPassthroughInfo{
				VirtualMachineTargetInfo: types.VirtualMachineTargetInfo{Name: gpu.Id},
				PciDevice:                gpu,
				SystemId:                 h.Hardware.SystemInfo.Uuid,
			})
			model := [2]int16{gpu.VendorId, gpu.DeviceId}
			if seen[model] {
				continue
			}
			seen[model] = true
			target.DynamicPassthrough = append(target.DynamicPassthrough, types.VirtualMachineDynamicPassthroughInfo{
				VirtualMachineTargetInfo: types.VirtualMachineTargetInfo{Name: gpu.DeviceName},
				VendorName:               gpu.VendorName,
				DeviceName:               gpu.DeviceName,
				VendorId:                 int32(gpu.VendorId),
				DeviceId:                 int32(gpu.DeviceId),
			})
		}
	}
}
