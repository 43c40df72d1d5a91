package simulator

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Debian's CreateImportSpec knows IDE and the SCSI types lsilogic, buslogic and VirtualSCSI
// only: a SATA (ResourceType 20, vmware.sata.ahci) or NVMe (ResourceType 20,
// vmware.nvme.controller) controller, or an lsilogicsas SCSI controller, is reported as an
// unsupported type and the disks on it are silently dropped, though every vCenter export of
// an EFI VM carries a SATA controller. It also ignores AddressOnParent, and panics on an Item
// without ResourceType, a disk without Parent or HostResource. OvapipeOvfManager answers
// CreateImportSpec itself: each controller kind becomes its vSphere device, disks and CD-ROMs
// are attached at their AddressOnParent (or the next free unit), and what vCenter refuses
// (an unknown subtype, a fifth controller of a kind, a unit out of range or taken, a
// controller the hardware version cannot have) is an error in the result.
type OvapipeOvfManager struct {
	OvfManager
}

// ovapipeReplaceOvfManager puts OvapipeOvfManager in place of Debian's (same reference).
func ovapipeReplaceOvfManager() {
	ref := Map.content().OvfManager
	if ref == nil {
		return
	}
	if m, ok := Map.Get(*ref).(*OvfManager); ok {
		Map.Put(&OvapipeOvfManager{OvfManager: *m})
	}
}

// ovapipeControllerKind describes one kind of disk controller an OVF Item can ask for.
type ovapipeControllerKind struct {
	name     string // for messages: "SATA", "NVMe", "SCSI", "IDE"
	minVMX   int    // lowest hardware version that has it
	maxCount int    // controllers of this kind per VM
	units    int    // unit numbers 0..units-1
	reserved int32  // a unit the controller itself takes (SCSI: 7), or -1
	make     func(bus int32, key int32) types.BaseVirtualDevice
}

var ovapipeControllerKinds = map[string]ovapipeControllerKind{
	"ide": {"IDE", 4, 2, 2, -1, func(bus, key int32) types.BaseVirtualDevice {
		c := &types.VirtualIDEController{}
		c.BusNumber, c.Key = bus, key
		return c
	}},
	"ahci": {"SATA", 10, 4, 30, -1, func(bus, key int32) types.BaseVirtualDevice {
		c := &types.VirtualAHCIController{}
		c.BusNumber, c.Key = bus, key
		return c
	}},
	"nvme": {"NVMe", 13, 4, 15, -1, func(bus, key int32) types.BaseVirtualDevice {
		c := &types.VirtualNVMEController{}
		c.BusNumber, c.Key = bus, key
		return c
	}},
	"lsilogic":    ovapipeSCSIKind(4, func() types.BaseVirtualSCSIController { return &types.VirtualLsiLogicController{} }),
	"buslogic":    ovapipeSCSIKind(4, func() types.BaseVirtualSCSIController { return &types.VirtualBusLogicController{} }),
	"lsilogicsas": ovapipeSCSIKind(7, func() types.BaseVirtualSCSIController { return &types.VirtualLsiLogicSASController{} }),
	"pvscsi":      ovapipeSCSIKind(7, func() types.BaseVirtualSCSIController { return &types.ParaVirtualSCSIController{} }),
}

func ovapipeSCSIKind(minVMX int, newController func() types.BaseVirtualSCSIController) ovapipeControllerKind {
	return ovapipeControllerKind{"SCSI", minVMX, 4, 16, 7, func(bus, key int32) types.BaseVirtualDevice {
		c := newController()
		scsi := c.GetVirtualSCSIController()
		scsi.BusNumber, scsi.Key = bus, key
		scsi.SharedBus = types.VirtualSCSISharingNoSharing
		scsi.ScsiCtlrUnitNumber = 7
		return c.(types.BaseVirtualDevice)
	}}
}

