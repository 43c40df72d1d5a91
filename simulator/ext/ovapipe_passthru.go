package simulator

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Passthrough configuration as ESXi does it: UpdatePassthruConfig changes passthruEnabled,
// passthruActive follows only when the host boots (RebootHost_Task), and the host's
// config.pciPassthruInfo, its HostPciPassthruSystem's pciPassthruInfo and QueryConfigTarget
// (see ovapipeAddPassthroughTargets) all show the same state.

// ovapipeRefusePassthruGlob: hosts whose UpdatePassthruConfig fails (--refuse-passthru).
var ovapipeRefusePassthruGlob string

// OvapipeSetRefusePassthru sets the glob of hosts that refuse passthrough changes.
func OvapipeSetRefusePassthru(glob string) error {
	if _, err := filepath.Match(glob, ""); err != nil {
		return fmt.Errorf("--refuse-passthru %q: %s", glob, err)
	}
	ovapipeRefusePassthruGlob = glob
	return nil
}

// OvapipePciPassthruSystem is one host's configManager.pciPassthruSystem.
type OvapipePciPassthruSystem struct {
	mo.HostPciPassthruSystem

	host *HostSystem
}

// Lock and Unlock use the host's lock: the system's state is the host's, and one lock for
// both keeps UpdatePassthruConfig (system, then host) and RebootHost_Task (host) from
// taking two locks in opposite orders.
func (s *OvapipePciPassthruSystem) Lock()   { Map.locker(s.host.Self).Lock() }
func (s *OvapipePciPassthruSystem) Unlock() { Map.locker(s.host.Self).Unlock() }

var ovapipePassthruSystems = map[types.ManagedObjectReference]*OvapipePciPassthruSystem{}

// ovapipeAddPassthruSystem gives the host its own HostPciPassthruSystem (Debian's ESXi
// template names one shared "ha-pcipassthrusystem" that the registry does not hold).
func ovapipeAddPassthruSystem(h *HostSystem) {
	system := &OvapipePciPassthruSystem{host: h}
	system.Self = types.ManagedObjectReference{Type: "HostPciPassthruSystem", Value: "pcipassthrusystem-" + h.Self.Value}
	Map.Put(system)
	h.ConfigManager.PciPassthruSystem = &system.Self
	ovapipePassthruSystems[h.Self] = system
	system.PciPassthruInfo = h.Config.PciPassthruInfo
}

// ovapipeSetPassthruInfo replaces the host's passthrough state in both places it is read from.
// Callers hold the host's lock (or run before the server starts).
func ovapipeSetPassthruInfo(h *HostSystem, info []types.BaseHostPciPassthruInfo) {
	h.Config.PciPassthruInfo = info
	if system := ovapipePassthruSystems[h.Self]; system != nil {
		system.PciPassthruInfo = info
	}
	pending := false
	for _, base := range info {
		i := base.GetHostPciPassthruInfo()
		pending = pending || i.PassthruEnabled != i.PassthruActive
	}
	h.Summary.RebootRequired = pending
}

// ovapipePassthruStatesOf maps PCI address -> passthrough state (zero: not capable).
func ovapipePassthruStatesOf(h *HostSystem) map[string]ovapipePassthruState {
	states := map[string]ovapipePassthruState{}
	for _, base := range h.Config.PciPassthruInfo {
		i := base.GetHostPciPassthruInfo()
		states[i.Id] = ovapipePassthruState{capable: i.PassthruCapable, enabled: i.PassthruEnabled, active: i.PassthruActive}
	}
	return states
}

// ovapipeCopyPassthruInfo copies the entries, so that a change never alters a slice that a
// property collector result may still hold.
func ovapipeCopyPassthruInfo(h *HostSystem) []types.BaseHostPciPassthruInfo {
	var info []types.BaseHostPciPassthruInfo
	for _, base := range h.Config.PciPassthruInfo {
		entry := *base.GetHostPciPassthruInfo()
		info = append(info, &entry)
	}
	return info
}

func ovapipeHostConfigFault(message string) *soap.Fault {
	return Fault(message, &types.HostConfigFault{VimFault: types.VimFault{MethodFault: types.MethodFault{
		FaultMessage: []types.LocalizableMessage{{Key: "com.vmware.ovapipe.passthru", Message: message}},
	}}})
}

// UpdatePassthruConfig checks every entry before changing anything, as ESXi applies a
// request whole or not at all. The caller holds the host's lock (see Lock).
func (s *OvapipePciPassthruSystem) UpdatePassthruConfig(req *types.UpdatePassthruConfig) soap.HasFault {
	body := &methods.UpdatePassthruConfigBody{}
	h := s.host
	func() {
		if h.Runtime.ConnectionState != types.HostSystemConnectionStateConnected {
			body.Fault_ = Fault("", &types.HostNotConnected{})
			return
		}
		if ovapipeRefusePassthruGlob != "" {
			if ok, _ := filepath.Match(ovapipeRefusePassthruGlob, h.Name); ok {
				body.Fault_ = ovapipeHostConfigFault(fmt.Sprintf(
					"%s refused the passthrough change (simulated with --refuse-passthru)", h.Name))
				return
			}
		}
		info := ovapipeCopyPassthruInfo(h)
		byID := map[string]*types.HostPciPassthruInfo{}
		for _, base := range info {
			byID[base.GetHostPciPassthruInfo().Id] = base.GetHostPciPassthruInfo()
		}
		for index, base := range req.Config {
			change := base.GetHostPciPassthruConfig()
			entry, found := byID[change.Id]
			if !found {
				body.Fault_ = Fault(fmt.Sprintf("no PCI device %q on %s", change.Id, h.Name),
					&types.InvalidArgument{InvalidProperty: fmt.Sprintf("config[%d].id", index)})
				return
			}
			if !entry.PassthruCapable {
				body.Fault_ = ovapipeHostConfigFault(fmt.Sprintf(
					"PCI device %s on %s is not capable of passthrough", change.Id, h.Name))
				return
			}
			entry.PassthruEnabled = change.PassthruEnabled
		}
		ovapipeSetPassthruInfo(h, info)
		body.Res = &types.UpdatePassthruConfigResponse{}
	}()
	return body
}

// Refresh has nothing to re-read: the simulator's state is always current.
func (s *OvapipePciPassthruSystem) Refresh(req *types.Refresh) soap.HasFault {
	return &methods.RefreshBody{Res: &types.RefreshResponse{}}
}

// RebootHostTask boots the host at once: pending passthrough changes become active. As on
// vCenter, a host that is not in maintenance mode reboots only with force.
func (h *HostSystem) RebootHostTask(ctx *Context, req *types.RebootHost_Task) soap.HasFault {
	task := CreateTask(h, "rebootHost", func(*Task) (types.AnyType, types.BaseMethodFault) {
		var fault types.BaseMethodFault
		ctx.WithLock(h, func() {
			if h.Runtime.ConnectionState != types.HostSystemConnectionStateConnected {
				fault = &types.HostNotConnected{}
				return
			}
			if !h.Runtime.InMaintenanceMode && !req.Force {
				fault = &types.InvalidState{}
				return
			}
			info := ovapipeCopyPassthruInfo(h)
			for _, base := range info {
				entry := base.GetHostPciPassthruInfo()
				entry.PassthruActive = entry.PassthruCapable && entry.PassthruEnabled
			}
			ovapipeSetPassthruInfo(h, info)
			now := time.Now()
			h.Runtime.BootTime = &now
		})
		return nil, fault
	})
	return &methods.RebootHost_TaskBody{
		Res: &types.RebootHost_TaskResponse{Returnval: task.Run()},
	}
}
