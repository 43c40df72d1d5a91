package simulator

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// CreateDescriptor writes an OVF descriptor for a VM (Debian's simulator lacks it; Packer's
// export step calls it after downloading the disks of an ExportVm lease). The files are the
// caller's OvfFiles, matched to disks by the device keys ExportVm hands out.
func (m *OvfManager) CreateDescriptor(ctx *Context, req *types.CreateDescriptor) soap.HasFault {
	body := new(methods.CreateDescriptorBody)
	vm, ok := ctx.Map.Get(req.Obj).(*VirtualMachine)
	if !ok {
		body.Fault_ = Fault("only virtual machines can be described", &types.InvalidArgument{InvalidProperty: "obj"})
		return body
	}
	name := req.Cdp.Name
	if name == "" {
		name = vm.Name
	}
	body.Res = &types.CreateDescriptorResponse{
		Returnval: types.OvfCreateDescriptorResult{OvfDescriptor: vm.ovapipeDescriptor(name, req.Cdp.OvfFiles)},
	}
	return body
}

func ovapipeXML(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// ovapipeDiskKey is the lease device key of a disk: /vm-N/VirtualLsiLogicController0:0.
func (vm *VirtualMachine) ovapipeDiskKey(devices object.VirtualDeviceList, disk *types.VirtualDisk) string {
	controllerName := "VirtualController0"
	if controller, ok := devices.FindByKey(disk.ControllerKey).(types.BaseVirtualController); ok {
		controllerName = fmt.Sprintf("%s%d", strings.TrimPrefix(fmt.Sprintf("%T", controller), "*types."),
			controller.GetVirtualController().BusNumber)
	}
	var unit int32
	if disk.UnitNumber != nil {
		unit = *disk.UnitNumber
	}
	return fmt.Sprintf("/%s/%s:%d", vm.Self.Value, controllerName, unit)
}

func ovapipeControllerType(device types.BaseVirtualDevice) (resourceType int, subType string, ok bool) {
	switch device.(type) {
	case *types.VirtualLsiLogicController:
		return 6, "lsilogic", true
	case *types.VirtualLsiLogicSASController:
		return 6, "lsilogicsas", true
	case *types.ParaVirtualSCSIController:
		return 6, "VirtualSCSI", true
	case *types.VirtualBusLogicController:
		return 6, "buslogic", true
	case *types.VirtualIDEController:
		return 5, "", true
	case *types.VirtualAHCIController:
		return 20, "vmware.sata.ahci", true
	case *types.VirtualNVMEController:
		return 20, "vmware.nvme.controller", true
	}
	return 0, "", false
}

func (vm *VirtualMachine) ovapipeDescriptor(name string, files []types.OvfFile) string {
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	fileByKey := map[string]types.OvfFile{}
	for _, f := range files {
		fileByKey[f.DeviceId] = f
	}

	var refs, disks, items, networks strings.Builder
	instance := 0
	next := func() int { instance++; return instance }
	item := func(fields ...string) {
		items.WriteString("      <Item>\n")
		for i := 0; i+1 < len(fields); i += 2 {
			if fields[i+1] != "" {
				fmt.Fprintf(&items, "        <rasd:%s>%s</rasd:%s>\n", fields[i], ovapipeXML(fields[i+1]), fields[i])
			}
		}
		items.WriteString("      </Item>\n")
	}
	item("AllocationUnits", "hertz * 10^6", "Description", "Number of Virtual CPUs",
		"ElementName", fmt.Sprintf("%d virtual CPU(s)", vm.Config.Hardware.NumCPU),
		"InstanceID", fmt.Sprint(next()), "ResourceType", "3",
		"VirtualQuantity", fmt.Sprint(vm.Config.Hardware.NumCPU))
	item("AllocationUnits", "byte * 2^20", "Description", "Memory Size",
		"ElementName", fmt.Sprintf("%dMB of memory", vm.Config.Hardware.MemoryMB),
		"InstanceID", fmt.Sprint(next()), "ResourceType", "4",
		"VirtualQuantity", fmt.Sprint(vm.Config.Hardware.MemoryMB))

	controllerInstance := map[int32]int{}
	for _, d := range devices {
		resourceType, subType, ok := ovapipeControllerType(d)
		if !ok {
			continue
		}
		id := next()
		controllerInstance[d.GetVirtualDevice().Key] = id
		bus := d.(types.BaseVirtualController).GetVirtualController().BusNumber
		item("Address", fmt.Sprint(bus), "ElementName", fmt.Sprintf("%s %d", devices.Type(d), bus),
			"InstanceID", fmt.Sprint(id), "ResourceSubType", subType,
			"ResourceType", fmt.Sprint(resourceType))
	}

	nfile, ndisk := 0, 0
	seenNetwork := map[string]bool{}
	for _, d := range devices {
		base := d.GetVirtualDevice()
		unit := ""
		if base.UnitNumber != nil {
			unit = fmt.Sprint(*base.UnitNumber)
		}
		parent := ""
		if id, ok := controllerInstance[base.ControllerKey]; ok {
			parent = fmt.Sprint(id)
		}
		switch device := d.(type) {
		case *types.VirtualDisk:
			ndisk++
			diskID := fmt.Sprintf("vmdisk%d", ndisk)
			fileRef := ""
			if f, ok := fileByKey[vm.ovapipeDiskKey(devices, device)]; ok {
				nfile++
				fileRef = fmt.Sprintf("file%d", nfile)
				fmt.Fprintf(&refs, "    <File ovf:href=\"%s\" ovf:id=\"%s\" ovf:size=\"%d\"/>\n",
					ovapipeXML(f.Path), fileRef, f.Size)
			}
			fmt.Fprintf(&disks, "    <Disk ovf:capacity=\"%d\" ovf:capacityAllocationUnits=\"byte * 2^10\" ovf:diskId=\"%s\"",
				device.CapacityInKB, diskID)
			if fileRef != "" {
				fmt.Fprintf(&disks, " ovf:fileRef=\"%s\"", fileRef)
			}
			disks.WriteString(" ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\"/>\n")
			item("AddressOnParent", unit, "ElementName", fmt.Sprintf("Hard disk %d", ndisk),
				"HostResource", "ovf:/disk/"+diskID, "InstanceID", fmt.Sprint(next()),
				"Parent", parent, "ResourceType", "17")
		case types.BaseVirtualEthernetCard:
			network := ""
			if backing, ok := base.Backing.(*types.VirtualEthernetCardNetworkBackingInfo); ok {
				network = backing.DeviceName
			}
			if network == "" {
				network = "VM Network"
			}
			if !seenNetwork[network] {
				seenNetwork[network] = true
				fmt.Fprintf(&networks, "    <Network ovf:name=\"%s\">\n      <Description>The %s network</Description>\n    </Network>\n",
					ovapipeXML(network), ovapipeXML(network))
			}
			subType := strings.TrimPrefix(strings.TrimPrefix(fmt.Sprintf("%T", device), "*types.Virtual"), "*types.")
			item("AddressOnParent", unit, "AutomaticAllocation", "true", "Connection", network,
				"ElementName", fmt.Sprintf("Network adapter %d", base.Key%100+1),
				"InstanceID", fmt.Sprint(next()), "ResourceSubType", subType, "ResourceType", "10")
		case *types.VirtualCdrom:
			item("AddressOnParent", unit, "AutomaticAllocation", "false", "ElementName", "CD/DVD drive",
				"InstanceID", fmt.Sprint(next()), "Parent", parent,
				"ResourceSubType", "vmware.cdrom.remotepassthrough", "ResourceType", "15")
		}
	}

	firmware := vm.Config.Firmware
	if firmware == "" {
		firmware = string(types.GuestOsDescriptorFirmwareTypeBios)
	}
	secureBoot := vm.Config.BootOptions != nil && vm.Config.BootOptions.EfiSecureBootEnabled != nil &&
		*vm.Config.BootOptions.EfiSecureBootEnabled

	var out strings.Builder
	out.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
`)
	out.WriteString(refs.String())
	out.WriteString("  </References>\n  <DiskSection>\n    <Info>Virtual disk information</Info>\n")
	out.WriteString(disks.String())
	out.WriteString("  </DiskSection>\n  <NetworkSection>\n    <Info>The list of logical networks</Info>\n")
	out.WriteString(networks.String())
	out.WriteString("  </NetworkSection>\n")
	fmt.Fprintf(&out, "  <VirtualSystem ovf:id=\"%s\">\n    <Info>A virtual machine</Info>\n    <Name>%s</Name>\n",
		ovapipeXML(name), ovapipeXML(name))
	fmt.Fprintf(&out, "    <OperatingSystemSection ovf:id=\"1\" vmw:osType=\"%s\">\n      <Info>The kind of installed guest operating system</Info>\n    </OperatingSystemSection>\n",
		ovapipeXML(vm.Config.GuestId))
	out.WriteString("    <VirtualHardwareSection>\n      <Info>Virtual hardware requirements</Info>\n      <System>\n")
	fmt.Fprintf(&out, "        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>\n        <vssd:InstanceID>0</vssd:InstanceID>\n        <vssd:VirtualSystemIdentifier>%s</vssd:VirtualSystemIdentifier>\n        <vssd:VirtualSystemType>%s</vssd:VirtualSystemType>\n      </System>\n",
		ovapipeXML(name), ovapipeXML(vm.Config.Version))
	out.WriteString(items.String())
	fmt.Fprintf(&out, "      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"%s\"/>\n", ovapipeXML(firmware))
	if firmware == string(types.GuestOsDescriptorFirmwareTypeEfi) {
		fmt.Fprintf(&out, "      <vmw:Config ovf:required=\"false\" vmw:key=\"bootOptions.efiSecureBootEnabled\" vmw:value=\"%t\"/>\n", secureBoot)
	}
	out.WriteString("    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n")
	return out.String()
}