// ovapipeControllerKindOf maps an Item's ResourceType and ResourceSubType to a controller
// kind (a key of ovapipeControllerKinds); ok is false for what vCenter does not know.
func ovapipeControllerKindOf(resourceType uint16, subType string) (kind string, ok bool) {
	sub := strings.ToLower(strings.TrimSpace(subType))
	switch resourceType {
	case 5:
		return "ide", true
	case 6:
		switch sub {
		case "", "lsilogic":
			return "lsilogic", true
		case "buslogic":
			return "buslogic", true
		case "lsilogicsas", "lsilogic-sas":
			return "lsilogicsas", true
		case "virtualscsi", "pvscsi":
			return "pvscsi", true
		}
	case 20:
		switch sub {
		case "vmware.sata.ahci", "ahci":
			return "ahci", true
		case "vmware.nvme.controller", "nvme":
			return "nvme", true
		}
	}
	return "", false
}

var ovapipeVMXNumberRE = regexp.MustCompile(`vmx-(\d+)`)

// ovapipeVMXNumber is the hardware version a VirtualSystemType ("vmx-13 vmx-17") creates:
// the newest listed one the hosts can create, else the newest listed; 0 if none is listed.
func ovapipeVMXNumber(systemType string) int {
	creatable := map[int]bool{}
	for _, v := range ovapipeCreatable {
		creatable[v] = true
	}
	newest, newestCreatable := 0, 0
	for _, m := range ovapipeVMXNumberRE.FindAllStringSubmatch(systemType, -1) {
		n, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		if n > newest {
			newest = n
		}
		if creatable[n] && n > newestCreatable {
			newestCreatable = n
		}
	}
	if newestCreatable != 0 {
		return newestCreatable
	}
	return newest
}

type ovapipeController struct {
	device types.BaseVirtualDevice
	kind   ovapipeControllerKind
	used   map[int32]bool
}

// ovapipeImport builds one import spec; problems become result.Error entries.
type ovapipeImport struct {
	result      types.OvfCreateImportSpecResult
	devices     object.VirtualDeviceList
	controllers map[string]*ovapipeController // by InstanceID
	perKind     map[string]int32              // controllers made per kind name (= next bus)
	vmx         int
	optional    bool // the Item being read has ovf:required="false"
}

// at starts reading an Item.
func (im *ovapipeImport) at(item ovf.ResourceAllocationSettingData) {
	im.optional = item.Required != nil && !*item.Required
}

// fail records why the Item being read cannot be imported: an error, or for an optional
// Item a warning (the Item is left out), as vCenter does.
func (im *ovapipeImport) fail(message string, fault types.BaseMethodFault) {
	if im.optional {
		im.result.Warning = append(im.result.Warning, types.LocalizedMethodFault{
			Fault: fault, LocalizedMessage: message + " (ovf:required=\"false\": left out)"})
		return
	}
	im.result.Error = append(im.result.Error, types.LocalizedMethodFault{Fault: fault, LocalizedMessage: message})
}

func ovapipeItemLabel(item ovf.ResourceAllocationSettingData) string {
	if item.ElementName != "" {
		return fmt.Sprintf("Item %s (%s)", item.InstanceID, item.ElementName)
	}
	return "Item " + item.InstanceID
}

func (im *ovapipeImport) addController(item ovf.ResourceAllocationSettingData, resourceType uint16) {
	subType := ""
	if item.ResourceSubType != nil {
		subType = *item.ResourceSubType
	}
	label := ovapipeItemLabel(item)
	name, ok := ovapipeControllerKindOf(resourceType, subType)
	if !ok {
		im.fail(fmt.Sprintf("%s: unsupported controller subtype '%s' for ResourceType %d", label, subType, resourceType),
			&types.OvfUnsupportedSubType{ElementName: item.ElementName, InstanceId: item.InstanceID,
				DeviceType: int32(resourceType), DeviceSubType: subType})
		return
	}
	kind := ovapipeControllerKinds[name]
	if im.vmx != 0 && im.vmx < kind.minVMX {
		im.fail(fmt.Sprintf("%s: a %s controller (%s) needs hardware version vmx-%d or newer, the OVF asks for vmx-%d",
			label, kind.name, name, kind.minVMX, im.vmx),
			&types.OvfUnsupportedSubType{ElementName: item.ElementName, InstanceId: item.InstanceID,
				DeviceType: int32(resourceType), DeviceSubType: subType})
		return
	}
	bus := im.perKind[kind.name]
	if int(bus) >= kind.maxCount {
		im.fail(fmt.Sprintf("%s: more than %d %s controllers", label, kind.maxCount, kind.name),
			&types.OvfHardwareCheck{})
		return
	}
	im.perKind[kind.name] = bus + 1
	device := kind.make(bus, im.devices.NewKey())
	im.devices = append(im.devices, device)
	used := map[int32]bool{}
	if kind.reserved >= 0 {
		used[kind.reserved] = true
	}
	im.controllers[item.InstanceID] = &ovapipeController{device, kind, used}
}

// attach gives a disk or CD-ROM its controller and unit number, or records why it cannot.
func (im *ovapipeImport) attach(item ovf.ResourceAllocationSettingData, device types.BaseVirtualDevice) bool {
	label := ovapipeItemLabel(item)
	if item.Parent == nil {
		im.fail(label+": no Parent controller", &types.OvfElementInvalidValue{OvfElement: types.OvfElement{Name: "Parent"}})
		return false
	}
	c, ok := im.controllers[*item.Parent]
	if !ok {
		im.fail(fmt.Sprintf("%s: Parent '%s' is not a supported controller Item", label, *item.Parent),
			&types.OvfElementInvalidValue{OvfElement: types.OvfElement{Name: "Parent"}, Value: *item.Parent})
		return false
	}
	var unit int32 = -1
	if item.AddressOnParent != nil && strings.TrimSpace(*item.AddressOnParent) != "" {
		text := strings.TrimSpace(*item.AddressOnParent)
		n, err := strconv.Atoi(text)
		if err != nil || n < 0 || n >= c.kind.units || int32(n) == c.kind.reserved || c.used[int32(n)] {
			why := fmt.Sprintf("a %s controller has units 0-%d", c.kind.name, c.kind.units-1)
			if c.kind.reserved >= 0 {
				why += fmt.Sprintf(" except %d (the controller's own)", c.kind.reserved)
			}
			if err == nil && c.used[int32(n)] && int32(n) != c.kind.reserved {
				why = "another device of the OVF already uses it"
			}
			im.fail(fmt.Sprintf("%s: AddressOnParent '%s' on %s: %s", label, text, *item.Parent, why),
				&types.OvfElementInvalidValue{OvfElement: types.OvfElement{Name: "AddressOnParent"}, Value: text})
			return false
		}
		unit = int32(n)
	} else {
		for n := int32(0); n < int32(c.kind.units); n++ {
			if !c.used[n] {
				unit = n
				break
			}
		}
		if unit < 0 {
			im.fail(fmt.Sprintf("%s: controller %s has no free unit", label, *item.Parent), &types.OvfHardwareCheck{})
			return false
		}
	}
	c.used[unit] = true
	d := device.GetVirtualDevice()
	controller := c.device.(types.BaseVirtualController).GetVirtualController()
	d.ControllerKey = controller.Key
	d.UnitNumber = types.NewInt32(unit)
	return true
}

func (m *OvapipeOvfManager) CreateImportSpec(ctx *Context, req *types.CreateImportSpec) soap.HasFault {
	body := new(methods.CreateImportSpecBody)

	env, err := ovf.Unmarshal(strings.NewReader(req.OvfDescriptor))
	if err != nil {
		body.Fault_ = Fault(err.Error(), &types.InvalidArgument{InvalidProperty: "ovfDescriptor"})
		return body
	}
	if env.VirtualSystem == nil || len(env.VirtualSystem.VirtualHardware) == 0 {
		body.Fault_ = Fault("the OVF descriptor has no VirtualSystem with a VirtualHardwareSection",
			&types.InvalidArgument{InvalidProperty: "ovfDescriptor"})
		return body
	}
	ds, ok := ctx.Map.Get(req.Datastore).(*Datastore)
	if !ok {
		body.Fault_ = Fault("", &types.ManagedObjectNotFound{Obj: req.Datastore})
		return body
	}
	if _, ok := ctx.Map.Get(req.ResourcePool).(mo.Entity); !ok {
		body.Fault_ = Fault("", &types.ManagedObjectNotFound{Obj: req.ResourcePool})
		return body
	}
	path := object.DatastorePath{Datastore: ds.Name}
	spec := &types.VirtualMachineImportSpec{
		ConfigSpec: types.VirtualMachineConfigSpec{
			Name:              req.Cisp.EntityName,
			Version:           esx.HardwareVersion,
			GuestId:           string(types.VirtualMachineGuestOsIdentifierOtherGuest),
			Files:             &types.VirtualMachineFileInfo{VmPathName: path.String()},
			NumCPUs:           1,
			NumCoresPerSocket: 1,
			MemoryMB:          32,
		},
		ResPoolEntity: &req.ResourcePool,
	}
	im := &ovapipeImport{
		result:      types.OvfCreateImportSpecResult{ImportSpec: spec},
		controllers: map[string]*ovapipeController{},
		perKind:     map[string]int32{},
	}

	if req.Cisp.DeploymentOption == "" && env.DeploymentOption != nil {
		for _, c := range env.DeploymentOption.Configuration {
			if isTrue(c.Default) {
				req.Cisp.DeploymentOption = c.ID
				break
			}
		}
	}
	if os := env.VirtualSystem.OperatingSystem; len(os) != 0 && os[0].OSType != nil {
		spec.ConfigSpec.GuestId = *os[0].OSType
	}
	hw := env.VirtualSystem.VirtualHardware[0]
	if vmx := hw.System; vmx != nil && vmx.VirtualSystemType != nil {
		spec.ConfigSpec.Version = *vmx.VirtualSystemType
		if n := ovapipeVMXNumber(*vmx.VirtualSystemType); n != 0 {
			spec.ConfigSpec.Version = fmt.Sprintf("vmx-%d", n)
			im.vmx = n
		}
	}

	var items []ovf.ResourceAllocationSettingData
	for _, item := range hw.Item {
		if req.Cisp.DeploymentOption != "" && item.Configuration != nil && req.Cisp.DeploymentOption != *item.Configuration {
			continue
		}
		im.at(item)
		if item.ResourceType == nil {
			im.fail(ovapipeItemLabel(item)+": no ResourceType", &types.OvfElementInvalidValue{OvfElement: types.OvfElement{Name: "ResourceType"}})
			continue
		}
		items = append(items, item)
	}
	// Controllers first, so an Item may name a controller listed after it (as ovftool's
	// exports can order them).
	for _, item := range items {
		im.at(item)
		switch t := *item.ResourceType; t {
		case 5, 6, 20:
			im.addController(item, t)
		}
	}

	ndisk, ndev := 0, 0
	upload := func(file ovf.File, kind string, n int, resourceType uint16) {
		im.result.FileItem = append(im.result.FileItem, types.OvfFileItem{
			DeviceId: fmt.Sprintf("/%s/%s:%d", req.Cisp.EntityName, kind, n),
			Path:     file.Href,
			Size:     int64(file.Size),
			CimType:  int32(resourceType),
		})
	}
	for _, item := range items {
		im.at(item)
		resourceType := *item.ResourceType
		kind := "unknown"
		if item.ResourceSubType != nil {
			kind = strings.ToLower(*item.ResourceSubType)
		}
		switch resourceType {
		case 1, 5, 6, 20, 23, 24: // VMCI, controllers (above), USB, video
		case 3:
			if item.VirtualQuantity != nil {
				spec.ConfigSpec.NumCPUs = int32(*item.VirtualQuantity)
			}
		case 4:
			if item.VirtualQuantity != nil {
				spec.ConfigSpec.MemoryMB = int64(*item.VirtualQuantity)
			}
		case 10:
			if net := ovfNetwork(ctx, req, item); net != nil {
				d, err := im.devices.CreateEthernetCard(kind, net)
				if err != nil {
					im.fail(err.Error(), &types.OvfUnsupportedType{Name: item.ElementName, InstanceId: item.InstanceID, DeviceType: int32(resourceType)})
					continue
				}
				im.devices = append(im.devices, d)
			}
		case 14:
			if im.devices.PickController((*types.VirtualSIOController)(nil)) == nil {
				c := &types.VirtualSIOController{}
				c.Key = im.devices.NewKey()
				im.devices = append(im.devices, c)
			}
			if d, err := im.devices.CreateFloppy(); err == nil {
				im.devices = append(im.devices, d)
			}
		case 15:
			d := &types.VirtualCdrom{}
			d.Key = im.devices.NewKey()
			d.Backing = &types.VirtualCdromRemotePassthroughBackingInfo{
				VirtualDeviceRemoteDeviceBackingInfo: types.VirtualDeviceRemoteDeviceBackingInfo{UseAutoDetect: types.NewBool(false)},
			}
			if !im.attach(item, d) {
				continue
			}
			if len(item.HostResource) != 0 {
				for _, file := range env.References {
					if strings.HasSuffix(item.HostResource[0], file.ID) {
						path.Path = fmt.Sprintf("%s/_deviceImage%d.iso", req.Cisp.EntityName, ndev)
						im.devices.InsertIso(d, path.String())
						upload(file, "cdrom", ndev, resourceType)
						break
					}
				}
			}
			im.devices = append(im.devices, d)
			ndev++
		case 17:
			label := ovapipeItemLabel(item)
			if len(item.HostResource) == 0 {
				im.fail(label+": a disk Item without HostResource", &types.OvfElementInvalidValue{OvfElement: types.OvfElement{Name: "HostResource"}})
				continue
			}
			disk := ovfDisk(env, item.HostResource[0])
			if disk == nil {
				im.fail(fmt.Sprintf("%s: HostResource '%s' is not in the DiskSection", label, item.HostResource[0]),
					&types.OvfElementInvalidValue{OvfElement: types.OvfElement{Name: "HostResource"}, Value: item.HostResource[0]})
				continue
			}
			path.Path = fmt.Sprintf("%s/disk-%d.vmdk", req.Cisp.EntityName, ndisk)
			d := &types.VirtualDisk{VirtualDevice: types.VirtualDevice{
				Key: im.devices.NewKey(),
				Backing: &types.VirtualDiskFlatVer2BackingInfo{
					DiskMode:        string(types.VirtualDiskModePersistent),
					ThinProvisioned: types.NewBool(true),
					VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{
						FileName:  path.String(),
						Datastore: types.NewReference(ds.Reference()),
					},
				},
				DeviceInfo: &types.Description{Label: item.ElementName},
			}}
			if !im.attach(item, d) {
				continue
			}
			if disk.FileRef != nil {
				for _, file := range env.References {
					if file.ID == *disk.FileRef {
						upload(file, "disk", ndisk, resourceType)
						break
					}
				}
			}
			d.CapacityInKB = ovfDiskCapacity(disk)
			im.devices = append(im.devices, d)
			ndisk++
		default:
			im.fail(fmt.Sprintf("unsupported resource type: %d", resourceType),
				&types.OvfUnsupportedType{Name: item.ElementName, InstanceId: item.InstanceID, DeviceType: int32(resourceType)})
		}
	}

	spec.ConfigSpec.DeviceChange, _ = im.devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	for _, p := range req.Cisp.PropertyMapping {
		spec.ConfigSpec.ExtraConfig = append(spec.ConfigSpec.ExtraConfig, &types.OptionValue{Key: p.Key, Value: p.Value})
	}
	body.Res = &types.CreateImportSpecResponse{Returnval: im.result}
	return body
}
